"""The exceptions of handoff: one per kind of failure, as on the Rust side.

A peer's bad input gets a class of its own (`Malformed`, `TooLarge`,
`HandlesTruncated`, `WrongKind`, `WrongAccess`, ...), so a caller can tell
an attack or a bug in the peer from an outage (`Disconnected`, `OSError`).
"""


class HandoffError(Exception):
    """Every error this package raises on purpose."""


class Malformed(HandoffError):
    """The peer broke the wire format (docs/wire-format.md)."""


class TooLarge(HandoffError):
    """A message or value over a limit; refused before allocating for it."""

    def __init__(self, what, got, limit):
        super().__init__(f"{what}: {got} exceeds the limit of {limit}")
        self.what, self.got, self.limit = what, got, limit


class HandlesTruncated(HandoffError):
    """The kernel could not deliver every handle of a message (MSG_CTRUNC)."""

    def __init__(self, expected, received):
        super().__init__(
            f"the kernel delivered {received} of a message's {expected} handles"
            " (descriptor table full?)"
        )
        self.expected, self.received = expected, received


class Disconnected(HandoffError):
    """The peer closed its end or exited."""

    def __init__(self, text="the peer closed the channel"):
        super().__init__(text)


class Poisoned(HandoffError):
    """An earlier protocol violation left this channel unusable."""

    def __init__(self):
        super().__init__("the channel broke the wire format earlier and is no longer used")


class WrongKind(HandoffError):
    """A handle is not of the kind that was expected."""

    def __init__(self, what, expected, actual):
        super().__init__(f"{what}: expected a handle of kind {expected}, got {actual}")
        self.what, self.expected, self.actual = what, expected, actual


class WrongAccess(HandoffError):
    """A handle does not have exactly the access that was expected."""

    def __init__(self, what, expected, actual):
        super().__init__(f"{what}: expected {expected} access, got {actual}")
        self.what, self.expected, self.actual = what, expected, actual


class BadStartupData(HandoffError):
    """Startup data that is not sealed, not the size its header says, or not
    handoff's format."""


class BadInheritance(HandoffError):
    """LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES that do not describe this
    process's inherited descriptors."""


class EncodeError(HandoffError):
    """A value does not match the schema it is encoded with."""
