//! Channels over Unix-domain `SOCK_STREAM` sockets: the transport of the
//! portable configuration (`handoff_portable`: macOS and the BSDs, which
//! have no seqpacket Unix sockets, and Linux with `--cfg
//! handoff_unix_portable`, so that CI runs this file).
//!
//! The fragments are the seqpacket transport's, each behind the prefix of
//! `stream.rs`; descriptors go with the first byte of a fragment
//! (`SCM_RIGHTS` on its first `sendmsg`). A byte stream delivers a fragment
//! in as many pieces as it likes and descriptors with whatever bytes the
//! kernel chose, so each end keeps state a datagram socket did not need:
//! the unsent tail of a fragment a non-blocking send began, and the part of
//! a fragment received so far (prefix, header, payload, descriptors). That
//! state lives in [`Socket`] behind two locks, one per direction.
//!
//! Framing errors are `InvalidData` (the portable layer's `Malformed`) and
//! stay: once the reader has lost its place in a stream nothing after it
//! can be trusted, so every later receive fails the same way.

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};

use super::socket::{control_words, iovecs, recv_with_rights, send_flags, wait_fd, Received};
use super::stream::{self, Prefix, MIN_FRAME, PREFIX_LEN};
use crate::channel::frame::{HEADER_LEN, MAX_DATAGRAM};

/// The most descriptors one fragment carries. Linux takes 253 per
/// `sendmsg` (`SCM_MAX_FD`); macOS and the BSDs bound a control message by
/// their socket buffers and mbuf sizes instead, and refuse well below 253
/// in practice, so a value every one of them takes is used everywhere the
/// portable configuration runs. Messages with more are split into more
/// fragments, as on Linux.
pub(crate) const MAX_HANDLES_PER_DATAGRAM: usize = 128;

/// The prefix and the fragment header: every well-formed frame starts
/// with them.
const HEAD_LEN: usize = PREFIX_LEN + HEADER_LEN;

/// Zero bytes that pad a short frame to [`MIN_FRAME`].
static PADDING: [u8; MIN_FRAME] = [0; MIN_FRAME];

/// One end of a channel: a connected stream socket and what each direction
/// has of a fragment in progress.
pub(crate) struct Socket {
    fd: OwnedFd,
    tx: Mutex<Tx>,
    rx: Mutex<Rx>,
}

/// The sending side's progress.
#[derive(Default)]
struct Tx {
    /// Bytes of a fragment a non-blocking send began but the socket had no
    /// room for. The fragment's descriptors went with its first byte, so
    /// the rest must follow before anything else is written.
    tail: Vec<u8>,
    /// How much of `tail` has been written since.
    tail_sent: usize,
    /// A write failed part-way through a fragment: the peer holds a cut
    /// fragment, and nothing written after it could be read correctly.
    broken: bool,
}

/// The receiving side's progress through the current frame.
struct Rx {
    /// The frame's first [`MIN_FRAME`] bytes: prefix, fragment header, the
    /// start of the payload (or all of it and padding).
    head: [u8; MIN_FRAME],
    head_got: usize,
    /// The prefix, once its 8 bytes are in and checked.
    prefix: Option<Prefix>,
    /// Payload bytes already read when a read would block or failed; empty
    /// while a frame's payload goes straight to the caller's buffer.
    partial: Vec<u8>,
    /// Descriptors that arrived with the frame's bytes so far, owned.
    fds: Vec<OwnedFd>,
    /// The kernel dropped descriptors of this frame (`MSG_CTRUNC`).
    ctrunc: bool,
    /// Why the stream can no longer be read, once it cannot.
    broken: Option<String>,
}

impl Default for Rx {
    fn default() -> Self {
        Rx {
            head: [0; MIN_FRAME],
            head_got: 0,
            prefix: None,
            partial: Vec::new(),
            fds: Vec::new(),
            ctrunc: false,
            broken: None,
        }
    }
}

impl From<OwnedFd> for Socket {
    fn from(fd: OwnedFd) -> Socket {
        Socket {
            fd,
            tx: Mutex::default(),
            rx: Mutex::default(),
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("fd", &self.fd).finish()
    }
}

/// A poisoned lock only means a panic elsewhere; the state is still whole
/// (every update below is a single assignment or a completed read).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn cut_short() -> io::Error {
    io::Error::other(
        "an earlier fragment was cut short by a failed write; the stream is out of step",
    )
}

/// Borrows the socket's descriptor.
pub(crate) fn as_raw(s: &Socket) -> BorrowedFd<'_> {
    s.fd.as_fd()
}

/// Gives up the socket's descriptor. A fragment half received is dropped
/// with the state (the portable layer's receive state goes the same way);
/// nothing of a later frame is ever read ahead, so between messages
/// nothing is lost. A half-sent fragment cannot be left, because
/// `AsyncChannel::send` does not complete before [`flush`] has written it.
pub(crate) fn into_raw(s: Socket) -> OwnedFd {
    s.fd
}

/// Sends one fragment: its prefix, `header`, `payload` and the padding of
/// a short frame, with `handles` attached to the first byte. Written whole before any other fragment
/// (the `tx` lock is held throughout, so two threads sending on one end
/// never interleave bytes).
///
/// Blocking, it returns once every byte is written. Non-blocking, it
/// returns `WouldBlock` only when nothing of this fragment went out; once
/// the first byte (and with it the descriptors) is written, the fragment is
/// committed: what does not fit is kept as the socket's tail and `Ok` is
/// returned, and [`flush`] (or the next send) writes the tail.
pub(crate) fn send(
    s: &Socket,
    header: &[u8],
    payload: &[u8],
    handles: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<()> {
    let len = header.len() + payload.len();
    if handles.len() > MAX_HANDLES_PER_DATAGRAM || len > MAX_DATAGRAM || header.len() != HEADER_LEN
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fragment larger than one stream frame carries",
        ));
    }
    let fd = s.fd.as_fd();
    let mut tx = lock(&s.tx);
    if tx.broken {
        return Err(cut_short());
    }
    // A tail of the previous fragment goes first; if it cannot all go now,
    // nothing of this fragment has been written and WouldBlock is true.
    flush_locked(fd, &mut tx, nonblocking)?;

    let prefix = stream::encode(len, handles.len());
    let total = stream::frame_size(len);
    let padding = &PADDING[..total - (PREFIX_LEN + len)];
    let parts: [&[u8]; 4] = [&prefix, header, payload, padding];
    let mut written = 0;
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_HANDLES_PER_DATAGRAM))];
    loop {
        let mut slices = [io::IoSlice::new(&[]); 4];
        let count = unsent(&parts, written, &mut slices);
        let mut control = SendAncillaryBuffer::new(&mut space);
        // The descriptors ride on the first byte only; a retry after a
        // partial write must not send them twice.
        if written == 0
            && !handles.is_empty()
            && !control.push(SendAncillaryMessage::ScmRights(handles))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many handles for one fragment",
            ));
        }
        match rustix::net::sendmsg(fd, &slices[..count], &mut control, send_flags(nonblocking)) {
            Ok(0) => {
                tx.broken = written > 0;
                return Err(io::ErrorKind::WriteZero.into());
            }
            Ok(n) => {
                written += n;
                if written == total {
                    return Ok(());
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) if written == 0 => {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Err(rustix::io::Errno::AGAIN) if nonblocking => {
                // Committed: keep the rest for flush.
                let mut tail = Vec::with_capacity(total - written);
                for slice in &slices[..count] {
                    tail.extend_from_slice(slice);
                }
                tx.tail = tail;
                tx.tail_sent = 0;
                return Ok(());
            }
            // A blocking send on a socket someone else made non-blocking.
            Err(rustix::io::Errno::AGAIN) => wait_fd(fd, true)?,
            Err(e) => {
                tx.broken = written > 0;
                return Err(e.into());
            }
        }
    }
}

/// Fills `out` with what of `parts` is left after `skip` bytes; returns how
/// many slices it holds.
fn unsent<'a>(parts: &[&'a [u8]; 4], mut skip: usize, out: &mut [io::IoSlice<'a>; 4]) -> usize {
    let mut n = 0;
    for part in parts {
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        out[n] = io::IoSlice::new(&part[skip..]);
        skip = 0;
        n += 1;
    }
    n
}

/// Writes the tail a non-blocking [`send`] left, if any: `WouldBlock` when
/// the socket still has no room (non-blocking), `Ok` once it is all out.
pub(crate) fn flush(s: &Socket, nonblocking: bool) -> io::Result<()> {
    let mut tx = lock(&s.tx);
    if tx.broken {
        return Err(cut_short());
    }
    flush_locked(s.fd.as_fd(), &mut tx, nonblocking)
}

fn flush_locked(fd: BorrowedFd<'_>, tx: &mut Tx, nonblocking: bool) -> io::Result<()> {
    while tx.tail_sent < tx.tail.len() {
        match rustix::net::send(fd, &tx.tail[tx.tail_sent..], send_flags(nonblocking)) {
            Ok(0) => {
                tx.broken = true;
                return Err(io::ErrorKind::WriteZero.into());
            }
            Ok(n) => tx.tail_sent += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) if nonblocking => {
                return Err(io::ErrorKind::WouldBlock.into())
            }
            Err(rustix::io::Errno::AGAIN) => wait_fd(fd, true)?,
            Err(e) => {
                tx.broken = true;
                return Err(e.into());
            }
        }
    }
    // Idle ends hold no buffer.
    tx.tail = Vec::new();
    tx.tail_sent = 0;
    Ok(())
}

/// Receives one fragment: its header into `header`, its payload appended
/// to `dst` (past the frame's first [`MIN_FRAME`] bytes straight into its
/// spare capacity, the rest through `scratch`), each descriptor that came
/// with the frame's bytes handed to `on_handle`.
///
/// Reads never go past the end of the current frame (its first
/// `MIN_FRAME` bytes, which every frame has, then exactly the rest), so
/// the descriptors of the next frame cannot arrive with this one.
/// Descriptors are owned (and close-on-exec) the moment a `recvmsg`
/// returns them, and held by the socket until the frame is whole; a frame
/// that breaks the framing closes them. `WouldBlock` (non-blocking, or a
/// socket someone else made non-blocking) keeps everything read so far for
/// the next call, so no byte of a half-read fragment is lost, and nothing
/// is ever read that belongs to a later frame, so an end given away
/// (`into_raw`) between messages loses nothing.
///
/// End-of-file is `len == 0`, as on a seqpacket socket, also inside a
/// frame: a peer killed in the middle of a large send is gone, as it is on
/// a seqpacket socket between fragments (the cut frame's descriptors are
/// closed, and the portable layer drops the half-assembled message). A
/// frame longer than the maximum or with more descriptors than one
/// carries, descriptors other than announced, or bytes that are not a
/// frame prefix are `InvalidData`, then every later call is too.
/// `MSG_CTRUNC` is reported as `handles_truncated` with the descriptors
/// that did arrive, as on a seqpacket socket: the stream's bytes are
/// whole, so the channel can skip the message and go on.
pub(crate) fn recv(
    s: &Socket,
    header: &mut [u8],
    dst: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    mut on_handle: impl FnMut(OwnedFd),
    nonblocking: bool,
) -> io::Result<Received> {
    let mut rx = lock(&s.rx);
    if let Some(why) = &rx.broken {
        return Err(invalid(why.clone()));
    }
    let eof = Received {
        len: 0,
        truncated: false,
        handles_truncated: false,
    };
    match rx.read_frame(s.fd.as_fd(), dst, scratch, nonblocking) {
        Ok(None) => Ok(eof),
        Ok(Some(prefix)) => {
            header.copy_from_slice(&rx.head[PREFIX_LEN..HEAD_LEN]);
            let handles_truncated = std::mem::take(&mut rx.ctrunc);
            rx.head_got = 0;
            rx.prefix = None;
            for fd in rx.fds.drain(..) {
                on_handle(fd);
            }
            Ok(Received {
                len: prefix.len,
                truncated: false,
                handles_truncated,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            // Cut by end-of-file: close what arrived. The portable layer
            // reads 0 bytes as the peer gone and drops a half-assembled
            // message with its handles; every later read meets the same
            // end-of-file.
            *rx = Rx::default();
            Ok(eof)
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            // Close what arrived; the stream is unreadable from here on.
            *rx = Rx {
                broken: Some(e.to_string()),
                ..Rx::default()
            };
            Err(e)
        }
        // Would-block or a system error: the frame so far stays.
        Err(e) => Err(e),
    }
}

impl Rx {
    /// Reads the rest of the current frame. `None`: end-of-file where a
    /// frame would start.
    fn read_frame(
        &mut self,
        fd: BorrowedFd<'_>,
        dst: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        nonblocking: bool,
    ) -> io::Result<Option<Prefix>> {
        while self.head_got < MIN_FRAME {
            let rest = &mut self.head[self.head_got..];
            let n = recv_chunk(
                fd,
                &[(rest.as_mut_ptr(), rest.len())],
                nonblocking,
                &mut self.fds,
                &mut self.ctrunc,
            )?;
            if n == 0 {
                if self.head_got == 0 && self.fds.is_empty() {
                    return Ok(None);
                }
                return Err(cut_mid_frame());
            }
            self.head_got += n;
            // Checked as soon as it is in: a frame too short or too long
            // is refused now, not waited on for bytes that belong to no
            // frame.
            if self.prefix.is_none() && self.head_got >= PREFIX_LEN {
                let bytes: &[u8; PREFIX_LEN] = self.head[..PREFIX_LEN].try_into().expect("prefix");
                self.prefix = Some(
                    stream::decode(bytes, MAX_DATAGRAM, MAX_HANDLES_PER_DATAGRAM)
                        .map_err(invalid)?,
                );
            }
            let most = self.prefix.map_or(MAX_HANDLES_PER_DATAGRAM, |p| p.handles);
            self.check_handles(most)?;
        }
        let prefix = self.prefix.expect("decoded once the head is in");
        self.read_payload(fd, prefix, dst, scratch, nonblocking)?;
        if !self.ctrunc && self.fds.len() != prefix.handles {
            return Err(invalid(format!(
                "stream frame announced {} handles, {} arrived with its bytes",
                prefix.handles,
                self.fds.len()
            )));
        }
        Ok(Some(prefix))
    }

    /// More descriptors than the frame may carry have arrived.
    fn check_handles(&self, most: usize) -> io::Result<()> {
        if self.fds.len() > most {
            return Err(invalid(format!(
                "{} handles arrived with a stream frame that carries at most {most}",
                self.fds.len()
            )));
        }
        Ok(())
    }

    /// Appends the frame's payload to `dst`: what the first read brought,
    /// then the rest with reads of exactly its length.
    fn read_payload(
        &mut self,
        fd: BorrowedFd<'_>,
        prefix: Prefix,
        dst: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        nonblocking: bool,
    ) -> io::Result<()> {
        let want = prefix.payload_len();
        if !self.partial.is_empty() {
            return self.resume_payload(fd, prefix, dst, nonblocking);
        }
        let start = dst.len();
        let in_head = want.min(MIN_FRAME - HEAD_LEN);
        dst.extend_from_slice(&self.head[HEAD_LEN..HEAD_LEN + in_head]);
        let mut got = in_head;
        if got == want {
            return Ok(());
        }
        // Straight into the caller's buffers: no copy when `dst` has room
        // (a message announced whole has reserved it), one through the
        // scratch buffer otherwise, as on a seqpacket socket.
        scratch.clear();
        let need = (want - got).saturating_sub(dst.capacity() - dst.len());
        if scratch.capacity() < need {
            scratch.reserve_exact(need);
        }
        while got < want {
            let remaining = want - got;
            let spare = dst.spare_capacity_mut();
            let in_dst = spare.len().min(remaining);
            let spare_ptr = spare.as_mut_ptr().cast::<u8>();
            let extra = scratch.spare_capacity_mut();
            let in_scratch = extra.len().min(remaining - in_dst);
            let extra_ptr = extra.as_mut_ptr().cast::<u8>();
            let read = recv_chunk(
                fd,
                &[(spare_ptr, in_dst), (extra_ptr, in_scratch)],
                nonblocking,
                &mut self.fds,
                &mut self.ctrunc,
            )
            .and_then(|n| if n == 0 { Err(cut_mid_frame()) } else { Ok(n) })
            .and_then(|n| self.check_handles(prefix.handles).map(|()| n));
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    let fatal = matches!(
                        e.kind(),
                        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                    );
                    if !fatal && got > 0 {
                        // Keep what was read for the next call: the
                        // caller's buffers may be cleared before it.
                        self.partial.reserve_exact(want);
                        self.partial.extend_from_slice(&dst[start..]);
                        self.partial.extend_from_slice(scratch);
                    }
                    dst.truncate(start);
                    scratch.clear();
                    return Err(e);
                }
            };
            let to_dst = n.min(in_dst);
            // SAFETY: recvmsg wrote `n` bytes across the two buffers in
            // order: the first `to_dst` into dst's spare capacity, the rest
            // into scratch's; both lengths are within their capacities.
            unsafe {
                dst.set_len(dst.len() + to_dst);
                scratch.set_len(scratch.len() + (n - to_dst));
            }
            got += n;
        }
        dst.extend_from_slice(scratch);
        scratch.clear();
        Ok(())
    }

    /// Continues a payload whose first part is in `partial`.
    fn resume_payload(
        &mut self,
        fd: BorrowedFd<'_>,
        prefix: Prefix,
        dst: &mut Vec<u8>,
        nonblocking: bool,
    ) -> io::Result<()> {
        let want = prefix.payload_len();
        while self.partial.len() < want {
            let have = self.partial.len();
            let spare = self.partial.spare_capacity_mut();
            let take = spare.len().min(want - have);
            let ptr = spare.as_mut_ptr().cast::<u8>();
            let n = recv_chunk(
                fd,
                &[(ptr, take)],
                nonblocking,
                &mut self.fds,
                &mut self.ctrunc,
            )?;
            if n == 0 {
                return Err(cut_mid_frame());
            }
            // SAFETY: recvmsg wrote `n <= take` bytes into the spare
            // capacity (reserved for the whole payload when stashed).
            unsafe { self.partial.set_len(self.partial.len() + n) };
            self.check_handles(prefix.handles)?;
        }
        dst.extend_from_slice(&self.partial);
        self.partial = Vec::new();
        Ok(())
    }
}

/// End-of-file inside a frame (see [`recv`]).
fn cut_mid_frame() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the peer closed the stream in the middle of a fragment",
    )
}

/// One `recvmsg` into up to two buffers, taking ownership of every
/// descriptor it delivered (pushed onto `fds`, close-on-exec) and noting
/// `MSG_CTRUNC`. Returns the bytes read; 0 is end-of-file.
///
/// libc rather than rustix, as in the seqpacket transport: the payload
/// lands in uninitialised spare capacity, which rustix's `recvmsg` does
/// not take. The control buffer is sized with rustix's `cmsg_space!` for
/// the most descriptors a frame carries; a peer attaching more finds them
/// dropped by the kernel (`MSG_CTRUNC`), never left in our table.
fn recv_chunk(
    fd: BorrowedFd<'_>,
    bufs: &[(*mut u8, usize)],
    nonblocking: bool,
    fds: &mut Vec<OwnedFd>,
    ctrunc: &mut bool,
) -> io::Result<usize> {
    // u64 words keep the buffer aligned for cmsghdr; left uninitialised,
    // since the kernel writes msg_controllen bytes and the walk below reads
    // no further.
    const CONTROL_WORDS: usize = rustix::cmsg_space!(ScmRights(MAX_HANDLES_PER_DATAGRAM)) / 8 + 1;
    let mut control = MaybeUninit::<[u64; CONTROL_WORDS]>::uninit();
    let buf = |i: usize| bufs.get(i).copied().unwrap_or((std::ptr::null_mut(), 0));
    let (mut iov, count) = iovecs([buf(0), buf(1)]);
    // SAFETY: each iovec is one of the caller's buffers, writable for its
    // length and outliving the call (see `recv_chunk`'s callers).
    let (n, msg_flags) = unsafe {
        recv_with_rights(
            fd,
            &mut iov[..count],
            control_words(&mut control),
            nonblocking,
            &mut |owned| fds.push(owned),
        )
    }?;
    if msg_flags & libc::MSG_CTRUNC != 0 {
        *ctrunc = true;
    }
    Ok(n)
}

/// A zero-byte read from a stream is always end-of-file: the transport
/// never reports an empty frame (`recv` turns the 0-byte reads it sees
/// into `len == 0` only at end-of-file between frames).
pub(crate) fn peer_hung_up(_s: &Socket) -> bool {
    true
}
