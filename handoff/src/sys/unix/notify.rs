//! Datagram Unix sockets for the notify protocol (`NOTIFY_SOCKET`): sending
//! bytes and descriptors to a path or abstract address, and receiving them
//! with the kernel's credentials of the sender (`SCM_CREDENTIALS`).
//! Also the few process-wide calls a supervisor makes. Linux only: the
//! credentials ride on `SO_PASSCRED`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// Descriptors that fit one datagram (`SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// An address as `NOTIFY_SOCKET` spells it: a path, or `@name` for the
/// abstract namespace.
fn address(spec: &str) -> io::Result<SocketAddrUnix> {
    match spec.strip_prefix('@') {
        Some(name) => SocketAddrUnix::new_abstract_name(name.as_bytes()),
        None => SocketAddrUnix::new(spec),
    }
    .map_err(io::Error::from)
}

fn datagram_socket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sends one datagram of `bytes` with `fds` attached to the socket at
/// `spec`, from a fresh unbound socket (closed again on return).
pub(crate) fn send_to(spec: &str, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "more than 253 handles for one datagram",
        ));
    }
    let addr = address(spec)?;
    let socket = datagram_socket()?;
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "handles do not fit the control buffer",
        ));
    }
    let iov = [io::IoSlice::new(bytes)];
    loop {
        match rustix::net::sendmsg_addr(&socket, &addr, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Binds a datagram socket at `path` (a file; `@name` for abstract) that
/// receives the sender's credentials with every datagram.
pub(crate) fn bind(spec: &str) -> io::Result<OwnedFd> {
    let socket = datagram_socket()?;
    rustix::net::bind(&socket, &address(spec)?)?;
    rustix::net::sockopt::set_socket_passcred(&socket, true)?;
    Ok(socket)
}

/// One received datagram.
#[derive(Debug)]
pub(crate) struct Datagram {
    /// Bytes stored in the caller's buffer.
    pub len: usize,
    /// The datagram was longer than the buffer.
    pub truncated: bool,
    /// Some descriptors could not be delivered (`MSG_CTRUNC`).
    pub fds_truncated: bool,
    /// Sender's pid, uid and gid as the kernel saw them, if it said.
    pub creds: Option<(u32, u32, u32)>,
    /// Descriptors that came with it, owned and close-on-exec.
    pub fds: Vec<OwnedFd>,
}

/// Receives one datagram into `buf`, waiting for it.
pub(crate) fn recv(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut space = vec![
        MaybeUninit::<u8>::uninit();
        rustix::cmsg_space!(ScmRights(MAX_FDS), ScmCredentials(1))
    ];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = loop {
        match rustix::net::recvmsg(
            socket,
            &mut iov,
            &mut control,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC,
        ) {
            Ok(m) => break m,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    let mut creds = None;
    for m in control.drain() {
        match m {
            RecvAncillaryMessage::ScmRights(it) => fds.extend(it),
            RecvAncillaryMessage::ScmCredentials(c) => {
                creds = Some((
                    c.pid.as_raw_nonzero().get() as u32,
                    c.uid.as_raw(),
                    c.gid.as_raw(),
                ))
            }
            _ => {}
        }
    }
    let cap = iov[0].len();
    Ok(Datagram {
        len: msg.bytes.min(cap),
        truncated: msg.bytes > cap || msg.flags.contains(ReturnFlags::TRUNC),
        fds_truncated: msg.flags.contains(ReturnFlags::CTRUNC),
        creds,
        fds,
    })
}

/// The socket's inode number: the same for every descriptor of it, in any
/// process (`/proc/PID/fd/N` reads `socket:[INODE]`).
pub(crate) fn inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_ino)
}

/// Makes this process the reaper of its orphaned descendants, so a
/// service that daemonizes stays visible to its supervisor.
pub(crate) fn become_subreaper() -> io::Result<()> {
    Ok(rustix::process::set_child_subreaper(Some(
        rustix::process::getpid(),
    ))?)
}

/// Marks `fd` to survive (or not) the next `exec` of this process.
pub(crate) fn keep_across_exec(fd: BorrowedFd<'_>, keep: bool) -> io::Result<()> {
    super::handle::set_inheritable(fd.as_fd(), keep)
}

/// Removes a socket file left by a previous run, if `path` is a socket.
pub(crate) fn remove_stale_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// `POLLHUP`/`POLLERR` now, without waiting.
pub(crate) fn hung_up(fd: BorrowedFd<'_>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::empty())];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL),
        Err(_) => false,
    }
}

/// Soft `RLIMIT_NOFILE` up to the hard limit (at most `cap`); the new value.
pub(crate) fn raise_fd_limit(cap: u64) -> io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let want = now.maximum.unwrap_or(cap).min(cap);
    if now.current.is_some_and(|c| c >= want) {
        return Ok(now.current.unwrap_or(want));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(want),
            maximum: now.maximum,
        },
    )?;
    Ok(want)
}

/// `listen` again on a socket that is no longer listening.
pub(crate) fn relisten(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    if rustix::net::sockopt::socket_acceptconn(fd)? {
        return Ok(());
    }
    Ok(rustix::net::listen(fd, backlog)?)
}

/// Waits up to `timeout` for the other end of a pipe to be closed
/// everywhere (`POLLHUP`); false on timeout.
pub(crate) fn wait_hangup(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return Ok(false),
            Ok(_) if fds[0].revents().contains(PollFlags::HUP) => return Ok(true),
            // Data in the pipe (nobody writes it here): keep waiting.
            Ok(_) if left.is_zero() => return Ok(false),
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
