//! Bad input to the restart handover: state that fails a check, and a
//! peer that breaks the protocol. Each is a typed error, no panic, no
//! hang, and every handle it brought is closed (counted).
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::handover::assert_handover_error;
use common::handover::{grant, raw_ring, runtime};
use common::without_leaks;
use handoff::restart::handover::wire::{self, ConnMeta, Msg};
use handoff::restart::handover::{Connection, Doorbell, Failed, Incoming, TakeLimits};
use handoff::restart::state::{self, State};
use handoff::restart::HandoverError;
use handoff::{AsHandle, BorrowedHandle, Channel, Error, Handle};

/// State bytes with a header written by hand.
fn raw_state(version: u32, len: u64, crc: u32, payload: &[u8]) -> Handle {
    let mut all = b"HNDOFSTA".to_vec();
    all.extend_from_slice(&version.to_le_bytes());
    all.extend_from_slice(&0u32.to_le_bytes());
    all.extend_from_slice(&len.to_le_bytes());
    all.extend_from_slice(&crc.to_le_bytes());
    all.extend_from_slice(&0u32.to_le_bytes());
    all.extend_from_slice(payload);
    handoff::startup::create(&all).unwrap()
}

fn open_err(h: Handle, version: u32, max: u64) -> HandoverError {
    match State::open(h, version, max) {
        Err(Error::Handover(e)) => e,
        other => panic!("expected a handover error, got {other:?}"),
    }
}

#[test]
fn bad_state_is_refused_with_its_reason() {
    without_leaks(bad_state_is_refused);
}

fn bad_state_is_refused() {
    let payload = b"sessions and counters".to_vec();
    let crc = crc(&payload);
    // Good, as a baseline: read in place.
    let good = State::open(state::create(3, &payload).unwrap(), 3, 1024).unwrap();
    assert_eq!(good.bytes(), &payload[..]);
    drop(good);
    assert_eq!(
        open_err(state::create(2, &payload).unwrap(), 3, 1024),
        HandoverError::StateVersion {
            found: 2,
            expected: 3
        }
    );
    assert!(matches!(
        open_err(
            raw_state(3, payload.len() as u64, crc ^ 1, &payload),
            3,
            1024
        ),
        HandoverError::StateChecksum { .. }
    ));
    assert_eq!(
        open_err(raw_state(3, 100, crc, &payload), 3, 1024),
        HandoverError::StateTruncated {
            said: 100,
            held: payload.len() as u64
        }
    );
    assert!(matches!(
        open_err(handoff::startup::create(b"HNDOFSTA").unwrap(), 3, 1024),
        HandoverError::StateTruncated { .. }
    ));
    assert_eq!(
        open_err(state::create(3, &payload).unwrap(), 3, 4),
        HandoverError::StateTooLarge {
            len: payload.len() as u64,
            max: 4
        }
    );
    // Unsealed shared memory: its sender could still change it.
    let fd = rustix::fs::memfd_create("state", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 128).unwrap();
    let unsealed = Handle::from(fd);
    assert!(matches!(
        open_err(unsealed, 3, 1024),
        HandoverError::StateNotSealed(_)
    ));
    // Not shared memory at all.
    let (read, write) = std::io::pipe().unwrap();
    drop(write);
    assert!(matches!(
        open_err(Handle::from(OwnedFd::from(read)), 3, 1024),
        HandoverError::StateMalformed(_)
    ));
    // Startup data that is not state.
    assert!(matches!(
        open_err(handoff::startup::create(&[7u8; 64]).unwrap(), 3, 1024),
        HandoverError::StateMalformed(_)
    ));
}

fn crc(bytes: &[u8]) -> u32 {
    // The state's own header, read back: the checksum a good sender wrote.
    let h = state::create(0, bytes).unwrap();
    let data = handoff::StartupData::open(h).unwrap();
    u32::from_le_bytes(data.bytes()[24..28].try_into().unwrap())
}

/// A hand-made old generation: rings nothing, answers a new generation's
/// ring over `bell` and returns the session.
fn raw_old_session(bell: &Channel) -> Channel {
    let hello = bell.recv().unwrap();
    assert!(matches!(
        wire::decode(&hello.bytes, hello.handles.len()).unwrap(),
        Msg::Hello { .. }
    ));
    Channel::from_handle(hello.handles.into_iter().next().unwrap()).unwrap()
}

fn socket_pairs(n: usize) -> (Vec<UnixStream>, Vec<UnixStream>) {
    (0..n).map(|_| UnixStream::pair().unwrap()).unzip()
}

/// Sends `handles` as connections 0, 1, ... with nothing pending.
fn send_connections(session: &Channel, handles: &[BorrowedHandle<'_>]) -> handoff::Result<()> {
    let meta: Vec<ConnMeta> = (0..handles.len() as u64)
        .map(|id| ConnMeta {
            id,
            pending: Vec::new(),
            position: Vec::new(),
        })
        .collect();
    session.send(&wire::encode(&Msg::Connections(meta)).unwrap(), handles)
}

/// Sends one end of each of `n` connected Unix socket pairs as
/// connections, whatever was granted; returns both ends, open until the
/// caller is done. A sender that ignores the grant gets refused by the
/// receiver; a failed send (the peer gave up) is fine here.
fn send_socket_pairs(session: &Channel, n: usize) -> (Vec<UnixStream>, Vec<UnixStream>) {
    let pairs = socket_pairs(n);
    let handles: Vec<_> = pairs.0.iter().map(|s| s.as_handle()).collect();
    let _ = send_connections(session, &handles);
    pairs
}

/// Runs the new generation's side against a hand-made old one in a
/// thread: what taking the connections came to.
fn take_from_raw_old(
    limits: TakeLimits,
    old: impl FnOnce(Channel) + Send + 'static,
) -> handoff::Result<handoff::restart::handover::Takeover> {
    let (bell_ours, bell_theirs) = Channel::pair().unwrap();
    let t = std::thread::spawn(move || old(raw_old_session(&bell_ours)));
    let taken = runtime().block_on(async {
        let incoming = Incoming::connect(bell_theirs.into_handle(), limits).await?;
        incoming.accept().await
    });
    t.join().unwrap();
    taken
}

/// As [`take_from_raw_old`], where taking must fail: the error.
fn against_raw_old(limits: TakeLimits, old: impl FnOnce(Channel) + Send + 'static) -> Error {
    take_from_raw_old(limits, old)
        .map(drop)
        .expect_err("the handover must fail")
}

fn offer(session: &Channel, connections: u64) {
    session
        .send(
            &wire::encode(&Msg::Offer {
                state: false,
                connections,
            })
            .unwrap(),
            &[],
        )
        .unwrap();
}

/// Offers `connections` and returns how many the new generation granted.
fn offer_granted(session: &Channel, connections: u64) -> u64 {
    offer(session, connections);
    let m = session.recv().unwrap();
    match wire::decode(&m.bytes, 0).unwrap() {
        Msg::Grant { take } => take,
        other => panic!("{other:?}"),
    }
}

#[test]
fn more_connections_than_announced_are_refused() {
    without_leaks(|| {
        let err = against_raw_old(TakeLimits::default(), |session| {
            assert_eq!(offer_granted(&session, 2), 2);
            let _pairs = send_socket_pairs(&session, 3);
            let _ = session.recv();
        });
        assert_handover_error!(
            err,
            TooManyConnections {
                sent: 3,
                allowed: 2
            }
        );
    });
}

#[test]
fn more_connections_than_the_cap_are_refused() {
    without_leaks(|| {
        let limits = TakeLimits {
            max_connections: 4,
            ..TakeLimits::default()
        };
        let err = against_raw_old(limits, |session| {
            assert_eq!(offer_granted(&session, 300), 4);
            let _pairs = send_socket_pairs(&session, 300);
            let _ = session.recv();
        });
        // The channel refuses a message with more handles than its cap and
        // closes those that arrived.
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    });
}

#[test]
fn a_channel_closed_after_the_offer_is_a_closed_error() {
    without_leaks(|| {
        let err = against_raw_old(TakeLimits::default(), |session| {
            offer(&session, 5);
            drop(session);
        });
        assert_handover_error!(err, Closed(_));
    });
}

#[test]
fn an_old_generation_that_never_commits_times_out() {
    without_leaks(|| {
        let limits = TakeLimits {
            timeout: Duration::from_millis(200),
            ..TakeLimits::default()
        };
        let err = against_raw_old(limits, |session| {
            offer_granted(&session, 2);
            let _pairs = send_socket_pairs(&session, 2);
            // Taken arrives; no Commit is ever sent.
            let _ = session.recv();
            std::thread::sleep(Duration::from_millis(600));
        });
        assert_handover_error!(err, Timeout(_));
    });
}

/// Runs `test` with a real old generation's doorbell, on a runtime on
/// this thread (entered), and the far end a new generation rings; no other
/// counting test runs, and the open-handle count afterwards is asserted to
/// be what it was.
fn with_doorbell(test: impl FnOnce(&tokio::runtime::Runtime, &Doorbell, Handle)) {
    without_leaks(|| {
        let rt = runtime();
        let in_rt = rt.enter();
        let (bell, peer) = Doorbell::new().unwrap();
        test(&rt, &bell, peer);
        drop((bell, in_rt));
    });
}

/// A hand-made new generation in a thread: rings the doorbell whose far
/// end is `peer`, grants `take` connections, then does `then`.
fn raw_new_generation(
    peer: Handle,
    take: u64,
    then: impl FnOnce(Channel) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (session, _) = raw_ring(peer);
        grant(&session, take);
        then(session)
    })
}

/// The old generation rings `bell` and hands `conns` over within
/// `timeout`, which must fail: how.
fn failed_hand_over(
    rt: &tokio::runtime::Runtime,
    bell: &Doorbell,
    conns: Vec<Connection>,
    timeout: Duration,
) -> Failed {
    rt.block_on(async {
        let out = bell.ring().await.unwrap();
        out.hand_over(None, conns, timeout).await
    })
    .expect_err("the handover must fail")
}

/// A hand-made new generation acknowledging a connection twice: the old
/// side refuses the answer and keeps every connection.
#[test]
fn an_inconsistent_acknowledgement_keeps_everything_with_the_old() {
    with_doorbell(|rt, bell, peer| {
        let (ours, theirs) = socket_pairs(2);
        let conns: Vec<Connection> = (0..)
            .zip(ours)
            .map(|(i, s)| Connection::new(i, s))
            .collect();
        let new = raw_new_generation(peer, 2, |session| {
            let got = session.recv().unwrap();
            assert_eq!(got.handles.len(), 2);
            session
                .send(
                    &wire::encode(&Msg::Taken {
                        taken: vec![0, 0],
                        refused: vec![],
                    })
                    .unwrap(),
                    &[],
                )
                .unwrap();
            // The old side answers Abort.
            let answer = session.recv().unwrap();
            assert!(matches!(
                wire::decode(&answer.bytes, 0).unwrap(),
                Msg::Abort { .. }
            ));
        });
        let failed = failed_hand_over(rt, bell, conns, Duration::from_secs(10));
        new.join().unwrap();
        assert_handover_error!(failed.error, Protocol(_));
        assert_eq!(failed.connections.len(), 2);
        drop((failed, theirs));
    });
}

/// A ring without a session channel, or with two handles, is refused and
/// its handles closed; the doorbell still works.
#[test]
fn a_malformed_ring_is_refused() {
    with_doorbell(|rt, bell, peer| {
        let peer = Channel::from_handle(peer).unwrap();
        let hello = wire::encode(&Msg::Hello {
            protocol: wire::PROTOCOL,
        })
        .unwrap();
        peer.send(&hello, &[]).unwrap();
        let err = rt.block_on(bell.ring()).unwrap_err();
        assert_handover_error!(err, Protocol(_));
        peer.send(&[1, 2, 3], &[]).unwrap();
        assert!(rt.block_on(bell.ring()).is_err());
        let (a, b) = socket_pairs(1);
        peer.send(&hello, &[a[0].as_handle(), b[0].as_handle()])
            .unwrap();
        assert!(rt.block_on(bell.ring()).is_err());
        drop((a, b));
        // A datagram that is not a fragment at all, written on the raw
        // socket: malformed, and the doorbell still answers the next ring
        // (on a transport that keeps datagram boundaries only).
        #[cfg(not(handoff_portable))]
        malformed_then_good_ring(rt, bell, peer, &hello);
        #[cfg(handoff_portable)]
        drop(peer);
    });
}

#[cfg(not(handoff_portable))]
fn malformed_then_good_ring(
    rt: &tokio::runtime::Runtime,
    bell: &Doorbell,
    peer: Channel,
    hello: &[u8],
) {
    let raw = OwnedFd::from(peer.into_handle());
    rustix::net::send(&raw, &[1, 3, 1, 0], rustix::net::SendFlags::empty()).unwrap();
    let err = rt.block_on(bell.ring()).unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err}");
    let peer = Channel::from_handle(Handle::from(raw)).unwrap();
    let (_session, far) = Channel::pair().unwrap();
    peer.send(hello, &[far.as_borrowed()]).unwrap();
    drop(far);
    rt.block_on(bell.ring())
        .expect("a good ring after a malformed one");
}

/// A stream socket that was never connected is declined with its reason
/// (served, it would look like a client that hung up); the connected one
/// beside it is taken.
#[test]
fn an_unconnected_stream_socket_is_declined() {
    without_leaks(|| {
        let takeover = take_from_raw_old(TakeLimits::default(), |session| {
            assert_eq!(offer_granted(&session, 2), 2);
            let (connected, _peer) = UnixStream::pair().unwrap();
            let unconnected = rustix::net::socket(
                rustix::net::AddressFamily::INET,
                rustix::net::SocketType::STREAM,
                None,
            )
            .unwrap();
            send_connections(&session, &[connected.as_handle(), unconnected.as_handle()]).unwrap();
            let answer = session.recv().unwrap();
            let Msg::Taken { taken, refused } = wire::decode(&answer.bytes, 0).unwrap() else {
                panic!("no Taken");
            };
            assert_eq!(taken, [0]);
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].0, 1);
            assert!(refused[0].1.contains("not connected"), "{}", refused[0].1);
            session
                .send(&wire::encode(&Msg::Commit).unwrap(), &[])
                .unwrap();
        })
        .unwrap();
        assert_eq!(takeover.connections.len(), 1);
        assert_eq!(takeover.declined.len(), 1);
    });
}

/// A new generation that grants connections and then stops reading: the
/// old side's send waits at most the timeout, the handover fails with
/// `Timeout`, and every connection is back with the old generation.
#[test]
fn a_new_generation_that_stops_reading_cannot_hold_the_old() {
    with_doorbell(|rt, bell, peer| {
        let (ours, theirs) = socket_pairs(1);
        let mut conn = Connection::new(7, ours.into_iter().next().unwrap());
        // More unread bytes than a socket buffer holds, so the Connections
        // message cannot go out while nobody reads.
        conn.pending = vec![0x5a; 8 << 20];
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let new = raw_new_generation(peer, 1, move |_session| {
            // Reads nothing more until the old side has given up.
            let _ = stop_rx.recv();
        });
        let failed = failed_hand_over(rt, bell, vec![conn], Duration::from_millis(300));
        stop_tx.send(()).unwrap();
        new.join().unwrap();
        assert_handover_error!(failed.error, Timeout(_));
        assert_eq!(failed.connections.len(), 1);
        assert_eq!(failed.connections[0].id, 7);
        assert_eq!(failed.connections[0].pending.len(), 8 << 20);
        drop((failed, theirs));
    });
}
