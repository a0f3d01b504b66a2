//! `Channel` and `Process` to and from the owned platform handle, as std's
//! socket types convert to and from `OwnedFd`/`OwnedHandle`. Into a handle
//! always works; from one is `TryFrom`, because the handle is checked
//! first (`from_handle`), where std's conversions trust the caller.

use crate::{Channel, Error, Handle, Process};

macro_rules! conversions {
    ($($t:ty),*) => {$(
        impl TryFrom<Handle> for $t {
            type Error = Error;
            /// As `from_handle`.
            fn try_from(h: Handle) -> Result<$t, Error> {
                <$t>::from_handle(h)
            }
        }

        impl From<$t> for Handle {
            fn from(v: $t) -> Handle {
                v.into_handle()
            }
        }

        #[cfg(unix)]
        impl TryFrom<std::os::fd::OwnedFd> for $t {
            type Error = Error;
            /// As `from_handle`.
            fn try_from(fd: std::os::fd::OwnedFd) -> Result<$t, Error> {
                <$t>::from_handle(Handle::from(fd))
            }
        }

        #[cfg(unix)]
        impl From<$t> for std::os::fd::OwnedFd {
            fn from(v: $t) -> std::os::fd::OwnedFd {
                v.into_handle().into()
            }
        }

        #[cfg(windows)]
        impl TryFrom<std::os::windows::io::OwnedHandle> for $t {
            type Error = Error;
            /// As `from_handle`.
            fn try_from(h: std::os::windows::io::OwnedHandle) -> Result<$t, Error> {
                <$t>::from_handle(Handle::from(h))
            }
        }

        #[cfg(windows)]
        impl From<$t> for std::os::windows::io::OwnedHandle {
            fn from(v: $t) -> std::os::windows::io::OwnedHandle {
                v.into_handle().into()
            }
        }
    )*};
}

conversions!(Channel, Process);
