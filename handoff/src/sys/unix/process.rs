//! Process handles on Unix: pidfds on Linux. The portable configuration
//! (macOS and the BSDs, which have no pidfd, and Linux when forced; FreeBSD's
//! process descriptors cannot copy descriptors out of a process either)
//! holds a process by pid and a descriptor that watches it for its exit
//! (`watch`): waiting, polling and killing work, pulling a handle out of
//! another process is `Unsupported`. No Unix system can close a descriptor
//! in another process or install one there, so `close_source` on a pull and
//! `push` are `Unsupported` everywhere.
//!
//! These functions return `crate::Error` rather than `io::Error` because
//! the meaning of an errno here depends on the call (`EBADF` from
//! `pidfd_getfd` names the *target's* descriptor, not ours), and only this
//! backend knows which call produced it.

#[cfg(not(handoff_portable))]
pub(crate) use linux::*;
#[cfg(handoff_portable)]
pub(crate) use portable::*;

use std::os::fd::BorrowedFd;

use rustix::process::{Pid, Signal};

use crate::{Error, Result};

const PUSH_REFUSED: &str =
    "a process as the target: Unix cannot install a descriptor in another process; send \
     it over a Channel (Target::Channel) instead";
/// Unix cannot install a descriptor in another process.
pub(crate) const NO_PUSH: Option<&str> = Some(PUSH_REFUSED);

/// The pid of the calling process.
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}

/// `pid` as the kernel's type: refused where no process can have it.
fn pid_arg(pid: u32) -> Result<Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| Error::InvalidArgument(format!("{pid} is not a valid process id")))
}

/// Signal number `signo`, refused unless it names a signal.
fn signal_arg(signo: i32) -> Result<Signal> {
    Signal::from_named_raw(signo)
        .ok_or_else(|| Error::InvalidArgument(format!("{signo} is not a known signal number")))
}

/// Kills the process with `SIGKILL`.
pub(crate) fn kill(process: BorrowedFd<'_>, pid: u32) -> Result<()> {
    signal(process, pid, Signal::KILL.as_raw())
}

/// Refused: see [`NO_PUSH`].
pub(crate) fn push(
    _process: BorrowedFd<'_>,
    _pid: u32,
    _handle: BorrowedFd<'_>,
    _inheritable: bool,
) -> Result<u32> {
    Err(Error::Unsupported(PUSH_REFUSED))
}

#[cfg(not(handoff_portable))]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

    use rustix::event::{PollFd, PollFlags};
    use rustix::io::Errno;
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, WaitId, WaitIdOptions};

    use super::{current_pid, pid_arg, signal_arg};
    use crate::process::ExitStatus;
    use crate::{Error, Kind, Result};

    const TOO_OLD_OPEN: &str = "pidfd_open needs Linux 5.3 or newer; this kernel is too old";
    const TOO_OLD_GETFD: &str =
        "pidfd_getfd needs Linux 5.6 or newer; this kernel is too old to copy a handle out of another process";
    const TOO_OLD_SIGNAL: &str =
        "pidfd_send_signal needs Linux 5.1 or newer; this kernel is too old";

    /// Opens a pidfd for `pid`, close-on-exec (the kernel always sets it).
    pub(crate) fn open(pid: u32) -> Result<OwnedFd> {
        let raw = pid_arg(pid)?;
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
    /// Linux cannot close a descriptor in another process.
    pub(crate) const NO_REMOTE_CLOSE: Option<&str> = Some(REMOTE_CLOSE_REFUSED);

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
        let sig = signal_arg(signo)?;
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
}

#[cfg(handoff_portable)]
mod portable {
    use std::io;
    use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

    use rustix::io::Errno;
    use rustix::process::{Pid, WaitOptions};

    use super::{current_pid, pid_arg, signal_arg};
    use crate::process::ExitStatus;
    use crate::{Error, Result};

    const NO_PULL: &str = "the portable Unix configuration holds processes by pid (no pidfd): \
         a handle cannot be copied out of another process";
    const NO_PID_OF: &str = "the portable Unix configuration holds processes by pid: a handle \
         received from elsewhere cannot be turned back into a process";
    /// Nothing can be copied out of another process here, let alone closed.
    pub(crate) const NO_REMOTE_CLOSE: Option<&str> = Some(NO_PULL);

    /// A descriptor that watches process `pid` for its exit (see
    /// `watch`): from then on the exit of that process, not of a later one
    /// with the same pid, is what it reports.
    pub(crate) fn open(pid: u32) -> Result<OwnedFd> {
        let raw = pid_arg(pid)?;
        super::watch::watch(raw, pid)
    }

    /// Refused: neither a kqueue nor a procfs directory can be asked for
    /// the pid it watches in a way that proves it.
    pub(crate) fn pid_of(_fd: BorrowedFd<'_>) -> Result<u32> {
        Err(Error::Unsupported(NO_PID_OF))
    }

    /// Refused: see [`NO_REMOTE_CLOSE`].
    pub(crate) fn pull(
        _fd: BorrowedFd<'_>,
        _pid: u32,
        _target: RawFd,
        _close_source: bool,
    ) -> Result<OwnedFd> {
        Err(Error::Unsupported(NO_PULL))
    }

    /// True when the watched process has exited, without waiting.
    pub(crate) fn exited(fd: BorrowedFd<'_>) -> io::Result<bool> {
        super::watch::has_exited(fd)
    }

    /// Waits for (`block`) or checks for the exit of the watched process,
    /// reaping it if it is our child.
    ///
    /// The watch says whether it exited; `waitpid` by pid then collects the
    /// status of a child, whose pid cannot be reused before it is reaped.
    /// While it runs, a blocking wait for a child is a blocking `waitpid`;
    /// for any other process, the watch's own wait. (One race remains that
    /// a pidfd does not have: a process that is not our child exits, is
    /// reaped by its parent, and its pid goes to a new child of ours, all
    /// between the watch saying "running" and the `waitpid`.)
    pub(crate) fn wait(fd: BorrowedFd<'_>, pid: u32, block: bool) -> Result<Option<ExitStatus>> {
        if pid == current_pid() {
            return Err(Error::InvalidArgument(
                "a process cannot wait for its own exit".into(),
            ));
        }
        let raw = pid_arg(pid)?;
        loop {
            if exited(fd).map_err(|e| Error::os("watch process exit", e))? {
                // A status if it is our zombie; nothing can say how any
                // other process ended.
                return Ok(Some(reap(raw, false)?.unwrap_or(ExitStatus::Unknown)));
            }
            if !block {
                return Ok(None);
            }
            match reap(raw, true) {
                Ok(Some(status)) => return Ok(Some(status)),
                // Not our child: wait on the watch, then look again.
                Ok(None) => {
                    super::watch::wait_exit(fd).map_err(|e| Error::os("watch process exit", e))?
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `waitpid` for `pid`: its status if it is our child and has exited
    /// (waiting for that with `block`), `None` if it is not our child or,
    /// without `block`, still runs.
    fn reap(pid: Pid, block: bool) -> Result<Option<ExitStatus>> {
        let options = if block {
            WaitOptions::empty()
        } else {
            WaitOptions::NOHANG
        };
        loop {
            match rustix::process::waitpid(Some(pid), options) {
                Ok(Some((_, status))) => {
                    if let Some(code) = status.exit_status() {
                        return Ok(Some(ExitStatus::Code(code)));
                    }
                    if let Some(signal) = status.terminating_signal() {
                        return Ok(Some(ExitStatus::Signal(signal)));
                    }
                    // Stopped or continued: not asked for; look again.
                    if !block {
                        return Ok(None);
                    }
                }
                Ok(None) => return Ok(None),
                Err(Errno::CHILD) => return Ok(None),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Error::os("waitpid", e.into())),
            }
        }
    }

    /// Sends signal number `signo` to the watched process, unless the
    /// watch says it has exited (its pid may be someone else's by then; for
    /// our own unreaped child it cannot be).
    pub(crate) fn signal(fd: BorrowedFd<'_>, pid: u32, signo: i32) -> Result<()> {
        let sig = signal_arg(signo)?;
        let raw = pid_arg(pid)?;
        if exited(fd).map_err(|e| Error::os("watch process exit", e))? {
            return Err(Error::NoSuchProcess { pid });
        }
        rustix::process::kill_process(raw, sig).map_err(|e| match e {
            Errno::SRCH => Error::NoSuchProcess { pid },
            Errno::PERM => Error::NotPermitted(format!(
                "signalling process {pid} needs the same real or effective uid as its real or \
                 saved uid, or root"
            )),
            e => Error::os("kill", e.into()),
        })
    }
}

/// Watching one process for its exit without a pidfd: a kqueue with an
/// `EVFILT_PROC`/`NOTE_EXIT` filter on macOS and the BSDs (readable once
/// the process has exited; only polled, never drained, so it says so
/// every time it is asked), a `/proc/<pid>` directory on Linux when the
/// portable configuration is forced there (the directory stays bound to
/// that process: once it is reaped, files opened through it fail with
/// `ESRCH` even if the pid is reused; there is nothing to wait on, so a
/// wait polls).
#[cfg(all(handoff_portable, not(any(target_os = "linux", target_os = "android"))))]
mod watch {
    use std::io;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

    use rustix::event::kqueue::{
        kevent, kqueue, Event, EventFilter, EventFlags, ProcessEvents, UserDefinedFlags, UserFlags,
    };
    use rustix::event::{PollFd, PollFlags};
    use rustix::io::Errno;
    use rustix::process::{Pid, WaitId, WaitIdOptions};

    use crate::{Error, Result};

    pub(super) fn watch(pid: Pid, raw: u32) -> Result<OwnedFd> {
        let kq = kqueue().map_err(|e| Error::os("kqueue", e.into()))?;
        super::super::handle::set_inheritable(kq.as_fd(), false)
            .map_err(|e| Error::os("fcntl(F_SETFD)", e))?;
        let change = Event::new(
            EventFilter::Proc {
                pid,
                flags: ProcessEvents::EXIT,
            },
            EventFlags::ADD,
            std::ptr::null_mut(),
        );
        let mut none: Vec<Event> = Vec::new();
        // SAFETY: the event carries no pointer the kernel dereferences (a
        // null udata) and no descriptor; with no room for events the call
        // returns once the change is applied.
        match unsafe { kevent(&kq, &[change], &mut none, None) } {
            Ok(_) => Ok(kq),
            // The kernel attaches the filter to live processes only. Our
            // own child that has exited but is not reaped yet still has
            // its status to give: its watch starts out saying it exited.
            Err(Errno::SRCH) if is_our_zombie(pid) => {
                already_exited(&kq).map_err(|e| Error::os("kevent(EVFILT_USER)", e))?;
                Ok(kq)
            }
            Err(Errno::SRCH) => Err(Error::NoSuchProcess { pid: raw }),
            Err(e) => Err(Error::os("kevent(EVFILT_PROC)", e.into())),
        }
    }

    /// Whether `pid` is a child of this process that has exited and waits
    /// to be reaped (`WNOWAIT` leaves it so).
    fn is_our_zombie(pid: Pid) -> bool {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        matches!(
            rustix::process::waitid(WaitId::Pid(pid), options),
            Ok(Some(_))
        )
    }

    /// Makes the kqueue readable for good: a user event, added and
    /// triggered, never drained.
    fn already_exited(kq: &OwnedFd) -> io::Result<()> {
        let user = |flags: UserFlags, action: EventFlags| {
            Event::new(
                EventFilter::User {
                    ident: 0,
                    flags,
                    user_flags: UserDefinedFlags::new(0),
                },
                action,
                std::ptr::null_mut(),
            )
        };
        let changes = [
            user(UserFlags::empty(), EventFlags::ADD),
            user(UserFlags::TRIGGER, EventFlags::empty()),
        ];
        let mut none: Vec<Event> = Vec::new();
        // SAFETY: as in `watch`: no pointer or descriptor in the events.
        unsafe { kevent(kq, &changes, &mut none, None) }?;
        Ok(())
    }

    fn readable(kq: BorrowedFd<'_>, block: bool) -> io::Result<bool> {
        let timeout = (!block).then_some(rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(&kq, PollFlags::IN)];
        loop {
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(super) fn has_exited(kq: BorrowedFd<'_>) -> io::Result<bool> {
        readable(kq, false)
    }

    pub(super) fn wait_exit(kq: BorrowedFd<'_>) -> io::Result<()> {
        readable(kq, true).map(|_| ())
    }
}

#[cfg(all(handoff_portable, any(target_os = "linux", target_os = "android")))]
mod watch {
    use std::io;
    use std::os::fd::{BorrowedFd, OwnedFd};
    use std::time::Duration;

    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    use rustix::process::Pid;

    use crate::{Error, Result};

    pub(super) fn watch(pid: Pid, raw: u32) -> Result<OwnedFd> {
        let dir = rustix::fs::open(
            format!("/proc/{raw}"),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOENT | Errno::SRCH => Error::NoSuchProcess { pid: raw },
            e => Error::os("open /proc/<pid>", e.into()),
        })?;
        // /proc also lists every thread by its id; a process is a thread
        // group, named by its leader.
        let status =
            read_at(&dir, "status").map_err(|e| Error::os("read /proc/<pid>/status", e))?;
        let tgid = status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|v| v.trim().parse::<i32>().ok());
        if tgid != Some(pid.as_raw_nonzero().get()) {
            return Err(Error::InvalidArgument(format!(
                "{raw} is not the id of a process (is it a thread id?)"
            )));
        }
        Ok(dir)
    }

    fn read_at(dir: &impl rustix::fd::AsFd, name: &str) -> io::Result<String> {
        use std::io::Read;
        let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let mut text = String::new();
        std::fs::File::from(fd).read_to_string(&mut text)?;
        Ok(text)
    }

    /// Exited means reaped (the directory's files are gone, `ESRCH`) or a
    /// zombie (state `Z`, or `X` while being torn down).
    pub(super) fn has_exited(dir: BorrowedFd<'_>) -> io::Result<bool> {
        let stat = match read_at(&dir, "stat") {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
        };
        // The state follows the command name, which may itself hold ')'.
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next());
        Ok(matches!(state, Some('Z' | 'X' | 'x')))
    }

    /// Polls, from 1 ms doubling to 50 ms between looks: there is nothing
    /// to block on without a pidfd.
    pub(super) fn wait_exit(dir: BorrowedFd<'_>) -> io::Result<()> {
        let mut pause = Duration::from_millis(1);
        while !has_exited(dir)? {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// A pidfd for the child `pid` this process has not reaped yet (so the pid
/// cannot have been reused); `None` where the kernel has no pidfds, and in
/// the portable configuration (`spawn::Child::process` opens its watch).
#[cfg(not(handoff_portable))]
pub(super) fn pidfd_for(pid: libc::pid_t) -> Option<std::os::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

#[cfg(handoff_portable)]
pub(super) fn pidfd_for(_pid: libc::pid_t) -> Option<std::os::fd::OwnedFd> {
    None
}
