//! Running a benchmark: fresh processes for every repetition of every
//! entrant, and the timing loops.
//!
//! Within each repetition the entrants of a benchmark take turns, so a
//! burst of noise on the shared machine is spread over all of them instead
//! of landing on one.

use std::time::{Duration, Instant};

use crate::benches::{Bench, Config, Measure, Own};
use crate::contender::{self, Contender};
use crate::entrants::{entrants, Entrant};
use crate::report::{Entry, Row};
use crate::stats::{self, Figure};
use crate::workload::Workload;
use crate::{describe, pidfd_bench, proc, rpc_bench, spawn_bench, startup_bench, Result};

/// Runs one benchmark and reports the best figure of each side.
///
/// Every repetition of every entrant starts fresh child processes: where
/// the scheduler places a process matters as much as the code under test on
/// a 2-CPU machine, and a long-lived child would carry one lucky or unlucky
/// placement through all its repetitions.
pub fn run(bench: &Bench, cfg: &Config) -> Result<Row> {
    // Pinned before spawning, so the children start on the CPU they will
    // pin themselves to.
    let _pinned = if bench.pinned {
        Some(proc::pin_self()?)
    } else {
        None
    };
    // The benchmarks registered with their own modules.
    if let Measure::Own(own) = bench.measure {
        return match own {
            Own::StartupData => startup_bench::run(bench, cfg),
            Own::Spawn => spawn_bench::run(bench, cfg),
            Own::PidfdGetfd => pidfd_bench::run(bench, cfg),
            Own::RpcRtt => rpc_bench::run_rtt(bench, cfg),
            Own::RpcCalls => rpc_bench::run_calls(bench, cfg),
        };
    }
    let entrants = entrants(bench.measure);
    let plan = Plan::new(bench, cfg, &entrants)?;
    let mut reps = vec![Vec::with_capacity(cfg.reps); entrants.len()];
    for _ in 0..cfg.reps {
        for (e, r) in entrants.iter().zip(&mut reps) {
            r.push(plan.repetition(e)?);
        }
    }
    let entries = entrants
        .iter()
        .zip(&reps)
        .map(|(e, r)| Entry::best_of(e.side, e.label.as_str(), r, bench.measure.better()))
        .collect::<Result<Vec<_>>>()?;
    Row::new(bench, cfg.reps, entries)
}

/// What every repetition of one benchmark does.
struct Plan<'a> {
    bench: &'a Bench,
    cfg: &'a Config,
    /// Messages per batch, for `Fds`.
    messages: usize,
    /// The bytes `Bulk` sends, as long as the largest message.
    bulk_data: Vec<u8>,
}

impl<'a> Plan<'a> {
    fn new(bench: &'a Bench, cfg: &'a Config, entrants: &[Entrant]) -> Result<Plan<'a>> {
        let mut plan = Plan {
            bench,
            cfg,
            messages: 0,
            bulk_data: Vec::new(),
        };
        match bench.measure {
            Measure::Fds { per_message } => {
                let first = entrants.first().ok_or("no entrants")?;
                plan.messages =
                    plan.with_child(first, |c| calibrate_fds(c, per_message, cfg.fd_batch))?;
            }
            Measure::Bulk => {
                let largest = entrants.iter().map(|e| e.chunk).max().unwrap_or(0);
                // Any pattern will do; filled so no page is the shared zero
                // page.
                plan.bulk_data = (0..largest).map(|i| (i % 251) as u8).collect();
            }
            Measure::Rtt { .. } | Measure::Own(_) => {}
        }
        Ok(plan)
    }

    /// Starts `e`'s child, runs `f` against it, and hangs up, checking
    /// that the child exited cleanly.
    fn with_child<T>(
        &self,
        e: &Entrant,
        f: impl FnOnce(&mut dyn Contender) -> Result<T>,
    ) -> Result<T> {
        let work = match self.bench.measure {
            Measure::Fds { .. } => Workload::Fds,
            Measure::Rtt { with_fd } => Workload::Echo { with_fd },
            Measure::Bulk => Workload::Bulk {
                total: self.cfg.bulk_total,
                chunk: e.chunk,
            },
            Measure::Own(_) => return Err("this benchmark runs through its own module".into()),
        };
        let mut c = contender::spawn(e.kind, work, self.bench.pinned)?;
        let outcome = f(c.as_mut());
        let finished = c.finish();
        let value = outcome.map_err(|err| format!("{}: {}", e.label, describe(err.as_ref())))?;
        finished.map_err(|err| format!("{}: {}", e.label, describe(err.as_ref())))?;
        Ok(value)
    }

    /// One measured repetition of `e`, after a short warm-up on the same
    /// processes (first-use allocations, page faults, lazy statics).
    fn repetition(&self, e: &Entrant) -> Result<Figure> {
        self.with_child(e, |c| match self.bench.measure {
            Measure::Fds { per_message } => {
                send_batch(c, per_message, (self.messages / 10).max(1))?;
                fds_batch(c, per_message, self.messages)
            }
            Measure::Rtt { with_fd } => {
                round_trips(c, with_fd, self.cfg.rtt_rounds / 10)?;
                round_trips(c, with_fd, self.cfg.rtt_rounds)
            }
            // A transfer is long enough that its first few messages, the
            // cold ones, do not count.
            Measure::Bulk => bulk(c, &self.bulk_data[..e.chunk], self.cfg.bulk_total),
            Measure::Own(_) => Err("this benchmark runs through its own module".into()),
        })
    }
}

/// How many messages make one batch of about `target` on `c` (the first
/// entrant, a baseline); every entrant then sends the same count.
fn calibrate_fds(c: &mut dyn Contender, per_message: usize, target: Duration) -> Result<usize> {
    let probe = (20_000 / per_message).max(50);
    send_batch(c, per_message, probe)?;
    let t = Instant::now();
    send_batch(c, per_message, probe)?;
    let per_second = probe as f64 / t.elapsed().as_secs_f64();
    Ok(((per_second * target.as_secs_f64()) as usize).clamp(100, 5_000_000))
}

fn send_batch(c: &mut dyn Contender, per_message: usize, messages: usize) -> Result<()> {
    for i in 0..messages {
        c.send_fds(per_message, i + 1 == messages)?;
    }
    c.wait_ack()
}

fn fds_batch(c: &mut dyn Contender, per_message: usize, messages: usize) -> Result<Figure> {
    let t = Instant::now();
    send_batch(c, per_message, messages)?;
    Ok(stats::rate((messages * per_message) as f64, t.elapsed()))
}

/// `rounds` round trips on `c`, each timed (also `rpc_bench`'s raw
/// baseline).
pub fn round_trips(c: &mut dyn Contender, with_fd: bool, rounds: usize) -> Result<Figure> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        c.round_trip(with_fd)?;
        samples.push(t.elapsed());
    }
    Ok(stats::latency(&mut samples))
}

fn bulk(c: &mut dyn Contender, chunk: &[u8], total: u64) -> Result<Figure> {
    let t = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        c.send_bytes(&chunk[..n])?;
        left -= n as u64;
    }
    c.wait_ack()?;
    let mut f = stats::rate(total as f64, t.elapsed());
    f.value /= 1e9;
    Ok(f)
}
