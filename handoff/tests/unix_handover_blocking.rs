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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{serial, LeakCheck};
use handoff::restart::handover::blocking::{Doorbell, Incoming};
use handoff::restart::handover::{Connection, TakeLimits, DOORBELL};
use handoff::restart::state::{self, State};
use handoff::restart::HandoverError;
use handoff::{Error, Handle, Inherited};

const VERSION: u32 = 3;
const MODE: &str = "HANDOVER_BLOCKING_MODE";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A runtime on this thread, only to call the blocking form inside it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn state_bytes() -> Vec<u8> {
    (0..100_000u32).map(|i| (i % 253) as u8).collect()
}

fn limits() -> TakeLimits {
    TakeLimits {
        reserve: 16,
        timeout: TIMEOUT,
        ..TakeLimits::default()
    }
}

/// `n` connected TCP pairs: the client ends, and the server ends as
/// connections whose pending bytes and position name them.
fn connections(n: usize) -> (Vec<TcpStream>, Vec<Connection>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients = Vec::new();
    let mut conns = Vec::new();
    for i in 0..n as u64 {
        clients.push(TcpStream::connect(addr).unwrap());
        let (server, _) = listener.accept().unwrap();
        conns.push(Connection {
            id: i,
            handle: Handle::from(std::os::fd::OwnedFd::from(server)),
            pending: format!("unread{i};").into_bytes(),
            position: i.to_le_bytes().to_vec(),
        });
    }
    (clients, conns)
}

/// What a client reads when `generation` served connection `id`.
fn expected(generation: u32, id: u64) -> String {
    format!("gen{generation} {id} {id} unread{id};req\n")
}

/// Serves one request on `conn` as `generation`: the reply repeats the
/// position, the pending bytes and the request line, then the connection
/// is closed.
fn serve_one(generation: u32, conn: Connection) {
    let stream = TcpStream::from(std::os::fd::OwnedFd::from(conn.handle));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let pos = u64::from_le_bytes(conn.position[..8].try_into().unwrap());
    let pending = String::from_utf8(conn.pending).unwrap();
    let mut s = stream;
    write!(s, "gen{generation} {} {pos} {pending}{line}", conn.id).unwrap();
}

/// The client's side of one request: what came back before end-of-file.
fn ask(client: &mut TcpStream) -> String {
    client.write_all(b"req\n").unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).unwrap();
    out
}

/// The old generation serves `conns` itself.
fn old_serves(clients: &mut [TcpStream], conns: Vec<Connection>) {
    for c in conns {
        let id = c.id;
        let client = &mut clients[id as usize];
        client.write_all(b"req\n").unwrap();
        serve_one(1, c);
        let mut out = String::new();
        client.read_to_string(&mut out).unwrap();
        assert_eq!(out, expected(1, id));
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
        assert!(
            matches!(err, Error::Handover(HandoverError::Closed(_))),
            "{err}"
        );
    }
    if mode == "async" {
        return async_new_generation(bell);
    }
    let mut incoming = Incoming::connect(bell, limits()).unwrap();
    let want = if mode == "refuse" {
        VERSION + 1
    } else {
        VERSION
    };
    match State::open(incoming.take_state().unwrap(), want, 1 << 20) {
        Ok(st) => assert_eq!(st.bytes(), &state_bytes()[..]),
        Err(e) => {
            assert!(matches!(
                e,
                Error::Handover(HandoverError::StateVersion { .. })
            ));
            return incoming.refuse(&e.to_string()).unwrap();
        }
    }
    let offered = incoming.offered();
    let mut takeover = incoming.accept().unwrap();
    assert_eq!(takeover.connections.len() as u64, offered);
    assert!(takeover.declined.is_empty());
    assert_eq!(takeover.untaken, 0);
    let conns = std::mem::take(&mut takeover.connections);
    takeover.serving().unwrap();
    for c in conns {
        serve_one(2, c);
    }
}

/// The new generation with the async form, answering a blocking old one.
fn async_new_generation(bell: Handle) {
    runtime().block_on(async {
        let mut incoming = handoff::restart::handover::Incoming::connect(bell, limits())
            .await
            .unwrap();
        let st = State::open(incoming.take_state().unwrap(), VERSION, 1 << 20).unwrap();
        assert_eq!(st.bytes(), &state_bytes()[..]);
        let mut takeover = incoming.accept().await.unwrap();
        let conns = std::mem::take(&mut takeover.connections);
        takeover.serving().await.unwrap();
        for c in conns {
            serve_one(2, c);
        }
    });
}

fn spawn_new(test: &str, mode: &str, doorbell: &Handle) -> handoff::Child {
    common::self_command(test, "new")
        .env(MODE, mode)
        .handle(DOORBELL, doorbell)
        .spawn()
        .unwrap()
}

fn exit_code(mut child: handoff::Child) -> Option<i32> {
    child.wait().unwrap().code()
}

/// 300 connections (two messages' worth of handles) move from a blocking
/// old generation to a blocking new one with their unread bytes and
/// positions; each client's next request is answered by generation 2.
#[test]
fn blocking_generations_hand_over_connections() {
    const NAME: &str = "blocking_generations_hand_over_connections";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let (mut clients, conns) = connections(300);
    let (bell, peer) = Doorbell::new().unwrap();
    let child = spawn_new(NAME, "serve", &peer);
    drop(peer);
    let session = bell.ring().unwrap();
    let st = state::create(VERSION, &state_bytes()).unwrap();
    let handed = session
        .hand_over(Some(st), conns, TIMEOUT)
        .map_err(|f| f.error)
        .unwrap();
    assert!(handed.kept.is_empty());
    assert!(handed.refused.is_empty());
    assert_eq!(handed.parked.len(), 300);
    assert!(handed.parked.settle().unwrap().is_empty());
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(ask(c), expected(2, i as u64));
    }
    assert_eq!(exit_code(child), Some(0));
    drop(bell);
    drop(clients);
    leaks.assert();
}

/// A blocking new generation that refuses the state: the handover fails
/// with its reason and the old generation serves every connection.
#[test]
fn a_refused_state_leaves_the_connections_with_the_old() {
    const NAME: &str = "a_refused_state_leaves_the_connections_with_the_old";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let (mut clients, conns) = connections(20);
    let (bell, peer) = Doorbell::new().unwrap();
    let child = spawn_new(NAME, "refuse", &peer);
    drop(peer);
    let session = bell.ring().unwrap();
    let st = state::create(VERSION, &state_bytes()).unwrap();
    let failed = session
        .hand_over(Some(st), conns, TIMEOUT)
        .expect_err("refused");
    match &failed.error {
        Error::Handover(HandoverError::Refused(reason)) => {
            assert!(reason.contains("state version 3"), "{reason}")
        }
        e => panic!("{e}"),
    }
    assert_eq!(failed.connections.len(), 20);
    old_serves(&mut clients, failed.connections);
    assert_eq!(exit_code(child), Some(0));
    drop(bell);
    drop(clients);
    leaks.assert();
}

/// Every blocking call made inside a tokio runtime answers
/// `Error::Unsupported` without panicking or doing anything: a handover
/// refused that way returns every connection, parked copies come back to
/// be settled from a plain thread, and the doorbell still works there.
/// The child checks the new side the same way.
#[test]
fn inside_a_runtime_the_blocking_form_refuses() {
    const NAME: &str = "inside_a_runtime_the_blocking_form_refuses";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let rt = runtime();
    let err = rt.block_on(async { Doorbell::new() }).unwrap_err();
    assert!(is_unsupported(&err), "{err}");
    // Made outside, dropped inside: its private runtime goes quietly.
    let (spare, spare_peer) = Doorbell::new().unwrap();
    rt.block_on(async move { drop(spare) });
    drop(spare_peer);

    let (mut clients, conns) = connections(10);
    let (bell, peer) = Doorbell::new().unwrap();
    let child = spawn_new(NAME, "in-runtime", &peer);
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
    let st = state::create(VERSION, &state_bytes()).unwrap();
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
    let st = state::create(VERSION, &state_bytes()).unwrap();
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
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(ask(c), expected(2, i as u64));
    }
    assert_eq!(exit_code(child), Some(0));
    drop(bell);
    drop(clients);
    drop(rt);
    leaks.assert();
}

/// The two forms speak the same session: a blocking old generation hands
/// its connections to a new one using the async form.
#[test]
fn a_blocking_old_generation_hands_over_to_an_async_new_one() {
    const NAME: &str = "a_blocking_old_generation_hands_over_to_an_async_new_one";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let (mut clients, conns) = connections(30);
    let (bell, peer) = Doorbell::new().unwrap();
    let child = spawn_new(NAME, "async", &peer);
    drop(peer);
    let session = bell.ring().unwrap();
    let st = state::create(VERSION, &state_bytes()).unwrap();
    let handed = session
        .hand_over(Some(st), conns, TIMEOUT)
        .map_err(|f| f.error)
        .unwrap();
    assert_eq!(handed.parked.len(), 30);
    assert!(handed.parked.settle().unwrap().is_empty());
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(ask(c), expected(2, i as u64));
    }
    assert_eq!(exit_code(child), Some(0));
    drop(bell);
    drop(clients);
    leaks.assert();
}
