//! The campaign's phases, in order: capacity, baseline load, load with
//! restarts, large state, the self-contained mode under the same load, the
//! negative control, gunicorn; then the checks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::counters::{self, Counters};
use super::handover_stats;
use super::keepalive::KeepAlive;
use super::load::{self, Load, Rates, Target};
use super::naive::{self, Naive};
use super::outcome::{Outcome, Recorder, Span, PROTOS};
use super::plot::{self, Mark, MarkKind};
use super::procs;
use super::report::{self, Check, Report};
use super::self_contained;
use super::state_phase;
use super::stream_client::Streams;
use super::supervisor::{self, Supervisor, Timeouts};
use crate::Result;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
struct Size {
    restarts: usize,
    bad: usize,
    supervisor: usize,
    baseline: Duration,
    capacity: Duration,
    naive_restarts: usize,
    gunicorn_restarts: usize,
    rates: Rates,
    /// Keep-alive HTTP clients and their requests a second in all.
    keepalive: (usize, f64),
    /// Long-lived Unix streams, one line a second each.
    streams: usize,
    /// Bad versions of the handover itself (`HANDOVER_BAD`), beside the
    /// supervisor's (`bad`).
    handover_bad: usize,
    /// Restarts of the self-contained server.
    self_contained: usize,
    /// The large-state phase: bytes of state, restarts.
    big_state: (u64, usize),
}

impl Size {
    fn new(quick: bool) -> Size {
        /// The quick run's figure or the full run's.
        fn pick<T>(quick: bool, short: T, full: T) -> T {
            if quick {
                short
            } else {
                full
            }
        }
        Size {
            restarts: pick(quick, 100, 1000),
            bad: pick(quick, 10, 100),
            supervisor: pick(quick, 5, 50),
            baseline: Duration::from_secs(pick(quick, 10, 30)),
            capacity: Duration::from_secs(pick(quick, 2, 5)),
            naive_restarts: pick(quick, 40, 60),
            gunicorn_restarts: pick(quick, 3, 20),
            // The same load either way: the shape is the point.
            rates: Rates {
                http: 2000.0,
                udp: 5000.0,
                unix: 500.0,
                flows: 256,
            },
            keepalive: pick(quick, (100, 1000.0), (200, 10_000.0)),
            streams: 100,
            handover_bad: pick(quick, 10, 100),
            self_contained: pick(quick, 20, 100),
            big_state: pick(quick, (256 << 20, 3), (1 << 30, 5)),
        }
    }
}

const TIMEOUTS: Timeouts = Timeouts { ready: 2, drain: 3 };

/// What each restart of the plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Good,
    Bad(&'static str),
    Supervisor,
}

/// The bad versions the supervisor must catch, in turn (the server's
/// mode names).
const BAD: [&str; 5] = [
    "crash-before-ready",
    "hang-before-ready",
    "crash-after-ready",
    "close-listeners",
    "ignore-stop",
];

/// The bad versions of the handover, in turn: each fails before it says
/// `READY=1`, and the old generation must serve on with every connection.
const HANDOVER_BAD: [&str; 4] = [
    "refuse-state",
    "crash-taking",
    "crash-taken",
    "few-descriptors",
];

fn plan(size: &Size) -> Vec<Step> {
    let bad_every = (size.restarts / size.bad.max(1)).max(4);
    let handover_every = (size.restarts / size.handover_bad.max(1)).max(4);
    let sup_every = (size.restarts / size.supervisor.max(1)).max(4);
    let (mut bad, mut handover) = (0, 0);
    (0..size.restarts)
        .map(|i| {
            if i % bad_every == bad_every / 2 && bad < size.bad {
                bad += 1;
                Step::Bad(BAD[(bad - 1) % BAD.len()])
            } else if i % handover_every == handover_every / 4 && handover < size.handover_bad {
                handover += 1;
                Step::Bad(HANDOVER_BAD[(handover - 1) % HANDOVER_BAD.len()])
            } else if i % sup_every == sup_every - 1 {
                Step::Supervisor
            } else {
                Step::Good
            }
        })
        .collect()
}

/// The binaries the campaign runs, beside this one.
struct Bins {
    handoff: PathBuf,
    server: PathBuf,
}

fn bins() -> Result<Bins> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("no directory for this binary")?;
    let bins = Bins {
        handoff: dir.join("handoff"),
        server: dir.join("examples").join("restart_server"),
    };
    for b in [&bins.handoff, &bins.server] {
        if !b.exists() {
            return Err(format!(
                "{} is missing: build it first with `cargo build --release -p handoff-cli && cargo build --release -p handoff --example restart_server`",
                b.display()
            )
            .into());
        }
    }
    Ok(bins)
}

/// Every failed sub-check of the restart phase, counted, the first few kept.
#[derive(Debug, Default)]
struct Tally {
    done: usize,
    ok: usize,
    total: usize,
    problems: Vec<String>,
}

impl Tally {
    fn count(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        self.total += 1;
        if ok {
            self.ok += 1;
        } else if self.problems.len() < 5 {
            self.problems.push(problem());
        }
    }
    fn measured(&self) -> String {
        let mut s = format!("{}/{}", self.ok, self.total);
        if !self.problems.is_empty() {
            s.push_str(&format!(" (first: {})", self.problems.join("; ")));
        }
        s
    }
    fn pass(&self) -> bool {
        self.total > 0 && self.ok == self.total
    }
}

pub fn run(quick: bool) -> Result<Report> {
    let wall = Instant::now();
    let size = Size::new(quick);
    let bins = bins()?;
    raise_nofile();
    let dir = std::env::temp_dir().join(format!("handoff-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("supervisor.log");
    eprintln!("restart campaign: logs in {}", dir.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let target = Target::local(18080, 18081, dir.join("app.sock"));
    let mode_file = dir.join("mode");
    let stats_file = dir.join("handover-stats");
    std::fs::write(&mode_file, "good\n")?;
    let mut sup = Supervisor::start(
        &bins.handoff,
        &supervisor::listens(&target),
        &dir.join("control.sock"),
        TIMEOUTS,
        &[bins.server.as_os_str()],
        &[
            ("RESTART_SERVER_MODE_FILE", mode_file.as_os_str()),
            ("RESTART_SERVER_STATS", stats_file.as_os_str()),
        ],
        &log,
    )?;
    let mut current = sup.wait_serving(Duration::from_secs(10), || {
        supervisor::probe_http(target.http)
    })?;

    eprintln!("restart campaign: capacity (closed loop) ...");
    let capacity = load::capacity(&runtime, &target, size.capacity);

    eprintln!("restart campaign: baseline {:?} ...", size.baseline);
    let before = counters::read()?;
    let started = Instant::now();
    let recorder = Recorder::new(started);
    let load = Load::start(&runtime, &target, size.rates, &recorder)?;
    let (clients, rate) = size.keepalive;
    let keepalive = KeepAlive::start(&runtime, target.http, clients, rate, &recorder);
    let streams = Streams::start(
        &runtime,
        target.unix.clone(),
        size.streams,
        Duration::from_secs(1),
        &recorder,
    );
    std::thread::sleep(size.baseline);
    let restart_from = started.elapsed().as_secs() as usize + 1;
    std::thread::sleep(Duration::from_secs(restart_from as u64) - started.elapsed());

    eprintln!("restart campaign: {} restarts ...", size.restarts);
    let mut marks = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    let mut good = Tally::default();
    let mut bad = Tally::default();
    let mut selfs = Tally::default();
    let mut handles = Tally::default();
    let mut zombies = Tally::default();
    let fds_baseline = settle_fds(sup.pid(), None);
    let steps = plan(&size);
    let mut next_slot = Instant::now();
    for (i, &step) in steps.iter().enumerate() {
        if !sup.running() {
            good.count(false, || format!("supervisor gone before restart {i}"));
            break;
        }
        // One every 1 to 1.5 s, start to start.
        let now = Instant::now();
        if next_slot > now {
            std::thread::sleep(next_slot - now);
        }
        next_slot =
            Instant::now() + Duration::from_millis(1000 + 250 * (i as u64 % 3) * u64::from(!quick));
        let at = started.elapsed().as_secs_f64();
        let (trigger, kind) = match step {
            Step::Good => (sup.restart(&[]), MarkKind::Good),
            Step::Bad(mode) => {
                std::fs::write(&mode_file, format!("{mode}\n"))?;
                let t = sup.restart(&[]);
                std::fs::write(&mode_file, "good\n")?;
                (t, MarkKind::Bad)
            }
            Step::Supervisor => (sup.restart(&["--supervisor"]), MarkKind::Supervisor),
        };
        marks.push(Mark { at, kind });
        labels.push(match step {
            Step::Good => format!("restart {i}"),
            Step::Bad(mode) => format!("restart {i} ({mode})"),
            Step::Supervisor => format!("restart {i} (supervisor)"),
        });
        good.done += 1;
        let old = current;
        // Wait for exactly one generation to be left: the new one (or, after
        // a refused bad version, the old one).
        let until = Instant::now() + Duration::from_secs(TIMEOUTS.drain + 5);
        let left = loop {
            let live = procs::live_children(sup.pid());
            if live.len() == 1 || Instant::now() > until {
                break live;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let single = left.len() == 1;
        if single {
            current = left[0];
        }
        match step {
            Step::Good => good.count(trigger.ok && single && current != old, || {
                format!("restart {i}: {} (generations left {left:?})", trigger.line)
            }),
            Step::Supervisor => selfs.count(trigger.ok && sup.running() && single, || {
                format!(
                    "self-replacement {i}: {} (generations left {left:?})",
                    trigger.line
                )
            }),
            Step::Bad("ignore-stop") => bad.count(trigger.ok && single && current != old, || {
                format!("restart {i} (ignore-stop, must succeed): {}", trigger.line)
            }),
            Step::Bad(mode) => {
                let in_time = trigger.took <= Duration::from_secs(TIMEOUTS.ready + 5);
                bad.count(
                    !trigger.ok && trigger.lines == 1 && in_time && single && current == old && procs::alive(old),
                    || {
                        format!(
                            "restart {i} ({mode}): exit ok={} after {:.1} s, {} lines, last {:?}, generations left {left:?}",
                            trigger.ok,
                            trigger.took.as_secs_f64(),
                            trigger.lines,
                            trigger.line
                        )
                    },
                )
            }
        }
        if step == Step::Supervisor {
            // The re-executed image holds the running generation by one
            // pidfd where the first image had two (spawn's and its own):
            // judged again from the next restart on, against the same
            // baseline.
        } else {
            let fds = settle_fds(sup.pid(), fds_baseline);
            handles.count(fds == fds_baseline, || {
                format!("restart {i}: {fds:?} open, baseline {fds_baseline:?}")
            });
        }
        let z = settle_zombies(sup.pid());
        zombies.count(z.is_empty(), || format!("restart {i}: zombies {z:?}"));
    }
    // A short tail after the last restart counts as "during".
    std::thread::sleep(Duration::from_secs(2));
    eprintln!("restart campaign: stopping the load ...");
    let lines = streams.stop(&runtime);
    let kept = keepalive.stop(&runtime);
    load.stop(&runtime);
    let after = counters::read()?;
    let seconds = recorder.snapshot();
    let lag = recorder.lag_ms();
    sup.stop(Duration::from_secs(TIMEOUTS.drain + 2));
    let handovers = handover_stats::read(&stats_file);

    eprintln!(
        "restart campaign: {} MiB of state, {} restarts ...",
        size.big_state.0 >> 20,
        size.big_state.1
    );
    let big = state_phase::run(
        &bins.handoff,
        &bins.server,
        &dir,
        size.big_state.0,
        size.big_state.1,
    )?;

    eprintln!(
        "restart campaign: self-contained mode, {} restarts ...",
        size.self_contained
    );
    let selfc = self_contained::run(
        &runtime,
        &bins.server,
        &dir,
        self_contained::Work {
            restarts: size.self_contained,
            rates: size.rates,
            keepalive: size.keepalive,
            streams: size.streams,
        },
    )?;

    eprintln!("restart campaign: negative control ...");
    let naive = negative_control(&runtime, &bins.server, &dir, size)?;

    let gunicorn = super::gunicorn::run(&bins.handoff, &dir, size.gunicorn_restarts);

    // The picture.
    let picture = if quick {
        dir.join("restart-campaign.svg")
    } else {
        PathBuf::from("docs/restart-campaign.svg")
    };
    let mut notes = Vec::new();
    if let Err(e) = plot::draw(
        &picture,
        &seconds,
        &marks,
        "handoff restart campaign: latency and failures per second",
    ) {
        notes.push(format!("picture not written: {e}"));
    }

    let baseline = Span::of(&seconds, 0, restart_from.min(seconds.len()));
    let during = Span::of(&seconds, restart_from, seconds.len());
    let all = Span::of(&seconds, 0, seconds.len());
    let delta = counters::delta(&before, &after);
    let total = |span: &Span, o: Outcome| -> u64 { (0..PROTOS).map(|p| span.count(p, o)).sum() };

    let mut checks = Vec::new();
    checks.push(Check::new(
        "restarts succeed",
        format!(
            "{} of {}",
            size.restarts - size.bad - size.handover_bad - size.supervisor,
            size.restarts - size.bad - size.handover_bad - size.supervisor
        ),
        good.measured(),
        good.pass(),
    ));
    checks.push(Check::new(
        "bad versions refused, old serves",
        format!(
            "{} of {} ({} of the supervisor's, {} of the handover), each within {} s",
            size.bad + size.handover_bad,
            size.bad + size.handover_bad,
            size.bad,
            size.handover_bad,
            TIMEOUTS.ready + 5
        ),
        bad.measured(),
        bad.pass(),
    ));
    checks.push(Check::new(
        "supervisor self-replacements",
        format!("{} of {}", size.supervisor, size.supervisor),
        selfs.measured(),
        selfs.pass(),
    ));
    let failed = all.failures();
    checks.push(Check::new(
        "0 failed requests",
        "0",
        format!(
            "{failed} of {}",
            (0..PROTOS).map(|p| all.requests(p)).sum::<u64>()
        ),
        failed == 0 && all.requests(0) > 0,
    ));
    // Each keep-alive client counts its own connects: with the live
    // handover the server never closes one, whatever restarts.
    checks.push(Check::new(
        "keep-alive clients: 0 reconnects",
        format!("0 ({} clients)", kept.connections.clients),
        format!(
            "{} ({} connects, {} requests, {} closed by the server)",
            kept.connections.reconnects(),
            kept.connections.connects,
            kept.requests,
            kept.closed_by_server
        ),
        kept.connections.reconnects() == 0 && kept.requests > 0,
    ));
    checks.push(Check::new(
        "long-lived streams: 0 reconnects, every byte back",
        format!(
            "0 reconnects, 0 corrupted ({} streams)",
            lines.connections.clients
        ),
        format!(
            "{} reconnects, {} corrupted ({} connects, {} lines, {} bytes echoed)",
            lines.connections.reconnects(),
            lines.corrupted,
            lines.connections.connects,
            lines.lines,
            lines.bytes
        ),
        lines.connections.reconnects() == 0 && lines.corrupted == 0 && lines.lines > 0,
    ));
    let gaps = total(&all, Outcome::Lost) + total(&all, Outcome::Duplicate);
    let stateless = total(&all, Outcome::Stateless);
    checks.push(Check::new(
        "0 UDP sequence gaps, flow state kept",
        "0 lost, 0 duplicate, 0 without the flow's state",
        format!("{gaps} lost or duplicate, {stateless} without the flow's state"),
        gaps == 0 && stateless == 0,
    ));
    let good_handovers = size.restarts - size.bad - size.handover_bad - size.supervisor;
    notes.push(format!(
        "handovers under load: {}",
        handover_stats::summary(&handovers)
    ));
    checks.push(Check::new(
        "state and connections handed over",
        format!("at every good restart ({good_handovers}), state validated"),
        format!("{} handovers", handovers.len()),
        handovers.len() >= good_handovers,
    ));
    let state_faster = big.median_state_ms() < big.median_pipe_ms();
    let state_ok = big.ok == big.restarts && big.handovers.len() >= big.restarts;
    notes.push(format!("large state: {}", big.summary()));
    if !big.problems.is_empty() {
        notes.push(format!("large state: {}", big.problems.join("; ")));
    }
    if quick {
        checks.push(Check::new(
            "large state handed over and validated",
            format!("{} of {} restarts", big.restarts, big.restarts),
            format!(
                "{}/{} (timing in the notes, not judged in --quick)",
                big.ok, big.restarts
            ),
            state_ok,
        ));
    } else {
        checks.push(Check::new(
            "large state: faster than one pipe copy",
            format!("{} MiB per restart, median < pipe", big.bytes >> 20),
            format!(
                "{:.0} ms vs pipe {:.0} ms ({}/{} restarts)",
                big.median_state_ms(),
                big.median_pipe_ms(),
                big.ok,
                big.restarts
            ),
            state_ok && state_faster,
        ));
    }
    let self_failed = selfc.span.failures();
    let self_requests: u64 = (0..PROTOS).map(|p| selfc.span.requests(p)).sum();
    let self_moved: Vec<String> = selfc
        .counters
        .iter()
        .filter(|(_, &v)| v > 0)
        .map(|(k, v)| format!("{k} +{v}"))
        .collect();
    let mut self_problems = String::new();
    if !selfc.problems.is_empty() {
        self_problems = format!(" (first: {})", selfc.problems.join("; "));
    }
    checks.push(Check::new(
        "self-contained: restarts, 0 failed, 0 reconnects",
        format!("{} of {}, 0 failed, 0 reconnects, counters 0", selfc.restarts, selfc.restarts),
        format!(
            "{}/{}{self_problems}, {self_failed} of {self_requests} failed, {} + {} reconnects, counters {}",
            selfc.ok,
            selfc.restarts,
            selfc.keepalive.connections.reconnects(),
            selfc.streams.connections.reconnects(),
            if self_moved.is_empty() { "all 0".to_string() } else { self_moved.join(", ") }
        ),
        selfc.ok == selfc.restarts
            && self_failed == 0
            && self_requests > 0
            && selfc.keepalive.connections.reconnects() == 0
            && selfc.streams.connections.reconnects() == 0
            && selfc.streams.corrupted == 0
            && self_moved.is_empty(),
    ));
    notes.push(format!(
        "self-contained handovers: {}",
        handover_stats::summary(&selfc.handovers)
    ));
    let moved: Vec<String> = delta
        .iter()
        .filter(|(_, &v)| v > 0)
        .map(|(k, v)| format!("{k} +{v}"))
        .collect();
    checks.push(Check::new(
        "kernel counter deltas 0",
        "all 0",
        if moved.is_empty() {
            "all 0".into()
        } else {
            moved.join(", ")
        },
        moved.is_empty(),
    ));
    let (b99, d99) = (
        baseline.all_latency().quantile_ms(0.99),
        during.all_latency().quantile_ms(0.99),
    );
    // A latency figure depends on what else the machine runs; the quick
    // pass runs in CI, where only counts are judged, so there the figure
    // is reported as a note. The full campaign judges it.
    let p99_ok = d99 <= 2.0 * b99 + 5.0 && during.all_latency().total() > 0;
    if quick {
        notes.push(format!(
            "p99 during restarts {d99:.2} ms, baseline {b99:.2} ms (target <= {:.2} ms; {}; not judged in --quick)",
            2.0 * b99 + 5.0,
            if p99_ok { "met" } else { "missed" }
        ));
    } else {
        checks.push(Check::new(
            "p99 during <= 2 x baseline + 5 ms",
            format!("<= {:.2} ms", 2.0 * b99 + 5.0),
            format!("{d99:.2} ms (baseline {b99:.2} ms)"),
            p99_ok,
        ));
    }
    checks.push(Check::new(
        "handles back to baseline",
        "after every old generation",
        handles.measured(),
        handles.pass(),
    ));
    checks.push(Check::new(
        "no zombies",
        "after every restart",
        zombies.measured(),
        zombies.pass(),
    ));
    let offered = [size.rates.http, size.rates.udp, size.rates.unix];
    let under = offered.iter().zip(&capacity).all(|(o, c)| 2.0 * o <= *c);
    checks.push(Check::new(
        "load under half the capacity",
        "offered <= capacity / 2",
        format!(
            "capacity {:.0} / {:.0} / {:.0} per s",
            capacity[0], capacity[1], capacity[2]
        ),
        under,
    ));
    let naive_failed = naive.span.failures();
    let naive_rsts = naive.counters.get("TcpOutRsts").copied().unwrap_or(0);
    checks.push(Check::new(
        "naive handover fails (harness sees)",
        "failures > 0 and TcpOutRsts > 0",
        format!("{naive_failed} failed, TcpOutRsts +{naive_rsts}"),
        naive_failed > 0 && naive_rsts > 0,
    ));
    let gunicorn_text = match gunicorn {
        Some(g) => {
            checks.push(Check::new(
                "gunicorn: 0 socket errors, 0 non-2xx",
                format!("{} restarts under wrk", size.gunicorn_restarts),
                g.summary.clone(),
                g.pass,
            ));
            Some(g.summary)
        }
        None => {
            notes.push("gunicorn or wrk not found: the gunicorn check did not run".into());
            None
        }
    };
    let series: Vec<(u64, u64, f64, f64, f64)> = seconds
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let span = Span::of(std::slice::from_ref(s), 0, 1);
            let h = span.all_latency();
            let requests = (0..PROTOS).map(|p| span.requests(p)).sum();
            let lag = lag.get(i).copied().unwrap_or(0.0);
            (
                requests,
                span.failures(),
                h.quantile_ms(0.5),
                h.quantile_ms(0.99),
                lag,
            )
        })
        .collect();
    // The generator's own stalls: latency counts from the scheduled time,
    // so a busy machine shows in both columns.
    let worst_lag = |from: usize, to: usize| {
        lag.iter()
            .take(to)
            .skip(from)
            .fold(0.0f64, |a, &b| a.max(b))
    };
    notes.push(format!(
        "load generator's worst start lag: {:.0} ms in the baseline, {:.0} ms during restarts",
        worst_lag(0, restart_from),
        worst_lag(restart_from, lag.len())
    ));
    // Where the failures were: the worst seconds and the restart before each.
    let mut worst: Vec<(usize, u64)> = series
        .iter()
        .enumerate()
        .filter(|(_, s)| s.1 > 0)
        .map(|(i, s)| (i, s.1))
        .collect();
    worst.sort_by_key(|&(_, f)| std::cmp::Reverse(f));
    if !worst.is_empty() {
        let described: Vec<String> = worst
            .iter()
            .take(6)
            .map(|&(i, f)| {
                let near: Vec<String> = marks
                    .iter()
                    .zip(&labels)
                    .filter(|(m, _)| (m.at - i as f64).abs() <= 2.0)
                    .map(|(m, l)| format!("{l} at {:.1} s", m.at))
                    .collect();
                format!(
                    "s{i}: {f}, load generator started requests up to {:.0} ms late (near {})",
                    series[i].4,
                    if near.is_empty() {
                        "no restart".into()
                    } else {
                        near.join(", ")
                    }
                )
            })
            .collect();
        notes.push(format!(
            "failures in {} seconds; worst: {}",
            worst.len(),
            described.join(", ")
        ));
    }
    if !good.problems.is_empty() || !bad.problems.is_empty() {
        notes.push(format!("supervisor log: {}", log.display()));
    }

    Ok(Report {
        quick,
        wall_seconds: wall.elapsed().as_secs_f64(),
        seconds: seconds.len() as f64,
        offered_per_s: offered,
        capacity_per_s: capacity,
        restarts: good.done,
        bad_versions: marks.iter().filter(|m| m.kind == MarkKind::Bad).count(),
        self_replacements: marks
            .iter()
            .filter(|m| m.kind == MarkKind::Supervisor)
            .count(),
        baseline: report::traffic(&baseline),
        during: report::traffic(&during),
        counters: delta,
        naive_traffic: report::traffic(&naive.span),
        naive_counters: naive.counters,
        naive_restarts: naive.restarts,
        self_contained_traffic: report::traffic(&selfc.span),
        self_contained_counters: selfc.counters,
        gunicorn: gunicorn_text,
        picture: picture.display().to_string(),
        series,
        marks: marks.iter().map(|m| (m.at, m.kind.name())).collect(),
        notes,
        checks,
    })
}

/// The negative control's result.
struct NaiveResult {
    span: Span,
    counters: Counters,
    restarts: usize,
}

fn negative_control(
    runtime: &tokio::runtime::Runtime,
    server: &Path,
    dir: &Path,
    size: Size,
) -> Result<NaiveResult> {
    let target = Target::local(18090, 18091, dir.join("naive.sock"));
    let log = dir.join("naive.log");
    let mut naive = Naive::new(server, &target, dir, &log)?;
    let mut current = naive.start_next()?;
    let before = counters::read()?;
    let recorder = Recorder::new(Instant::now());
    let load = Load::start(runtime, &target, size.rates, &recorder)?;
    let mut stopping = Vec::new();
    std::thread::sleep(Duration::from_secs(1));
    // A naive handover loses only what is queued on the old socket when it
    // closes, about one connection per handover at this load: many quick
    // handovers make the control's outcome certain rather than likely.
    for _ in 0..size.naive_restarts {
        let next = naive.start_next()?;
        naive::terminate(&current);
        let old = std::mem::replace(&mut current, next);
        stopping.push(std::thread::spawn(move || {
            naive::reap(old, Duration::from_secs(5))
        }));
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(1));
    load.stop(runtime);
    let after = counters::read()?;
    naive::terminate(&current);
    naive::reap(current, Duration::from_secs(5));
    for t in stopping {
        let _ = t.join();
    }
    let seconds = recorder.snapshot();
    Ok(NaiveResult {
        span: Span::of(&seconds, 0, seconds.len()),
        counters: counters::delta(&before, &after),
        restarts: size.naive_restarts,
    })
}

/// The supervisor's descriptor count once it stops changing (or equals
/// `want`), within a second.
fn settle_fds(pid: u32, want: Option<usize>) -> Option<usize> {
    let until = Instant::now() + Duration::from_secs(1);
    let mut last = procs::fd_count(pid);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = procs::fd_count(pid);
        if (want.is_some() && now == want)
            || (want.is_none() && now == last)
            || Instant::now() > until
        {
            return now;
        }
        last = now;
    }
}

/// Zombie children of the supervisor still there after half a second.
fn settle_zombies(pid: u32) -> Vec<u32> {
    let until = Instant::now() + Duration::from_millis(500);
    loop {
        let z = procs::zombies(pid);
        if z.is_empty() || Instant::now() > until {
            return z;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Thousands of sockets at once when the server stalls: lift the soft
/// descriptor limit to the hard one.
fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_mixes_in_every_bad_version_and_the_self_replacements() {
        for quick in [true, false] {
            let size = Size::new(quick);
            let steps = plan(&size);
            assert_eq!(steps.len(), size.restarts);
            let bad: Vec<&str> = steps
                .iter()
                .filter_map(|s| match s {
                    Step::Bad(m) => Some(*m),
                    _ => None,
                })
                .collect();
            assert_eq!(bad.len(), size.bad + size.handover_bad);
            for mode in BAD.into_iter().chain(HANDOVER_BAD) {
                assert!(bad.contains(&mode), "{mode} never planned");
            }
            let selfs = steps.iter().filter(|s| **s == Step::Supervisor).count();
            assert_eq!(selfs, size.supervisor);
            // A bad version is never the last step: the one after an
            // ignore-stop version must stop it.
            assert!(!matches!(steps.last(), Some(Step::Bad(_))));
        }
    }
}
