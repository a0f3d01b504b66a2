//! The supervisor's side of the notify protocol: a datagram socket that
//! hands out each notification with the kernel's credentials of its sender.

use std::path::{Path, PathBuf};

use super::notify::{Notification, NotifyError, MAX_DATAGRAM};
use crate::sys;
use crate::{BorrowedHandle, Error, Handle, Result};

/// A bound notify socket (`SOCK_DGRAM` with `SO_PASSCRED`). The socket file
/// is removed when it is dropped, unless it was [`leak_path`](Self::leak_path)ed.
#[derive(Debug)]
pub struct NotifySocket {
    handle: Handle,
    path: Option<PathBuf>,
    buf: Vec<u8>,
}

/// One datagram, with what the kernel says about its sender.
#[derive(Debug)]
pub struct Received {
    /// The sender's pid, uid and gid from `SCM_CREDENTIALS`; `None` only if
    /// the kernel attached none.
    pub sender: Option<(u32, u32, u32)>,
    /// The decoded message, or why it was refused (every handle it carried
    /// is then already closed).
    pub message: std::result::Result<Notification, NotifyError>,
    /// The handles it carried (empty when refused).
    pub handles: Vec<Handle>,
}

impl NotifySocket {
    /// Binds a socket at `path` (removing a stale socket file first).
    pub fn bind(path: impl AsRef<Path>) -> Result<NotifySocket> {
        let path = path.as_ref();
        let spec = path
            .to_str()
            .ok_or_else(|| Error::InvalidArgument("notify socket path is not UTF-8".into()))?;
        sys::notify::remove_stale_socket(path);
        let handle = sys::notify::bind(spec).map_err(|e| Error::io("bind notify socket", e))?;
        Ok(NotifySocket {
            handle: Handle::from(handle),
            path: Some(path.to_owned()),
            buf: vec![0; MAX_DATAGRAM + 1],
        })
    }

    /// Adopts an already bound socket (one kept across `exec`).
    pub fn from_handle(handle: Handle, path: Option<PathBuf>) -> NotifySocket {
        NotifySocket {
            handle,
            path,
            buf: vec![0; MAX_DATAGRAM + 1],
        }
    }

    /// The socket, e.g. to keep it across `exec` or to poll it.
    pub fn handle(&self) -> BorrowedHandle<'_> {
        self.handle.borrow()
    }

    /// The path it is bound at.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Forgets the path so dropping does not remove the socket file (the
    /// socket lives on in another image of this process).
    pub fn leak_path(&mut self) {
        self.path = None;
    }

    /// Waits for and receives one datagram. Only socket failures are
    /// errors; a bad datagram is a [`Received`] with its reason.
    pub fn recv(&mut self) -> Result<Received> {
        let d = sys::notify::recv(self.handle.borrow().into(), &mut self.buf)
            .map_err(|e| Error::io("recvmsg on notify socket", e))?;
        let handles: Vec<Handle> = d.fds.into_iter().map(Handle::from).collect();
        let message = if d.truncated {
            Err(NotifyError::TooLong {
                len: MAX_DATAGRAM + 1,
            })
        } else if d.fds_truncated {
            Err(NotifyError::HandlesTruncated {
                received: handles.len(),
            })
        } else {
            Notification::parse(&self.buf[..d.len], handles.len())
        };
        let handles = if message.is_ok() { handles } else { Vec::new() };
        Ok(Received {
            sender: d.creds,
            message,
            handles,
        })
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}
