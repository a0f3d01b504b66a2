//! Processes held by handle: wait for them, kill them, and pull handles
//! out of them.
//!
//! A [`Process`] holds a process handle (a pidfd on Linux, a process handle
//! from `OpenProcess` on Windows), so once it is open every operation names
//! that one process even if its pid is later reused. [`Process::pull_handle`] copies a handle out of another process;
//! [`duplicate`](crate::duplicate) builds the `DuplicateHandle`-shaped
//! operation (source process, target process, access, close-source) on top.

use std::fmt;

use crate::sys;
use crate::{BorrowedHandle, Error, Handle, RawHandle, Result};

/// A process, held by a handle that names it race-free.
///
/// On Linux the handle is a pidfd (Linux ≥ 5.3); on Windows a process
/// handle. macOS and the BSDs have no pidfd: there (and on Linux in the
/// portable configuration, `--cfg handoff_unix_portable`) a process is
/// held by pid and a descriptor that watches it for its exit (a kqueue;
/// a `/proc/<pid>` directory on Linux), so waiting, polling and killing
/// work, while [`Process::pull_handle`], [`Process::from_handle`] and
/// moving handles between other processes are [`Error::Unsupported`].
/// A watch opened by pid names the process that had the pid at that moment;
/// signalling it afterwards checks the watch first, which leaves a short
/// window a pidfd does not have (none for an unreaped child of this
/// process, whose pid cannot be reused).
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
    /// On Windows the handle asks for `PROCESS_DUP_HANDLE`,
    /// `PROCESS_QUERY_LIMITED_INFORMATION`, `SYNCHRONIZE` and
    /// `PROCESS_TERMINATE`. If the process's security refuses that, it
    /// settles for `SYNCHRONIZE` and `PROCESS_QUERY_LIMITED_INFORMATION`
    /// (enough to wait), and the operations that need more return
    /// [`Error::NotPermitted`] naming the missing right; if even that is
    /// refused, `open` returns [`Error::NotPermitted`]. A process that has
    /// exited can still be opened while anyone holds a handle to it (as a
    /// Linux zombie can), and [`Process::wait`] then returns at once.
    ///
    /// # References
    /// [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html),
    /// [`OpenProcess`](https://learn.microsoft.com/en-us/windows/win32/api/processthreadsapi/nf-processthreadsapi-openprocess)
    #[doc(alias = "pidfd_open")]
    #[doc(alias = "OpenProcess")]
    pub fn open(pid: u32) -> Result<Process> {
        let handle = Handle::from(sys::process::open(pid)?);
        Ok(Process { handle, pid })
    }

    /// A process from a handle already known to name `pid`.
    pub(crate) fn from_parts(handle: Handle, pid: u32) -> Process {
        Process { handle, pid }
    }

    /// Opens a handle to the calling process.
    pub fn current() -> Result<Process> {
        Process::open(sys::process::current_pid())
    }

    /// Takes a process handle received from elsewhere (a channel, a parent)
    /// and learns its pid from the kernel.
    ///
    /// Anything but a process handle is [`Error::WrongKind`]; on Linux a
    /// handle to a process that has already been reaped, or that lives
    /// outside this process's pid namespace, is [`Error::InvalidArgument`]
    /// because it no longer has a pid here (a Windows process keeps its pid
    /// while any handle to it is open). The operations the handle's rights
    /// do not allow return [`Error::NotPermitted`]. The handle is closed on
    /// error.
    ///
    /// # References
    /// [`proc_pid_fdinfo(5)`](https://man7.org/linux/man-pages/man5/proc_pid_fdinfo.5.html) (`Pid:`),
    /// [`GetProcessId`](https://learn.microsoft.com/en-us/windows/win32/api/processthreadsapi/nf-processthreadsapi-getprocessid)
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
    /// On Linux, for a child of this process the exit status is collected
    /// (the child is reaped, so `std::process::Child::wait` on it will fail
    /// afterwards). For any other process the kernel only tells that it
    /// exited, not how: the result is [`ExitStatus::Unknown`]; the same
    /// holds for a child someone else reaped first.
    ///
    /// On Windows any process's exit code can be read by whoever holds a
    /// handle to it, so the result is always [`ExitStatus::Code`], as
    /// often as it is asked; nothing is reaped.
    ///
    /// Waiting for the calling process itself is [`Error::InvalidArgument`].
    ///
    /// # References
    /// [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html) (polling a pidfd),
    /// [`waitid(2)`](https://man7.org/linux/man-pages/man2/waitid.2.html) (`P_PIDFD`),
    /// [`WaitForSingleObject`](https://learn.microsoft.com/en-us/windows/win32/api/synchapi/nf-synchapi-waitforsingleobject),
    /// [`GetExitCodeProcess`](https://learn.microsoft.com/en-us/windows/win32/api/processthreadsapi/nf-processthreadsapi-getexitcodeprocess)
    #[doc(alias = "waitid")]
    #[doc(alias = "WaitForSingleObject")]
    pub fn wait(&self) -> Result<ExitStatus> {
        // A blocking wait returns only after the exit, so `None` cannot
        // happen; it still becomes an error rather than a panic.
        sys::process::wait(self.handle.borrow().into(), self.pid, true)?
            .ok_or_else(|| Error::os("wait", std::io::ErrorKind::TimedOut.into()))
    }

    /// Returns the exit status if the process has exited, `None` if it is
    /// still running; never blocks. Same rules as [`Process::wait`].
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        sys::process::wait(self.handle.borrow().into(), self.pid, false)
    }

    /// Kills the process: `SIGKILL` on Unix ([`Process::wait`] then says
    /// [`ExitStatus::Signal`]`(9)` for a child); `TerminateProcess` with
    /// exit code 1 on Windows, as std's `Child::kill` does
    /// ([`ExitStatus::Code`]`(1)`).
    ///
    /// A process that has already exited is [`Error::NoSuchProcess`].
    ///
    /// # References
    /// [`pidfd_send_signal(2)`](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html),
    /// [`TerminateProcess`](https://learn.microsoft.com/en-us/windows/win32/api/processthreadsapi/nf-processthreadsapi-terminateprocess)
    #[doc(alias = "TerminateProcess")]
    pub fn kill(&self) -> Result<()> {
        sys::process::kill(self.handle.borrow().into(), self.pid)
    }

    /// Sends the Unix signal numbered `signal` (e.g. 15 for `SIGTERM`).
    /// Real-time and unknown numbers are [`Error::InvalidArgument`].
    /// Unix only: Windows has no signals ([`Process::kill`] works on both).
    ///
    /// # References
    /// [`pidfd_send_signal(2)`](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html)
    #[doc(alias = "pidfd_send_signal")]
    #[cfg(unix)]
    pub fn signal(&self, signal: i32) -> Result<()> {
        sys::process::signal(self.handle.borrow().into(), self.pid, signal)
    }

    /// Copies the handle numbered `handle` out of this process into the
    /// calling one, and returns the copy, owned and close-on-exec
    /// (non-inheritable).
    ///
    /// `handle` is a number in *this* process's handle table, not a handle
    /// of the caller, which is why it is a raw number; the target keeps its
    /// own handle open (to take it away, use [`duplicate`](crate::duplicate)
    /// with `close_source`, on Windows). Both handles name one open file
    /// (offset, status flags): reduce rights with [`Handle::restrict`].
    ///
    /// On Windows a handle value that travelled as a number travels as 32
    /// bits (64-bit Windows keeps handle values within 32 significant bits);
    /// turn it back into a `RawHandle` by sign extension
    /// (`v as i32 as isize as RawHandle`).
    ///
    /// Errors name the cause:
    /// * [`Error::NoSuchProcess`]: the process has exited.
    /// * [`Error::NoSuchHandle`]: no handle with that number is open in it.
    /// * [`Error::NotPermitted`]: on Linux, the caller lacks ptrace-attach
    ///   rights over the process (`PTRACE_MODE_ATTACH_REALCREDS`: same real
    ///   uid and gid and the target not non-dumpable, or `CAP_SYS_PTRACE`;
    ///   Yama's `kernel.yama.ptrace_scope` may restrict it further, e.g. to
    ///   descendants of the caller); on Windows, this handle to the process
    ///   lacks `PROCESS_DUP_HANDLE`.
    /// * [`Error::Unsupported`]: the kernel is older than Linux 5.6, or the
    ///   platform has no pidfd.
    /// * [`Error::InvalidArgument`]: a negative number; on Windows also 0,
    ///   a value that is not a multiple of 4 (the kernel ignores the low
    ///   two bits) or does not fit in 32 bits, and pseudo handles such as
    ///   `-1` (which would name the other process itself).
    ///
    /// # References
    /// [`pidfd_getfd(2)`](https://man7.org/linux/man-pages/man2/pidfd_getfd.2.html),
    /// [`DuplicateHandle`](https://learn.microsoft.com/en-us/windows/win32/api/handleapi/nf-handleapi-duplicatehandle)
    #[doc(alias = "pidfd_getfd")]
    #[doc(alias = "DuplicateHandle")]
    pub fn pull_handle(&self, handle: RawHandle) -> Result<Handle> {
        sys::process::pull(self.handle.borrow().into(), self.pid, handle, false).map(Handle::from)
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Process {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.handle)
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsHandle for Process {
    fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        std::os::windows::io::AsHandle::as_handle(&self.handle)
    }
}

/// How a process ended.
///
/// | | Unix | Windows |
/// |---|---|---|
/// | `Code` | the low 8 bits of what it passed to `exit` | its whole 32-bit exit code, as `i32` (as std's `ExitStatus::code`); `Process::kill` gives 1 |
/// | `Signal` | the signal that ended it | never (no signals) |
/// | `Unknown` | it was not our child, or someone else reaped it | never (any holder of a handle reads the code) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitStatus {
    /// It exited with this code: on Unix the low 8 bits of what it passed
    /// to `exit`, on Windows the whole 32-bit exit code (so an NTSTATUS
    /// such as `0xC0000005` reads as a negative number).
    Code(i32),
    /// This signal ended it (Unix only).
    Signal(i32),
    /// It exited, but it was not a child of this process (or another waiter
    /// reaped it first), so the kernel does not say how (Linux only).
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

/// std's status of a child this process reaped: its code, or on Unix the
/// signal that ended it.
impl From<std::process::ExitStatus> for ExitStatus {
    fn from(s: std::process::ExitStatus) -> ExitStatus {
        if let Some(code) = s.code() {
            return ExitStatus::Code(code);
        }
        #[cfg(unix)]
        if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&s) {
            return ExitStatus::Signal(signal);
        }
        ExitStatus::Unknown
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
