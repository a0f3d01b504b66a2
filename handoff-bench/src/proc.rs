//! Child-process plumbing: re-running this binary in a role with one end of
//! a socket as its stdin, pinning both processes to one CPU, and checking
//! how each child ended.
//!
//! The parent never forks: it spawns `current_exe()` with hidden arguments,
//! so each benchmark crosses a real process boundary with nothing shared
//! but the socket.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

use crate::job::Guard;
use crate::workload::Workload;
use crate::Result;

/// The CPU both processes of a pinned benchmark run on.
pub const PIN_CPU: usize = 0;

/// Which library a child speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Hand-written rustix `sendmsg`/`recvmsg` on whatever socket is stdin.
    Raw,
    /// A `handoff::Channel` built from stdin.
    Handoff,
    /// ipc-channel, connected through a one-shot server named on the
    /// command line (ipc-channel cannot adopt an existing socket).
    IpcChannel,
}

impl Role {
    fn arg(self) -> &'static str {
        match self {
            Role::Raw => "raw",
            Role::Handoff => "handoff",
            Role::IpcChannel => "ipc-channel",
        }
    }

    /// The child's thread name (at most 15 bytes).
    pub fn thread_name(self) -> &'static CStr {
        match self {
            Role::Raw => c"hb-raw",
            Role::Handoff => c"hb-handoff",
            Role::IpcChannel => c"hb-ipc-channel",
        }
    }
}

/// A running child. Dropping it without [`Child::wait`] kills it, so an
/// error in the parent never leaves a stray process behind.
/// A benchmark child: killed if dropped before it is waited for.
pub type Child = Guard<std::process::Child>;

/// Starts this binary as a child in `role` doing `work`.
///
/// `stdin` is the child's end of the socket; the `Command` holding the
/// parent's copy of it is dropped before returning, so the child alone owns
/// that end and sees end-of-file when the parent closes its own.
pub fn spawn(
    role: Role,
    work: Workload,
    stdin: Stdio,
    ipc_name: Option<&str>,
    pin: bool,
) -> Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--role")
        .arg(role.arg())
        .arg("--work")
        .arg(work.to_string())
        .stdin(stdin)
        .stdout(Stdio::null());
    if let Some(name) = ipc_name {
        cmd.arg("--ipc-name").arg(name);
    }
    if pin {
        cmd.arg("--pin-cpu").arg(PIN_CPU.to_string());
    }
    let process = cmd
        .spawn()
        .map_err(|e| format!("spawn {} child: {e}", role.arg()))?;
    drop(cmd);
    Ok(Guard::new(process, role.arg()))
}

/// The child's side: its socket end, taken from stdin as an owned,
/// close-on-exec handle.
pub fn stdin_socket() -> io::Result<OwnedFd> {
    io::stdin().as_fd().try_clone_to_owned()
}

/// Pins the calling thread (and every process it spawns afterwards) to `cpu`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).map_err(io::Error::from)
}

/// The parent pinned to [`PIN_CPU`] until dropped, when its previous
/// affinity comes back.
pub struct Pinned {
    previous: CpuSet,
}

impl std::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned").field("cpu", &PIN_CPU).finish()
    }
}

/// Pins the parent to [`PIN_CPU`]; children spawned while the guard lives
/// start there too, and pin themselves again explicitly.
pub fn pin_self() -> Result<Pinned> {
    let previous = sched_getaffinity(None)?;
    pin_to(PIN_CPU)?;
    Ok(Pinned { previous })
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = sched_setaffinity(None, &self.previous);
    }
}
