//! Zero-downtime restarts: what a service and its supervisor need to hand
//! listening sockets and stored handles from one version of a service to
//! the next, on systemd's conventions so the same code runs under systemd
//! and under `handoff serve`.
//!
//! * [`notify`]: the notify protocol (`READY=1`, `FDSTORE=1`, …) as a pure
//!   codec, on every platform.
//! * [`Service`] (Linux): the service's side. Listeners by name as std
//!   types, checked with [`Handle::kind`](crate::Handle::kind); `ready()`,
//!   `status()`, `stopping()`, `store()`, `remove()` over `NOTIFY_SOCKET`;
//!   stored handles handed back at the next start.
//! * [`state`]: the state one generation hands the next, sealed and
//!   checksummed; [`handover`] (Linux, tokio): live connections too.
//! * [`NotifySocket`] and the helpers in [`supervise`] (Linux): the
//!   supervisor's side, receiving notifications with the kernel's word on
//!   who sent them.
//!
//! `docs/restart.md` describes the protocol and the supervisor.

mod error;
#[cfg(all(any(target_os = "linux", target_os = "android"), feature = "tokio"))]
pub mod handover;
pub mod notify;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod receiver;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod service;
pub mod state;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod supervise;

pub use error::HandoverError;
pub use notify::{Notification, NotifyError};
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use receiver::{NotifySocket, Received};
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use service::{send, Service};

/// The variable naming the supervisor's notify socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
