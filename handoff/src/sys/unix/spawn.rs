//! Spawning a child that inherits exactly the chosen descriptors.
//!
//! Everything the child needs is prepared in the parent (argv, envp, the
//! descriptor list, a buffer for `LISTEN_PID`), because between `fork` and
//! `exec` only async-signal-safe calls are allowed: no allocation, no locks.
//! In the child, a `pre_exec` hook
//!
//! 1. moves each chosen descriptor above the target range first
//!    (`F_DUPFD_CLOEXEC`), so a source whose number equals another's target
//!    is never overwritten, then `dup2`s it to 3, 4, … (which clears
//!    close-on-exec on the target only);
//! 2. marks every other descriptor from 3 + n up close-on-exec
//!    (`close_range(CLOSE_RANGE_CLOEXEC)`, or a `fcntl` loop on kernels
//!    without it), so handles the parent itself inherited without
//!    close-on-exec do not leak, while std's own error pipe keeps working
//!    until `exec`;
//! 3. writes its own pid into the prepared `LISTEN_PID=` buffer;
//! 4. calls `execve` itself with the prepared argv and envp.
//!
//! This module uses libc rather than rustix: the child side juggles raw
//! numbers between fork and exec, where rustix's owned-descriptor API would
//! close or track them.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

/// The first descriptor number handed to the child (systemd's
/// `SD_LISTEN_FDS_START`).
pub(crate) const FIRST_FD: RawFd = 3;

/// Room for "LISTEN_PID=" plus the digits of any pid and a NUL.
const LISTEN_PID_CAPACITY: usize = 40;

/// Everything the child side needs, built before `fork`.
struct Plan {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` followed by space for the digits; the child writes them.
    listen_pid: Box<[u8; LISTEN_PID_CAPACITY]>,
    sources: Vec<RawFd>,
    /// Highest descriptor to visit when `close_range` is unavailable.
    fallback_max_fd: RawFd,
}

/// The hook installed once per command; `spawn` points it at a plan for the
/// duration of one `fork`.
#[derive(Debug, Default)]
pub(crate) struct Hook {
    plan: AtomicPtr<Plan>,
}

/// Installs the child-side hook on `cmd`. Call once per command.
pub(crate) fn install_hook(cmd: &mut std::process::Command) -> Arc<Hook> {
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
        child_side(unsafe { &mut *plan })
    };
    // SAFETY: the hook runs in the forked child, where it only reads memory
    // prepared before the fork and makes async-signal-safe system calls
    // (fcntl, dup2, close_range, getpid, execve); it allocates nothing and
    // takes no locks.
    unsafe { cmd.pre_exec(child_hook) };
    hook
}

/// The convention's variables; a child never inherits the parent's own.
pub(crate) const CONVENTION_VARS: &[&str] = &["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// The variable that announces the handles (named in errors).
pub(crate) const HANDLES_VAR: &str = "LISTEN_FDS";

/// True when two environment variable names are the same variable.
pub(crate) fn same_var(a: &OsStr, b: &OsStr) -> bool {
    a == b
}

/// The command being built: std's, which applies stdio, working directory,
/// uid and the rest, plus the hook that places the handles.
#[derive(Debug)]
pub(crate) struct Builder {
    cmd: std::process::Command,
    hook: Arc<Hook>,
    env_clear: bool,
}

impl Builder {
    pub(crate) fn new(program: &OsStr) -> Builder {
        let mut cmd = std::process::Command::new(program);
        let hook = install_hook(&mut cmd);
        Builder {
            cmd,
            hook,
            env_clear: false,
        }
    }

    pub(crate) fn arg(&mut self, arg: &OsStr) {
        self.cmd.arg(arg);
    }

    pub(crate) fn env(&mut self, key: &OsStr, val: Option<&OsStr>) {
        match val {
            Some(v) => self.cmd.env(key, v),
            None => self.cmd.env_remove(key),
        };
    }

    pub(crate) fn env_clear(&mut self) {
        self.cmd.env_clear();
        self.env_clear = true;
    }

    pub(crate) fn env_cleared(&self) -> bool {
        self.env_clear
    }

    pub(crate) fn env_changes(&self) -> impl Iterator<Item = (&OsStr, Option<&OsStr>)> {
        self.cmd.get_envs()
    }

    pub(crate) fn current_dir(&mut self, dir: &Path) {
        self.cmd.current_dir(dir);
    }

    /// Sets standard input (0), output (1) or error (2).
    pub(crate) fn stdio(&mut self, which: u8, cfg: std::process::Stdio) {
        match which {
            0 => self.cmd.stdin(cfg),
            1 => self.cmd.stdout(cfg),
            _ => self.cmd.stderr(cfg),
        };
    }

    pub(crate) fn get_program(&self) -> &OsStr {
        self.cmd.get_program()
    }

    pub(crate) fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.cmd
    }
}

/// What the caller hands to [`spawn`] besides the builder.
pub(crate) struct SpawnRequest<'a> {
    /// The child's full environment, without any `LISTEN_*` variable.
    pub env: Vec<(OsString, OsString)>,
    /// Descriptors for 3, 4, … in order, with their names.
    pub handles: Vec<(BorrowedFd<'a>, &'a str)>,
}

/// A spawned child: std's, plus a pidfd where the kernel has them.
#[derive(Debug)]
pub(crate) struct Child {
    std: std::process::Child,
    pidfd: Option<OwnedFd>,
}

impl Child {
    pub(crate) fn id(&self) -> u32 {
        self.std.id()
    }

    pub(crate) fn exit_handle(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    pub(crate) fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        self.std.wait()
    }

    pub(crate) fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.std.try_wait()
    }

    pub(crate) fn kill(&mut self) -> io::Result<()> {
        self.std.kill()
    }

    /// Takes the parent's end of a piped standard stream (0, 1 or 2).
    pub(crate) fn take_stdio(&mut self, which: u8) -> Option<OwnedFd> {
        match which {
            0 => self.std.stdin.take().map(OwnedFd::from),
            1 => self.std.stdout.take().map(OwnedFd::from),
            _ => self.std.stderr.take().map(OwnedFd::from),
        }
    }

    pub(crate) fn as_std_mut(&mut self) -> &mut std::process::Child {
        &mut self.std
    }
}

/// Spawns the builder's command (whose stdio, uid, and so on std applies)
/// with exactly the requested descriptors, and returns the child with a
/// pidfd for it where the kernel has one.
pub(crate) fn spawn(b: &mut Builder, req: SpawnRequest<'_>) -> io::Result<Child> {
    let mut plan = Box::new(prepare(&b.cmd, req)?);
    b.hook.plan.store(&mut *plan, Ordering::Release);
    let spawned = b.cmd.spawn();
    b.hook.plan.store(std::ptr::null_mut(), Ordering::Release);
    drop(plan);
    let child = spawned?;
    // The child is not reaped until we wait for it, so its pid cannot be
    // reused before this call: the pidfd names exactly this child.
    let pidfd = pidfd_for(child.id());
    Ok(Child { std: child, pidfd })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn pidfd_for(pid: u32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid as i32)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn pidfd_for(_pid: u32) -> Option<OwnedFd> {
    None
}

fn cstring(bytes: Vec<u8>, what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

fn prepare(cmd: &std::process::Command, req: SpawnRequest<'_>) -> io::Result<Plan> {
    let program = cmd.get_program();
    let path = resolve(program, &req.env, cmd.get_current_dir())?;
    let path = cstring(path.into_os_string().into_vec(), "program path")?;

    let mut argv = vec![cstring(program.as_bytes().to_vec(), "program")?];
    for a in cmd.get_args() {
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
        sources: req.handles.iter().map(|(fd, _)| fd.as_raw_fd()).collect(),
        fallback_max_fd,
    })
}

/// Finds the program the way `execvp` would, but in the parent, with the
/// child's `PATH`.
fn resolve(
    program: &OsStr,
    env: &[(OsString, OsString)],
    cwd: Option<&Path>,
) -> io::Result<PathBuf> {
    let p = Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return Ok(match cwd {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_owned(),
        });
    }
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    for dir in std::env::split_paths(&path_var) {
        let candidate = dir.join(p);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found in PATH", p.display()),
    ))
}

/// Runs in the child between fork and exec. Async-signal-safe only.
fn child_side(plan: &mut Plan) -> io::Result<()> {
    let n = plan.sources.len() as RawFd;
    let first_free = FIRST_FD + n;
    // 1. Lift every source above the target range, then place it.
    for i in 0..plan.sources.len() {
        // SAFETY: fcntl on a descriptor number; no memory is involved.
        let lifted = unsafe { libc::fcntl(plan.sources[i], libc::F_DUPFD_CLOEXEC, first_free) };
        if lifted < 0 {
            return Err(io::Error::last_os_error());
        }
        plan.sources[i] = lifted;
    }
    for (i, &src) in plan.sources.iter().enumerate() {
        // SAFETY: dup2 between descriptor numbers; the target is cleared of
        // close-on-exec, the lifted source keeps it and vanishes at exec.
        if unsafe { libc::dup2(src, FIRST_FD + i as RawFd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // 2. Nothing else from 3 + n up survives exec.
    mark_cloexec_from(first_free, plan.fallback_max_fd);
    // 3. LISTEN_PID is this process's own pid.
    if n > 0 {
        // SAFETY: getpid cannot fail and touches no memory.
        write_decimal(&mut plan.listen_pid[11..], unsafe { libc::getpid() } as u64);
    }
    // 4. Exec; only returns on failure.
    // SAFETY: path, argv and envp are NUL-terminated strings in arrays ending
    // with a null pointer, prepared before the fork and alive here.
    unsafe {
        libc::execve(
            plan.path.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        )
    };
    Err(io::Error::last_os_error())
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
    for i in 0..len {
        out[i] = digits[len - 1 - i];
    }
    out[len] = 0;
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal() {
        let mut buf = [9u8; 24];
        super::write_decimal(&mut buf, 4_194_304);
        assert_eq!(&buf[..8], b"4194304\0");
        super::write_decimal(&mut buf, 0);
        assert_eq!(&buf[..2], b"0\0");
    }
}
