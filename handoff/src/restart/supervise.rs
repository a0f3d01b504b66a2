//! Process-level helpers a supervisor needs beside the notify socket.

use crate::sys;
use crate::{BorrowedHandle, Error, Handle, RawHandle, Result};

/// The socket's identity (its inode number): equal for every descriptor
/// of one socket, in any process, and shown by `/proc/PID/fd/N` as
/// `socket:[INODE]`. Two sockets bound to the same address differ.
pub fn socket_identity(handle: BorrowedHandle<'_>) -> Result<u64> {
    sys::notify::inode(handle.into()).map_err(|e| Error::os("fstat", e))
}

/// Makes this process the reaper of orphaned descendants
/// (`PR_SET_CHILD_SUBREAPER`): a service that double-forks stays this
/// process's child, so it can be found, stopped and reaped.
pub fn become_subreaper() -> Result<()> {
    sys::notify::become_subreaper().map_err(|e| Error::os("prctl(PR_SET_CHILD_SUBREAPER)", e))
}

/// Lets `handle` survive (`keep`) or not the next `exec` of this process
/// under its current number: how a supervisor re-executes itself holding
/// its listeners, store and children's pidfds.
pub fn keep_across_exec(handle: BorrowedHandle<'_>, keep: bool) -> Result<()> {
    sys::notify::keep_across_exec(handle.into(), keep).map_err(|e| Error::os("fcntl(F_SETFD)", e))
}

/// True when the handle's peer has hung up or it is in error (`POLLHUP`,
/// `POLLERR` without waiting): a stored connection whose client left.
/// Listening sockets and files never hang up.
pub fn hung_up(handle: BorrowedHandle<'_>) -> bool {
    sys::notify::hung_up(handle.into())
}

/// Raises this process's soft limit on open descriptors to its hard
/// limit (at most `cap`), as service managers do: the store and the
/// listeners of two generations at once need more than the usual 1024.
pub fn raise_fd_limit(cap: u64) -> Result<u64> {
    sys::notify::raise_fd_limit(cap).map_err(|e| Error::os("setrlimit(RLIMIT_NOFILE)", e))
}

/// Calls `listen` again on a listening socket that someone shut down
/// (which stops it for every holder): the same socket, so every process
/// holding a copy accepts again. Does nothing to a socket still listening.
pub fn relisten(handle: BorrowedHandle<'_>, backlog: i32) -> Result<()> {
    sys::notify::relisten(handle.into(), backlog).map_err(|e| Error::os("listen", e))
}

/// Takes ownership of descriptor `raw`, kept open across this process's
/// own `exec` by [`keep_across_exec`], and makes it close-on-exec again.
/// Refused, as by [`Inherited`](crate::Inherited), when the number is not
/// open or is close-on-exec (then it was not kept: something in this
/// image opened it and owns it).
pub fn claim_kept(raw: RawHandle) -> Result<Handle> {
    sys::handle::claim_inherited(raw)
        .map(Handle::from)
        .map_err(|e| Error::BadInheritance(format!("kept descriptor {raw}: {e}")))
}
