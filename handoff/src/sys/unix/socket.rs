//! Unix-domain `SOCK_SEQPACKET` sockets: the transport under a channel.
//!
//! A seqpacket socket keeps datagram boundaries, delivers in order, reports
//! the peer's exit as end-of-file, and carries `SCM_RIGHTS` with the datagram
//! they were sent with. Everything here is one system call deep; framing and
//! reassembly live in the portable `channel` module.
//!
//! In the portable configuration (`handoff_portable`, see `build.rs`) the
//! channel is a `SOCK_STREAM` socket instead, and the items that differ
//! (`Socket`, `send`, `recv`, `flush`, ...) come from `stream_socket.rs`;
//! what both share (creating, connecting, credentials, waiting) stays here.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
#[cfg(not(handoff_portable))]
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};

/// One end of a channel: a connected seqpacket socket.
#[cfg(not(handoff_portable))]
pub(crate) type Socket = OwnedFd;

#[cfg(handoff_portable)]
pub(crate) use super::stream_socket::{
    as_raw, flush, into_raw, peer_hung_up, recv, send, Socket, MAX_HANDLES_PER_DATAGRAM,
};

/// The most descriptors one `sendmsg` can carry (Linux's `SCM_MAX_FD`).
#[cfg(not(handoff_portable))]
pub(crate) const MAX_HANDLES_PER_DATAGRAM: usize = 253;

/// The kind of socket a channel runs over: seqpacket keeps the fragment
/// boundaries; the portable configuration frames fragments on a stream.
#[cfg(not(handoff_portable))]
pub(super) const CHANNEL_TYPE: SocketType = SocketType::SEQPACKET;
#[cfg(handoff_portable)]
pub(super) const CHANNEL_TYPE: SocketType = SocketType::STREAM;

/// The send buffer requested for every channel socket. The kernel doubles
/// it; a datagram may use all of it but 32 bytes. Room for two 256 KiB
/// datagrams in flight measured best: 1 GiB of raw seqpacket writes reached
/// 12.1 GB/s with it against 9.3 with 1 MiB, whose extra datagrams fall out
/// of the cache before the receiver copies them.
const SEND_BUFFER: usize = 256 * 1024;

/// The largest payload one datagram carries (frame header excluded).
#[cfg(not(handoff_portable))]
const MAX_DATAGRAM_PAYLOAD: usize =
    crate::channel::frame::MAX_DATAGRAM - crate::channel::frame::HEADER_LEN;

/// Why channels are unavailable where the kernel has no Unix-domain
/// seqpacket sockets (macOS and iOS, at the time of writing).
pub(crate) const NO_TRANSPORT: &str =
    "this kernel has no SOCK_SEQPACKET Unix-domain sockets, which channels need to keep message boundaries";

/// Creation flags for every socket: close-on-exec in the same call where
/// the platform can.
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
pub(super) const CLOEXEC: SocketFlags = SocketFlags::CLOEXEC;
#[cfg(any(target_os = "macos", target_os = "ios"))]
pub(super) const CLOEXEC: SocketFlags = SocketFlags::empty();

/// Apple has no `SOCK_CLOEXEC`: the flag is set right after the socket
/// exists, so an `exec` on another thread in between can still inherit it.
/// There is no race-free alternative on those systems.
#[cfg(any(target_os = "macos", target_os = "ios"))]
pub(super) fn after_create(fd: OwnedFd) -> io::Result<OwnedFd> {
    super::handle::set_inheritable(fd.as_fd(), false)?;
    Ok(fd)
}

#[cfg(not(any(target_os = "macos", target_os = "ios")))]
pub(super) fn after_create(fd: OwnedFd) -> io::Result<OwnedFd> {
    Ok(fd)
}

/// A kernel without seqpacket Unix sockets says so in one of these ways;
/// each becomes `ErrorKind::Unsupported`, never a pretend channel.
fn seqpacket_errno(e: rustix::io::Errno) -> io::Error {
    use rustix::io::Errno;
    match e {
        Errno::PROTONOSUPPORT | Errno::PROTOTYPE | Errno::SOCKTNOSUPPORT | Errno::OPNOTSUPP => {
            io::Error::new(io::ErrorKind::Unsupported, NO_TRANSPORT)
        }
        e => e.into(),
    }
}

/// A new unconnected socket of the channel's type, close-on-exec.
pub(super) fn channel_socket() -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(AddressFamily::UNIX, CHANNEL_TYPE, CLOEXEC, None)
        .map_err(seqpacket_errno)?;
    after_create(fd)
}

/// Creates a connected pair of channel sockets, both close-on-exec.
pub(crate) fn pair() -> io::Result<(Socket, Socket)> {
    let (a, b) = rustix::net::socketpair(AddressFamily::UNIX, CHANNEL_TYPE, CLOEXEC, None)
        .map_err(seqpacket_errno)?;
    Ok((channel_end(after_create(a)?), channel_end(after_create(b)?)))
}

/// A connected descriptor as a channel end: itself on a seqpacket socket,
/// with the stream transport's per-direction state in the portable
/// configuration.
#[cfg(not(handoff_portable))]
pub(super) fn channel_end(fd: OwnedFd) -> Socket {
    fd
}
#[cfg(handoff_portable)]
pub(super) fn channel_end(fd: OwnedFd) -> Socket {
    Socket::from(fd)
}

/// Prepares a channel socket and returns the largest datagram it can send.
pub(crate) fn configure(s: &Socket, wanted_datagram: usize) -> io::Result<usize> {
    let fd = s.as_fd();
    // A failure only means smaller datagrams; the size is read back below.
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(fd, SEND_BUFFER);
    // Apple has no MSG_NOSIGNAL; the socket option is its per-socket form.
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    rustix::net::sockopt::set_socket_nosigpipe(fd, true)?;
    // A stream takes a fragment of any size in pieces; the send buffer only
    // sets how much is in flight.
    #[cfg(handoff_portable)]
    return Ok(wanted_datagram);
    #[cfg(not(handoff_portable))]
    {
        let sndbuf = rustix::net::sockopt::socket_send_buffer_size(fd)?;
        // The kernel refuses a datagram larger than the send buffer less 32
        // bytes of its own bookkeeping; keep a margin.
        Ok(wanted_datagram.min(sndbuf.saturating_sub(64)).max(4096))
    }
}

/// What [`is_channel`] wants, for the error when it is not.
pub(crate) const CHANNEL_KIND: crate::KindName = crate::KindName::Socket;

/// True when `fd` is a Unix-domain socket of the channel's type (seqpacket;
/// stream in the portable configuration), the only kind a channel can run
/// over.
pub(crate) fn is_channel(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use rustix::net::sockopt;
    Ok(super::handle::family(fd)? == AddressFamily::UNIX
        && sockopt::socket_type(fd)? == CHANNEL_TYPE)
}

/// Sets or clears `O_NONBLOCK`.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    rustix::io::ioctl_fionbio(fd, nonblocking).map_err(Into::into)
}

pub(super) fn send_flags(nonblocking: bool) -> SendFlags {
    // MSG_NOSIGNAL: a vanished peer is an EPIPE error, never a SIGPIPE death.
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    let mut flags = SendFlags::NOSIGNAL;
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    let mut flags = SendFlags::empty();
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    flags
}

/// Sends one datagram made of `header` and `payload`, with `handles`
/// attached. All or nothing: a seqpacket socket never sends part of one.
#[cfg(not(handoff_portable))]
pub(crate) fn send(
    s: &Socket,
    header: &[u8],
    payload: &[u8],
    handles: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<()> {
    let fd = s.as_fd();
    let iov = [io::IoSlice::new(header), io::IoSlice::new(payload)];
    let iov = if payload.is_empty() {
        &iov[..1]
    } else {
        &iov[..]
    };
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_HANDLES_PER_DATAGRAM))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !handles.is_empty() && !control.push(SendAncillaryMessage::ScmRights(handles)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many handles for one datagram",
        ));
    }
    loop {
        match rustix::net::sendmsg(fd, iov, &mut control, send_flags(nonblocking)) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Nothing to write out: a seqpacket `send` is all or nothing.
#[cfg(not(handoff_portable))]
pub(crate) fn flush(_s: &Socket, _nonblocking: bool) -> io::Result<()> {
    Ok(())
}

/// What one `recvmsg` delivered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Bytes of the datagram that were stored, header included (0 means
    /// end-of-file).
    pub len: usize,
    /// The datagram was longer than the buffers (`MSG_TRUNC`).
    pub truncated: bool,
    /// Some descriptors could not be delivered (`MSG_CTRUNC`).
    pub handles_truncated: bool,
}

/// Receives one datagram: its first `header.len()` bytes into `header`, the
/// rest appended to `dst`, straight into its spare capacity, with whatever
/// does not fit there passing through `scratch` (whose capacity bounds how
/// much more is accepted). Each descriptor that came with it is handed to
/// `on_handle`, owned and close-on-exec, before anything else is looked at.
///
/// This calls `recvmsg` through libc rather than rustix: rustix receives
/// only into initialised buffers, and the channel receives straight into a
/// message's spare capacity to avoid zeroing or copying bulk data.
#[cfg(not(handoff_portable))]
pub(crate) fn recv(
    s: &Socket,
    header: &mut [u8],
    dst: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    mut on_handle: impl FnMut(OwnedFd),
    nonblocking: bool,
) -> io::Result<Received> {
    let fd = s.as_fd();
    // u64 elements keep the control buffer aligned for cmsghdr. It is left
    // uninitialised: the kernel writes msg_controllen bytes and the CMSG
    // walk reads no further (zeroing 1 KiB per message showed up in
    // profiles of small messages).
    const CONTROL_WORDS: usize = rustix::cmsg_space!(ScmRights(MAX_HANDLES_PER_DATAGRAM)) / 8 + 1;
    let mut control = MaybeUninit::<[u64; CONTROL_WORDS]>::uninit();
    scratch.clear();
    let spare = dst.spare_capacity_mut();
    let (spare_ptr, spare_len) = (spare.as_mut_ptr(), spare.len());
    let extra = scratch.spare_capacity_mut();
    let (extra_ptr, extra_len) = (extra.as_mut_ptr(), extra.len());
    // The buffers together take at most one maximal datagram, so a longer
    // one sets MSG_TRUNC and is refused, however much room `dst` has (a
    // message announced with several fragments has reserved all of it).
    // With room for a whole datagram in `dst`, the scratch takes nothing
    // and is left out.
    let spare_take = spare_len.min(MAX_DATAGRAM_PAYLOAD);
    let extra_take = extra_len.min(MAX_DATAGRAM_PAYLOAD - spare_take);
    let (mut iov, count) = iovecs([
        (header.as_mut_ptr(), header.len()),
        (spare_ptr.cast::<u8>(), spare_take),
        (extra_ptr.cast::<u8>(), extra_take),
    ]);
    // SAFETY: every iovec points at writable memory of the stated length
    // (dst's and scratch's spare capacity, the header) that outlives the
    // call; the kernel only writes, so uninitialised memory is fine.
    let (n, msg_flags) = unsafe {
        recv_with_rights(
            fd,
            &mut iov[..count],
            control_words(&mut control),
            nonblocking,
            &mut on_handle,
        )
    }?;

    let payload = n.saturating_sub(header.len());
    let in_dst = payload.min(spare_take);
    let in_scratch = payload - in_dst;
    // SAFETY: recvmsg wrote `payload` bytes across the iovecs in order: the
    // first `in_dst` into dst's spare capacity, the rest into scratch's.
    unsafe {
        dst.set_len(dst.len() + in_dst);
        scratch.set_len(in_scratch);
    }
    dst.extend_from_slice(scratch);
    scratch.clear();

    Ok(Received {
        len: n,
        truncated: msg_flags & libc::MSG_TRUNC != 0,
        handles_truncated: msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// True when the peer has closed its end. Tells end-of-file apart from an
/// empty datagram, which `recvmsg` also reports as 0 bytes.
#[cfg(not(handoff_portable))]
pub(crate) fn peer_hung_up(s: &Socket) -> bool {
    let fd = s.as_fd();
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0].revents().contains(PollFlags::HUP),
        Err(_) => true,
    }
}

/// The iovecs for `bufs` (each a start and a length), the empty ones left
/// out: fewer iovecs, less kernel work. Returns them and how many there
/// are, first.
pub(super) fn iovecs<const N: usize>(bufs: [(*mut u8, usize); N]) -> ([libc::iovec; N], usize) {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; N];
    let mut count = 0;
    for (base, len) in bufs {
        if len > 0 {
            iov[count] = libc::iovec {
                iov_base: base.cast(),
                iov_len: len,
            };
            count += 1;
        }
    }
    (iov, count)
}

/// A control buffer of `N` aligned words, uninitialised, as the slice
/// [`recv_with_rights`] takes.
pub(super) fn control_words<const N: usize>(
    control: &mut MaybeUninit<[u64; N]>,
) -> &mut [MaybeUninit<u64>] {
    // SAFETY: an uninitialised array is an array of uninitialised elements:
    // `MaybeUninit<[u64; N]>` and `[MaybeUninit<u64>; N]` have one layout.
    unsafe { &mut *control.as_mut_ptr().cast::<[MaybeUninit<u64>; N]>() }
}

/// The one `recvmsg` both channel transports make: bytes into `iov`, and
/// every descriptor that came with them handed to `on_handle`, owned and
/// close-on-exec, before the caller can look at anything else (so no early
/// return leaks one). Returns the bytes read and the message's flags
/// (`MSG_TRUNC`, `MSG_CTRUNC`). `control` is left uninitialised: the
/// kernel writes `msg_controllen` bytes and the walk reads no further
/// (zeroing 1 KiB per message showed in profiles of small messages).
///
/// libc rather than rustix: rustix receives only into initialised
/// buffers, and the channels receive straight into a message's spare
/// capacity.
///
/// # Safety
/// Every iovec in `iov` points at memory writable for its length that
/// outlives the call.
pub(super) unsafe fn recv_with_rights(
    fd: BorrowedFd<'_>,
    iov: &mut [libc::iovec],
    control: &mut [MaybeUninit<u64>],
    nonblocking: bool,
    on_handle: &mut impl FnMut(OwnedFd),
) -> io::Result<(usize, libc::c_int)> {
    const FD_SIZE: usize = std::mem::size_of::<libc::c_int>();
    // SAFETY: msghdr is plain data; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(control) as _;

    // Linux has the kernel create the descriptors close-on-exec, so no
    // concurrent exec in this process can inherit them; elsewhere the flag
    // is set right after the call (a window the platform cannot close).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let mut flags = libc::MSG_CMSG_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let mut flags = 0;
    if nonblocking {
        flags |= libc::MSG_DONTWAIT;
    }
    let n = loop {
        // SAFETY: the iovecs are the caller's to vouch for; msg_control
        // points at `control` of the stated size.
        let n = unsafe { raw_recvmsg(fd.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };

    // SAFETY: `msg` was filled by a successful recvmsg; the CMSG macros walk
    // the control buffer within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: CMSG_FIRSTHDR/NXTHDR only return headers inside the buffer.
        let cm = unsafe { &*cmsg };
        if cm.cmsg_level == libc::SOL_SOCKET && cm.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is the length of a header with no data.
            let data_len = cm.cmsg_len as usize - unsafe { libc::CMSG_LEN(0) } as usize;
            // SAFETY: CMSG_DATA points at the data_len bytes that follow.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            for i in 0..data_len / FD_SIZE {
                // SAFETY: in bounds as above; the data may be unaligned.
                let raw = unsafe { data.add(i * FD_SIZE).cast::<libc::c_int>().read_unaligned() };
                // SAFETY: the kernel just installed this descriptor in our
                // table for us; nothing else owns it.
                let owned = unsafe { super::handle::own_raw(raw) };
                #[cfg(not(any(target_os = "linux", target_os = "android")))]
                let _ = super::handle::set_inheritable(owned.as_fd(), false);
                on_handle(owned);
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok((n, msg.msg_flags))
}

/// `recvmsg` without glibc's wrapper, which toggles thread cancellation
/// around every call; the raw system call is what rustix would make.
///
/// # Safety
/// As for `recvmsg(2)`: `msg` describes valid, writable buffers.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) unsafe fn raw_recvmsg(
    fd: libc::c_int,
    msg: *mut libc::msghdr,
    flags: libc::c_int,
) -> isize {
    // SAFETY: forwarded from the caller.
    unsafe { libc::syscall(libc::SYS_recvmsg, fd, msg, flags) as isize }
}

/// `recvmsg(2)`.
///
/// # Safety
/// As for `recvmsg(2)`: `msg` describes valid, writable buffers.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) unsafe fn raw_recvmsg(
    fd: libc::c_int,
    msg: *mut libc::msghdr,
    flags: libc::c_int,
) -> isize {
    // SAFETY: forwarded from the caller.
    unsafe { libc::recvmsg(fd, msg, flags) as isize }
}

/// True when `e` means the process or system is out of descriptors or
/// memory for now (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): worth waiting
/// out rather than giving up.
pub(crate) fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Waits until `fd` is readable (or writable), for blocking calls on a
/// socket someone else set non-blocking.
pub(crate) fn wait(s: &Socket, writable: bool) -> io::Result<()> {
    wait_fd(s.as_fd(), writable)
}

/// As [`wait`], for any descriptor (a listening socket).
pub(super) fn wait_fd(fd: BorrowedFd<'_>, writable: bool) -> io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags};
    let events = if writable {
        PollFlags::OUT
    } else {
        PollFlags::IN
    };
    let mut fds = [PollFd::new(&fd, events)];
    loop {
        match poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map(|_| ()).map_err(Into::into),
        }
    }
}

/// Why peer credentials are unavailable.
pub(crate) const NO_PEER_CREDENTIALS: &str =
    "peer credentials are implemented for Linux, macOS and FreeBSD 13 or newer only";

/// Borrows the socket's descriptor.
#[cfg(not(handoff_portable))]
pub(crate) fn as_raw(s: &Socket) -> BorrowedFd<'_> {
    s.as_fd()
}

/// Gives up the socket's descriptor.
#[cfg(not(handoff_portable))]
pub(crate) fn into_raw(s: Socket) -> OwnedFd {
    s
}

pub(super) fn unix_address(path: &Path) -> io::Result<SocketAddrUnix> {
    SocketAddrUnix::new(path).map_err(|e| {
        if e == rustix::io::Errno::NAMETOOLONG || e == rustix::io::Errno::INVAL {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "path too long for a Unix socket address",
            )
        } else {
            e.into()
        }
    })
}

/// Connects to a listener at `path`.
pub(crate) fn connect(path: &Path) -> io::Result<Socket> {
    let addr = unix_address(path)?;
    let fd = channel_socket()?;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map(|()| channel_end(fd)).map_err(Into::into),
        }
    }
}

/// Peer credentials: pid, uid, gid, and a pidfd where the kernel offers one.
///
/// The portable configuration returns no process handle: it holds
/// processes by pid, and a process opened by the pid the kernel recorded at
/// connect time may be another one by now (macOS's `LOCAL_PEERPID` and
/// FreeBSD's `xucred` give only the number; Linux's `SO_PEERPIDFD` is a
/// pidfd, which that configuration does not use).
pub(crate) fn peer_credentials(s: &Socket) -> io::Result<(u32, u32, u32, Option<OwnedFd>)> {
    let fd = s.as_fd();
    let (pid, uid, gid) = peer_ids(fd)?;
    #[cfg(not(handoff_portable))]
    let process = peer_pidfd(fd);
    #[cfg(handoff_portable)]
    let process = None;
    Ok((pid, uid, gid, process))
}

/// `SO_PEERCRED`: the peer's pid, uid and gid at connect time.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn peer_ids(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    let cred = rustix::net::sockopt::socket_peercred(fd)?;
    Ok((
        cred.pid.as_raw_nonzero().get() as u32,
        cred.uid.as_raw(),
        cred.gid.as_raw(),
    ))
}

/// `getpeereid` for the effective uid and gid, `LOCAL_PEERPID` for the pid
/// (rustix has neither, hence libc).
#[cfg(target_vendor = "apple")]
fn peer_ids(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: getpeereid writes one uid_t and one gid_t into locals.
    if unsafe { libc::getpeereid(fd.as_raw_fd(), &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a pid_t is plain data.
    let pid: libc::pid_t = unsafe { local_sockopt(fd, libc::LOCAL_PEERPID)? };
    Ok((pid as u32, uid, gid))
}

/// `getsockopt(SOL_LOCAL, option)` read as a `T`, zeroed first.
///
/// # Safety
///
/// `T` must be plain data (any bytes, zero included, are a valid `T`) and
/// the type the kernel writes for `option`.
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
unsafe fn local_sockopt<T>(fd: BorrowedFd<'_>, option: libc::c_int) -> io::Result<T> {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_LOCAL,
            option,
            value.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed, then partly or wholly written by the kernel; the
    // caller promises any bytes are a valid `T`.
    Ok(unsafe { value.assume_init() })
}

/// `LOCAL_PEERCRED`: an `xucred` with the effective uid, the groups (the
/// first is the effective gid) and, since FreeBSD 13, the pid.
#[cfg(target_os = "freebsd")]
fn peer_ids(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    // SAFETY: every field of an xucred is plain data.
    let cred: libc::xucred = unsafe { local_sockopt(fd, libc::LOCAL_PEERCRED)? };
    // SAFETY: both members of the union are plain data; the kernel writes
    // the pid there since FreeBSD 13 (older ones leave it zero).
    let pid = unsafe { cred.cr_pid__c_anonymous_union.cr_pid };
    if cred.cr_version != libc::XUCRED_VERSION || cred.cr_ngroups < 1 || pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            NO_PEER_CREDENTIALS,
        ));
    }
    Ok((pid as u32, cred.cr_uid, cred.cr_groups[0]))
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd"
)))]
fn peer_ids(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    let _ = fd;
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        NO_PEER_CREDENTIALS,
    ))
}

/// `SO_PEERPIDFD` (Linux 6.5): a pidfd for the peer that stays true even if
/// its pid is reused. rustix has no wrapper for it, so libc's getsockopt is
/// called directly.
#[cfg(not(handoff_portable))]
fn peer_pidfd(fd: BorrowedFd<'_>) -> Option<OwnedFd> {
    #[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
    const SO_PEERPIDFD: libc::c_int = 0x0056;
    #[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
    const SO_PEERPIDFD: libc::c_int = 77;
    let mut raw: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `raw`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut raw as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || raw < 0 {
        return None;
    }
    // SAFETY: the kernel installed a new pidfd for us (close-on-exec); we are
    // its only owner.
    Some(unsafe { super::handle::own_raw(raw) })
}
