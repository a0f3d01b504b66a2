//! Listening seqpacket sockets (stream sockets in the portable
//! configuration) many clients connect to, and the socket file they live at.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

#[cfg(not(any(target_os = "macos", target_os = "ios")))]
use rustix::net::SocketFlags;

use super::socket::{
    after_create, channel_end, channel_socket, unix_address, wait_fd, Socket, CLOEXEC,
};

/// A listening socket of the channel's type.
pub(crate) type Listening = OwnedFd;

/// Waits until a connection is ready to accept, for blocking accepts on a
/// listening socket someone set non-blocking.
pub(crate) fn wait_accept(l: &Listening) -> io::Result<()> {
    wait_fd(l.as_fd(), false)
}

/// Creates a listening socket at `path`, readable and writable by the owner
/// only. The permission is set on the socket before `bind` creates the file,
/// so there is no moment when another user could connect.
pub(crate) fn bind(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let addr = unix_address(path)?;
    let fd = channel_socket()?;
    // Linux creates the socket file with the socket inode's mode (less the
    // umask), so fchmod before bind closes the window other platforms have.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o600))?;
    rustix::net::bind(&fd, &addr)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(0o600))?;
    rustix::net::listen(&fd, backlog)?;
    Ok(fd)
}

/// Accepts one connection, close-on-exec.
///
/// `nonblocking` only matters where `accept4` cannot take it per call: the
/// listening socket is then already non-blocking (`AsyncListener` sets it).
pub(crate) fn accept(l: &Listening, nonblocking: bool) -> io::Result<Socket> {
    let fd = l.as_fd();
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    let flags = if nonblocking {
        CLOEXEC | SocketFlags::NONBLOCK
    } else {
        CLOEXEC
    };
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    let flags = {
        let _ = nonblocking;
        CLOEXEC
    };
    loop {
        match rustix::net::accept_with(fd, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return after_create(other?).map(channel_end),
        }
    }
}

/// The identity (device, inode) of the file at `path`, to recognise our own
/// socket file before removing it.
// st_dev and st_ino are narrower or signed on some platforms.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn file_identity(path: &Path) -> Option<(u64, u64)> {
    rustix::fs::stat(path)
        .ok()
        .map(|s| (s.st_dev as u64, s.st_ino as u64))
}

/// Removes the file at `path` if it is still the one with `identity`, so a
/// listener never deletes a socket someone else bound there since.
pub(crate) fn remove_if_same(path: &Path, identity: Option<(u64, u64)>) {
    if identity.is_some() && file_identity(path) == identity {
        let _ = std::fs::remove_file(path);
    }
}
