//! The few ntdll queries Win32 does not wrap: an object's type name and
//! granted access (`NtQueryObject`), a section's size (`NtQuerySection`),
//! and NTSTATUS codes as Win32 errors. Shared by `handle.rs` and `shm.rs`,
//! which therefore need nothing from each other.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle};

use windows_sys::Wdk::Foundation::{NtQueryObject, ObjectBasicInformation, ObjectTypeInformation};
use windows_sys::Win32::Foundation::{HANDLE, STATUS_SUCCESS};
use windows_sys::Win32::System::WindowsProgramming::{
    PUBLIC_OBJECT_BASIC_INFORMATION, PUBLIC_OBJECT_TYPE_INFORMATION,
};

fn raw(h: BorrowedHandle<'_>) -> HANDLE {
    h.as_raw_handle() as HANDLE
}

/// The object type's name as the object manager knows it: `File`,
/// `Section`, `Event`, `Process`, `Timer`, `Mutant`, …
pub(crate) fn object_type(h: BorrowedHandle<'_>) -> io::Result<String> {
    // The structure is followed by the name's characters; 1 KiB holds any
    // type name. u64 elements keep it aligned for the structure.
    let mut buf = [0u64; 128];
    let mut len = 0u32;
    // SAFETY: the buffer is writable for its whole size, which is passed;
    // the handle is borrowed for the call.
    let status = unsafe {
        NtQueryObject(
            raw(h),
            ObjectTypeInformation,
            buf.as_mut_ptr().cast(),
            std::mem::size_of_val(&buf) as u32,
            &mut len,
        )
    };
    if status != STATUS_SUCCESS {
        return Err(ntstatus(status));
    }
    // SAFETY: on success the buffer starts with the structure, and its
    // UNICODE_STRING points into the same buffer (or is empty).
    let info = unsafe { &*buf.as_ptr().cast::<PUBLIC_OBJECT_TYPE_INFORMATION>() };
    let name = &info.TypeName;
    if name.Buffer.is_null() || name.Length == 0 {
        return Ok(String::new());
    }
    // SAFETY: Buffer holds Length bytes of UTF-16 inside `buf`, which is
    // alive and unchanged for this borrow.
    let chars = unsafe { std::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2) };
    Ok(String::from_utf16_lossy(chars))
}

/// The access mask the handle was granted.
pub(crate) fn granted_access(h: BorrowedHandle<'_>) -> io::Result<u32> {
    let mut info = PUBLIC_OBJECT_BASIC_INFORMATION::default();
    let mut len = 0u32;
    // SAFETY: `info` is writable for its size, which is passed.
    let status = unsafe {
        NtQueryObject(
            raw(h),
            ObjectBasicInformation,
            (&mut info as *mut PUBLIC_OBJECT_BASIC_INFORMATION).cast::<c_void>(),
            std::mem::size_of::<PUBLIC_OBJECT_BASIC_INFORMATION>() as u32,
            &mut len,
        )
    };
    if status != STATUS_SUCCESS {
        return Err(ntstatus(status));
    }
    Ok(info.GrantedAccess)
}

/// An NTSTATUS as the Win32 error it corresponds to.
pub(crate) fn ntstatus(status: i32) -> io::Error {
    use windows_sys::Win32::Foundation::RtlNtStatusToDosError;
    // SAFETY: a pure translation table lookup.
    let code = unsafe { RtlNtStatusToDosError(status) };
    io::Error::from_raw_os_error(code as i32)
}

/// The size the section was created with. Needs `SECTION_QUERY`.
pub(crate) fn section_size(h: BorrowedHandle<'_>) -> io::Result<u64> {
    #[repr(C)]
    struct SectionBasicInformation {
        base: *mut c_void,
        attributes: u32,
        size: i64,
    }
    // windows-sys does not declare NtQuerySection; ntdll has exported it
    // since Windows NT.
    #[link(name = "ntdll", kind = "raw-dylib")]
    extern "system" {
        fn NtQuerySection(
            section: HANDLE,
            class: i32,
            info: *mut c_void,
            len: usize,
            returned: *mut usize,
        ) -> i32;
    }
    const SECTION_BASIC_INFORMATION: i32 = 0;
    let mut info = SectionBasicInformation {
        base: std::ptr::null_mut(),
        attributes: 0,
        size: 0,
    };
    let mut returned = 0usize;
    // SAFETY: `info` matches SECTION_BASIC_INFORMATION's layout and is
    // writable for the size passed; the handle is borrowed for the call.
    let status = unsafe {
        NtQuerySection(
            raw(h),
            SECTION_BASIC_INFORMATION,
            (&mut info as *mut SectionBasicInformation).cast(),
            std::mem::size_of::<SectionBasicInformation>(),
            &mut returned,
        )
    };
    if status != STATUS_SUCCESS {
        return Err(ntstatus(status));
    }
    Ok(info.size as u64)
}
