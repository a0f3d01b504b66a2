//! The portable Unix transport: fragments framed on a `SOCK_STREAM` socket
//! (docs/wire-format.md, "Stream framing"). The peer here is a raw
//! `UnixStream` that writes frames by hand, split and joined in ways a
//! datagram socket never delivers; every case must give the message or a
//! typed error, close every descriptor that came with a refused frame, and
//! never hang. Built only in the portable configuration (macOS, the BSDs,
//! or Linux with `--cfg handoff_unix_portable`).
#![cfg(handoff_portable)]

mod common;

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use handoff::{Channel, Error, Message};
use rustix::net::SendFlags;

const FIRST: u8 = 1;
const LAST: u8 = 2;

/// A fragment header (docs/wire-format.md, "Fragment").
fn header(flags: u8, here: u16, total_handles: u32, total_bytes: u64) -> Vec<u8> {
    let mut h = vec![1, flags];
    h.extend_from_slice(&here.to_le_bytes());
    h.extend_from_slice(&total_handles.to_le_bytes());
    h.extend_from_slice(&total_bytes.to_le_bytes());
    h
}

/// A stream frame prefix: u32 fragment length, u16 handle count, "HF".
fn prefix(len: u32, handles: u16) -> Vec<u8> {
    let mut p = len.to_le_bytes().to_vec();
    p.extend_from_slice(&handles.to_le_bytes());
    p.extend_from_slice(b"HF");
    p
}

/// The fewest bytes a frame takes on the wire: shorter ones are followed
/// by zeros up to it.
const MIN_FRAME: usize = 256;

/// Pads a frame to [`MIN_FRAME`].
fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < MIN_FRAME {
        frame.resize(MIN_FRAME, 0);
    }
    frame
}

/// A whole frame: prefix, header, payload, padded; the header announces
/// `handles` here and the message's `(handles, bytes)` totals.
fn fragment(flags: u8, handles: u16, totals: (u32, u64), payload: &[u8]) -> Vec<u8> {
    let h = header(flags, handles, totals.0, totals.1);
    let mut f = prefix((h.len() + payload.len()) as u32, handles);
    f.extend_from_slice(&h);
    f.extend_from_slice(payload);
    pad(f)
}

/// A whole frame whose own handles and payload are the message's totals.
fn frame(flags: u8, handles: u16, payload: &[u8]) -> Vec<u8> {
    fragment(
        flags,
        handles,
        (handles.into(), payload.len() as u64),
        payload,
    )
}

/// A one-fragment message carrying `handles` handles.
fn message(handles: u16, payload: &[u8]) -> Vec<u8> {
    frame(FIRST | LAST, handles, payload)
}

/// One-fragment messages back to back, as for one write: the first
/// carries the write's one handle, the others none.
fn messages(payloads: &[&[u8]]) -> Vec<u8> {
    payloads
        .iter()
        .enumerate()
        .flat_map(|(i, payload)| message(u16::from(i == 0), payload))
        .collect()
}

/// Writes `bytes` in one `sendmsg` with `n` descriptors of /dev/null
/// attached.
fn send_with(sock: &UnixStream, bytes: &[u8], n: usize) {
    let sent = sendmsg_with_devnull(sock, bytes, n, SendFlags::empty());
    assert_eq!(sent, bytes.len());
}

/// A channel whose peer is a raw stream socket the test writes by hand,
/// made through the crate's public conversion from `OwnedFd`.
fn evil_pair() -> (Channel, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let ch = Channel::try_from(OwnedFd::from(ours)).expect("a Unix stream socket is a channel");
    (ch, theirs)
}

/// The refusal every framing error gives: Malformed, then Poisoned.
fn assert_refused(ch: &Channel) {
    let e = ch.recv().unwrap_err();
    assert!(matches!(e, Error::Malformed(_)), "{e:?}");
    assert!(e.is_peer_fault());
    assert!(ch.is_poisoned());
    assert!(matches!(ch.recv(), Err(Error::Poisoned)));
}

// macOS and the BSDs have no seqpacket Unix sockets to try.
#[cfg(target_os = "linux")]
#[test]
fn a_seqpacket_socket_is_not_a_channel_here() {
    without_leaks(|| {
        let (a, _b) = seqpacket_pair();
        assert!(matches!(Channel::try_from(a), Err(Error::WrongKind { .. })));
    });
}

#[test]
fn a_fragment_split_into_one_byte_writes() {
    without_leaks(|| {
        let (ch, raw) = evil_pair();
        let bytes = message(2, b"hello, stream");
        // The descriptors ride on the first byte; every other byte is a
        // write of its own, from another thread while the receiver waits.
        let writer = std::thread::spawn(move || {
            send_with(&raw, &bytes[..1], 2);
            for b in &bytes[1..] {
                std::thread::sleep(Duration::from_micros(200));
                (&raw).write_all(std::slice::from_ref(b)).unwrap();
            }
            raw
        });
        let msg = ch.recv().unwrap();
        assert_eq!(msg.bytes, b"hello, stream");
        assert_eq!(msg.handles.len(), 2);
        drop(msg);
        drop(writer.join().unwrap());
    });
}

#[test]
fn a_half_received_fragment_survives_nonblocking_reads() {
    without_leaks(|| {
        let (ch, raw) = evil_pair();
        let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let bytes = message(1, &payload);
        let mut msg = Message::new();
        // Nothing yet, then each cut (inside the prefix, the header, the
        // payload) in turn: WouldBlock, with what came so far kept.
        assert!(matches!(ch.try_recv_into(&mut msg), Err(Error::WouldBlock)));
        let cuts = [0, 1, 5, 8, 20, 24, 25, 4096, 60_000, bytes.len()];
        for w in cuts.windows(2) {
            if w[0] == 0 {
                send_with(&raw, &bytes[..w[1]], 1);
            } else {
                (&raw).write_all(&bytes[w[0]..w[1]]).unwrap();
            }
            if w[1] < bytes.len() {
                assert!(
                    matches!(ch.try_recv_into(&mut msg), Err(Error::WouldBlock)),
                    "after {} bytes",
                    w[1]
                );
            }
        }
        ch.try_recv_into(&mut msg).unwrap();
        assert_eq!(msg.bytes, payload);
        assert_eq!(msg.handles.len(), 1);
    });
}

#[test]
fn two_fragments_in_one_write() {
    without_leaks(|| {
        let (ch, raw) = evil_pair();
        // Two messages, and a message of two fragments, in one write; the
        // first message's handle rides on the write's first byte.
        let mut bytes = messages(&[b"one", b"two"]);
        bytes.extend_from_slice(&fragment(FIRST, 0, (0, 6), b"abc"));
        bytes.extend_from_slice(&fragment(LAST, 0, (0, 6), b"def"));
        send_with(&raw, &bytes, 1);
        let one = ch.recv().unwrap();
        assert_eq!((one.bytes.as_slice(), one.handles.len()), (&b"one"[..], 1));
        let two = ch.recv().unwrap();
        assert_eq!((two.bytes.as_slice(), two.handles.len()), (&b"two"[..], 0));
        assert_eq!(ch.recv().unwrap().bytes, b"abcdef");
        drop(raw);
        assert!(matches!(ch.recv(), Err(Error::Disconnected { .. })));
    });
}

#[test]
fn a_peer_that_dies_mid_fragment() {
    without_leaks(|| {
        // Cut inside the prefix, inside the header, inside the payload.
        for cut in [3, 12, 30] {
            let (ch, raw) = evil_pair();
            let bytes = message(1, &[7u8; 64]);
            send_with(&raw, &bytes[..cut], 1);
            drop(raw);
            let e = ch.recv().unwrap_err();
            assert!(
                matches!(e, Error::Malformed(_) | Error::Disconnected { .. }),
                "cut at {cut}: {e:?}"
            );
        }
        // Dying between fragments of one message is Disconnected, as on a
        // seqpacket socket.
        let (ch, raw) = evil_pair();
        send_with(&raw, &frame(FIRST, 1, b"half"), 1);
        drop(raw);
        assert!(matches!(ch.recv(), Err(Error::Disconnected { .. })));
    });
}

#[test]
fn a_frame_promising_more_handles_than_arrive() {
    without_leaks(|| {
        let (ch, raw) = evil_pair();
        send_with(&raw, &message(2, b"x"), 1);
        assert_refused(&ch);
        // The other way round: more arrive than the frame announces.
        let (ch, raw) = evil_pair();
        send_with(&raw, &message(1, b"x"), 3);
        assert_refused(&ch);
        // A frame announcing more than one fragment may carry.
        let (ch, raw) = evil_pair();
        send_with(&raw, &message(200, b"x"), 0);
        assert_refused(&ch);
    });
}

#[test]
fn a_frame_promising_more_bytes_than_arrive() {
    without_leaks(|| {
        let (ch, raw) = evil_pair();
        let mut bytes = message(1, b"abc");
        // The prefix says 1000 more bytes than follow, then the peer closes:
        // a stream cannot tell that from a peer killed mid-send, which is
        // Disconnected (as on a seqpacket socket between fragments), with
        // the frame's handle closed; every later receive says the same.
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) + 1000;
        bytes[..4].copy_from_slice(&len.to_le_bytes());
        send_with(&raw, &bytes, 1);
        drop(raw);
        assert!(matches!(ch.recv(), Err(Error::Disconnected { .. })));
        assert!(matches!(ch.recv(), Err(Error::Disconnected { .. })));
        // While the peer is still there, a frame promising more simply is
        // not complete yet: nothing is returned, nothing hangs.
        let (ch, raw) = evil_pair();
        send_with(&raw, &bytes, 1);
        let mut msg = Message::new();
        assert!(matches!(ch.try_recv_into(&mut msg), Err(Error::WouldBlock)));
        drop(raw);
    });
}

#[test]
fn lengths_that_overflow_or_exceed_the_maximum() {
    without_leaks(|| {
        for len in [u32::MAX, 256 * 1024 + 1, 15, 0] {
            let (ch, raw) = evil_pair();
            let mut bytes = prefix(len, 1);
            bytes.extend_from_slice(&header(FIRST | LAST, 1, 1, 0));
            send_with(&raw, &bytes, 1);
            assert_refused(&ch);
        }
        // Exactly the maximum is a frame like any other.
        let (ch, raw) = evil_pair();
        let payload = vec![1u8; 256 * 1024 - 16];
        let bytes = message(0, &payload);
        let writer = std::thread::spawn(move || {
            (&raw).write_all(&bytes).unwrap();
            raw
        });
        assert_eq!(ch.recv().unwrap().bytes.len(), payload.len());
        drop(writer.join().unwrap());
    });
}

#[test]
fn garbage_between_fragments() {
    without_leaks(|| {
        let (ch, raw) = evil_pair();
        let mut bytes = message(1, b"fine");
        bytes.extend_from_slice(b"\0garbage\xff");
        bytes.extend_from_slice(&message(0, b"lost"));
        send_with(&raw, &bytes, 1);
        let ok = ch.recv().unwrap();
        assert_eq!((ok.bytes.as_slice(), ok.handles.len()), (&b"fine"[..], 1));
        drop(ok);
        assert_refused(&ch);
        assert!(matches!(ch.send(b"x", &[]), Err(Error::Poisoned)));
    });
}

#[test]
fn handles_attached_to_a_later_byte() {
    without_leaks(|| {
        // Inside the frame's own bytes (the middle of its payload): they
        // belong to it; a stream says nothing finer.
        let (ch, raw) = evil_pair();
        let bytes = message(2, b"0123456789");
        (&raw).write_all(&bytes[..30]).unwrap();
        send_with(&raw, &bytes[30..], 2);
        let msg = ch.recv().unwrap();
        assert_eq!(
            (msg.bytes.as_slice(), msg.handles.len()),
            (&b"0123456789"[..], 2)
        );
        drop(msg);
        // On the next frame's first byte: the receiver never reads into
        // the next frame, so the first one is short of its handle when its
        // last byte is in: refused, not waited for. The late one never
        // enters this process (it goes with the socket).
        let (ch, raw) = evil_pair();
        (&raw).write_all(&message(1, b"a")).unwrap();
        send_with(&raw, &message(0, b"b"), 1);
        assert_refused(&ch);
        // The next frame carrying handles it does not announce: the first
        // frame is fine, the second refused, every handle closed.
        let (ch, raw) = evil_pair();
        (&raw).write_all(&message(0, b"a")).unwrap();
        send_with(&raw, &message(0, b"b"), 2);
        assert_eq!(ch.recv().unwrap().bytes, b"a");
        assert_refused(&ch);
    });
}

#[test]
fn channel_ends_talk_through_the_framing() {
    without_leaks(|| {
        // Both ends handoff's: many handles (several fragments of at most
        // the portable maximum each) and a payload of several frames.
        let (a, b) = Channel::pair().unwrap();
        let file = null_file();
        let handles: Vec<_> = (0..300)
            .map(|_| handoff::BorrowedHandle::from(file.as_fd()))
            .collect();
        let payload: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        std::thread::scope(|s| {
            s.spawn(|| a.send(&payload, &handles).unwrap());
            let msg = b.recv().unwrap();
            assert_eq!(msg.bytes, payload);
            assert_eq!(msg.handles.len(), 300);
        });
    });
}

#[test]
fn async_sends_that_fill_the_socket_finish_their_fragments() {
    // Fragments written without blocking into a socket nobody is reading
    // yet: a fragment the socket takes only in part keeps its tail, which
    // goes out (before anything else) once the reader makes room.
    without_leaks_once_warm(|| {
        let rt = runtime();
        let (a, b) = Channel::pair().unwrap();
        let file = null_file();
        let payload: Vec<u8> = (0..=255u8).cycle().take(4 << 20).collect();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(50));
                got.push(b.recv().unwrap());
            }
            got
        });
        rt.block_on(async {
            let a = handoff::AsyncChannel::new(a).unwrap();
            let h = [handoff::BorrowedHandle::from(file.as_fd())];
            for _ in 0..3 {
                a.send(&payload, &h).await.unwrap();
            }
        });
        for msg in reader.join().unwrap() {
            assert!(msg.bytes == payload);
            assert_eq!(msg.handles.len(), 1);
        }
        drop(rt);
    });
}

#[test]
fn an_async_send_dropped_mid_fragment_poisons_the_channel() {
    without_leaks_once_warm(|| {
        let rt = runtime();
        let (a, b) = Channel::pair().unwrap();
        let payload = vec![5u8; 8 << 20];
        rt.block_on(async {
            let a = handoff::AsyncChannel::new(a).unwrap();
            let sent =
                tokio::time::timeout(Duration::from_millis(200), a.send(&payload, &[])).await;
            assert!(sent.is_err(), "nobody reads: the send cannot finish");
            // The peer holds part of a fragment: nothing after it could be
            // read, so the channel refuses to go on.
            assert!(a.get_ref().is_poisoned());
            assert!(matches!(a.send(b"x", &[]).await, Err(Error::Poisoned)));
        });
        drop(b);
        drop(rt);
    });
}

#[test]
fn an_async_receiver_reassembles_a_frame_written_in_pieces() {
    without_leaks_once_warm(|| {
        let rt = runtime();
        let (ch, raw) = evil_pair();
        let payload: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let bytes = message(1, &payload);
        let writer = std::thread::spawn(move || {
            send_with(&raw, &bytes[..1], 1);
            for chunk in bytes[1..].chunks(997) {
                std::thread::sleep(Duration::from_millis(1));
                (&raw).write_all(chunk).unwrap();
            }
            raw
        });
        let msg = rt.block_on(async {
            let ch = handoff::AsyncChannel::new(ch).unwrap();
            ch.recv().await.unwrap()
        });
        assert!(msg.bytes == payload);
        assert_eq!(msg.handles.len(), 1);
        drop(msg);
        drop(writer.join().unwrap());
        drop(rt);
    });
}

#[test]
fn an_end_given_away_between_messages_loses_nothing() {
    // The receiver never reads ahead into the next frame, so a channel
    // turned back into its socket after a receive (to pass it on) still
    // has every later message queued in the kernel, as on a seqpacket
    // socket.
    without_leaks(|| {
        let (ch, raw) = evil_pair();
        send_with(&raw, &messages(&[b"first", b"second", &[9u8; 1000]]), 1);
        assert_eq!(ch.recv().unwrap().bytes, b"first");
        let again = Channel::try_from(OwnedFd::from(ch)).unwrap();
        assert_eq!(again.recv().unwrap().bytes, b"second");
        let again = Channel::try_from(OwnedFd::from(again)).unwrap();
        assert_eq!(again.recv().unwrap().bytes, vec![9u8; 1000]);
    });
}
