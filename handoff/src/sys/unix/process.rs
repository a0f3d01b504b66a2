//! Process handles on Unix: pidfds on Linux. Other Unix systems have no
//! pidfd (FreeBSD's process descriptors cannot copy descriptors out of a
//! process), so every call there is `Unsupported`. No Unix system can
//! close a descriptor in another process or install one there, so
//! `close_source` on a pull and `push` are `Unsupported` everywhere.
//!
//! These functions return `crate::Error` rather than `io::Error` because
//! the meaning of an errno here depends on the call (`EBADF` from
//! `pidfd_getfd` names the *target's* descriptor, not ours), and only this
//! backend knows which call produced it.

#[cfg(target_os = "linux")]
pub(crate) use linux::*;
#[cfg(not(target_os = "linux"))]
pub(crate) use other::*;

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

    use rustix::event::{PollFd, PollFlags};
    use rustix::io::Errno;
    use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, Signal, WaitId, WaitIdOptions};

    use crate::process::ExitStatus;
    use crate::{Error, Kind, Result};

    const TOO_OLD_OPEN: &str = "pidfd_open needs Linux 5.3 or newer; this kernel is too old";
    const TOO_OLD_GETFD: &str =
        "pidfd_getfd needs Linux 5.6 or newer; this kernel is too old to copy a handle out of another process";
    const TOO_OLD_SIGNAL: &str =
        "pidfd_send_signal needs Linux 5.1 or newer; this kernel is too old";

    /// The pid of the calling process.
    pub(crate) fn current_pid() -> u32 {
        std::process::id()
    }

    /// Opens a pidfd for `pid`, close-on-exec (the kernel always sets it).
    pub(crate) fn open(pid: u32) -> Result<OwnedFd> {
        let raw = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| Error::InvalidArgument(format!("{pid} is not a valid process id")))?;
        rustix::process::pidfd_open(raw, PidfdFlags::empty()).map_err(|e| match e {
            Errno::SRCH => Error::NoSuchProcess { pid },
            // Without PIDFD_THREAD the kernel only accepts a thread-group
            // leader, so a thread id that exists still fails here: EINVAL
            // before Linux 6.9, ENOENT since.
            Errno::INVAL | Errno::NOENT => Error::InvalidArgument(format!(
                "{pid} is not the id of a process (is it a thread id?)"
            )),
            Errno::NOSYS => Error::Unsupported(TOO_OLD_OPEN),
            e => Error::os("pidfd_open", e.into()),
        })
    }

    /// Checks that `fd` is a pidfd and reads the pid it refers to.
    ///
    /// The kernel offers no system call for this; `/proc/self/fdinfo` is
    /// the documented interface (`proc_pid_fdinfo(5)`).
    pub(crate) fn pid_of(fd: BorrowedFd<'_>) -> Result<u32> {
        let kind = super::super::handle::kind(fd).map_err(|e| Error::os("fstat", e))?;
        if kind != Kind::Process {
            return Err(Error::WrongKind {
                expected: crate::KindName::Process,
                actual: kind,
            });
        }
        let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
        let info =
            std::fs::read_to_string(&path).map_err(|e| Error::os("read /proc/self/fdinfo", e))?;
        let pid = info
            .lines()
            .find_map(|l| l.strip_prefix("Pid:"))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or(Error::Unsupported(
                "this kernel does not report a pidfd's pid in /proc/self/fdinfo",
            ))?;
        match pid {
            -1 => Err(Error::InvalidArgument(
                "the process this handle refers to has exited and been reaped, so it no longer has a pid".into(),
            )),
            0 => Err(Error::InvalidArgument(
                "the process this handle refers to is outside this process's pid namespace".into(),
            )),
            p => u32::try_from(p).map_err(|_| Error::InvalidArgument(format!("fdinfo reports pid {p}"))),
        }
    }

    const REMOTE_CLOSE_REFUSED: &str =
        "close_source with a handle of another process: Linux cannot close a descriptor in \
         another process (pidfd_getfd only copies it); ask its owner to close it";
    const PUSH_REFUSED: &str =
        "a process as the target: Linux cannot install a descriptor in another process; send \
         it over a Channel (Target::Channel) instead";
    /// Linux cannot close a descriptor in another process.
    pub(crate) const NO_REMOTE_CLOSE: Option<&str> = Some(REMOTE_CLOSE_REFUSED);
    /// Linux cannot install a descriptor in another process.
    pub(crate) const NO_PUSH: Option<&str> = Some(PUSH_REFUSED);

    /// Copies descriptor `target` out of the process behind `pidfd`.
    /// `close_source` is refused (see [`NO_REMOTE_CLOSE`]).
    pub(crate) fn pull(
        pidfd: BorrowedFd<'_>,
        pid: u32,
        target: RawFd,
        close_source: bool,
    ) -> Result<OwnedFd> {
        if close_source {
            return Err(Error::Unsupported(REMOTE_CLOSE_REFUSED));
        }
        if target < 0 {
            return Err(Error::InvalidArgument(format!(
                "{target} is not a handle number (handle numbers are not negative)"
            )));
        }
        // The result is always close-on-exec: pidfd_getfd sets O_CLOEXEC and
        // takes no flag to clear it.
        rustix::process::pidfd_getfd(pidfd, target, PidfdGetfdFlags::empty()).map_err(|e| match e {
            // A zombie still exists but has no descriptor table, so the
            // kernel says EBADF; "the process has exited" is the truth.
            Errno::BADF if exited(pidfd).unwrap_or(false) => Error::NoSuchProcess { pid },
            Errno::BADF => Error::NoSuchHandle {
                pid,
                handle: target as u64,
            },
            Errno::SRCH => Error::NoSuchProcess { pid },
            Errno::PERM | Errno::ACCESS => Error::NotPermitted(format!(
                "copying handle {target} out of process {pid} needs ptrace-attach rights over it \
                 (PTRACE_MODE_ATTACH_REALCREDS): the same real uid and gid as the target and the \
                 target not marked non-dumpable, or CAP_SYS_PTRACE; Yama's kernel.yama.ptrace_scope \
                 may restrict this further (1: only ancestors, 2: only CAP_SYS_PTRACE, 3: never)"
            )),
            Errno::NOSYS => Error::Unsupported(TOO_OLD_GETFD),
            e => Error::os("pidfd_getfd", e.into()),
        })
    }

    /// True when the process behind `pidfd` has exited (the pidfd is
    /// readable), without waiting.
    pub(crate) fn exited(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
        poll_readable(
            pidfd,
            Some(&rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }),
        )
    }

    fn poll_readable(
        pidfd: BorrowedFd<'_>,
        timeout: Option<&rustix::event::Timespec>,
    ) -> io::Result<bool> {
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        loop {
            match rustix::event::poll(&mut fds, timeout) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits for (`block`) or checks for the exit of the process behind
    /// `pidfd`, reaping it if it is our child.
    ///
    /// Polling the pidfd first works for any process; `waitid(P_PIDFD)` then
    /// collects the status of a child. Both name the process by its pidfd,
    /// so a recycled pid can never be waited for by mistake.
    pub(crate) fn wait(pidfd: BorrowedFd<'_>, pid: u32, block: bool) -> Result<Option<ExitStatus>> {
        if pid == current_pid() {
            return Err(Error::InvalidArgument(
                "a process cannot wait for its own exit".into(),
            ));
        }
        let timeout = (!block).then_some(rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        });
        loop {
            if !poll_readable(pidfd, timeout.as_ref()).map_err(|e| Error::os("poll(pidfd)", e))? {
                return Ok(None);
            }
            let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
            match rustix::process::waitid(WaitId::PidFd(pidfd), options) {
                Ok(Some(status)) => {
                    if let Some(code) = status.exit_status() {
                        return Ok(Some(ExitStatus::Code(code)));
                    }
                    if let Some(signal) = status.terminating_signal() {
                        return Ok(Some(ExitStatus::Signal(signal)));
                    }
                    // Only exits were asked for; anything else is the kernel
                    // reporting something new. Look again.
                }
                // Readable but not yet waitable: the exit is still being
                // torn down. Only a blocking caller should look again.
                Ok(None) if !block => return Ok(None),
                Ok(None) => std::thread::yield_now(),
                // Not our child, or someone else reaped it: the pidfd says it
                // exited, and nothing can say how.
                Err(Errno::CHILD) => return Ok(Some(ExitStatus::Unknown)),
                Err(Errno::INTR) => continue,
                Err(Errno::NOSYS) | Err(Errno::INVAL) => {
                    return Err(Error::Unsupported(
                        "waitid(P_PIDFD) needs Linux 5.4 or newer; this kernel is too old",
                    ))
                }
                Err(e) => return Err(Error::os("waitid(P_PIDFD)", e.into())),
            }
        }
    }

    /// Sends signal number `signo` through the pidfd.
    pub(crate) fn signal(pidfd: BorrowedFd<'_>, pid: u32, signo: i32) -> Result<()> {
        let sig = Signal::from_named_raw(signo).ok_or_else(|| {
            Error::InvalidArgument(format!("{signo} is not a known signal number"))
        })?;
        rustix::process::pidfd_send_signal(pidfd, sig).map_err(|e| match e {
            Errno::SRCH => Error::NoSuchProcess { pid },
            Errno::PERM => Error::NotPermitted(format!(
                "signalling process {pid} needs the same real or effective uid as its real or \
                 saved uid, or CAP_KILL"
            )),
            Errno::NOSYS => Error::Unsupported(TOO_OLD_SIGNAL),
            e => Error::os("pidfd_send_signal", e.into()),
        })
    }

    /// Kills the process with `SIGKILL`.
    pub(crate) fn kill(pidfd: BorrowedFd<'_>, pid: u32) -> Result<()> {
        signal(pidfd, pid, Signal::KILL.as_raw())
    }

    /// Refused: see [`NO_PUSH`].
    pub(crate) fn push(
        _pidfd: BorrowedFd<'_>,
        _pid: u32,
        _handle: BorrowedFd<'_>,
        _inheritable: bool,
    ) -> Result<u32> {
        Err(Error::Unsupported(PUSH_REFUSED))
    }
}

#[cfg(not(target_os = "linux"))]
mod other {
    use std::io;
    use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

    use crate::process::ExitStatus;
    use crate::{Error, Result};

    const NO_PIDFD: &str = "this platform has no pidfd: processes cannot be held by handle, and handles cannot be copied out of another process";

    pub(crate) fn current_pid() -> u32 {
        std::process::id()
    }

    pub(crate) fn open(_pid: u32) -> Result<OwnedFd> {
        Err(Error::Unsupported(NO_PIDFD))
    }

    pub(crate) fn pid_of(_fd: BorrowedFd<'_>) -> Result<u32> {
        Err(Error::Unsupported(NO_PIDFD))
    }

    pub(crate) const NO_REMOTE_CLOSE: Option<&str> = Some(NO_PIDFD);
    pub(crate) const NO_PUSH: Option<&str> = Some(NO_PIDFD);

    pub(crate) fn pull(
        _pidfd: BorrowedFd<'_>,
        _pid: u32,
        _target: RawFd,
        _close_source: bool,
    ) -> Result<OwnedFd> {
        Err(Error::Unsupported(NO_PIDFD))
    }

    pub(crate) fn push(
        _pidfd: BorrowedFd<'_>,
        _pid: u32,
        _handle: BorrowedFd<'_>,
        _inheritable: bool,
    ) -> Result<u32> {
        Err(Error::Unsupported(NO_PIDFD))
    }

    pub(crate) fn kill(_pidfd: BorrowedFd<'_>, _pid: u32) -> Result<()> {
        Err(Error::Unsupported(NO_PIDFD))
    }

    // The Linux form is used to tell an exited target from a bad handle;
    // here there is no pidfd to ask.
    #[allow(dead_code)]
    pub(crate) fn exited(_pidfd: BorrowedFd<'_>) -> io::Result<bool> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn wait(
        _pidfd: BorrowedFd<'_>,
        _pid: u32,
        _block: bool,
    ) -> Result<Option<ExitStatus>> {
        Err(Error::Unsupported(NO_PIDFD))
    }

    pub(crate) fn signal(_pidfd: BorrowedFd<'_>, _pid: u32, _signo: i32) -> Result<()> {
        Err(Error::Unsupported(NO_PIDFD))
    }
}

/// A pidfd for the child `pid` this process has not reaped yet (so the pid
/// cannot have been reused); `None` where the kernel has no pidfds.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn pidfd_for(pid: libc::pid_t) -> Option<std::os::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn pidfd_for(_pid: libc::pid_t) -> Option<std::os::fd::OwnedFd> {
    None
}
