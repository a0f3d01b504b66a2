//! Processes held by handle: wait for them, signal them, and pull handles
//! out of them.
//!
//! A [`Process`] holds a process handle (a pidfd on Linux), so once it is
//! open every operation names that one process even if its pid is later
//! reused. [`Process::pull_handle`] copies a handle out of another process;
//! [`duplicate`](crate::duplicate) builds the `DuplicateHandle`-shaped
//! operation (source process, target process, access, close-source) on top.

use std::fmt;

use crate::sys;
use crate::{BorrowedHandle, Error, Handle, RawHandle, Result};

/// A process, held by a handle that names it race-free.
///
/// On Linux the handle is a pidfd (Linux ≥ 5.3); platforms without one
/// return [`Error::Unsupported`] from every constructor.
#[derive(Debug)]
pub struct Process {
    handle: Handle,
    pid: u32,
}

impl Process {
    /// Opens a handle to the process with this pid.
    ///
    /// The pid is only a name until the handle exists: if the process
    /// exits and its pid is reused before this call, the handle names the
    /// new process. Opening your own child before reaping it is race-free
    /// (its pid cannot be reused while it is unreaped), as is
    /// [`Channel::peer_credentials`](crate::Channel::peer_credentials)'
    /// `process` handle through [`Process::from_handle`].
    ///
    /// A pid that names no process is [`Error::NoSuchProcess`]; 0, a value
    /// above `i32::MAX` or a thread id is [`Error::InvalidArgument`].
    ///
    /// # References
    /// [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)
    #[doc(alias = "pidfd_open")]
    #[doc(alias = "OpenProcess")]
    pub fn open(pid: u32) -> Result<Process> {
        let handle = Handle::from(sys::process::open(pid)?);
        Ok(Process { handle, pid })
    }

    /// Opens a handle to the calling process.
    pub fn current() -> Result<Process> {
        Process::open(sys::process::current_pid())
    }

    /// Takes a process handle received from elsewhere (a channel, a parent)
    /// and learns its pid from the kernel.
    ///
    /// Anything but a process handle is [`Error::WrongKind`]; a handle to a
    /// process that has already been reaped, or that lives outside this
    /// process's pid namespace, is [`Error::InvalidArgument`] because it no
    /// longer has a pid here. The handle is closed on error.
    ///
    /// # References
    /// [`proc_pid_fdinfo(5)`](https://man7.org/linux/man-pages/man5/proc_pid_fdinfo.5.html) (`Pid:`)
    pub fn from_handle(handle: Handle) -> Result<Process> {
        let pid = sys::process::pid_of(handle.borrow().into())?;
        Ok(Process { handle, pid })
    }

    /// The process id (as seen from this process's pid namespace).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Borrows the process handle (e.g. to send it over a channel).
    pub fn handle(&self) -> BorrowedHandle<'_> {
        self.handle.borrow()
    }

    /// Gives up the `Process` and returns its handle.
    pub fn into_handle(self) -> Handle {
        self.handle
    }

    /// Waits until the process exits.
    ///
    /// For a child of this process the exit status is collected (the child
    /// is reaped, so `std::process::Child::wait` on it will fail
    /// afterwards). For any other process the kernel only tells that it
    /// exited, not how: the result is [`ExitStatus::Unknown`]; the same
    /// holds for a child someone else reaped first. Waiting for the calling
    /// process itself is [`Error::InvalidArgument`].
    ///
    /// # References
    /// [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html) (polling a pidfd),
    /// [`waitid(2)`](https://man7.org/linux/man-pages/man2/waitid.2.html) (`P_PIDFD`)
    #[doc(alias = "waitid")]
    #[doc(alias = "WaitForSingleObject")]
    pub fn wait(&self) -> Result<ExitStatus> {
        // A blocking wait returns only after the exit, so `None` cannot
        // happen; it still becomes an error rather than a panic.
        sys::process::wait(self.handle.borrow().into(), self.pid, true)?
            .ok_or_else(|| Error::os("poll(pidfd)", std::io::ErrorKind::TimedOut.into()))
    }

    /// Returns the exit status if the process has exited, `None` if it is
    /// still running; never blocks. Same rules as [`Process::wait`].
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        sys::process::wait(self.handle.borrow().into(), self.pid, false)
    }

    /// Kills the process (`SIGKILL`).
    ///
    /// # References
    /// [`pidfd_send_signal(2)`](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html)
    #[doc(alias = "TerminateProcess")]
    pub fn kill(&self) -> Result<()> {
        self.signal(sys::process::KILL)
    }

    /// Sends the Unix signal numbered `signal` (e.g. 15 for `SIGTERM`).
    /// Real-time and unknown numbers are [`Error::InvalidArgument`].
    ///
    /// # References
    /// [`pidfd_send_signal(2)`](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html)
    #[doc(alias = "pidfd_send_signal")]
    #[cfg(unix)]
    pub fn signal(&self, signal: i32) -> Result<()> {
        sys::process::signal(self.handle.borrow().into(), self.pid, signal)
    }

    /// Copies the handle numbered `handle` out of this process into the
    /// calling one, and returns the copy, owned and close-on-exec.
    ///
    /// `handle` is a number in *this* process's handle table, not a handle
    /// of the caller, which is why it is a raw number; the target keeps its
    /// own handle open. Both handles share one open file description (file
    /// offset, status flags): reduce rights with [`Handle::restrict`].
    ///
    /// Errors name the cause:
    /// * [`Error::NoSuchProcess`]: the process has exited.
    /// * [`Error::NoSuchHandle`]: no handle with that number is open in it.
    /// * [`Error::NotPermitted`]: the caller lacks ptrace-attach rights over
    ///   the process (`PTRACE_MODE_ATTACH_REALCREDS`: same real uid and gid
    ///   and the target not non-dumpable, or `CAP_SYS_PTRACE`; Yama's
    ///   `kernel.yama.ptrace_scope` may restrict it further, e.g. to
    ///   descendants of the caller).
    /// * [`Error::Unsupported`]: the kernel is older than Linux 5.6, or the
    ///   platform has no pidfd.
    /// * [`Error::InvalidArgument`]: a negative number.
    ///
    /// # References
    /// [`pidfd_getfd(2)`](https://man7.org/linux/man-pages/man2/pidfd_getfd.2.html)
    #[doc(alias = "pidfd_getfd")]
    #[doc(alias = "DuplicateHandle")]
    pub fn pull_handle(&self, handle: RawHandle) -> Result<Handle> {
        sys::process::pull(self.handle.borrow().into(), self.pid, handle).map(Handle::from)
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Process {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.handle)
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitStatus {
    /// It exited with this code (the low 8 bits of what it passed to
    /// `exit`).
    Code(i32),
    /// This signal ended it.
    Signal(i32),
    /// It exited, but it was not a child of this process (or another waiter
    /// reaped it first), so the kernel does not say how.
    Unknown,
}

impl ExitStatus {
    /// True for exit code 0; false for anything else, including
    /// [`ExitStatus::Unknown`].
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The exit code, if it exited normally and the code is known.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(c),
            _ => None,
        }
    }

    /// The signal that ended it, if one did.
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Signal(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
            ExitStatus::Unknown => f.write_str("exited (status unknown: not a child)"),
        }
    }
}
