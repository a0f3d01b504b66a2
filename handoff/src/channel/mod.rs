//! Channels: bidirectional message pipes between two processes that carry
//! bytes and any number of handles per message.
//!
//! A message larger than one datagram, or with more handles than one
//! datagram can carry, is split into fragments and put back together on the
//! other side (`frame`). The receiver owns every handle the moment it
//! arrives and closes all of a message's handles if the message is rejected.

pub(crate) mod frame;
mod listener;
pub(crate) mod prefix;
mod recv;
// Unix registers the socket with tokio's reactor; Windows waits for its
// own overlapped operations (sys/windows/async_pipe.rs).
#[cfg(feature = "tokio")]
mod tokio;
pub mod typed;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub use listener::Listener;
#[cfg(feature = "tokio")]
pub use tokio::{AsyncChannel, AsyncListener};

use crate::sys;
use crate::{BorrowedHandle, Error, Handle, Result};
use recv::RecvState;

/// Caps on what a peer can make the receiver hold for one message.
///
/// A message announcing more is rejected before anything is allocated for
/// it, its handles are closed, and its remaining fragments are discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most payload bytes in one message.
    pub max_bytes: u64,
    /// Most handles in one message.
    pub max_handles: u32,
}

impl Default for Limits {
    /// 64 MiB and 4096 handles.
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 20,
            max_handles: 4096,
        }
    }
}

/// A received message: its bytes and the handles that came with it, owned.
///
/// Dropping the message closes every handle still in it.
#[derive(Debug, Default)]
pub struct Message {
    /// The payload.
    pub bytes: Vec<u8>,
    /// The handles, in the order they were sent.
    pub handles: Vec<Handle>,
}

impl Message {
    /// An empty message (a reusable buffer for [`Channel::recv_into`]).
    pub fn new() -> Self {
        Self::default()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.handles.clear();
    }
}

/// One end of a bidirectional channel that carries bytes and handles.
///
/// Sending and receiving take `&self`: a channel can be shared between
/// threads, one sending while another receives. Concurrent senders are
/// serialised per message, so fragments of two messages never interleave.
///
/// On Unix a channel is a `SOCK_SEQPACKET` Unix-domain socket (on macOS and
/// the BSDs, which have none, a `SOCK_STREAM` one with each fragment framed
/// by a length prefix); on Windows a message-mode named pipe.
#[derive(Debug)]
pub struct Channel {
    socket: sys::socket::Socket,
    max_datagram: usize,
    limits: Limits,
    send_lock: Mutex<()>,
    recv: Mutex<RecvState>,
    poisoned: AtomicBool,
}

impl Channel {
    /// Creates a connected pair of channels.
    ///
    /// # References
    /// [`socketpair(2)`](https://man7.org/linux/man-pages/man2/socketpair.2.html)
    #[doc(alias = "socketpair")]
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = sys::socket::pair().map_err(|e| transport_error("socketpair", e))?;
        Ok((Channel::from_socket(a)?, Channel::from_socket(b)?))
    }

    /// Connects to a [`Listener`] bound at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Channel> {
        let socket = sys::socket::connect(path.as_ref()).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => Error::InvalidArgument(e.to_string()),
            _ => transport_error("connect", e),
        })?;
        Channel::from_socket(socket)
    }

    /// Builds a channel from a handle, e.g. one inherited from a parent.
    ///
    /// The handle must be a connected Unix-domain seqpacket socket (a
    /// stream socket in the portable Unix configuration; on Windows, one
    /// end of a message-mode pipe); anything else is
    /// [`Error::WrongKind`] (and the handle is closed).
    pub fn from_handle(handle: Handle) -> Result<Channel> {
        match sys::socket::is_channel(handle.borrow().into()) {
            Ok(true) => {
                Channel::from_socket(sys::socket::Socket::from(sys::OwnedRaw::from(handle)))
            }
            Ok(false) | Err(_) => Err(Error::WrongKind {
                expected: sys::socket::CHANNEL_KIND,
                actual: handle.kind()?,
            }),
        }
    }

    pub(crate) fn from_socket(socket: sys::socket::Socket) -> Result<Channel> {
        let max_datagram = sys::socket::configure(&socket, frame::MAX_DATAGRAM)
            .map_err(|e| Error::os("configure socket", e))?;
        Ok(Channel {
            socket,
            max_datagram,
            limits: Limits::default(),
            send_lock: Mutex::new(()),
            recv: Mutex::new(RecvState::default()),
            poisoned: AtomicBool::new(false),
        })
    }

    /// Sets the caps on what one received message may hold.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The caps in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Sends `bytes` with `handles` attached; the receiver gets its own
    /// duplicate of each handle and the caller keeps theirs.
    ///
    /// Blocks while the peer's queue is full. A peer that has gone is
    /// [`Error::Disconnected`] (never a `SIGPIPE`).
    ///
    /// # References
    /// [`sendmsg(2)`](https://man7.org/linux/man-pages/man2/sendmsg.2.html),
    /// [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html) `SCM_RIGHTS`
    #[doc(alias = "sendmsg")]
    #[doc(alias = "SCM_RIGHTS")]
    pub fn send(&self, bytes: &[u8], handles: &[BorrowedHandle<'_>]) -> Result<()> {
        self.check_poisoned()?;
        let _guard = self.send_lock.lock().unwrap_or_else(|p| p.into_inner());
        let fragments = frame::plan(
            bytes.len(),
            handles.len(),
            self.max_datagram,
            sys::socket::MAX_HANDLES_PER_DATAGRAM,
        )?;
        for (i, f) in fragments.enumerate() {
            if let Err(e) = self.send_fragment(&f, bytes, handles, false) {
                return Err(self.send_failed(i, e));
            }
        }
        Ok(())
    }

    /// Sends `bytes` and moves `handles` to the peer: after a successful
    /// send `handles` is empty and the sender's copies are closed. On error
    /// `handles` is left as it was.
    pub fn send_moved(&self, bytes: &[u8], handles: &mut Vec<Handle>) -> Result<()> {
        let borrowed: Vec<BorrowedHandle<'_>> = handles.iter().map(Handle::borrow).collect();
        self.send(bytes, &borrowed)?;
        drop(borrowed);
        handles.clear();
        Ok(())
    }

    pub(crate) fn send_fragment(
        &self,
        f: &frame::Fragment,
        bytes: &[u8],
        handles: &[BorrowedHandle<'_>],
        nonblocking: bool,
    ) -> Result<()> {
        let raw = sys::handle::as_raw_slice(&handles[f.handles.clone()]);
        loop {
            match sys::socket::send(
                &self.socket,
                &f.header,
                &bytes[f.bytes.clone()],
                raw,
                nonblocking,
            ) {
                Ok(()) => return Ok(()),
                // Someone set the socket non-blocking under a blocking call:
                // wait for room instead of failing.
                Err(e) if !nonblocking && e.kind() == std::io::ErrorKind::WouldBlock => {
                    sys::socket::wait(&self.socket, true).map_err(|e| Error::os("poll", e))?;
                }
                Err(e) => return Err(Error::io("sendmsg", e)),
            }
        }
    }

    /// Writes out the part of a fragment a non-blocking send left with the
    /// transport (a byte stream's unsent tail; nothing on a datagram
    /// transport, whose sends are whole). `WouldBlock` while there is no
    /// room for it.
    #[cfg(feature = "tokio")]
    pub(crate) fn flush(&self, nonblocking: bool) -> Result<()> {
        sys::socket::flush(&self.socket, nonblocking).map_err(|e| Error::io("sendmsg", e))
    }

    /// A failure after part of a message went out leaves the peer with half
    /// a message: the channel cannot be used for messages any more.
    pub(crate) fn send_failed(&self, fragments_sent: usize, e: Error) -> Error {
        if fragments_sent > 0 && !matches!(e, Error::Disconnected { .. }) {
            self.poison();
        }
        e
    }

    /// Receives the next message, blocking until it has arrived whole.
    ///
    /// The peer's exit or close is [`Error::Disconnected`]. A message that
    /// breaks the wire format poisons the channel ([`Error::Malformed`], then
    /// [`Error::Poisoned`]); one over the [`Limits`] or whose handles could
    /// not all be received is discarded with an error and the channel stays
    /// usable. Either way every handle that came with it is closed.
    pub fn recv(&self) -> Result<Message> {
        let mut msg = Message::new();
        self.recv_into(&mut msg)?;
        Ok(msg)
    }

    /// Receives the next message into `msg`, reusing its buffers (its
    /// previous contents are dropped first).
    pub fn recv_into(&self, msg: &mut Message) -> Result<()> {
        self.recv_with(msg, false)
    }

    /// Receives a message if one is ready, else [`Error::WouldBlock`].
    /// Fragments of a message that arrive in pieces are kept between calls.
    pub fn try_recv_into(&self, msg: &mut Message) -> Result<()> {
        self.recv_with(msg, true)
    }

    fn recv_with(&self, msg: &mut Message, nonblocking: bool) -> Result<()> {
        self.check_poisoned()?;
        let mut state = self.recv.lock().unwrap_or_else(|p| p.into_inner());
        msg.clear();
        loop {
            match state.step(self, msg, nonblocking) {
                Ok(true) => return Ok(()),
                Ok(false) => continue,
                Err(Error::WouldBlock) if !nonblocking => {
                    sys::socket::wait(&self.socket, false).map_err(|e| Error::os("poll", e))?;
                }
                Err(e) => {
                    if matches!(e, Error::Malformed(_)) {
                        state.reset();
                        self.poison();
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The peer's process identity, read from the kernel when it connected.
    ///
    /// # References
    /// [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
    /// `SO_PEERCRED`, `SO_PEERPIDFD`
    #[doc(alias = "SO_PEERCRED")]
    #[doc(alias = "SO_PEERPIDFD")]
    pub fn peer_credentials(&self) -> Result<PeerCredentials> {
        let (pid, uid, gid, pidfd) =
            sys::socket::peer_credentials(&self.socket).map_err(|e| match e.kind() {
                std::io::ErrorKind::Unsupported => {
                    Error::Unsupported(sys::socket::NO_PEER_CREDENTIALS)
                }
                _ => Error::os("getsockopt(SO_PEERCRED)", e),
            })?;
        Ok(PeerCredentials {
            pid,
            uid,
            gid,
            process: pidfd.map(Handle::from),
        })
    }

    /// True after a protocol violation: the channel refuses further use.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed)
    }

    /// Makes a poisoned channel usable again. Only for a channel whose
    /// messages are single datagrams on a transport that keeps boundaries,
    /// where a malformed one leaves nothing of the next behind.
    #[cfg_attr(
        any(
            handoff_portable,
            handoff_no_backend,
            not(all(target_os = "linux", feature = "tokio"))
        ),
        allow(dead_code)
    )]
    pub(crate) fn clear_poison(&self) {
        self.poisoned.store(false, Ordering::Relaxed);
    }

    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::Relaxed);
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.is_poisoned() {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// The largest datagram this end sends.
    #[cfg(feature = "tokio")]
    pub(crate) fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// Gives up the channel and returns its socket, e.g. to pass it to a
    /// child process.
    pub fn into_handle(self) -> Handle {
        Handle::from(sys::socket::into_raw(self.socket))
    }

    /// Borrows the channel's socket.
    pub fn as_borrowed(&self) -> BorrowedHandle<'_> {
        BorrowedHandle::from(sys::socket::as_raw(&self.socket))
    }

    pub(crate) fn socket(&self) -> &sys::socket::Socket {
        &self.socket
    }
}

/// A backend that cannot provide the transport says `Unsupported`; that
/// becomes [`Error::Unsupported`] with the backend's reason.
pub(crate) fn transport_error(op: &'static str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::Unsupported {
        Error::Unsupported(sys::socket::NO_TRANSPORT)
    } else {
        Error::os(op, e)
    }
}

/// The identity of the process at the other end of a channel, as the kernel
/// recorded it when the connection was made.
#[derive(Debug)]
pub struct PeerCredentials {
    /// Process id (at connect time; see `process` for a race-free handle).
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// A process handle (pidfd) for the peer that cannot be confused by pid
    /// reuse, where the kernel offers one (Linux ≥ 6.5).
    pub process: Option<Handle>,
}

#[cfg(unix)]
impl std::os::fd::AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        sys::socket::as_raw(&self.socket)
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for Channel {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&sys::socket::as_raw(&self.socket))
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsHandle for Channel {
    fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        sys::socket::as_raw(&self.socket)
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsRawHandle for Channel {
    fn as_raw_handle(&self) -> std::os::windows::io::RawHandle {
        std::os::windows::io::AsRawHandle::as_raw_handle(&sys::socket::as_raw(&self.socket))
    }
}
