//! Registering handoff's own socket owners with tokio's reactor.
//!
//! `Registered` is tokio's `AsyncFd` itself; the Windows backend has a type
//! of the same name with the same methods.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Types whose descriptor is private, owned, and never replaced while they
/// live: the safety condition tokio's registration asks for.
pub(crate) trait StableFd: std::os::fd::AsRawFd {}
impl StableFd for crate::Channel {}
impl StableFd for crate::Listener {}
impl StableFd for WriteWatch {}

/// A value registered with the reactor.
pub(crate) type Registered<T> = AsyncFd<T>;

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

/// Registers a listener for accepting. `accept4` has no per-call
/// non-blocking flag; the listening socket is ours alone, so setting
/// `O_NONBLOCK` on it is safe.
pub(crate) fn register_listener(listener: crate::Listener) -> io::Result<AsyncFd<crate::Listener>> {
    super::socket::set_nonblocking(listener.socket().as_fd(), true)?;
    register(listener, Interest::READABLE)
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
/// which lives only as long as this wait. With the descriptor table (or
/// the epoll watch limit) full there is no duplicate to be had: the send
/// then retries each time the task is scheduled again, which costs CPU
/// while both the table and the peer's socket stay full but loses nothing,
/// and goes back to waiting as soon as a duplicate can be made.
pub(crate) async fn when_writable<R>(
    channel: &AsyncFd<crate::Channel>,
    mut attempt: impl FnMut() -> Option<R>,
) -> io::Result<R> {
    let socket = channel.get_ref().socket().as_fd();
    let mut warned = false;
    loop {
        match watch_writable(socket) {
            Ok(watch) => loop {
                // Registering reports the socket's state at that moment,
                // so room made since the failed attempt is not missed.
                let mut ready = watch.writable().await?;
                match attempt() {
                    Some(done) => return Ok(done),
                    None => ready.clear_ready(),
                }
            },
            Err(e) if is_exhausted(&e) => {
                if !warned {
                    warned = true;
                    tracing::warn!(error = %e, "no descriptor to wait for room with; retrying the send instead");
                }
                // Ask for a descriptor again only now and then: each
                // refusal is a system call.
                for _ in 0..64 {
                    tokio::task::yield_now().await;
                    if let Some(done) = attempt() {
                        return Ok(done);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn watch_writable(socket: BorrowedFd<'_>) -> io::Result<AsyncFd<WriteWatch>> {
    let dup = rustix::io::fcntl_dupfd_cloexec(socket, 0)?;
    register(WriteWatch(dup), Interest::WRITABLE)
}

/// Out of descriptors, memory, or epoll watches (`ENOSPC` from
/// `epoll_ctl`).
fn is_exhausted(e: &io::Error) -> bool {
    super::socket::is_exhaustion(e) || e.raw_os_error() == Some(libc::ENOSPC)
}
