//! `handoff grab PID FD [--access r|w|rw] [--as N | --stdin | --stdout] -- CMD [ARGS...]`:
//! pull a handle out of another process and run a command with it.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;

use handoff::{Access, Error, Handle, Process};

use crate::status::{cannot_run, exit_code, CANNOT_RUN, FAILED};
use crate::Failure;

/// The handle's name in `LISTEN_FDNAMES` when it goes to descriptor 3.
const LISTEN_NAME: &str = "grabbed";

#[derive(Debug, clap::Args)]
#[command(after_help = "\
The handle is copied (pidfd_getfd, Linux 5.6+): PID keeps its own. That needs \
ptrace-attach rights over PID (same uid and not non-dumpable, or CAP_SYS_PTRACE).

Exit status: CMD's, or 128+N if signal N killed it; 125 if handoff could not \
pull or place the handle; 127 if CMD could not be started.")]
pub(crate) struct Args {
    /// The process holding the handle.
    #[arg(value_parser = crate::args::pid, allow_negative_numbers = true)]
    pid: u32,
    /// The handle's number in that process (see `handoff ls PID`).
    #[arg(value_parser = crate::args::fd, allow_negative_numbers = true)]
    fd: i32,
    /// Narrow the handle first (files and shared memory; enforced by the kernel).
    #[arg(long, value_name = "r|w|rw", value_parser = crate::args::access)]
    access: Option<Access>,
    /// Give it to CMD as descriptor N [default: 3, announced with LISTEN_FDS=1,
    /// LISTEN_PID and LISTEN_FDNAMES=grabbed as systemd does]. Above 3, CMD
    /// also inherits whatever handoff itself inherited.
    #[arg(
        long = "as",
        value_name = "N",
        value_parser = crate::args::fd,
        conflicts_with_all = ["stdin", "stdout"]
    )]
    as_fd: Option<i32>,
    /// Give it to CMD as its standard input.
    #[arg(long, conflicts_with = "stdout")]
    stdin: bool,
    /// Give it to CMD as its standard output.
    #[arg(long)]
    stdout: bool,
    /// The command to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Where CMD finds the handle.
#[derive(Debug, Clone, Copy)]
enum Place {
    Stdio(u8),
    Listen,
    Fd(i32),
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Failure> {
    let place = if args.stdin {
        Place::Stdio(0)
    } else if args.stdout {
        Place::Stdio(1)
    } else {
        match args.as_fd.unwrap_or(3) {
            n @ 0..=2 => Place::Stdio(n as u8),
            3 => Place::Listen,
            n => Place::Fd(n),
        }
    };
    let Some((program, rest)) = args.command.split_first() else {
        return Err(Failure::new(2, "no command given after --"));
    };
    let handle = pull(args.pid, args.fd, args.access)?;
    let status = match place {
        Place::Fd(n) => run_at(program, rest, handle, n)?.into(),
        place => run_with_library(program, rest, handle, place)?,
    };
    Ok(exit_code(status))
}

/// The handle, copied out of `pid` and narrowed if asked. The pidfd is
/// closed before returning, so it does not occupy a low number.
fn pull(pid: u32, fd: i32, access: Option<Access>) -> Result<Handle, Failure> {
    let failed = |e: Error| Failure::from_error(FAILED, &e);
    let handle = Process::open(pid)
        .and_then(|p| p.pull_handle(fd))
        .map_err(failed)?;
    match access {
        Some(a) => handle.restrict(a).map_err(failed),
        None => Ok(handle),
    }
}

/// Runs CMD through the library's spawn, which passes only the chosen
/// handles. `LISTEN_PID` must be CMD's own pid, known only after `fork`;
/// `handoff::Command` writes it between `fork` and `exec` without
/// allocating, so this crate needs neither a re-exec shim nor unsafe code.
fn run_with_library(
    program: &OsStr,
    rest: &[OsString],
    handle: Handle,
    place: Place,
) -> Result<handoff::process::ExitStatus, Failure> {
    let mut cmd = handoff::Command::new(program);
    cmd.args(rest);
    match place {
        Place::Stdio(0) => cmd.stdin(handle),
        Place::Stdio(1) => cmd.stdout(handle),
        Place::Stdio(_) => cmd.stderr(handle),
        Place::Listen | Place::Fd(_) => cmd.handle_owned(LISTEN_NAME, handle),
    };
    let mut child = cmd.spawn().map_err(|e| cannot_run(program, &e))?;
    child.wait().map_err(|e| Failure::from_error(FAILED, &e))
}

/// Runs CMD with the handle at descriptor `n` > 3, outside the range the
/// library's spawn assigns. The number must be free in this process: the
/// handle is duplicated onto it and made inheritable, and std's spawn
/// keeps every descriptor that is not close-on-exec. handoff runs no other
/// thread, so no other child can catch it.
fn run_at(
    program: &OsStr,
    rest: &[OsString],
    handle: Handle,
    n: i32,
) -> Result<std::process::ExitStatus, Failure> {
    let placed: OwnedFd = if handle.raw() == n {
        handle.into()
    } else {
        let dup = rustix::io::fcntl_dupfd_cloexec(&handle, n).map_err(|e| match e {
            rustix::io::Errno::INVAL => Failure::new(
                FAILED,
                format!("descriptor {n} is above this process's limit of open files"),
            ),
            e => Failure::new(FAILED, format!("placing the handle at {n}: {e}")),
        })?;
        if dup.as_raw_fd() != n {
            return Err(Failure::new(
                FAILED,
                format!("descriptor {n} is already open in handoff itself (inherited from its caller?); choose another with --as"),
            ));
        }
        dup
    };
    rustix::io::fcntl_setfd(&placed, rustix::io::FdFlags::empty())
        .map_err(|e| Failure::new(FAILED, format!("making descriptor {n} inheritable: {e}")))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    // The convention's variables would describe descriptors CMD does not
    // have.
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().map_err(|e| {
        Failure::new(
            CANNOT_RUN,
            format!("cannot run {}: {e}", program.to_string_lossy()),
        )
    })?;
    drop(placed);
    child.wait().map_err(|e| {
        Failure::new(
            FAILED,
            format!("waiting for {}: {e}", program.to_string_lossy()),
        )
    })
}
