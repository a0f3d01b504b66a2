//! Move OS handles and bulk data between processes on one machine, with the
//! receiver checking what it got.
//!
//! * [`Handle`] / [`BorrowedHandle`]: owned and borrowed handles in the
//!   io-safety sense; [`Handle::kind`] and [`Handle::access`] read what a
//!   handle is from the kernel, [`Handle::restrict`] narrows its rights.
//! * [`Channel`]: a bidirectional message channel carrying bytes and any
//!   number of handles per message, with [`Listener`] for many clients,
//!   [`typed`] serde messages with handles inside, peer credentials, and
//!   [`AsyncChannel`] for tokio.
//! * [`Command`]: spawn a child with exactly the chosen handles under the
//!   systemd socket-activation convention, plus sealed [`startup`] data and
//!   a channel; the child claims them with [`Inherited`].
//! * [`rpc`] and [`#[interface]`](interface): RPC on a trait, with handle
//!   parameters of a declared kind and access, and context handles.
//! * [`restart`]: zero-downtime restarts on systemd's conventions: a
//!   service's listeners by name, `READY=1`, the handle store, and the
//!   supervisor's side of the notify socket.
//!
//! The portable API lives in the modules at the top; system calls live in
//! private per-OS backends under `sys/` (see `docs/architecture.md`).
//!
//! ```
//! use handoff::{Access, Channel, Kind};
//! # fn main() -> handoff::Result<()> {
//! let (a, b) = Channel::pair()?;
//! let file = std::fs::File::open("Cargo.toml").unwrap();
//! a.send(b"config", &[handoff::AsHandle::as_handle(&file)])?;
//!
//! let msg = b.recv()?;
//! assert_eq!(msg.bytes, b"config");
//! assert_eq!(msg.handles[0].kind()?, Kind::File);
//! assert_eq!(msg.handles[0].access()?, Access::READ);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod channel;
mod convert;
mod duplicate;
mod error;
mod handle;
mod inherited;
mod kind;
pub mod process;
mod requirement;
pub mod restart;
// RPC runs on AsyncChannel.
#[cfg(feature = "tokio")]
pub mod rpc;
pub mod spawn;
pub mod startup;
mod stdio;
mod sys;

pub use channel::typed;
#[cfg(feature = "tokio")]
pub use channel::{AsyncChannel, AsyncListener};
pub use channel::{Channel, Limits, Listener, Message, PeerCredentials};
pub use duplicate::{duplicate, DupOptions, Duplicated, Source, Target};
pub use error::{Error, ErrorKind, Result};
pub use handle::{count_open_handles, AsHandle, BorrowedHandle, Handle, RawHandle};
pub use inherited::{Expect, Inherited};
pub use kind::{Access, Kind, PipeEnd, Seals, SocketFamily, SocketType};
pub use process::Process;
pub use requirement::{AccessRule, KindName, Requirement};
pub use spawn::{Child, Command};
pub use startup::StartupData;

/// What the code `#[interface]` generates, the fuzz targets and the tests
/// use, and nothing else should: the RPC's call and reply builders, the
/// declared handle checks, the frame codec. Not part of the API: it
/// changes without notice (tokio's `macros::support` is the model).
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "tokio")]
    pub use crate::rpc::client::{Call, Reply};
    #[cfg(feature = "tokio")]
    pub use crate::rpc::handles::HandleSpec;
    #[cfg(feature = "tokio")]
    pub use crate::rpc::server::{OutHandles, ServerCall, ServerReply};
    /// The RPC frame codec (`docs/wire-format.md`, "RPC").
    #[cfg(feature = "tokio")]
    pub mod wire {
        pub use crate::rpc::wire::*;
    }

    /// Borrows every handle of an array parameter for the method.
    #[cfg(feature = "tokio")]
    pub fn borrow_all(handles: &[crate::Handle]) -> Vec<crate::BorrowedHandle<'_>> {
        crate::rpc::borrow_all(handles)
    }

    /// The Windows channel's transport prefix codec, built everywhere for
    /// its fuzz target.
    pub mod prefix {
        pub use crate::channel::prefix::*;
    }

    /// The portable Unix transport's frame prefix codec (stream framing),
    /// built on every Unix for its fuzz target.
    #[cfg(all(unix, not(handoff_no_backend)))]
    pub mod stream_prefix {
        pub use crate::sys::stream::*;
    }

    /// Whether this build uses the portable Unix configuration of the
    /// backend (the benchmarks then compare against raw `SOCK_STREAM`).
    pub const PORTABLE_UNIX: bool = cfg!(handoff_portable);

    /// `Inherited::parse_windows`, run by the tests on every platform.
    pub fn parse_windows(
        handles: Option<&str>,
        parent_pid: Option<&str>,
        names: Option<&str>,
        my_parent_pid: u32,
    ) -> crate::Result<Vec<(String, u32)>> {
        crate::Inherited::parse_windows(handles, parent_pid, names, my_parent_pid)
    }
}

/// Makes a trait an RPC interface whose parameters can be handles; see
/// [`rpc`].
#[cfg(feature = "tokio")]
pub use handoff_macros::interface;
