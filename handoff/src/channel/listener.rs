//! A listener that many clients can connect to, bound to a filesystem path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Channel, Limits, PeerCredentials};
use crate::{sys, Error, Result};

/// A caller-supplied test of a connecting peer's credentials.
type PeerCheck = Arc<dyn Fn(&PeerCredentials) -> bool + Send + Sync>;

/// Who may connect: every peer passes unless a rule is set.
#[derive(Clone, Default)]
struct Admission {
    uids: Option<Vec<u32>>,
    check: Option<PeerCheck>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("uids", &self.uids)
            .field("check", &self.check.as_ref().map(|_| "fn"))
            .finish()
    }
}

/// Accepts channel connections on a filesystem path.
///
/// The socket file is created readable and writable by its owner only, and
/// removed again when the listener is dropped (if it is still the same
/// file). Abstract-namespace names are not offered: anyone can bind them
/// first.
///
/// On Windows the path is a pipe name, `\\.\pipe\NAME`: binding fails
/// if an instance of the name exists (`FILE_FLAG_FIRST_PIPE_INSTANCE`), the
/// pipe admits local clients of the current user only, and the name goes
/// away with the listener.
#[derive(Debug)]
pub struct Listener {
    socket: sys::listener::Listening,
    path: PathBuf,
    identity: Option<(u64, u64)>,
    limits: Limits,
    admission: Admission,
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
        let socket = sys::listener::bind(path, 1024).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => Error::InvalidArgument(e.to_string()),
            _ => super::transport_error("bind", e),
        })?;
        Ok(Listener {
            socket,
            path: path.to_owned(),
            identity: sys::listener::file_identity(path),
            limits: Limits::default(),
            admission: Admission::default(),
        })
    }

    /// Adopts a listening socket bound at `path` by this process before it
    /// re-executed itself (kept across `exec`). Anything but a listening
    /// Unix seqpacket socket (stream socket in the portable Unix
    /// configuration) is [`Error::WrongKind`]. Dropping it removes
    /// the socket file, as for [`bind`](Self::bind).
    #[cfg(all(unix, not(handoff_no_backend)))]
    pub fn from_handle(handle: crate::Handle, path: impl AsRef<Path>) -> Result<Listener> {
        use crate::{Kind, SocketFamily, SocketType};
        let kind = handle.kind()?;
        // The socket type channels run over in this configuration.
        #[cfg(not(handoff_portable))]
        const CHANNEL_TYPE: SocketType = SocketType::SeqPacket;
        #[cfg(handoff_portable)]
        const CHANNEL_TYPE: SocketType = SocketType::Stream;
        if !matches!(
            kind,
            Kind::Socket {
                family: SocketFamily::Unix,
                ty: CHANNEL_TYPE,
                listening: true
            }
        ) {
            return Err(Error::WrongKind {
                expected: crate::KindName::Socket,
                actual: kind,
            });
        }
        let path = path.as_ref();
        Ok(Listener {
            socket: handle.into(),
            path: path.to_owned(),
            identity: sys::listener::file_identity(path),
            limits: Limits::default(),
            admission: Admission::default(),
        })
    }

    /// Sets the [`Limits`] given to every accepted channel.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Admits only peers running as one of `uids` (checked with the
    /// credentials the kernel recorded at connect time). The socket file is
    /// already owner-only; this also holds when its permissions are widened
    /// or the owner is root.
    ///
    /// On Windows users are SIDs, not numbers: peer credentials report the
    /// uid as `u32::MAX`, so a uid rule refuses every peer there. The pipe
    /// already admits only this user's local clients; check more with
    /// [`admit_if`](Self::admit_if) and the peer's process handle.
    pub fn allow_uids(mut self, uids: impl IntoIterator<Item = u32>) -> Self {
        self.admission.uids = Some(uids.into_iter().collect());
        self
    }

    /// Admits only peers for which `check` returns true, after any
    /// [`allow_uids`](Self::allow_uids) rule.
    pub fn admit_if(
        mut self,
        check: impl Fn(&PeerCredentials) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.admission.check = Some(Arc::new(check));
        self
    }

    /// Applies the admission rules to a new connection. A rejected peer is
    /// dropped before a byte of it is read: it sees the connection closed.
    fn admit(&self, channel: Channel) -> Result<Option<Channel>> {
        let rules = &self.admission;
        if rules.uids.is_none() && rules.check.is_none() {
            return Ok(Some(channel));
        }
        let creds = match channel.peer_credentials() {
            Ok(creds) => creds,
            // No connection can ever be checked here: a setup error.
            Err(e @ Error::Unsupported(_)) => return Err(e),
            // This one peer cannot be identified: refuse it, and keep
            // listening for the others (an accept loop must not end here).
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    path = %self.path.display(),
                    "refused a connection whose credentials could not be read"
                );
                return Ok(None);
            }
        };
        let uid_ok = rules.uids.as_ref().is_none_or(|u| u.contains(&creds.uid));
        let check_ok = uid_ok && rules.check.as_ref().is_none_or(|c| c(&creds));
        if check_ok {
            Ok(Some(channel))
        } else {
            tracing::warn!(
                pid = creds.pid,
                uid = creds.uid,
                path = %self.path.display(),
                "refused a connection that the admission rules do not allow"
            );
            Ok(None)
        }
    }

    /// Waits for the next admitted client and returns a channel to it.
    pub fn accept(&self) -> Result<Channel> {
        loop {
            match sys::listener::accept(&self.socket, false) {
                Ok(fd) => {
                    let channel = Channel::from_socket(fd)?.with_limits(self.limits);
                    match self.admit(channel)? {
                        Some(channel) => return Ok(channel),
                        None => continue,
                    }
                }
                // A client that gave up before we accepted it is not our error.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    sys::listener::wait_accept(&self.socket).map_err(|e| Error::os("poll", e))?;
                }
                Err(e) => return Err(Error::os("accept", e)),
            }
        }
    }

    #[cfg(feature = "tokio")]
    /// A refused peer reads as `Disconnected`, which the async accept loop
    /// skips like a client that gave up.
    pub(crate) fn try_accept(&self) -> Result<Channel> {
        match sys::listener::accept(&self.socket, true) {
            Ok(fd) => self
                .admit(Channel::from_socket(fd)?.with_limits(self.limits))?
                .ok_or(Error::disconnected()),
            Err(e) => Err(Error::io("accept", e)),
        }
    }

    /// The path the listener is bound to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn socket(&self) -> &sys::listener::Listening {
        &self.socket
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        sys::listener::remove_if_same(&self.path, self.identity);
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
