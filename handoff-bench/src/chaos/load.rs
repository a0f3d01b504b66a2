//! Case 4: load. 256 clients at once, each on its own connection and
//! thread (64 threads in each of 4 client processes), each call passing a
//! file handle to the server.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::server::{ChaosBlockingClient, ServerKid};
use super::{
    child_ctl, env, mib, percentile, send_json, unlinked_file, Cfg, Checks, Kid, Row, TempDir,
};
use crate::Result;

pub const ROLE: &str = "load-client";
const SOCKET_ENV: &str = "HANDOFF_CHAOS_LOAD_SOCKET";
const THREADS_ENV: &str = "HANDOFF_CHAOS_LOAD_THREADS";
const CALLS_ENV: &str = "HANDOFF_CHAOS_LOAD_CALLS";
const BASE_ENV: &str = "HANDOFF_CHAOS_LOAD_BASE";
const DIR_ENV: &str = "HANDOFF_CHAOS_LOAD_DIR";

const PROCESSES: usize = 4;
const THREADS: usize = 64;

/// The server's peak resident set may not exceed this: 256 connections
/// with calls in flight must cost kilobytes each, not megabytes.
const SERVER_PEAK_BOUND_MIB: u64 = 64;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Summary {
    ok: u64,
    mismatches: u64,
    errors: Vec<String>,
}

type ThreadResult = std::result::Result<(Vec<u64>, u64), String>;

/// One client process: `THREADS` connections, all calling at once.
pub fn client_role() -> Result<()> {
    let ctl = child_ctl()?;
    let path: PathBuf = env(SOCKET_ENV)?;
    let threads: usize = env(THREADS_ENV)?;
    let calls: u64 = env(CALLS_ENV)?;
    let base: u32 = env(BASE_ENV)?;
    let dir: PathBuf = env(DIR_ENV)?;
    let ready = Arc::new(Barrier::new(threads + 1));
    let go = Arc::new(Barrier::new(threads + 1));
    let mut workers = Vec::new();
    for t in 0..threads {
        let (path, dir, ready, go) = (path.clone(), dir.clone(), ready.clone(), go.clone());
        let id = base + t as u32;
        let worker =
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || -> ThreadResult {
                    // Every thread reaches both barriers, whatever fails, or
                    // the rest would wait for it for ever.
                    let setup = (|| -> Result<_> {
                        let file = unlinked_file(&dir.join(format!("load{id}")))?;
                        Ok((file, ChaosBlockingClient::connect(&path)?))
                    })();
                    ready.wait();
                    go.wait();
                    let (file, client) = setup.map_err(|e| e.to_string())?;
                    let mut latencies = Vec::with_capacity(calls as usize);
                    let mut mismatches = 0;
                    for seq in 0..calls {
                        let t = Instant::now();
                        let echo = client.stamp(&file, id, seq).map_err(|e| e.to_string())?;
                        latencies.push(t.elapsed().as_nanos() as u64);
                        mismatches += u64::from(echo != (id, seq));
                    }
                    Ok((latencies, mismatches))
                })?;
        workers.push(worker);
    }
    ready.wait();
    ctl.send(b"ready", &[])?;
    let start = ctl.recv()?;
    if start.bytes != b"go" {
        return Err("expected go".into());
    }
    go.wait();
    let mut summary = Summary::default();
    let mut latencies = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok((l, m))) => {
                summary.ok += l.len() as u64;
                summary.mismatches += m;
                latencies.extend(l);
            }
            Ok(Err(e)) => summary.errors.push(e),
            Err(_) => summary.errors.push("a client thread panicked".into()),
        }
    }
    send_json(&ctl, &summary)?;
    let bytes: Vec<u8> = latencies.iter().flat_map(|l| l.to_le_bytes()).collect();
    ctl.send(&bytes, &[])?;
    Ok(())
}

/// 4.
pub fn run(cfg: &Cfg) -> Result<Row> {
    let calls: u64 = cfg.pick(200, 4000);
    let clients = PROCESSES * THREADS;
    let mut checks = Checks::default();
    let dir = TempDir::new("load")?;
    let path = dir.path().join("rpc.sock");
    let mut server = ServerKid::start(&path, false)?;
    let before = server.stats()?;
    let mut kids = Vec::new();
    for p in 0..PROCESSES {
        kids.push(Kid::spawn(
            ROLE,
            &[
                (SOCKET_ENV, path.display().to_string()),
                (THREADS_ENV, THREADS.to_string()),
                (CALLS_ENV, calls.to_string()),
                (BASE_ENV, (p * THREADS).to_string()),
                (DIR_ENV, dir.path().display().to_string()),
            ],
        )?);
    }
    for kid in &kids {
        let ready = kid.recv(Duration::from_secs(60))?;
        if ready.bytes != b"ready" {
            return Err("a load client did not get ready".into());
        }
    }
    let connected = server.stats()?;
    let started = Instant::now();
    for kid in &kids {
        kid.send(b"go", &[])?;
    }
    let mut summary = Summary::default();
    let mut latencies = Vec::with_capacity(clients * calls as usize);
    let timeout = Duration::from_secs(cfg.pick(60, 300));
    for kid in &kids {
        let s: Summary = kid.recv_json(timeout)?;
        let raw = kid.recv(timeout)?;
        latencies.extend(
            raw.bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
        );
        summary.ok += s.ok;
        summary.mismatches += s.mismatches;
        summary.errors.extend(s.errors);
    }
    let elapsed = started.elapsed();
    let during = server.stats()?;
    for kid in &mut kids {
        let status = kid.wait(Duration::from_secs(20))?;
        checks.check(status.success(), || {
            format!("a load client ended with {status}")
        });
    }
    latencies.sort_unstable();
    let (p50, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0),
    );
    let expected = clients as u64 * calls;
    checks.check(summary.ok == expected, || {
        format!("{} of {expected} calls answered", summary.ok)
    });
    checks.check(summary.errors.is_empty(), || {
        format!(
            "{} clients failed, first: {:?}",
            summary.errors.len(),
            summary.errors.first()
        )
    });
    checks.check(summary.mismatches == 0, || {
        format!("{} answers for another call", summary.mismatches)
    });
    checks.check(connected.accepted == clients as u64, || {
        format!("{} of {clients} connections accepted", connected.accepted)
    });
    let peak_mib = during.memory.hwm_kib >> 10;
    checks.check(peak_mib < SERVER_PEAK_BOUND_MIB, || {
        format!("server peak RSS {peak_mib} MiB ≥ {SERVER_PEAK_BOUND_MIB} MiB")
    });
    let (settled, after) = server.settle(Duration::from_secs(20))?;
    checks.check(settled, || {
        format!(
            "handles {} after the clients left (baseline {})",
            after.handles, after.baseline
        )
    });
    checks.check(after.panics == 0, || format!("{} panics", after.panics));
    checks.check(server.alive()?, || "the server died".into());
    server.stop(&mut checks)?;
    let ms = |ns: u64| ns as f64 / 1e6;
    Ok(Row {
        case: "4 load",
        thrown: format!(
            "{clients} concurrent clients (threads: {PROCESSES} processes × {THREADS}, one connection each) × {calls} calls, each passing a file handle (write) to one RPC server process"
        ),
        expected: "every call answered with its own ids; server peak RSS < 64 MiB; server handles back to baseline",
        observed: format!(
            "{:.0} calls/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; server peak RSS {:.1} MiB (idle {:.1}, 256 connected {:.1}); handles {} (baseline {})",
            summary.ok as f64 / elapsed.as_secs_f64(),
            ms(p50),
            ms(p99),
            ms(max),
            mib(during.memory.hwm_kib),
            mib(before.memory.rss_kib),
            mib(connected.memory.rss_kib),
            after.handles,
            after.baseline
        ),
        counts: format!(
            "{} calls in {:.2} s, {} errors, {} misrouted",
            summary.ok,
            elapsed.as_secs_f64(),
            summary.errors.len(),
            summary.mismatches
        ),
        verdict: checks.verdict(),
    })
}
