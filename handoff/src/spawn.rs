//! Spawning a child with exactly the chosen handles.
//!
//! [`Command`] keeps the shape of `std::process::Command` and adds named
//! handles. Only the named handles reach the child, even handles this
//! process itself inherited without close-on-exec. They arrive under the
//! systemd socket-activation convention, so programs written for it run
//! unchanged: descriptors 3, 4, … in order, `LISTEN_FDS` (their count),
//! `LISTEN_FDNAMES` (their names, colon-separated) and `LISTEN_PID` (the
//! child's own pid, written by the child before `exec` without
//! allocating). The child claims them with [`Inherited`](crate::Inherited).
//!
//! On Linux the child is created with `clone(CLONE_VM | CLONE_VFORK)`, as
//! glibc's `posix_spawn` does, so the parent's memory size does not make
//! spawning slower; the settings only std offers (uid, gid, process group,
//! `pre_exec` hooks: [`unix::CommandExt`]) switch to std's `fork`.
//!
//! On Windows the child is created with `CreateProcessW` and a
//! `PROC_THREAD_ATTRIBUTE_HANDLE_LIST` naming exactly the passed handles
//! (and its standard handles); their values arrive in `HANDOFF_HANDLES`,
//! their names in `LISTEN_FDNAMES` and the parent's pid in
//! `HANDOFF_PARENT_PID` (see `docs/wire-format.md`).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::process::ExitStatus;
use crate::sys;
use crate::{startup, AsHandle, BorrowedHandle, Channel, Error, Handle, Process, Result};

pub use crate::stdio::Stdio;

/// The name under which [`Command::channel`] passes the child's end.
pub const CHANNEL_NAME: &str = "handoff.channel";

/// What a command runs, read by the backend at spawn time.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    /// Changes to the inherited environment in order; `None` removes.
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) env_clear: bool,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) stdio: [Option<Stdio>; 3],
    /// std's command, once a [`unix::CommandExt`] setting asked for it.
    #[cfg(unix)]
    pub(crate) std: Option<sys::spawn::StdCommand>,
}

/// A process builder like `std::process::Command` that passes named handles.
#[derive(Debug)]
pub struct Command {
    spec: Spec,
    handles: Vec<(String, Handle)>,
    /// The first error met while configuring, reported by `spawn`.
    deferred: Option<Error>,
}

impl Command {
    /// A command to run `program`, like `std::process::Command::new`.
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            spec: Spec {
                program: program.as_ref().to_owned(),
                args: Vec::new(),
                env: Vec::new(),
                env_clear: false,
                cwd: None,
                stdio: [None, None, None],
                #[cfg(unix)]
                std: None,
            },
            handles: Vec::new(),
            deferred: None,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.spec.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Self {
        for a in args {
            self.arg(a);
        }
        self
    }

    fn set_env(&mut self, key: &OsStr, val: Option<&OsStr>) -> &mut Self {
        self.spec
            .env
            .push((key.to_owned(), val.map(OsStr::to_owned)));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut Self {
        self.set_env(key.as_ref(), Some(val.as_ref()))
    }

    /// Sets environment variables for the child.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.set_env(k.as_ref(), Some(v.as_ref()));
        }
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.set_env(key.as_ref(), None)
    }

    /// Starts the child with an empty environment (plus the convention's
    /// variables when handles are passed).
    pub fn env_clear(&mut self) -> &mut Self {
        self.spec.env.clear();
        self.spec.env_clear = true;
        self
    }

    /// Sets the child's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.spec.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Sets the child's standard input.
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.spec.stdio[0] = Some(cfg.into());
        self
    }

    /// Sets the child's standard output.
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.spec.stdio[1] = Some(cfg.into());
        self
    }

    /// Sets the child's standard error.
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.spec.stdio[2] = Some(cfg.into());
        self
    }

    /// The program to run.
    pub fn get_program(&self) -> &OsStr {
        &self.spec.program
    }

    /// Passes a duplicate of `handle` to the child under `name` (the next
    /// descriptor from 3 up; on Windows, the next value in
    /// `HANDOFF_HANDLES`). The caller keeps its own handle.
    ///
    /// Names may not be empty or contain `:` (the convention's separator),
    /// `=` or NUL; an invalid name or a failed duplicate is reported by
    /// [`spawn`](Self::spawn).
    pub fn handle(&mut self, name: &str, handle: impl AsHandle) -> &mut Self {
        match handle.as_handle().try_clone_to_owned() {
            Ok(h) => self.handle_owned(name, h),
            Err(e) => self.defer(e),
        }
    }

    /// Passes `handle` to the child under `name`, closing this process's copy
    /// once the child is spawned.
    pub fn handle_owned(&mut self, name: &str, handle: Handle) -> &mut Self {
        if name.is_empty() || name.contains([':', '=', '\0']) {
            return self.defer(Error::InvalidArgument(format!(
                "handle name {name:?} must be non-empty without ':', '=' or NUL"
            )));
        }
        self.handles.push((name.to_owned(), handle));
        self
    }

    /// Passes `bytes` as sealed startup data ([`startup::NAME`]).
    pub fn startup_data(&mut self, bytes: &[u8]) -> &mut Self {
        match startup::create(bytes) {
            Ok(h) => self.handle_owned(startup::NAME, h),
            Err(e) => self.defer(e),
        }
    }

    /// Passes `value` as sealed startup data ([`startup::NAME`]).
    pub fn startup_value<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        match startup::create_value(value) {
            Ok(h) => self.handle_owned(startup::NAME, h),
            Err(e) => self.defer(e),
        }
    }

    /// Creates a channel to the child: returns this side's end and passes
    /// the other as [`CHANNEL_NAME`].
    pub fn channel(&mut self) -> Result<Channel> {
        let (ours, theirs) = Channel::pair()?;
        self.handle_owned(CHANNEL_NAME, theirs.into_handle());
        Ok(ours)
    }

    fn defer(&mut self, e: Error) -> &mut Self {
        self.deferred.get_or_insert(e);
        self
    }

    /// The child's environment: this process's (unless cleared) with the
    /// command's changes applied and the convention's variables removed.
    fn child_env(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = if self.spec.env_clear {
            Vec::new()
        } else {
            std::env::vars_os().collect()
        };
        for (k, v) in &self.spec.env {
            env.retain(|(ek, _)| !sys::spawn::same_var(ek, k));
            if let Some(v) = v {
                env.push((k.clone(), v.clone()));
            }
        }
        env.retain(|(k, _)| {
            !sys::spawn::CONVENTION_VARS
                .iter()
                .any(|c| sys::spawn::same_var(k, OsStr::new(c)))
        });
        env
    }

    /// Spawns the child. The handles passed so far go to it and are closed
    /// here; the command can be spawned again with new handles.
    ///
    /// # References
    /// [sd_listen_fds(3)](https://www.freedesktop.org/software/systemd/man/latest/sd_listen_fds.html),
    /// [`close_range(2)`](https://man7.org/linux/man-pages/man2/close_range.2.html),
    /// [`UpdateProcThreadAttribute`](https://learn.microsoft.com/en-us/windows/win32/api/processthreadsapi/nf-processthreadsapi-updateprocthreadattribute)
    /// (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`)
    pub fn spawn(&mut self) -> Result<Child> {
        if let Some(e) = self.deferred.take() {
            self.handles.clear();
            return Err(e);
        }
        let handles = std::mem::take(&mut self.handles);
        let env = self.child_env();
        let program = self.spec.program.clone();
        let request = sys::spawn::SpawnRequest {
            env,
            handles: handles
                .iter()
                .map(|(name, h)| (h.borrow().into(), name.as_str()))
                .collect(),
        };
        let child = sys::spawn::spawn(&mut self.spec, request).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound
                || e.kind() == std::io::ErrorKind::InvalidInput
            {
                Error::InvalidArgument(format!("{}: {e}", program.to_string_lossy()))
            } else {
                Error::os("spawn", e)
            }
        })?;
        drop(handles);
        Ok(Child {
            inner: child,
            detached: false,
        })
    }

    /// std's command, holding only the settings [`unix::CommandExt`] sets
    /// (the program, arguments, environment, directory and streams always
    /// come from this `Command`).
    #[cfg(unix)]
    pub(crate) fn std_settings(&mut self) -> &mut std::process::Command {
        let program = &self.spec.program;
        self.spec
            .std
            .get_or_insert_with(|| sys::spawn::StdCommand::new(program))
            .as_std_mut()
    }
}

/// Unix-only settings of a [`Command`].
#[cfg(unix)]
pub mod unix {
    /// The settings of std's `os::unix::process::CommandExt` that handoff
    /// does not mirror, on a [`Command`](crate::Command).
    ///
    /// Using any of them starts the child through std (`fork`, std's
    /// settings, then handoff's placement of the handles and the
    /// `pre_exec` hooks in the order they were added) instead of handoff's
    /// own `vfork`-style spawn, which is slower (see BENCHMARKS.md,
    /// `spawn_overhead`).
    pub trait CommandExt: sealed::Sealed {
        /// Runs the child as this user (`setuid`).
        fn uid(&mut self, id: u32) -> &mut crate::Command;
        /// Runs the child with this group (`setgid`).
        fn gid(&mut self, id: u32) -> &mut crate::Command;
        /// Puts the child in this process group; 0 makes a new group led by
        /// the child (`setpgid`).
        fn process_group(&mut self, pgroup: i32) -> &mut crate::Command;
        /// Runs `f` in the child after `fork` and before `exec`; an error
        /// fails the spawn.
        ///
        /// # Safety
        /// As for std's `CommandExt::pre_exec`: `f` runs in a forked copy
        /// of a possibly multi-threaded process, so it must only make
        /// async-signal-safe calls (no allocation, no locks).
        #[allow(unsafe_code)]
        unsafe fn pre_exec<F>(&mut self, f: F) -> &mut crate::Command
        where
            F: FnMut() -> std::io::Result<()> + Send + Sync + 'static;
    }

    mod sealed {
        pub trait Sealed {}
        impl Sealed for crate::Command {}
    }
}

/// Where the program of a spawn is looked for: its name, the child's
/// environment (for `PATH`) and working directory. Both backends search
/// through it; what names a path rather than a bare name, and what makes a
/// candidate runnable, is theirs.
#[cfg_attr(handoff_no_backend, allow(dead_code))]
pub(crate) struct ProgramSearch<'a> {
    pub(crate) program: &'a Path,
    env: &'a [(OsString, OsString)],
    cwd: Option<&'a Path>,
}

#[cfg_attr(handoff_no_backend, allow(dead_code))]
impl<'a> ProgramSearch<'a> {
    /// The search for `spec`'s program in a child whose full environment
    /// is `env`.
    pub(crate) fn new(spec: &'a Spec, env: &'a [(OsString, OsString)]) -> Self {
        ProgramSearch {
            program: Path::new(&spec.program),
            env,
            cwd: spec.cwd.as_deref(),
        }
    }

    /// `p` as the child sees it: a relative path is taken from the child's
    /// working directory, which it changes to before it runs the program.
    pub(crate) fn seen_by_child(&self, p: &Path) -> PathBuf {
        match self.cwd {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_owned(),
        }
    }

    /// Searches each directory of the child's `PATH` (the first variable
    /// `is_path` accepts the name of; `default` when there is none) in
    /// order: `accept` gets the directory joined with the program and
    /// returns what to run, or `None` to go on.
    pub(crate) fn search_path(
        &self,
        is_path: impl Fn(&OsStr) -> bool,
        default: &str,
        accept: impl FnMut(PathBuf) -> Option<PathBuf>,
    ) -> std::io::Result<PathBuf> {
        let path_var = self
            .env
            .iter()
            .find(|(k, _)| is_path(k))
            .map_or(OsStr::new(default), |(_, v)| v.as_os_str());
        std::env::split_paths(path_var)
            .map(|dir| dir.join(self.program))
            .find_map(accept)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} not found in PATH", self.program.display()),
                )
            })
    }
}

/// A spawned child.
///
/// Dropping it reaps the child if it has already exited, so a finished child
/// does not linger as a zombie; a running child is left running.
#[derive(Debug)]
pub struct Child {
    inner: sys::spawn::Child,
    /// Given up to a [`Process`] (`into_process`): reaping is its job now.
    detached: bool,
}

impl Child {
    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// A process handle (a pidfd on Linux, the process handle on Windows)
    /// that becomes readable (signalled) when the child exits; wait on it in
    /// an event loop instead of calling [`wait`](Self::wait). `None` where
    /// the kernel has no pidfds, and in the portable Unix configuration
    /// ([`process`](Self::process) still works there).
    pub fn exit_handle(&self) -> Option<BorrowedHandle<'_>> {
        self.inner.exit_handle().map(BorrowedHandle::from)
    }

    /// Waits for the child to exit and reaps it.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        self.inner
            .wait()
            .map(ExitStatus::from)
            .map_err(|e| Error::os("wait", e))
    }

    /// Reaps the child if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.inner
            .try_wait()
            .map(|s| s.map(ExitStatus::from))
            .map_err(|e| Error::os("wait", e))
    }

    /// A [`Process`] for the child, holding a new handle to it (a duplicate
    /// of the pidfd or process handle; where there is none, one opened by
    /// pid, which is race-free while the child is unreaped).
    pub fn process(&self) -> Result<Process> {
        match self.exit_handle() {
            Some(h) => Ok(Process::from_parts(h.try_clone_to_owned()?, self.id())),
            None => Process::open(self.id()),
        }
    }

    /// Turns the child into a [`Process`]. Unlike dropping the `Child`,
    /// this does not reap a child that has already exited, so
    /// [`Process::wait`] still reads its status; the standard streams not
    /// taken are closed.
    pub fn into_process(mut self) -> Result<Process> {
        let process = self.process()?;
        self.detached = true;
        Ok(process)
    }

    /// Kills the child (`SIGKILL`; `TerminateProcess` on Windows).
    pub fn kill(&mut self) -> Result<()> {
        self.inner.kill().map_err(|e| Error::os("kill", e))
    }

    /// Takes the parent's end of the child's standard input, if it was
    /// [`Stdio::piped`].
    pub fn take_stdin(&mut self) -> Option<Handle> {
        self.inner.take_stdio(0).map(Handle::from)
    }

    /// Takes the parent's end of the child's standard output, if it was
    /// [`Stdio::piped`].
    pub fn take_stdout(&mut self) -> Option<Handle> {
        self.inner.take_stdio(1).map(Handle::from)
    }

    /// Takes the parent's end of the child's standard error, if it was
    /// [`Stdio::piped`].
    pub fn take_stderr(&mut self) -> Option<Handle> {
        self.inner.take_stdio(2).map(Handle::from)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        let _ = self.inner.try_wait();
    }
}
