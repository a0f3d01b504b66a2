//! No spawning.

use std::ffi::{OsStr, OsString};
use std::io;
use std::process::ExitStatus;

use super::{unsupported, BorrowedRaw, Never, OwnedRaw};
use crate::spawn::Spec;
use crate::stdio::StdioKind;

/// The Unix convention's names, so that the portable environment filtering
/// behaves as it would on a working backend.
pub(crate) const CONVENTION_VARS: &[&str] = &["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];
pub(crate) const HANDLES_VAR: &str = "LISTEN_FDS";

/// Removes the convention's variables from this process's environment once
/// the handles are claimed, so children spawned by other means do not see
/// them. Changing the environment is not thread-safe on Unix (and `unsafe`
/// from edition 2024), so it happens here, in the backend.
pub(crate) fn forget_convention_vars() {
    for var in CONVENTION_VARS {
        std::env::remove_var(var);
    }
}

pub(crate) fn same_var(a: &OsStr, b: &OsStr) -> bool {
    a == b
}

/// What the caller hands to [`spawn`] besides the command.
pub(crate) struct SpawnRequest<'a> {
    pub env: Vec<(OsString, OsString)>,
    pub handles: Vec<(BorrowedRaw<'a>, &'a str)>,
}

pub(crate) fn spawn(spec: &mut Spec, req: SpawnRequest<'_>) -> io::Result<Child> {
    // A backend reads all of these; reading them here keeps the compiler
    // checking that the portable side still provides them.
    let _ = (&req.env, &req.handles);
    for stdio in spec.stdio.iter().flatten() {
        if let StdioKind::Handle(h) = &stdio.0 {
            let _ = h;
        }
    }
    Err(unsupported())
}

/// There are no children.
#[derive(Debug)]
pub(crate) struct Child(Never);

impl Child {
    pub(crate) fn id(&self) -> u32 {
        match self.0 {}
    }

    pub(crate) fn exit_handle(&self) -> Option<BorrowedRaw<'_>> {
        match self.0 {}
    }

    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        match self.0 {}
    }

    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.0 {}
    }

    pub(crate) fn kill(&mut self) -> io::Result<()> {
        match self.0 {}
    }

    pub(crate) fn take_stdio(&mut self, _which: u8) -> Option<OwnedRaw> {
        match self.0 {}
    }
}

no_backend_fns! {
    #[cfg(windows)]
    fn parent_pid() -> io::Result<u32>;
}

/// std's command behind `spawn::unix::CommandExt`; never run here.
#[cfg(unix)]
#[derive(Debug)]
pub(crate) struct StdCommand(std::process::Command);

#[cfg(unix)]
impl StdCommand {
    pub(crate) fn new(program: &OsStr) -> StdCommand {
        StdCommand(std::process::Command::new(program))
    }

    pub(crate) fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.0
    }
}
