//! Large state per restart: the reference server under `handoff serve`
//! with a cache of the given size, restarted a few times without load;
//! each handover seals the cache (with the UDP flows) as state, the new
//! generation validates every byte (CRC) before it says it is ready. In
//! the same run, the same number of bytes is copied once through a pipe
//! to a process that reads them, the way a service without shared memory
//! would pass them on.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::handover_stats::{self, Handover};
use super::load::Target;
use super::supervisor::{self, Supervisor, Timeouts};
use crate::Result;

pub struct StateRun {
    pub bytes: u64,
    pub restarts: usize,
    pub ok: usize,
    pub handovers: Vec<Handover>,
    /// One copy of `bytes` through a pipe, each run.
    pub pipe_ms: Vec<f64>,
    pub problems: Vec<String>,
}

pub fn run(
    handoff: &Path,
    server: &Path,
    dir: &Path,
    bytes: u64,
    restarts: usize,
) -> Result<StateRun> {
    let target = Target::local(18130, 18131, dir.join("state.sock"));
    let stats = dir.join("state-stats");
    let size = bytes.to_string();
    let mut sup = Supervisor::start(
        handoff,
        &supervisor::listens(&target),
        &dir.join("state-control.sock"),
        // Generation 1 fills its cache and every later one checks all of
        // it before it is ready: seconds for a gigabyte on a busy machine.
        Timeouts {
            ready: 30,
            drain: 5,
        },
        &[server.as_os_str()],
        &[
            ("RESTART_SERVER_STATE_BYTES", size.as_ref()),
            ("RESTART_SERVER_STATS", stats.as_os_str()),
        ],
        &dir.join("state.log"),
    )?;
    sup.wait_serving(Duration::from_secs(60), || {
        supervisor::probe_http(target.http)
    })?;
    let mut ok = 0;
    let mut problems = Vec::new();
    for i in 0..restarts {
        // Generation 1 answers while it still fills its cache, before it
        // says it is ready; a restart is refused until then.
        let until = Instant::now() + Duration::from_secs(60);
        let t = loop {
            let t = sup.restart(&[]);
            if t.ok || !t.line.contains("already under way") || Instant::now() > until {
                break t;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if t.ok {
            ok += 1;
        } else {
            problems.push(format!("restart {i}: {}", t.line));
        }
    }
    sup.stop(Duration::from_secs(7));
    let pipe_ms = (0..restarts)
        .map(|_| pipe_copy(bytes))
        .collect::<std::io::Result<Vec<f64>>>()?;
    Ok(StateRun {
        bytes,
        restarts,
        ok,
        handovers: handover_stats::read(&stats),
        pipe_ms,
        problems,
    })
}

/// Set (to the byte count) in the receiving process of a pipe copy.
const SINK: &str = "HANDOFF_RESTART_PIPE_SINK";

/// The receiving side: reads the announced bytes from standard input into
/// memory of its own, as a successor that needs the state would, and
/// exits 0 only if all of them came.
pub fn pipe_sink_main() -> Option<std::process::ExitCode> {
    use std::io::Read;
    let want: usize = std::env::var(SINK).ok()?.parse().ok()?;
    let mut held = vec![0u8; want];
    let ok = std::io::stdin().lock().read_exact(&mut held).is_ok();
    Some(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Milliseconds to copy `bytes` through a pipe into another process's
/// memory, from the start of that process until it has them all and has
/// exited. The sender writes from memory of its own of the same size,
/// as a generation holding the state would.
fn pipe_copy(bytes: u64) -> std::io::Result<f64> {
    let state: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    let started = Instant::now();
    let mut reader = Command::new(std::env::current_exe()?)
        .env(SINK, bytes.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut pipe = reader.stdin.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
    pipe.write_all(&state)?;
    drop(pipe);
    let status = reader.wait()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "the pipe's reader: {status}"
        )));
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

impl StateRun {
    /// The handovers of this run that carried the large state.
    pub fn median_state_ms(&self) -> f64 {
        handover_stats::quantile(self.handovers.iter().map(Handover::state_ms), 0.5)
    }

    pub fn median_pipe_ms(&self) -> f64 {
        handover_stats::quantile(self.pipe_ms.iter().copied(), 0.5)
    }

    pub fn summary(&self) -> String {
        let each: Vec<String> = self
            .handovers
            .iter()
            .map(|h| format!("{:.0}", h.state_ms()))
            .collect();
        let pipes: Vec<String> = self.pipe_ms.iter().map(|m| format!("{m:.0}")).collect();
        format!(
            "{} MiB: {}/{} restarts, handed over and validated in {} ms (median {:.0}); one pipe copy {} ms (median {:.0})",
            self.bytes >> 20,
            self.ok,
            self.restarts,
            each.join(", "),
            self.median_state_ms(),
            pipes.join(", "),
            self.median_pipe_ms()
        )
    }
}
