//! The baseline: hand-written rustix `sendmsg`/`recvmsg` loops on a Unix
//! socket pair, with `SCM_RIGHTS` and `MSG_CMSG_CLOEXEC` and nothing else
//! on top: no header, no framing, no checks beyond what the kernel reports.

use std::ffi::CStr;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use rustix::net::{
    sockopt, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use crate::contender::Contender;
use crate::handles;
use crate::proc::{self, Role};
use crate::workload::{Workload, LAST, MORE};
use crate::Result;

/// The send buffer the library asks for on its sockets (the kernel doubles
/// it), which lets a datagram be 256 KiB.
const LIBRARY_SEND_BUFFER: usize = 256 * 1024;

/// A parent blocked on a child that died without closing its end (a
/// datagram socket never reports end-of-file) gives up after this long.
const RECV_TIMEOUT: Duration = Duration::from_secs(60);

/// Which socket type the baseline runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Stream,
    Seqpacket,
    Dgram,
}

impl SocketKind {
    fn socket_type(self) -> SocketType {
        match self {
            SocketKind::Stream => SocketType::STREAM,
            SocketKind::Seqpacket => SocketType::SEQPACKET,
            SocketKind::Dgram => SocketType::DGRAM,
        }
    }

    /// The name the report uses.
    pub fn name(self) -> &'static str {
        match self {
            SocketKind::Stream => "STREAM",
            SocketKind::Seqpacket => "SEQPACKET",
            SocketKind::Dgram => "DGRAM",
        }
    }
}

/// How big the socket buffers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffers {
    /// The kernel's defaults (`net.core.wmem_default`).
    System,
    /// The send buffer handoff asks for (`lib-buf`: 1 MiB where
    /// `net.core.wmem_max` allows).
    Library,
}

impl Buffers {
    /// The name the report uses.
    pub fn name(self) -> &'static str {
        match self {
            Buffers::System => "default-buf",
            Buffers::Library => "lib-buf",
        }
    }
}

/// The parent's end of a raw socket pair.
#[derive(Debug)]
pub struct Parent {
    socket: OwnedFd,
    kind: SocketKind,
    fds: Vec<BorrowedFd<'static>>,
    child: proc::Child,
}

impl Parent {
    /// Creates a socket pair of `kind` and starts a raw child on one end.
    pub fn spawn(kind: SocketKind, buffers: Buffers, work: Workload, pin: bool) -> Result<Parent> {
        let (mine, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            kind.socket_type(),
            SocketFlags::CLOEXEC,
            None,
        )?;
        if buffers == Buffers::Library {
            for end in [&mine, &theirs] {
                // A refusal only means smaller datagrams; the bulk benchmark
                // would then fail loudly with EMSGSIZE.
                let _ = sockopt::set_socket_send_buffer_size(end, LIBRARY_SEND_BUFFER);
            }
        }
        sockopt::set_socket_timeout(&mine, sockopt::Timeout::Recv, Some(RECV_TIMEOUT))?;
        let child = proc::spawn(Role::Raw, work, Stdio::from(theirs), None, pin)?;
        Ok(Parent {
            socket: mine,
            kind,
            fds: handles::borrowed()?,
            child,
        })
    }

    fn recv_byte(&self) -> Result<()> {
        let mut byte = [0u8; 1];
        match retry(|| rustix::net::recv(&self.socket, &mut byte, RecvFlags::empty()))? {
            (0, _) => Err("child hung up".into()),
            _ => Ok(()),
        }
    }
}

impl Contender for Parent {
    fn send_fds(&mut self, count: usize, last: bool) -> Result<()> {
        let marker = [if last { LAST } else { MORE }];
        send_with_fds(self.socket.as_fd(), &marker, &self.fds[..count])?;
        Ok(())
    }

    fn wait_ack(&mut self) -> Result<()> {
        self.recv_byte()
    }

    fn round_trip(&mut self, with_fd: bool) -> Result<()> {
        if with_fd {
            send_with_fds(self.socket.as_fd(), &[MORE], &self.fds[..1])?;
            let mut byte = [0u8; 1];
            match recv_closing(self.socket.as_fd(), &mut byte)? {
                (1, 1) => Ok(()),
                (bytes, fds) => Err(format!("answer of {bytes} bytes and {fds} handles").into()),
            }
        } else {
            retry(|| rustix::net::send(&self.socket, &[MORE], SendFlags::NOSIGNAL))?;
            self.recv_byte()
        }
    }

    fn send_bytes(&mut self, chunk: &[u8]) -> Result<()> {
        let mut rest = chunk;
        while !rest.is_empty() {
            let n = retry(|| rustix::net::send(&self.socket, rest, SendFlags::NOSIGNAL))?;
            if n != rest.len() && self.kind != SocketKind::Stream {
                return Err(format!("datagram of {} bytes sent as {n}", rest.len()).into());
            }
            rest = &rest[n..];
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        if self.kind == SocketKind::Dgram {
            // A datagram peer never sees end-of-file: an empty datagram says
            // goodbye instead.
            retry(|| rustix::net::send(&self.socket, &[], SendFlags::NOSIGNAL))?;
        }
        let Parent { socket, child, .. } = *self;
        drop(socket);
        child.wait()
    }
}

/// The child's thread name, by the type of its socket.
pub fn thread_name(socket: &OwnedFd) -> &'static CStr {
    match sockopt::socket_type(socket) {
        Ok(SocketType::STREAM) => c"hb-raw-stream",
        Ok(SocketType::SEQPACKET) => c"hb-raw-seqpkt",
        Ok(SocketType::DGRAM) => c"hb-raw-dgram",
        _ => c"hb-raw",
    }
}

/// The child's loop: does `work` on `socket` until the parent hangs up (end
/// of file, or an empty datagram).
pub fn serve(socket: OwnedFd, work: Workload) -> Result<()> {
    let socket = socket.as_fd();
    let own = handles::borrowed()?;
    let mut byte = [0u8; 1];
    match work {
        Workload::Fds => loop {
            // One byte is one message even on a stream: a read that picks up
            // handles stops at the end of the write that carried them.
            match recv_closing(socket, &mut byte)? {
                (0, _) => return Ok(()),
                _ if byte[0] == LAST => {
                    retry(|| rustix::net::send(socket, &[LAST], SendFlags::NOSIGNAL))?;
                }
                _ => {}
            }
        },
        // Plain recv/send where no handle travels: the fastest a byte can
        // make the trip, which a channel able to carry handles cannot use
        // on the receiving side.
        Workload::Echo { with_fd: false } => loop {
            match retry(|| rustix::net::recv(socket, &mut byte, RecvFlags::empty()))? {
                (0, _) => return Ok(()),
                _ => {
                    retry(|| rustix::net::send(socket, &byte, SendFlags::NOSIGNAL))?;
                }
            }
        },
        Workload::Echo { with_fd: true } => loop {
            match recv_closing(socket, &mut byte)? {
                (0, _) => return Ok(()),
                (_, 1) => {
                    send_with_fds(socket, &byte, &own[..1])?;
                }
                (_, fds) => return Err(format!("ping with {fds} handles, expected 1").into()),
            }
        },
        Workload::Bulk { total, chunk } => {
            let mut buf = vec![0u8; chunk.max(64 * 1024)];
            loop {
                let mut got = 0u64;
                while got < total {
                    let (n, _) =
                        retry(|| rustix::net::recv(socket, &mut buf[..], RecvFlags::empty()))?;
                    if n == 0 {
                        return if got == 0 {
                            Ok(())
                        } else {
                            Err("parent hung up mid-transfer".into())
                        };
                    }
                    got += n as u64;
                }
                retry(|| rustix::net::send(socket, &[LAST], SendFlags::NOSIGNAL))?;
            }
        }
    }
}

/// Sends `bytes` with `fds` attached in one `sendmsg`.
fn send_with_fds(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(handles::MAX))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many handles",
        ));
    }
    let iov = [IoSlice::new(bytes)];
    retry(|| rustix::net::sendmsg(socket, &iov, &mut control, SendFlags::NOSIGNAL))
}

/// Receives one message into `buf`, closing every handle it carried.
/// Returns the byte and handle counts.
fn recv_closing(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, usize)> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(handles::MAX))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        retry(|| rustix::net::recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC))?;
    let mut fds = 0;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            // Dropping each one closes it, as a receiver that is done with
            // a handle would.
            fds += received.count();
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::other("handles truncated (MSG_CTRUNC)"));
    }
    Ok((msg.bytes, fds))
}

/// Repeats a system call interrupted by a signal.
fn retry<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}
