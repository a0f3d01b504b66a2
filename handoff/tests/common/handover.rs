//! What the restart handover tests share: real TCP connections whose
//! replies name the generation that served them (so a connection lost,
//! served by the wrong side or stripped of its unread bytes shows in what
//! its client reads), the child re-run as the new generation, and the new
//! generation's first steps of the wire protocol written by hand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use handoff::restart::handover::wire::{self, Msg};
use handoff::restart::handover::{Connection, Failed, DOORBELL};
use handoff::restart::HandoverError;
use handoff::{Channel, Handle};

/// How the child told to be the new generation behaves.
pub const MODE: &str = "HANDOVER_TEST_MODE";

/// In the child (started with a role), runs `new_generation`; in the
/// parent, runs `old_generation` with no other counting test of the binary
/// running, and asserts the open-handle count afterwards is what it was.
pub fn generations(new_generation: fn(), old_generation: impl FnOnce()) {
    if super::role().is_some() {
        return new_generation();
    }
    super::without_leaks(old_generation);
}

/// Asserts that `err` (a `handoff::Error`) is the handover error that
/// `pattern` (a `HandoverError` variant) matches, and shows it otherwise.
#[allow(unused_macros)]
macro_rules! assert_handover_error {
    ($err:expr, $($pattern:tt)+) => {{
        let err = &$err;
        assert!(
            matches!(
                err,
                ::handoff::Error::Handover(::handoff::restart::HandoverError::$($pattern)+)
            ),
            "{err}"
        );
    }};
}
#[allow(unused_imports)]
pub(crate) use assert_handover_error;

/// A runtime on this thread: the handover's own tasks need no more.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The state both generations know, `len` bytes of it.
pub fn state_bytes(len: u32) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// `n` connected TCP pairs: the client ends, and the server ends as
/// connections whose pending bytes and position name them.
pub fn connections(n: usize) -> (Vec<TcpStream>, Vec<Connection>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients = Vec::new();
    let mut conns = Vec::new();
    for i in 0..n as u64 {
        clients.push(TcpStream::connect(addr).unwrap());
        let (server, _) = listener.accept().unwrap();
        conns.push(Connection {
            id: i,
            handle: Handle::from(server),
            pending: format!("unread{i};").into_bytes(),
            position: i.to_le_bytes().to_vec(),
        });
    }
    (clients, conns)
}

/// What a client reads when `generation` served connection `id`.
pub fn expected(generation: u32, id: u64) -> String {
    format!("gen{generation} {id} {id} unread{id};req\n")
}

/// Serves one request on `conn` as `generation`: the reply repeats the
/// position, the pending bytes and the request line, then the connection
/// is closed.
pub fn serve_one(generation: u32, conn: Connection) {
    let stream = TcpStream::from(std::os::fd::OwnedFd::from(conn.handle));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let pos = u64::from_le_bytes(conn.position[..8].try_into().unwrap());
    let pending = String::from_utf8(conn.pending).unwrap();
    let mut s = stream;
    write!(s, "gen{generation} {} {pos} {pending}{line}", conn.id).unwrap();
}

/// The new generation serves every connection it took.
pub fn new_serves(conns: Vec<Connection>) {
    for c in conns {
        serve_one(2, c);
    }
}

/// The client's side of one request: what came back before end-of-file.
pub fn ask(client: &mut TcpStream) -> String {
    client.write_all(b"req\n").unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).unwrap();
    out
}

/// Each client's next request is answered by the new generation, which
/// then exits successfully.
pub fn assert_new_serves_all(clients: &mut [TcpStream], new: handoff::Child) {
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(ask(c), expected(2, i as u64));
    }
    assert_eq!(exit_code(new), Some(0));
}

/// The old generation serves `conns` itself: each client's request is
/// answered by generation 1.
pub fn old_serves(clients: &mut [TcpStream], conns: Vec<Connection>) {
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

/// The handover failed because the new generation refused the state,
/// version `version` (another version than it wants): every connection
/// is still the old generation's, which serves it, and the new generation
/// exits successfully.
pub fn assert_state_refused<H: std::fmt::Debug>(
    outcome: Result<H, Failed>,
    version: u32,
    clients: &mut [TcpStream],
    new: handoff::Child,
) {
    let failed = outcome.expect_err("refused");
    match &failed.error {
        handoff::Error::Handover(HandoverError::Refused(reason)) => {
            let said = format!("state version {version}");
            assert!(reason.contains(&said), "{reason}")
        }
        e => panic!("{e}"),
    }
    assert_eq!(failed.connections.len(), clients.len());
    old_serves(clients, failed.connections);
    assert_eq!(exit_code(new), Some(0));
}

/// The new generation's look at the state handed to it: `len` bytes of
/// [`state_bytes`] at `version`. In mode "refuse" it wants the next
/// version instead and gets the reason to refuse the handover with;
/// otherwise it checks the bytes and gets `None`.
pub fn state_refusal(state: Handle, mode: &str, version: u32, len: u32) -> Option<String> {
    let want = if mode == "refuse" {
        version + 1
    } else {
        version
    };
    match handoff::restart::state::State::open(state, want, len.into()) {
        Ok(st) => {
            assert_eq!(st.bytes(), &state_bytes(len)[..]);
            None
        }
        Err(e) => {
            assert_handover_error!(e, StateVersion { .. });
            Some(e.to_string())
        }
    }
}

/// Re-runs this binary's `test` as the new generation in `mode`, with the
/// far end of the doorbell.
pub fn spawn_new(test: &str, mode: &str, doorbell: &Handle) -> handoff::Child {
    super::self_command(test, "new")
        .env(MODE, mode)
        .handle(DOORBELL, doorbell)
        .spawn()
        .unwrap()
}

pub fn exit_code(mut child: handoff::Child) -> Option<i32> {
    child.wait().unwrap().code()
}

/// A hand-made new generation: rings the doorbell whose far end is `peer`
/// and takes the offer; returns the session and how many connections were
/// offered.
pub fn raw_ring(peer: Handle) -> (Channel, u64) {
    let bell = Channel::from_handle(peer).unwrap();
    let (session, far) = Channel::pair().unwrap();
    let hello = Msg::Hello {
        protocol: wire::PROTOCOL,
    };
    bell.send(&wire::encode(&hello).unwrap(), &[far.as_borrowed()])
        .unwrap();
    drop(far);
    let offer = session.recv().unwrap();
    let Msg::Offer { connections, .. } = wire::decode(&offer.bytes, offer.handles.len()).unwrap()
    else {
        panic!("no offer")
    };
    (session, connections)
}

/// The hand-made new generation grants `take` connections.
pub fn grant(session: &Channel, take: u64) {
    session
        .send(&wire::encode(&Msg::Grant { take }).unwrap(), &[])
        .unwrap();
}
