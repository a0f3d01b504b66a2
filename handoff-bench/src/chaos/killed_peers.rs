//! Case 1: an RPC server and 16 client processes making calls that carry
//! handles, while the harness SIGKILLs random clients (and restarts them)
//! and the server once (the clients reconnect to its successor).

use std::collections::HashSet;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use handoff::rpc::{CallError, Context};
use handoff::Error;
use serde::{Deserialize, Serialize};

use super::server::{stamp_text, ChaosClient, ServerKid, Session, Stats, STAMP_LEN};
use super::{child_ctl, env, send_json, unlinked_file, Cfg, Checks, Kid, Rng, Row, TempDir};
use crate::Result;

pub const ROLE: &str = "rpc-client";
const SOCKET_ENV: &str = "HANDOFF_CHAOS_CLIENT_SOCKET";
const ID_ENV: &str = "HANDOFF_CHAOS_CLIENT_ID";
const INCARNATION_ENV: &str = "HANDOFF_CHAOS_CLIENT_INCARNATION";
const START_ENV: &str = "HANDOFF_CHAOS_CLIENT_START";
const END_ENV: &str = "HANDOFF_CHAOS_CLIENT_END";
const DIR_ENV: &str = "HANDOFF_CHAOS_CLIENT_DIR";

/// Calls each client keeps in flight on its connection: enough that the
/// client's reply routing, not just the server's, is under test.
const WINDOW: usize = 4;

/// A client that makes no progress this long (while the server is up) is
/// stuck, not unlucky.
const STALL: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
enum Report {
    /// Every call below `next` has been answered correctly.
    Progress { next: u64 },
    /// A reply that was not for this call, or a context that was not ours.
    Mismatch { detail: String },
    /// All calls made; handles this process still holds beyond its start.
    Done { leaked: i64 },
}

enum Outcome {
    Ok,
    Mismatch(String),
    Failed(String),
}

/// One client process: calls `start..end`, reconnecting whenever the
/// connection breaks, checking that every answer is for this client and
/// this call.
pub fn client_role() -> Result<()> {
    let ctl = child_ctl()?;
    let path: PathBuf = env(SOCKET_ENV)?;
    let id: u32 = env(ID_ENV)?;
    let incarnation: u32 = env(INCARNATION_ENV)?;
    let start: u64 = env(START_ENV)?;
    let end: u64 = env(END_ENV)?;
    let dir: PathBuf = env(DIR_ENV)?;
    let files = (0..WINDOW)
        .map(|slot| unlinked_file(&dir.join(format!("c{id}.i{incarnation}.{slot}"))))
        .collect::<Result<Vec<_>>>()?;
    let baseline = handoff::count_open_handles()?;
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(calls(&ctl, &path, id, incarnation, start..end, &files))?;
    }
    let leaked = handoff::count_open_handles()? as i64 - baseline as i64;
    send_json(&ctl, &Report::Done { leaked })
}

async fn calls(
    ctl: &handoff::Channel,
    path: &Path,
    id: u32,
    incarnation: u32,
    range: std::ops::Range<u64>,
    files: &[File],
) -> Result<()> {
    let mut next = range.start;
    let mut progressed = Instant::now();
    let mut last_error = String::from("none");
    loop {
        if progressed.elapsed() > STALL {
            return Err(format!(
                "client {id}: no progress for {STALL:?}; last error: {last_error}"
            )
            .into());
        }
        let retry = || tokio::time::sleep(Duration::from_millis(5));
        let client = match ChaosClient::connect(path).await {
            Ok(c) => c,
            Err(e) => {
                last_error = e.to_string();
                retry().await;
                continue;
            }
        };
        let session = match client.open(id, incarnation).await {
            Ok(s) => s,
            Err(e) => {
                last_error = e.to_string();
                retry().await;
                continue;
            }
        };
        let mut broken = false;
        while next < range.end {
            let seqs: [Option<u64>; WINDOW] = std::array::from_fn(|i| {
                let s = next + i as u64;
                (s < range.end).then_some(s)
            });
            let (a, b, c, d) = tokio::join!(
                one(&client, &session, files, id, seqs[0]),
                one(&client, &session, files, id, seqs[1]),
                one(&client, &session, files, id, seqs[2]),
                one(&client, &session, files, id, seqs[3]),
            );
            for outcome in [a, b, c, d] {
                match outcome {
                    Outcome::Ok => {}
                    Outcome::Mismatch(detail) => {
                        send_json(
                            ctl,
                            &Report::Mismatch {
                                detail: detail.clone(),
                            },
                        )?;
                        return Err(detail.into());
                    }
                    Outcome::Failed(e) => {
                        last_error = e;
                        broken = true;
                    }
                }
            }
            if broken {
                break;
            }
            next = seqs.iter().flatten().max().map_or(next, |s| s + 1);
            send_json(ctl, &Report::Progress { next })?;
            progressed = Instant::now();
        }
        if !broken {
            // Closing is part of the exercise; if the server dies right now
            // the disconnect runs the context down instead.
            let _ = client.close_context(session).await;
            return Ok(());
        }
    }
}

async fn one(
    client: &ChaosClient,
    session: &Context<Session>,
    files: &[File],
    id: u32,
    seq: Option<u64>,
) -> Outcome {
    let Some(seq) = seq else {
        return Outcome::Ok;
    };
    let wrong = |what: String| Outcome::Mismatch(format!("client {id} call {seq}: {what}"));
    match seq % 3 {
        0 => {
            let file = &files[seq as usize % WINDOW];
            match client.stamp(file, id, seq).await {
                Ok(echo) if echo != (id, seq) => wrong(format!("stamp answered {echo:?}")),
                Ok(_) => {
                    let mut buf = [0u8; STAMP_LEN];
                    match rustix::io::pread(file, &mut buf, 0) {
                        Ok(STAMP_LEN) if buf == stamp_text(id, seq) => Outcome::Ok,
                        other => wrong(format!(
                            "the file holds {:?} ({other:?})",
                            String::from_utf8_lossy(&buf)
                        )),
                    }
                }
                Err(e) => Outcome::Failed(e.to_string()),
            }
        }
        1 => match client.fetch(id, seq).await {
            Ok(handle) => {
                let mut text = String::new();
                let read = File::from(std::os::fd::OwnedFd::from(handle)).read_to_string(&mut text);
                match read {
                    Ok(_) if text == format!("{id}:{seq}") => Outcome::Ok,
                    other => wrong(format!("fetch's pipe held {text:?} ({other:?})")),
                }
            }
            Err(e) => Outcome::Failed(e.to_string()),
        },
        _ => match client.note(session, id, seq).await {
            Ok(echo) if echo != (id, seq) => wrong(format!("note answered {echo:?}")),
            Ok(_) => Outcome::Ok,
            // The server found another client's context under our token.
            Err(CallError::Application(e)) => wrong(e),
            Err(e) => Outcome::Failed(e.to_string()),
        },
    }
}

/// A client slot: its current process and how far it got.
#[derive(Debug)]
struct Slot {
    kid: Option<Kid>,
    incarnation: u32,
    next: u64,
    done: bool,
}

#[derive(Debug, Default)]
struct Tally {
    mismatches: Vec<String>,
    client_kills: usize,
    /// Killed incarnations per server generation (0 or 1), as labels.
    killed: [HashSet<String>; 2],
    /// Killed clients that had a context open, and those contexts' rundowns.
    killed_with_context: usize,
    killed_rundowns: u64,
    contexts: usize,
    server_calls: u64,
    server_panics: u64,
    /// Processes that ended without being killed and without finishing.
    unplanned_exits: usize,
}

fn label(id: usize, incarnation: u32) -> String {
    format!("c{id}.i{incarnation}")
}

pub fn run(cfg: &Cfg) -> Result<Row> {
    const CLIENTS: usize = 16;
    let per_client: u64 = cfg.pick(1000, 50_000);
    let client_kills: usize = cfg.pick(16, 400);
    let total = CLIENTS as u64 * per_client;
    let mut rng = Rng::new(cfg.seed ^ 0x01);
    let dir = TempDir::new("killed")?;
    let path = dir.path().join("rpc.sock");
    let mut checks = Checks::default();
    let mut tally = Tally::default();

    let mut server = ServerKid::start(&path, false)?;
    let mut generation = 0;
    let spawn = |id: usize, slot: &Slot| -> Result<Kid> {
        Kid::spawn(
            ROLE,
            &[
                (SOCKET_ENV, path.display().to_string()),
                (ID_ENV, id.to_string()),
                (INCARNATION_ENV, slot.incarnation.to_string()),
                (START_ENV, slot.next.to_string()),
                (END_ENV, per_client.to_string()),
                (DIR_ENV, dir.path().display().to_string()),
            ],
        )
    };
    let mut slots = Vec::new();
    for id in 0..CLIENTS {
        let mut slot = Slot {
            kid: None,
            incarnation: 0,
            next: 0,
            done: false,
        };
        slot.kid = Some(spawn(id, &slot)?);
        slots.push(slot);
    }
    // Kills fall at random points of the work, not of the clock, so a slow
    // machine gets the same chaos as a fast one.
    let mut kill_at: Vec<u64> = (0..client_kills)
        .map(|_| total / 20 + rng.below(total * 85 / 100))
        .collect();
    kill_at.sort_unstable();
    let server_kill_at = total / 2 + rng.below(total / 10);
    let mut server_killed = false;
    let deadline = Instant::now() + Duration::from_secs(cfg.pick(60, 480));

    loop {
        for (id, slot) in slots.iter_mut().enumerate() {
            drain(id, slot, &mut tally, &mut checks)?;
            let Some(kid) = slot.kid.as_mut() else {
                continue;
            };
            if let Some(status) = kid.exited()? {
                slot.kid = None;
                if !(slot.done && status.success()) {
                    tally.unplanned_exits += 1;
                    checks.fail(format!(
                        "client {id} incarnation {} ended on its own: {status}",
                        slot.incarnation
                    ));
                    if !slot.done {
                        slot.incarnation += 1;
                        slot.kid = Some(spawn(id, slot)?);
                    }
                }
            }
        }
        if slots.iter().all(|s| s.done) {
            break;
        }
        if Instant::now() > deadline {
            checks.fail(format!(
                "not done in time: {} of {total} calls",
                slots.iter().map(|s| s.next).sum::<u64>()
            ));
            break;
        }
        if !server.alive()? {
            tally.unplanned_exits += 1;
            checks.fail("the server exited without being killed");
            break;
        }
        let progress: u64 = slots.iter().map(|s| s.next).sum();
        if kill_at.first().is_some_and(|&at| progress >= at) {
            kill_at.remove(0);
            let candidates: Vec<usize> = (0..CLIENTS)
                .filter(|&i| !slots[i].done && slots[i].kid.is_some())
                .collect();
            if !candidates.is_empty() {
                let id = candidates[rng.below(candidates.len() as u64) as usize];
                let slot = &mut slots[id];
                let mut kid = slot.kid.take().expect("a running client");
                kid.kill()?;
                // Progress it reported before dying still counts.
                slot.kid = Some(kid);
                drain(id, slot, &mut tally, &mut checks)?;
                slot.kid = None;
                tally.client_kills += 1;
                tally.killed[generation].insert(label(id, slot.incarnation));
                if !slot.done {
                    slot.incarnation += 1;
                    slot.kid = Some(spawn(id, slot)?);
                }
            }
        }
        if !server_killed && progress >= server_kill_at {
            server_killed = true;
            check_generation(&server, 0, &mut tally, &mut checks)?;
            if !server.alive()? {
                checks.fail("the server died before it was killed");
            }
            let status = server.kid.kill()?;
            checks.check(status.signal() == Some(9), || {
                format!("the killed server ended with {status}, not SIGKILL")
            });
            // A killed listener cannot remove its socket file.
            let _ = std::fs::remove_file(&path);
            server = ServerKid::start(&path, false)?;
            generation = 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    // Every client is gone: nothing may be left on the server. A server
    // that died cannot say so; the checks above already failed then.
    let stats = check_generation(&server, 1, &mut tally, &mut checks).unwrap_or_else(|e| {
        checks.fail(format!("the final server's report: {e}"));
        Stats::default()
    });
    checks.check(stats.handles == stats.baseline, || {
        format!(
            "the server holds {} handles, {} at the start",
            stats.handles, stats.baseline
        )
    });
    let unclosed: Vec<&str> = stats
        .contexts
        .iter()
        .filter(|c| c.rundowns != 1)
        .map(|c| c.label.as_str())
        .collect();
    checks.check(unclosed.is_empty(), || {
        format!("contexts not run down exactly once: {unclosed:?}")
    });
    checks.check(server_killed, || "the server was never killed".into());
    if server.alive()? {
        server.kid.send(b"exit", &[])?;
        let status = server.kid.wait(Duration::from_secs(10))?;
        checks.check(status.success(), || format!("the final server: {status}"));
    } else {
        checks.fail("the final server died");
    }
    checks.check(tally.mismatches.is_empty(), || {
        format!("misrouted: {:?}", tally.mismatches)
    });
    let completed: u64 = slots.iter().map(|s| s.next).sum();

    Ok(Row {
        case: "1 killed peers",
        thrown: format!(
            "RPC server process + 16 client processes ({WINDOW} calls in flight each: in-handle file, out-handle pipe, context), {per_client} calls per client; SIGKILL {} random clients (restarted) and the server once (clients reconnect to a new one)",
            tally.client_kills
        ),
        expected: "server never crashes; killed clients' contexts run down exactly once; server handles back to baseline; every reply echoes its client id and sequence number",
        observed: format!(
            "{} unplanned exits (server or client), {} server panics; {} of {} killed clients had a context open, {} rundowns; server handles {} (baseline {}); {} misrouted replies",
            tally.unplanned_exits,
            tally.server_panics,
            tally.killed_with_context,
            tally.client_kills,
            tally.killed_rundowns,
            stats.handles,
            stats.baseline,
            tally.mismatches.len()
        ),
        counts: format!(
            "{completed}/{total} calls confirmed ({} served incl. retries); {} client kills + 1 server kill; {} contexts",
            tally.server_calls, tally.client_kills, tally.contexts
        ),
        verdict: checks.verdict(),
    })
}

/// Reads what a client reported.
fn drain(id: usize, slot: &mut Slot, tally: &mut Tally, checks: &mut Checks) -> Result<()> {
    let Some(kid) = slot.kid.as_ref() else {
        return Ok(());
    };
    let mut msg = handoff::Message::new();
    loop {
        match kid.ctl().try_recv_into(&mut msg) {
            Ok(()) => {
                match serde_json::from_slice::<Report>(&msg.bytes)? {
                    Report::Progress { next } => slot.next = slot.next.max(next),
                    Report::Mismatch { detail } => tally.mismatches.push(detail),
                    Report::Done { leaked } => {
                        slot.done = true;
                        checks.check(leaked == 0, || {
                        format!("client {id} ended holding {leaked} more handles than it started with")
                    });
                    }
                }
            }
            Err(Error::WouldBlock) | Err(Error::Disconnected { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Once the killed clients of one server are gone: each of their contexts
/// ran down exactly once, and no context anywhere more than once.
fn check_generation(
    server: &ServerKid,
    generation: usize,
    tally: &mut Tally,
    checks: &mut Checks,
) -> Result<Stats> {
    let killed = &tally.killed[generation].clone();
    let (_, stats) = super::wait_for(Duration::from_secs(15), || {
        let s = server.stats()?;
        let done = s
            .contexts
            .iter()
            .filter(|c| killed.contains(&c.label))
            .all(|c| c.rundowns == 1);
        Ok((done, s))
    })?;
    let theirs: Vec<_> = stats
        .contexts
        .iter()
        .filter(|c| killed.contains(&c.label))
        .collect();
    let with_context: HashSet<&str> = theirs.iter().map(|c| c.label.as_str()).collect();
    let rundowns: u64 = theirs.iter().map(|c| u64::from(c.rundowns)).sum();
    tally.killed_with_context += with_context.len();
    tally.killed_rundowns += rundowns;
    tally.contexts += stats.contexts.len();
    tally.server_calls += stats.calls;
    tally.server_panics += stats.panics;
    checks.check(theirs.iter().all(|c| c.rundowns == 1), || {
        format!(
            "killed clients' contexts not run down exactly once: {:?}",
            theirs
                .iter()
                .filter(|c| c.rundowns != 1)
                .map(|c| format!("{}×{}", c.label, c.rundowns))
                .collect::<Vec<_>>()
        )
    });
    let twice = stats.ran_down_more_than_once();
    checks.check(twice.is_empty(), || twice.join(", "));
    checks.check(stats.panics == 0, || {
        format!("the server panicked {} times", stats.panics)
    });
    checks.check(stats.wrong_session == 0, || {
        format!(
            "{} calls used another client's context",
            stats.wrong_session
        )
    });
    Ok(stats)
}
