//! The handles the benchmarks send: duplicates of one `/dev/null`.
//!
//! They are opened once per process and live as long as it does, so every
//! contender can prepare its borrowed handles once, outside the timed loops,
//! and the loops measure sending rather than opening or duplicating.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

/// The most handles one benchmark message carries (Linux's `SCM_MAX_FD`,
/// the most one `sendmsg` accepts).
pub const MAX: usize = 253;

static POOL: OnceLock<Vec<OwnedFd>> = OnceLock::new();

/// [`MAX`] distinct descriptors, all for the same `/dev/null`, close-on-exec.
pub fn null_fds() -> io::Result<&'static [OwnedFd]> {
    if let Some(pool) = POOL.get() {
        return Ok(pool);
    }
    let file = File::open("/dev/null")?;
    let mut pool = Vec::with_capacity(MAX);
    for _ in 1..MAX {
        pool.push(file.as_fd().try_clone_to_owned()?);
    }
    pool.push(OwnedFd::from(file));
    Ok(POOL.get_or_init(|| pool))
}

/// The pool, borrowed for the life of the process.
pub fn borrowed() -> io::Result<Vec<BorrowedFd<'static>>> {
    Ok(null_fds()?.iter().map(AsFd::as_fd).collect())
}
