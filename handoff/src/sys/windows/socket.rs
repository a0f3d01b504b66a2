//! Channels on Windows: a message-mode named pipe, with handles pulled by
//! whichever process reads the message.
//!
//! A pipe keeps message boundaries (as a seqpacket socket does) but carries
//! no handles, so each datagram starts with a transport prefix
//! (`docs/wire-format.md`, "Windows"):
//!
//! * the sender duplicates each handle into *its own* process (an in-flight
//!   copy, owned by the sending end) and writes its pid, its creation time,
//!   a batch sequence number and the copies' 32-bit values;
//! * the reader opens the sender by pid (`PROCESS_DUP_HANDLE`), checks its
//!   creation time (so a reused pid is never pulled from), copies each value
//!   into itself with `DuplicateHandle` and owns the copy at once, then
//!   acknowledges the batch;
//! * the acknowledgement tells the sender to close its in-flight copies.
//!
//! Who owns a handle in flight, then, is always the sender's process:
//! a reader never owns a value it did not create by pulling, so a forged or
//! stale value can never make it close one of its own handles; a reader that
//! dies just never acknowledges, and the sender closes its copies when the
//! pipe breaks or the end is dropped; a reader end that moved to another
//! process is no different, because every message names the process to pull
//! from (servo/ipc-channel#277 and #310 pushed handles into a process fixed
//! when the pipe was made).

use std::collections::VecDeque;
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle};
use std::path::Path;

use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{DuplicateHandle, DUPLICATE_SAME_ACCESS, HANDLE};

use windows_sys::Win32::Storage::FileSystem::{GetFileType, ReadFile, WriteFile, FILE_TYPE_PIPE};
use windows_sys::Win32::System::Pipes::{
    GetNamedPipeClientProcessId, GetNamedPipeInfo, PeekNamedPipe, PIPE_TYPE_MESSAGE,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, PROCESS_DUP_HANDLE, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::handle::{from_wire, to_wire};
use super::overlapped::{run as overlapped, Op, HEAD_LEN};
use super::pipe::{client, pipe_name, server_instance, wait_for_client, wide};
use super::{cvt, process_identity};
use crate::channel::frame::MAX_DATAGRAM;
use crate::channel::prefix::{self, Datagram, ACK_LEN, KIND_ACK, MAX_WIRE, PREFIX_LEN};

/// Handles per datagram, as on Linux (the prefix grows 4 bytes per handle).
pub(crate) const MAX_HANDLES_PER_DATAGRAM: usize = prefix::MAX_HANDLES;

/// Why a channel cannot be made (never reported by this backend: named
/// pipes always exist).
pub(crate) const NO_TRANSPORT: &str = "this system has no named pipes";

/// Why peer credentials are unavailable (never reported by this backend:
/// every pipe records the pids of the processes that opened its ends).
pub(crate) const NO_PEER_CREDENTIALS: &str = "this pipe does not record its peer's process id";

/// What [`is_channel`] wants, for the error when it is not.
pub(crate) const CHANNEL_KIND: crate::KindName = crate::KindName::Pipe;

/// How long a dropped end waits for its peer to take handles still in
/// flight before closing them.
const LINGER: Duration = Duration::from_secs(30);

/// In-flight copies whose end was turned into a raw handle before they
/// were acknowledged. The new holder of the end cannot know them, and
/// closing them early could let the reader pull whatever handle reuses the
/// value, so they stay open until this process exits.
static ORPHANS: Mutex<Vec<OwnedHandle>> = Mutex::new(Vec::new());

/// One end of a channel.
#[derive(Debug)]
pub(crate) struct Socket {
    /// `None` only after `into_raw` took it.
    pipe: Option<OwnedHandle>,
    state: Mutex<State>,
    /// Held by whoever reads from the pipe, so a send that drains
    /// acknowledgements never takes a datagram meant for `recv`. Only a
    /// holder starts a read (a head read included) or reads the rest of a
    /// datagram.
    reader: Mutex<()>,
    /// Operations that outlive the call that started them (async I/O).
    ops: Mutex<Ops>,
}

/// Overlapped operations owned by the end rather than by a call, so a
/// dropped future never frees what the kernel writes to (`overlapped.rs`).
#[derive(Debug, Default)]
struct Ops {
    /// A read of the next datagram's first `HEAD_LEN` bytes, started by an
    /// async receiver waiting for readiness. Whoever reads next takes it
    /// first, so datagrams stay in order and none is lost when the future
    /// that started it is dropped.
    head: Option<Op>,
    /// An async send's last datagram the pipe has queued but not yet
    /// taken whole, with its batch. The next send waits for it.
    write: Option<(Op, u64)>,
    /// Acknowledgements still being written (never waited for by `recv`,
    /// so a reader is not held up by a peer that is not reading).
    acks: Vec<Op>,
}

#[derive(Debug)]
struct State {
    /// Copies this end sent, by batch, oldest first, until acknowledged.
    in_flight: VecDeque<(u64, Vec<OwnedHandle>)>,
    /// The next batch number; starts random so that acknowledgements meant
    /// for an earlier holder of this end can never match.
    next_batch: u64,
    /// The process last pulled from: pid, creation time, handle.
    source: Option<(u32, u64, OwnedHandle)>,
}

impl From<OwnedHandle> for Socket {
    fn from(pipe: OwnedHandle) -> Socket {
        let mut seed = [0u8; 8];
        let _ = super::random::fill(&mut seed);
        Socket {
            pipe: Some(pipe),
            state: Mutex::new(State {
                in_flight: VecDeque::new(),
                next_batch: u64::from_le_bytes(seed),
                source: None,
            }),
            reader: Mutex::new(()),
            ops: Mutex::new(Ops::default()),
        }
    }
}

impl Socket {
    fn pipe(&self) -> HANDLE {
        match &self.pipe {
            Some(p) => p.as_raw_handle() as HANDLE,
            None => std::ptr::null_mut(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ops(&self) -> std::sync::MutexGuard<'_, Ops> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the copies of batch `batch`, which the peer has taken.
    fn release(&self, batch: u64) {
        let mut state = self.state();
        if let Some(i) = state.in_flight.iter().position(|(b, _)| *b == batch) {
            state.in_flight.remove(i);
        }
    }

    /// The peer is gone: nothing in flight can be taken any more.
    fn release_all(&self) {
        self.state().in_flight.clear();
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.pipe.is_none() {
            return;
        }
        if !self.state().in_flight.is_empty() {
            linger(self);
        }
        settle(self);
    }
}

/// Ends the operations the end owns, before its pipe is closed or given
/// away: a pending write is given up to `LINGER` to be taken (a blocking
/// send would have waited for it), acknowledgements likewise; a head read
/// is cancelled. Whatever a finished head read holds is discarded, as
/// closing the end discards what is waiting in the pipe.
fn settle(s: &Socket) {
    let ops = std::mem::take(&mut *s.ops());
    let deadline = Instant::now() + LINGER;
    let left = || deadline.saturating_duration_since(Instant::now());
    if let Some((mut op, _)) = ops.write {
        op.wait(Some(left()));
    }
    for mut op in ops.acks {
        op.wait(Some(left()));
    }
    if let Some(head) = ops.head {
        if matches!(head.result(), Some(Ok((n, _))) if n > 0) {
            tracing::debug!("a channel end closed or given away with a datagram read ahead");
        }
    }
}

/// Waits (bounded) for the peer to acknowledge what is still in flight, so
/// a process that sends handles and exits does not take them with it.
/// Everything else that arrives is discarded, as closing the end would; a
/// batch of handles among it is acknowledged so the peer frees its copies.
///
/// Copies still unacknowledged at the deadline are kept until this process
/// exits rather than closed: the peer may still pull them, and a closed
/// value can be reused by an unrelated handle it would then copy.
fn linger(s: &Socket) {
    let deadline = Instant::now() + LINGER;
    let mut buf = Vec::with_capacity(MAX_WIRE);
    let _reading = s.reader.lock().unwrap_or_else(|p| p.into_inner());
    while !s.state().in_flight.is_empty() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        match read_message(s, &mut buf, Some(left)) {
            Ok(_) => match prefix::parse(&buf) {
                Datagram::Ack(batch) => s.release(batch),
                Datagram::Fragment(f) if f.count > 0 => ack(s, f.batch),
                _ => {}
            },
            // The reader is gone: nothing in flight can be pulled any more,
            // so the copies close with the state.
            Err(e) if is_gone(&e) => return,
            // A datagram too long to read is the peer's problem, not a
            // reason to stop waiting.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
            Err(_) => break,
        }
    }
    let left = std::mem::take(&mut s.state().in_flight);
    if !left.is_empty() {
        let mut orphans = ORPHANS.lock().unwrap_or_else(|p| p.into_inner());
        orphans.extend(left.into_iter().flat_map(|(_, copies)| copies));
    }
}

/// Reads one whole datagram into `buf` (cleared first). A datagram longer
/// than `MAX_WIRE` is read to its end and reported as `InvalidData`.
///
/// A head read an async receiver started is taken first: its bytes begin
/// the datagram, and the rest (`ERROR_MORE_DATA`) is read here. The caller
/// holds `reader`, so nobody else can take that rest.
fn read_message(s: &Socket, buf: &mut Vec<u8>, timeout: Option<Duration>) -> io::Result<()> {
    buf.clear();
    let head = s.ops().head.take();
    if let Some(mut op) = head {
        let Some(r) = op.wait(timeout) else {
            s.ops().head = Some(op);
            return Err(io::ErrorKind::TimedOut.into());
        };
        let (n, more) = r?;
        buf.extend_from_slice(&op.data()[..n]);
        if !more {
            return Ok(());
        }
    }
    let start = buf.len();
    let pipe = s.pipe();
    let spare = buf.spare_capacity_mut();
    let (ptr, cap) = (
        spare.as_mut_ptr().cast::<u8>(),
        spare.len().min(MAX_WIRE - start),
    );
    // SAFETY: the spare capacity is writable for `cap` bytes and stays put
    // until the read is done; the kernel only writes.
    let (n, more) = unsafe { read_into(pipe, ptr, cap, timeout) }?;
    // SAFETY: the read wrote `n` bytes at the start of the spare capacity,
    // right after the `start` bytes already there.
    unsafe { buf.set_len(start + n) };
    if more {
        let mut rest = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `rest` is writable for its length and outlives the read.
            let (_, more) = unsafe { read_into(pipe, rest.as_mut_ptr(), rest.len(), None) }?;
            if !more {
                break;
            }
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("datagram longer than the {MAX_WIRE}-byte maximum"),
        ));
    }
    Ok(())
}

/// One overlapped `ReadFile` of at most `len` bytes into `ptr`: the bytes
/// read, and whether the message goes on past them (`ERROR_MORE_DATA`).
///
/// # Safety
/// `ptr` is writable for `len` bytes until this returns (it waits for the
/// operation, or cancels it, before returning).
unsafe fn read_into(
    pipe: HANDLE,
    ptr: *mut u8,
    len: usize,
    timeout: Option<Duration>,
) -> io::Result<(usize, bool)> {
    overlapped(pipe, timeout, |ov| {
        // SAFETY: the caller's guarantee; the kernel only writes.
        unsafe { ReadFile(pipe, ptr, len as u32, std::ptr::null_mut(), ov) }
    })
}

/// Writes one datagram.
fn write_message(s: &Socket, bytes: &[u8]) -> io::Result<()> {
    let pipe = s.pipe();
    let (n, _) = overlapped(pipe, None, |ov| {
        // SAFETY: `bytes` is readable and outlives the operation.
        unsafe {
            WriteFile(
                pipe,
                bytes.as_ptr(),
                bytes.len() as u32,
                std::ptr::null_mut(),
                ov,
            )
        }
    })?;
    if n != bytes.len() {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(())
}

fn malformed(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

/// Tells the peer its batch was taken (or discarded). A peer that is gone
/// needs no telling. The write is not waited for: a reader is never held up
/// by a peer whose side of the pipe is full (both ends receiving while
/// their peer's acknowledgements queue up would otherwise wait forever).
fn ack(s: &Socket, batch: u64) {
    let d = prefix::ack(batch).to_vec();
    let mut ops = s.ops();
    ops.acks.retain(|op| op.result().is_none());
    if let Ok(op) = Op::write(s.pipe(), d) {
        if op.result().is_none() {
            ops.acks.push(op);
        }
    }
}

/// A handle to the process that sent a batch, checked to be the process
/// that wrote it (pid and creation time), cached per channel end.
fn source(state: &mut State, pid: u32, created: u64) -> io::Result<HANDLE> {
    if (pid, created) == process_identity() {
        // SAFETY: the pseudo handle of this process, valid forever.
        return Ok(unsafe { GetCurrentProcess() });
    }
    if let Some((p, c, h)) = &state.source {
        if (*p, *c) == (pid, created) {
            return Ok(h.as_raw_handle() as HANDLE);
        }
    }
    // SAFETY: opening a process by id; the result is checked and owned.
    let h = unsafe {
        super::owned(OpenProcess(
            PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION,
            0,
            pid,
        ))
    }?;
    // SAFETY: `h` is a process handle with PROCESS_QUERY_LIMITED_INFORMATION.
    if unsafe { super::creation_time(h.as_raw_handle() as HANDLE) }? != created {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the sending process has exited (its pid now names another process)",
        ));
    }
    let raw = h.as_raw_handle() as HANDLE;
    state.source = Some((pid, created, h));
    Ok(raw)
}

/// Copies handle `value` out of process `from` into this one.
fn pull(from: HANDLE, value: u32) -> io::Result<OwnedHandle> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: `from` is a process handle with PROCESS_DUP_HANDLE (or this
    // process's pseudo handle); the value names a handle in *that* process,
    // so a wrong value can only fail or copy one of the sender's own
    // handles, never touch ours; `out` is ours to write.
    cvt(unsafe {
        DuplicateHandle(
            from,
            from_wire(value) as HANDLE,
            GetCurrentProcess(),
            &mut out,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    })?;
    // SAFETY: DuplicateHandle created `out` in this process for us alone.
    Ok(unsafe { super::handle::own_raw(out as std::os::windows::io::RawHandle) })
}

/// Creates a connected pair: the two ends of a new named pipe whose name
/// is random, which only this user may open, and which only this process
/// has connected to.
pub(crate) fn pair() -> io::Result<(Socket, Socket)> {
    let mut nonce = [0u8; 16];
    super::random::fill(&mut nonce)?;
    let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let name = format!(r"\\.\pipe\handoff-{}-{hex}", std::process::id());
    let name = wide(std::ffi::OsStr::new(&name));
    // One instance: nobody can open a second end.
    let server = server_instance(&name, true, 1)?;
    let client = client(&name)?;
    wait_for_client(&server)?;
    let mut client_pid = 0u32;
    // SAFETY: the server end is ours; `client_pid` is ours to write.
    cvt(unsafe { GetNamedPipeClientProcessId(server.as_raw_handle() as HANDLE, &mut client_pid) })?;
    if client_pid != std::process::id() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "another process connected to the new pipe first",
        ));
    }
    Ok((Socket::from(server), Socket::from(client)))
}

/// Prepares a channel end and returns the largest datagram it sends.
pub(crate) fn configure(_s: &Socket, wanted_datagram: usize) -> io::Result<usize> {
    Ok(wanted_datagram.min(MAX_DATAGRAM))
}

/// True when `h` is a message-mode pipe, the only kind a channel runs over.
pub(crate) fn is_channel(h: BorrowedHandle<'_>) -> io::Result<bool> {
    let raw = h.as_raw_handle() as HANDLE;
    // SAFETY: the handle is borrowed for the call.
    if unsafe { GetFileType(raw) } != FILE_TYPE_PIPE {
        return Ok(false);
    }
    Ok(pipe_flags(raw).is_ok_and(|flags| flags & PIPE_TYPE_MESSAGE != 0))
}

/// `GetNamedPipeInfo`'s flags for `pipe` (which end, which mode).
fn pipe_flags(pipe: HANDLE) -> io::Result<u32> {
    let mut flags = 0u32;
    // SAFETY: the caller holds `pipe` open for the call; the out pointers
    // not needed may be null.
    cvt(unsafe {
        GetNamedPipeInfo(
            pipe,
            &mut flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    })?;
    Ok(flags)
}

/// Bytes waiting in the pipe (0 when none), or the pipe's error.
fn available(s: &Socket) -> io::Result<(u32, [u8; ACK_LEN], u32, u32)> {
    let mut head = [0u8; ACK_LEN];
    let (mut read, mut total, mut left) = (0u32, 0u32, 0u32);
    // SAFETY: `head` is writable for its size; the pipe is ours.
    cvt(unsafe {
        PeekNamedPipe(
            s.pipe(),
            head.as_mut_ptr().cast(),
            ACK_LEN as u32,
            &mut read,
            &mut total,
            &mut left,
        )
    })?;
    Ok((total, head, read, left))
}

/// Closes in-flight copies the peer has acknowledged, as long as
/// acknowledgements are what waits at the head of the pipe and nobody is
/// in `recv` (which handles them itself). Keeps a send-only end from
/// piling up copies.
fn drain_acks(s: &Socket) {
    let Ok(_reading) = s.reader.try_lock() else {
        return;
    };
    // A head read holds the next datagram (or waits for it): leave it to
    // the receiver.
    if s.ops().head.is_some() {
        return;
    }
    let mut buf = Vec::with_capacity(ACK_LEN);
    loop {
        match available(s) {
            Ok((total, head, read, left))
                if total > 0 && read as usize == ACK_LEN && left == 0 && head[0] == KIND_ACK => {}
            _ => return,
        }
        match read_message(s, &mut buf, None) {
            Ok(()) => match prefix::parse(&buf) {
                Datagram::Ack(batch) => s.release(batch),
                _ => return,
            },
            Err(_) => return,
        }
    }
}

/// Nothing to write out: a message-mode pipe takes a datagram whole (a
/// write that cannot complete at once stays queued in order with the end).
pub(crate) fn flush(_s: &Socket, _nonblocking: bool) -> io::Result<()> {
    Ok(())
}

/// Sends one datagram: the fragment (`header` and `payload`) behind the
/// transport prefix naming in-flight copies of `handles`.
pub(crate) fn send(
    s: &Socket,
    header: &[u8],
    payload: &[u8],
    handles: &[BorrowedHandle<'_>],
    nonblocking: bool,
) -> io::Result<()> {
    if handles.len() > MAX_HANDLES_PER_DATAGRAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many handles for one datagram",
        ));
    }
    // The write an async send left pending goes first: a non-blocking send
    // waits for it elsewhere (`poll_writable`), a blocking one here.
    let pending = {
        let mut ops = s.ops();
        match &ops.write {
            Some((op, _)) if nonblocking && op.result().is_none() => {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            _ => ops.write.take(),
        }
    };
    if let Some((mut op, batch)) = pending {
        if let Some(Err(e)) = op.wait(None) {
            // Never taken, so never pulled: its copies can close.
            s.release(batch);
            return Err(gone(s, e));
        }
    }
    if !handles.is_empty() {
        drain_acks(s);
    }
    let copies = handles
        .iter()
        .map(|h| h.try_clone_to_owned())
        .collect::<io::Result<Vec<_>>>()?;
    let values = copies
        .iter()
        .map(|c| {
            to_wire(c.as_raw_handle()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a handle value does not fit in 32 bits",
                )
            })
        })
        .collect::<io::Result<Vec<u32>>>()?;
    let (pid, created) = process_identity();
    let batch = if copies.is_empty() {
        0
    } else {
        let mut state = s.state();
        state.next_batch = state.next_batch.wrapping_add(1);
        state.next_batch
    };
    let mut d = Vec::with_capacity(PREFIX_LEN + 4 * copies.len() + header.len() + payload.len());
    prefix::begin_fragment(&mut d, pid, created, batch, &values);
    d.extend_from_slice(header);
    d.extend_from_slice(payload);
    if !copies.is_empty() {
        s.state().in_flight.push_back((batch, copies));
    }
    if nonblocking {
        // The pipe queues the write in order even when it cannot take it
        // whole yet; the end keeps the operation until it has.
        let len = d.len();
        let result = Op::write(s.pipe(), d).and_then(|op| match op.result() {
            None => {
                s.ops().write = Some((op, batch));
                Ok(())
            }
            Some(Ok((n, _))) if n == len => Ok(()),
            Some(Ok(_)) => Err(io::ErrorKind::WriteZero.into()),
            Some(Err(e)) => Err(e),
        });
        return result.map_err(|e| {
            s.release(batch);
            gone(s, e)
        });
    }
    match write_message(s, &d) {
        Ok(()) => Ok(()),
        Err(e) => {
            // Never written, so never pulled: close the copies now.
            s.release(batch);
            Err(gone(s, e))
        }
    }
}

fn is_gone(e: &io::Error) -> bool {
    // ERROR_PIPE_NOT_CONNECTED: the other end was closed and this instance
    // disconnected; std gives it no kind of its own.
    const ERROR_PIPE_NOT_CONNECTED: i32 = 233;
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::NotConnected | io::ErrorKind::ConnectionReset
    ) || e.raw_os_error() == Some(ERROR_PIPE_NOT_CONNECTED)
}

/// What one read delivered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Bytes of the fragment (header included) that were stored; 0 means
    /// the datagram held no fragment.
    pub len: usize,
    /// The datagram was longer than the maximum (never set here: such a
    /// datagram is `InvalidData`).
    pub truncated: bool,
    /// Some handles could not be pulled from the sender.
    pub handles_truncated: bool,
}

thread_local! {
    /// Where datagrams land before they are taken apart. One per thread,
    /// not per channel.
    static WIRE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Receives one fragment: its header into `header`, its payload appended
/// to `dst`, and each handle it names pulled from the sender and handed to
/// `on_handle`, owned, before anything else is looked at. Acknowledgements
/// that arrive first are consumed here.
pub(crate) fn recv(
    s: &Socket,
    header: &mut [u8],
    dst: &mut Vec<u8>,
    _scratch: &mut Vec<u8>,
    mut on_handle: impl FnMut(OwnedHandle),
    nonblocking: bool,
) -> io::Result<Received> {
    let _reading = s.reader.lock().unwrap_or_else(|p| p.into_inner());
    WIRE.with(|wire| {
        let mut buf = wire.borrow_mut();
        if buf.capacity() < MAX_WIRE {
            buf.reserve_exact(MAX_WIRE);
        }
        loop {
            if nonblocking {
                let head = s.ops().head.as_ref().map(|op| op.result().is_some());
                match head {
                    // The head read has the next datagram, or the pipe's error.
                    Some(true) => {}
                    Some(false) => return Err(io::ErrorKind::WouldBlock.into()),
                    None => match available(s) {
                        Ok((0, ..)) => return Err(io::ErrorKind::WouldBlock.into()),
                        Ok(_) => {}
                        Err(e) => return Err(gone(s, e)),
                    },
                }
            }
            read_message(s, &mut buf, None).map_err(|e| gone(s, e))?;
            let f = match prefix::parse(&buf) {
                Datagram::Ack(batch) => {
                    s.release(batch);
                    continue;
                }
                Datagram::Bad(why) => return Err(malformed(why)),
                Datagram::Fragment(f) => f,
            };
            let mut handles_truncated = false;
            if f.count > 0 {
                let mut state = s.state();
                match source(&mut state, f.pid, f.created) {
                    Ok(from) => {
                        for v in f.values() {
                            match pull(from, v) {
                                Ok(h) => on_handle(h),
                                Err(_) => {
                                    handles_truncated = true;
                                    break;
                                }
                            }
                        }
                    }
                    Err(_) => handles_truncated = true,
                }
                drop(state);
                ack(s, f.batch);
            }
            let in_header = f.fragment.len().min(header.len());
            header[..in_header].copy_from_slice(&f.fragment[..in_header]);
            if f.fragment.len() > header.len() {
                dst.extend_from_slice(&f.fragment[header.len()..]);
            }
            return Ok(Received {
                len: f.fragment.len(),
                truncated: false,
                handles_truncated,
            });
        }
    })
}

/// A failed read: when the peer is gone, nothing in flight can be taken.
fn gone(s: &Socket, e: io::Error) -> io::Error {
    if is_gone(&e) {
        s.release_all();
        if e.kind() != io::ErrorKind::BrokenPipe {
            return io::ErrorKind::NotConnected.into();
        }
    }
    e
}

/// True for the errors that mean "no handles or memory right now" (the
/// RPC server answers those with a fault instead of ending the connection).
pub(crate) fn is_exhaustion(e: &io::Error) -> bool {
    use windows_sys::Win32::Foundation::{
        ERROR_NOT_ENOUGH_MEMORY, ERROR_NOT_ENOUGH_QUOTA, ERROR_NO_SYSTEM_RESOURCES,
        ERROR_OUTOFMEMORY, ERROR_TOO_MANY_OPEN_FILES,
    };
    matches!(
        e.raw_os_error().map(|c| c as u32),
        Some(
            ERROR_NOT_ENOUGH_MEMORY
                | ERROR_OUTOFMEMORY
                | ERROR_NO_SYSTEM_RESOURCES
                | ERROR_NOT_ENOUGH_QUOTA
                | ERROR_TOO_MANY_OPEN_FILES
        )
    )
}

/// True when the peer has closed its end.
pub(crate) fn peer_hung_up(s: &Socket) -> bool {
    available(s).is_err()
}

/// Ready when a datagram (or the end of the pipe) waits for `recv`. Starts
/// a head read if none is under way and leaves it with the end, so a future
/// dropped here loses nothing: whoever receives next takes it.
pub(crate) fn poll_readable(s: &Socket, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut ops = s.ops();
    if ops.head.is_none() {
        // Only a holder of `reader` may start a read. Whoever holds it now
        // is receiving (the async side only briefly, without blocking):
        // come back after it.
        let Ok(_reading) = s.reader.try_lock() else {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        match Op::read(s.pipe(), HEAD_LEN) {
            Ok(op) => ops.head = Some(op),
            // The pipe's own error (the peer is gone): `recv` reports it.
            Err(_) => return Poll::Ready(Ok(())),
        }
    }
    match ops.head.as_mut() {
        Some(op) => op.poll(cx).map(|_| Ok(())),
        None => Poll::Ready(Ok(())),
    }
}

/// Ready when no write of an async send is still pending, so the next
/// datagram can be queued.
pub(crate) fn poll_writable(s: &Socket, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    match s.ops().write.as_mut() {
        Some((op, _)) => op.poll(cx).map(|_| Ok(())),
        None => Poll::Ready(Ok(())),
    }
}

/// Waits until a datagram is waiting (writes never report would-block).
pub(crate) fn wait(s: &Socket, writable: bool) -> io::Result<()> {
    if writable {
        return Ok(());
    }
    let mut pause = Duration::from_millis(1);
    loop {
        if available(s)?.0 > 0 {
            return Ok(());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Borrows the pipe.
pub(crate) fn as_raw(s: &Socket) -> BorrowedHandle<'_> {
    match &s.pipe {
        Some(p) => p.as_handle(),
        // `into_raw` consumes the socket, so a live socket always has it.
        None => unreachable!("a channel end without its pipe"),
    }
}

/// Gives up the pipe, e.g. to pass it to another process. Copies still in
/// flight are kept until this process exits (see [`ORPHANS`]).
pub(crate) fn into_raw(mut s: Socket) -> OwnedHandle {
    settle(&s);
    let in_flight = std::mem::take(&mut s.state().in_flight);
    if !in_flight.is_empty() {
        let mut orphans = ORPHANS.lock().unwrap_or_else(|p| p.into_inner());
        orphans.extend(in_flight.into_iter().flat_map(|(_, copies)| copies));
    }
    match s.pipe.take() {
        Some(p) => p,
        None => unreachable!("a channel end without its pipe"),
    }
}

/// Connects to a listener's pipe, waiting while all its instances are busy.
pub(crate) fn connect(path: &Path) -> io::Result<Socket> {
    use windows_sys::Win32::Foundation::ERROR_PIPE_BUSY;
    use windows_sys::Win32::System::Pipes::WaitNamedPipeW;
    let name = pipe_name(path)?;
    loop {
        match client(&name) {
            Ok(c) => return Ok(Socket::from(c)),
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                // SAFETY: a NUL-terminated name; only waits.
                unsafe { WaitNamedPipeW(name.as_ptr(), 5000) };
            }
            Err(e) => return Err(e),
        }
    }
}

/// What stands for the uid and gid in peer credentials: Windows names
/// users and groups by SID, which is not a number, so no number is
/// claimed. `u32::MAX` is `(uid_t)-1`, which no Unix user has either.
pub(crate) const NO_ID: u32 = u32::MAX;

/// The peer's pid as the pipe recorded it, and a handle to that process.
///
/// A server end asks for the client's pid (`GetNamedPipeClientProcessId`),
/// a client end for the server's (`GetNamedPipeServerProcessId`). Windows
/// records the process that *opened* that end: for a listener's channel,
/// the client that connected (as `SO_PEERCRED` records it at `connect`);
/// for `Channel::pair`, this process, which created both ends, even after
/// one end is passed to a child (`socketpair` behaves the same). uid and
/// gid are [`NO_ID`]. The process handle is opened by pid now, not when
/// the pipe connected: it names the peer while the peer runs, but if the
/// peer has exited and its pid been reused it names another process, and
/// it is `None` when the process cannot be opened.
pub(crate) fn peer_credentials(s: &Socket) -> io::Result<(u32, u32, u32, Option<OwnedHandle>)> {
    use windows_sys::Win32::System::Pipes::{GetNamedPipeServerProcessId, PIPE_SERVER_END};
    let pipe = s.pipe();
    let mut pid = 0u32;
    if pipe_flags(pipe)? & PIPE_SERVER_END != 0 {
        // SAFETY: our own pipe handle; `pid` is ours to write.
        cvt(unsafe { GetNamedPipeClientProcessId(pipe, &mut pid) })?;
    } else {
        // SAFETY: as above.
        cvt(unsafe { GetNamedPipeServerProcessId(pipe, &mut pid) })?;
    }
    Ok((pid, NO_ID, NO_ID, super::process::open_peer(pid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram naming values of the receiver's own table: the receiver
    /// gets copies, and its own handles stay open and its own.
    #[test]
    fn forged_values_never_close_the_receivers_handles() {
        let before = super::super::handle::count_open().unwrap();
        {
            let (a, b) = pair().unwrap();
            let mine = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
            let v = to_wire(mine.as_raw_handle()).unwrap();
            let forge = |created: u64| {
                let (pid, _) = process_identity();
                let mut d = vec![prefix::KIND_FRAGMENT, 0, 1, 0];
                d.extend_from_slice(&pid.to_le_bytes());
                d.extend_from_slice(&created.to_le_bytes());
                d.extend_from_slice(&1u64.to_le_bytes());
                d.extend_from_slice(&v.to_le_bytes());
                d.extend_from_slice(&[1, 3, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                write_message(&a, &d).unwrap();
            };
            let mut header = [0u8; 16];
            let (mut dst, mut scratch) = (Vec::new(), Vec::new());

            // The next datagram, and the handles that came with it.
            let mut recv_one = || {
                let mut got = Vec::new();
                let r = recv(
                    &b,
                    &mut header,
                    &mut dst,
                    &mut scratch,
                    |h| got.push(h),
                    false,
                );
                (r.unwrap(), got)
            };

            forge(process_identity().1);
            let (r, got) = recv_one();
            assert_eq!((r.len, r.handles_truncated, got.len()), (16, false, 1));
            assert_ne!(got[0].as_raw_handle(), mine.as_raw_handle(), "a copy");
            drop(got);
            assert!(mine.metadata().is_ok(), "the original is still open");

            // The same pid with another creation time is another process.
            forge(process_identity().1 ^ 1);
            let (r, got) = recv_one();
            assert!(r.handles_truncated && got.is_empty());

            // A value that names nothing in the sender.
            let bad = [prefix::KIND_FRAGMENT, 0, 0, 0];
            write_message(&a, &bad).unwrap();
            let e = recv(&b, &mut header, &mut dst, &mut scratch, |_| {}, false).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
        assert_eq!(super::super::handle::count_open().unwrap(), before);
    }

    #[test]
    fn handle_values_travel_as_32_bits() {
        let v = 0x1a4usize as std::os::windows::io::RawHandle;
        assert_eq!(to_wire(v), Some(0x1a4));
        assert_eq!(from_wire(0x1a4), v);
        // Pseudo handles are sign-extended -1, -2, …
        let pseudo = -1isize as std::os::windows::io::RawHandle;
        assert_eq!(from_wire(to_wire(pseudo).unwrap()), pseudo);
        assert_eq!(
            to_wire((1usize << 40) as std::os::windows::io::RawHandle),
            None
        );
    }
}
