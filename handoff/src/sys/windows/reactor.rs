//! Readiness for the async types: the owned overlapped operations of
//! `async_pipe.rs` under the names every backend uses.

use std::io;

pub(crate) use super::async_pipe::{register, when_writable, Registered, CHANNEL_INTEREST};

/// Registers a listener for accepting (its pending `ConnectNamedPipe`).
pub(crate) fn register_listener(
    listener: crate::Listener,
) -> io::Result<Registered<crate::Listener>> {
    register(listener, tokio::io::Interest::READABLE)
}
