"""Descriptors inherited under the systemd socket-activation convention:
3, 4, ... in order, `LISTEN_FDS` their count, `LISTEN_PID` this process,
`LISTEN_FDNAMES` their names (docs/wire-format.md, "Inherited handles")."""

import fcntl
import os

from . import kinds
from ._fd import Closing, close_all
from .channel import Channel
from .errors import BadInheritance
from .startup import StartupData

FIRST_FD = 3
MAX_FDS = 1 << 16
STARTUP = "handoff.startup"
CHANNEL = "handoff.channel"
VARS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def _number(var, value):
    if not value or not value.isascii() or not value.isdigit():
        raise BadInheritance(f"{var}={value!r} is not a non-negative decimal number")
    return int(value)


def parse(listen_fds, listen_pid, listen_fdnames, my_pid):
    """The names of descriptors 3, 4, ... from the variables' values, or
    BadInheritance naming what is wrong. Touches no descriptor."""
    if listen_fds is None:
        return []
    count = _number("LISTEN_FDS", listen_fds)
    if count > MAX_FDS:
        raise BadInheritance(f"LISTEN_FDS={count} is more than any process is handed")
    if listen_pid is None:
        raise BadInheritance("LISTEN_FDS is set but LISTEN_PID is not")
    pid = _number("LISTEN_PID", listen_pid)
    if pid != my_pid:
        raise BadInheritance(
            f"LISTEN_PID={pid} names another process (this is {my_pid}); the handles were meant for it"
        )
    names = listen_fdnames.split(":") if listen_fdnames is not None else ["unknown"] * count
    if len(names) != count:
        raise BadInheritance(f"LISTEN_FDNAMES has {len(names)} names for LISTEN_FDS={count}")
    return names


class Inherited(Closing):
    """The descriptors this process inherited, by name, each claimed once."""

    def __init__(self, entries):
        self._entries = entries  # list of [name, fd or None]

    @classmethod
    def from_env(cls, environ=None):
        """Reads the convention, claims the descriptors (making them
        close-on-exec) and removes the variables from `os.environ`, so a
        child of this process does not misread them. A descriptor that is
        not open, or is close-on-exec (so opened here, not inherited), is
        an error; then nothing is claimed."""
        env = os.environ if environ is None else environ
        names = parse(env.get("LISTEN_FDS"), env.get("LISTEN_PID"), env.get("LISTEN_FDNAMES"), os.getpid())
        for var in VARS:
            os.environ.pop(var, None)
        entries = []
        for i, name in enumerate(names):
            fd = FIRST_FD + i
            try:
                flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            except OSError:
                close_all(e[1] for e in entries)
                raise BadInheritance(f"LISTEN_FDS announces descriptor {fd} ({name}), but it is not open") from None
            if flags & fcntl.FD_CLOEXEC:
                close_all(e[1] for e in entries)
                raise BadInheritance(
                    f"LISTEN_FDS announces descriptor {fd} ({name}), but it is close-on-exec:"
                    " opened by this process, not inherited"
                )
            os.set_inheritable(fd, False)
            entries.append([name, fd])
        return cls(entries)

    def names(self):
        return [n for n, _ in self._entries]

    def take(self, name, kind=None, access=None):
        """Claims the descriptor called `name`, checking its kind and exact
        access if given (`kinds.check`); the caller owns it. On a failed
        check it is closed."""
        for entry in self._entries:
            if entry[0] == name:
                fd = entry[1]
                if fd is None:
                    raise BadInheritance(f"{name!r} was already taken")
                entry[1] = None
                try:
                    kinds.check(fd, kind, access, what=f"inherited {name!r}")
                except BaseException:
                    os.close(fd)
                    raise
                return fd
        raise BadInheritance(f"nothing was inherited under the name {name!r}")

    def startup_data(self):
        return StartupData(self.take(STARTUP, "shared-memory"))

    def channel(self, **limits):
        return Channel.from_fd(self.take(CHANNEL, "socket"), **limits)

    def close(self):
        """Closes every descriptor not taken."""
        close_all(e[1] for e in self._entries if e[1] is not None)
        for e in self._entries:
            e[1] = None
