"""What a descriptor is and what it may do, read from the kernel
(docs/wire-format.md, "Handle kinds")."""

import fcntl
import os
import socket
import stat

from .errors import WrongAccess, WrongKind

KINDS = ("file", "directory", "pipe", "socket", "shared-memory", "event", "process",
         "timer", "terminal", "other")
ACCESSES = ("read", "write", "read_write", "none")

_O_PATH = getattr(os, "O_PATH", 0)
_F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)
_TMPFS_MAGIC = 0x01021994


def _link(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def seals(fd):
    """The memfd seals of `fd`, or None if it cannot carry seals."""
    try:
        return fcntl.fcntl(fd, _F_GET_SEALS)
    except OSError:
        return None


def kind_of(fd):
    """The kind name of `fd`: one of KINDS."""
    st = os.fstat(fd)
    mode = st.st_mode
    if stat.S_ISREG(mode):
        # A memfd answers F_GET_SEALS; POSIX shm lives in /dev/shm.
        if os.major(st.st_dev) == 0 and (seals(fd) is not None or _link(fd).startswith("/dev/shm/")):
            return "shared-memory"
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "terminal" if os.isatty(fd) else "other"
    link = _link(fd)
    if link.startswith("pidfd:"):
        return "process"
    return {
        "anon_inode:[eventfd]": "event",
        "anon_inode:[pidfd]": "process",
        "anon_inode:[timerfd]": "timer",
    }.get(link, "other")


def access_of(fd):
    """The access `fd` was opened with: one of ACCESSES."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if _O_PATH and flags & _O_PATH:
        return "none"
    mode = flags & os.O_ACCMODE
    if mode == os.O_RDONLY:
        return "read"
    if mode == os.O_WRONLY:
        return "write"
    return "read_write"


def check(fd, kind=None, access=None, what="handle"):
    """Raises WrongKind / WrongAccess unless `fd` is of `kind` (None or
    "any": every kind) with exactly `access` (None: any)."""
    if kind not in (None, "any"):
        actual = kind_of(fd)
        if actual != kind:
            raise WrongKind(what, kind, actual)
    if access is not None:
        actual = access_of(fd)
        if actual != access:
            raise WrongAccess(what, access, actual)


def restrict(fd, access):
    """A new descriptor for the same object with `access` ("read" or
    "write"), opened again through /proc (files, pipes, memfds); the
    kernel enforces the smaller rights."""
    flags = {"read": os.O_RDONLY, "write": os.O_WRONLY, "read_write": os.O_RDWR}[access]
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))


def socket_of(fd):
    """A socket object for an owned socket descriptor."""
    return socket.socket(fileno=fd)
