//! Anonymous shared memory: memfd on Linux and FreeBSD, `shm_open` with an
//! immediate unlink elsewhere (no name survives long enough to be squatted
//! or opened by anyone else).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::Seals;

/// Shared memory here can grow after it is created (it is a file).
pub(crate) const CAN_GROW: bool = true;

/// Creates a sealable, close-on-exec shared-memory object of `len` bytes.
pub(crate) fn create(name: &str, len: u64) -> io::Result<OwnedFd> {
    use std::os::fd::AsFd;
    let fd = create_empty(name)?;
    rustix::fs::ftruncate(fd.as_fd(), len)?;
    Ok(fd)
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn create_empty(name: &str) -> io::Result<OwnedFd> {
    use rustix::fs::MemfdFlags;
    rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(Into::into)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn create_empty(name: &str) -> io::Result<OwnedFd> {
    use rustix::fs::Mode;
    use rustix::shm::OFlags;
    use std::os::fd::AsFd;
    // A random name, created exclusively and unlinked at once: it exists
    // only between these two calls, and O_EXCL refuses a squatter.
    for attempt in 0..16u32 {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id().rotate_left(16)
            ^ attempt.wrapping_mul(0x9e37_79b9);
        let path = format!("/{name}-{nonce:08x}");
        match rustix::shm::open(
            path.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        ) {
            Ok(fd) => {
                let _ = rustix::shm::unlink(path.as_str());
                super::handle::set_inheritable(fd.as_fd(), false)?;
                return Ok(fd);
            }
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free shared-memory name",
    ))
}

/// True when an object of `size` bytes is what `wanted` bytes were
/// created as: exactly, since a file's size is not rounded.
pub(crate) fn size_fits(wanted: u64, size: u64) -> bool {
    wanted == size
}

/// The object's size.
pub(crate) fn len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// Writes all of `bytes` at `offset`.
pub(crate) fn write_all_at(
    fd: BorrowedFd<'_>,
    mut bytes: &[u8],
    mut offset: u64,
) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::pwrite(fd, bytes, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                bytes = &bytes[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads from the current offset.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(Into::into),
        }
    }
}

/// Fills `buf` from `offset`; a short object is `UnexpectedEof`.
pub(crate) fn read_exact_at(
    fd: BorrowedFd<'_>,
    mut buf: &mut [u8],
    mut offset: u64,
) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pread(fd, &mut *buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Copies `len` bytes from `src` (a file or pipe) to `dst` at `offset` in
/// the kernel where it can (`sendfile`, `splice`), returning how many bytes
/// it copied; 0 means the caller must fall back to read and write.
pub(crate) fn copy_in_kernel(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    offset: u64,
    max: u64,
) -> io::Result<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        rustix::fs::seek(dst, rustix::fs::SeekFrom::Start(offset))?;
        let mut copied = 0u64;
        while copied < max {
            let chunk = (max - copied).min(1 << 30) as usize;
            let n = match rustix::fs::sendfile(dst, src, None, chunk) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                // Not a file sendfile can read (a pipe, a socket): try splice.
                Err(rustix::io::Errno::INVAL) if copied == 0 => return splice_in(src, dst, max),
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                break;
            }
            copied += n as u64;
        }
        Ok(copied)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (src, dst, offset, max);
        Ok(0)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn splice_in(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, max: u64) -> io::Result<u64> {
    use rustix::pipe::{splice, SpliceFlags};
    let mut copied = 0u64;
    while copied < max {
        let chunk = (max - copied).min(1 << 30) as usize;
        let n = match splice(src, None, dst, None, chunk, SpliceFlags::MOVE) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::INVAL) if copied == 0 => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        copied += n as u64;
    }
    Ok(copied)
}

/// Adds seals.
pub(crate) fn add_seals(fd: BorrowedFd<'_>, seals: Seals) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        let flags = rustix::fs::SealFlags::from_bits_truncate(seals.bits());
        rustix::fs::fcntl_add_seals(fd, flags).map_err(Into::into)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        let _ = (fd, seals);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this platform has no memory seals",
        ))
    }
}

/// The seals in force.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub(crate) fn seals(fd: BorrowedFd<'_>) -> io::Result<Seals> {
    Ok(Seals::from_bits_truncate(
        rustix::fs::fcntl_get_seals(fd)?.bits(),
    ))
}

/// A read-only shared mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only, sealed against writes by its creator,
// and owned by this value; sharing `&[u8]` views across threads is fine.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` read-only and shared. `populate` faults every
    /// page in up front, which is faster when all of it will be read.
    ///
    /// Where the platform has seals, the object must be sealed against
    /// writing and shrinking, so the mapped bytes can neither change under a
    /// `&[u8]` nor vanish (`SIGBUS`).
    pub(crate) fn read_only(fd: BorrowedFd<'_>, len: usize, populate: bool) -> io::Result<Mapping> {
        use rustix::mm::{MapFlags, ProtFlags};
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        if !seals(fd)?.contains(Seals::WRITE | Seals::SHRINK) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared memory must be sealed against write and shrink before it is mapped",
            ));
        }
        if !super::super::mapping::check(len, self::len(fd)?)? {
            return Ok(Mapping {
                ptr: std::ptr::NonNull::<u8>::dangling().as_ptr().cast(),
                len: 0,
            });
        }
        #[allow(unused_mut)]
        let mut flags = MapFlags::SHARED;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if populate {
            flags |= MapFlags::POPULATE;
        }
        let _ = populate;
        // SAFETY: a fresh mapping chosen by the kernel (no fixed address), so
        // no existing memory is replaced.
        let ptr =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ, flags, fd, 0)? };
        Ok(Mapping { ptr, len })
    }

    /// The mapped bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is mapped readable for the life of self; the
        // object is sealed against writes and shrinking (the caller checked),
        // so the bytes neither change nor vanish under the slice.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the region this value mapped.
            let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
        }
    }
}
