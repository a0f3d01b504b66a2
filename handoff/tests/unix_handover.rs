//! Live connection handover between two real processes: this test process
//! is the old generation, a child (this binary again) the new one. Each
//! connection is a real TCP connection whose client end stays here; the
//! reply names the generation that served it, so a connection served by
//! the wrong side, lost or closed twice shows in what the client reads.
#![cfg(target_os = "linux")]

mod common;

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::handover::assert_handover_error;
use common::handover::{
    ask, assert_new_serves_all, assert_state_refused, connections, exit_code, expected,
    generations, grant, new_serves, old_serves, raw_ring, runtime, spawn_new, state_bytes,
    state_refusal, MODE,
};
use common::this_test;
use handoff::restart::handover::{
    start_successor, Connection, Doorbell, Failed, Handed, Incoming, Parked, TakeLimits, DOORBELL,
    SELF_CONTAINED,
};
use handoff::restart::state;
use handoff::{Handle, Inherited};

const VERSION: u32 = 7;
const STATE_LEN: u32 = 1_000_000;

/// The new generation, in the child: modes say how it behaves.
fn new_generation() {
    let mode = std::env::var(MODE).unwrap();
    let mut inherited = Inherited::from_env().unwrap();
    let bell = inherited.take(DOORBELL).unwrap();
    if mode == "silent" || mode == "die-after-connections" {
        return raw_new_generation(bell, &mode);
    }
    if mode == "lowfd" {
        // Room for 100 connections beyond what is open and the reserve.
        common::leave_room_for(16 + 100);
    }
    runtime().block_on(async {
        let limits = TakeLimits {
            reserve: 16,
            timeout: Duration::from_secs(60),
            ..TakeLimits::default()
        };
        let mut incoming = Incoming::connect(bell, limits).await.unwrap();
        let state = incoming.take_state().unwrap();
        if let Some(reason) = state_refusal(state, &mode, VERSION, STATE_LEN) {
            incoming.refuse(&reason).await.unwrap();
            return;
        }
        let mut takeover = incoming.accept().await.unwrap();
        if mode == "crash-after-take" {
            std::process::exit(3);
        }
        let conns = std::mem::take(&mut takeover.connections);
        if mode == "self" {
            // Started by its predecessor: the listener came along, and
            // READY=1 goes to the predecessor's own notify socket.
            assert_eq!(std::env::var(SELF_CONTAINED).unwrap(), "1");
            let http = inherited.take("http").unwrap();
            assert!(matches!(
                http.kind().unwrap(),
                handoff::Kind::Socket {
                    listening: true,
                    ..
                }
            ));
            let socket = std::env::var(handoff::restart::NOTIFY_SOCKET).unwrap();
            let ready = handoff::restart::Notification {
                ready: true,
                ..Default::default()
            };
            handoff::restart::send(&socket, &ready, &[]).unwrap();
        }
        takeover.serving().await.unwrap();
        if mode == "exit-after-serving" {
            // Killed by its supervisor after READY=1, say: nothing served.
            drop(conns);
            std::process::exit(5);
        }
        new_serves(conns);
    });
}

/// A new generation speaking the wire protocol by hand: takes the
/// connections and then never acknowledges them, or exits.
fn raw_new_generation(bell: Handle, mode: &str) {
    let (session, offered) = raw_ring(bell);
    grant(&session, offered);
    let conns = session.recv().unwrap();
    assert_eq!(conns.handles.len() as u64, offered);
    if mode == "silent" {
        std::thread::sleep(Duration::from_secs(3600));
    }
    std::process::exit(4);
}

/// The old generation after one handover against a child in some mode.
struct Old {
    rt: tokio::runtime::Runtime,
    outcome: Result<Handed, Failed>,
    clients: Vec<TcpStream>,
    child: handoff::Child,
}

/// Runs the old generation's side: `n` TCP connections plus `extra`,
/// handed to a child in `mode`.
fn old_generation(
    test: &str,
    mode: &str,
    n: usize,
    extra: Vec<Connection>,
    timeout: Duration,
) -> Old {
    let (clients, mut conns) = connections(n);
    conns.extend(extra);
    let rt = runtime();
    let (outcome, child) = rt.block_on(async {
        let (bell, peer) = Doorbell::new().unwrap();
        let child = spawn_new(test, mode, &peer);
        drop(peer);
        let session = bell.ring().await.unwrap();
        let st = state::create(VERSION, &state_bytes(STATE_LEN)).unwrap();
        (session.hand_over(Some(st), conns, timeout).await, child)
    });
    Old {
        rt,
        outcome,
        clients,
        child,
    }
}

/// As [`old_generation`] with `n` connections only, and the usual timeout.
fn old_generation_of(test: &str, mode: &str, n: usize) -> Old {
    old_generation(test, mode, n, Vec::new(), Duration::from_secs(30))
}

/// The new generation in `mode` takes all `n` connections and goes,
/// exiting with `code`; `back` (settling or holding the parked copies)
/// returns every one, and the old generation serves each.
fn parked_come_back<F: std::future::Future<Output = Vec<Connection>>>(
    test: &str,
    mode: &str,
    n: usize,
    code: i32,
    back: impl FnOnce(Parked) -> F,
) {
    let mut old = old_generation_of(test, mode, n);
    let handed = old.outcome.map_err(|f| f.error).unwrap();
    assert_eq!(handed.parked.len(), n);
    let back = old.rt.block_on(back(handed.parked));
    assert_eq!(back.len(), n);
    old_serves(&mut old.clients, back);
    assert_eq!(exit_code(old.child), Some(code));
}

/// 600 connections (three messages' worth of handles) move to the new
/// process with their unread bytes and positions; each client's next
/// request is answered by generation 2, then end-of-file (the old copy was
/// closed once the new generation said it serves).
#[test]
fn connections_are_served_by_the_new_process() {
    generations(new_generation, || {
        let mut old = old_generation_of(this_test!(), "serve", 600);
        let handed = old.outcome.map_err(|f| f.error).unwrap();
        assert!(handed.kept.is_empty());
        assert_eq!(handed.parked.len(), 600);
        assert!(old.rt.block_on(handed.parked.settle()).is_empty());
        assert_new_serves_all(&mut old.clients, old.child);
    });
}

/// A new generation with descriptors for only 100 connections takes 100
/// and serves them; the old one keeps the other 200 and serves them.
#[test]
fn connections_past_the_new_process_limit_stay_with_the_old() {
    generations(new_generation, || {
        let mut old = old_generation_of(this_test!(), "lowfd", 300);
        let handed = old.outcome.map_err(|f| f.error).unwrap();
        let parked = handed.parked.len();
        assert!(parked > 0 && parked < 300, "{parked} taken");
        assert_eq!(parked + handed.kept.len(), 300);
        let moved: Vec<u64> = (0..300u64)
            .filter(|i| !handed.kept.iter().any(|c| c.id == *i))
            .collect();
        assert!(old.rt.block_on(handed.parked.settle()).is_empty());
        old_serves(&mut old.clients, handed.kept);
        for i in moved {
            assert_eq!(ask(&mut old.clients[i as usize]), expected(2, i));
        }
        assert_eq!(exit_code(old.child), Some(0));
    });
}

/// A new generation that refuses the state (another version): the
/// handover fails with its reason and every connection is still the old
/// generation's, which serves it.
#[test]
fn refused_state_leaves_everything_with_the_old() {
    generations(new_generation, || {
        let mut old = old_generation_of(this_test!(), "refuse", 20);
        assert_state_refused(old.outcome, VERSION, &mut old.clients, old.child);
    });
}

/// A pipe and a listening socket offered as connections are refused by
/// the new generation with the reason; they stay with the old one, the
/// real connections move.
#[test]
fn a_pipe_or_a_listener_is_not_a_connection() {
    generations(new_generation, || {
        let (read, _write) = std::io::pipe().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let extra = vec![Connection::new(1000, read), Connection::new(1001, listener)];
        let mut old = old_generation(this_test!(), "serve", 3, extra, Duration::from_secs(30));
        let handed = old.outcome.map_err(|f| f.error).unwrap();
        let mut kept: Vec<u64> = handed.kept.iter().map(|c| c.id).collect();
        kept.sort();
        assert_eq!(kept, [1000, 1001]);
        assert_eq!(handed.refused.len(), 2);
        for (_, why) in &handed.refused {
            assert!(why.contains("not a connected stream socket"), "{why}");
        }
        assert!(old.rt.block_on(handed.parked.settle()).is_empty());
        assert_new_serves_all(&mut old.clients, old.child);
    });
}

/// A new generation that takes the connections and never acknowledges
/// them: after the timeout the handover fails and the old generation
/// serves every one of them.
#[test]
fn unacknowledged_connections_come_back_after_the_timeout() {
    generations(new_generation, || {
        let mut old = old_generation(
            this_test!(),
            "silent",
            300,
            Vec::new(),
            Duration::from_millis(500),
        );
        let failed = old.outcome.expect_err("timed out");
        assert_handover_error!(failed.error, Timeout(_));
        assert_eq!(failed.connections.len(), 300);
        // The silent generation still holds copies: until it is gone (a
        // supervisor kills it at its ready timeout) a connection the old one
        // closes reaches its client as end-of-file only then.
        old.child.kill().unwrap();
        exit_code(old.child);
        old_serves(&mut old.clients, failed.connections);
    });
}

/// A new generation that exits after receiving the connections, before
/// acknowledging them: the channel closed halfway is the error, and the
/// old generation serves every connection.
#[test]
fn a_channel_closed_halfway_leaves_everything_with_the_old() {
    generations(new_generation, || {
        let mut old = old_generation_of(this_test!(), "die-after-connections", 50);
        let failed = old.outcome.expect_err("closed");
        assert_handover_error!(failed.error, Closed(_));
        old_serves(&mut old.clients, failed.connections);
        assert_eq!(exit_code(old.child), Some(4));
    });
}

/// A new generation that crashes right after the commit, before it says
/// it serves: the parked connections come back and the old one serves
/// them.
#[test]
fn a_crash_after_taking_returns_the_connections() {
    generations(new_generation, || {
        parked_come_back(this_test!(), "crash-after-take", 50, 3, Parked::settle);
    });
}

/// Self-contained mode: the old generation starts its own successor with
/// its listener and the doorbell, answers the successor's ring with state
/// and connections, and the successor's READY=1 reaches the old one's own
/// notify socket; the clients' next requests are served by generation 2.
#[test]
fn a_self_contained_service_hands_over_to_its_own_successor() {
    generations(new_generation, || {
        let (mut clients, conns) = connections(40);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cmd = common::self_command(this_test!(), "new");
        cmd.env(MODE, "self");
        let rt = runtime();
        let child = rt.block_on(async {
            let (bell, peer) = Doorbell::new().unwrap();
            let http = Handle::from(listener);
            let upgrade = tokio::task::spawn_blocking(move || {
                start_successor(
                    cmd,
                    &[("http", http.borrow())],
                    peer.borrow(),
                    Duration::from_secs(60),
                )
            });
            let session = bell.ring().await.unwrap();
            let st = state::create(VERSION, &state_bytes(STATE_LEN)).unwrap();
            let handed = session
                .hand_over(Some(st), conns, Duration::from_secs(30))
                .await
                .map_err(|f| f.error)
                .unwrap();
            let child = upgrade.await.unwrap().unwrap();
            assert!(handed.parked.settle().await.is_empty());
            child
        });
        assert_new_serves_all(&mut clients, child);
    });
}

/// A new generation that says it serves and then goes away (a bad version
/// killed after READY=1): an old generation that holds its copies gets
/// every connection back and serves it.
#[test]
fn held_connections_come_back_when_the_new_process_goes() {
    generations(new_generation, || {
        parked_come_back(this_test!(), "exit-after-serving", 30, 5, Parked::hold);
    });
}
