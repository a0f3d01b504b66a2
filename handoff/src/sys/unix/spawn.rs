//! Spawning a child that inherits exactly the chosen descriptors.
//!
//! Everything the child needs is prepared in the parent (argv, envp, the
//! list of descriptor moves, a buffer for `LISTEN_PID`), because between
//! the child's creation and its `exec` only async-signal-safe calls are
//! allowed: no allocation, no locks. The child then
//!
//! 1. on the `vfork` path, resets signal handlers to their defaults and
//!    unblocks every signal (std does the same for its children);
//! 2. places the standard streams at 0–2 and the named handles at 3, 4, …
//!    with `dup2` (which clears close-on-exec on the target only), in an
//!    order worked out in the parent so that no move overwrites a source a
//!    later one still reads; a cycle (a → b, b → a) parks one descriptor
//!    above the targets first, so the child never needs more than its final
//!    layout plus one descriptor;
//! 3. marks every other descriptor from 3 + n up close-on-exec
//!    (`close_range(CLOSE_RANGE_CLOEXEC)`, or a `fcntl` loop on kernels
//!    without it), so handles the parent itself inherited without
//!    close-on-exec do not leak;
//! 4. changes directory, writes its own pid into the prepared `LISTEN_PID=`
//!    buffer and calls `execve` with the prepared argv and envp.
//!
//! On Linux the child is created by `clone(CLONE_VM | CLONE_VFORK)` on a
//! stack of its own (`vfork.rs`): no page tables are copied, which is most
//! of what `fork` costs, and an `exec` failure comes back through shared
//! memory. When the caller asked for std's command (`spawn::unix::CommandExt`:
//! for uid, process groups, …), std forks and the same steps run in a
//! `pre_exec` hook.
//!
//! The portable configuration (macOS, the BSDs; Linux when forced) uses
//! `posix_spawn` with file actions instead (`posix_spawn.rs`), except where
//! it cannot do what is asked: a child that is given handles needs
//! `LISTEN_PID`, its own pid, in its environment before `exec`, which only
//! a step run in the child can write, so those children are made by std's
//! fork with the hook, as is a change of directory where the file actions
//! have no `chdir`.
//!
//! This module uses libc rather than rustix: the child side juggles raw
//! numbers between clone and exec, where rustix's owned-descriptor API would
//! close or track them.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};
use std::sync::Arc;

use super::child::{child_side, order_moves, Plan, LISTEN_PID_CAPACITY};
use super::process::pidfd_for;
use crate::spawn::{ProgramSearch, Spec};
use crate::stdio::StdioKind;

/// The first descriptor number handed to the child (systemd's
/// `SD_LISTEN_FDS_START`).
pub(crate) const FIRST_FD: RawFd = 3;

/// std's command, used when the caller wants its settings
/// (`spawn::unix::CommandExt`).
///
/// The hook that places the handles and calls `execve` is added at each
/// spawn, after every hook the caller added: std runs `pre_exec` hooks in
/// the order they were added, and nothing after this one runs. The hooks
/// of earlier spawns stay, and find no plan, so they pass.
#[derive(Debug)]
pub(crate) struct StdCommand {
    cmd: std::process::Command,
}

impl StdCommand {
    pub(crate) fn new(program: &OsStr) -> StdCommand {
        StdCommand {
            cmd: std::process::Command::new(program),
        }
    }

    pub(crate) fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.cmd
    }
}

/// The hook installed on a std command; `spawn` points it at a plan for the
/// duration of one `fork`.
#[derive(Debug, Default)]
struct Hook {
    plan: AtomicPtr<Plan>,
}

fn install_hook(cmd: &mut std::process::Command) -> Arc<Hook> {
    let hook = Arc::new(Hook::default());
    let in_child = hook.clone();
    let child_hook = move || {
        let plan = in_child.plan.load(Ordering::Acquire);
        if plan.is_null() {
            return Ok(());
        }
        // SAFETY: the parent keeps the plan alive across the fork (it is
        // dropped only after spawn returns), and this process has its own
        // copy of that memory, touched by no other thread.
        Err(child_side(unsafe { &mut *plan }))
    };
    // SAFETY: the hook runs in the forked child, where it only reads memory
    // prepared before the fork and makes async-signal-safe system calls
    // (fcntl, dup2, close_range, chdir, getpid, execve); it allocates
    // nothing and takes no locks.
    unsafe { cmd.pre_exec(child_hook) };
    hook
}

/// The convention's variables; a child never inherits the parent's own.
pub(crate) const CONVENTION_VARS: &[&str] = &["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// Removes the convention's variables from this process's environment once
/// the handles are claimed, so children spawned by other means do not see
/// them. Changing the environment is not thread-safe on Unix (and `unsafe`
/// from edition 2024), so it happens here, in the backend.
pub(crate) fn forget_convention_vars() {
    for var in CONVENTION_VARS {
        std::env::remove_var(var);
    }
}

/// The variable that announces the handles (named in errors).
pub(crate) const HANDLES_VAR: &str = "LISTEN_FDS";

/// True when two environment variable names are the same variable.
pub(crate) fn same_var(a: &OsStr, b: &OsStr) -> bool {
    a == b
}

/// What the caller hands to [`spawn`] besides the command.
pub(crate) struct SpawnRequest<'a> {
    /// The child's full environment, without any `LISTEN_*` variable.
    pub env: Vec<(OsString, OsString)>,
    /// Descriptors for 3, 4, … in order, with their names.
    pub handles: Vec<(BorrowedFd<'a>, &'a str)>,
}

/// A spawned child, held by pid and, where the kernel has them, a pidfd.
#[derive(Debug)]
pub(crate) struct Child {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    stdio: [Option<OwnedFd>; 3],
    /// Set once reaped: the pid may belong to another process after that.
    status: Option<ExitStatus>,
}

impl Child {
    pub(crate) fn id(&self) -> u32 {
        self.pid as u32
    }

    pub(crate) fn exit_handle(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        match self.status {
            Some(s) => Ok(s),
            // A blocking waitpid returns a status or an error, never
            // "still running"; looping keeps that out of the panic paths.
            None => loop {
                if let Some(s) = self.reap(0)? {
                    return Ok(s);
                }
            },
        }
    }

    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.status {
            Some(s) => Ok(Some(s)),
            None => self.reap(libc::WNOHANG),
        }
    }

    fn reap(&mut self, options: libc::c_int) -> io::Result<Option<ExitStatus>> {
        loop {
            let mut raw = 0;
            // SAFETY: waitpid writes the status into a local integer.
            let r = unsafe { libc::waitpid(self.pid, &mut raw, options) };
            if r == self.pid {
                let status = ExitStatus::from_raw(raw);
                self.status = Some(status);
                return Ok(Some(status));
            }
            if r == 0 {
                return Ok(None);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    pub(crate) fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            // Reaped: the pid may name someone else by now.
            return Ok(());
        }
        #[cfg(not(handoff_portable))]
        if let Some(pidfd) = &self.pidfd {
            return rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL)
                .map_err(io::Error::from);
        }
        // SAFETY: a signal to our own unreaped child, whose pid cannot have
        // been reused.
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Takes the parent's end of a piped standard stream (0, 1 or 2).
    pub(crate) fn take_stdio(&mut self, which: u8) -> Option<OwnedFd> {
        self.stdio[usize::from(which.min(2))].take()
    }
}

/// Spawns `spec` with exactly the requested descriptors and its standard
/// streams, and returns the child with a pidfd where the kernel has one.
pub(crate) fn spawn(spec: &mut Spec, req: SpawnRequest<'_>) -> io::Result<Child> {
    let streams = Streams::open(spec)?;
    let route = Route::choose(spec, req.handles.len());
    let mut plan = Box::new(prepare(spec, req, &streams, route == Route::Vfork)?);
    let (pid, pidfd) = match (&mut spec.std, route) {
        (Some(std), _) => spawn_with_std(std, &mut plan)?,
        (None, Route::Std) => spawn_with_std(
            &mut StdCommand::new(OsStr::from_bytes(plan.path.as_bytes())),
            &mut plan,
        )?,
        (None, Route::Vfork) => spawn_vfork(&mut plan)?,
        (None, Route::PosixSpawn) => spawn_posix(&plan)?,
    };
    drop(plan);
    Ok(Child {
        pid,
        pidfd,
        stdio: streams.parent_ends,
        status: None,
    })
}

/// How a child is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// `clone(CLONE_VM | CLONE_VFORK)` running `child_side` (Linux).
    Vfork,
    /// `posix_spawn` with file actions (portable configuration).
    PosixSpawn,
    /// std's fork with `child_side` in a `pre_exec` hook: whenever the
    /// caller asked for std's command, and in the portable configuration
    /// for what `posix_spawn` cannot do (write `LISTEN_PID`, which only the
    /// child can know; change directory where the libc crate has no
    /// `posix_spawn_file_actions_addchdir_np`).
    Std,
}

impl Route {
    fn choose(spec: &Spec, handles: usize) -> Route {
        if spec.std.is_some() {
            return Route::Std;
        }
        if cfg!(not(handoff_portable)) {
            return Route::Vfork;
        }
        #[cfg(handoff_portable)]
        if handles > 0 || (spec.cwd.is_some() && !super::posix_spawn::CAN_CHDIR) {
            return Route::Std;
        }
        let _ = handles;
        Route::PosixSpawn
    }
}

#[cfg(not(handoff_portable))]
fn spawn_vfork(plan: &mut Plan) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    super::vfork::spawn(plan)
}

#[cfg(handoff_portable)]
fn spawn_vfork(_plan: &mut Plan) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    unreachable!("the portable configuration never chooses vfork")
}

#[cfg(handoff_portable)]
fn spawn_posix(plan: &Plan) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    let pid = super::posix_spawn::spawn(plan)?;
    // Not reaped until we wait for it, so its pid names exactly this child.
    Ok((pid, pidfd_for(pid)))
}

#[cfg(not(handoff_portable))]
fn spawn_posix(_plan: &Plan) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    unreachable!("only the portable configuration uses posix_spawn")
}

fn spawn_with_std(
    std: &mut StdCommand,
    plan: &mut Plan,
) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    let hook = install_hook(&mut std.cmd);
    hook.plan.store(plan, Ordering::Release);
    let spawned = std.cmd.spawn();
    hook.plan.store(std::ptr::null_mut(), Ordering::Release);
    // The streams were left to the hook, so std's child holds no pipes;
    // dropping it neither waits nor kills.
    let pid = spawned?.id() as libc::pid_t;
    // The child is not reaped until we wait for it, so its pid cannot be
    // reused before this call: the pidfd names exactly this child.
    Ok((pid, pidfd_for(pid)))
}

/// The descriptors behind the child's standard streams, opened in the
/// parent (all close-on-exec).
struct Streams {
    /// What the child gets at 0, 1, 2 that is not borrowed from the spec.
    child_ends: [Option<OwnedFd>; 3],
    /// The parent's ends of piped streams.
    parent_ends: [Option<OwnedFd>; 3],
}

impl Streams {
    fn open(spec: &Spec) -> io::Result<Streams> {
        let mut s = Streams {
            child_ends: [None, None, None],
            parent_ends: [None, None, None],
        };
        for (which, cfg) in spec.stdio.iter().enumerate() {
            match cfg.as_ref().map(|c| &c.0) {
                Some(StdioKind::Null) => {
                    let null = rustix::fs::open(
                        "/dev/null",
                        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
                        rustix::fs::Mode::empty(),
                    )?;
                    s.child_ends[which] = Some(null);
                }
                Some(StdioKind::Piped) => {
                    // std's pipe is close-on-exec from the start wherever
                    // the system allows (pipe2), and portable.
                    let (r, w) = std::io::pipe()?;
                    let (r, w) = (OwnedFd::from(r), OwnedFd::from(w));
                    let (child, parent) = if which == 0 { (r, w) } else { (w, r) };
                    s.child_ends[which] = Some(child);
                    s.parent_ends[which] = Some(parent);
                }
                None | Some(StdioKind::Inherit) | Some(StdioKind::Handle(_)) => {}
            }
        }
        Ok(s)
    }

    /// The descriptor the child gets as stream `which`, if it is replaced.
    fn source(&self, spec: &Spec, which: usize) -> Option<RawFd> {
        match spec.stdio[which].as_ref().map(|c| &c.0) {
            Some(StdioKind::Handle(h)) => Some(h.as_raw_fd()),
            _ => self.child_ends[which].as_ref().map(AsRawFd::as_raw_fd),
        }
    }
}

fn cstring(bytes: Vec<u8>, what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

fn prepare(
    spec: &Spec,
    req: SpawnRequest<'_>,
    streams: &Streams,
    reset_signals: bool,
) -> io::Result<Plan> {
    let program = spec.program.as_os_str();
    let path = resolve(&ProgramSearch::new(spec, &req.env))?;
    let path = cstring(path.into_os_string().into_vec(), "program path")?;

    let mut argv = vec![cstring(program.as_bytes().to_vec(), "program")?];
    for a in &spec.args {
        argv.push(cstring(a.as_bytes().to_vec(), "argument")?);
    }
    let mut argv_ptrs: Vec<_> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());

    let n = req.handles.len();
    let mut envp = Vec::with_capacity(req.env.len() + 2);
    for (k, v) in req.env {
        let mut kv = k.into_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        envp.push(cstring(kv, "environment variable")?);
    }
    let mut listen_pid = Box::new([0u8; LISTEN_PID_CAPACITY]);
    if n > 0 {
        envp.push(cstring(
            format!("LISTEN_FDS={n}").into_bytes(),
            "LISTEN_FDS",
        )?);
        let names: Vec<&str> = req.handles.iter().map(|(_, name)| *name).collect();
        envp.push(cstring(
            format!("LISTEN_FDNAMES={}", names.join(":")).into_bytes(),
            "a handle name",
        )?);
        listen_pid[..11].copy_from_slice(b"LISTEN_PID=");
    }
    let mut envp_ptrs: Vec<_> = envp.iter().map(|c| c.as_ptr()).collect();
    if n > 0 {
        envp_ptrs.push(listen_pid.as_ptr().cast());
    }
    envp_ptrs.push(std::ptr::null());

    let mut moves = Vec::with_capacity(n + 3);
    for which in 0..3 {
        if let Some(src) = streams.source(spec, which) {
            moves.push((src, which as RawFd));
        }
    }
    for (i, (fd, _)) in req.handles.iter().enumerate() {
        moves.push((fd.as_raw_fd(), FIRST_FD + i as RawFd));
    }
    let first_free = RawFd::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(FIRST_FD))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many handles"))?;
    let (ops, parked) = order_moves(&moves);
    let cwd = match &spec.cwd {
        Some(dir) => Some(cstring(
            dir.as_os_str().as_bytes().to_vec(),
            "working directory",
        )?),
        None => None,
    };

    let fallback_max_fd = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
        .min(1 << 20) as RawFd;

    Ok(Plan {
        path,
        _argv: argv,
        argv_ptrs,
        _envp: envp,
        envp_ptrs,
        listen_pid,
        has_handles: n > 0,
        ops,
        parked: vec![-1; parked],
        first_free,
        cwd,
        reset_signals,
        fallback_max_fd,
        child_errno: AtomicI32::new(0),
    })
}

/// Finds the program the way `execvp` would, but in the parent, with the
/// child's `PATH` and as seen from the child's working directory. A
/// relative result stays relative: the child changes directory before
/// `execve`, as std's children do.
fn resolve(search: &ProgramSearch<'_>) -> io::Result<PathBuf> {
    if search.program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(search.program.to_owned());
    }
    // glibc's execvp uses /bin:/usr/bin when PATH is unset.
    search.search_path(
        |k| k == "PATH",
        "/bin:/usr/bin",
        |candidate| is_executable_file(&search.seen_by_child(&candidate)).then_some(candidate),
    )
}

/// A regular file this process may execute (by its effective ids, as
/// `execve` checks), so PATH search skips files only others may run.
fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
        && rustix::fs::accessat(
            rustix::fs::CWD,
            p,
            rustix::fs::Access::EXEC_OK,
            rustix::fs::AtFlags::EACCESS,
        )
        .is_ok()
}

// Linux: dup3, and /bin/sh's `read`.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};

    /// A standard stream whose source already has the stream's number and
    /// is close-on-exec still reaches the child: `dup2` onto itself does
    /// not clear the flag, so each way of spawning clears it another way
    /// (`fcntl` in the child, a round trip through a spare number in the
    /// file actions, `addinherit_np` on Apple).
    #[test]
    fn a_stream_already_at_its_number_arrives_though_close_on_exec() {
        let (r, w) = std::io::pipe().unwrap();
        // SAFETY: descriptor 0 of this test process is replaced by the
        // pipe's read end, close-on-exec, and owned below; no test here
        // reads standard input.
        let zero = unsafe {
            assert_eq!(
                libc::dup3(std::os::fd::AsRawFd::as_raw_fd(&r), 0, libc::O_CLOEXEC),
                0
            );
            OwnedFd::from_raw_fd(0)
        };
        drop(r);
        let spawned = crate::Command::new("sh")
            .args(["-c", "read line && echo \"got:$line\""])
            .stdin(crate::Handle::from(zero))
            .stdout(crate::spawn::Stdio::piped())
            .spawn();
        // Descriptor 0 was closed with the command; /dev/null takes it
        // again, as it was before, whatever the spawn did.
        let null = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: dup2 onto the now unused number 0.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) };
        let mut child = spawned.unwrap();
        let mut w = std::fs::File::from(OwnedFd::from(w));
        w.write_all(b"hello\n").unwrap();
        drop(w);
        let mut out = String::new();
        std::fs::File::from(OwnedFd::from(child.take_stdout().unwrap()))
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success(), "{out}");
        assert_eq!(out, "got:hello\n");
    }
}
