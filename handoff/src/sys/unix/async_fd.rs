//! Registering handoff's own socket owners with tokio's reactor.

use std::io;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Types whose descriptor is private, owned, and never replaced while they
/// live: the safety condition tokio's registration asks for.
pub(crate) trait StableFd: std::os::fd::AsRawFd {}
impl StableFd for crate::Channel {}
impl StableFd for crate::Listener {}

/// Registers `inner` with the current tokio runtime; an error (not a panic)
/// when there is none.
pub(crate) fn register<T: StableFd>(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    tokio::runtime::Handle::try_current()
        .map_err(|e| io::Error::other(format!("no tokio runtime: {e}")))?;
    // SAFETY: StableFd types own their descriptor in a private field that is
    // never reassigned, so it stays open and the same for the AsyncFd's life.
    unsafe { AsyncFd::register_with_interest(inner, interest) }.map_err(|e| e.into_parts().1)
}
