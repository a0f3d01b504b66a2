"""Typed payloads: values of serde's data model encoded as bincode 2 with
fixed-width little-endian integers, handles inside as `u32` indices into the
message's handle list (docs/wire-format.md, "Typed payloads").

Python has no Rust types to read, so a value is encoded and decoded with a
*schema* built from the objects below, mirroring the Rust declaration:

    Sample = Struct([("id", U32), ("name", STR), ("file", HANDLE)])
    data, fds = encode(Sample, {"id": 1, "name": "x", "file": fd})
    value = decode(Sample, msg.bytes, msg.take())

Python values: ints, bool, float, str (also for `char`: one character),
bytes (for `serde_bytes` and `Vec<u8>`), None / the value for `Option`,
list for sequences, tuple for tuples and fixed arrays, dict for maps and
structs, `(variant_name, value)` for enums (value None for a unit variant),
int descriptors for handles (decode returns owned descriptors).
"""

import struct

from ._fd import close_all
from .errors import EncodeError, Malformed


class Schema:
    #: The fewest bytes a value of this schema takes on the wire.
    min_size = 0

    def enc(self, out, value, fds):
        raise NotImplementedError

    def dec(self, r):
        raise NotImplementedError


class Int(Schema):
    def __init__(self, size, signed):
        self.size, self.signed, self.min_size = size, signed, size
        bits = size * 8
        self.lo = -(1 << (bits - 1)) if signed else 0
        self.hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1

    def enc(self, out, value, fds):
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise EncodeError(f"{value!r} is not a {'i' if self.signed else 'u'}{self.size * 8}")
        out += value.to_bytes(self.size, "little", signed=self.signed)

    def dec(self, r):
        return int.from_bytes(r.take(self.size), "little", signed=self.signed)


U8, U16, U32, U64, U128 = (Int(n, False) for n in (1, 2, 4, 8, 16))
I8, I16, I32, I64, I128 = (Int(n, True) for n in (1, 2, 4, 8, 16))


class Float(Schema):
    def __init__(self, fmt):
        self.fmt = struct.Struct(fmt)
        self.min_size = self.fmt.size

    def enc(self, out, value, fds):
        out += self.fmt.pack(value)

    def dec(self, r):
        return self.fmt.unpack(r.take(self.fmt.size))[0]


F32, F64 = Float("<f"), Float("<d")


class _Bool(Schema):
    min_size = 1

    def enc(self, out, value, fds):
        if not isinstance(value, bool):
            raise EncodeError(f"{value!r} is not a bool")
        out.append(1 if value else 0)

    def dec(self, r):
        b = r.take(1)[0]
        if b > 1:
            raise Malformed(f"bool byte {b}")
        return b == 1


BOOL = _Bool()


class _Unit(Schema):
    """`()`, a unit struct: nothing on the wire."""

    def enc(self, out, value, fds):
        pass

    def dec(self, r):
        return None


UNIT = _Unit()


class _Char(Schema):
    """`char`: its UTF-8 bytes, 1 to 4, with no length prefix; the first
    byte says how many follow."""

    min_size = 1

    def enc(self, out, value, fds):
        if not isinstance(value, str) or len(value) != 1 or 0xD800 <= ord(value) <= 0xDFFF:
            raise EncodeError(f"{value!r} is not one character")
        out += value.encode("utf-8")

    def dec(self, r):
        first = r.take(1)[0]
        n = 1 if first < 0x80 else 2 if first >> 5 == 0b110 else 3 if first >> 4 == 0b1110 else 4 if first >> 3 == 0b11110 else 0
        if n == 0:
            raise Malformed(f"char starts with byte {first:#04x}")
        raw = bytes([first]) + r.take(n - 1)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed(f"char bytes {raw.hex()} are not UTF-8") from None


CHAR = _Char()


class _Str(Schema):
    min_size = 8

    def enc(self, out, value, fds):
        if not isinstance(value, str):
            raise EncodeError(f"{value!r} is not a str")
        b = value.encode("utf-8")
        out += len(b).to_bytes(8, "little")
        out += b

    def dec(self, r):
        raw = r.take(r.length(1))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("string is not UTF-8") from None


STR = _Str()


class _Bytes(Schema):
    """`Vec<u8>`, `serde_bytes`: a u64 length and the bytes."""

    min_size = 8

    def enc(self, out, value, fds):
        b = bytes(value)
        out += len(b).to_bytes(8, "little")
        out += b

    def dec(self, r):
        return r.take(r.length(1))


BYTES = _Bytes()


class _Handle(Schema):
    """A handle: a `u32` index into the message's handle list."""

    min_size = 4

    def enc(self, out, value, fds):
        fd = value if isinstance(value, int) else value.fileno()
        out += len(fds).to_bytes(4, "little")
        fds.append(fd)

    def dec(self, r):
        return r.claim(int.from_bytes(r.take(4), "little"))


HANDLE = _Handle()


class Option(Schema):
    min_size = 1

    def __init__(self, inner):
        self.inner = inner

    def enc(self, out, value, fds):
        if value is None:
            out.append(0)
        else:
            out.append(1)
            self.inner.enc(out, value, fds)

    def dec(self, r):
        tag = r.take(1)[0]
        if tag == 0:
            return None
        if tag != 1:
            raise Malformed(f"Option tag {tag}")
        return self.inner.dec(r)


class Seq(Schema):
    """`Vec<T>` and other sequences: a u64 count, then the elements."""

    min_size = 8

    def __init__(self, inner):
        self.inner = inner

    def enc(self, out, value, fds):
        value = list(value)
        out += len(value).to_bytes(8, "little")
        for v in value:
            self.inner.enc(out, v, fds)

    def dec(self, r):
        return [self.inner.dec(r) for _ in range(r.length(self.inner.min_size))]


class Map(Schema):
    """Maps: a u64 count, then key and value of each entry in order."""

    min_size = 8

    def __init__(self, key, value):
        self.key, self.value = key, value

    def enc(self, out, value, fds):
        out += len(value).to_bytes(8, "little")
        for k, v in value.items():
            self.key.enc(out, k, fds)
            self.value.enc(out, v, fds)

    def dec(self, r):
        n = r.length(self.key.min_size + self.value.min_size)
        out = {}
        for _ in range(n):
            k = self.key.dec(r)
            out[k] = self.value.dec(r)
        return out


class Tuple(Schema):
    """Tuples, tuple structs and fixed arrays `[T; N]`: the fields in order,
    no length prefix."""

    def __init__(self, *items):
        self.items = items
        self.min_size = sum(i.min_size for i in items)

    def enc(self, out, value, fds):
        value = tuple(value)
        if len(value) != len(self.items):
            raise EncodeError(f"{len(value)} items for a tuple of {len(self.items)}")
        for s, v in zip(self.items, value):
            s.enc(out, v, fds)

    def dec(self, r):
        return tuple(s.dec(r) for s in self.items)


def Array(inner, n):
    """`[T; N]`: N elements, no length prefix."""
    return Tuple(*([inner] * n))


class Struct(Schema):
    """A struct with named fields: the fields in declaration order."""

    def __init__(self, fields):
        self.fields = list(fields)
        self.min_size = sum(s.min_size for _, s in self.fields)

    def enc(self, out, value, fds):
        for name, s in self.fields:
            if name not in value:
                raise EncodeError(f"missing field {name!r}")
            s.enc(out, value[name], fds)

    def dec(self, r):
        return {name: s.dec(r) for name, s in self.fields}


class Enum(Schema):
    """An enum: a u32 variant index, then the variant's fields. Variants
    are `(name, schema)` with schema None for a unit variant."""

    min_size = 4

    def __init__(self, variants):
        self.variants = list(variants)
        self.index = {name: i for i, (name, _) in enumerate(self.variants)}

    def enc(self, out, value, fds):
        name, inner = value
        if name not in self.index:
            raise EncodeError(f"unknown variant {name!r}")
        i = self.index[name]
        out += i.to_bytes(4, "little")
        schema = self.variants[i][1]
        if schema is not None:
            schema.enc(out, inner, fds)

    def dec(self, r):
        i = int.from_bytes(r.take(4), "little")
        if i >= len(self.variants):
            raise Malformed(f"enum variant {i} of {len(self.variants)}")
        name, schema = self.variants[i]
        return (name, None if schema is None else schema.dec(r))


def Result(ok, err):
    """`Result<T, E>`: variant 0 Ok, 1 Err."""
    return Enum([("Ok", ok), ("Err", err)])


class Reader:
    """Reads one payload; tracks which handles were claimed."""

    def __init__(self, data, fds):
        self.data = memoryview(data)
        self.pos = 0
        self.fds = list(fds)
        self.claimed = [False] * len(self.fds)

    def take(self, n):
        if n > len(self.data) - self.pos:
            raise Malformed(f"value needs {n} more bytes, {len(self.data) - self.pos} left")
        b = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return b

    def length(self, element_min):
        """A u64 count, checked against what is left before anything is
        allocated for it: each element takes at least `element_min` bytes
        (elements of no size may not outnumber the bytes left either)."""
        n = int.from_bytes(self.take(8), "little")
        left = len(self.data) - self.pos
        if n * max(element_min, 1) > left and not (element_min == 0 and n <= left):
            raise Malformed(f"length {n} is more than the {left} bytes left can hold")
        return n

    def claim(self, index):
        if index >= len(self.fds):
            raise Malformed(f"handle index {index} out of range (the message has {len(self.fds)})")
        if self.claimed[index]:
            raise Malformed(f"handle index {index} used twice")
        self.claimed[index] = True
        return self.fds[index]


def encode(schema, value):
    """Encodes `value`; returns `(bytes, fds)` where fds are the borrowed
    descriptors of its handles, in index order."""
    out = bytearray()
    fds = []
    schema.enc(out, value, fds)
    if len(fds) > 0xFFFFFFFF:
        raise EncodeError("too many handles")
    return bytes(out), fds


def decode(schema, data, fds=()):
    """Decodes a whole payload, taking ownership of `fds`. Every index must
    be used exactly once, every handle referenced, and the value must end
    exactly at the end of `data`; otherwise Malformed is raised and every
    descriptor closed."""
    r = Reader(data, fds)
    try:
        value = schema.dec(r)
        if r.pos != len(r.data):
            raise Malformed(f"{len(r.data) - r.pos} bytes after the value")
        unclaimed = [i for i, c in enumerate(r.claimed) if not c]
        if unclaimed:
            raise Malformed(f"handle index {unclaimed[0]} is never referenced")
    except Malformed:
        close_all(r.fds)
        raise
    except Exception as e:  # a float that is not a float, and the like
        close_all(r.fds)
        raise Malformed(str(e)) from None
    return value
