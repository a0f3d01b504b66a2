//! The service's side: claim the listeners and stored handles passed under
//! `LISTEN_FDS`, and talk to the supervisor over `NOTIFY_SOCKET`.

use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;

use super::notify::{self, Notification};
use super::NOTIFY_SOCKET;
use crate::sys;
use crate::{AsHandle, BorrowedHandle, Error, Handle, Inherited, Kind, Result};
use crate::{SocketFamily, SocketType};

/// A service started by a supervisor (`handoff serve`, systemd, or none).
///
/// Without `LISTEN_FDS` there are no handles; without `NOTIFY_SOCKET` the
/// notifications are no-ops (as `sd_notify` does), except
/// [`store`](Self::store), which would lose the handle and so is an error.
#[derive(Debug)]
pub struct Service {
    inherited: Inherited,
    notify_socket: Option<String>,
}

fn wrong(expected: &str, actual: Kind) -> Error {
    Error::WrongKind {
        expected: expected.to_owned(),
        actual,
    }
}

impl Service {
    /// Claims what this process inherited ([`Inherited::from_env`]) and
    /// reads `NOTIFY_SOCKET` (left in the environment, so a helper such as
    /// `systemd-notify` run by the service still finds it).
    pub fn from_env() -> Result<Service> {
        Ok(Service {
            inherited: Inherited::from_env()?,
            notify_socket: std::env::var(NOTIFY_SOCKET).ok().filter(|s| !s.is_empty()),
        })
    }

    /// Names of the handles passed, in descriptor order (a name may repeat
    /// for stored handles).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inherited.names()
    }

    /// True when a supervisor listens for notifications.
    pub fn is_supervised(&self) -> bool {
        self.notify_socket.is_some()
    }

    fn take_socket(
        &mut self,
        name: &str,
        expected: &str,
        ok: impl Fn(SocketFamily, SocketType, bool) -> bool,
    ) -> Result<Handle> {
        let handle = self.inherited.take(name)?;
        match handle.kind()? {
            Kind::Socket {
                family,
                ty,
                listening,
            } if ok(family, ty, listening) => Ok(handle),
            other => Err(wrong(&format!("{expected} for {name:?}"), other)),
        }
    }

    /// The listening TCP socket named `name`.
    pub fn tcp_listener(&mut self, name: &str) -> Result<TcpListener> {
        let h = self.take_socket(name, "a listening TCP socket", |f, t, l| {
            matches!(f, SocketFamily::Inet | SocketFamily::Inet6) && t == SocketType::Stream && l
        })?;
        Ok(TcpListener::from(std::os::fd::OwnedFd::from(h)))
    }

    /// The UDP socket named `name`.
    pub fn udp_socket(&mut self, name: &str) -> Result<UdpSocket> {
        let h = self.take_socket(name, "a UDP socket", |f, t, _| {
            matches!(f, SocketFamily::Inet | SocketFamily::Inet6) && t == SocketType::Datagram
        })?;
        Ok(UdpSocket::from(std::os::fd::OwnedFd::from(h)))
    }

    /// The listening Unix stream socket named `name`.
    pub fn unix_listener(&mut self, name: &str) -> Result<UnixListener> {
        let h = self.take_socket(name, "a listening Unix stream socket", |f, t, l| {
            f == SocketFamily::Unix && t == SocketType::Stream && l
        })?;
        Ok(UnixListener::from(std::os::fd::OwnedFd::from(h)))
    }

    /// Claims the one handle named `name` (a stored handle, a file).
    pub fn take(&mut self, name: &str) -> Result<Handle> {
        self.inherited.take(name)
    }

    /// Claims every handle named `name` (the store may hold several under
    /// one name), in descriptor order.
    pub fn take_all(&mut self, name: &str) -> Vec<Handle> {
        let indices: Vec<usize> = self
            .inherited
            .names()
            .enumerate()
            .filter(|(_, n)| *n == name)
            .map(|(i, _)| i)
            .collect();
        indices
            .into_iter()
            .filter_map(|i| self.inherited.take_index(i).ok())
            .collect()
    }

    /// Sends one notification with `handles` attached. A no-op without a
    /// supervisor when no handles are attached.
    pub fn notify(&self, message: &Notification, handles: &[BorrowedHandle<'_>]) -> Result<()> {
        let Some(socket) = &self.notify_socket else {
            if handles.is_empty() {
                return Ok(());
            }
            return Err(Error::Unsupported(
                "no NOTIFY_SOCKET: nobody would keep the handles",
            ));
        };
        send(socket, message, handles)
    }

    /// `READY=1`: the service serves. Send it only once every listener is
    /// being accepted on.
    pub fn ready(&self) -> Result<()> {
        self.notify(
            &Notification {
                ready: true,
                ..Default::default()
            },
            &[],
        )
    }

    /// `STATUS=text` (one line).
    pub fn status(&self, text: &str) -> Result<()> {
        self.notify(
            &Notification {
                status: Some(text.to_owned()),
                ..Default::default()
            },
            &[],
        )
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) -> Result<()> {
        self.notify(
            &Notification {
                stopping: true,
                ..Default::default()
            },
            &[],
        )
    }

    /// `BARRIER=1`: returns once the supervisor has read every notification
    /// sent before it (it closes the attached pipe end after handling the
    /// datagram), or fails after `timeout`. Without a supervisor it returns
    /// at once.
    pub fn barrier(&self, timeout: std::time::Duration) -> Result<()> {
        if self.notify_socket.is_none() {
            return Ok(());
        }
        let (read, write) = std::io::pipe().map_err(|e| Error::io("pipe", e))?;
        self.notify(
            &Notification {
                barrier: true,
                ..Default::default()
            },
            &[crate::AsHandle::as_handle(&write)],
        )?;
        drop(write);
        if sys::notify::wait_hangup(std::os::fd::AsFd::as_fd(&read), timeout)
            .map_err(|e| Error::io("poll", e))?
        {
            Ok(())
        } else {
            Err(Error::io(
                "BARRIER=1",
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the supervisor did not answer in time",
                ),
            ))
        }
    }

    /// `FDSTORE=1` + `FDNAME=name` with `handle` attached: the supervisor
    /// keeps a copy and passes it to the next start under this name. The
    /// name must be one systemd accepts ([`notify::check_fdname`]).
    pub fn store(&self, name: &str, handle: impl AsHandle) -> Result<()> {
        notify::check_fdname(name).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.notify(
            &Notification {
                fd_store: true,
                fd_name: Some(name.to_owned()),
                ..Default::default()
            },
            &[handle.as_handle()],
        )
    }

    /// `FDSTOREREMOVE=1` + `FDNAME=name`: the supervisor closes its copies.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.notify(
            &Notification {
                fd_store_remove: true,
                fd_name: Some(name.to_owned()),
                ..Default::default()
            },
            &[],
        )
    }
}

/// Sends one notification with `handles` attached to the notify socket at
/// `socket` (a path, or `@name` for the abstract namespace), as
/// [`Service::notify`] does; for a supervisor that is itself supervised.
/// A message the receiving side would refuse is refused here first.
pub fn send(socket: &str, message: &Notification, handles: &[BorrowedHandle<'_>]) -> Result<()> {
    let text = message.encode();
    Notification::parse(text.as_bytes(), handles.len())
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let fds: Vec<_> = handles.iter().map(|h| (*h).into()).collect();
    sys::notify::send_to(socket, text.as_bytes(), &fds)
        .map_err(|e| Error::io("send to NOTIFY_SOCKET", e))
}
