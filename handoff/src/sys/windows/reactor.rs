//! Readiness for `AsyncChannel` and `AsyncListener` without a completion
//! port: the names every backend's `reactor` has, built on the end's own
//! overlapped operations (`overlapped.rs`).
//!
//! Why not tokio's `NamedPipeServer`/`NamedPipeClient`: they associate the
//! pipe's file object with the runtime's completion port for good (every
//! later overlapped call on it, the blocking `Channel` paths included, and
//! in any process the end is passed to, would post packets there), and they
//! keep a read of their own always pending into a byte buffer, which loses
//! message boundaries and would swallow the acknowledgements the blocking
//! paths read. Here the pipe stays an ordinary overlapped handle.
//!
//! Receiving: an async receiver waiting for readiness starts a *head read*
//! (the first [`HEAD_LEN`] bytes of the next datagram) and stores it in the
//! end; whoever receives next, async or blocking, takes the head read first
//! and reads the rest of the datagram (`ERROR_MORE_DATA`) straight away
//! (`socket.rs`). An idle end waiting for a message holds 64 bytes, not a
//! datagram buffer.
//!
//! Sending: a fragment whose write the pipe cannot take at once stays with
//! the end as a pending write; the write is already queued in order, so the
//! send returns, and the next send waits (asynchronously) for it to finish.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::overlapped::init;

/// What an async wrapper waits on: a channel (readable: a datagram or the
/// end of the pipe is waiting; writable: no write of ours is pending) or a
/// listener (readable: a client connected).
pub(crate) trait Pollable {
    fn poll_ready(&self, writable: bool, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Pollable for crate::Channel {
    fn poll_ready(&self, writable: bool, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if writable {
            super::socket::poll_writable(self.socket(), cx)
        } else {
            super::socket::poll_readable(self.socket(), cx)
        }
    }
}

impl Pollable for crate::Listener {
    fn poll_ready(&self, _writable: bool, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        super::listener::poll_accept(self.socket(), cx)
    }
}

/// The Windows counterpart of tokio's `AsyncFd` for handoff's own types:
/// readiness comes from the end's own pending operations, not a reactor.
#[derive(Debug)]
pub(crate) struct Registered<T>(T);

/// Readiness as `AsyncFd` hands it out; nothing to clear here, because
/// each wait looks at the operations afresh.
pub(crate) struct Ready;

impl Ready {
    pub(crate) fn clear_ready(&mut self) {}
}

struct ReadyFuture<'a, T> {
    inner: &'a T,
    writable: bool,
}

impl<T: Pollable> Future for ReadyFuture<'_, T> {
    type Output = io::Result<Ready>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner
            .poll_ready(self.writable, cx)
            .map(|r| r.map(|()| Ready))
    }
}

impl<T: Pollable> Registered<T> {
    pub(crate) fn get_ref(&self) -> &T {
        &self.0
    }

    pub(crate) fn into_inner(self) -> T {
        self.0
    }

    pub(crate) fn readable(&self) -> impl Future<Output = io::Result<Ready>> + '_ {
        ReadyFuture {
            inner: &self.0,
            writable: false,
        }
    }

    pub(crate) fn writable(&self) -> impl Future<Output = io::Result<Ready>> + '_ {
        ReadyFuture {
            inner: &self.0,
            writable: true,
        }
    }
}

/// The interest a channel registers with (unused here: an end's readiness
/// is its own overlapped operations).
pub(crate) const CHANNEL_INTEREST: tokio::io::Interest = tokio::io::Interest::READABLE;

/// Repeats `attempt` (`None`: it would block) until it completes, waiting
/// for the end's pending write in between.
pub(crate) async fn when_writable<R>(
    channel: &Registered<crate::Channel>,
    mut attempt: impl FnMut() -> Option<R>,
) -> io::Result<R> {
    loop {
        channel.writable().await?;
        if let Some(done) = attempt() {
            return Ok(done);
        }
    }
}

/// Wraps `inner` for async use; an error (not a panic) outside a tokio
/// runtime, as on Unix.
pub(crate) fn register<T: Pollable>(
    inner: T,
    _interest: tokio::io::Interest,
) -> io::Result<Registered<T>> {
    tokio::runtime::Handle::try_current()
        .map_err(|e| io::Error::other(format!("no tokio runtime: {e}")))?;
    init()?;
    Ok(Registered(inner))
}

/// Registers a listener for accepting (its pending `ConnectNamedPipe`).
pub(crate) fn register_listener(
    listener: crate::Listener,
) -> io::Result<Registered<crate::Listener>> {
    register(listener, tokio::io::Interest::READABLE)
}
