"""The 16-byte fragment header and the split of a message into fragments
(docs/wire-format.md, "Fragment"). Pure functions, no system calls."""

import struct

from .errors import Malformed

VERSION = 1
HEADER_LEN = 16
#: The largest datagram, header included, that a sender emits and a
#: receiver accepts.
MAX_DATAGRAM = 262144
#: The most handles one datagram carries (Linux's SCM_MAX_FD).
MAX_HANDLES_PER_DATAGRAM = 253
FIRST = 0x01
LAST = 0x02

_HEADER = struct.Struct("<BBHIQ")


class Header:
    __slots__ = ("flags", "handles_here", "total_handles", "total_bytes")

    def __init__(self, flags, handles_here, total_handles, total_bytes):
        self.flags = flags
        self.handles_here = handles_here
        self.total_handles = total_handles
        self.total_bytes = total_bytes

    @property
    def first(self):
        return bool(self.flags & FIRST)

    @property
    def last(self):
        return bool(self.flags & LAST)

    def encode(self):
        return _HEADER.pack(VERSION, self.flags, self.handles_here, self.total_handles, self.total_bytes)

    @classmethod
    def decode(cls, datagram):
        """Decodes and checks the header at the start of `datagram`."""
        if len(datagram) < HEADER_LEN:
            raise Malformed(
                f"datagram of {len(datagram)} bytes is shorter than the {HEADER_LEN}-byte header"
            )
        version, flags, here, total_handles, total_bytes = _HEADER.unpack_from(datagram)
        if version != VERSION:
            raise Malformed(f"wire-format version {version} (this side speaks {VERSION})")
        if flags & ~(FIRST | LAST):
            raise Malformed(f"unknown header flags {flags:#04x}")
        if here > total_handles:
            raise Malformed(
                f"fragment carries {here} handles of a message announced with {total_handles}"
            )
        return cls(flags, here, total_handles, total_bytes)

    def __eq__(self, other):
        return isinstance(other, Header) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__
        )

    def __repr__(self):
        return "Header(flags={}, handles_here={}, total_handles={}, total_bytes={})".format(
            self.flags, self.handles_here, self.total_handles, self.total_bytes
        )


def plan(nbytes, nhandles, max_datagram=MAX_DATAGRAM, max_handles=MAX_HANDLES_PER_DATAGRAM):
    """Yields `(header_bytes, byte_range, handle_range)` for each datagram
    of a message of `nbytes` bytes and `nhandles` handles."""
    if nhandles > 0xFFFFFFFF:
        from .errors import TooLarge

        raise TooLarge("message handles", nhandles, 0xFFFFFFFF)
    per = max_datagram - HEADER_LEN
    count = max(-(-nbytes // per), -(-nhandles // max_handles), 1)
    for i in range(count):
        b = range(min(i * per, nbytes), min((i + 1) * per, nbytes))
        h = range(min(i * max_handles, nhandles), min((i + 1) * max_handles, nhandles))
        flags = (FIRST if i == 0 else 0) | (LAST if i + 1 == count else 0)
        yield Header(flags, len(h), nhandles, nbytes).encode(), b, h
