//! No listeners.

use std::io;
use std::path::Path;

use super::socket::Socket;
use super::{BorrowedRaw, Never};

/// There are no listeners. The Unix listener lends its descriptor
/// (`AsFd`), so this type says it could.
#[derive(Debug)]
pub(crate) struct Listening(Never);

#[cfg(unix)]
impl std::os::fd::AsFd for Listening {
    fn as_fd(&self) -> BorrowedRaw<'_> {
        match self.0 {}
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for Listening {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self.0 {}
    }
}

no_backend_fns! {
    fn bind(_path: &Path, _backlog: i32) -> io::Result<Listening>;
}

pub(crate) fn accept(l: &Listening, _nonblocking: bool) -> io::Result<Socket> {
    match l.0 {}
}

pub(crate) fn wait_accept(l: &Listening) -> io::Result<()> {
    match l.0 {}
}

pub(crate) fn file_identity(_path: &Path) -> Option<(u64, u64)> {
    None
}

pub(crate) fn remove_if_same(_path: &Path, _identity: Option<(u64, u64)>) {}
