"""handoff: pass file descriptors and bulk data between processes, a
pure-Python peer of the Rust library's wire format (docs/wire-format.md).

Standard library only; Linux (AF_UNIX SOCK_SEQPACKET, SCM_RIGHTS, memfd).
"""

from . import kinds, rpc, typed
from ._fd import count_open
from .channel import Channel, Listener, Message
from .errors import (
    BadInheritance,
    BadStartupData,
    Disconnected,
    EncodeError,
    HandlesTruncated,
    HandoffError,
    Malformed,
    Poisoned,
    TooLarge,
    WrongAccess,
    WrongKind,
)
from .inherited import Inherited
from .startup import StartupData

__all__ = [
    "BadInheritance", "BadStartupData", "Channel", "Disconnected", "EncodeError", "HandlesTruncated",
    "HandoffError", "Inherited", "Listener", "Malformed", "Message", "Poisoned", "StartupData",
    "TooLarge", "WrongAccess", "WrongKind", "count_open", "kinds", "rpc", "typed",
]
