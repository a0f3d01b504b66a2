//! The Windows backend: Win32 and the few ntdll calls Win32 does not wrap,
//! through windows-sys.
//!
//! Every handle this backend creates is non-inheritable; the only
//! inheritable handles are the short-lived duplicates `spawn` makes for one
//! `CreateProcessW` and names in its handle list.

pub(crate) mod handle;
pub(crate) mod listener;
mod nt;
mod overlapped;
mod pipe;
pub(crate) mod process;
pub(crate) mod random;
#[cfg(feature = "tokio")]
pub(crate) mod reactor;
pub(crate) mod shm;
pub(crate) mod socket;
pub(crate) mod spawn;

use std::io;
use std::os::windows::io::{FromRawHandle, OwnedHandle};
use std::sync::OnceLock;

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{FILETIME, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetProcessTimes,
};

/// The owned handle of this platform.
pub(crate) type OwnedRaw = OwnedHandle;
/// The borrowed handle of this platform.
pub(crate) type BorrowedRaw<'a> = std::os::windows::io::BorrowedHandle<'a>;
/// The number that names a handle inside one process.
pub(crate) type RawHandle = std::os::windows::io::RawHandle;

/// Turns a `BOOL` result into an `io::Result`, reading `GetLastError` on
/// failure.
fn cvt(ok: BOOL) -> io::Result<()> {
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Takes ownership of a handle a creating call just returned, treating
/// null and `INVALID_HANDLE_VALUE` as the failure they signal.
///
/// # Safety
/// `h` must come straight from a call that creates a handle for this
/// process (so nothing else owns it), with `GetLastError` still describing
/// that call.
unsafe fn owned(h: HANDLE) -> io::Result<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the caller guarantees `h` is a fresh handle owned by nobody.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// This process's identity on the wire: its pid and creation time. The
/// pair names one process for the life of the machine, where a pid alone
/// can be reused once the process exits.
pub(crate) fn process_identity() -> (u32, u64) {
    static IDENTITY: OnceLock<(u32, u64)> = OnceLock::new();
    *IDENTITY.get_or_init(|| {
        // SAFETY: GetCurrentProcess returns a pseudo handle that needs no
        // closing; GetProcessTimes writes four FILETIMEs we own.
        let created = unsafe { creation_time(GetCurrentProcess()) }.unwrap_or(0);
        // SAFETY: no arguments, cannot fail.
        (unsafe { GetCurrentProcessId() }, created)
    })
}

/// The creation time of a process, in 100 ns units since 1601.
///
/// # Safety
/// `process` must be a valid process handle (or pseudo handle) with
/// `PROCESS_QUERY_LIMITED_INFORMATION`.
unsafe fn creation_time(process: HANDLE) -> io::Result<u64> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut c, mut e, mut k, mut u) = (zero, zero, zero, zero);
    // SAFETY: the caller guarantees the handle; the out pointers are ours.
    cvt(unsafe { GetProcessTimes(process, &mut c, &mut e, &mut k, &mut u) })?;
    Ok(u64::from(c.dwHighDateTime) << 32 | u64::from(c.dwLowDateTime))
}
