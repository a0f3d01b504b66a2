//! The stub backend: every item of the contract in `sys/mod.rs`, each
//! returning `Unsupported` (or a type with no values where the contract
//! names one that only a working call could produce).
//!
//! It is chosen with `--cfg handoff_no_backend` (and on any platform with
//! no backend of its own), and CI builds the library on it. A contract item
//! that the portable code starts to use but the stub does not provide then
//! fails to compile here, rather than drifting between the real backends.
//! A new backend can start as a copy of this one and fill items in.
//!
//! The handle types stay the platform's (`OwnedFd`, `OwnedHandle`) so the
//! portable `AsFd`/`AsHandle` implementations keep their meaning.

/// Declares contract functions that do nothing but fail: each signature,
/// with a body returning [`NoBackend::no_backend`] as the error of its
/// result type.
macro_rules! no_backend_fns {
    ($($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;)*) => {
        $(
            $(#[$attr])*
            pub(crate) fn $name($($arg: $ty),*) -> $ret {
                Err($crate::sys::shell::NoBackend::no_backend())
            }
        )*
    };
}

pub(crate) mod handle;
pub(crate) mod listener;
pub(crate) mod process;
pub(crate) mod random;
#[cfg(feature = "tokio")]
pub(crate) mod reactor;
pub(crate) mod shm;
pub(crate) mod socket;
pub(crate) mod spawn;

use std::io;

#[cfg(unix)]
mod types {
    pub(crate) type OwnedRaw = std::os::fd::OwnedFd;
    pub(crate) type BorrowedRaw<'a> = std::os::fd::BorrowedFd<'a>;
    pub(crate) type RawHandle = std::os::fd::RawFd;
}
#[cfg(windows)]
mod types {
    pub(crate) type OwnedRaw = std::os::windows::io::OwnedHandle;
    pub(crate) type BorrowedRaw<'a> = std::os::windows::io::BorrowedHandle<'a>;
    pub(crate) type RawHandle = std::os::windows::io::RawHandle;
}
pub(crate) use types::*;

/// Why everything here fails.
pub(crate) const NO_BACKEND: &str = "handoff has no backend for this platform";

/// The error every fallible item returns.
pub(crate) fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, NO_BACKEND)
}

/// The error a function of this backend fails with, in each error type
/// the contract uses.
pub(crate) trait NoBackend {
    fn no_backend() -> Self;
}

impl NoBackend for io::Error {
    fn no_backend() -> Self {
        unsupported()
    }
}

impl NoBackend for crate::Error {
    fn no_backend() -> Self {
        crate::Error::Unsupported(NO_BACKEND)
    }
}

/// A value that cannot exist: the types the contract names but only a
/// successful call could make (a spawned child, a mapping) hold one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Never {}
