//! The same channel on the tokio runtime.
//!
//! The socket stays in blocking mode; every call the async side makes is
//! non-blocking per call (`MSG_DONTWAIT`), so a channel can move between
//! blocking and async use without flag changes another process would see.
//!
//! On Windows there is no reactor registration: `backend::Registered`
//! (`sys/windows/async_pipe.rs`) stands in for `AsyncFd`, and readiness
//! means that the end's own overlapped operations (a read of the next
//! datagram's head, a pending write, a pending `ConnectNamedPipe`) are
//! done. The code below is the same on both.

use serde::de::DeserializeOwned;
use serde::Serialize;
#[cfg(unix)]
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

#[cfg(unix)]
use crate::sys::async_fd as backend;
#[cfg(windows)]
use crate::sys::async_pipe::{self as backend, Registered as AsyncFd};

use super::{frame, typed, Channel, Listener, Message};
use crate::{sys, BorrowedHandle, Error, Handle, Result};

/// A [`Channel`] driven by tokio.
#[derive(Debug)]
pub struct AsyncChannel {
    inner: AsyncFd<Channel>,
    send_lock: tokio::sync::Mutex<()>,
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
        let inner = backend::register(channel, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| Error::os("register with tokio", e))?;
        Ok(AsyncChannel {
            inner,
            send_lock: tokio::sync::Mutex::new(()),
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
        let _order = self.send_lock.lock().await;
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
            loop {
                let mut ready = self
                    .inner
                    .writable()
                    .await
                    .map_err(|e| Error::os("poll", e))?;
                match channel.send_fragment(&f, bytes, handles, true) {
                    Ok(()) => break,
                    Err(Error::WouldBlock) => ready.clear_ready(),
                    Err(e) => {
                        partial.armed = false;
                        return Err(channel.send_failed(i, e));
                    }
                }
            }
            partial.armed = i + 1 < count;
        }
        Ok(())
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
        loop {
            let mut ready = self
                .inner
                .readable()
                .await
                .map_err(|e| Error::os("poll", e))?;
            match self.inner.get_ref().try_recv_into(msg) {
                Err(Error::WouldBlock) => ready.clear_ready(),
                other => return other,
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
        // accept4 has no per-call non-blocking flag; the listening socket is
        // ours alone, so setting O_NONBLOCK on it is safe.
        #[cfg(unix)]
        sys::socket::set_nonblocking(std::os::fd::AsFd::as_fd(listener.socket()), true)
            .map_err(|e| Error::os("ioctl(FIONBIO)", e))?;
        let inner = backend::register(listener, Interest::READABLE)
            .map_err(|e| Error::os("register with tokio", e))?;
        Ok(AsyncListener { inner })
    }

    /// Waits for the next client.
    pub async fn accept(&self) -> Result<AsyncChannel> {
        loop {
            let mut ready = self
                .inner
                .readable()
                .await
                .map_err(|e| Error::os("poll", e))?;
            match self.inner.get_ref().try_accept() {
                Ok(ch) => return AsyncChannel::new(ch),
                Err(Error::WouldBlock) => ready.clear_ready(),
                Err(Error::Disconnected) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The listener underneath.
    pub fn get_ref(&self) -> &Listener {
        self.inner.get_ref()
    }
}
