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
mod duplicate;
mod error;
mod handle;
mod inherited;
mod kind;
pub mod process;
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
pub use error::{Error, Result};
pub use handle::{count_open_handles, AsHandle, BorrowedHandle, Handle, RawHandle};
pub use inherited::{Expect, Inherited};
pub use kind::{Access, Kind, PipeEnd, Seals, SocketFamily, SocketType};
pub use process::Process;
pub use spawn::{Child, Command};
pub use startup::StartupData;

/// Makes a trait an RPC interface whose parameters can be handles; see
/// [`rpc`].
#[cfg(feature = "tokio")]
pub use handoff_macros::interface;
