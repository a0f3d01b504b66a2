//! Handle queries and duplication on Unix: what a descriptor is, what it may
//! do, and new descriptors to the same object.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

#[cfg(any(target_os = "linux", target_os = "android"))]
use rustix::fs::Mode;
use rustix::fs::{FileType, OFlags};
use rustix::io::FdFlags;

use crate::{Access, Error, Kind, PipeEnd, Result, Seals, SocketFamily, SocketType};

/// Duplicates `fd` with close-on-exec set in the same step
/// (`F_DUPFD_CLOEXEC`), so no other thread's `exec` can catch it open.
pub(crate) fn try_clone(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(Into::into)
}

/// Reads the access mode the descriptor was opened with (`O_ACCMODE`).
pub(crate) fn access(fd: BorrowedFd<'_>) -> io::Result<Access> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    Ok(access_from_flags(flags))
}

fn access_from_flags(flags: OFlags) -> Access {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if flags.contains(OFlags::PATH) {
        return Access::NONE;
    }
    match flags & OFlags::RWMODE {
        f if f == OFlags::RDONLY => Access::READ,
        f if f == OFlags::WRONLY => Access::WRITE,
        _ => Access::READ_WRITE,
    }
}

/// True when the descriptor survives `exec` (close-on-exec is clear).
pub(crate) fn is_inheritable(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(!rustix::io::fcntl_getfd(fd)?.contains(FdFlags::CLOEXEC))
}

/// Sets or clears close-on-exec.
pub(crate) fn set_inheritable(fd: BorrowedFd<'_>, inheritable: bool) -> io::Result<()> {
    let mut flags = rustix::io::fcntl_getfd(fd)?;
    flags.set(FdFlags::CLOEXEC, !inheritable);
    rustix::io::fcntl_setfd(fd, flags).map_err(Into::into)
}

/// Reads what the descriptor refers to from the kernel.
pub(crate) fn kind(fd: BorrowedFd<'_>) -> io::Result<Kind> {
    let stat = rustix::fs::fstat(fd)?;
    // st_dev is narrower or signed on some platforms.
    #[allow(clippy::unnecessary_cast)]
    let dev = stat.st_dev as u64;
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => match shared_memory_seals(fd, dev) {
            Some(seals) => Kind::SharedMemory {
                size: stat.st_size as u64,
                seals,
            },
            None => Kind::File,
        },
        FileType::Directory => Kind::Directory,
        FileType::Fifo => Kind::Pipe {
            end: match access(fd)? {
                a if a == Access::READ => PipeEnd::Read,
                a if a == Access::WRITE => PipeEnd::Write,
                _ => PipeEnd::Both,
            },
        },
        FileType::Socket => socket_kind(fd)?,
        FileType::CharacterDevice => {
            if rustix::termios::isatty(fd) {
                Kind::Terminal
            } else {
                Kind::Other
            }
        }
        // XNU's fstat of POSIX shared memory reports its permission bits
        // and no file type at all (pshm_stat), and nothing else it stats
        // does that.
        #[cfg(target_vendor = "apple")]
        FileType::Unknown if u32::from(stat.st_mode) & 0o170_000 == 0 => Kind::SharedMemory {
            size: stat.st_size as u64,
            seals: Seals::NONE,
        },
        _ => anon_inode_kind(fd),
    };
    Ok(kind)
}

/// Seals of a memfd, or `Some(empty)` for a POSIX shm object; `None` for an
/// ordinary file.
fn shared_memory_seals(fd: BorrowedFd<'_>, dev: u64) -> Option<Seals> {
    // Only files of tmpfs (where memfds and POSIX shm live) and hugetlbfs
    // can carry seals, and both are filesystems without a device, whose
    // device numbers have major 0: a file on a disk's filesystem is settled
    // by the fstat already made, with no further system call, and another
    // by one fstatfs. If fstatfs fails, everything is tried as before.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if rustix::fs::major(dev) != 0 {
        return None;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let fs = filesystem(fd);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if fs.is_some_and(|f| f != TMPFS_MAGIC && f != HUGETLBFS_MAGIC) {
        return None;
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    if let Ok(seals) = rustix::fs::fcntl_get_seals(fd) {
        return Some(Seals::from_bits_truncate(seals.bits()));
    }
    // POSIX shared memory lives on a tmpfs at /dev/shm on Linux; elsewhere
    // there is no way to tell it from a file, so it stays a file. The path
    // is only read for tmpfs files: reading /proc/self/fd costs 2.7 us, a
    // price every kind check of an ordinary file paid before.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if fs == Some(TMPFS_MAGIC) {
        if let Some(target) = fd_target(fd) {
            if target.starts_with("/dev/shm/") {
                return Some(Seals::NONE);
            }
        }
    }
    let _ = (fd, dev);
    None
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const TMPFS_MAGIC: u32 = 0x0102_1994;
#[cfg(any(target_os = "linux", target_os = "android"))]
const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;

/// The magic number of the filesystem `fd` is on (`f_type`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn filesystem(fd: BorrowedFd<'_>) -> Option<u32> {
    // f_type's width and signedness differ between architectures; the
    // magic numbers are 32 bits.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::fstatfs(fd).ok().map(|s| s.f_type as u32)
}

fn socket_kind(fd: BorrowedFd<'_>) -> io::Result<Kind> {
    use rustix::net::{sockopt, AddressFamily, SocketType as St};
    let family = match family(fd)? {
        AddressFamily::UNIX => SocketFamily::Unix,
        AddressFamily::INET => SocketFamily::Inet,
        AddressFamily::INET6 => SocketFamily::Inet6,
        other => SocketFamily::Other(u32::from(other.as_raw())),
    };
    let ty = match sockopt::socket_type(fd)? {
        St::STREAM => SocketType::Stream,
        St::DGRAM => SocketType::Datagram,
        St::SEQPACKET => SocketType::SeqPacket,
        other => SocketType::Other(other.as_raw()),
    };
    // Apple declares SO_ACCEPTCONN but does not implement it, and offers no
    // other way to ask; a listening socket there reads as not listening.
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    let listening = sockopt::socket_acceptconn(fd).unwrap_or(false);
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    let listening = false;
    Ok(Kind::Socket {
        family,
        ty,
        listening,
    })
}

/// Anonymous-inode descriptors (eventfd, pidfd, timerfd, epoll, …) have no
/// file type; the kernel names them in the `/proc/self/fd` link.
fn anon_inode_kind(fd: BorrowedFd<'_>) -> Kind {
    match fd_target(fd).as_deref() {
        Some("anon_inode:[eventfd]") => Kind::Event,
        Some("anon_inode:[pidfd]") => Kind::Process,
        Some("anon_inode:[timerfd]") => Kind::Timer,
        Some(t) if t.starts_with("pidfd:") => Kind::Process,
        _ => Kind::Other,
    }
}

/// What `/proc/self/fd/N` points at, where procfs exists.
pub(crate) fn fd_target(fd: BorrowedFd<'_>) -> Option<String> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::read_link(path)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Opens a new descriptor to the same object with `want` access.
///
/// Files and shared memory are reopened through `/proc/self/fd`, so the
/// kernel enforces the reduced mode on the new descriptor. Kinds whose
/// rights cannot be reduced return [`Error::Unsupported`].
pub(crate) fn restrict(fd: BorrowedFd<'_>, want: Access) -> Result<OwnedFd> {
    let have = access(fd).map_err(|e| Error::os("fcntl(F_GETFL)", e))?;
    if !have.contains(want) {
        return Err(Error::WrongAccess {
            expected: want,
            actual: have,
        });
    }
    if want == have {
        return try_clone(fd).map_err(|e| Error::os("fcntl(F_DUPFD_CLOEXEC)", e));
    }
    let kind = kind(fd).map_err(|e| Error::os("fstat", e))?;
    match kind {
        Kind::File | Kind::SharedMemory { .. } => reopen(fd, want),
        Kind::Pipe { .. } => Err(Error::Unsupported(
            "a FIFO opened read-write cannot be narrowed to one end; open it again by path",
        )),
        Kind::Socket { .. } => Err(Error::Unsupported(
            "a socket's read and write rights cannot be separated; shut down a direction instead",
        )),
        _ => Err(Error::Unsupported(
            "the kernel offers no way to reduce the rights of this kind of handle",
        )),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn reopen(fd: BorrowedFd<'_>, want: Access) -> Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let mode = if want == Access::READ {
        OFlags::RDONLY
    } else if want == Access::WRITE {
        OFlags::WRONLY
    } else {
        return Err(Error::Unsupported(
            "a handle with no access cannot be reopened",
        ));
    };
    // Keep O_APPEND: a handle that may only append must not gain the right to
    // overwrite by being restricted.
    let keep = rustix::fs::fcntl_getfl(fd).map_err(|e| Error::os("fcntl(F_GETFL)", e.into()))?
        & OFlags::APPEND;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::open(
        path.as_str(),
        mode | keep | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| Error::os("open(/proc/self/fd)", e.into()))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn reopen(_fd: BorrowedFd<'_>, _want: Access) -> Result<OwnedFd> {
    Err(Error::Unsupported(
        "this platform has no /proc/self/fd to reopen a file with fewer rights",
    ))
}

/// Borrows a descriptor number.
///
/// # Safety
/// `raw` must be open and stay open for `'a`.
pub(crate) unsafe fn borrow_raw<'a>(raw: RawFd) -> BorrowedFd<'a> {
    // SAFETY: the caller guarantees `raw` is open for 'a.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

/// Takes ownership of a descriptor number.
///
/// # Safety
/// `raw` must be open and owned by nobody else; it will be closed when the
/// result is dropped.
pub(crate) unsafe fn own_raw(raw: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller hands over sole ownership of an open descriptor.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// A descriptor number from its widened form (see `Inherited`).
pub(crate) fn raw_from_bits(bits: u64) -> RawFd {
    bits as RawFd
}

/// Views portable borrowed handles as the backend's borrowed descriptors.
pub(crate) fn as_raw_slice<'a, 'b>(
    handles: &'b [crate::BorrowedHandle<'a>],
) -> &'b [BorrowedFd<'a>] {
    // SAFETY: BorrowedHandle is #[repr(transparent)] over BorrowedFd, so the
    // two slices have the same layout and lifetimes.
    unsafe { std::slice::from_raw_parts(handles.as_ptr().cast(), handles.len()) }
}

/// Takes ownership of descriptor `fd` inherited across `exec`, and makes
/// it close-on-exec so it goes no further.
///
/// It must be open and must not be close-on-exec: a close-on-exec
/// descriptor cannot have survived `exec`, so something in this process
/// opened it and owns it.
pub(crate) fn claim_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only asks whether the number is open; no BorrowedFd is
    // made for a number that may not be.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, "it is not open"));
    }
    if flags & libc::FD_CLOEXEC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is close-on-exec, so it was opened in this process, not inherited",
        ));
    }
    // SAFETY: the descriptor is open, survived exec (no close-on-exec), and
    // the caller claims each inherited number once per process.
    let owned = unsafe { own_raw(fd) };
    set_inheritable(owned.as_fd(), false)?;
    Ok(owned)
}

/// Counts the open descriptors of this process.
pub(crate) fn count_open() -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // One descriptor is the directory being read; it is not counted.
        Ok(std::fs::read_dir("/proc/self/fd")?
            .count()
            .saturating_sub(1))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let max = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(4096)
            .min(1 << 20) as RawFd;
        Ok((0..max)
            // SAFETY: F_GETFD on a number that may not be open only asks the
            // kernel whether it is; no BorrowedFd is made for it.
            .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
            .count())
    }
}

/// The socket's address family: `SO_DOMAIN` where it exists, else the
/// family of its local address (Apple and some BSDs have no `SO_DOMAIN`).
pub(crate) fn family(fd: BorrowedFd<'_>) -> io::Result<rustix::net::AddressFamily> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        Ok(rustix::net::sockopt::socket_domain(fd)?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        Ok(rustix::net::getsockname(fd)?.address_family())
    }
}
