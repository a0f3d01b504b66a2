//! Handle queries and duplication on Windows: what a handle is (its object
//! type name and file type), what it may do (its granted access mask), and
//! new handles to the same object with the same or fewer rights.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle, RawHandle};

use windows_sys::Win32::Foundation::{
    DuplicateHandle, GetHandleInformation, SetHandleInformation, HANDLE, HANDLE_FLAG_INHERIT,
};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileInformationByHandle, GetFileType, BY_HANDLE_FILE_INFORMATION, FILE_APPEND_DATA,
    FILE_ATTRIBUTE_DIRECTORY, FILE_GENERIC_READ, FILE_GENERIC_WRITE, FILE_READ_ATTRIBUTES,
    FILE_READ_DATA, FILE_TYPE_CHAR, FILE_TYPE_DISK, FILE_TYPE_PIPE, FILE_WRITE_DATA, SYNCHRONIZE,
};
use windows_sys::Win32::System::Memory::{SECTION_MAP_READ, SECTION_MAP_WRITE, SECTION_QUERY};
use windows_sys::Win32::System::Pipes::GetNamedPipeInfo;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessHandleCount, PROCESS_QUERY_INFORMATION,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE,
};

use super::cvt;
pub(crate) use super::nt::granted_access;
use super::nt::object_type;
use crate::{Access, Error, Kind, PipeEnd, Result, Seals, SocketFamily, SocketType};

/// The object-specific "modify state" right of events, timers, semaphores
/// and mutants (`EVENT_MODIFY_STATE` and its siblings share the bit).
const MODIFY_STATE: u32 = 0x0002;
/// The object-specific "query state" right of the same objects.
const QUERY_STATE: u32 = 0x0001;

fn raw(h: BorrowedHandle<'_>) -> HANDLE {
    h.as_raw_handle() as HANDLE
}

/// Duplicates the handle, non-inheritable, with the same access.
pub(crate) fn try_clone(h: BorrowedHandle<'_>) -> io::Result<OwnedHandle> {
    // std's duplicate is DuplicateHandle(…, FALSE, DUPLICATE_SAME_ACCESS):
    // non-inheritable in the same step.
    h.try_clone_to_owned()
}

/// Duplicates the handle, non-inheritable, with exactly `access`.
fn duplicate_with(h: BorrowedHandle<'_>, access: u32) -> io::Result<OwnedHandle> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: both process handles are the current-process pseudo handle,
    // the source is borrowed for the call, `out` is ours to write.
    cvt(unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            raw(h),
            GetCurrentProcess(),
            &mut out,
            access,
            0,
            0,
        )
    })?;
    // SAFETY: DuplicateHandle succeeded: `out` is a new handle nobody owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(out as RawHandle) })
}

/// `GetFileType`, with its failure told apart from `FILE_TYPE_UNKNOWN`.
fn file_type(h: BorrowedHandle<'_>) -> u32 {
    // SAFETY: the handle is borrowed for the call.
    unsafe { GetFileType(raw(h)) }
}

fn is_directory(h: BorrowedHandle<'_>) -> bool {
    // SAFETY: zeroed plain data is a valid value for the out structure.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: the handle is borrowed, `info` is ours to write.
    let ok = unsafe { GetFileInformationByHandle(raw(h), &mut info) };
    ok != 0 && info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY != 0
}

fn is_named_pipe(h: BorrowedHandle<'_>) -> Option<u32> {
    let mut flags = 0u32;
    // SAFETY: the handle is borrowed; the out pointers we do not need may
    // be null.
    let ok = unsafe {
        GetNamedPipeInfo(
            raw(h),
            &mut flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    (ok != 0).then_some(flags)
}

fn is_console(h: BorrowedHandle<'_>) -> bool {
    use windows_sys::Win32::System::Console::GetConsoleMode;
    let mut mode = 0;
    // SAFETY: the handle is borrowed, `mode` is ours to write.
    unsafe { GetConsoleMode(raw(h), &mut mode) != 0 }
}

/// What the handle refers to.
pub(crate) fn kind(h: BorrowedHandle<'_>) -> io::Result<Kind> {
    let ty = object_type(h)?;
    Ok(match ty.as_str() {
        "File" => match file_type(h) {
            FILE_TYPE_DISK if is_directory(h) => Kind::Directory,
            FILE_TYPE_DISK => Kind::File,
            FILE_TYPE_PIPE => match is_named_pipe(h) {
                Some(_) => Kind::Pipe {
                    end: pipe_end(granted_access(h)?),
                },
                None => socket_kind(h).unwrap_or(Kind::Other),
            },
            FILE_TYPE_CHAR if is_console(h) => Kind::Terminal,
            _ => Kind::Other,
        },
        "Section" => Kind::SharedMemory {
            size: super::nt::section_size(h)?,
            seals: Seals::NONE,
        },
        "Event" => Kind::Event,
        "Process" => Kind::Process,
        "Timer" => Kind::Timer,
        _ => Kind::Other,
    })
}

fn pipe_end(granted: u32) -> PipeEnd {
    let read = granted & FILE_READ_DATA != 0;
    let write = granted & (FILE_WRITE_DATA | FILE_APPEND_DATA) != 0;
    match (read, write) {
        (true, false) => PipeEnd::Read,
        (false, true) => PipeEnd::Write,
        _ => PipeEnd::Both,
    }
}

/// A socket's family, type and listening state through Winsock, which
/// must be started before it answers.
fn socket_kind(h: BorrowedHandle<'_>) -> Option<Kind> {
    use windows_sys::Win32::Networking::WinSock::{
        getsockopt, WSAStartup, AF_INET, AF_INET6, AF_UNIX, SOCKET, SOCK_DGRAM, SOCK_SEQPACKET,
        SOCK_STREAM, SOL_SOCKET, SO_ACCEPTCONN, SO_PROTOCOL_INFOW, SO_TYPE, WSADATA,
        WSAPROTOCOL_INFOW,
    };
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        // SAFETY: zeroed plain data is a valid WSADATA to be filled in.
        let mut data: WSADATA = unsafe { std::mem::zeroed() };
        // Winsock counts its users; this one never leaves, like std's.
        // SAFETY: `data` is ours to write.
        let _ = unsafe { WSAStartup(0x0202, &mut data) };
    });
    let s = raw(h) as SOCKET;
    let int_opt = |name: i32| -> Option<i32> {
        let mut v = 0i32;
        let mut len = std::mem::size_of::<i32>() as i32;
        // SAFETY: getsockopt writes at most `len` bytes into `v`.
        let rc = unsafe { getsockopt(s, SOL_SOCKET, name, (&mut v as *mut i32).cast(), &mut len) };
        (rc == 0).then_some(v)
    };
    let ty = int_opt(SO_TYPE)?;
    // SAFETY: zeroed plain data is a valid value to be filled in.
    let mut info: WSAPROTOCOL_INFOW = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<WSAPROTOCOL_INFOW>() as i32;
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let rc = unsafe {
        getsockopt(
            s,
            SOL_SOCKET,
            SO_PROTOCOL_INFOW,
            (&mut info as *mut WSAPROTOCOL_INFOW).cast(),
            &mut len,
        )
    };
    let family = if rc != 0 {
        SocketFamily::Other(0)
    } else {
        match info.iAddressFamily as u16 {
            AF_INET => SocketFamily::Inet,
            AF_INET6 => SocketFamily::Inet6,
            AF_UNIX => SocketFamily::Unix,
            other => SocketFamily::Other(u32::from(other)),
        }
    };
    Some(Kind::Socket {
        family,
        ty: match ty {
            SOCK_STREAM => SocketType::Stream,
            SOCK_DGRAM => SocketType::Datagram,
            SOCK_SEQPACKET => SocketType::SeqPacket,
            other => SocketType::Other(other as u32),
        },
        listening: int_opt(SO_ACCEPTCONN).unwrap_or(0) != 0,
    })
}

/// The rights the handle grants, read from its granted access mask.
///
/// | object type | READ | WRITE |
/// |---|---|---|
/// | `File` (files, directories, pipes, consoles) | `FILE_READ_DATA` | `FILE_WRITE_DATA` or `FILE_APPEND_DATA` |
/// | `Section` | `SECTION_MAP_READ` | `SECTION_MAP_WRITE` |
/// | `Process` | `PROCESS_QUERY_(LIMITED_)INFORMATION` | `PROCESS_TERMINATE` |
/// | others (events, timers, …) | `SYNCHRONIZE` or query state | modify state |
pub(crate) fn access(h: BorrowedHandle<'_>) -> io::Result<Access> {
    let granted = granted_access(h)?;
    let ty = object_type(h)?;
    Ok(access_of(&ty, granted))
}

fn access_of(ty: &str, granted: u32) -> Access {
    let (read, write) = match ty {
        "File" => (FILE_READ_DATA, FILE_WRITE_DATA | FILE_APPEND_DATA),
        "Section" => (SECTION_MAP_READ, SECTION_MAP_WRITE),
        "Process" => (
            PROCESS_QUERY_INFORMATION | PROCESS_QUERY_LIMITED_INFORMATION,
            PROCESS_TERMINATE,
        ),
        _ => (SYNCHRONIZE | QUERY_STATE, MODIFY_STATE),
    };
    let mut a = Access::NONE;
    if granted & read != 0 {
        a = a | Access::READ;
    }
    if granted & write != 0 {
        a = a | Access::WRITE;
    }
    a
}

/// True when a child created with inheritance would inherit the handle.
pub(crate) fn is_inheritable(h: BorrowedHandle<'_>) -> io::Result<bool> {
    let mut flags = 0u32;
    // SAFETY: the handle is borrowed, `flags` is ours to write.
    cvt(unsafe { GetHandleInformation(raw(h), &mut flags) })?;
    Ok(flags & HANDLE_FLAG_INHERIT != 0)
}

/// Sets or clears `HANDLE_FLAG_INHERIT`.
pub(crate) fn set_inheritable(h: BorrowedHandle<'_>, inheritable: bool) -> io::Result<()> {
    let flags = if inheritable { HANDLE_FLAG_INHERIT } else { 0 };
    // SAFETY: the handle is borrowed; only its inherit flag changes.
    cvt(unsafe { SetHandleInformation(raw(h), HANDLE_FLAG_INHERIT, flags) })
}

/// A new handle to the same object with only `want`, by `DuplicateHandle`
/// with a smaller access mask: the kernel checks every later use of the new
/// handle against it.
pub(crate) fn restrict(h: BorrowedHandle<'_>, want: Access) -> Result<OwnedHandle> {
    let granted = granted_access(h).map_err(|e| Error::os("NtQueryObject", e))?;
    let ty = object_type(h).map_err(|e| Error::os("NtQueryObject", e))?;
    let have = access_of(&ty, granted);
    if !have.contains(want) {
        return Err(Error::WrongAccess {
            expected: want,
            actual: have,
        });
    }
    if want == have {
        return try_clone(h).map_err(|e| Error::os("DuplicateHandle", e));
    }
    let r = want.contains(Access::READ);
    let w = want.contains(Access::WRITE);
    let mask = match ty.as_str() {
        "File" if file_type(h) == FILE_TYPE_PIPE && is_named_pipe(h).is_none() => {
            return Err(Error::Unsupported(
                "a socket's read and write rights cannot be separated; shut down a direction instead",
            ))
        }
        "File" => {
            // The generic masks carry the attribute and synchronize rights
            // every file handle needs; a handle without data rights keeps
            // only those.
            let mut m = SYNCHRONIZE | FILE_READ_ATTRIBUTES;
            if r {
                m |= FILE_GENERIC_READ;
            }
            if w {
                m |= FILE_GENERIC_WRITE;
            }
            m
        }
        "Section" => {
            let mut m = SECTION_QUERY;
            if r {
                m |= SECTION_MAP_READ;
            }
            if w {
                m |= SECTION_MAP_WRITE;
            }
            m
        }
        "Event" | "Timer" | "Semaphore" | "Mutant" => {
            let mut m = 0;
            if r {
                m |= SYNCHRONIZE | QUERY_STATE;
            }
            if w {
                m |= MODIFY_STATE;
            }
            m
        }
        _ => {
            return Err(Error::Unsupported(
                "handoff does not know which access rights of this object type mean read and write",
            ))
        }
    };
    // Never ask for a right the handle lacks (for some object types
    // DuplicateHandle would check it against the object's security instead),
    // which also keeps an append-only handle append-only.
    let new = duplicate_with(h, mask & granted).map_err(|e| Error::os("DuplicateHandle", e))?;
    let got = access(new.as_handle_borrowed()).map_err(|e| Error::os("NtQueryObject", e))?;
    if got != want {
        return Err(Error::Unsupported(
            "the kernel did not grant the reduced rights asked for",
        ));
    }
    Ok(new)
}

/// `OwnedHandle::as_handle`, without importing std's `AsHandle` (which
/// would clash with the crate's own trait of the same name in callers).
trait Borrow {
    fn as_handle_borrowed(&self) -> BorrowedHandle<'_>;
}

impl Borrow for OwnedHandle {
    fn as_handle_borrowed(&self) -> BorrowedHandle<'_> {
        std::os::windows::io::AsHandle::as_handle(self)
    }
}

/// Borrows a raw handle.
///
/// # Safety
/// `raw` must be open and stay open for `'a`.
pub(crate) unsafe fn borrow_raw<'a>(raw: RawHandle) -> BorrowedHandle<'a> {
    // SAFETY: the caller guarantees `raw` is open for 'a.
    unsafe { BorrowedHandle::borrow_raw(raw) }
}

/// Takes ownership of a raw handle.
///
/// # Safety
/// `raw` must be open and owned by nobody else; it will be closed when the
/// result is dropped.
pub(crate) unsafe fn own_raw(raw: RawHandle) -> OwnedHandle {
    // SAFETY: the caller hands over sole ownership of an open handle.
    unsafe { OwnedHandle::from_raw_handle(raw) }
}

/// A handle value from its widened form (see `Inherited`).
pub(crate) fn raw_from_bits(bits: u64) -> RawHandle {
    bits as usize as RawHandle
}

/// A handle value as the 32 bits that travel: 64-bit Windows keeps every
/// handle value within 32 significant bits (sign-extended, so 32-bit and
/// 64-bit processes can exchange them), like RPC's `__int3264`.
pub(crate) fn to_wire(raw: RawHandle) -> Option<u32> {
    let v = raw as isize;
    i32::try_from(v).ok().map(|v| v as u32)
}

/// The handle value 32 wire bits name, sign-extended.
pub(crate) fn from_wire(v: u32) -> RawHandle {
    v as i32 as isize as RawHandle
}

/// Views portable borrowed handles as std's borrowed handles.
pub(crate) fn as_raw_slice<'a, 'b>(
    handles: &'b [crate::BorrowedHandle<'a>],
) -> &'b [BorrowedHandle<'a>] {
    // SAFETY: crate::BorrowedHandle is #[repr(transparent)] over std's
    // BorrowedHandle, so the two slices have the same layout and lifetimes.
    unsafe { std::slice::from_raw_parts(handles.as_ptr().cast(), handles.len()) }
}

/// Takes ownership of handle `raw` inherited from the parent, and makes it
/// non-inheritable so it goes no further.
///
/// It must be open and inheritable: the parent passed inheritable
/// duplicates, and inheritance keeps the flag, while a non-inheritable
/// handle at that value was opened by this process and belongs to it.
pub(crate) fn claim_inherited(raw: RawHandle) -> io::Result<OwnedHandle> {
    let mut flags = 0u32;
    // SAFETY: GetHandleInformation only asks whether the value names an open
    // handle; no BorrowedHandle is made for a value that may not.
    if unsafe { GetHandleInformation(raw as HANDLE, &mut flags) } == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, "it is not open"));
    }
    if flags & HANDLE_FLAG_INHERIT == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not inheritable, so it was opened in this process, not inherited",
        ));
    }
    // SAFETY: the handle is open, arrived by inheritance, and the caller
    // claims each inherited value once per process.
    let owned = unsafe { own_raw(raw) };
    set_inheritable(owned.as_handle_borrowed(), false)?;
    Ok(owned)
}

/// Counts the handles this process holds.
pub(crate) fn count_open() -> io::Result<usize> {
    let mut n = 0u32;
    // SAFETY: the pseudo handle needs no closing; `n` is ours to write.
    cvt(unsafe { GetProcessHandleCount(GetCurrentProcess(), &mut n) })?;
    if n == 0 {
        // A running process always holds handles; 0 is an implementation
        // that does not count (Wine 8 answers 0 and success), so count by
        // asking each value instead.
        return Ok(count_by_probing());
    }
    Ok(n as usize)
}

/// Counts the open handle values from 4 up, stopping after a long run of
/// unused ones. Handle tables hand out the lowest free value, so open
/// values are dense at the bottom of the range.
fn count_by_probing() -> usize {
    const GIVE_UP_AFTER: usize = 4096;
    let (mut count, mut misses, mut value) = (0, 0, 4usize);
    while misses < GIVE_UP_AFTER {
        let mut flags = 0;
        // SAFETY: GetHandleInformation only asks whether the value names an
        // open handle of this process; nothing is borrowed or closed.
        if unsafe { GetHandleInformation(value as HANDLE, &mut flags) } != 0 {
            count += 1;
            misses = 0;
        } else {
            misses += 1;
        }
        value += 4;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::windows::io::AsHandle;
    use windows_sys::Win32::System::Threading::{CreateEventW, CreateMutexW, CreateWaitableTimerW};

    fn own(h: HANDLE) -> OwnedHandle {
        // SAFETY: a handle a creating call just returned, checked non-null.
        unsafe { super::super::owned(h) }.unwrap()
    }

    #[test]
    fn counting_sees_one_more_handle_and_one_less() {
        let before = count_open().unwrap();
        assert!(before > 0, "a running process holds handles");
        // SAFETY: an unnamed event with default security.
        let event = own(unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) });
        assert_eq!(count_open().unwrap(), before + 1);
        drop(event);
        assert_eq!(count_open().unwrap(), before);
        assert!(count_by_probing() > 0);
    }

    #[test]
    fn kinds_and_access_of_kernel_objects() {
        let before = count_open().unwrap();
        {
            // SAFETY: unnamed objects with default security.
            let event = own(unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) });
            // SAFETY: as above.
            let timer = own(unsafe { CreateWaitableTimerW(std::ptr::null(), 1, std::ptr::null()) });
            // SAFETY: as above.
            let mutex = own(unsafe { CreateMutexW(std::ptr::null(), 0, std::ptr::null()) });
            let e = event.as_handle();
            assert_eq!(kind(e).unwrap(), Kind::Event);
            assert_eq!(access(e).unwrap(), Access::READ_WRITE);
            let ro = restrict(e, Access::READ).unwrap();
            assert_eq!(access(ro.as_handle()).unwrap(), Access::READ);
            let wo = restrict(e, Access::WRITE).unwrap();
            assert_eq!(access(wo.as_handle()).unwrap(), Access::WRITE);
            assert!(matches!(
                restrict(ro.as_handle(), Access::WRITE),
                Err(Error::WrongAccess { .. })
            ));
            assert_eq!(kind(timer.as_handle()).unwrap(), Kind::Timer);
            assert_eq!(kind(mutex.as_handle()).unwrap(), Kind::Other);

            // SAFETY: the pseudo handle is valid for the call.
            let me = unsafe { BorrowedHandle::borrow_raw(GetCurrentProcess() as RawHandle) };
            let process = try_clone(me).unwrap();
            assert_eq!(kind(process.as_handle()).unwrap(), Kind::Process);
            assert!(!is_inheritable(process.as_handle()).unwrap());
            set_inheritable(process.as_handle(), true).unwrap();
            assert!(is_inheritable(process.as_handle()).unwrap());
        }
        assert_eq!(count_open().unwrap(), before);
    }
}
