"""The Python declarations of what handoff/examples/interop_peer/shared.rs
declares in Rust: the interop.Files interface, the typed values, and the
same seeded generator of random values."""

import os
import sys

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
#: For a child interpreter: the installed package if there is one (CI
#: installs it with pip), else this source tree's.
IMPORT_PATH = "import sys\ntry:\n    import handoff\nexcept ImportError:\n    sys.path.insert(0, %r)\n" % SOURCE
try:
    import handoff  # noqa: F401
except ImportError:
    sys.path.insert(0, SOURCE)

from handoff import rpc  # noqa: E402
from handoff.rpc import Context, HandleParam, Interface, Method, NewContext, Out, Value  # noqa: E402
from handoff.typed import (  # noqa: E402
    BOOL, BYTES, CHAR, F64, HANDLE, I8, I16, I64, STR, U8, U16, U32, U64, U128, UNIT,
    Array, Enum, Map, Option, Seq, Struct, Tuple,
)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VECTORS = os.path.join(REPO, "docs", "wire-vectors.json")

FAILURE = Value(STR, "Failure")  # a newtype struct: just its string

FILES = Interface("interop.Files", 1, [
    Method("write_file", [("file", HandleParam("file", "write")), ("text", Value(STR, "String"))],
           Value(U64, "u64"), FAILURE),
    Method("read_pipe", [("pipe", HandleParam("pipe", "read", "optional"))],
           Value(Option(STR), "Option<String>"), FAILURE),
    Method("signal_all", [("events", HandleParam("event", "read_write", "many", 8)), ("add", Value(U64, "u64"))],
           Value(U32, "u32"), FAILURE),
    Method("region", [("text", Value(STR, "String"))], Out("shared-memory", "read"), FAILURE),
    Method("events", [("count", Value(U32, "u32"))], Out("event", "read_write", "many", 8), FAILURE),
    Method("open_session", [("name", Value(STR, "String"))], NewContext(), FAILURE),
    Method("log", [("session", Context()), ("line", Value(STR, "String"))],
           Value(Tuple(STR, U32), "(String, u32)"), FAILURE),
    Method("refuse", [("text", Value(STR, "String"))], Value(U32, "u32"), FAILURE),
])

SHAPE = Enum([("Empty", None), ("Circle", U32), ("Rect", Struct([("w", U16), ("h", U16)]))])
SAMPLE = Struct([
    ("a", U8), ("b", I16), ("c", U32), ("d", I64), ("e", U128), ("f", BOOL), ("g", CHAR),
    ("h", STR), ("i", BYTES), ("j", Option(U32)), ("k", Array(U16, 3)), ("l", Tuple(I8, STR)),
    ("m", Seq(SHAPE)), ("n", Map(STR, U64)), ("o", F64), ("p", UNIT),
])
WITH_HANDLES = Struct([("label", STR), ("file", HANDLE), ("maybe", Option(HANDLE)), ("many", Seq(HANDLE))])
ENVELOPE = Enum([("Sample", SAMPLE), ("Handles", WITH_HANDLES)])

#: The value whose encoding docs/wire-vectors.json holds ("typed_sample").
SAMPLE_VECTOR = {
    "a": 1, "b": -2, "c": 3, "d": -4, "e": 5, "f": True, "g": "é", "h": "hi", "i": b"\xff\x00",
    "j": 7, "k": (1, 2, 3), "l": (-1, "x"),
    "m": [("Empty", None), ("Circle", 9), ("Rect", {"w": 1, "h": 2})],
    "n": {"k": 1}, "o": 1.5, "p": None,
}

M64 = (1 << 64) - 1


class Rng:
    """xorshift64*, as in shared.rs."""

    def __init__(self, seed):
        self.s = seed or 1

    def next(self):
        s = self.s
        s ^= s >> 12
        s ^= (s << 25) & M64
        s ^= s >> 27
        self.s = s
        return (s * 0x2545F4914F6CDD1D) & M64

    def below(self, n):
        return self.next() % n

    def text(self):
        chars = ["a", "z", " ", "é", "ß", "€", "😀", "\0", "\n", "𝄞"]
        return "".join(chars[self.below(len(chars))] for _ in range(self.below(12)))


def signed(v, bits):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def random_sample(rng):
    """Python's own random values (not the Rust sequence): every field's
    range, for the Python-driven round trip."""
    chars = ["x", "\x7f", "\x80", "é", "\u07ff", "\u0800", "€", "\uffff", "\U00010000", "\U0010ffff"]
    shapes = []
    for _ in range(rng.below(4)):
        k = rng.below(3)
        shapes.append(("Empty", None) if k == 0 else ("Circle", rng.next() & 0xFFFFFFFF) if k == 1
                      else ("Rect", {"w": rng.next() & 0xFFFF, "h": rng.next() & 0xFFFF}))
    n = {}
    for _ in range(rng.below(4)):
        key = rng.text()
        n[key] = rng.next()
    return {
        "a": rng.next() & 0xFF, "b": signed(rng.next(), 16), "c": rng.next() & 0xFFFFFFFF,
        "d": signed(rng.next(), 64), "e": (rng.next() << 64) | rng.next(), "f": rng.below(2) == 1,
        "g": chars[rng.below(len(chars))], "h": rng.text(),
        "i": bytes(rng.next() & 0xFF for _ in range(rng.below(40))),
        "j": rng.next() & 0xFFFFFFFF if rng.below(2) else None,
        "k": (rng.next() & 0xFFFF, rng.next() & 0xFFFF, rng.next() & 0xFFFF),
        "l": (signed(rng.next(), 8), rng.text()), "m": shapes, "n": dict(sorted(n.items())),
        "o": signed(rng.next(), 64) / 1024.0, "p": None,
    }


__all__ = ["rpc"]
