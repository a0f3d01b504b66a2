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
//! for uid, process groups, …) and on other Unix systems, std forks and the
//! same steps run in a `pre_exec` hook.
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

use crate::spawn::Spec;
use crate::stdio::StdioKind;

/// The first descriptor number handed to the child (systemd's
/// `SD_LISTEN_FDS_START`).
pub(crate) const FIRST_FD: RawFd = 3;

/// Room for "LISTEN_PID=" plus the digits of any pid and a NUL.
const LISTEN_PID_CAPACITY: usize = 40;

/// Everything the child side needs, built before the child exists.
pub(super) struct Plan {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` followed by space for the digits; the child writes them.
    listen_pid: Box<[u8; LISTEN_PID_CAPACITY]>,
    has_handles: bool,
    /// The steps that place the standard streams and the handles at 3,
    /// 4, …, ordered in the parent (see `order_moves`).
    ops: Vec<Op>,
    /// Where `Op::Park` puts descriptors; filled in by the child.
    parked: Vec<RawFd>,
    /// The lowest number above every target.
    first_free: RawFd,
    cwd: Option<CString>,
    /// Whether the child must reset signal handlers and its mask itself
    /// (std does it on its own path).
    reset_signals: bool,
    /// Highest descriptor to visit when `close_range` is unavailable.
    fallback_max_fd: RawFd,
    /// The error of the step that failed in a `vfork` child; 0 if none.
    pub(super) child_errno: AtomicI32,
}

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
        #[cfg(any(target_os = "linux", target_os = "android"))]
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
    let via_std = spec.std.is_some() || !cfg!(any(target_os = "linux", target_os = "android"));
    let mut plan = Box::new(prepare(spec, req, &streams, !via_std)?);
    let (pid, pidfd) = match &mut spec.std {
        Some(std) => spawn_with_std(std, &mut plan)?,
        None => spawn_direct(&mut plan)?,
    };
    drop(plan);
    Ok(Child {
        pid,
        pidfd,
        stdio: streams.parent_ends,
        status: None,
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn spawn_direct(plan: &mut Plan) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    super::vfork::spawn(plan)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn spawn_direct(plan: &mut Plan) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    spawn_with_std(
        &mut StdCommand::new(OsStr::from_bytes(plan.path.as_bytes())),
        plan,
    )
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

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn pidfd_for(pid: libc::pid_t) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn pidfd_for(_pid: libc::pid_t) -> Option<OwnedFd> {
    None
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
    let path = resolve(program, &req.env, spec.cwd.as_deref())?;
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
fn resolve(
    program: &OsStr,
    env: &[(OsString, OsString)],
    cwd: Option<&Path>,
) -> io::Result<PathBuf> {
    let p = Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return Ok(p.to_owned());
    }
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        // glibc's execvp uses this when PATH is unset.
        .unwrap_or_else(|| OsString::from("/bin:/usr/bin"));
    for dir in std::env::split_paths(&path_var) {
        let candidate = dir.join(p);
        let from_here = match cwd {
            Some(d) if candidate.is_relative() => d.join(&candidate),
            _ => candidate.clone(),
        };
        if is_executable_file(&from_here) {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found in PATH", p.display()),
    ))
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

/// A descriptor the child reads: a number, or one it parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fd {
    Num(RawFd),
    Parked(usize),
}

/// One step of placing descriptors in the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// The source already has its target's number: clear close-on-exec.
    Keep(RawFd),
    /// Copy a descriptor that a pending move still reads out of the way
    /// (above every target, close-on-exec), into `parked[slot]`.
    Park { fd: RawFd, slot: usize },
    /// `dup2` onto the target (which clears close-on-exec there).
    Dup2 { from: Fd, to: RawFd },
    /// Close `parked[slot]` once no move reads it any more.
    Unpark(usize),
}

/// Orders the (source, target) moves so that no `dup2` overwrites a
/// descriptor a later move still reads, with no copies except one per
/// cycle (a → b, b → a), closed again once the cycle is done: the child
/// needs no more descriptors than its final layout plus one. Targets are distinct; one source may feed
/// several targets (one handle under two names).
fn order_moves(moves: &[(RawFd, RawFd)]) -> (Vec<Op>, usize) {
    use std::collections::HashMap;
    let mut ops = Vec::with_capacity(moves.len() + 1);
    let mut pending: Vec<Option<(Fd, RawFd)>> = Vec::with_capacity(moves.len());
    // For each number: the pending moves reading it, and the move writing it.
    let mut readers: HashMap<RawFd, Vec<usize>> = HashMap::new();
    let mut writer: HashMap<RawFd, usize> = HashMap::new();
    for &(src, target) in moves {
        if src == target {
            ops.push(Op::Keep(target));
            continue;
        }
        let i = pending.len();
        pending.push(Some((Fd::Num(src), target)));
        readers.entry(src).or_default().push(i);
        writer.insert(target, i);
    }
    let unread = |readers: &HashMap<RawFd, Vec<usize>>, pending: &[Option<(Fd, RawFd)>], t| {
        readers.get(&t).is_none_or(|r| {
            r.iter()
                .all(|&j| !matches!(pending[j], Some((Fd::Num(s), _)) if s == t))
        })
    };
    let mut ready: Vec<usize> = (0..pending.len())
        .filter(|&i| pending[i].is_some_and(|(_, t)| unread(&readers, &pending, t)))
        .collect();
    let mut parked = 0;
    let mut parked_readers: Vec<usize> = Vec::new();
    let mut next = 0;
    loop {
        while let Some(i) = ready.pop() {
            let Some((from, to)) = pending[i].take() else {
                continue;
            };
            ops.push(Op::Dup2 { from, to });
            if let Fd::Parked(slot) = from {
                if let Some(left) = parked_readers.get_mut(slot) {
                    *left -= 1;
                    if *left == 0 {
                        ops.push(Op::Unpark(slot));
                    }
                }
            }
            // Its source may now be free to overwrite.
            if let Fd::Num(src) = from {
                if let Some(&w) = writer.get(&src) {
                    if pending[w].is_some() && unread(&readers, &pending, src) {
                        ready.push(w);
                    }
                }
            }
        }
        while next < pending.len() && pending[next].is_none() {
            next += 1;
        }
        let Some(&Some((_, target))) = pending.get(next) else {
            break;
        };
        // Only cycles are left: park what this target still holds.
        ops.push(Op::Park {
            fd: target,
            slot: parked,
        });
        let mut count = 0;
        for &j in readers.get(&target).into_iter().flatten() {
            if let Some((src, _)) = &mut pending[j] {
                if *src == Fd::Num(target) {
                    *src = Fd::Parked(parked);
                    count += 1;
                }
            }
        }
        parked_readers.push(count);
        parked += 1;
        ready.push(next);
    }
    (ops, parked)
}

/// Runs in the child between its creation and `exec`; returns only on
/// failure. Async-signal-safe only, and free of panics: on the `vfork` path
/// it shares the parent's memory.
pub(super) fn child_side(plan: &mut Plan) -> io::Error {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if plan.reset_signals {
        super::vfork::reset_signals();
    }
    // 1. Place every descriptor, in the order worked out in the parent.
    let Plan {
        ops,
        parked,
        first_free,
        ..
    } = plan;
    for op in ops.iter() {
        let rc = match *op {
            Op::Keep(fd) => {
                // SAFETY: fcntl on a descriptor number; no memory involved.
                let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
                if flags < 0 {
                    flags
                } else {
                    // SAFETY: as above.
                    unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) }
                }
            }
            Op::Park { fd, slot } => {
                // SAFETY: fcntl on a descriptor number; no memory involved.
                let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, *first_free) };
                if let Some(p) = parked.get_mut(slot) {
                    *p = copy;
                }
                copy
            }
            Op::Dup2 { from, to } => {
                let src = match from {
                    Fd::Num(n) => n,
                    Fd::Parked(slot) => parked.get(slot).copied().unwrap_or(-1),
                };
                // SAFETY: dup2 between descriptor numbers; the target is
                // cleared of close-on-exec.
                unsafe { libc::dup2(src, to) }
            }
            Op::Unpark(slot) => match parked.get(slot) {
                // SAFETY: closes the copy this child made in `Park`.
                Some(&fd) => unsafe { libc::close(fd) },
                None => 0,
            },
        };
        if rc < 0 {
            return io::Error::last_os_error();
        }
    }
    // 2. Nothing else from 3 + n up survives exec.
    mark_cloexec_from(plan.first_free, plan.fallback_max_fd);
    // 3. The working directory, then LISTEN_PID is this process's own pid.
    if let Some(dir) = &plan.cwd {
        // SAFETY: a NUL-terminated path prepared before the child existed.
        if unsafe { libc::chdir(dir.as_ptr()) } != 0 {
            return io::Error::last_os_error();
        }
    }
    if plan.has_handles {
        // SAFETY: getpid cannot fail and touches no memory.
        let pid = unsafe { libc::getpid() } as u64;
        write_decimal(&mut plan.listen_pid[11..], pid);
    }
    // 4. Exec; only returns on failure.
    // SAFETY: path, argv and envp are NUL-terminated strings in arrays ending
    // with a null pointer, prepared before the child existed and alive here.
    unsafe {
        libc::execve(
            plan.path.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        )
    };
    io::Error::last_os_error()
}

fn mark_cloexec_from(first: RawFd, fallback_max: RawFd) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        // SAFETY: close_range with CLOEXEC only sets a flag on descriptors;
        // called as a raw syscall because not every libc wraps it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            )
        };
        if rc == 0 {
            return;
        }
    }
    for fd in first..fallback_max {
        // SAFETY: fcntl on descriptor numbers that may or may not be open;
        // an unopened one just fails with EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Writes `value` in decimal followed by NUL, without allocating.
fn write_decimal(out: &mut [u8], mut value: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (value % 10) as u8;
        len += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    // No indexing that could panic: this runs in a child sharing memory.
    let mut slots = out.iter_mut();
    for d in digits[..len].iter().rev().chain(Some(&0)) {
        if let Some(slot) = slots.next() {
            *slot = *d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{order_moves, Fd, Op};
    use std::collections::HashMap;

    /// Runs the ops on a model descriptor table (number -> object) and
    /// returns it with the number of descriptors parked.
    fn run(moves: &[(i32, i32)]) -> (HashMap<i32, i32>, usize) {
        let mut table: HashMap<i32, i32> = HashMap::new();
        for &(src, _) in moves {
            table.insert(src, src * 1000);
        }
        let (ops, n_parked) = order_moves(moves);
        let mut parked = vec![-1; n_parked];
        let mut next_free = 10_000;
        let mut open_parked = 0;
        for op in ops {
            match op {
                Op::Keep(fd) => assert!(table.contains_key(&fd)),
                Op::Park { fd, slot } => {
                    let obj = table[&fd];
                    table.insert(next_free, obj);
                    parked[slot] = next_free;
                    next_free += 1;
                }
                Op::Dup2 { from, to } => {
                    let src = match from {
                        Fd::Num(n) => n,
                        Fd::Parked(k) => parked[k],
                    };
                    let obj = table[&src];
                    table.insert(to, obj);
                }
                Op::Unpark(slot) => {
                    assert!(table.remove(&parked[slot]).is_some());
                    open_parked -= 1;
                }
            }
            if let Op::Park { .. } = op {
                open_parked += 1;
                assert_eq!(open_parked, 1, "{moves:?}: more than one parked at once");
            }
        }
        assert_eq!(open_parked, 0, "{moves:?}: a parked descriptor stays open");
        (table, n_parked)
    }

    fn check(moves: &[(i32, i32)], max_parked: usize) {
        let (table, parked) = run(moves);
        for &(src, target) in moves {
            assert_eq!(table[&target], src * 1000, "{moves:?}: {target}");
        }
        assert!(parked <= max_parked, "{moves:?}: {parked} parked");
    }

    #[test]
    fn moves_without_clobbering() {
        check(&[(5, 3), (6, 4)], 0);
        check(&[(3, 3), (4, 4)], 0);
        check(&[(4, 3), (3, 4)], 1);
        check(&[(4, 3), (5, 4), (3, 5)], 1);
        check(&[(3, 4), (4, 5), (5, 6), (20, 3)], 0);
        check(&[(4, 3), (4, 4), (9, 5)], 0);
        check(&[(3, 3), (3, 4), (3, 5)], 0);
        check(&[(0, 3), (7, 0), (3, 1)], 0);
        check(&[(4, 3), (3, 4), (6, 5), (5, 6)], 2);
        // Random permutations of 3..3+n onto themselves, with duplicates.
        let mut seed = 0x2545_f491_u64;
        let mut rand = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..500 {
            let n = 1 + rand(40) as i32;
            let mut sources: Vec<i32> = (3..3 + n).collect();
            for i in (1..sources.len()).rev() {
                sources.swap(i, rand(i as u64 + 1) as usize);
            }
            if rand(3) == 0 {
                let j = rand(n as u64) as usize;
                sources[j] = sources[(j + 1) % n as usize];
            }
            let moves: Vec<(i32, i32)> = sources.iter().zip(3..).map(|(&s, t)| (s, t)).collect();
            check(&moves, n as usize);
        }
    }

    #[test]
    fn decimal() {
        let mut buf = [9u8; 24];
        super::write_decimal(&mut buf, 4_194_304);
        assert_eq!(&buf[..8], b"4194304\0");
        super::write_decimal(&mut buf, 0);
        assert_eq!(&buf[..2], b"0\0");
    }
}
