//! Anonymous shared memory on Windows: a section backed by the paging file
//! (`CreateFileMappingW(INVALID_HANDLE_VALUE, …)`), with no name anyone
//! could open or squat. Its size is fixed at creation and it cannot be
//! sealed; read-only handles (`SECTION_MAP_READ | SECTION_QUERY`) take the
//! seals' place.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, OwnedHandle};

use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_HANDLE_EOF, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{GetFileSizeEx, ReadFile};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, VirtualQuery, FILE_MAP_READ,
    FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READWRITE,
};

use super::cvt;
use crate::Seals;

/// A section's size is fixed when it is created.
pub(crate) const CAN_GROW: bool = false;

/// Views are placed at multiples of the allocation granularity, which is
/// 64 KiB on every Windows version.
const GRANULARITY: u64 = 64 * 1024;
/// Large copies go through views of at most this size, so a multi-gigabyte
/// object never needs that much free address space at once.
const WINDOW: u64 = 64 << 20;

fn raw(h: BorrowedHandle<'_>) -> HANDLE {
    h.as_raw_handle() as HANDLE
}

/// As `create`; a read-only handle can always be made later here
/// (`handle::restrict`), so none is made now.
pub(crate) fn create_with_reader(
    name: &str,
    len: u64,
) -> io::Result<(OwnedHandle, Option<OwnedHandle>)> {
    create(name, len).map(|h| (h, None))
}

/// Creates an anonymous, non-inheritable section of exactly `len` bytes.
pub(crate) fn create(_name: &str, len: u64) -> io::Result<OwnedHandle> {
    if len == 0 {
        // The paging file cannot back an empty section.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an anonymous section cannot be empty",
        ));
    }
    // SAFETY: INVALID_HANDLE_VALUE asks for paging-file backing; null
    // security attributes make the handle non-inheritable; null name makes
    // it anonymous. The result is checked and owned at once.
    unsafe {
        super::owned(CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            (len >> 32) as u32,
            len as u32,
            std::ptr::null(),
        ))
    }
}

/// The unit a section's size is rounded up to.
const PAGE: u64 = 4096;

/// True when a section of `size` bytes is what `wanted` bytes were created
/// as: the system rounds a paging-file section up to whole pages (Wine
/// reports the rounded size; the exact size is accepted too).
pub(crate) fn size_fits(wanted: u64, size: u64) -> bool {
    size == wanted || (size.is_multiple_of(PAGE) && size >= wanted && size - wanted < PAGE)
}

/// The size of a section (`NtQuerySection`), or of a file.
pub(crate) fn len(h: BorrowedHandle<'_>) -> io::Result<u64> {
    if super::nt::object_type(h)? == "Section" {
        return super::nt::section_size(h);
    }
    let mut size = 0i64;
    // SAFETY: the handle is borrowed, `size` is ours to write.
    cvt(unsafe { GetFileSizeEx(raw(h), &mut size) })?;
    Ok(size as u64)
}

/// A view of part of a section, unmapped on drop.
struct View {
    base: MEMORY_MAPPED_VIEW_ADDRESS,
    /// Where the requested range starts inside the view.
    skip: usize,
    len: usize,
}

impl View {
    /// Maps `len` bytes at `offset` with `access` (`FILE_MAP_READ` or
    /// `FILE_MAP_WRITE`).
    fn map(h: BorrowedHandle<'_>, access: u32, offset: u64, len: usize) -> io::Result<View> {
        let start = offset - offset % GRANULARITY;
        let skip = (offset - start) as usize;
        // SAFETY: a new view chosen by the system; nothing existing is
        // replaced. The result is checked before use.
        let base = unsafe {
            MapViewOfFile(
                raw(h),
                access,
                (start >> 32) as u32,
                start as u32,
                skip + len,
            )
        };
        if base.Value.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(View { base, skip, len })
    }

    fn ptr(&self) -> *mut u8 {
        // SAFETY: `skip` is inside the view, which is `skip + len` long.
        unsafe { self.base.Value.cast::<u8>().add(self.skip) }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the view this value mapped.
        let _ = unsafe { UnmapViewOfFile(self.base) };
    }
}

/// Writes all of `bytes` at `offset` through writable views.
pub(crate) fn write_all_at(h: BorrowedHandle<'_>, bytes: &[u8], offset: u64) -> io::Result<()> {
    for (i, chunk) in bytes.chunks(WINDOW as usize).enumerate() {
        let view = View::map(h, FILE_MAP_WRITE, offset + i as u64 * WINDOW, chunk.len())?;
        // SAFETY: the view is writable for `chunk.len()` bytes from ptr();
        // `chunk` is ordinary memory that cannot overlap a fresh view.
        unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), view.ptr(), view.len) };
    }
    Ok(())
}

/// Fills `buf` from `offset` through read-only views.
pub(crate) fn read_exact_at(h: BorrowedHandle<'_>, buf: &mut [u8], offset: u64) -> io::Result<()> {
    if offset + buf.len() as u64 > len(h)? {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    for (i, chunk) in buf.chunks_mut(WINDOW as usize).enumerate() {
        let view = View::map(h, FILE_MAP_READ, offset + i as u64 * WINDOW, chunk.len())?;
        // SAFETY: the view is readable for `chunk.len()` bytes from ptr().
        unsafe { std::ptr::copy_nonoverlapping(view.ptr(), chunk.as_mut_ptr(), view.len) };
    }
    Ok(())
}

/// Reads from a file or pipe at its current position; 0 at its end.
pub(crate) fn read(h: BorrowedHandle<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let want = buf.len().min(u32::MAX as usize) as u32;
    let mut n = 0u32;
    // SAFETY: `buf` is writable for `want` bytes; synchronous read (no
    // OVERLAPPED) on a borrowed handle.
    let ok = unsafe { ReadFile(raw(h), buf.as_mut_ptr(), want, &mut n, std::ptr::null_mut()) };
    if ok == 0 {
        let e = io::Error::last_os_error();
        // A pipe whose writer has gone, or a file read past its end.
        return match e.raw_os_error().map(|c| c as u32) {
            Some(ERROR_BROKEN_PIPE) | Some(ERROR_HANDLE_EOF) => Ok(0),
            _ => Err(e),
        };
    }
    Ok(n as usize)
}

/// Windows has no in-kernel file-to-section copy: the caller reads and
/// writes.
pub(crate) fn copy_in_kernel(
    _src: BorrowedHandle<'_>,
    _dst: BorrowedHandle<'_>,
    _offset: u64,
    _max: u64,
) -> io::Result<u64> {
    Ok(0)
}

/// Sections cannot be sealed.
pub(crate) fn add_seals(_h: BorrowedHandle<'_>, _seals: Seals) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "Windows sections cannot be sealed",
    ))
}

/// A read-only view of a whole section, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the view is read-only and owned by this value; sharing `&[u8]`
// views across threads is fine.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of the section read-only, and checks with
    /// `VirtualQuery` that the view really is that long (seed 03's check:
    /// never trust a size without asking the memory manager).
    ///
    /// The caller must hold the only kind of handle that can exist: a
    /// read-only one (`StartupData::open` checks), so the bytes cannot
    /// change under the slice.
    pub(crate) fn read_only(
        h: BorrowedHandle<'_>,
        len: usize,
        _populate: bool,
    ) -> io::Result<Mapping> {
        if !super::super::mapping::check(len, self::len(h)?)? {
            return Ok(Mapping {
                ptr: std::ptr::NonNull::<u8>::dangling().as_ptr(),
                len: 0,
            });
        }
        // SAFETY: a new read-only view chosen by the system; checked below.
        let base = unsafe { MapViewOfFile(raw(h), FILE_MAP_READ, 0, 0, len) };
        if base.Value.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mapping = Mapping {
            ptr: base.Value.cast(),
            len,
        };
        // SAFETY: zeroed plain data is a valid value to be filled in.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: VirtualQuery only reads the address space description.
        let got = unsafe {
            VirtualQuery(
                base.Value,
                &mut info,
                std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        if got < std::mem::size_of::<MEMORY_BASIC_INFORMATION>() || info.RegionSize < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the mapped view is shorter than the section claims",
            ));
        }
        Ok(mapping)
    }

    /// The mapped bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is mapped readable for the life of self, and
        // no writable handle to the section exists (see `read_only`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            let base = MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr as *mut c_void,
            };
            // SAFETY: unmapping exactly the view this value mapped.
            let _ = unsafe { UnmapViewOfFile(base) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Access;

    #[test]
    fn a_read_only_section_cannot_be_mapped_writable() {
        let section = create("t", 4096).unwrap();
        let b = std::os::windows::io::AsHandle::as_handle(&section);
        write_all_at(b, b"hello", 100).unwrap();
        let ro = super::super::handle::restrict(b, Access::READ).unwrap();
        let ro_b = std::os::windows::io::AsHandle::as_handle(&ro);
        assert_eq!(super::super::handle::access(ro_b).unwrap(), Access::READ);
        assert_eq!(super::super::nt::section_size(ro_b).unwrap(), 4096);
        assert!(size_fits(4000, 4096) && size_fits(4096, 4096) && size_fits(100, 100));
        assert!(!size_fits(4096, 8192) && !size_fits(100, 4000));
        let err = View::map(ro_b, FILE_MAP_WRITE, 0, 16).err().unwrap();
        assert_eq!(
            err.raw_os_error(),
            Some(windows_sys::Win32::Foundation::ERROR_ACCESS_DENIED as i32),
            "FILE_MAP_WRITE through a SECTION_MAP_READ handle: {err}"
        );
        let m = Mapping::read_only(ro_b, 4096, false).unwrap();
        assert_eq!(&m.as_slice()[100..105], b"hello");
        let mut buf = [0u8; 5];
        read_exact_at(ro_b, &mut buf, 100).unwrap();
        assert_eq!(&buf, b"hello");
    }
}
