//! A listener that many clients can connect to, bound to a filesystem path.

use std::path::{Path, PathBuf};

use super::{Channel, Limits};
use crate::{sys, Error, Result};

/// Accepts channel connections on a filesystem path.
///
/// The socket file is created readable and writable by its owner only, and
/// removed again when the listener is dropped (if it is still the same
/// file). Abstract-namespace names are not offered: anyone can bind them
/// first.
#[derive(Debug)]
pub struct Listener {
    socket: sys::socket::Listening,
    path: PathBuf,
    identity: Option<(u64, u64)>,
    limits: Limits,
}

impl Listener {
    /// Binds a new socket file at `path` and listens on it. Fails if the
    /// path exists.
    ///
    /// # References
    /// [`bind(2)`](https://man7.org/linux/man-pages/man2/bind.2.html),
    /// [`listen(2)`](https://man7.org/linux/man-pages/man2/listen.2.html)
    pub fn bind(path: impl AsRef<Path>) -> Result<Listener> {
        let path = path.as_ref();
        let socket = sys::socket::bind(path, 1024).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => Error::InvalidArgument(e.to_string()),
            _ => super::transport_error("bind", e),
        })?;
        Ok(Listener {
            socket,
            path: path.to_owned(),
            identity: sys::socket::file_identity(path),
            limits: Limits::default(),
        })
    }

    /// Sets the [`Limits`] given to every accepted channel.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Waits for the next client and returns a channel to it.
    pub fn accept(&self) -> Result<Channel> {
        loop {
            match sys::socket::accept(&self.socket, false) {
                Ok(fd) => return Ok(Channel::from_socket(fd)?.with_limits(self.limits)),
                // A client that gave up before we accepted it is not our error.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    sys::socket::wait_accept(&self.socket).map_err(|e| Error::os("poll", e))?;
                }
                Err(e) => return Err(Error::os("accept", e)),
            }
        }
    }

    #[cfg(all(feature = "tokio", unix))]
    pub(crate) fn try_accept(&self) -> Result<Channel> {
        match sys::socket::accept(&self.socket, true) {
            Ok(fd) => Ok(Channel::from_socket(fd)?.with_limits(self.limits)),
            Err(e) => Err(Error::io("accept", e)),
        }
    }

    /// The path the listener is bound to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(all(feature = "tokio", unix))]
    pub(crate) fn socket(&self) -> &sys::socket::Listening {
        &self.socket
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        sys::socket::remove_if_same(&self.path, self.identity);
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.socket)
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for Listener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
    }
}
