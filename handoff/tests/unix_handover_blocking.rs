//! The blocking form of the live connection handover between two real
//! processes: this test process is the old generation, with no tokio
//! runtime of its own; a child (this binary again) is the new one, also
//! blocking (or async, to show that the two forms speak the same
//! session). Each connection is a real TCP connection whose client end
//! stays here, and the reply names the generation that served it and
//! repeats the bytes it had pending, so a connection lost, served by the
//! wrong side or stripped of its unread bytes shows in what the client
//! reads.
#![cfg(target_os = "linux")]

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::handover::assert_handover_error;
use common::handover::{
    assert_new_serves_all, assert_state_refused, connections, generations, new_serves, runtime,
    spawn_new, state_bytes, state_refusal, MODE,
};
use common::this_test;
use handoff::restart::handover::blocking::{Doorbell, Handed, Incoming};
use handoff::restart::handover::{Failed, TakeLimits, DOORBELL};
use handoff::restart::state::{self, State};
use handoff::{Error, Handle, Inherited};

const VERSION: u32 = 3;
const STATE_LEN: u32 = 100_000;
const TIMEOUT: Duration = Duration::from_secs(30);

fn limits() -> TakeLimits {
    TakeLimits {
        reserve: 16,
        timeout: TIMEOUT,
        ..TakeLimits::default()
    }
}

fn is_unsupported(e: &Error) -> bool {
    matches!(e, Error::Unsupported(_))
}

/// The new generation, in the child, blocking throughout.
fn new_generation() {
    let mode = std::env::var(MODE).unwrap();
    let mut inherited = Inherited::from_env().unwrap();
    let bell = inherited.take(DOORBELL).unwrap();
    if mode == "in-runtime" {
        // Refused inside a runtime, no panic (its copy of the doorbell is
        // closed, as on any failure to connect).
        let copy = bell.try_clone().unwrap();
        let err = runtime()
            .block_on(async { Incoming::connect(copy, limits()) })
            .unwrap_err();
        assert!(is_unsupported(&err), "{err}");
        // The old generation's first session fails before its offer (its
        // hand_over was called inside a runtime): the ring is answered by
        // the session closing.
        let err = Incoming::connect(bell.try_clone().unwrap(), limits()).unwrap_err();
        assert_handover_error!(err, Closed(_));
    }
    if mode == "async" {
        return async_new_generation(bell);
    }
    let mut incoming = Incoming::connect(bell, limits()).unwrap();
    let state = incoming.take_state().unwrap();
    if let Some(reason) = state_refusal(state, &mode, VERSION, STATE_LEN) {
        return incoming.refuse(&reason).unwrap();
    }
    let offered = incoming.offered();
    let mut takeover = incoming.accept().unwrap();
    assert_eq!(takeover.connections.len() as u64, offered);
    assert!(takeover.declined.is_empty());
    assert_eq!(takeover.untaken, 0);
    let conns = std::mem::take(&mut takeover.connections);
    takeover.serving().unwrap();
    new_serves(conns);
}

/// The new generation with the async form, answering a blocking old one.
fn async_new_generation(bell: Handle) {
    runtime().block_on(async {
        let mut incoming = handoff::restart::handover::Incoming::connect(bell, limits())
            .await
            .unwrap();
        let st = State::open(incoming.take_state().unwrap(), VERSION, 1 << 20).unwrap();
        assert_eq!(st.bytes(), &state_bytes(STATE_LEN)[..]);
        let mut takeover = incoming.accept().await.unwrap();
        let conns = std::mem::take(&mut takeover.connections);
        takeover.serving().await.unwrap();
        new_serves(conns);
    });
}

/// The blocking old generation after one handover of `n` connections to
/// a child in some mode.
struct Old {
    outcome: Result<Handed, Failed>,
    clients: Vec<TcpStream>,
    child: handoff::Child,
    /// Open until the test ends, as a service keeps its doorbell.
    _bell: Doorbell,
}

/// Runs the old generation's side: `n` TCP connections handed to a child
/// in `mode`.
fn old_generation(test: &str, mode: &str, n: usize) -> Old {
    let (clients, conns) = connections(n);
    let (bell, peer) = Doorbell::new().unwrap();
    let child = spawn_new(test, mode, &peer);
    drop(peer);
    let session = bell.ring().unwrap();
    let st = state::create(VERSION, &state_bytes(STATE_LEN)).unwrap();
    Old {
        outcome: session.hand_over(Some(st), conns, TIMEOUT),
        clients,
        child,
        _bell: bell,
    }
}

/// 300 connections (two messages' worth of handles) move from a blocking
/// old generation to a blocking new one with their unread bytes and
/// positions; each client's next request is answered by generation 2.
#[test]
fn blocking_generations_hand_over_connections() {
    generations(new_generation, || {
        let mut old = old_generation(this_test!(), "serve", 300);
        let handed = old.outcome.map_err(|f| f.error).unwrap();
        assert!(handed.kept.is_empty());
        assert!(handed.refused.is_empty());
        assert_eq!(handed.parked.len(), 300);
        assert!(handed.parked.settle().unwrap().is_empty());
        assert_new_serves_all(&mut old.clients, old.child);
    });
}

/// A blocking new generation that refuses the state: the handover fails
/// with its reason and the old generation serves every connection.
#[test]
fn a_refused_state_leaves_the_connections_with_the_old() {
    generations(new_generation, || {
        let mut old = old_generation(this_test!(), "refuse", 20);
        assert_state_refused(old.outcome, VERSION, &mut old.clients, old.child);
    });
}

/// Every blocking call made inside a tokio runtime answers
/// `Error::Unsupported` without panicking or doing anything: a handover
/// refused that way returns every connection, parked copies come back to
/// be settled from a plain thread, and the doorbell still works there.
/// The child checks the new side the same way.
#[test]
fn inside_a_runtime_the_blocking_form_refuses() {
    generations(new_generation, || {
        let rt = runtime();
        let err = rt.block_on(async { Doorbell::new() }).unwrap_err();
        assert!(is_unsupported(&err), "{err}");
        // Made outside, dropped inside: its private runtime goes quietly.
        let (spare, spare_peer) = Doorbell::new().unwrap();
        rt.block_on(async move { drop(spare) });
        drop(spare_peer);

        let (mut clients, conns) = connections(10);
        let (bell, peer) = Doorbell::new().unwrap();
        let child = spawn_new(this_test!(), "in-runtime", &peer);
        drop(peer);
        let err = rt.block_on(async { bell.ring() }).unwrap_err();
        assert!(is_unsupported(&err), "{err}");
        let err = rt
            .block_on(async { bell.ring_timeout(Duration::ZERO) })
            .unwrap_err();
        assert!(is_unsupported(&err), "{err}");

        // First session: hand_over inside the runtime fails with every
        // connection back, and the child sees the session close.
        let session = bell.ring().unwrap();
        let st = state::create(VERSION, &state_bytes(STATE_LEN)).unwrap();
        let failed = rt
            .block_on(async { session.hand_over(Some(st), conns, TIMEOUT) })
            .expect_err("refused inside a runtime");
        assert!(is_unsupported(&failed.error), "{}", failed.error);
        let mut ids: Vec<u64> = failed.connections.iter().map(|c| c.id).collect();
        ids.sort();
        assert_eq!(ids, (0..10).collect::<Vec<u64>>());

        // Second session, the child's next ring: the handover happens, and
        // settling inside the runtime hands the parked copies back untouched.
        let session = bell.ring().unwrap();
        let st = state::create(VERSION, &state_bytes(STATE_LEN)).unwrap();
        let handed = session
            .hand_over(Some(st), failed.connections, TIMEOUT)
            .map_err(|f| f.error)
            .unwrap();
        let not_run = rt
            .block_on(async { handed.parked.settle() })
            .expect_err("refused inside a runtime");
        assert!(is_unsupported(&not_run.error), "{}", not_run.error);
        let parked = not_run.value;
        assert_eq!(parked.len(), 10);
        let not_run = rt
            .block_on(async { parked.hold() })
            .expect_err("refused inside a runtime");
        assert!(is_unsupported(&not_run.error), "{}", not_run.error);
        let parked = not_run.value;
        assert_eq!(parked.len(), 10);
        assert!(parked.settle().unwrap().is_empty());
        assert_new_serves_all(&mut clients, child);
    });
}

/// The two forms speak the same session: a blocking old generation hands
/// its connections to a new one using the async form.
#[test]
fn a_blocking_old_generation_hands_over_to_an_async_new_one() {
    generations(new_generation, || {
        let mut old = old_generation(this_test!(), "async", 30);
        let handed = old.outcome.map_err(|f| f.error).unwrap();
        assert_eq!(handed.parked.len(), 30);
        assert!(handed.parked.settle().unwrap().is_empty());
        assert_new_serves_all(&mut old.clients, old.child);
    });
}
