//! Handle queries: the ones that need no system call work, the rest are
//! unsupported.

use std::io;

use super::{BorrowedRaw, OwnedRaw, RawHandle};
use crate::{Access, Kind, Result};

no_backend_fns! {
    fn try_clone(_b: BorrowedRaw<'_>) -> io::Result<OwnedRaw>;
    fn kind(_b: BorrowedRaw<'_>) -> io::Result<Kind>;
    fn access(_b: BorrowedRaw<'_>) -> io::Result<Access>;
    fn is_inheritable(_b: BorrowedRaw<'_>) -> io::Result<bool>;
    fn set_inheritable(_b: BorrowedRaw<'_>, _inheritable: bool) -> io::Result<()>;
    fn restrict(_b: BorrowedRaw<'_>, _want: Access) -> Result<OwnedRaw>;
    fn claim_inherited(_raw: RawHandle) -> io::Result<OwnedRaw>;
    fn count_open() -> io::Result<usize>;
}

/// Borrows a handle number.
///
/// # Safety
/// `raw` must be open for `'a`.
pub(crate) unsafe fn borrow_raw<'a>(raw: RawHandle) -> BorrowedRaw<'a> {
    // SAFETY: the caller's guarantee is the one std asks for.
    unsafe { BorrowedRaw::borrow_raw(raw) }
}

/// Owns a handle number.
///
/// # Safety
/// `raw` must be open and owned by nothing else.
pub(crate) unsafe fn own_raw(raw: RawHandle) -> OwnedRaw {
    #[cfg(unix)]
    // SAFETY: the caller's guarantee is the one std asks for.
    let owned = unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) };
    #[cfg(windows)]
    // SAFETY: the caller's guarantee is the one std asks for.
    let owned = unsafe { std::os::windows::io::FromRawHandle::from_raw_handle(raw) };
    owned
}

pub(crate) fn as_raw_slice<'a, 'b>(
    handles: &'b [crate::BorrowedHandle<'a>],
) -> &'b [BorrowedRaw<'a>] {
    // SAFETY: BorrowedHandle is #[repr(transparent)] over BorrowedRaw, so
    // the two slices have the same layout and lifetimes.
    unsafe { std::slice::from_raw_parts(handles.as_ptr().cast(), handles.len()) }
}

pub(crate) fn raw_from_bits(bits: u64) -> RawHandle {
    #[cfg(unix)]
    return bits as RawHandle;
    #[cfg(windows)]
    return bits as usize as RawHandle;
}
