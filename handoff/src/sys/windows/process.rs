//! Process handles on Windows: `OpenProcess`, waiting on the process
//! object, `TerminateProcess`, and `DuplicateHandle` out of and into
//! another process.
//!
//! A process handle may carry only some rights (one opened by a less
//! privileged process, or received from a sender that narrowed it), so
//! every operation first checks that the handle grants what it needs and
//! says which right is missing, instead of letting a later call fail with a
//! bare `ERROR_ACCESS_DENIED`.
//!
//! These functions return `crate::Error` rather than `io::Error` because
//! the meaning of an error depends on the call (`ERROR_INVALID_HANDLE` from
//! `DuplicateHandle` names a value in the *other* process's table), and
//! only this backend knows which call produced it.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, OwnedHandle, RawHandle};

use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, ERROR_ACCESS_DENIED,
    ERROR_INVALID_HANDLE, ERROR_INVALID_PARAMETER, HANDLE, STILL_ACTIVE, WAIT_OBJECT_0,
    WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetExitCodeProcess, GetProcessId, OpenProcess,
    OpenThread, TerminateProcess, WaitForSingleObject, INFINITE, PROCESS_DUP_HANDLE,
    PROCESS_QUERY_INFORMATION, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
    PROCESS_TERMINATE, THREAD_QUERY_LIMITED_INFORMATION,
};

use super::cvt;
use super::handle::{from_wire, granted_access, to_wire};
use crate::process::ExitStatus;
use crate::{Error, Kind, Result};

/// What `open` asks for: every right a `Process` uses.
const FULL: u32 = PROCESS_DUP_HANDLE
    | PROCESS_QUERY_LIMITED_INFORMATION
    | PROCESS_SYNCHRONIZE
    | PROCESS_TERMINATE;
/// What `open` settles for when `FULL` is refused: enough to wait for the
/// process and read its exit code and pid.
const WAIT_ONLY: u32 = PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE;
/// Either query right lets `GetExitCodeProcess` and `GetProcessId` work.
const QUERY: u32 = PROCESS_QUERY_INFORMATION | PROCESS_QUERY_LIMITED_INFORMATION;

/// The exit code `kill` gives the process (std's `Child::kill` uses the
/// same).
pub(crate) const KILL_EXIT_CODE: u32 = 1;

/// Windows can close a handle in another process (`DUPLICATE_CLOSE_SOURCE`).
pub(crate) const NO_REMOTE_CLOSE: Option<&str> = None;
/// Windows can duplicate a handle straight into another process.
pub(crate) const NO_PUSH: Option<&str> = None;

fn raw(h: BorrowedHandle<'_>) -> HANDLE {
    h.as_raw_handle() as HANDLE
}

/// The pid of the calling process.
pub(crate) fn current_pid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { GetCurrentProcessId() }
}

/// Opens process `pid`, non-inheritable, with [`FULL`] rights, or with
/// [`WAIT_ONLY`] if the process's security refuses those.
pub(crate) fn open(pid: u32) -> Result<OwnedHandle> {
    if pid == 0 || pid > i32::MAX as u32 {
        return Err(Error::InvalidArgument(format!(
            "{pid} is not a valid process id"
        )));
    }
    let try_open = |rights: u32| {
        // SAFETY: opening a process by id, non-inheritable; the result is
        // checked and owned at once.
        unsafe { super::owned(OpenProcess(rights, 0, pid)) }
    };
    let e = match try_open(FULL) {
        Ok(h) => return Ok(h),
        Err(e) => e,
    };
    match e.raw_os_error().map(|c| c as u32) {
        Some(ERROR_ACCESS_DENIED) => try_open(WAIT_ONLY).map_err(|e| {
            if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
                Error::NotPermitted(format!(
                    "opening process {pid} needs at least SYNCHRONIZE and \
                     PROCESS_QUERY_LIMITED_INFORMATION, which its security descriptor does not \
                     grant this process (another user, a protected process, or a lower \
                     integrity level)"
                ))
            } else {
                Error::os("OpenProcess", e)
            }
        }),
        // Windows says the same for an id nobody has and for a thread's
        // id (threads and processes share one id space): tell them apart.
        Some(ERROR_INVALID_PARAMETER) if is_thread(pid) => Err(Error::InvalidArgument(format!(
            "{pid} is not the id of a process (it is a thread id)"
        ))),
        Some(ERROR_INVALID_PARAMETER) => Err(Error::NoSuchProcess { pid }),
        _ => Err(Error::os("OpenProcess", e)),
    }
}

/// True when `id` names a live thread.
fn is_thread(id: u32) -> bool {
    // SAFETY: opening a thread by id for a query; the handle, if any, is
    // owned at once and closed on drop.
    unsafe { super::owned(OpenThread(THREAD_QUERY_LIMITED_INFORMATION, 0, id)) }.is_ok()
}

/// Fails with `NotPermitted` unless the handle grants all of `rights`
/// (or, for [`QUERY`], either of them).
fn need(h: BorrowedHandle<'_>, pid: u32, rights: u32, what: &str) -> Result<()> {
    let granted = granted_access(h).map_err(|e| Error::os("NtQueryObject", e))?;
    let missing = |r: u32| {
        if r == QUERY {
            granted & QUERY == 0
        } else {
            granted & r != r
        }
    };
    let names: Vec<&str> = [
        (PROCESS_DUP_HANDLE, "PROCESS_DUP_HANDLE"),
        (PROCESS_SYNCHRONIZE, "SYNCHRONIZE"),
        (PROCESS_TERMINATE, "PROCESS_TERMINATE"),
        (QUERY, "PROCESS_QUERY_LIMITED_INFORMATION"),
    ]
    .into_iter()
    .filter(|&(r, _)| rights & r == r && missing(r))
    .map(|(_, n)| n)
    .collect();
    if names.is_empty() {
        return Ok(());
    }
    Err(Error::NotPermitted(format!(
        "{what} needs {} on process {pid}, which this handle to it does not grant \
         (Process::open falls back to SYNCHRONIZE and PROCESS_QUERY_LIMITED_INFORMATION when the \
         process refuses more; a received handle has what its sender gave it)",
        names.join(" and ")
    )))
}

/// True when the process has exited. A handle that can tell neither way
/// (no `SYNCHRONIZE`, no query right) says no.
fn exited(h: BorrowedHandle<'_>) -> bool {
    // SAFETY: waiting on a borrowed process handle without blocking.
    match unsafe { WaitForSingleObject(raw(h), 0) } {
        WAIT_OBJECT_0 => return true,
        WAIT_TIMEOUT => return false,
        _ => {}
    }
    let mut code = 0u32;
    // SAFETY: a borrowed process handle; `code` is ours to write.
    let ok = unsafe { GetExitCodeProcess(raw(h), &mut code) };
    ok != 0 && code != STILL_ACTIVE as u32
}

/// Checks that `h` is a process handle and reads its pid.
pub(crate) fn pid_of(h: BorrowedHandle<'_>) -> Result<u32> {
    let kind = super::handle::kind(h).map_err(|e| Error::os("NtQueryObject", e))?;
    if kind != Kind::Process {
        return Err(Error::WrongKind {
            expected: crate::KindName::Process,
            actual: kind,
        });
    }
    // SAFETY: a borrowed process handle.
    match unsafe { GetProcessId(raw(h)) } {
        0 => {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
                Err(Error::NotPermitted(
                    "reading a process handle's pid needs PROCESS_QUERY_LIMITED_INFORMATION, \
                     which this handle does not grant"
                        .into(),
                ))
            } else {
                Err(Error::os("GetProcessId", e))
            }
        }
        pid => Ok(pid),
    }
}

/// Waits for (`block`) or checks for the exit of the process and reads its
/// exit code. Windows keeps the code for anyone holding a handle, so it is
/// always known: never `ExitStatus::Unknown`.
pub(crate) fn wait(h: BorrowedHandle<'_>, pid: u32, block: bool) -> Result<Option<ExitStatus>> {
    if pid == current_pid() {
        return Err(Error::InvalidArgument(
            "a process cannot wait for its own exit".into(),
        ));
    }
    need(h, pid, PROCESS_SYNCHRONIZE | QUERY, "waiting for a process")?;
    // SAFETY: waiting on a borrowed process handle with SYNCHRONIZE.
    match unsafe { WaitForSingleObject(raw(h), if block { INFINITE } else { 0 }) } {
        WAIT_OBJECT_0 => {}
        WAIT_TIMEOUT => return Ok(None),
        _ => return Err(Error::os("WaitForSingleObject", io::Error::last_os_error())),
    }
    let mut code = 0u32;
    // SAFETY: a borrowed process handle with a query right; `code` is ours.
    cvt(unsafe { GetExitCodeProcess(raw(h), &mut code) })
        .map_err(|e| Error::os("GetExitCodeProcess", e))?;
    // The full 32 bits, as std's `ExitStatus::code` gives them on Windows.
    Ok(Some(ExitStatus::Code(code as i32)))
}

/// Terminates the process with [`KILL_EXIT_CODE`].
pub(crate) fn kill(h: BorrowedHandle<'_>, pid: u32) -> Result<()> {
    need(h, pid, PROCESS_TERMINATE, "terminating a process")?;
    // Terminating a process that has exited fails with
    // ERROR_ACCESS_DENIED on Windows: look first, so it is reported as what
    // it is (as Linux reports ESRCH).
    if exited(h) {
        return Err(Error::NoSuchProcess { pid });
    }
    // SAFETY: a borrowed process handle with PROCESS_TERMINATE.
    if unsafe { TerminateProcess(raw(h), KILL_EXIT_CODE) } != 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if exited(h) {
        return Err(Error::NoSuchProcess { pid });
    }
    if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
        return Err(Error::NotPermitted(format!(
            "process {pid} refused to be terminated (a protected or critical process)"
        )));
    }
    Err(Error::os("TerminateProcess", e))
}

/// Checks a handle value of another process and returns its 32 bits.
fn checked_value(value: RawHandle) -> Result<u32> {
    let bad = |why: &str| Err(Error::InvalidArgument(format!("{value:?} {why}")));
    let Some(v) = to_wire(value) else {
        return bad("is not a handle value (handle values fit in 32 bits)");
    };
    if (v as i32) < 0 {
        // -1 is the current-process pseudo handle, -2 the current thread,
        // and so on: DuplicateHandle would read them as the *other*
        // process's own process or thread, with full access.
        return bad("is a pseudo handle, not a value in the process's handle table");
    }
    if v == 0 || v % 4 != 0 {
        // The kernel ignores the low two bits, so 0x1a5 would name 0x1a4.
        return bad("is not a handle value (handle values are nonzero multiples of 4)");
    }
    Ok(v)
}

/// Copies handle `value` out of the process behind `h` into this one,
/// non-inheritable, with the same access; with `close_source` the process
/// loses its handle in the same step (`DUPLICATE_CLOSE_SOURCE`).
pub(crate) fn pull(
    h: BorrowedHandle<'_>,
    pid: u32,
    value: RawHandle,
    close_source: bool,
) -> Result<OwnedHandle> {
    let v = checked_value(value)?;
    need(
        h,
        pid,
        PROCESS_DUP_HANDLE,
        "copying a handle out of a process",
    )?;
    let mut options = DUPLICATE_SAME_ACCESS;
    if close_source {
        options |= DUPLICATE_CLOSE_SOURCE;
    }
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: `h` is a borrowed process handle with PROCESS_DUP_HANDLE; the
    // value names a handle in *that* process, so a wrong value can only
    // fail or copy one of its handles, never touch ours; `out` is ours.
    let ok = unsafe {
        DuplicateHandle(
            raw(h),
            from_wire(v) as HANDLE,
            GetCurrentProcess(),
            &mut out,
            0,
            0,
            options,
        )
    };
    if ok == 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error().map(|c| c as u32) {
            // An exited process has no handle table any more.
            _ if exited(h) => Error::NoSuchProcess { pid },
            Some(ERROR_INVALID_HANDLE) => Error::NoSuchHandle {
                pid,
                handle: u64::from(v),
            },
            Some(ERROR_ACCESS_DENIED) => Error::NotPermitted(format!(
                "copying handle {v:#x} out of process {pid} was refused"
            )),
            _ => Error::os("DuplicateHandle", e),
        });
    }
    // SAFETY: DuplicateHandle created `out` in this process for us alone.
    Ok(unsafe { super::handle::own_raw(out as RawHandle) })
}

/// Duplicates `handle` (of this process, which keeps it) into the process
/// behind `h` with the same access, inheritable by that process's children
/// if asked, and returns its value *there*. The new handle belongs to that
/// process; nothing here can close it.
pub(crate) fn push(
    h: BorrowedHandle<'_>,
    pid: u32,
    handle: BorrowedHandle<'_>,
    inheritable: bool,
) -> Result<u32> {
    need(
        h,
        pid,
        PROCESS_DUP_HANDLE,
        "duplicating a handle into a process",
    )?;
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: the source is a handle we borrow, the target a borrowed
    // process handle with PROCESS_DUP_HANDLE; `out` is a value in the
    // target's table, written to memory we own and never treated as ours.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            raw(handle),
            raw(h),
            &mut out,
            0,
            i32::from(inheritable),
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error().map(|c| c as u32) {
            _ if exited(h) => Error::NoSuchProcess { pid },
            Some(ERROR_ACCESS_DENIED) => Error::NotPermitted(format!(
                "duplicating a handle into process {pid} was refused"
            )),
            _ => Error::os("DuplicateHandle", e),
        });
    }
    match to_wire(out as RawHandle) {
        Some(v) => Ok(v),
        None => {
            // Never seen: Windows keeps handle values within 32 bits. Close
            // it there rather than leave a handle nobody can name.
            // SAFETY: closes the value just created in the target, which
            // nobody there knows yet.
            unsafe {
                DuplicateHandle(
                    raw(h),
                    out,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                    0,
                    DUPLICATE_CLOSE_SOURCE,
                );
            }
            Err(Error::os(
                "DuplicateHandle",
                io::Error::other("the target's handle value does not fit in 32 bits"),
            ))
        }
    }
}

/// Opens the process `pid` for a channel's peer credentials: as
/// [`open`], `None` if it cannot be opened at all.
pub(crate) fn open_peer(pid: u32) -> Option<OwnedHandle> {
    open(pid).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::windows::io::AsHandle;

    #[test]
    fn values_are_checked_before_any_call() {
        for v in [0isize, -1, -2, 6, 0x1_0000_0000] {
            assert!(
                matches!(
                    checked_value(v as RawHandle),
                    Err(Error::InvalidArgument(_))
                ),
                "{v:#x}"
            );
        }
        assert_eq!(checked_value(0x1a4 as RawHandle).unwrap(), 0x1a4);
    }

    #[test]
    fn a_thread_id_is_not_a_process_id() {
        use windows_sys::Win32::System::Threading::GetCurrentThreadId;
        // SAFETY: no arguments, cannot fail.
        let tid = unsafe { GetCurrentThreadId() };
        assert!(matches!(open(tid), Err(Error::InvalidArgument(m)) if m.contains("thread")));
    }

    #[test]
    fn push_into_self_and_pull_back_with_close_source() {
        let me = open(current_pid()).unwrap();
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        let v = push(me.as_handle(), current_pid(), file.as_handle(), false).unwrap();
        let back = pull(me.as_handle(), current_pid(), from_wire(v), true).unwrap();
        assert_eq!(
            super::super::handle::kind(back.as_handle()).unwrap(),
            Kind::File
        );
    }
}
