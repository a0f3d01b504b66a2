//! What a child process does for one benchmark, and the small protocol
//! every contender speaks on top of its transport.
//!
//! The child is always the passive side: it receives, closes what it got,
//! and answers. It learns its job from one command-line word so the same
//! binary can serve every contender.

use std::fmt;
use std::str::FromStr;

/// The first payload byte of a handle-carrying message that ends a batch:
/// the child answers it with an acknowledgement.
pub const LAST: u8 = 0;
/// The first payload byte of every other message.
pub const MORE: u8 = 1;

/// A child's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Receive messages with handles, close every handle, and acknowledge
    /// each message whose first byte is [`LAST`].
    Fds,
    /// Answer every one-byte message with one byte, plus one handle of the
    /// child's own when `with_fd` (and then each message carries one too).
    Echo { with_fd: bool },
    /// Receive `total` bytes in messages of at most `chunk` bytes, then
    /// acknowledge; again and again.
    Bulk { total: u64, chunk: usize },
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Fds => f.write_str("fds"),
            Workload::Echo { with_fd: false } => f.write_str("echo"),
            Workload::Echo { with_fd: true } => f.write_str("echo-fd"),
            Workload::Bulk { total, chunk } => write!(f, "bulk:{total}:{chunk}"),
        }
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let work = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("fds"), None, None, None) => Workload::Fds,
            (Some("echo"), None, None, None) => Workload::Echo { with_fd: false },
            (Some("echo-fd"), None, None, None) => Workload::Echo { with_fd: true },
            (Some("bulk"), Some(total), Some(chunk), None) => Workload::Bulk {
                total: total.parse().map_err(|e| format!("bulk total: {e}"))?,
                chunk: chunk.parse().map_err(|e| format!("bulk chunk: {e}"))?,
            },
            _ => return Err(format!("unknown workload {s:?}")),
        };
        Ok(work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_command_line() {
        for w in [
            Workload::Fds,
            Workload::Echo { with_fd: false },
            Workload::Echo { with_fd: true },
            Workload::Bulk {
                total: 1 << 30,
                chunk: 262_128,
            },
        ] {
            assert_eq!(w.to_string().parse::<Workload>(), Ok(w));
        }
        assert!("bulk:1".parse::<Workload>().is_err());
        assert!("fds:2".parse::<Workload>().is_err());
    }
}
