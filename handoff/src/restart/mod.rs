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
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    feature = "tokio",
    not(handoff_no_backend)
))]
pub mod handover;
pub mod notify;
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(handoff_no_backend)
))]
mod receiver;
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(handoff_no_backend)
))]
mod service;
pub mod state;
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(handoff_no_backend)
))]
pub mod supervise;

pub use error::HandoverError;
pub use notify::{Notification, NotifyError};
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(handoff_no_backend)
))]
pub use receiver::{NotifySocket, Received};
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(handoff_no_backend)
))]
pub use service::{send, Service};

/// The variable naming the supervisor's notify socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
