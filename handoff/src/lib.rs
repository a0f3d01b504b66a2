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
mod error;
mod handle;
mod kind;
mod sys;

pub use channel::typed;
pub use channel::{Channel, Limits, Listener, Message, PeerCredentials};
#[cfg(feature = "tokio")]
pub use channel::{AsyncChannel, AsyncListener};
pub use error::{Error, Result};
pub use handle::{count_open_handles, AsHandle, BorrowedHandle, Handle, RawHandle};
pub use kind::{Access, Kind, PipeEnd, Seals, SocketFamily, SocketType};
