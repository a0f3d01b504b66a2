//! The crate's one error type.
//!
//! Variants are named after what failed. A peer's bad input has variants of
//! its own ([`Error::Malformed`], [`Error::TooLarge`], [`Error::WrongKind`],
//! [`Error::WrongAccess`]) so a caller can tell an attack from an outage.
//!
//! [`Error::kind`] gives a small `Copy` [`ErrorKind`] to match on, and an
//! `Error` converts into `std::io::Error` (nearest `io::ErrorKind`, the OS
//! error code kept where there is one), as rustix's `io::Errno` does.

use std::io;

use crate::{Access, Kind, KindName};

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
    Disconnected {
        /// What the operating system said, when a system call reported it
        /// (`EPIPE`, `ECONNRESET`, `ERROR_BROKEN_PIPE`, …); `None` when the
        /// peer's close was seen as end-of-file.
        #[source]
        source: Option<io::Error>,
    },

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
        expected: KindName,
        /// What the handle is, as read from the handle itself.
        actual: Kind,
    },

    /// A socket is not the kind of socket the receiver expects (a UDP
    /// socket where a TCP listener is named, say): both are named, since
    /// [`KindName`] alone would only say "socket".
    #[error("wrong kind of socket for {name:?}: expected {expected}, got {actual}")]
    WrongSocket {
        /// The name the socket was asked for by (a `LISTEN_FDNAMES` entry).
        name: String,
        /// What the caller asked for ("a listening TCP socket", …).
        expected: &'static str,
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
    /// wrong, or an inherited handle fails its check.
    #[error("bad inherited handles: {problem}")]
    BadInheritance {
        /// The variable at fault (`"LISTEN_FDS"`, …); `None` when the
        /// handle itself failed a check (too small).
        var: Option<&'static str>,
        /// What is wrong, in words.
        problem: String,
    },

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

/// The kinds of [`Error`]: one per variant, and [`ErrorKind::Exhausted`]
/// split out of [`ErrorKind::Os`] because a caller may wait it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A system call failed ([`Error::Io`]) for a reason other than
    /// exhaustion.
    Os,
    /// The system is out of handles or memory for now ([`Error::Io`] with
    /// `EMFILE`, `ENFILE`, `ENOMEM`, `ENOBUFS` or the Windows equivalents):
    /// retrying later may succeed.
    Exhausted,
    /// [`Error::Disconnected`].
    Disconnected,
    /// [`Error::WouldBlock`].
    WouldBlock,
    /// [`Error::Poisoned`].
    Poisoned,
    /// [`Error::Malformed`].
    Malformed,
    /// [`Error::TooLarge`].
    TooLarge,
    /// [`Error::HandlesTruncated`].
    HandlesTruncated,
    /// [`Error::WrongKind`].
    WrongKind,
    /// [`Error::WrongAccess`].
    WrongAccess,
    /// [`Error::Unsupported`].
    Unsupported,
    /// [`Error::Encode`].
    Encode,
    /// [`Error::InvalidArgument`].
    InvalidArgument,
    /// [`Error::NoSuchProcess`].
    NoSuchProcess,
    /// [`Error::NoSuchHandle`].
    NoSuchHandle,
    /// [`Error::NotPermitted`].
    NotPermitted,
    /// [`Error::BadInheritance`].
    BadInheritance,
    /// [`Error::MissingHandle`].
    MissingHandle,
    /// [`Error::AlreadyClaimed`].
    AlreadyClaimed,
    /// [`Error::BadStartupData`].
    BadStartupData,
    /// [`Error::InterfaceMismatch`].
    InterfaceMismatch,
    /// [`Error::Handover`]: a restart's state or connection handover
    /// failed; the old generation keeps what was offered.
    Handover,
}

impl ErrorKind {
    /// The nearest `std::io::ErrorKind`.
    pub fn to_io(self) -> io::ErrorKind {
        use io::ErrorKind as Io;
        match self {
            ErrorKind::Os | ErrorKind::Exhausted | ErrorKind::HandlesTruncated => Io::Other,
            ErrorKind::Disconnected => Io::BrokenPipe,
            ErrorKind::WouldBlock => Io::WouldBlock,
            ErrorKind::Poisoned => Io::Other,
            ErrorKind::Malformed
            | ErrorKind::TooLarge
            | ErrorKind::WrongKind
            | ErrorKind::WrongAccess
            | ErrorKind::BadInheritance
            | ErrorKind::BadStartupData
            | ErrorKind::InterfaceMismatch => Io::InvalidData,
            ErrorKind::Unsupported => Io::Unsupported,
            ErrorKind::Encode | ErrorKind::InvalidArgument | ErrorKind::AlreadyClaimed => {
                Io::InvalidInput
            }
            ErrorKind::NoSuchProcess | ErrorKind::NoSuchHandle | ErrorKind::MissingHandle => {
                Io::NotFound
            }
            ErrorKind::NotPermitted => Io::PermissionDenied,
            ErrorKind::Handover => Io::Other,
        }
    }
}

/// An `Error` as an `io::Error`, for code that speaks `io::Result`.
///
/// An error a system call reported comes out as that call's `io::Error`
/// (kind and OS error code unchanged; the name of the operation is lost,
/// as `rustix::io::Errno` converts); every other error is wrapped whole
/// (`get_ref` gives it back) under the nearest `io::ErrorKind`.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io { source, .. }
            | Error::Disconnected {
                source: Some(source),
            } => source,
            e => io::Error::new(e.kind().to_io(), e),
        }
    }
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
            | io::ErrorKind::NotConnected => Error::Disconnected {
                source: Some(source),
            },
            io::ErrorKind::WouldBlock => Error::WouldBlock,
            _ => Error::Io { op, source },
        }
    }

    /// Wraps an `io::Error` without reinterpreting it.
    pub(crate) fn os(op: &'static str, source: io::Error) -> Self {
        Error::Io { op, source }
    }

    /// The peer has disconnected, seen as end-of-file (no system error).
    pub(crate) fn disconnected() -> Self {
        Error::Disconnected { source: None }
    }

    /// What kind of error this is, to match on without the payload.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { source, .. } if crate::sys::socket::is_exhaustion(source) => {
                ErrorKind::Exhausted
            }
            Error::Io { .. } => ErrorKind::Os,
            Error::Disconnected { .. } => ErrorKind::Disconnected,
            Error::WouldBlock => ErrorKind::WouldBlock,
            Error::Poisoned => ErrorKind::Poisoned,
            Error::Malformed(_) => ErrorKind::Malformed,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::HandlesTruncated { .. } => ErrorKind::HandlesTruncated,
            Error::WrongKind { .. } | Error::WrongSocket { .. } => ErrorKind::WrongKind,
            Error::WrongAccess { .. } => ErrorKind::WrongAccess,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Encode(_) => ErrorKind::Encode,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::NoSuchProcess { .. } => ErrorKind::NoSuchProcess,
            Error::NoSuchHandle { .. } => ErrorKind::NoSuchHandle,
            Error::NotPermitted(_) => ErrorKind::NotPermitted,
            Error::BadInheritance { .. } => ErrorKind::BadInheritance,
            Error::MissingHandle(_) => ErrorKind::MissingHandle,
            Error::AlreadyClaimed(_) => ErrorKind::AlreadyClaimed,
            Error::BadStartupData(_) => ErrorKind::BadStartupData,
            Error::InterfaceMismatch { .. } => ErrorKind::InterfaceMismatch,
            Error::Handover(_) => ErrorKind::Handover,
        }
    }

    /// The OS error code behind this error, if a system call reported one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. }
            | Error::Disconnected {
                source: Some(source),
            } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the error came from the peer's input rather than from this
    /// process or the system: the peer is misbehaving or hostile.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            Error::Malformed(_)
                | Error::TooLarge { .. }
                | Error::WrongKind { .. }
                | Error::WrongSocket { .. }
                | Error::WrongAccess { .. }
                | Error::BadInheritance { .. }
                | Error::BadStartupData(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_os_error_keeps_its_code_through_io_error() {
        let e = Error::os("open", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(e.kind(), ErrorKind::Os);
        let e = Error::os("open", io::Error::from_raw_os_error(2));
        assert_eq!(e.raw_os_error(), Some(2));
        assert_eq!(io::Error::from(e).raw_os_error(), Some(2));
    }

    #[test]
    fn other_errors_travel_whole_under_the_nearest_kind() {
        let io = io::Error::from(Error::Unsupported("no"));
        assert_eq!(io.kind(), io::ErrorKind::Unsupported);
        let inner = io.get_ref().and_then(|e| e.downcast_ref::<Error>());
        assert!(matches!(inner, Some(Error::Unsupported("no"))), "{io:?}");
        let io = io::Error::from(Error::Malformed("x".into()));
        assert_eq!(io.kind(), io::ErrorKind::InvalidData);
        let io = io::Error::from(Error::disconnected());
        assert_eq!(io.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(io.raw_os_error(), None);
    }

    #[test]
    fn a_broken_pipe_is_disconnected_and_keeps_the_system_error() {
        let e = Error::io("send", io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(e.kind(), ErrorKind::Disconnected);
        assert!(std::error::Error::source(&e).is_some());
    }
}
