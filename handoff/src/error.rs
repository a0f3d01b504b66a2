//! The crate's one error type.
//!
//! Variants are named after what failed. A peer's bad input has variants of
//! its own ([`Error::Malformed`], [`Error::TooLarge`], [`Error::WrongKind`],
//! [`Error::WrongAccess`]) so a caller can tell an attack from an outage.

use std::io;

use crate::{Access, Kind};

/// Everything that can go wrong in handoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{op} failed")]
    Io {
        /// The operation that failed, e.g. `"sendmsg"`.
        op: &'static str,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// The peer closed its end of the channel or exited.
    #[error("the peer has disconnected")]
    Disconnected,

    /// An operation on a non-blocking channel would have blocked.
    #[error("the operation would block")]
    WouldBlock,

    /// The channel saw a protocol violation earlier (or a send was cut off
    /// half-way) and refuses further use: its byte stream can no longer be
    /// trusted.
    #[error("the channel is poisoned by an earlier protocol violation")]
    Poisoned,

    /// The peer sent bytes that do not follow the wire format. Every handle
    /// that came with them has been closed.
    #[error("malformed message: {0}")]
    Malformed(String),

    /// A message (or a value) is larger than the configured limit. Every
    /// handle that came with it has been closed.
    #[error("{what} {got} exceeds the limit of {limit}")]
    TooLarge {
        /// What was counted: `"message bytes"`, `"message handles"`, …
        what: &'static str,
        /// The size announced or found.
        got: u64,
        /// The limit in force.
        limit: u64,
    },

    /// The kernel could not deliver every handle of a message to this
    /// process (`MSG_CTRUNC`: the descriptor table is full, or the peer sent
    /// more than fit). The handles that did arrive have been closed and the
    /// rest of the message discarded; the channel stays usable.
    #[error("{expected} handles were sent but only {received} could be received (descriptor table full?)")]
    HandlesTruncated {
        /// How many handles the message carried.
        expected: u32,
        /// How many this process actually received before the rest were lost.
        received: u32,
    },

    /// A handle is not of the kind the receiver expects.
    #[error("wrong kind of handle: expected {expected}, got {actual}")]
    WrongKind {
        /// What the caller asked for.
        expected: String,
        /// What the handle is, as read from the handle itself.
        actual: Kind,
    },

    /// A handle lacks rights the receiver needs, or has rights it must not
    /// have.
    #[error("wrong access: expected {expected}, got {actual}")]
    WrongAccess {
        /// What the caller asked for.
        expected: Access,
        /// What the handle grants, as read from the handle itself.
        actual: Access,
    },

    /// The platform cannot do this; the reason says why.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),

    /// A typed value could not be encoded.
    #[error("could not encode the value: {0}")]
    Encode(String),

    /// An argument the caller passed is not acceptable (e.g. a path too long
    /// for a socket address).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// No process has this pid (or it has exited and been reaped).
    #[error("no such process: {pid}")]
    NoSuchProcess {
        /// The pid asked for.
        pid: u32,
    },

    /// The process exists but has no open handle with this number.
    #[error("process {pid} has no open handle {handle}")]
    NoSuchHandle {
        /// The process.
        pid: u32,
        /// The handle number asked for.
        handle: u64,
    },

    /// The operating system refused; the text says which rule applies.
    #[error("not permitted: {0}")]
    NotPermitted(String),

    /// A handle-passing convention in the environment or command line
    /// (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, a handle number) is
    /// wrong. The text names the variable and the problem.
    #[error("bad inherited handles: {0}")]
    BadInheritance(String),

    /// A named handle was asked for but not passed.
    #[error("no handle named {0:?} was passed")]
    MissingHandle(String),

    /// A named handle was claimed a second time.
    #[error("the handle named {0:?} was already claimed")]
    AlreadyClaimed(String),

    /// Startup data failed validation (seals, magic, version, size).
    #[error("bad startup data: {0}")]
    BadStartupData(String),

    /// A restart's state or connection handover failed (see
    /// [`HandoverError`](crate::restart::HandoverError)).
    #[error(transparent)]
    Handover(#[from] crate::restart::HandoverError),

    /// An RPC client and server were built from different interface
    /// definitions (name, version or method signatures). Both are named.
    #[error("interface mismatch: the client speaks {client}, the server speaks {server}")]
    InterfaceMismatch {
        /// The client's interface: name, version and signature hash.
        client: String,
        /// The server's interface: name, version and signature hash.
        server: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an `io::Error` from the system call `op`, turning the errors
    /// that mean "the peer is gone" or "would block" into their own variants.
    /// `InvalidData`, which no system call reports, is how a backend says the
    /// peer broke its transport's own framing (the Windows datagram prefix).
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::InvalidData => Error::Malformed(source.to_string()),
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected => Error::Disconnected,
            io::ErrorKind::WouldBlock => Error::WouldBlock,
            _ => Error::Io { op, source },
        }
    }

    /// Wraps an `io::Error` without reinterpreting it.
    pub(crate) fn os(op: &'static str, source: io::Error) -> Self {
        Error::Io { op, source }
    }

    /// True when the error came from the peer's input rather than from this
    /// process or the system: the peer is misbehaving or hostile.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            Error::Malformed(_)
                | Error::TooLarge { .. }
                | Error::WrongKind { .. }
                | Error::WrongAccess { .. }
                | Error::BadInheritance(_)
                | Error::BadStartupData(_)
        )
    }
}
