//! Child jobs of the benchmarks that run through their own modules
//! (`startup_bench`, `spawn_bench`, `pidfd_bench`, `rpc_bench`): what the
//! hidden `--job` argument names, how a parent starts a child for one, and
//! the guard that never leaves a child behind.
//!
//! A job child is this binary again, run as `--role <role> --job <job>`;
//! the role only names the process (`hb-raw`, `hb-handoff`, …) and the job
//! says what it does.

use handoff::process::ExitStatus;
use std::ffi::CStr;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::proc::{self, Role};
use crate::{pidfd_bench, rpc_bench, spawn_bench, startup_bench, Result};

/// How long a child may take to exit once its work is done.
const EXIT_GRACE: Duration = Duration::from_secs(20);

/// How the raw baseline's child reads the startup data it got on stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawRead {
    /// `mmap` read-only, faulting pages in as they are read.
    Map,
    /// `mmap` read-only with `MAP_POPULATE`.
    Populate,
    /// No mapping: `pread` into a 1 MiB buffer.
    Read,
}

/// What a job child does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Exits at once (the `spawn_overhead` baseline's child).
    Exit,
    /// Claims `handles` named handles (`h0`, `h1`, …) and, with `data`,
    /// the startup data, then exits.
    Claim { handles: usize, data: bool },
    /// Validates and sums the sealed memfd on stdin; prints the sum.
    StartupRaw(RawRead),
    /// Claims handoff startup data (`None`: `startup_data()`, else
    /// `open_with(populate)`), sums it and prints the sum.
    StartupHandoff { populate: Option<bool> },
    /// Receives ipc-channel shared memory through the one-shot server
    /// `name`, sums it and prints the sum.
    StartupIpc { name: String },
    /// Opens `count` handles, prints their numbers, and holds them until
    /// stdin ends.
    Hold { count: usize },
    /// Serves the bench RPC interface on the connections that arrive on
    /// the control channel (stdin), on a current-thread tokio runtime
    /// (`threads` = 0) or a multi-thread one.
    RpcServer { threads: usize },
    /// Echoes one byte on every socket that arrives on the control
    /// channel, with one `epoll` loop.
    EpollServer,
    /// A closed-loop client of `rpc_calls_64_clients` (raw ping-pong or
    /// RPC `echo`), driven through the control channel on stdin.
    Client { rpc: bool },
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Job::Exit => f.write_str("exit"),
            Job::Claim { handles, data } => write!(f, "claim:{handles}:{}", u8::from(*data)),
            Job::StartupRaw(read) => f.write_str(match read {
                RawRead::Map => "startup-raw:map",
                RawRead::Populate => "startup-raw:populate",
                RawRead::Read => "startup-raw:read",
            }),
            Job::StartupHandoff { populate } => f.write_str(match populate {
                None => "startup-handoff:default",
                Some(true) => "startup-handoff:populate",
                Some(false) => "startup-handoff:lazy",
            }),
            Job::StartupIpc { name } => write!(f, "startup-ipc:{name}"),
            Job::Hold { count } => write!(f, "hold:{count}"),
            Job::RpcServer { threads } => write!(f, "rpc-server:{threads}"),
            Job::EpollServer => f.write_str("epoll-server"),
            Job::Client { rpc } => f.write_str(if *rpc { "client:rpc" } else { "client:raw" }),
        }
    }
}

impl FromStr for Job {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let (head, rest) = s.split_once(':').unwrap_or((s, ""));
        let number = |v: &str| v.parse::<usize>().map_err(|e| format!("job {s:?}: {e}"));
        let job = match (head, rest) {
            ("exit", "") => Job::Exit,
            ("claim", rest) => {
                let (handles, data) = rest.split_once(':').ok_or(format!("job {s:?}"))?;
                Job::Claim {
                    handles: number(handles)?,
                    data: data == "1",
                }
            }
            ("startup-raw", "map") => Job::StartupRaw(RawRead::Map),
            ("startup-raw", "populate") => Job::StartupRaw(RawRead::Populate),
            ("startup-raw", "read") => Job::StartupRaw(RawRead::Read),
            ("startup-handoff", "default") => Job::StartupHandoff { populate: None },
            ("startup-handoff", "populate") => Job::StartupHandoff {
                populate: Some(true),
            },
            ("startup-handoff", "lazy") => Job::StartupHandoff {
                populate: Some(false),
            },
            ("startup-ipc", name) if !name.is_empty() => Job::StartupIpc {
                name: name.to_owned(),
            },
            ("hold", count) => Job::Hold {
                count: number(count)?,
            },
            ("rpc-server", threads) => Job::RpcServer {
                threads: number(threads)?,
            },
            ("epoll-server", "") => Job::EpollServer,
            ("client", "rpc") => Job::Client { rpc: true },
            ("client", "raw") => Job::Client { rpc: false },
            _ => return Err(format!("unknown job {s:?}")),
        };
        Ok(job)
    }
}

impl Job {
    /// The child's thread name (at most 15 bytes), for `top` and `perf`.
    fn thread_name(&self) -> &'static CStr {
        match self {
            Job::Exit | Job::Claim { .. } => c"hb-spawned",
            Job::StartupRaw(_) => c"hb-startup-raw",
            Job::StartupHandoff { .. } => c"hb-startup-hof",
            Job::StartupIpc { .. } => c"hb-startup-ipc",
            Job::Hold { .. } => c"hb-holder",
            Job::RpcServer { .. } => c"hb-rpc-server",
            Job::EpollServer => c"hb-epoll-server",
            Job::Client { rpc: true } => c"hb-rpc-client",
            Job::Client { rpc: false } => c"hb-raw-client",
        }
    }
}

/// The child side: runs `job` (after pinning to `pin_cpu`).
pub fn run(role: Role, job: &Job, pin_cpu: Option<usize>) -> Result<()> {
    if let Some(cpu) = pin_cpu {
        proc::pin_to(cpu)?;
    }
    let _ = rustix::thread::set_name(match job {
        Job::Exit | Job::Claim { .. } => role.thread_name(),
        _ => job.thread_name(),
    });
    match job {
        Job::Exit => Ok(()),
        Job::Claim { handles, data } => spawn_bench::claim(*handles, *data),
        Job::StartupRaw(read) => startup_bench::child_raw(*read),
        Job::StartupHandoff { populate } => startup_bench::child_handoff(*populate),
        Job::StartupIpc { name } => startup_bench::child_ipc(name),
        Job::Hold { count } => pidfd_bench::hold(*count),
        Job::RpcServer { threads } => rpc_bench::serve(*threads),
        Job::EpollServer => rpc_bench::epoll_serve(),
        Job::Client { rpc } => rpc_bench::client(*rpc),
    }
}

fn role_arg(role: Role) -> &'static str {
    match role {
        Role::Raw => "raw",
        Role::Handoff => "handoff",
        Role::IpcChannel => "ipc-channel",
    }
}

/// The arguments that make this binary run `job`.
fn args(role: Role, job: &Job, pin: bool) -> Vec<String> {
    let mut args = vec![
        "--role".to_owned(),
        role_arg(role).to_owned(),
        "--job".to_owned(),
        job.to_string(),
    ];
    if pin {
        args.push("--pin-cpu".to_owned());
        args.push(proc::PIN_CPU.to_string());
    }
    args
}

/// A std command that runs `job` in a child (stdio inherited unless the
/// caller changes it).
pub fn command(role: Role, job: &Job, pin: bool) -> Result<std::process::Command> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(args(role, job, pin));
    Ok(cmd)
}

/// The same as a `handoff::Command`.
pub fn handoff_command(role: Role, job: &Job, pin: bool) -> Result<handoff::Command> {
    let mut cmd = handoff::Command::new(std::env::current_exe()?);
    cmd.args(args(role, job, pin));
    Ok(cmd)
}

/// A child process of either kind.
pub trait Process {
    fn try_reap(&mut self) -> Result<Option<ExitStatus>>;
    fn kill_now(&mut self);
}

impl Process for std::process::Child {
    fn try_reap(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.try_wait()?.map(ExitStatus::from))
    }

    fn kill_now(&mut self) {
        let _ = self.kill();
        let _ = self.wait();
    }
}

impl Process for handoff::Child {
    fn try_reap(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.try_wait()?)
    }

    fn kill_now(&mut self) {
        let _ = self.kill();
        let _ = self.wait();
    }
}

/// A running child that is killed if dropped before [`Guard::wait`], so an
/// error in the parent never leaves a process behind.
#[derive(Debug)]
pub struct Guard<P: Process> {
    child: Option<P>,
    what: &'static str,
}

impl<P: Process> Guard<P> {
    pub fn new(child: P, what: &'static str) -> Guard<P> {
        Guard {
            child: Some(child),
            what,
        }
    }

    /// The child, to take its pipes or read its pid.
    pub fn get_mut(&mut self) -> &mut P {
        self.child.as_mut().expect("present until waited for")
    }

    /// True once the child has exited.
    pub fn has_exited(&mut self) -> Result<bool> {
        Ok(self.get_mut().try_reap()?.is_some())
    }

    /// Waits for the child to exit and fails if it failed or hangs.
    pub fn wait(mut self) -> Result<()> {
        let mut child = self.child.take().expect("present until waited for");
        let deadline = Instant::now() + EXIT_GRACE;
        loop {
            if let Some(status) = child.try_reap()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("{} child failed: {status}", self.what).into())
                };
            }
            if Instant::now() > deadline {
                child.kill_now();
                return Err(format!("{} child did not exit; killed it", self.what).into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl<P: Process> Drop for Guard<P> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_the_command_line() {
        for job in [
            Job::Exit,
            Job::Claim {
                handles: 8,
                data: true,
            },
            Job::Claim {
                handles: 0,
                data: false,
            },
            Job::StartupRaw(RawRead::Map),
            Job::StartupRaw(RawRead::Populate),
            Job::StartupRaw(RawRead::Read),
            Job::StartupHandoff { populate: None },
            Job::StartupHandoff {
                populate: Some(false),
            },
            Job::StartupIpc {
                name: "/tmp/x:y/socket".into(),
            },
            Job::Hold { count: 10_000 },
            Job::RpcServer { threads: 2 },
            Job::EpollServer,
            Job::Client { rpc: true },
            Job::Client { rpc: false },
        ] {
            assert_eq!(job.to_string().parse::<Job>(), Ok(job));
        }
        assert!("hold".parse::<Job>().is_err());
        assert!("startup-ipc:".parse::<Job>().is_err());
    }
}
