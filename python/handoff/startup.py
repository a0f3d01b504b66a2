"""Startup data: a sealed memfd with a 64-byte header, then the payload
(docs/wire-format.md, "Startup data")."""

import fcntl
import mmap
import os
import struct

from . import kinds, typed
from ._fd import Closing
from .errors import BadStartupData, WrongKind

MAGIC = b"HNDOFFSD"
VERSION = 1
HEADER_LEN = 64
FORMAT_BYTES = 0
FORMAT_VALUE = 1
NAME = "handoff.startup"

F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)
F_SEAL_SEAL = getattr(fcntl, "F_SEAL_SEAL", 1)
F_SEAL_SHRINK = getattr(fcntl, "F_SEAL_SHRINK", 2)
F_SEAL_GROW = getattr(fcntl, "F_SEAL_GROW", 4)
F_SEAL_WRITE = getattr(fcntl, "F_SEAL_WRITE", 8)
REQUIRED_SEALS = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK

_HEADER = struct.Struct("<8sIIQQ32s")


def header(payload_len, fmt=FORMAT_BYTES):
    return _HEADER.pack(MAGIC, VERSION, fmt, payload_len, HEADER_LEN, bytes(32))


def create(payload, fmt=FORMAT_BYTES):
    """A sealed, read-only memfd holding `payload`; returns the descriptor
    (close-on-exec, owned by the caller)."""
    payload = bytes(payload)
    fd = os.memfd_create(NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        data = header(len(payload), fmt) + payload
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        fcntl.fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS | F_SEAL_SEAL)
        # Read-only for everyone who receives it: a descriptor opened
        # again with O_RDONLY.
        ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)
    return ro


def create_value(schema, value):
    """Startup data holding a typed value (no handles)."""
    data, fds = typed.encode(schema, value)
    if fds:
        raise typed.EncodeError("startup data cannot carry handles")
    return create(data, FORMAT_VALUE)


class StartupData(Closing):
    """Validated, read-only mapped startup data. `payload` is a memoryview
    of the mapping; `close()` unmaps it and closes the descriptor."""

    def __init__(self, fd):
        """Takes ownership of `fd`; on any error it is closed."""
        self.fd = fd
        self._map = None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self):
        fd = self.fd
        kind = kinds.kind_of(fd)
        if kind != "shared-memory":
            raise WrongKind("startup data", "shared-memory", kind)
        try:
            seals = fcntl.fcntl(fd, F_GET_SEALS)
        except OSError:
            seals = 0  # POSIX shared memory: it cannot be sealed
        missing = REQUIRED_SEALS & ~seals
        if missing:
            names = [n for bit, n in ((F_SEAL_WRITE, "F_SEAL_WRITE"), (F_SEAL_GROW, "F_SEAL_GROW"),
                                      (F_SEAL_SHRINK, "F_SEAL_SHRINK")) if missing & bit]
            raise BadStartupData("not sealed: " + ", ".join(names) + " missing")
        size = os.fstat(fd).st_size
        if size < HEADER_LEN:
            raise BadStartupData(f"{size} bytes is shorter than the {HEADER_LEN}-byte header")
        h = os.pread(fd, HEADER_LEN, 0)
        if len(h) != HEADER_LEN:
            raise BadStartupData("short read of the header")
        magic, version, fmt, length, offset, reserved = _HEADER.unpack(h)
        if magic != MAGIC:
            raise BadStartupData("wrong magic: not handoff startup data")
        if version != VERSION:
            raise BadStartupData(f"header version {version}, this side reads {VERSION}")
        if fmt not in (FORMAT_BYTES, FORMAT_VALUE):
            raise BadStartupData(f"unknown payload format {fmt}")
        if offset != HEADER_LEN:
            raise BadStartupData(f"payload_offset {offset}, version {VERSION} puts the payload at {HEADER_LEN}")
        if any(reserved):
            raise BadStartupData("header bytes reserved in version 1 (32 to 63) are not zero")
        if offset + length != size:
            raise BadStartupData(
                f"header says {length} payload bytes at offset {offset}, but the object holds {size}"
            )
        self.format = fmt
        self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        self.payload = memoryview(self._map)[HEADER_LEN:]

    def bytes(self):
        return bytes(self.payload)

    def value(self, schema):
        if self.format != FORMAT_VALUE:
            raise BadStartupData("the payload is opaque bytes, not a typed value")
        return typed.decode(schema, self.payload)

    def close(self):
        if self._map is not None:
            self.payload.release()
            self._map.close()
            self._map = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
