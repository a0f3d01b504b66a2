//! `pidfd_getfd`: handles per second copied out of another process.
//!
//! A holder child opens N handles (duplicates of one `/dev/null`) and
//! prints their numbers. The parent opens one pidfd for it with
//! `handoff::Process::open`, then copies every handle out and closes the
//! copy at once:
//!
//! * **Baseline**: `rustix::process::pidfd_getfd` on that pidfd, then drop.
//! * **handoff**: `Process::pull_handle`, then drop.
//!
//! Each repetition starts a fresh holder; inside it, after one warm-up
//! pass each, three passes over all the handles in which the two take
//! turns every 500 handles; the best pass counts.

use std::io::{BufRead, BufReader, Read, Write as _};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{PidfdGetfdFlags, Resource, Rlimit};

use crate::benches::{Bench, Config};
use crate::entrants::Side;
use crate::job::{self, Guard, Job};
use crate::proc::Role;
use crate::report::{Entry, Row};
use crate::stats::{self, Better, Figure};
use crate::Result;

/// Measured passes over all the handles per holder.
const PASSES: usize = 3;
/// Handles each contender pulls before the other takes its turn.
const CHUNK: usize = 500;

/// Runs `pidfd_getfd`.
pub fn run(bench: &Bench, cfg: &Config) -> Result<Row> {
    let n = cfg.pidfd_handles;
    let mut raw = Vec::new();
    let mut with_handoff = Vec::new();
    for _ in 0..cfg.reps {
        let mut cmd = job::command(Role::Raw, &Job::Hold { count: n }, false)?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut holder = Guard::new(cmd.spawn()?, "handle holder");
        let stdin = holder.get_mut().stdin.take().ok_or("no stdin")?;
        let stdout = holder.get_mut().stdout.take().ok_or("no stdout")?;
        let mut numbers = Vec::with_capacity(n);
        for line in BufReader::new(stdout).lines().take(n) {
            numbers.push(line?.trim().parse::<i32>()?);
        }
        if numbers.len() != n {
            return Err(format!("the holder reported {} handles of {n}", numbers.len()).into());
        }
        let process = handoff::Process::open(holder.get_mut().id())?;
        pass_raw(&process, &numbers)?;
        pass_handoff(&process, &numbers)?;
        for _ in 0..PASSES {
            // The two take turns every CHUNK handles, so a burst of noise
            // on the shared machine lands on both.
            let (mut raw_time, mut handoff_time) = (Duration::ZERO, Duration::ZERO);
            for chunk in numbers.chunks(CHUNK) {
                let t = Instant::now();
                pass_raw(&process, chunk)?;
                raw_time += t.elapsed();
                let t = Instant::now();
                pass_handoff(&process, chunk)?;
                handoff_time += t.elapsed();
            }
            raw.push(stats::rate(n as f64, raw_time));
            with_handoff.push(stats::rate(n as f64, handoff_time));
        }
        // End of stdin tells the holder to exit.
        drop(stdin);
        holder.wait()?;
    }
    let entry = |side, label: &str, r: &[Figure]| Entry::best_of(side, label, r, Better::Higher);
    Row::new(
        bench,
        cfg.reps,
        vec![
            entry(Side::Baseline, "rustix pidfd_getfd + close", &raw)?,
            entry(Side::Handoff, "Process::pull_handle + drop", &with_handoff)?,
        ],
    )
}

fn pass_raw(process: &handoff::Process, numbers: &[i32]) -> Result<()> {
    let pidfd = process.as_fd();
    for &n in numbers {
        drop(rustix::process::pidfd_getfd(
            pidfd,
            n,
            PidfdGetfdFlags::empty(),
        )?);
    }
    Ok(())
}

fn pass_handoff(process: &handoff::Process, numbers: &[i32]) -> Result<()> {
    for &n in numbers {
        drop(process.pull_handle(n)?);
    }
    Ok(())
}

/// The holder child: opens `count` handles, prints their numbers one per
/// line, and keeps them open until stdin ends.
pub fn hold(count: usize) -> Result<()> {
    let want = count as u64 + 64;
    let limit = rustix::process::getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < want) {
        let raised = limit.maximum.map_or(want, |m| m.min(want));
        rustix::process::setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            },
        )?;
    }
    let null = std::fs::File::open("/dev/null")?;
    let mut held = Vec::with_capacity(count);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..count {
        let fd = null.as_fd().try_clone_to_owned()?;
        writeln!(out, "{}", std::os::fd::AsRawFd::as_raw_fd(&fd))?;
        held.push(fd);
    }
    out.flush()?;
    drop(out);
    std::io::stdin().read_to_end(&mut Vec::new())?;
    drop(held);
    Ok(())
}
