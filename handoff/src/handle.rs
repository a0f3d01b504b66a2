//! Owned and borrowed handles, in the io-safety sense of `std::os::fd` and
//! `std::os::windows::io`.
//!
//! A [`Handle`] is closed exactly once, by its one owner, when dropped.
//! [`Handle::try_clone`] is how ownership is split. A [`BorrowedHandle`] is
//! valid for a lifetime and never closed. Everything std can turn into an
//! `OwnedFd` (a `File`, a `UnixStream`, a `TcpListener`, …) or, on Windows,
//! an `OwnedHandle` (a `File`, a pipe end, a `Child`'s stdio, …) converts
//! into a `Handle` and back.

use std::fmt;

use crate::sys;
use crate::{Access, Error, Kind, Requirement, Result};

/// An owned OS handle: a file descriptor on Unix, a `HANDLE` on Windows.
///
/// Created non-inheritable (close-on-exec). Dropping it closes it.
#[repr(transparent)]
pub struct Handle(sys::OwnedRaw);

/// A borrowed OS handle, valid for `'a` and never closed by its holder.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct BorrowedHandle<'a>(sys::BorrowedRaw<'a>);

/// Anything that can lend out a handle: on Unix, every `AsFd` type; on
/// Windows, every `std::os::windows::io::AsHandle` type.
pub trait AsHandle {
    /// Borrows the handle.
    fn as_handle(&self) -> BorrowedHandle<'_>;
}

impl Handle {
    /// Borrows this handle.
    pub fn borrow(&self) -> BorrowedHandle<'_> {
        BorrowedHandle(sys_borrow(&self.0))
    }

    /// Duplicates the handle: a second owner of the same object, created
    /// non-inheritable in the same step.
    ///
    /// # References
    /// [`fcntl(F_DUPFD_CLOEXEC)`](https://man7.org/linux/man-pages/man2/fcntl.2.html),
    /// [`DuplicateHandle`](https://learn.microsoft.com/en-us/windows/win32/api/handleapi/nf-handleapi-duplicatehandle)
    #[doc(alias = "dup")]
    #[doc(alias = "DuplicateHandle")]
    pub fn try_clone(&self) -> Result<Handle> {
        self.borrow().try_clone_to_owned()
    }

    /// What the handle refers to, read from the kernel.
    pub fn kind(&self) -> Result<Kind> {
        self.borrow().kind()
    }

    /// The rights the handle grants, read from the kernel.
    pub fn access(&self) -> Result<Access> {
        self.borrow().access()
    }

    /// Whether a spawned child would inherit this handle.
    pub fn is_inheritable(&self) -> Result<bool> {
        self.borrow().is_inheritable()
    }

    /// A new handle to the same object with only `access`, enforced by the
    /// kernel. See [`BorrowedHandle::restrict`].
    pub fn restrict(&self, access: Access) -> Result<Handle> {
        self.borrow().restrict(access)
    }

    /// Checks the handle against `requirement`. On a mismatch the handle
    /// comes back beside the reason, so the caller decides whether to close
    /// it.
    pub fn expect(self, requirement: Requirement) -> std::result::Result<Handle, (Error, Handle)> {
        match self.borrow().check(requirement) {
            Ok(()) => Ok(self),
            Err(e) => Err((e, self)),
        }
    }

    /// Takes ownership of a raw handle number.
    ///
    /// # Safety
    /// `raw` must be an open handle that nothing else owns; it will be
    /// closed when the result is dropped.
    #[allow(unsafe_code)]
    pub unsafe fn from_raw(raw: RawHandle) -> Handle {
        // SAFETY: forwarded from the caller.
        Handle(unsafe { sys::handle::own_raw(raw) })
    }

    /// The handle's number in this process (for display and command lines;
    /// ownership stays with `self`).
    pub fn raw(&self) -> RawHandle {
        self.borrow().raw()
    }
}

/// The number that names a handle inside one process (`RawFd` on Unix,
/// `std::os::windows::io::RawHandle` on Windows).
pub type RawHandle = sys::RawHandle;

fn sys_borrow(owned: &sys::OwnedRaw) -> sys::BorrowedRaw<'_> {
    #[cfg(unix)]
    {
        std::os::fd::AsFd::as_fd(owned)
    }
    #[cfg(windows)]
    {
        std::os::windows::io::AsHandle::as_handle(owned)
    }
}

impl<'a> BorrowedHandle<'a> {
    /// Borrows a raw handle number.
    ///
    /// # Safety
    /// `raw` must be open and stay open for `'a`.
    #[allow(unsafe_code)]
    pub unsafe fn borrow_raw(raw: RawHandle) -> BorrowedHandle<'a> {
        // SAFETY: forwarded from the caller.
        BorrowedHandle(unsafe { sys::handle::borrow_raw(raw) })
    }

    /// A new owned handle to the same object, non-inheritable.
    pub fn try_clone_to_owned(self) -> Result<Handle> {
        sys::handle::try_clone(self.0)
            .map(Handle)
            .map_err(|e| Error::os("duplicate handle", e))
    }

    /// What the handle refers to, read from the kernel.
    pub fn kind(self) -> Result<Kind> {
        sys::handle::kind(self.0).map_err(|e| Error::os("query handle kind", e))
    }

    /// The rights the handle grants, read from the kernel.
    pub fn access(self) -> Result<Access> {
        sys::handle::access(self.0).map_err(|e| Error::os("query handle access", e))
    }

    /// Whether a spawned child would inherit this handle.
    pub fn is_inheritable(self) -> Result<bool> {
        sys::handle::is_inheritable(self.0).map_err(|e| Error::os("query inheritance", e))
    }

    /// A new handle to the same object with only `access`, enforced by the
    /// kernel.
    ///
    /// On Linux, files and shared memory are reopened through
    /// `/proc/self/fd` with the reduced mode. On Windows the handle is
    /// duplicated with a smaller access mask (`FILE_GENERIC_READ`,
    /// `SECTION_MAP_READ | SECTION_QUERY`, …). Asking for rights the handle
    /// lacks is [`Error::WrongAccess`]; a kind whose rights cannot be reduced
    /// (sockets, eventfds, a read-write FIFO) is [`Error::Unsupported`].
    ///
    /// A read-only handle to shared memory stops its holder from writing
    /// through that handle or mapping it writable, but on Linux the holder
    /// can reopen the object through `/proc` with the creator's permissions:
    /// seal shared memory that must stay immutable.
    ///
    /// # References
    /// [`open(2)`](https://man7.org/linux/man-pages/man2/open.2.html),
    /// [`proc_pid_fd(5)`](https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html),
    /// [`DuplicateHandle`](https://learn.microsoft.com/en-us/windows/win32/api/handleapi/nf-handleapi-duplicatehandle)
    pub fn restrict(self, access: Access) -> Result<Handle> {
        sys::handle::restrict(self.0, access).map(Handle)
    }

    /// Checks the handle against `requirement` (kind and access, read
    /// from the kernel); the error names what is wrong.
    pub fn check(self, requirement: Requirement) -> Result<()> {
        requirement.check(self)
    }

    /// The handle's number in this process.
    pub fn raw(self) -> RawHandle {
        #[cfg(unix)]
        {
            std::os::fd::AsRawFd::as_raw_fd(&self.0)
        }
        #[cfg(windows)]
        {
            std::os::windows::io::AsRawHandle::as_raw_handle(&self.0)
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Handle").field(&self.raw()).finish()
    }
}

impl fmt::Debug for BorrowedHandle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BorrowedHandle").field(&self.raw()).finish()
    }
}

/// A handle of this process that is either lent for a while or owned (a
/// duplicate made along the way, closed when this drops).
#[derive(Debug)]
pub(crate) enum MaybeOwned<'a> {
    Borrowed(BorrowedHandle<'a>),
    Owned(Handle),
}

impl MaybeOwned<'_> {
    pub(crate) fn borrow(&self) -> BorrowedHandle<'_> {
        match self {
            MaybeOwned::Borrowed(b) => *b,
            MaybeOwned::Owned(h) => h.borrow(),
        }
    }
}

/// Counts the handles this process has open: the check every leak test
/// makes before and after.
pub fn count_open_handles() -> Result<usize> {
    sys::handle::count_open().map_err(|e| Error::os("count open handles", e))
}

/// `From` both ways between the handle types and the platform's owned and
/// borrowed handle types (`$owned`, `$borrowed`); the platform's trait for
/// lending one (`$as_trait::$as_fn`) and for its raw value
/// (`$as_raw::$as_raw_fn`, giving a `$raw`) on them; and `From` both ways
/// between `Handle` and each std type `$t` that converts through `$owned`.
#[cfg(any(unix, windows))]
macro_rules! platform_conversions {
    (
        $owned:ident, $borrowed:ident,
        $as_trait:ident::$as_fn:ident, $as_raw:ident::$as_raw_fn:ident -> $raw:ident;
        $($t:ty),* $(,)?
    ) => {
        impl $as_trait for Handle {
            fn $as_fn(&self) -> $borrowed<'_> {
                $as_trait::$as_fn(&self.0)
            }
        }

        impl $as_trait for BorrowedHandle<'_> {
            fn $as_fn(&self) -> $borrowed<'_> {
                self.0
            }
        }

        impl $as_raw for Handle {
            fn $as_raw_fn(&self) -> $raw {
                self.0.$as_raw_fn()
            }
        }

        impl From<$owned> for Handle {
            fn from(h: $owned) -> Self {
                Handle(h)
            }
        }

        impl From<Handle> for $owned {
            fn from(h: Handle) -> Self {
                h.0
            }
        }

        impl<'a> From<$borrowed<'a>> for BorrowedHandle<'a> {
            fn from(h: $borrowed<'a>) -> Self {
                BorrowedHandle(h)
            }
        }

        impl<'a> From<BorrowedHandle<'a>> for $borrowed<'a> {
            fn from(h: BorrowedHandle<'a>) -> Self {
                h.0
            }
        }

        $(
            impl From<$t> for Handle {
                fn from(v: $t) -> Self {
                    Handle($owned::from(v))
                }
            }

            impl From<Handle> for $t {
                fn from(h: Handle) -> Self {
                    <$t>::from(h.0)
                }
            }
        )*
    };
}

#[cfg(unix)]
mod unix_interop {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

    impl<T: AsFd + ?Sized> AsHandle for T {
        fn as_handle(&self) -> BorrowedHandle<'_> {
            BorrowedHandle(self.as_fd())
        }
    }

    platform_conversions!(
        OwnedFd, BorrowedFd, AsFd::as_fd, AsRawFd::as_raw_fd -> RawFd;
        std::fs::File,
        std::net::TcpListener,
        std::net::TcpStream,
        std::net::UdpSocket,
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixListener,
        std::os::unix::net::UnixDatagram,
        std::io::PipeReader,
        std::io::PipeWriter,
    );
}

#[cfg(windows)]
mod windows_interop {
    use super::*;
    use std::os::windows::io::{
        AsHandle as StdAsHandle, AsRawHandle, BorrowedHandle as StdBorrowed, OwnedHandle,
        RawHandle as StdRaw,
    };

    impl<T: StdAsHandle + ?Sized> AsHandle for T {
        fn as_handle(&self) -> BorrowedHandle<'_> {
            BorrowedHandle(StdAsHandle::as_handle(self))
        }
    }

    // Sockets are SOCKETs to std (OwnedSocket), not HANDLEs, and must be
    // closed with closesocket: they do not convert.
    platform_conversions!(
        OwnedHandle, StdBorrowed, StdAsHandle::as_handle, AsRawHandle::as_raw_handle -> StdRaw;
        std::fs::File,
        std::io::PipeReader,
        std::io::PipeWriter,
    );

    macro_rules! into_handle_only {
        ($($t:ty),*) => {$(
            impl From<$t> for Handle {
                fn from(v: $t) -> Self { Handle(OwnedHandle::from(v)) }
            }
        )*};
    }
    into_handle_only!(
        std::process::Child,
        std::process::ChildStdin,
        std::process::ChildStdout,
        std::process::ChildStderr
    );
}
