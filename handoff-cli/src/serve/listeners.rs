//! The sockets and files every generation gets: bound here from
//! `--listen`/`--fd`, or adopted from what this supervisor inherited under
//! `LISTEN_FDS` (systemd, or another `handoff serve`). Each is one socket
//! for the supervisor's whole life: never re-bound, never shut down.

use handoff::{Handle, Inherited, Kind};

use crate::exec;
use crate::spec::{FdSpec, ListenSpec};
use crate::status::FAILED;
use crate::{describe, Failure};

/// One handle passed to every generation.
#[derive(Debug)]
pub(crate) struct Named {
    pub name: String,
    pub handle: Handle,
    /// What it is, for `status` (`tcp 127.0.0.1:8080`, a path, a kind).
    pub address: String,
    /// Socket inode; `None` for files.
    pub identity: Option<u64>,
}

impl Named {
    pub(crate) fn new(name: &str, handle: Handle) -> Result<Named, Failure> {
        let kind = handle
            .kind()
            .map_err(|e| Failure::new(FAILED, format!("{name}: {}", describe(&e))))?;
        let (address, identity) = match kind {
            Kind::Socket { .. } => (
                local_address(&handle).unwrap_or_else(|| kind.to_string()),
                handoff::restart::supervise::socket_identity(handle.borrow()).ok(),
            ),
            other => (other.to_string(), None),
        };
        Ok(Named {
            name: name.to_owned(),
            handle,
            address,
            identity,
        })
    }
}

/// The bound address of a socket, read through a duplicate as a std type.
pub(crate) fn local_address(handle: &Handle) -> Option<String> {
    let kind = handle.kind().ok()?;
    let dup = std::os::fd::OwnedFd::from(handle.try_clone().ok()?);
    match kind {
        Kind::Socket {
            family: handoff::SocketFamily::Unix,
            ..
        } => {
            let s = std::os::unix::net::UnixListener::from(dup);
            let addr = s.local_addr().ok()?;
            Some(format!(
                "unix {}",
                addr.as_pathname()
                    .map_or("(unnamed)".into(), |p| p.display().to_string())
            ))
        }
        Kind::Socket {
            ty: handoff::SocketType::Datagram,
            ..
        } => Some(format!(
            "udp {}",
            std::net::UdpSocket::from(dup).local_addr().ok()?
        )),
        Kind::Socket { .. } => Some(format!(
            "tcp {}",
            std::net::TcpListener::from(dup).local_addr().ok()?
        )),
        _ => None,
    }
}

/// Binds `--listen`, opens `--fd`, and adopts inherited handles (first, in
/// the order they came). A name given twice is refused: generations find
/// their sockets by name.
pub(crate) fn gather(
    listens: &[ListenSpec],
    fds: &[FdSpec],
    inherited: Option<Inherited>,
) -> Result<Vec<Named>, Failure> {
    let mut out: Vec<Named> = Vec::new();
    if let Some(mut inh) = inherited {
        let names: Vec<String> = inh.names().map(str::to_owned).collect();
        for (i, name) in names.iter().enumerate() {
            let h = inh
                .take_index(i)
                .map_err(|e| Failure::new(FAILED, format!("LISTEN_FDS: {}", describe(&e))))?;
            out.push(Named::new(name, h)?);
        }
    }
    for l in listens {
        if let crate::spec::Address::Unix(path) = &l.address {
            remove_stale_unix_socket(path);
        }
        out.push(Named::new(&l.name, exec::listen(l)?)?);
    }
    for f in fds {
        out.push(Named::new(&f.name, exec::open(f)?)?);
    }
    for (i, n) in out.iter().enumerate() {
        if out[..i].iter().any(|o| o.name == n.name) {
            return Err(Failure::new(
                2,
                format!("the name {:?} is given twice; names must be unique", n.name),
            ));
        }
    }
    Ok(out)
}

/// A socket file nobody listens on any more (its owner died) is removed,
/// so a restarted supervisor can bind the path again; a live one is left
/// alone and the bind fails loudly.
fn remove_stale_unix_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return;
    }
    if let Err(e) = std::os::unix::net::UnixStream::connect(path) {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            tracing::info!(path = %path.display(), "removing a stale socket file");
            let _ = std::fs::remove_file(path);
        }
    }
}
