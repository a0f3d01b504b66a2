//! Registering handoff's own socket owners with tokio's reactor.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Types whose descriptor is private, owned, and never replaced while they
/// live: the safety condition tokio's registration asks for.
pub(crate) trait StableFd: std::os::fd::AsRawFd {}
impl StableFd for crate::Channel {}
impl StableFd for crate::Listener {}
impl StableFd for WriteWatch {}

/// A duplicate of a socket, registered only while a send waits for room.
pub(crate) struct WriteWatch(OwnedFd);

impl AsRawFd for WriteWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Registers `inner` with the current tokio runtime; an error (not a panic)
/// when there is none.
pub(crate) fn register<T: StableFd>(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    tokio::runtime::Handle::try_current()
        .map_err(|e| io::Error::other(format!("no tokio runtime: {e}")))?;
    // SAFETY: StableFd types own their descriptor in a private field that is
    // never reassigned, so it stays open and the same for the AsyncFd's life.
    unsafe { AsyncFd::register_with_interest(inner, interest) }.map_err(|e| e.into_parts().1)
}

/// The interest a channel registers with: reading only. A registration that
/// also watches for room to write is woken, in the kernel and then in the
/// reactor, every time the peer reads a message, which is on every reply
/// of a request/response exchange; sends wait for room through
/// [`when_writable`] instead, which is needed only when the socket is full.
pub(crate) const CHANNEL_INTEREST: Interest = Interest::READABLE;

/// Repeats `attempt` (`None`: it would block) until it completes, waiting
/// for room to write on `channel` in between.
///
/// The channel itself is registered for reading only, so the wait goes
/// through a close-on-exec duplicate of its socket registered for writing
/// (epoll tells registrations of the same socket apart by descriptor),
/// which lives only as long as this wait.
pub(crate) async fn when_writable<R>(
    channel: &AsyncFd<crate::Channel>,
    mut attempt: impl FnMut() -> Option<R>,
) -> io::Result<R> {
    let dup = rustix::io::fcntl_dupfd_cloexec(channel.get_ref().socket().as_fd(), 0)?;
    let watch = register(WriteWatch(dup), Interest::WRITABLE)?;
    loop {
        // Registering reports the socket's state at that moment, so room
        // made between the failed attempt and here is not missed.
        let mut ready = watch.writable().await?;
        match attempt() {
            Some(done) => return Ok(done),
            None => ready.clear_ready(),
        }
    }
}
