//! How subcommands that run a command report: CMD's own status passes
//! through, handoff's failures use the statuses `env(1)` uses.

use std::ffi::OsStr;
use std::process::ExitCode;

use handoff::Error;

use crate::{describe, Failure};

/// handoff itself failed before or after running CMD.
pub(crate) const FAILED: u8 = 125;
/// CMD could not be started.
pub(crate) const CANNOT_RUN: u8 = 127;

/// The failure for a command that could not be started.
pub(crate) fn cannot_run(program: &OsStr, e: &Error) -> Failure {
    let why = match e {
        // Already names the program and the system's reason.
        Error::InvalidArgument(text) => text.clone(),
        e => format!("{}: {}", program.to_string_lossy(), describe(e)),
    };
    Failure::new(CANNOT_RUN, format!("cannot run {why}"))
}

/// CMD's status as ours: its code, or 128 + the signal that killed it, as
/// shells report it.
pub(crate) fn exit_code(status: impl Into<handoff::process::ExitStatus>) -> ExitCode {
    let status = status.into();
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(sig)) => ExitCode::from(128u8.wrapping_add(sig as u8)),
        (None, None) => ExitCode::from(FAILED),
    }
}
