//! The same channel on the tokio runtime.
//!
//! The socket stays in blocking mode; every call the async side makes is
//! non-blocking per call (`MSG_DONTWAIT`), so a channel can move between
//! blocking and async use without flag changes another process would see.
//!
//! On Windows there is no reactor registration: `sys::reactor::Registered`
//! (`sys/windows/async_pipe.rs`) stands in for tokio's `AsyncFd`, and readiness
//! means that the end's own overlapped operations (a read of the next
//! datagram's head, a pending write, a pending `ConnectNamedPipe`) are
//! done. The code below is the same on both.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::sys::reactor::{self as backend, Registered as AsyncFd};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{frame, typed, Channel, Listener, Message};
use crate::{sys, BorrowedHandle, Error, Handle, Result};

/// What a failed wait for readiness becomes.
fn poll_failed(e: std::io::Error) -> Error {
    Error::os("poll", e)
}

/// A [`Channel`] driven by tokio.
#[derive(Debug)]
pub struct AsyncChannel {
    inner: AsyncFd<Channel>,
    send_order: SendOrder,
    /// The last receive found its message already queued: the next one
    /// tries the socket before asking the reactor (see `recv_into`).
    found_queued: AtomicBool,
}

/// Keeps the fragments of concurrent sends from interleaving. Free, it is
/// taken with one atomic operation and given back with two (a
/// `tokio::sync::Mutex` locks its waiter list on every release); senders
/// that find it taken wait on a `Notify`.
#[derive(Debug, Default)]
struct SendOrder {
    taken: AtomicBool,
    waiting: AtomicUsize,
    notify: tokio::sync::Notify,
}

/// The turn of one send; dropping it (also when the send future is
/// dropped) gives the turn to the next sender.
struct SendTurn<'a>(&'a SendOrder);

/// A sender counted among those waiting for their turn.
struct Waiting<'a>(&'a SendOrder);

impl SendOrder {
    fn try_take(&self) -> bool {
        self.taken
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    async fn turn(&self) -> SendTurn<'_> {
        if self.try_take() {
            return SendTurn(self);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(self);
        loop {
            // Registered before looking again, so a release between the
            // look and the wait is not missed: either the look sees the
            // turn free, or the releaser sees this sender waiting and
            // notifies.
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.try_take() {
                return SendTurn(self);
            }
            notified.await;
        }
    }
}

impl Drop for SendTurn<'_> {
    fn drop(&mut self) {
        self.0.taken.store(false, Ordering::SeqCst);
        if self.0.waiting.load(Ordering::SeqCst) > 0 {
            self.0.notify.notify_waiters();
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Poisons the channel if a send future is dropped after sending part of a
/// message: the peer holds half of it and the stream cannot recover.
struct PartialSend<'a> {
    channel: &'a Channel,
    armed: bool,
}

impl Drop for PartialSend<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.channel.poison();
        }
    }
}

impl AsyncChannel {
    /// Registers `channel` with the current tokio runtime.
    pub fn new(channel: Channel) -> Result<Self> {
        let inner = backend::register(channel, backend::CHANNEL_INTEREST)
            .map_err(|e| Error::os("register with tokio", e))?;
        Ok(AsyncChannel {
            inner,
            send_order: SendOrder::default(),
            found_queued: AtomicBool::new(false),
        })
    }

    /// Creates a connected pair on the current runtime.
    pub fn pair() -> Result<(AsyncChannel, AsyncChannel)> {
        let (a, b) = Channel::pair()?;
        Ok((AsyncChannel::new(a)?, AsyncChannel::new(b)?))
    }

    /// Connects to a listener at `path`.
    pub fn connect(path: impl AsRef<std::path::Path>) -> Result<Self> {
        AsyncChannel::new(Channel::connect(path)?)
    }

    /// The blocking channel underneath (for queries such as
    /// [`Channel::peer_credentials`]).
    pub fn get_ref(&self) -> &Channel {
        self.inner.get_ref()
    }

    /// Deregisters and returns the blocking channel.
    pub fn into_inner(self) -> Channel {
        self.inner.into_inner()
    }

    /// Sends `bytes` and duplicates of `handles`. See [`Channel::send`].
    ///
    /// Cancelling the future after part of a large message went out poisons
    /// the channel.
    pub async fn send(&self, bytes: &[u8], handles: &[BorrowedHandle<'_>]) -> Result<()> {
        let channel = self.inner.get_ref();
        if channel.is_poisoned() {
            return Err(Error::Poisoned);
        }
        let _turn = self.send_order.turn().await;
        let fragments = frame::plan(
            bytes.len(),
            handles.len(),
            channel.max_datagram(),
            sys::socket::MAX_HANDLES_PER_DATAGRAM,
        )?;
        let count = fragments.len();
        let mut partial = PartialSend {
            channel,
            armed: false,
        };
        for (i, f) in fragments.enumerate() {
            // The socket first: the reactor's readiness (a waiter list
            // locked on every use) only matters when the socket is full.
            let mut sent = channel.send_fragment(&f, bytes, handles, true);
            if matches!(sent, Err(Error::WouldBlock)) {
                sent = backend::when_writable(&self.inner, || {
                    match channel.send_fragment(&f, bytes, handles, true) {
                        Err(Error::WouldBlock) => None,
                        other => Some(other),
                    }
                })
                .await
                .map_err(poll_failed)?;
            }
            if let Err(e) = sent {
                partial.armed = false;
                return Err(channel.send_failed(i, e));
            }
            partial.armed = i + 1 < count;
        }
        // A byte-stream transport may have taken the last fragment only in
        // part, keeping the rest (its handles already went with the first
        // byte): the message is sent once that is out too, and a future
        // dropped before then leaves the peer half a fragment.
        let mut flushed = channel.flush(true);
        if matches!(flushed, Err(Error::WouldBlock)) {
            partial.armed = true;
            flushed = backend::when_writable(&self.inner, || match channel.flush(true) {
                Err(Error::WouldBlock) => None,
                other => Some(other),
            })
            .await
            .map_err(poll_failed)?;
        }
        partial.armed = false;
        flushed.map_err(|e| channel.send_failed(count, e))
    }

    /// Sends a message that fits in one datagram if that can be done now,
    /// without waiting: [`Error::WouldBlock`] (and nothing sent) when
    /// another send is under way, the socket is full or the message needs
    /// several datagrams.
    pub(crate) fn try_send(&self, bytes: &[u8], handles: &[BorrowedHandle<'_>]) -> Result<()> {
        let channel = self.inner.get_ref();
        if channel.is_poisoned() {
            return Err(Error::Poisoned);
        }
        if !self.send_order.try_take() {
            return Err(Error::WouldBlock);
        }
        let _turn = SendTurn(&self.send_order);
        let mut fragments = frame::plan(
            bytes.len(),
            handles.len(),
            channel.max_datagram(),
            sys::socket::MAX_HANDLES_PER_DATAGRAM,
        )?;
        match (fragments.len(), fragments.next()) {
            (1, Some(f)) => {
                channel.send_fragment(&f, bytes, handles, true)?;
                // Sent in part on a byte-stream transport: the fragment is
                // committed (its handles went with its first byte) and
                // nothing would write the rest if this returned, so it is
                // written now, waiting for the peer to make room. That wait
                // is the one blocking call an async path makes, and only in
                // the portable Unix configuration with a full socket.
                match channel.flush(true) {
                    Err(Error::WouldBlock) => channel.flush(false),
                    other => other,
                }
            }
            _ => Err(Error::WouldBlock),
        }
    }

    /// Sends and moves `handles` to the peer. See [`Channel::send_moved`].
    pub async fn send_moved(&self, bytes: &[u8], handles: &mut Vec<Handle>) -> Result<()> {
        let borrowed: Vec<BorrowedHandle<'_>> = handles.iter().map(Handle::borrow).collect();
        self.send(bytes, &borrowed).await?;
        drop(borrowed);
        handles.clear();
        Ok(())
    }

    /// Receives the next message. Cancel-safe: fragments already received
    /// stay with the channel for the next call.
    pub async fn recv(&self) -> Result<Message> {
        let mut msg = Message::new();
        self.recv_into(&mut msg).await?;
        Ok(msg)
    }

    /// Receives the next message into `msg`, reusing its buffers.
    pub async fn recv_into(&self, msg: &mut Message) -> Result<()> {
        let channel = self.inner.get_ref();
        // When the last message was already queued on arrival (a peer that
        // answers before this side gets back here), try the socket before
        // the reactor's readiness, which locks a waiter list on every use.
        // Otherwise ask the reactor first: trying first costs a system call
        // more per wait, since readiness stays set until a try fails.
        if self.found_queued.load(Ordering::Relaxed) {
            match channel.try_recv_into(msg) {
                Err(Error::WouldBlock) => self.found_queued.store(false, Ordering::Relaxed),
                other => return other,
            }
        }
        let mut first = true;
        loop {
            let mut ready = self.inner.readable().await.map_err(poll_failed)?;
            match channel.try_recv_into(msg) {
                Err(Error::WouldBlock) => {
                    first = false;
                    ready.clear_ready();
                }
                other => {
                    if first {
                        self.found_queued.store(true, Ordering::Relaxed);
                    }
                    return other;
                }
            }
        }
    }

    /// Encodes and sends a typed value (see [`typed`]).
    pub async fn send_value<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let (bytes, mut handles) = typed::encode(value)?;
        self.send_moved(&bytes, &mut handles).await
    }

    /// Receives and decodes a typed value (see [`typed`]).
    pub async fn recv_value<T: DeserializeOwned>(&self) -> Result<T> {
        typed::decode(self.recv().await?)
    }
}

/// A [`Listener`] driven by tokio.
#[derive(Debug)]
pub struct AsyncListener {
    inner: AsyncFd<Listener>,
}

impl AsyncListener {
    /// Binds a listener at `path` on the current runtime.
    pub fn bind(path: impl AsRef<std::path::Path>) -> Result<Self> {
        AsyncListener::new(Listener::bind(path)?)
    }

    /// Registers `listener` with the current runtime.
    pub fn new(listener: Listener) -> Result<Self> {
        let inner = backend::register_listener(listener)
            .map_err(|e| Error::os("register with tokio", e))?;
        Ok(AsyncListener { inner })
    }

    /// Waits for the next client.
    pub async fn accept(&self) -> Result<AsyncChannel> {
        loop {
            let mut ready = self.inner.readable().await.map_err(poll_failed)?;
            match self.inner.get_ref().try_accept() {
                Ok(ch) => return AsyncChannel::new(ch),
                Err(Error::WouldBlock) => ready.clear_ready(),
                Err(Error::Disconnected { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The listener underneath.
    pub fn get_ref(&self) -> &Listener {
        self.inner.get_ref()
    }
}
