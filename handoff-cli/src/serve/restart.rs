//! A restart: start generation N+1, wait for its `READY=1`, check it,
//! then stop N. One at a time; a bad N+1 is killed and reaped while N
//! keeps serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::generation;
use super::state::{describe_exit, signal_name, Phase, Shared, State};

/// How long a new generation must stay up and hold its listeners after
/// `READY=1` before the old one is stopped: catches a version that
/// crashes or closes its sockets right after saying it is ready.
const SETTLE: Duration = Duration::from_millis(300);

/// How long a killed process may take to be reaped before giving up on
/// waiting for it (SIGKILL cannot be ignored; this only bounds a stuck
/// kernel).
const REAP_WAIT: Duration = Duration::from_secs(10);

/// Runs one restart unless one is under way. `Ok` and `Err` are each one
/// line for the trigger.
pub(crate) fn trigger(shared: &Arc<Shared>) -> Result<String, String> {
    {
        let mut state = shared.lock();
        if state.shutting_down {
            return Err("the supervisor is shutting down".into());
        }
        if state.restarting {
            let n = state.next_number;
            return Err(format!(
                "a restart is already under way (generation {n} starting); not starting another"
            ));
        }
        state.restarting = true;
    }
    let result = run(shared);
    generation::sweep(shared);
    let mut state = shared.lock();
    state.restarting = false;
    // The first start is not a restart.
    if result.is_ok() && state.next_number > 1 {
        state.restarts += 1;
    }
    drop(state);
    shared.changed.notify_all();
    match &result {
        Ok(line) => tracing::info!("{line}"),
        Err(line) => tracing::error!("{line}"),
    }
    result
}

/// Why a generation failed, while it is still running: it is killed and
/// reaped before the line goes out.
fn fail(shared: &Shared, number: u64, why: String) -> String {
    kill_and_reap(shared, number);
    why
}

fn kill_and_reap(shared: &Shared, number: u64) {
    let mut state = shared.lock();
    if let Some(g) = state.generation(number) {
        g.phase = Phase::Failed;
        let (main, first) = (Arc::clone(&g.main), Arc::clone(&g.first));
        let mut tree = generation::tree(g.main_pid);
        tree.extend(generation::tree(g.pid));
        drop(state);
        let _ = main.kill();
        let _ = first.kill();
        // Their own children go too: they hold copies of the listeners.
        for pid in tree {
            if pid == main.pid() || pid == first.pid() {
                continue;
            }
            if let Ok(p) = handoff::Process::open(pid) {
                let _ = p.kill();
            }
        }
        state = shared.lock();
    }
    let deadline = Instant::now() + REAP_WAIT;
    while state.generation(number).is_some() && Instant::now() < deadline {
        state = shared.wait_until(state, deadline);
    }
}

/// The readiness deadline, moved by `EXTEND_TIMEOUT_USEC=`.
fn ready_deadline(state: &mut State, number: u64, base: Instant) -> Instant {
    match state.generation(number).and_then(|g| g.extend_until) {
        Some(t) if t > base => t,
        _ => base,
    }
}

fn run(shared: &Arc<Shared>) -> Result<String, String> {
    let cfg = &shared.config;
    let mut state = shared.lock();
    for name in state.store.drop_hung_up() {
        tracing::info!(name, "stored handle hung up; closed");
    }
    let old: Vec<u64> = state
        .generations
        .iter()
        .filter(|g| g.phase == Phase::Serving)
        .map(|g| g.number)
        .collect();
    let number = generation::start(shared, &mut state)?;
    let base = Instant::now() + cfg.ready_timeout;

    // Wait for READY=1 or an exit.
    loop {
        if let Some(end) = state.ended(number) {
            let when = if end.was_ready {
                "right after READY=1"
            } else {
                "before READY=1"
            };
            return Err(format!(
                "generation {number} {} {when}",
                describe_exit(end.status)
            ));
        }
        let deadline = ready_deadline(&mut state, number, base);
        match state.generation(number) {
            Some(g) if g.ready => break,
            Some(_) if Instant::now() >= deadline => {
                drop(state);
                return Err(fail(
                    shared,
                    number,
                    format!(
                        "generation {number} was not ready within {} s; killed",
                        cfg.ready_timeout.as_secs_f64()
                    ),
                ));
            }
            _ => state = shared.wait_until(state, deadline),
        }
    }

    // Ready: it must stay up and keep its listeners for a moment.
    let settle = Instant::now() + SETTLE;
    while Instant::now() < settle && state.ended(number).is_none() {
        state = shared.wait_until(state, settle);
    }
    if let Some(end) = state.ended(number) {
        return Err(format!(
            "generation {number} {} right after READY=1",
            describe_exit(end.status)
        ));
    }
    let roots: Vec<u32> = state
        .generation(number)
        .map_or(Vec::new(), |g| vec![g.main_pid, g.pid]);
    drop(state);
    let not_listening: Vec<&str> = shared
        .listeners
        .iter()
        .filter(|l| l.identity.is_some())
        .filter(|l| {
            matches!(
                l.handle.kind(),
                Ok(handoff::Kind::Socket {
                    ty: handoff::SocketType::Stream,
                    listening: false,
                    ..
                })
            )
        })
        .map(|l| l.name.as_str())
        .collect();
    if !not_listening.is_empty() {
        // shutdown() on any copy stops the socket for every holder; listen
        // again on the same socket so the old generation serves again.
        let repaired = relisten_all(shared);
        return Err(fail(
            shared,
            number,
            format!(
                "generation {number} shut down its listener(s) {} after READY=1; killed; {repaired}",
                not_listening.join(", ")
            ),
        ));
    }
    let missing = generation::missing_listeners(shared, &roots);
    if !missing.is_empty() {
        return Err(fail(
            shared,
            number,
            format!(
                "generation {number} closed its listener(s) {} after READY=1; killed",
                missing.join(", ")
            ),
        ));
    }

    // It serves: the old ones stop.
    let mut state = shared.lock();
    if let Some(g) = state.generation(number) {
        g.phase = Phase::Serving;
    }
    drop(state);
    let mut notes = Vec::new();
    for n in old {
        notes.push(stop(shared, n));
    }
    let pid = shared.lock().generation(number).map_or(0, |g| g.main_pid);
    let mut line = format!("generation {number} (pid {pid}) serves");
    if !notes.is_empty() {
        line.push_str("; ");
        line.push_str(&notes.join("; "));
    }
    Ok(line)
}

/// Sends `--stop-signal`, waits up to `--drain-timeout`, then SIGKILLs;
/// returns once it is reaped, with a note of how it ended.
pub(crate) fn stop(shared: &Shared, number: u64) -> String {
    let cfg = &shared.config;
    let mut state = shared.lock();
    let Some(g) = state.generation(number) else {
        return format!("generation {number} had already ended");
    };
    g.phase = Phase::Draining;
    let main = Arc::clone(&g.main);
    drop(state);
    let _ = main.signal(cfg.stop_signal);
    let deadline = Instant::now() + cfg.drain_timeout;
    state = shared.lock();
    while state.generation(number).is_some() && Instant::now() < deadline {
        state = shared.wait_until(state, deadline);
    }
    if let Some(end) = state.ended(number) {
        if state.generation(number).is_none() {
            return format!("generation {number} {}", describe_exit(end.status));
        }
    }
    drop(state);
    kill_and_reap(shared, number);
    format!(
        "generation {number} ignored {} and was killed at the drain timeout ({} s)",
        signal_name(cfg.stop_signal),
        cfg.drain_timeout.as_secs_f64()
    )
}

/// Stops every generation (the supervisor is exiting).
pub(crate) fn stop_all(shared: &Shared) {
    let numbers: Vec<u64> = {
        let mut state = shared.lock();
        state.shutting_down = true;
        state.generations.iter().map(|g| g.number).collect()
    };
    for n in numbers {
        let note = stop(shared, n);
        tracing::info!("{note}");
    }
    generation::sweep(shared);
}

/// Listens again on every shut-down listener; says how that went.
fn relisten_all(shared: &Shared) -> String {
    let mut lost = Vec::new();
    for l in &shared.listeners {
        if !matches!(
            l.handle.kind(),
            Ok(handoff::Kind::Socket {
                ty: handoff::SocketType::Stream,
                listening: false,
                ..
            })
        ) {
            continue;
        }
        let ok = handoff::restart::supervise::relisten(l.handle.borrow(), 1024).is_ok()
            && super::listeners::local_address(&l.handle).as_deref() == Some(l.address.as_str());
        if !ok {
            lost.push(l.name.as_str());
        }
    }
    if lost.is_empty() {
        "listening again on the same socket".to_owned()
    } else {
        tracing::error!(listeners = ?lost, "cannot listen again on the same address");
        format!(
            "could not listen again on {} at the same address (an ephemeral port is released by shutdown)",
            lost.join(", ")
        )
    }
}
