//! Overlapped operations owned by a channel end, not by a call.
//!
//! Each asynchronous operation is an [`Op`]: an overlapped `ReadFile`,
//! `WriteFile` or `ConnectNamedPipe` whose `OVERLAPPED`, buffer and event
//! live on the heap, owned by the channel end (not by a future), so a future
//! dropped while the kernel still works on the operation frees nothing the
//! kernel writes to: the next caller picks the operation up where it stands.
//! A future waits for an operation by registering its event with a waiter
//! thread ([`Waiter`]: `WaitForMultipleObjects` over up to 63 events, more
//! threads as needed), which wakes the task when the event is signalled.
//! The blocking paths (`socket.rs`, `listener.rs`) use the same operations
//! and wait on them directly; `reactor.rs` builds readiness on them.
// Without the tokio feature only the blocking paths use these operations.
#![cfg_attr(not(feature = "tokio"), allow(dead_code))]

use std::fmt;
use std::io;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{
    ERROR_IO_INCOMPLETE, ERROR_IO_PENDING, ERROR_MORE_DATA, HANDLE, WAIT_OBJECT_0,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::Pipes::ConnectNamedPipe;
use windows_sys::Win32::System::Threading::{
    CreateEventW, SetEvent, WaitForMultipleObjects, WaitForSingleObject, INFINITE,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

/// Bytes a head read takes of the next datagram: a whole acknowledgement,
/// and the transport prefix of a fragment.
pub(crate) const HEAD_LEN: usize = 64;

/// Events one waiter thread watches (`MAXIMUM_WAIT_OBJECTS` less its own
/// wake-up event).
const PER_WAITER: usize = 63;

/// What a finished operation did: bytes transferred, and whether a message
/// was longer than the buffer (`ERROR_MORE_DATA`, the rest still waiting).
pub(crate) type Done = (usize, bool);

/// The tasks waiting for one operation.
#[derive(Default)]
struct Slot {
    wakers: Mutex<Vec<Waker>>,
}

impl Slot {
    fn add(&self, w: &Waker) {
        let mut wakers = lock(&self.wakers);
        if !wakers.iter().any(|x| x.will_wake(w)) {
            wakers.push(w.clone());
        }
    }

    fn wake(&self) {
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for w in wakers {
            w.wake();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An overlapped operation on a file handle, from start to completion.
///
/// The owner of the file handle keeps it open until the `Op` is dropped;
/// dropping an unfinished `Op` cancels it and waits until the kernel has
/// let go of the `OVERLAPPED` and the buffer.
pub(crate) struct Op {
    /// Borrowed from the owner, who outlives the operation.
    file: HANDLE,
    /// On the heap: the kernel writes to it until the operation completes.
    ov: Box<OVERLAPPED>,
    /// What is read into or written from; its heap block never moves.
    buf: Vec<u8>,
    /// Manual-reset, signalled when the operation completes.
    event: OwnedHandle,
    slot: Arc<Slot>,
    /// The waiter thread watching `event`, and the entry's id there.
    registered: Option<(Arc<Waiter>, u64)>,
    /// Known to be finished: nothing to cancel on drop.
    finished: bool,
}

// SAFETY: `file` is a handle value, usable from any thread; the owner keeps
// it open for the Op's life (see the type's documentation). Everything else
// is owned.
unsafe impl Send for Op {}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Op")
            .field("len", &self.buf.len())
            .field("finished", &self.finished)
            .finish()
    }
}

impl Op {
    /// Starts an operation. `start` gets the file, the buffer and the
    /// `OVERLAPPED`; an error other than "pending" (or `ERROR_MORE_DATA`,
    /// a finished read of part of a message) means nothing was started.
    fn start(
        file: HANDLE,
        mut buf: Vec<u8>,
        start: impl FnOnce(HANDLE, *mut u8, u32, *mut OVERLAPPED) -> BOOL,
    ) -> io::Result<Op> {
        // SAFETY: an unnamed manual-reset event, initially unsignalled,
        // non-inheritable (null attributes); checked and owned at once.
        let event =
            unsafe { super::owned(CreateEventW(std::ptr::null(), 1, 0, std::ptr::null())) }?;
        // SAFETY: zeroed plain data is a valid OVERLAPPED.
        let mut ov: Box<OVERLAPPED> = Box::new(unsafe { std::mem::zeroed() });
        ov.hEvent = event.as_raw_handle() as HANDLE;
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let ptr = buf.as_mut_ptr();
        let ovp: *mut OVERLAPPED = &mut *ov;
        if start(file, ptr, len, ovp) == 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error().map(|c| c as u32) {
                Some(ERROR_IO_PENDING) | Some(ERROR_MORE_DATA) => {}
                _ => return Err(e),
            }
        }
        Ok(Op {
            file,
            ov,
            buf,
            event,
            slot: Arc::default(),
            registered: None,
            finished: false,
        })
    }

    /// Reads up to `len` bytes (one message, or its first `len` bytes).
    pub(crate) fn read(file: HANDLE, len: usize) -> io::Result<Op> {
        Op::start(file, vec![0; len], |f, p, n, ov| {
            // SAFETY: `p` is the Op's buffer, writable for `n` bytes; it and
            // `ov` live on the heap until the operation completes (Drop
            // waits for it).
            unsafe { ReadFile(f, p, n, std::ptr::null_mut(), ov) }
        })
    }

    /// Writes `data` as one message.
    pub(crate) fn write(file: HANDLE, data: Vec<u8>) -> io::Result<Op> {
        Op::start(file, data, |f, p, n, ov| {
            // SAFETY: as in `read`; the kernel only reads the buffer.
            unsafe { WriteFile(f, p, n, std::ptr::null_mut(), ov) }
        })
    }

    /// Waits for a client on a pipe server instance. `ERROR_PIPE_CONNECTED`
    /// (a client came first) is returned as the error it is.
    pub(crate) fn connect(file: HANDLE) -> io::Result<Op> {
        Op::start(file, Vec::new(), |f, _, _, ov| {
            // SAFETY: `ov` lives on the heap until the operation completes.
            unsafe { ConnectNamedPipe(f, ov) }
        })
    }

    /// The outcome if the operation has finished, without waiting.
    pub(crate) fn result(&self) -> Option<io::Result<Done>> {
        let mut n = 0u32;
        // SAFETY: `ov` belongs to an operation started on `file`, which is
        // open; without waiting this only reads the OVERLAPPED.
        if unsafe { GetOverlappedResult(self.file, &*self.ov, &mut n, 0) } != 0 {
            return Some(Ok((n as usize, false)));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error().map(|c| c as u32) {
            Some(ERROR_IO_INCOMPLETE) => None,
            Some(ERROR_MORE_DATA) => Some(Ok((n as usize, true))),
            _ => Some(Err(e)),
        }
    }

    /// The buffer: what a finished read read (its first `n` bytes).
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf
    }

    /// Blocks until the operation finishes, or `timeout` passes (`None`).
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> Option<io::Result<Done>> {
        let ms = match timeout {
            Some(t) => t.as_millis().min(u128::from(INFINITE - 1)) as u32,
            None => INFINITE,
        };
        // SAFETY: waiting on our own event.
        unsafe { WaitForSingleObject(self.event.as_raw_handle() as HANDLE, ms) };
        let r = self.result()?;
        self.finish();
        Some(r)
    }

    /// Polls for completion, waking the task when the operation finishes.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Done>> {
        if let Some(r) = self.result() {
            self.finish();
            return Poll::Ready(r);
        }
        self.slot.add(cx.waker());
        if self.registered.is_none() {
            match watch(self.event.as_raw_handle() as HANDLE, &self.slot) {
                Ok(r) => self.registered = Some(r),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        // The waiter wakes what was in the slot when the event fired; an
        // operation that finished before our waker went in is caught here.
        if let Some(r) = self.result() {
            self.finish();
            return Poll::Ready(r);
        }
        Poll::Pending
    }

    /// The operation is over: stop watching its event.
    fn finish(&mut self) {
        self.finished = true;
        if let Some((waiter, id)) = self.registered.take() {
            waiter.remove(id);
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if let Some((waiter, id)) = self.registered.take() {
            // The waiter no longer looks at the event once this returns.
            waiter.remove(id);
        }
        if !self.finished && self.result().is_none() {
            let mut n = 0u32;
            // SAFETY: cancels only this operation on our open file, then
            // waits until the kernel is done with `ov` and `buf`, which are
            // freed only after this.
            unsafe {
                CancelIoEx(self.file, &*self.ov);
                GetOverlappedResult(self.file, &*self.ov, &mut n, 1);
            }
        }
    }
}

/// A thread that watches up to [`PER_WAITER`] events and wakes the tasks
/// waiting for them. Waiters are created as needed and live as long as the
/// process; each holds one handle (its wake-up event).
struct Waiter {
    state: Mutex<WaiterState>,
    /// Signalled by the thread each time it has taken a new snapshot.
    snapshot: Condvar,
    /// Auto-reset: makes the thread take a new snapshot of the entries.
    kick: OwnedHandle,
}

#[derive(Default)]
struct WaiterState {
    /// Id, event (as an integer), the tasks to wake.
    entries: Vec<(u64, usize, Arc<Slot>)>,
    next_id: u64,
    /// Bumped by every removal the thread must see before an event closes.
    generation: u64,
    /// The generation of the thread's current snapshot.
    seen: u64,
}

static WAITERS: Mutex<Vec<Arc<Waiter>>> = Mutex::new(Vec::new());

/// Starts the first waiter thread, so that its one handle exists before a
/// caller counts handles (tests), not in the middle.
pub(crate) fn init() -> io::Result<()> {
    let mut all = lock(&WAITERS);
    if all.is_empty() {
        all.push(Waiter::spawn()?);
    }
    Ok(())
}

/// Adds `event` to a waiter with room; `slot` is woken when it fires.
fn watch(event: HANDLE, slot: &Arc<Slot>) -> io::Result<(Arc<Waiter>, u64)> {
    let mut all = lock(&WAITERS);
    let waiter = match all
        .iter()
        .find(|w| lock(&w.state).entries.len() < PER_WAITER)
    {
        Some(w) => w.clone(),
        None => {
            let w = Waiter::spawn()?;
            all.push(w.clone());
            w
        }
    };
    drop(all);
    let id = {
        let mut st = lock(&waiter.state);
        st.next_id += 1;
        let id = st.next_id;
        st.entries.push((id, event as usize, slot.clone()));
        id
    };
    waiter.kick();
    Ok((waiter, id))
}

impl Waiter {
    fn spawn() -> io::Result<Arc<Waiter>> {
        // SAFETY: an unnamed auto-reset event, non-inheritable; checked and
        // owned at once.
        let kick = unsafe { super::owned(CreateEventW(std::ptr::null(), 0, 0, std::ptr::null())) }?;
        let w = Arc::new(Waiter {
            state: Mutex::default(),
            snapshot: Condvar::new(),
            kick,
        });
        let run = w.clone();
        std::thread::Builder::new()
            .name("handoff-pipe-waiter".into())
            .spawn(move || run.run())?;
        Ok(w)
    }

    fn kick(&self) {
        // SAFETY: our own event, open as long as the waiter.
        unsafe { SetEvent(self.kick.as_raw_handle() as HANDLE) };
    }

    /// Removes entry `id` and returns once the thread waits without it, so
    /// the caller may close the event.
    fn remove(&self, id: u64) {
        let mut st = lock(&self.state);
        let Some(i) = st.entries.iter().position(|e| e.0 == id) else {
            // Already fired: the thread removed it and no longer waits on it.
            return;
        };
        st.entries.remove(i);
        st.generation += 1;
        let want = st.generation;
        self.kick();
        while st.seen < want {
            st = self.snapshot.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn run(&self) {
        let mut handles: Vec<HANDLE> = Vec::with_capacity(PER_WAITER + 1);
        let mut ids: Vec<u64> = Vec::with_capacity(PER_WAITER + 1);
        loop {
            handles.clear();
            ids.clear();
            handles.push(self.kick.as_raw_handle() as HANDLE);
            ids.push(0);
            {
                let mut st = lock(&self.state);
                for (id, event, _) in &st.entries {
                    handles.push(*event as HANDLE);
                    ids.push(*id);
                }
                st.seen = st.generation;
                self.snapshot.notify_all();
            }
            // SAFETY: every handle in the snapshot stays open until this
            // thread has taken a snapshot without it (`remove` waits for
            // that), and the kick event lives as long as the waiter.
            let r = unsafe {
                WaitForMultipleObjects(handles.len() as u32, handles.as_ptr(), 0, INFINITE)
            };
            let i = r.wrapping_sub(WAIT_OBJECT_0) as usize;
            if i == 0 {
                continue;
            }
            if i < handles.len() {
                let fired = {
                    let mut st = lock(&self.state);
                    let pos = st.entries.iter().position(|e| e.0 == ids[i]);
                    pos.map(|p| st.entries.remove(p).2)
                };
                if let Some(slot) = fired {
                    slot.wake();
                }
                continue;
            }
            // WAIT_FAILED should not happen (every handle is open); do not
            // spin if it does.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A manual-reset event for one blocking overlapped operation.
pub(super) fn event() -> io::Result<OwnedHandle> {
    // SAFETY: an unnamed manual-reset event, non-inheritable (null
    // attributes); the result is checked and owned at once.
    unsafe { super::owned(CreateEventW(std::ptr::null(), 1, 0, std::ptr::null())) }
}

/// Runs one overlapped operation on the pipe to completion (or until
/// `timeout`, then cancels it). Returns the bytes transferred and whether a
/// message was longer than the buffer (`ERROR_MORE_DATA`).
pub(super) fn run(
    pipe: HANDLE,
    timeout: Option<Duration>,
    start: impl FnOnce(*mut OVERLAPPED) -> BOOL,
) -> io::Result<(usize, bool)> {
    let ev = event()?;
    // SAFETY: zeroed plain data is a valid OVERLAPPED.
    let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
    ov.hEvent = ev.as_raw_handle() as HANDLE;
    if start(&mut ov) == 0 {
        let e = io::Error::last_os_error();
        match e.raw_os_error().map(|c| c as u32) {
            Some(ERROR_IO_PENDING) | Some(ERROR_MORE_DATA) => {}
            _ => return Err(e),
        }
    }
    if let Some(t) = timeout {
        let ms = t.as_millis().min(u128::from(u32::MAX - 1)) as u32;
        // SAFETY: waiting on our own event.
        if unsafe { WaitForSingleObject(ov.hEvent, ms) } != WAIT_OBJECT_0 {
            // SAFETY: cancels only this operation; it completes (aborted)
            // before GetOverlappedResult below returns.
            unsafe { CancelIoEx(pipe, &ov) };
        }
    }
    let mut n = 0u32;
    // SAFETY: waits for the operation to finish, so `ov` and the buffer it
    // uses outlive it.
    if unsafe { GetOverlappedResult(pipe, &ov, &mut n, 1) } == 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(ERROR_MORE_DATA as i32) {
            return Ok((n as usize, true));
        }
        return Err(e);
    }
    Ok((n as usize, false))
}
