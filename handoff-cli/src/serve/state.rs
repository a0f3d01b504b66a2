//! What the supervisor's threads share: the generations, the store, and
//! whether a restart is under way, behind one lock with one condition
//! variable that every change of state notifies.

use std::ffi::OsString;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use handoff::process::ExitStatus;
use handoff::Process;

use super::listeners::Named;
use super::store::Store;

/// Fixed for the supervisor's life.
#[derive(Debug)]
pub(crate) struct Config {
    pub command: Vec<OsString>,
    pub ready_timeout: Duration,
    pub drain_timeout: Duration,
    pub stop_signal: i32,
    pub notify_path: std::path::PathBuf,
    pub control_path: std::path::PathBuf,
    /// This binary and its arguments, for re-executing itself.
    pub exe: std::path::PathBuf,
    pub argv: Vec<OsString>,
}

/// Duplicates of the notify and control sockets, kept for handing them
/// to the next image of the supervisor.
#[derive(Debug)]
pub(crate) struct Sockets {
    pub notify: handoff::Handle,
    pub control: handoff::Handle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Started, no `READY=1` yet.
    Starting,
    /// Ready and serving.
    Serving,
    /// Told to stop; waiting for it to exit.
    Draining,
    /// Refused (not ready, crashed, closed its listeners); being killed.
    Failed,
}

impl Phase {
    pub(crate) fn from_name(name: &str) -> Phase {
        match name {
            "starting" => Phase::Starting,
            "serving" => Phase::Serving,
            "draining" => Phase::Draining,
            _ => Phase::Failed,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Serving => "serving",
            Phase::Draining => "draining",
            Phase::Failed => "failed",
        }
    }
}

/// One running generation.
#[derive(Debug)]
pub(crate) struct Generation {
    pub number: u64,
    /// The process spawned.
    pub pid: u32,
    /// The process notifications must come from: `pid`, or `MAINPID=`.
    pub main_pid: u32,
    /// The main process by pidfd, for signals.
    pub main: Arc<Process>,
    /// The process spawned, by pidfd (the main one until `MAINPID=`).
    pub first: Arc<Process>,
    pub phase: Phase,
    pub started: SystemTime,
    pub status_text: Option<String>,
    /// `READY=1` seen.
    pub ready: bool,
    /// `EXTEND_TIMEOUT_USEC=`: the readiness deadline moves to now + this.
    pub extend_until: Option<std::time::Instant>,
}

/// How a generation ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ended {
    pub number: u64,
    pub status: ExitStatus,
    /// It had sent `READY=1`.
    pub was_ready: bool,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub generations: Vec<Generation>,
    pub ended: Vec<Ended>,
    pub next_number: u64,
    pub restarting: bool,
    pub restarts: u64,
    pub shutting_down: bool,
    pub store: Store,
    /// The last flush marker the notify thread has handled.
    pub flushed: u64,
}

impl State {
    pub(crate) fn generation(&mut self, number: u64) -> Option<&mut Generation> {
        self.generations.iter_mut().find(|g| g.number == number)
    }

    pub(crate) fn ended(&self, number: u64) -> Option<Ended> {
        self.ended
            .iter()
            .rev()
            .find(|e| e.number == number)
            .copied()
    }

    /// Records an end, keeping the last few for `status` and restarts.
    pub(crate) fn record_end(&mut self, e: Ended) {
        self.generations.retain(|g| g.number != e.number);
        self.ended.push(e);
        if self.ended.len() > 32 {
            self.ended.remove(0);
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    pub listeners: Vec<Named>,
    pub sockets: Sockets,
    /// Numbers flush markers sent to the notify socket.
    pub flush_seq: std::sync::atomic::AtomicU64,
    state: Mutex<State>,
    pub changed: Condvar,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        listeners: Vec<Named>,
        sockets: Sockets,
        state: State,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            config,
            listeners,
            sockets,
            flush_seq: std::sync::atomic::AtomicU64::new(0),
            state: Mutex::new(state),
            changed: Condvar::new(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for any change, at most until `deadline`.
    pub(crate) fn wait_until<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        deadline: std::time::Instant,
    ) -> MutexGuard<'a, State> {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        self.changed
            .wait_timeout(guard, left)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }
}

/// How an exit reads in one line.
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    if let Some(sig) = status.signal() {
        format!("was killed by signal {sig} ({})", signal_name(sig))
    } else if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else {
        "exited".to_owned()
    }
}

pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        28 => "SIGWINCH",
        _ => "signal",
    }
}

/// `TERM`, `SIGTERM` or a number.
pub(crate) fn parse_signal(s: &str) -> Result<i32, String> {
    let name = s.strip_prefix("SIG").unwrap_or(s);
    let n = match name.to_ascii_uppercase().as_str() {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        "WINCH" => 28,
        _ => s
            .parse()
            .ok()
            .filter(|n| (1..=31).contains(n))
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a signal (TERM, INT, QUIT, HUP, USR1, USR2, WINCH, KILL or 1-31)"
                )
            })?,
    };
    Ok(n)
}

/// Seconds, fractions allowed: `5`, `0.5`.
pub(crate) fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!("{s:?} is not between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}
