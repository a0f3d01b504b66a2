//! The only unsafe code in handoff-bench, kept to what a raw baseline
//! cannot do without it:
//!
//! * shared mappings of a memfd for `startup_data_1gib`'s hand-written
//!   baseline (the child maps the sealed data read-only, as handoff does
//!   inside the library; the parent may fill it through a writable
//!   mapping, as ipc-channel does);
//! * a no-op `pre_exec` hook, which makes std `fork` instead of using
//!   `posix_spawn`: `spawn_overhead` measures what that costs, since
//!   `handoff::Command` needs a hook.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::os::fd::BorrowedFd;

use rustix::fs::SealFlags;
use rustix::mm::{MapFlags, ProtFlags};

/// A read-only shared mapping of a sealed memfd, unmapped on drop.
#[derive(Debug)]
pub struct ReadOnly {
    ptr: *mut c_void,
    len: usize,
}

impl ReadOnly {
    /// Maps the first `len` bytes of `fd` read-only and shared, faulting
    /// every page in at once with `populate` (`MAP_POPULATE`).
    ///
    /// `fd` must be sealed against writes and shrinking (checked here), so
    /// the mapped bytes can neither change under the slice nor vanish.
    pub fn map(fd: BorrowedFd<'_>, len: usize, populate: bool) -> io::Result<ReadOnly> {
        let seals = rustix::fs::fcntl_get_seals(fd)?;
        if !seals.contains(SealFlags::WRITE | SealFlags::SHRINK) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not sealed against write and shrink",
            ));
        }
        if (len as u64) > rustix::fs::fstat(fd)?.st_size as u64 || len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an empty mapping or one beyond the end of the object",
            ));
        }
        let mut flags = MapFlags::SHARED;
        if populate {
            flags |= MapFlags::POPULATE;
        }
        // SAFETY: a new mapping at an address the kernel chooses replaces no
        // existing memory.
        let ptr =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ, flags, fd, 0)? };
        Ok(ReadOnly { ptr, len })
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is mapped readable for the life of self, and
        // the object is sealed against writes and shrinking (checked in
        // `map`), so the bytes neither change nor disappear.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region this value mapped; the slices
        // borrowed from it ended with the borrow of self.
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

/// Copies `bytes` to the start of `fd` (already at least that long)
/// through a writable shared mapping, faulting its pages in as it goes
/// (ipc-channel's way), and unmaps it again (a memfd with a writable
/// mapping cannot be sealed against writes).
pub fn write_through_mapping(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() || (bytes.len() as u64) > rustix::fs::fstat(fd)?.st_size as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an empty copy or one beyond the end of the object",
        ));
    }
    let len = bytes.len();
    // SAFETY: a new mapping at an address the kernel chooses replaces no
    // existing memory.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )?
    };
    // SAFETY: ptr..ptr+len is mapped writable (no reference to it exists,
    // so another holder of the memfd writing too could only change the
    // bytes, not break this process), and `bytes` is ordinary memory that
    // cannot overlap a mapping made just now.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.cast::<u8>(), len) };
    // SAFETY: unmapping exactly the region mapped above, of which nothing
    // is borrowed.
    unsafe { rustix::mm::munmap(ptr, len)? };
    Ok(())
}

/// Installs a `pre_exec` hook that does nothing: std then spawns with
/// `fork` + `exec`, as it must for `handoff::Command` (which needs a hook),
/// instead of `posix_spawn`.
pub fn force_fork(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs between fork and exec and does nothing at all:
    // no allocation, no locks, no system calls.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
}
