//! `spawn_overhead`: spawn and wait of a trivial child, this binary again.
//!
//! * **Baseline**: `std::process::Command` spawn + wait of a child that
//!   exits at once, nothing passed.
//! * **handoff**: `handoff::Command` with 8 handles (`/dev/null`
//!   duplicates) and 4 KiB of startup data; the child claims every handle
//!   and validates and maps the startup data (`Inherited::from_env`,
//!   `take`, `startup_data`), then exits.
//! * **Experiments**: `handoff::Command` passing nothing, only the 8
//!   handles, only the 4 KiB; and `std::process::Command` with a no-op
//!   `pre_exec` hook. A hook makes std `fork` instead of `posix_spawn`
//!   (`CLONE_VM | CLONE_VFORK`), and `handoff::Command` always installs
//!   one, so these split handoff's cost into "fork instead of vfork", the
//!   handles and the data.
//!
//! The contenders take turns spawn by spawn, so noise spreads evenly; the
//! figure is the median (and p99) time of one spawn + wait.

use std::time::Instant;

use crate::benches::{Bench, Config};
use crate::entrants::Side;
use crate::job::{self, Job};
use crate::proc::Role;
use crate::report::{Entry, Row};
use crate::stats::{self, Better, Figure};
use crate::{handles, mapping, Result};

/// Handles handoff passes per spawn.
const HANDLES: usize = 8;
/// Bytes of startup data handoff passes per spawn.
const STARTUP_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy)]
enum How {
    Std,
    StdForked,
    Handoff { handles: usize, data: bool },
}

/// Runs `spawn_overhead`.
pub fn run(bench: &Bench, cfg: &Config) -> Result<Row> {
    let entrants = [
        (Side::Baseline, "std::process::Command", How::Std),
        (
            Side::Handoff,
            "handoff::Command, 8 handles + 4 KiB",
            How::Handoff {
                handles: HANDLES,
                data: true,
            },
        ),
        (
            Side::Experiment,
            "handoff::Command, nothing passed",
            How::Handoff {
                handles: 0,
                data: false,
            },
        ),
        (
            Side::Experiment,
            "handoff::Command, 8 handles",
            How::Handoff {
                handles: HANDLES,
                data: false,
            },
        ),
        (
            Side::Experiment,
            "handoff::Command, 4 KiB",
            How::Handoff {
                handles: 0,
                data: true,
            },
        ),
        (
            Side::Experiment,
            "std::process::Command + pre_exec (fork)",
            How::StdForked,
        ),
    ];
    let spawner = Spawner::new()?;
    for (_, _, how) in &entrants {
        spawner.once(*how)?;
    }
    let mut reps: Vec<Vec<Figure>> = vec![Vec::with_capacity(cfg.reps); entrants.len()];
    for _ in 0..cfg.reps {
        let mut samples = vec![Vec::with_capacity(cfg.spawns); entrants.len()];
        for _ in 0..cfg.spawns {
            for ((_, _, how), s) in entrants.iter().zip(&mut samples) {
                let t = Instant::now();
                spawner.once(*how)?;
                s.push(t.elapsed());
            }
        }
        for (s, r) in samples.iter_mut().zip(&mut reps) {
            r.push(stats::latency(s));
        }
    }
    let entries = entrants
        .iter()
        .zip(&reps)
        .map(|((side, label, _), r)| Entry::best_of(*side, *label, r, Better::Lower))
        .collect::<Result<Vec<_>>>()?;
    Row::new(bench, cfg.reps, entries)
}

struct Spawner {
    names: Vec<String>,
    handles: Vec<std::os::fd::BorrowedFd<'static>>,
    data: Vec<u8>,
}

impl Spawner {
    fn new() -> Result<Spawner> {
        Ok(Spawner {
            names: (0..HANDLES).map(|i| format!("h{i}")).collect(),
            handles: handles::borrowed()?,
            data: (0..STARTUP_BYTES).map(|i| i as u8).collect(),
        })
    }

    /// One spawn and wait, building the command as a program would.
    fn once(&self, how: How) -> Result<()> {
        let status: handoff::process::ExitStatus = match how {
            How::Std => job::command(Role::Raw, &Job::Exit, false)?
                .spawn()?
                .wait()?
                .into(),
            How::StdForked => {
                let mut cmd = job::command(Role::Raw, &Job::Exit, false)?;
                mapping::force_fork(&mut cmd);
                cmd.spawn()?.wait()?.into()
            }
            How::Handoff { handles, data } => {
                let mut cmd =
                    job::handoff_command(Role::Handoff, &Job::Claim { handles, data }, false)?;
                for (name, h) in self.names.iter().zip(&self.handles).take(handles) {
                    cmd.handle(name, h);
                }
                if data {
                    cmd.startup_data(&self.data);
                }
                cmd.spawn()?.wait()?
            }
        };
        if !status.success() {
            return Err(format!("spawned child failed: {status}").into());
        }
        Ok(())
    }
}

/// The handoff child: claims everything it was given, then exits.
pub fn claim(handles: usize, data: bool) -> Result<()> {
    let mut inherited = handoff::Inherited::from_env()?;
    for i in 0..handles {
        drop(inherited.take(&format!("h{i}"))?);
    }
    if data {
        let data = inherited.startup_data()?;
        if data.bytes().len() != STARTUP_BYTES {
            return Err(format!("{} bytes of startup data", data.bytes().len()).into());
        }
    }
    Ok(())
}
