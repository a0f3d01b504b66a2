//! What a handle is and what it may do, as read from the handle itself.

use std::fmt;

use crate::KindName;

/// The kind of object a handle refers to.
///
/// Read from the kernel with [`Handle::kind`](crate::Handle::kind), never
/// taken on a peer's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A pipe or FIFO. `end` says which way the handle lets data flow.
    Pipe {
        /// The end this handle is.
        end: PipeEnd,
    },
    /// A socket.
    Socket {
        /// Address family.
        family: SocketFamily,
        /// Socket type.
        ty: SocketType,
        /// Whether the socket is listening for connections.
        listening: bool,
    },
    /// Anonymous shared memory (memfd, POSIX shm, a Windows section).
    SharedMemory {
        /// Current size in bytes.
        size: u64,
        /// Seals in force (always empty where the platform has none).
        seals: Seals,
    },
    /// An event counter (eventfd, a Windows event).
    Event,
    /// A process (pidfd, a Windows process handle).
    Process,
    /// A timer (timerfd, a Windows waitable timer).
    Timer,
    /// A terminal.
    Terminal,
    /// Anything else (character devices, epoll, signalfd, …).
    Other,
}

impl Kind {
    /// The kind's name without its details.
    pub fn name_of(&self) -> KindName {
        match self {
            Kind::File => KindName::File,
            Kind::Directory => KindName::Directory,
            Kind::Pipe { .. } => KindName::Pipe,
            Kind::Socket { .. } => KindName::Socket,
            Kind::SharedMemory { .. } => KindName::SharedMemory,
            Kind::Event => KindName::Event,
            Kind::Process => KindName::Process,
            Kind::Timer => KindName::Timer,
            Kind::Terminal => KindName::Terminal,
            Kind::Other => KindName::Other,
        }
    }

    /// A short stable name: `file`, `directory`, `pipe`, `socket`,
    /// `shared-memory`, `event`, `process`, `timer`, `terminal`, `other`
    /// ([`KindName::as_str`]).
    pub fn name(&self) -> &'static str {
        self.name_of().as_str()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Pipe { end } => write!(f, "pipe ({end} end)"),
            Kind::Socket {
                family,
                ty,
                listening,
            } => {
                write!(f, "socket ({family}, {ty}")?;
                if *listening {
                    f.write_str(", listening")?;
                }
                f.write_str(")")
            }
            Kind::SharedMemory { size, seals } => {
                write!(f, "shared memory ({size} bytes")?;
                if !seals.is_empty() {
                    write!(f, ", sealed {seals}")?;
                }
                f.write_str(")")
            }
            other => f.write_str(other.name()),
        }
    }
}

/// Which end of a pipe a handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PipeEnd {
    /// Data can be read from it.
    Read,
    /// Data can be written to it.
    Write,
    /// Both (a FIFO opened read-write).
    Both,
}

impl fmt::Display for PipeEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PipeEnd::Read => "read",
            PipeEnd::Write => "write",
            PipeEnd::Both => "read-write",
        })
    }
}

/// A socket's address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SocketFamily {
    /// Unix-domain (`AF_UNIX`).
    Unix,
    /// IPv4.
    Inet,
    /// IPv6.
    Inet6,
    /// Netlink and others, by number.
    Other(u32),
}

impl fmt::Display for SocketFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketFamily::Unix => f.write_str("unix"),
            SocketFamily::Inet => f.write_str("inet"),
            SocketFamily::Inet6 => f.write_str("inet6"),
            SocketFamily::Other(n) => write!(f, "family {n}"),
        }
    }
}

/// A socket's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SocketType {
    /// Byte stream (`SOCK_STREAM`).
    Stream,
    /// Datagrams (`SOCK_DGRAM`).
    Datagram,
    /// Sequenced packets (`SOCK_SEQPACKET`).
    SeqPacket,
    /// Others, by number.
    Other(u32),
}

impl fmt::Display for SocketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketType::Stream => f.write_str("stream"),
            SocketType::Datagram => f.write_str("datagram"),
            SocketType::SeqPacket => f.write_str("seqpacket"),
            SocketType::Other(n) => write!(f, "type {n}"),
        }
    }
}

macro_rules! flag_set {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $flag:ident = $bit:expr, $text:literal;)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(u32);

        impl $name {
            $($(#[$fm])* pub const $flag: Self = Self($bit);)*
            /// The empty set.
            pub const NONE: Self = Self(0);

            /// The raw bits.
            pub const fn bits(self) -> u32 { self.0 }
            /// Builds a set from raw bits, dropping unknown ones.
            pub const fn from_bits_truncate(bits: u32) -> Self { Self(bits & (0 $(| $bit)*)) }
            /// True when no flag is set.
            pub const fn is_empty(self) -> bool { self.0 == 0 }
            /// True when every flag of `other` is set in `self`.
            pub const fn contains(self, other: Self) -> bool { self.0 & other.0 == other.0 }
            /// The flags in both.
            pub const fn intersection(self, other: Self) -> Self { Self(self.0 & other.0) }
            /// The flags in either.
            pub const fn union(self, other: Self) -> Self { Self(self.0 | other.0) }
        }

        impl std::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self { self.union(rhs) }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let names: Vec<&str> = [$(($bit, $text)),*]
                    .iter()
                    .filter(|(bit, _)| self.0 & bit != 0)
                    .map(|(_, text)| *text)
                    .collect();
                if names.is_empty() { f.write_str("none") } else { f.write_str(&names.join("+")) }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

flag_set! {
    /// What a handle lets its holder do.
    ///
    /// Read from the handle with [`Handle::access`](crate::Handle::access).
    Access {
        /// Data can be read through it.
        READ = 1, "read";
        /// Data can be written through it.
        WRITE = 2, "write";
    }
}

impl Access {
    /// Read and write.
    pub const READ_WRITE: Self = Self(3);

    /// Parses `r`, `w` or `rw` (as used on command lines).
    pub fn parse_short(s: &str) -> Option<Self> {
        match s {
            "r" => Some(Self::READ),
            "w" => Some(Self::WRITE),
            "rw" | "wr" => Some(Self::READ_WRITE),
            _ => None,
        }
    }

    /// `r`, `w`, `rw` or `-`.
    pub fn short(self) -> &'static str {
        match (self.contains(Self::READ), self.contains(Self::WRITE)) {
            (true, true) => "rw",
            (true, false) => "r",
            (false, true) => "w",
            (false, false) => "-",
        }
    }
}

flag_set! {
    /// Seals on a shared-memory object (`F_SEAL_*` on Linux).
    Seals {
        /// No further seals can be added.
        SEAL = 1, "seal";
        /// The object cannot shrink.
        SHRINK = 2, "shrink";
        /// The object cannot grow.
        GROW = 4, "grow";
        /// The contents cannot be written.
        WRITE = 8, "write";
        /// No new writable mappings (existing ones stay).
        FUTURE_WRITE = 16, "future-write";
    }
}

impl Seals {
    /// The seals that make shared memory immutable: write, grow, shrink,
    /// and no further changes to the seals.
    pub const IMMUTABLE: Self = Self(1 | 2 | 4 | 8);
}
