//! Case 3: who may connect. A listener admitting uid 0 only, its socket
//! file opened to everyone, so that only the listener's own rule stands
//! between a process of uid 65534 and the service.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use handoff::{AsHandle, Channel, Error, Listener};
use serde::{Deserialize, Serialize};

use super::server::{ChaosBlockingClient, ServerKid};
use super::{child_ctl, env, recv_timeout, send_json, Cfg, Checks, Kid, Row, TempDir};
use crate::Result;

pub const ROLE: &str = "admission-peer";
const PATH_ENV: &str = "HANDOFF_CHAOS_ADMIT_PATH";
const UID_ENV: &str = "HANDOFF_CHAOS_ADMIT_UID";
const RPC_ENV: &str = "HANDOFF_CHAOS_ADMIT_RPC";
const NOBODY: u32 = 65534;

#[derive(Debug, Serialize, Deserialize)]
struct PeerReport {
    uid: u32,
    /// The kernel let it connect (the file permits it).
    connected: bool,
    /// What it got back: "Disconnected", "welcome", "answered", or an error.
    outcome: String,
}

/// The child: connects as `uid` and says what happened.
pub fn peer_role() -> Result<()> {
    let ctl = child_ctl()?;
    let path: PathBuf = env(PATH_ENV)?;
    let uid: u32 = env(UID_ENV)?;
    let rpc = std::env::var_os(RPC_ENV).is_some();
    if uid != 0 {
        // Per thread on Linux, and this process has one: what the kernel
        // records as the peer's uid at connect time.
        rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(uid))?;
    }
    let report = if rpc {
        match ChaosBlockingClient::connect(&path) {
            Ok(client) => {
                let echo = client.fetch(uid, 1).map_err(|e| e.to_string());
                PeerReport {
                    uid,
                    connected: true,
                    outcome: match echo {
                        Ok(_) => "answered".into(),
                        Err(e) => e,
                    },
                }
            }
            Err(e) => PeerReport {
                uid,
                // A refusal after connecting reads as Disconnected; a
                // refusal by the file system as an I/O error.
                connected: matches!(e, Error::Disconnected { .. }),
                outcome: super::hostile::kind_of(&e).into(),
            },
        }
    } else {
        match Channel::connect(&path) {
            Ok(ch) => {
                // A message with a handle, so a listener that read it would
                // show it, and one that dropped it must close the handle.
                let null = File::open("/dev/null")?;
                let _ = ch.send(format!("uid {uid}").as_bytes(), &[null.as_handle()]);
                let outcome = match recv_timeout(&ch, Duration::from_secs(20)) {
                    Ok(m) => String::from_utf8_lossy(&m.bytes).into_owned(),
                    Err(e) => super::hostile::kind_of(&e).into(),
                };
                PeerReport {
                    uid,
                    connected: true,
                    outcome,
                }
            }
            Err(e) => PeerReport {
                uid,
                connected: false,
                outcome: e.to_string(),
            },
        }
    };
    send_json(&ctl, &report)
}

fn skip_unless_root(case: &'static str, thrown: &str, expected: &'static str) -> Option<Row> {
    if rustix::process::getuid().is_root() {
        return None;
    }
    Some(Row {
        case,
        thrown: thrown.to_owned(),
        expected,
        observed: String::new(),
        counts: String::new(),
        verdict: super::Verdict::Skip(
            "not running as root: a child cannot switch to uid 65534".into(),
        ),
    })
}

fn peer(path: &Path, uid: u32, rpc: bool) -> Result<Kid> {
    let mut env = vec![
        (PATH_ENV, path.display().to_string()),
        (UID_ENV, uid.to_string()),
    ];
    if rpc {
        env.push((RPC_ENV, "1".into()));
    }
    Kid::spawn(ROLE, &env)
}

/// Runs one case of who may connect, or skips it when not running as
/// root (a child cannot switch to uid 65534 then). `body` gets the number
/// of outsiders, a socket path named `socket` in a directory every user
/// may enter, and the checks, and says what it observed; `thrown` is the
/// case's description for that number of outsiders.
fn run_case(
    cfg: &Cfg,
    case: &'static str,
    expected: &'static str,
    thrown: impl FnOnce(usize) -> String,
    socket: &str,
    body: impl FnOnce(usize, &Path, &mut Checks) -> Result<String>,
) -> Result<Row> {
    let count: usize = cfg.pick(8, 64);
    let thrown = thrown(count);
    if let Some(row) = skip_unless_root(case, &thrown, expected) {
        return Ok(row);
    }
    let dir = TempDir::new("admit")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let mut checks = Checks::default();
    let observed = body(count, &dir.path().join(socket), &mut checks)?;
    Ok(Row {
        case,
        thrown,
        expected,
        observed,
        counts: format!("{} connections, 1 admitted", count + 1),
        verdict: checks.verdict(),
    })
}

/// Runs the outsiders one after another, each to its end.
fn outsiders(path: &Path, count: usize, rpc: bool, checks: &mut Checks) -> Result<usize> {
    let mut refused = 0;
    for i in 0..count {
        let mut kid = peer(path, NOBODY, rpc)?;
        let report: PeerReport = kid.recv_json(Duration::from_secs(30))?;
        let status = kid.wait(Duration::from_secs(10))?;
        let ok = report.connected && report.outcome == "Disconnected" && status.success();
        refused += usize::from(ok);
        checks.check(ok, || format!("outsider {i}: {report:?}, {status}"));
    }
    Ok(refused)
}

/// 3a.
pub fn listener(cfg: &Cfg) -> Result<Row> {
    const CASE: &str = "3a who may connect: Listener";
    const EXPECTED: &str = "outsiders connect but are dropped unread (they see Disconnected); accept() returns only the root child; listener's handles back to baseline";
    let thrown = |count| {
        format!(
            "Listener with allow_uids([0]) on a socket file chmod 666; {count} child processes switched to uid 65534 connect and send a message with a handle, then one root child"
        )
    };
    run_case(cfg, CASE, EXPECTED, thrown, "sock", listener_case)
}

fn listener_case(count: usize, path: &Path, checks: &mut Checks) -> Result<String> {
    let baseline = handoff::count_open_handles()?;
    let listener = Listener::bind(path)?.allow_uids([0]);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    let (tx, rx) = mpsc::channel();
    // accept() returns only an admitted peer; it runs while the outsiders
    // come and go, and hands back the first peer it lets through.
    let acceptor = std::thread::spawn(move || {
        let outcome = listener.accept().and_then(|ch| {
            let creds = ch.peer_credentials()?;
            let first = recv_timeout(&ch, Duration::from_secs(10))?;
            let first = String::from_utf8_lossy(&first.bytes).into_owned();
            ch.send(b"welcome", &[])?;
            Ok((creds.uid, creds.pid, first))
        });
        let _ = tx.send(outcome);
        drop(listener);
    });
    let refused = outsiders(path, count, false, checks)?;
    checks.check(rx.try_recv().is_err(), || {
        "the listener let an outsider through".into()
    });
    let mut insider = peer(path, 0, false)?;
    let insider_pid = insider.pid();
    let admitted = rx.recv_timeout(Duration::from_secs(20));
    let report: PeerReport = insider.recv_json(Duration::from_secs(20))?;
    let status = insider.wait(Duration::from_secs(10))?;
    let admitted_text = match &admitted {
        Ok(Ok((uid, pid, first))) => format!(
            "only uid {uid} (pid {pid}, {}), whose first message read was {first:?}",
            if *pid == insider_pid {
                "the root child"
            } else {
                "not the root child"
            }
        ),
        other => format!("{other:?}"),
    };
    match admitted {
        Ok(Ok((uid, pid, first))) => {
            checks.check(uid == 0 && pid == insider_pid, || {
                format!("admitted uid {uid} pid {pid}")
            });
            checks.check(first == "uid 0", || {
                format!("the first message read was {first:?}")
            });
        }
        other => {
            checks.fail(format!("the root peer was not admitted: {other:?}"));
            // Wake the acceptor so it lets go of the listener.
            let _ = Channel::connect(path);
        }
    }
    let _ = acceptor.join();
    checks.check(report.outcome == "welcome" && status.success(), || {
        format!("root peer: {report:?}, {status}")
    });
    drop(insider);
    let handles = handoff::count_open_handles()?;
    checks.check(handles == baseline, || {
        format!("the harness holds {handles} handles, {baseline} before")
    });
    Ok(format!(
        "{refused}/{count} outsiders saw Disconnected; accept() returned {admitted_text}; root child got {:?}; handles {handles} (baseline {baseline})",
        report.outcome
    ))
}

/// 3b.
pub fn rpc_server(cfg: &Cfg) -> Result<Row> {
    const CASE: &str = "3b who may connect: RPC server";
    const EXPECTED: &str = "outsiders' handshakes fail with Disconnected and never reach the server loop; the root child's call is answered";
    let thrown = |count| {
        format!(
            "RPC server on a Listener with allow_uids([0]), socket chmod 666; {count} uid-65534 child processes try the handshake, then one root child calls"
        )
    };
    run_case(cfg, CASE, EXPECTED, thrown, "rpc.sock", rpc_server_case)
}

fn rpc_server_case(count: usize, path: &Path, checks: &mut Checks) -> Result<String> {
    let mut server = ServerKid::start(path, true)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    let refused = outsiders(path, count, true, checks)?;
    let after_outsiders = server.stats()?;
    checks.check(after_outsiders.accepted == 0, || {
        format!("{} outsiders were admitted", after_outsiders.accepted)
    });
    let mut insider = peer(path, 0, true)?;
    let report: PeerReport = insider.recv_json(Duration::from_secs(20))?;
    let status = insider.wait(Duration::from_secs(10))?;
    checks.check(report.outcome == "answered" && status.success(), || {
        format!("root peer: {report:?}, {status}")
    });
    let (settled, stats) = server.settle(Duration::from_secs(10))?;
    checks.check(stats.accepted == 1, || {
        format!("the server admitted {} connections", stats.accepted)
    });
    checks.check(settled, || {
        format!("handles {} (baseline {})", stats.handles, stats.baseline)
    });
    checks.check(stats.calls == 1, || format!("{} calls ran", stats.calls));
    checks.check(server.alive()?, || "the server died".into());
    server.stop(checks)?;
    Ok(format!(
        "{refused}/{count} outsiders refused; server admitted {} connection(s), ran {} call(s); root child: {}; handles {} (baseline {})",
        stats.accepted, stats.calls, report.outcome, stats.handles, stats.baseline
    ))
}
