//! Live connection handover between two real processes: this test process
//! is the old generation, a child (this binary again) the new one. Each
//! connection is a real TCP connection whose client end stays here; the
//! reply names the generation that served it, so a connection served by
//! the wrong side, lost or closed twice shows in what the client reads.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{serial, LeakCheck};
use handoff::restart::handover::wire::{self, Msg};
use handoff::restart::handover::{
    start_successor, Connection, Doorbell, Failed, Handed, Incoming, TakeLimits, DOORBELL,
    SELF_CONTAINED,
};
use handoff::restart::state::{self, State};
use handoff::restart::HandoverError;
use handoff::{Channel, Error, Handle, Inherited};

const VERSION: u32 = 7;
const MODE: &str = "HANDOVER_TEST_MODE";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn state_bytes() -> Vec<u8> {
    (0..1_000_000u32).map(|i| (i % 251) as u8).collect()
}

/// `n` connected TCP pairs: (client end, server end as a Connection whose
/// pending bytes and position name it).
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
            pending: format!("p{i};").into_bytes(),
            position: i.to_le_bytes().to_vec(),
        });
    }
    (clients, conns)
}

/// What a client reads when `generation` served connection `id`.
fn expected(generation: u32, id: u64) -> String {
    format!("gen{generation} {id} {id} p{id};req\n")
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
        let open = handoff::count_open_handles().unwrap() as u64;
        let limit = open + 16 + 100;
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(limit),
                maximum: now.maximum,
            },
        )
        .unwrap();
    }
    runtime().block_on(async {
        let limits = TakeLimits {
            reserve: 16,
            timeout: Duration::from_secs(60),
            ..TakeLimits::default()
        };
        let mut incoming = Incoming::connect(bell, limits).await.unwrap();
        let want = if mode == "refuse" {
            VERSION + 1
        } else {
            VERSION
        };
        match State::open(incoming.take_state().unwrap(), want, 1 << 30) {
            Ok(st) => assert_eq!(st.bytes(), &state_bytes()[..]),
            Err(e) => {
                assert!(matches!(
                    e,
                    Error::Handover(HandoverError::StateVersion { .. })
                ));
                incoming.refuse(&e.to_string()).await.unwrap();
                return;
            }
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
        for c in conns {
            serve_one(2, c);
        }
    });
}

/// A new generation speaking the wire protocol by hand: takes the
/// connections and then never acknowledges them, or exits.
fn raw_new_generation(bell: Handle, mode: &str) {
    let bell = Channel::from_handle(bell).unwrap();
    let (ours, theirs) = Channel::pair().unwrap();
    bell.send(
        &wire::encode(&Msg::Hello {
            protocol: wire::PROTOCOL,
        })
        .unwrap(),
        &[theirs.as_borrowed()],
    )
    .unwrap();
    drop(theirs);
    let offer = ours.recv().unwrap();
    let Msg::Offer { connections, .. } = wire::decode(&offer.bytes, offer.handles.len()).unwrap()
    else {
        panic!("no offer")
    };
    ours.send(
        &wire::encode(&Msg::Grant { take: connections }).unwrap(),
        &[],
    )
    .unwrap();
    let conns = ours.recv().unwrap();
    assert_eq!(conns.handles.len() as u64, connections);
    if mode == "silent" {
        std::thread::sleep(Duration::from_secs(3600));
    }
    std::process::exit(4);
}

fn spawn_new(test: &str, mode: &str, doorbell: &Handle) -> handoff::Child {
    common::self_command(test, "new")
        .env(MODE, mode)
        .handle(DOORBELL, doorbell)
        .spawn()
        .unwrap()
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
        let st = state::create(VERSION, &state_bytes()).unwrap();
        (session.hand_over(Some(st), conns, timeout).await, child)
    });
    Old {
        rt,
        outcome,
        clients,
        child,
    }
}

/// The old generation serves `conns` itself: each client's request is
/// answered by generation 1.
fn old_serves(clients: &mut [TcpStream], conns: Vec<Connection>) {
    for c in conns {
        let client = &mut clients[c.id as usize];
        client.write_all(b"req\n").unwrap();
        let id = c.id;
        serve_one(1, c);
        let mut out = String::new();
        client.read_to_string(&mut out).unwrap();
        assert_eq!(out, expected(1, id));
    }
}

fn exit_code(mut child: handoff::Child) -> Option<i32> {
    child.wait().unwrap().code()
}

/// 600 connections (three messages' worth of handles) move to the new
/// process with their unread bytes and positions; each client's next
/// request is answered by generation 2, then end-of-file (the old copy was
/// closed once the new generation said it serves).
#[test]
fn connections_are_served_by_the_new_process() {
    const NAME: &str = "connections_are_served_by_the_new_process";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let mut old = old_generation(NAME, "serve", 600, Vec::new(), Duration::from_secs(30));
    let handed = old.outcome.map_err(|f| f.error).unwrap();
    assert!(handed.kept.is_empty());
    assert_eq!(handed.parked.len(), 600);
    assert!(old.rt.block_on(handed.parked.settle()).is_empty());
    for (i, c) in old.clients.iter_mut().enumerate() {
        assert_eq!(ask(c), expected(2, i as u64));
    }
    assert_eq!(exit_code(old.child), Some(0));
    drop(old.clients);
    drop(old.rt);
    leaks.assert();
}

/// A new generation with descriptors for only 100 connections takes 100
/// and serves them; the old one keeps the other 200 and serves them.
#[test]
fn connections_past_the_new_process_limit_stay_with_the_old() {
    const NAME: &str = "connections_past_the_new_process_limit_stay_with_the_old";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let mut old = old_generation(NAME, "lowfd", 300, Vec::new(), Duration::from_secs(30));
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
    drop(old.clients);
    drop(old.rt);
    leaks.assert();
}

/// A new generation that refuses the state (another version): the
/// handover fails with its reason and every connection is still the old
/// generation's, which serves it.
#[test]
fn refused_state_leaves_everything_with_the_old() {
    const NAME: &str = "refused_state_leaves_everything_with_the_old";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let mut old = old_generation(NAME, "refuse", 20, Vec::new(), Duration::from_secs(30));
    let failed = old.outcome.expect_err("refused");
    match &failed.error {
        Error::Handover(HandoverError::Refused(reason)) => {
            assert!(reason.contains("state version 7"), "{reason}")
        }
        e => panic!("{e}"),
    }
    assert_eq!(failed.connections.len(), 20);
    old_serves(&mut old.clients, failed.connections);
    assert_eq!(exit_code(old.child), Some(0));
    drop(old.clients);
    drop(old.rt);
    leaks.assert();
}

/// A pipe and a listening socket offered as connections are refused by
/// the new generation with the reason; they stay with the old one, the
/// real connections move.
#[test]
fn a_pipe_or_a_listener_is_not_a_connection() {
    const NAME: &str = "a_pipe_or_a_listener_is_not_a_connection";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let (read, _write) = std::io::pipe().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let extra = vec![
        Connection::new(1000, Handle::from(std::os::fd::OwnedFd::from(read))),
        Connection::new(1001, Handle::from(std::os::fd::OwnedFd::from(listener))),
    ];
    let mut old = old_generation(NAME, "serve", 3, extra, Duration::from_secs(30));
    let handed = old.outcome.map_err(|f| f.error).unwrap();
    let mut kept: Vec<u64> = handed.kept.iter().map(|c| c.id).collect();
    kept.sort();
    assert_eq!(kept, [1000, 1001]);
    assert_eq!(handed.refused.len(), 2);
    for (_, why) in &handed.refused {
        assert!(why.contains("not a connected stream socket"), "{why}");
    }
    assert!(old.rt.block_on(handed.parked.settle()).is_empty());
    for i in 0..3u64 {
        assert_eq!(ask(&mut old.clients[i as usize]), expected(2, i));
    }
    assert_eq!(exit_code(old.child), Some(0));
    drop(handed.kept);
    drop(_write);
    drop(old.clients);
    drop(old.rt);
    leaks.assert();
}

/// A new generation that takes the connections and never acknowledges
/// them: after the timeout the handover fails and the old generation
/// serves every one of them.
#[test]
fn unacknowledged_connections_come_back_after_the_timeout() {
    const NAME: &str = "unacknowledged_connections_come_back_after_the_timeout";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let mut old = old_generation(NAME, "silent", 300, Vec::new(), Duration::from_millis(500));
    let failed = old.outcome.expect_err("timed out");
    assert!(
        matches!(failed.error, Error::Handover(HandoverError::Timeout(_))),
        "{}",
        failed.error
    );
    assert_eq!(failed.connections.len(), 300);
    // The silent generation still holds copies: until it is gone (a
    // supervisor kills it at its ready timeout) a connection the old one
    // closes reaches its client as end-of-file only then.
    old.child.kill().unwrap();
    exit_code(old.child);
    old_serves(&mut old.clients, failed.connections);
    drop(old.clients);
    drop(old.rt);
    leaks.assert();
}

/// A new generation that exits after receiving the connections, before
/// acknowledging them: the channel closed halfway is the error, and the
/// old generation serves every connection.
#[test]
fn a_channel_closed_halfway_leaves_everything_with_the_old() {
    const NAME: &str = "a_channel_closed_halfway_leaves_everything_with_the_old";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let mut old = old_generation(
        NAME,
        "die-after-connections",
        50,
        Vec::new(),
        Duration::from_secs(30),
    );
    let failed = old.outcome.expect_err("closed");
    assert!(
        matches!(failed.error, Error::Handover(HandoverError::Closed(_))),
        "{}",
        failed.error
    );
    old_serves(&mut old.clients, failed.connections);
    assert_eq!(exit_code(old.child), Some(4));
    drop(old.clients);
    drop(old.rt);
    leaks.assert();
}

/// A new generation that crashes right after the commit, before it says
/// it serves: the parked connections come back and the old one serves
/// them.
#[test]
fn a_crash_after_taking_returns_the_connections() {
    const NAME: &str = "a_crash_after_taking_returns_the_connections";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let mut old = old_generation(
        NAME,
        "crash-after-take",
        50,
        Vec::new(),
        Duration::from_secs(30),
    );
    let handed = old.outcome.map_err(|f| f.error).unwrap();
    assert_eq!(handed.parked.len(), 50);
    let back = old.rt.block_on(handed.parked.settle());
    assert_eq!(back.len(), 50);
    old_serves(&mut old.clients, back);
    assert_eq!(exit_code(old.child), Some(3));
    drop(old.clients);
    drop(old.rt);
    leaks.assert();
}

/// Self-contained mode: the old generation starts its own successor with
/// its listener and the doorbell, answers the successor's ring with state
/// and connections, and the successor's READY=1 reaches the old one's own
/// notify socket; the clients' next requests are served by generation 2.
#[test]
fn a_self_contained_service_hands_over_to_its_own_successor() {
    const NAME: &str = "a_self_contained_service_hands_over_to_its_own_successor";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let (mut clients, conns) = connections(40);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let rt = runtime();
    let mut child = rt.block_on(async {
        let (bell, peer) = Doorbell::new().unwrap();
        let http = Handle::from(std::os::fd::OwnedFd::from(listener));
        let mut cmd = common::self_command(NAME, "new");
        cmd.env(MODE, "self");
        let upgrade = tokio::task::spawn_blocking(move || {
            start_successor(
                cmd,
                &[("http", http.borrow())],
                peer.borrow(),
                Duration::from_secs(60),
            )
        });
        let session = bell.ring().await.unwrap();
        let st = state::create(VERSION, &state_bytes()).unwrap();
        let handed = session
            .hand_over(Some(st), conns, Duration::from_secs(30))
            .await
            .map_err(|f| f.error)
            .unwrap();
        let child = upgrade.await.unwrap().unwrap();
        assert!(handed.parked.settle().await.is_empty());
        child
    });
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(ask(c), expected(2, i as u64));
    }
    assert!(child.wait().unwrap().success());
    drop(child);
    drop(clients);
    drop(rt);
    leaks.assert();
}

/// A new generation that says it serves and then goes away (a bad version
/// killed after READY=1): an old generation that holds its copies gets
/// every connection back and serves it.
#[test]
fn held_connections_come_back_when_the_new_process_goes() {
    const NAME: &str = "held_connections_come_back_when_the_new_process_goes";
    if common::role().is_some() {
        return new_generation();
    }
    let _s = serial();
    let leaks = LeakCheck::new();
    let mut old = old_generation(
        NAME,
        "exit-after-serving",
        30,
        Vec::new(),
        Duration::from_secs(30),
    );
    let handed = old.outcome.map_err(|f| f.error).unwrap();
    assert_eq!(handed.parked.len(), 30);
    let back = old.rt.block_on(handed.parked.hold());
    assert_eq!(back.len(), 30);
    old_serves(&mut old.clients, back);
    assert_eq!(exit_code(old.child), Some(5));
    drop(old.clients);
    drop(old.rt);
    leaks.assert();
}
