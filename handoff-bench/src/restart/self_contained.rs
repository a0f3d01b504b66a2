//! Self-contained mode: the reference server with no supervisor. It binds
//! its own sockets, and `SIGHUP` makes it start its successor itself
//! (`handoff::restart::handover::start_successor`), hand over its state
//! and connections and exit once the successor is ready. The same load,
//! keep-alive clients and long-lived streams as the supervised run; each
//! restart is a `SIGHUP` to the pid the serving generation wrote, judged
//! by a new pid serving and the old one gone.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::counters::{self, Counters};
use super::handover_stats::{self, Handover};
use super::keepalive::{self, KeepAlive};
use super::load::{Load, Rates, Target};
use super::outcome::{Recorder, Span};
use super::procs;
use super::stream_client::{self, Streams};
use super::supervisor;
use crate::Result;

pub struct SelfRun {
    pub restarts: usize,
    pub ok: usize,
    pub problems: Vec<String>,
    pub span: Span,
    pub counters: Counters,
    pub keepalive: keepalive::Counts,
    pub streams: stream_client::Counts,
    pub handovers: Vec<Handover>,
}

/// What the run puts on the server.
pub struct Work {
    pub restarts: usize,
    pub rates: Rates,
    pub keepalive: (usize, f64),
    pub streams: usize,
}

pub fn run(rt: &tokio::runtime::Runtime, server: &Path, dir: &Path, work: Work) -> Result<SelfRun> {
    let target = Target::local(18120, 18121, dir.join("self.sock"));
    let pid_file = dir.join("self.pid");
    let stats = dir.join("self-stats");
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("self-contained.log"))?;
    let mut first = Command::new(server)
        .env("RESTART_SERVER_SELF_CONTAINED", "1")
        .env("RESTART_SERVER_BIND_HTTP", target.http.to_string())
        .env("RESTART_SERVER_BIND_UDP", target.udp.to_string())
        .env("RESTART_SERVER_BIND_UNIX", &target.unix)
        .env("RESTART_SERVER_PID_FILE", &pid_file)
        .env("RESTART_SERVER_STATS", &stats)
        .env("HANDOFF_GENERATION", "1")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let until = Instant::now() + Duration::from_secs(10);
    while read_pid(&pid_file).is_none() || !supervisor::probe_http(target.http) {
        if Instant::now() > until || matches!(first.try_wait(), Ok(Some(_))) {
            let _ = first.kill();
            let _ = first.wait();
            return Err("the self-contained server did not start (see self-contained.log)".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let before = counters::read()?;
    let recorder = Recorder::new(Instant::now());
    let load = Load::start(rt, &target, work.rates, &recorder)?;
    let (clients, rate) = work.keepalive;
    let kept = KeepAlive::start(rt, target.http, clients, rate, &recorder);
    let streams = Streams::start(
        rt,
        target.unix.clone(),
        work.streams,
        Duration::from_secs(1),
        &recorder,
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut ok = 0;
    let mut problems = Vec::new();
    let mut next_slot = Instant::now();
    for i in 0..work.restarts {
        let now = Instant::now();
        if next_slot > now {
            std::thread::sleep(next_slot - now);
        }
        next_slot = Instant::now() + Duration::from_secs(1);
        match restart(&pid_file) {
            Ok(()) => ok += 1,
            Err(e) => {
                if problems.len() < 5 {
                    problems.push(format!("restart {i}: {e}"));
                }
            }
        }
        // Generation 1 is this process's child: reap it once it is gone.
        let _ = first.try_wait();
    }
    std::thread::sleep(Duration::from_secs(2));
    let streams = streams.stop(rt);
    let keepalive = kept.stop(rt);
    load.stop(rt);
    let after = counters::read()?;
    if let Some(pid) = read_pid(&pid_file) {
        signal(pid, rustix::process::Signal::TERM);
        let until = Instant::now() + Duration::from_secs(5);
        while procs::alive(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(pid, rustix::process::Signal::KILL);
    }
    let _ = first.kill();
    let _ = first.wait();
    let seconds = recorder.snapshot();
    Ok(SelfRun {
        restarts: work.restarts,
        ok,
        problems,
        span: Span::of(&seconds, 0, seconds.len()),
        counters: counters::delta(&before, &after),
        keepalive,
        streams,
        handovers: handover_stats::read(&stats),
    })
}

/// One `SIGHUP` upgrade: a new pid in the pid file within 15 s, and the
/// old process gone within 10 s more.
fn restart(pid_file: &Path) -> std::result::Result<(), String> {
    let old = read_pid(pid_file).ok_or("no pid file")?;
    signal(old, rustix::process::Signal::HUP);
    let until = Instant::now() + Duration::from_secs(15);
    let new = loop {
        match read_pid(pid_file) {
            Some(p) if p != old => break p,
            _ if Instant::now() > until => return Err(format!("pid {old} was not replaced")),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let until = Instant::now() + Duration::from_secs(10);
    while procs::alive(old) {
        if Instant::now() > until {
            return Err(format!("pid {old} still runs beside its successor {new}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}
