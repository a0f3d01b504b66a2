//! The Unix backend: Linux for real, BSD and macOS where POSIX allows.
//!
//! System calls go through rustix; the few it lacks go through libc, each
//! with a comment saying why.

mod child;
pub(crate) mod handle;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) mod limits;
pub(crate) mod listener;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) mod notify;
#[cfg(handoff_portable)]
mod posix_spawn;
pub(crate) mod process;
pub(crate) mod random;
#[cfg(feature = "tokio")]
pub(crate) mod reactor;
pub(crate) mod shm;
pub(crate) mod socket;
pub(crate) mod spawn;
// The portable configuration's channel transport: the frame prefix (pure,
// built and unit-tested in every configuration) and the stream socket
// that uses it.
#[cfg_attr(not(handoff_portable), allow(dead_code))]
pub(crate) mod stream;
#[cfg(handoff_portable)]
mod stream_socket;
#[cfg(not(handoff_portable))]
mod vfork;

/// The owned handle of this platform.
pub(crate) type OwnedRaw = std::os::fd::OwnedFd;
/// The borrowed handle of this platform.
pub(crate) type BorrowedRaw<'a> = std::os::fd::BorrowedFd<'a>;
/// The number that names a handle inside one process.
pub(crate) type RawHandle = std::os::fd::RawFd;
