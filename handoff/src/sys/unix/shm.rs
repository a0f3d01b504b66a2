//! Anonymous shared memory.
//!
//! The Linux configuration uses a memfd, sealed by its creator so that
//! nobody can change it afterwards. The portable configuration (macOS, the
//! BSDs, and Linux with `--cfg handoff_unix_portable`) uses POSIX shared
//! memory: `shm_open` with a random name, `O_CREAT | O_EXCL` (a squatter's
//! object is refused, never reused), opened a second time read-only and
//! unlinked at once, so no name survives long enough to be opened by anyone
//! else. POSIX shared memory has no seals, and once the name is gone no
//! descriptor with fewer rights can be made from the writable one (there is
//! no `/proc/self/fd` to reopen on macOS), hence the read-only twin opened
//! before the unlink: the creator writes through its writable descriptor,
//! drops it, and hands on only the twin. The guarantee there is "no
//! writable descriptor exists once the creator has let go", not a seal.
//!
//! macOS refuses `read`/`write` on POSIX shared memory and sizes it once
//! (`ftruncate` after the first fails), so the portable configuration
//! reads and writes it through mappings and never grows it; run on Linux,
//! the same code is what CI tests.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::Seals;

/// Whether shared memory can grow after it is created: a memfd is a file;
/// POSIX shared memory on macOS takes one `ftruncate` only, so the portable
/// configuration treats none as growable.
pub(crate) const CAN_GROW: bool = cfg!(not(handoff_portable));

/// Creates a close-on-exec shared-memory object of `len` bytes (a memfd
/// that can be sealed, or POSIX shared memory), and a read-only descriptor
/// to it where one cannot be made later (`None` where `handle::restrict`
/// can).
pub(crate) fn create_with_reader(name: &str, len: u64) -> io::Result<(OwnedFd, Option<OwnedFd>)> {
    use std::os::fd::AsFd;
    let (fd, reader) = create_empty(name)?;
    rustix::fs::ftruncate(fd.as_fd(), len)?;
    Ok((fd, reader))
}

#[cfg(not(handoff_portable))]
fn create_empty(name: &str) -> io::Result<(OwnedFd, Option<OwnedFd>)> {
    use rustix::fs::MemfdFlags;
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    Ok((fd, None))
}

/// The longest name macOS accepts (`PSHMNAMLEN`), leading slash included.
#[cfg(handoff_portable)]
const MAX_NAME: usize = 31;

#[cfg(handoff_portable)]
fn create_empty(name: &str) -> io::Result<(OwnedFd, Option<OwnedFd>)> {
    use rustix::fs::Mode;
    use rustix::shm::OFlags;
    use std::fmt::Write;
    use std::os::fd::AsFd;
    // The caller's name (cut to fit) is only a hint for whoever lists
    // /dev/shm in the instant the object is there; 64 random bits make it
    // unguessable, and O_EXCL refuses any object already of that name.
    let prefix: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(MAX_NAME - 1 - 1 - 16)
        .collect();
    for _ in 0..16 {
        let mut nonce = [0u8; 8];
        super::random::fill(&mut nonce)?;
        let mut path = format!("/{prefix}.");
        for b in nonce {
            let _ = write!(path, "{b:02x}");
        }
        let rw = match rustix::shm::open(
            path.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        };
        let ro = rustix::shm::open(path.as_str(), OFlags::RDONLY, Mode::empty());
        // Unlinked before anything can fail, so no name is left behind.
        let _ = rustix::shm::unlink(path.as_str());
        let ro = ro?;
        // glibc opens POSIX shared memory close-on-exec, macOS and the BSDs
        // do not: set it before either descriptor leaves this function.
        super::handle::set_inheritable(rw.as_fd(), false)?;
        super::handle::set_inheritable(ro.as_fd(), false)?;
        return Ok((rw, Some(ro)));
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free shared-memory name in 16 random tries",
    ))
}

/// True when an object of `size` bytes is what `wanted` bytes were
/// created as: exactly, since a file's size is not rounded; on macOS,
/// whose POSIX shared memory is sized in whole pages (`ftruncate` rounds
/// up, and `fstat` reports the rounded size), also that size rounded up.
pub(crate) fn size_fits(wanted: u64, size: u64) -> bool {
    #[cfg(target_vendor = "apple")]
    {
        let page = rustix::param::page_size() as u64;
        size == wanted || (size > wanted && wanted.div_ceil(page).checked_mul(page) == Some(size))
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        wanted == size
    }
}

/// The object's size.
pub(crate) fn len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// Writes all of `bytes` at `offset`.
#[cfg(not(handoff_portable))]
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

/// Writes all of `bytes` at `offset`, through a shared mapping (macOS has
/// no `write` for POSIX shared memory). Past the end is `WriteZero`: the
/// object never grows here, and touching a mapping past it would fault.
#[cfg(handoff_portable)]
pub(crate) fn write_all_at(fd: BorrowedFd<'_>, bytes: &[u8], offset: u64) -> io::Result<()> {
    let mut window = Window::map(fd, offset, bytes.len(), true)
        .map_err(|e| short_as(e, io::ErrorKind::WriteZero))?;
    window.bytes_mut().copy_from_slice(bytes);
    Ok(())
}

/// Fills `buf` from `offset`, through a mapping (macOS has no `read` for
/// POSIX shared memory); a short object is `UnexpectedEof`.
#[cfg(handoff_portable)]
pub(crate) fn read_exact_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let window = Window::map(fd, offset, buf.len(), false)?;
    buf.copy_from_slice(window.bytes());
    Ok(())
}

#[cfg(handoff_portable)]
fn short_as(e: io::Error, kind: io::ErrorKind) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        kind.into()
    } else {
        e
    }
}

/// `len` bytes of an object at `offset`, mapped shared for one copy in or
/// out, unmapped on drop.
#[cfg(handoff_portable)]
struct Window {
    base: *mut std::ffi::c_void,
    map_len: usize,
    skip: usize,
    len: usize,
}

#[cfg(handoff_portable)]
impl Window {
    fn map(fd: BorrowedFd<'_>, offset: u64, len: usize, writable: bool) -> io::Result<Window> {
        use rustix::mm::{MapFlags, ProtFlags};
        let end = offset
            .checked_add(len as u64)
            .ok_or(io::ErrorKind::InvalidInput)?;
        // Checked first: a mapping past the object's end raises SIGBUS
        // when touched instead of returning an error.
        if end > self::len(fd)? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if len == 0 {
            return Ok(Window {
                base: std::ptr::NonNull::<u8>::dangling().as_ptr().cast(),
                map_len: 0,
                skip: 0,
                len: 0,
            });
        }
        let page = rustix::param::page_size() as u64;
        let start = offset - offset % page;
        let skip = (offset - start) as usize;
        let map_len = skip + len;
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a fresh mapping chosen by the kernel (no fixed address),
        // so no existing memory is replaced; it lies within the object.
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                map_len,
                prot,
                MapFlags::SHARED,
                fd,
                start,
            )?
        };
        Ok(Window {
            base,
            map_len,
            skip,
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: base+skip..base+skip+len is mapped readable while self
        // lives and lies inside the object (checked against its size).
        unsafe { std::slice::from_raw_parts(self.base.cast::<u8>().add(self.skip), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as in `bytes`, mapped writable (the only caller asked for
        // it), and borrowed mutably through this value only.
        unsafe { std::slice::from_raw_parts_mut(self.base.cast::<u8>().add(self.skip), self.len) }
    }
}

#[cfg(handoff_portable)]
impl Drop for Window {
    fn drop(&mut self) {
        if self.map_len > 0 {
            // SAFETY: unmaps exactly the region `map` mapped.
            let _ = unsafe { rustix::mm::munmap(self.base, self.map_len) };
        }
    }
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
#[cfg(not(handoff_portable))]
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
    // Neither sendfile nor splice writes into POSIX shared memory on macOS;
    // the portable configuration copies through a buffer everywhere.
    #[cfg(not(handoff_portable))]
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
    #[cfg(handoff_portable)]
    {
        let _ = (src, dst, offset, max);
        Ok(0)
    }
}

#[cfg(not(handoff_portable))]
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

/// Adds seals (memfd); `Unsupported` in the portable configuration, whose
/// POSIX shared memory has none: there the read-only descriptor from
/// [`create_with_reader`] takes their place.
pub(crate) fn add_seals(fd: BorrowedFd<'_>, seals: Seals) -> io::Result<()> {
    #[cfg(not(handoff_portable))]
    {
        let flags = rustix::fs::SealFlags::from_bits_truncate(seals.bits());
        rustix::fs::fcntl_add_seals(fd, flags).map_err(Into::into)
    }
    #[cfg(handoff_portable)]
    {
        let _ = (fd, seals);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "POSIX shared memory has no seals",
        ))
    }
}

/// The seals in force.
#[cfg(not(handoff_portable))]
pub(crate) fn seals(fd: BorrowedFd<'_>) -> io::Result<Seals> {
    Ok(Seals::from_bits_truncate(
        rustix::fs::fcntl_get_seals(fd)?.bits(),
    ))
}

/// Whether `fd` is a memfd sealed against writing and shrinking, on the
/// platforms with memfds (a caller may pass one in the portable
/// configuration too).
#[cfg(handoff_portable)]
fn sealed_memfd(fd: BorrowedFd<'_>) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    if let Ok(seals) = rustix::fs::fcntl_get_seals(fd) {
        return seals.contains(rustix::fs::SealFlags::WRITE | rustix::fs::SealFlags::SHRINK);
    }
    let _ = fd;
    false
}

/// A read-only shared mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only, sealed against writes by its creator
// (portable configuration: reached only through read-only descriptors),
// and owned by this value; sharing `&[u8]` views across threads is fine.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` read-only and shared. `populate` faults every
    /// page in up front, which is faster when all of it will be read.
    ///
    /// A memfd must be sealed against writing and shrinking, so the mapped
    /// bytes can neither change under a `&[u8]` nor vanish (`SIGBUS`). In
    /// the portable configuration, whose POSIX shared memory has no seals,
    /// the descriptor must be read-only (or a sealed memfd where the
    /// platform has them): the object's creator hands on only such
    /// descriptors and drops its writable one, and nobody can open it by
    /// name.
    pub(crate) fn read_only(fd: BorrowedFd<'_>, len: usize, populate: bool) -> io::Result<Mapping> {
        use rustix::mm::{MapFlags, ProtFlags};
        #[cfg(not(handoff_portable))]
        if !seals(fd)?.contains(Seals::WRITE | Seals::SHRINK) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared memory must be sealed against write and shrink before it is mapped",
            ));
        }
        #[cfg(handoff_portable)]
        if super::handle::access(fd)?.contains(crate::Access::WRITE) && !sealed_memfd(fd) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared memory without seals must arrive as a read-only descriptor to be mapped",
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
        // object is sealed against writes and shrinking (portable: reached
        // only through read-only descriptors; `read_only` checked), so the
        // bytes neither change nor vanish under the slice.
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

#[cfg(all(test, handoff_portable))]
mod tests {
    use std::os::fd::AsFd;

    use rustix::io::Errno;
    use rustix::mm::{MapFlags, ProtFlags};

    /// Refused, with this errno on Linux (XNU answers with errors of its
    /// own, `EPERM` for the mapping; only the refusal is portable).
    fn refused<T: std::fmt::Debug>(r: rustix::io::Result<T>, linux: Errno) {
        assert!(r.is_err(), "allowed: {r:?}");
        if cfg!(target_os = "linux") {
            assert_eq!(r.err(), Some(linux));
        }
    }

    /// What a receiver of startup data gets in the portable configuration:
    /// a descriptor that can neither write the object nor map it writable
    /// and shared, while the creator's writes show through it.
    #[test]
    fn the_reader_cannot_write_or_map_writable() {
        let (rw, ro) = super::create_with_reader("test", 8192).unwrap();
        let ro = ro.expect("a read-only twin in the portable configuration");
        super::write_all_at(rw.as_fd(), b"abc", 4097).unwrap();
        drop(rw);
        let mut got = [0u8; 3];
        super::read_exact_at(ro.as_fd(), &mut got, 4097).unwrap();
        assert_eq!(&got, b"abc");
        refused(rustix::io::write(&ro, b"x"), Errno::BADF);
        refused(rustix::io::pwrite(&ro, b"x", 0), Errno::BADF);
        // SAFETY: a fresh mapping at an address the kernel chooses; it is
        // expected to be refused, and unmapped if it is not.
        let mapped = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                8192,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &ro,
                0,
            )
        };
        if let Ok(p) = mapped {
            // SAFETY: unmapping the region just mapped.
            let _ = unsafe { rustix::mm::munmap(p, 8192) };
            panic!("a read-only descriptor was mapped writable and shared");
        }
        refused(mapped, Errno::ACCESS);
        assert!(
            rustix::fs::ftruncate(&ro, 0).is_err(),
            "a read-only descriptor shrank the object"
        );
        assert!(super::add_seals(ro.as_fd(), crate::Seals::IMMUTABLE).is_err());
        assert!(super::Mapping::read_only(ro.as_fd(), 8192, false).is_ok());
    }

    /// Reads and writes past the end (the size the kernel reports, which
    /// macOS rounds up to a page) are errors, never a fault.
    #[test]
    fn past_the_end_is_an_error() {
        let (rw, _) = super::create_with_reader("test", 10).unwrap();
        let size = super::len(rw.as_fd()).unwrap();
        assert!(super::size_fits(10, size), "{size}");
        let e = super::write_all_at(rw.as_fd(), b"abc", size - 2).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WriteZero);
        let mut buf = [0u8; 4];
        let e = super::read_exact_at(rw.as_fd(), &mut buf, size - 3).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        super::read_exact_at(rw.as_fd(), &mut buf, size - 4).unwrap();
        // A writable descriptor is refused for the long-lived mapping.
        assert!(super::Mapping::read_only(rw.as_fd(), 10, false).is_err());
    }
}
