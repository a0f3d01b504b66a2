"""Channels: messages of bytes and file descriptors over a connected
AF_UNIX SOCK_SEQPACKET socket, split into fragments and reassembled
(docs/wire-format.md, "Transport" and "Fragment")."""

import array
import errno
import os
import select
import socket
import stat

from . import frame
from ._fd import Closing, close_all
from .errors import Disconnected, HandlesTruncated, Malformed, Poisoned, TooLarge, WrongKind

#: What a receiver accepts by default, as the Rust side: 64 MiB, 4096 handles.
DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_HANDLES = 4096

#: The send buffer every channel socket asks for. Linux's default (about
#: 208 KiB) is smaller than a maximal datagram, which then fails with
#: EMSGSIZE; the spec requires raising it or cutting smaller fragments.
SEND_BUFFER = 256 * 1024

_FD_SIZE = array.array("i").itemsize
_CONTROL = socket.CMSG_SPACE(frame.MAX_HANDLES_PER_DATAGRAM * _FD_SIZE)
_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


class Message(Closing):
    """A received message: its bytes and the descriptors that came with it.

    The descriptors are owned by the message until taken: `close()` (or
    leaving a `with` block) closes every one not taken with `take()`.
    """

    def __init__(self, data=b"", fds=None):
        self.bytes = data
        self.fds = list(fds or [])

    def take(self):
        """Hands every descriptor to the caller, who must close them."""
        fds, self.fds = self.fds, []
        return fds

    def close(self):
        fds, self.fds = self.fds, []
        close_all(fds)

    def __repr__(self):
        return f"Message({len(self.bytes)} bytes, fds={self.fds})"


def _configure(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    except OSError:
        pass  # smaller datagrams then; the size is read back below
    sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    # The kernel refuses a datagram larger than the send buffer less its
    # own bookkeeping; keep a margin, as the Rust side does.
    return max(4096, min(frame.MAX_DATAGRAM, sndbuf - 64))


class Channel(Closing):
    """One end of a channel. Blocking; not for concurrent use from several
    threads without a lock."""

    def __init__(self, sock, max_bytes=DEFAULT_MAX_BYTES, max_handles=DEFAULT_MAX_HANDLES):
        """Takes ownership of `sock`, a connected AF_UNIX SOCK_SEQPACKET
        socket (else WrongKind, and it is closed)."""
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
            actual = f"socket (family {sock.family}, type {sock.type})"
            sock.close()
            raise WrongKind("channel", "socket (unix, seqpacket)", actual)
        self.sock = sock
        self.max_bytes = max_bytes
        self.max_handles = max_handles
        self.max_datagram = _configure(sock)
        self.poisoned = False
        # ("idle",) | ("assembling", data, fds, total_bytes, total_handles)
        # | ("discarding", total_bytes, total_handles)
        self._state = ("idle",)

    @classmethod
    def pair(cls, **limits):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        return cls(a, **limits), cls(b, **limits)

    @classmethod
    def connect(cls, path, **limits):
        """Connects to a listener bound at `path`."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(os.fspath(path))
        except BaseException:
            s.close()
            raise
        return cls(s, **limits)

    @classmethod
    def from_fd(cls, fd, **limits):
        """Takes ownership of `fd`, which must be a connected seqpacket
        socket."""
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            from .kinds import kind_of

            actual = kind_of(fd)
            os.close(fd)
            raise WrongKind("channel", "socket (unix, seqpacket)", actual)
        return cls(socket.socket(fileno=fd), **limits)

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        if self._state[0] == "assembling":
            close_all(self._state[2])
        self._state = ("idle",)
        self.sock.close()

    def _poison(self):
        self.poisoned = True
        if self._state[0] == "assembling":
            close_all(self._state[2])
        self._state = ("idle",)

    # ── sending ──

    def send(self, data=b"", fds=()):
        """Sends one message: `data` and the descriptors `fds` (borrowed:
        the kernel duplicates them in flight)."""
        if self.poisoned:
            raise Poisoned()
        data = memoryview(data).cast("B")
        fds = [f if isinstance(f, int) else f.fileno() for f in fds]
        for header, b, h in frame.plan(len(data), len(fds), self.max_datagram):
            ancillary = []
            if len(h):
                ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds[h.start:h.stop]))]
            try:
                self.sock.sendmsg([header, data[b.start:b.stop]], ancillary, socket.MSG_NOSIGNAL)
            except OSError as e:
                if e.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    raise Disconnected() from None
                raise

    # ── receiving ──

    def recv(self):
        """Receives one whole message. Raises `Disconnected` at end-of-file,
        `Malformed` (and poisons the channel) for a broken fragment,
        `TooLarge` or `HandlesTruncated` for a message it skipped."""
        if self.poisoned:
            raise Poisoned()
        while True:
            msg = self._step()
            if msg is not None:
                return msg

    def _fail(self, fds, error):
        close_all(fds)
        if isinstance(error, Malformed):
            self._poison()
        raise error

    def _step(self):
        try:
            data, anc, flags, _ = self.sock.recvmsg(frame.MAX_DATAGRAM, _CONTROL, _CLOEXEC)
        except ConnectionResetError:
            self._drop_partial()
            raise Disconnected() from None
        # Own every descriptor before looking at anything else.
        fds = []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
                fds.extend(arr)
        if not _CLOEXEC:
            for fd in fds:
                os.set_inheritable(fd, False)
        if not data:
            # No conforming sender sends an empty datagram: 0 bytes is
            # end-of-file when the peer has hung up.
            if self._peer_hung_up():
                close_all(fds)
                self._drop_partial()
                raise Disconnected()
            self._fail(fds, Malformed("empty datagram"))
        try:
            header = frame.Header.decode(data)
        except Malformed as e:
            self._fail(fds, e)
        if flags & socket.MSG_TRUNC:
            self._fail(fds, Malformed(f"datagram longer than the {frame.MAX_DATAGRAM}-byte maximum"))
        payload = data[frame.HEADER_LEN:]
        state = self._state
        if len(fds) != header.handles_here:
            if flags & socket.MSG_CTRUNC and len(fds) < header.handles_here:
                close_all(fds)
                if state[0] == "discarding":
                    return self._discard_step(header)
                if state[0] == "assembling":
                    close_all(state[2])
                    expected = state[4]
                else:
                    expected = header.total_handles
                self._discard_rest(header)
                raise HandlesTruncated(expected, len(fds))
            self._fail(fds, Malformed(f"header announces {header.handles_here} handles, {len(fds)} arrived"))

        if state[0] == "idle":
            if not header.first:
                self._fail(fds, Malformed("a message continues that never started"))
            if header.total_bytes > self.max_bytes or header.total_handles > self.max_handles:
                close_all(fds)
                self._discard_rest(header)
                if header.total_bytes > self.max_bytes:
                    raise TooLarge("message bytes", header.total_bytes, self.max_bytes)
                raise TooLarge("message handles", header.total_handles, self.max_handles)
            if len(payload) > header.total_bytes:
                self._fail(fds, Malformed("fragment holds more bytes than its message"))
            if header.last:
                return self._complete(header, bytearray(payload), fds)
            buf = bytearray(payload)
            self._state = ("assembling", buf, fds, header.total_bytes, header.total_handles)
            return None
        if state[0] == "assembling":
            _, buf, got_fds, total_bytes, total_handles = state
            buf += payload
            got_fds.extend(fds)
            if (
                header.first
                or header.total_bytes != total_bytes
                or header.total_handles != total_handles
                or len(buf) > total_bytes
                or len(got_fds) > total_handles
            ):
                self._fail([], Malformed("fragment does not continue the message in progress"))
            if header.last:
                self._state = ("idle",)
                return self._complete(header, buf, got_fds)
            return None
        close_all(fds)
        return self._discard_step(header)

    def _discard_step(self, header):
        _, total_bytes, total_handles = self._state
        if header.first or header.total_bytes != total_bytes or header.total_handles != total_handles:
            self._fail([], Malformed("fragment does not continue the message being discarded"))
        if header.last:
            self._state = ("idle",)
        return None

    def _discard_rest(self, header):
        self._state = ("idle",) if header.last else ("discarding", header.total_bytes, header.total_handles)

    def _complete(self, header, buf, fds):
        if len(buf) != header.total_bytes or len(fds) != header.total_handles:
            self._fail(
                fds,
                Malformed(
                    f"message announced {header.total_bytes} bytes and {header.total_handles} handles,"
                    f" carried {len(buf)} and {len(fds)}"
                ),
            )
        return Message(bytes(buf), fds)

    def _drop_partial(self):
        if self._state[0] == "assembling":
            close_all(self._state[2])
        self._state = ("idle",)

    def _peer_hung_up(self):
        p = select.poll()
        p.register(self.sock.fileno(), select.POLLIN)
        for _, ev in p.poll(0):
            if ev & select.POLLHUP:
                return True
        return False


class Listener(Closing):
    """A listening socket file for many clients, owner-only (mode 0600)."""

    def __init__(self, path, backlog=128, **limits):
        self.path = os.fspath(path)
        self.limits = limits
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            old = os.umask(0o177)
            try:
                self.sock.bind(self.path)
            finally:
                os.umask(old)
            self.sock.listen(backlog)
        except BaseException:
            self.sock.close()
            raise

    def accept(self):
        s, _ = self.sock.accept()
        return Channel(s, **self.limits)

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
