//! A hostile or broken peer: hand-made datagrams that break the wire format,
//! exceed the limits, or lie about their handles. Each must give a typed
//! error, close every handle that came with it, and never panic or hang.
//!
//! In the portable configuration (`--cfg handoff_unix_portable`) the same
//! cases run against the stream transport: `raw_send` puts each datagram
//! behind the stream frame prefix (docs/wire-format.md, "Stream framing"),
//! so the receiver meets exactly the fragments it meets on a seqpacket
//! socket. tests/stream_framing.rs has the cases only a stream has.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::OwnedFd;

use common::*;
use handoff::{AsHandle, Channel, Error, Handle, Limits};
use rustix::net::SendFlags;

const FIRST: u8 = 1;
const LAST: u8 = 2;

/// A fragment header as docs/wire-format.md specifies it.
fn header(version: u8, flags: u8, here: u16, total_handles: u32, total_bytes: u64) -> Vec<u8> {
    let mut h = vec![version, flags];
    h.extend_from_slice(&here.to_le_bytes());
    h.extend_from_slice(&total_handles.to_le_bytes());
    h.extend_from_slice(&total_bytes.to_le_bytes());
    h
}

/// Sends one raw datagram with `n` duplicates of /dev/null attached.
#[cfg(not(handoff_portable))]
fn raw_send(sock: &OwnedFd, datagram: &[u8], n: usize) {
    sendmsg_with_devnull(sock, datagram, n, SendFlags::empty());
}

/// Sends one raw datagram with `n` duplicates of /dev/null attached, as a
/// stream frame: prefix (u32 length, u16 handle count, "HF"), then the
/// datagram, padded with zeros to 256 bytes if shorter, the descriptors
/// on its first byte. Written without blocking,
/// since the receiver reads only after this returns: a frame over the
/// 262,144-byte maximum may stop where the socket is full, because the
/// receiver refuses it from its prefix alone.
#[cfg(handoff_portable)]
fn raw_send(sock: &OwnedFd, datagram: &[u8], n: usize) {
    let mut framed = (datagram.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&(n as u16).to_le_bytes());
    framed.extend_from_slice(b"HF");
    framed.extend_from_slice(datagram);
    if framed.len() < 256 {
        framed.resize(256, 0);
    }
    let mut sent = sendmsg_with_devnull(sock, &framed, n, SendFlags::DONTWAIT);
    while sent < framed.len() {
        match rustix::net::send(sock, &framed[sent..], SendFlags::DONTWAIT) {
            Ok(k) => sent += k,
            Err(rustix::io::Errno::AGAIN) if datagram.len() > 256 * 1024 => return,
            Err(e) => panic!("raw stream send: {e}"),
        }
    }
}

/// A channel whose peer is a raw socket the test writes by hand.
fn hostile_pair() -> (Channel, OwnedFd) {
    let (ours, theirs) = Channel::pair().unwrap();
    (ours, OwnedFd::from(theirs.into_handle()))
}

fn with_payload(mut h: Vec<u8>, payload: &[u8]) -> Vec<u8> {
    h.extend_from_slice(payload);
    h
}

/// Sends a whole message in one datagram: `payload` with `handles`
/// duplicates of /dev/null attached, the header announcing exactly those.
fn send_message(raw: &OwnedFd, handles: u16, payload: &[u8]) {
    let header = header(
        1,
        FIRST | LAST,
        handles,
        handles.into(),
        payload.len() as u64,
    );
    raw_send(raw, &with_payload(header, payload), handles.into());
}

/// Handle indices as a typed value encodes them (u32, little-endian).
fn indices(list: &[u32]) -> Vec<u8> {
    list.iter().flat_map(|i| i.to_le_bytes()).collect()
}

/// The channel still works: a proper message goes through.
fn assert_usable(ch: &Channel, raw: &OwnedFd) {
    send_message(raw, 1, b"ok");
    let msg = ch.recv().unwrap();
    assert_eq!(msg.bytes, b"ok");
    assert_eq!(msg.handles.len(), 1);
}

#[test]
fn truncated_frame_is_malformed_and_poisons() {
    without_leaks(|| {
        let (ch, raw) = hostile_pair();
        raw_send(&raw, &[1, 3, 1, 0], 1);
        assert!(matches!(ch.recv(), Err(Error::Malformed(_))));
        assert!(ch.is_poisoned());
        assert!(matches!(ch.recv(), Err(Error::Poisoned)));
        assert!(matches!(ch.send(b"x", &[]), Err(Error::Poisoned)));
    });
}

#[test]
fn unknown_version_and_flags_are_malformed() {
    without_leaks(|| {
        for bad in [
            header(2, FIRST | LAST, 0, 0, 0),
            header(1, 0x80 | FIRST | LAST, 0, 0, 0),
        ] {
            let (ch, raw) = hostile_pair();
            raw_send(&raw, &bad, 0);
            let e = ch.recv().unwrap_err();
            assert!(matches!(e, Error::Malformed(_)), "{e}");
            assert!(e.is_peer_fault());
        }
    });
}

#[test]
fn frame_claiming_more_than_the_cap_is_rejected_before_allocating() {
    without_leaks(|| {
        let (ch, raw) = hostile_pair();
        let ch = ch.with_limits(Limits {
            max_bytes: 1024,
            max_handles: 8,
        });
        // 1 TiB announced: refused from the header alone.
        raw_send(&raw, &header(1, FIRST, 3, 3, 1 << 40), 3);
        raw_send(&raw, &header(1, LAST, 0, 3, 1 << 40), 0);
        match ch.recv() {
            Err(Error::TooLarge { what, got, limit }) => {
                assert_eq!((what, got, limit), ("message bytes", 1 << 40, 1024));
            }
            other => panic!("{other:?}"),
        }
        // Too many handles, in one fragment.
        raw_send(&raw, &header(1, FIRST | LAST, 9, 9, 0), 9);
        assert!(matches!(
            ch.recv(),
            Err(Error::TooLarge {
                what: "message handles",
                ..
            })
        ));
        assert!(!ch.is_poisoned());
        assert_usable(&ch, &raw);
    });
}

#[test]
fn handle_count_that_lies_is_malformed() {
    without_leaks(|| {
        {
            let (ch, raw) = hostile_pair();
            raw_send(&raw, &header(1, FIRST | LAST, 1, 1, 0), 2);
            assert!(matches!(ch.recv(), Err(Error::Malformed(_))));
        }
        {
            let (ch, raw) = hostile_pair();
            raw_send(&raw, &header(1, FIRST | LAST, 2, 2, 0), 1);
            assert!(matches!(ch.recv(), Err(Error::Malformed(_))));
        }
        {
            // The last fragment leaves the message short of what it announced.
            let (ch, raw) = hostile_pair();
            raw_send(&raw, &with_payload(header(1, FIRST, 2, 5, 10), b"abc"), 2);
            raw_send(&raw, &with_payload(header(1, LAST, 2, 5, 10), b"def"), 2);
            assert!(matches!(ch.recv(), Err(Error::Malformed(_))));
        }
    });
}

#[test]
fn fragments_out_of_order_are_malformed() {
    without_leaks(|| {
        {
            let (ch, raw) = hostile_pair();
            raw_send(&raw, &header(1, LAST, 1, 1, 0), 1);
            assert!(matches!(ch.recv(), Err(Error::Malformed(_))));
        }
        {
            let (ch, raw) = hostile_pair();
            raw_send(&raw, &with_payload(header(1, FIRST, 1, 2, 4), b"ab"), 1);
            raw_send(
                &raw,
                &with_payload(header(1, FIRST | LAST, 1, 2, 4), b"cd"),
                1,
            );
            assert!(matches!(ch.recv(), Err(Error::Malformed(_))));
        }
        {
            // A continuation that changes the announced totals.
            let (ch, raw) = hostile_pair();
            raw_send(&raw, &with_payload(header(1, FIRST, 1, 2, 4), b"ab"), 1);
            raw_send(&raw, &with_payload(header(1, LAST, 1, 2, 5), b"cde"), 1);
            assert!(matches!(ch.recv(), Err(Error::Malformed(_))));
        }
        {
            // More bytes than announced.
            let (ch, raw) = hostile_pair();
            raw_send(
                &raw,
                &with_payload(header(1, FIRST | LAST, 0, 0, 1), b"too long"),
                0,
            );
            assert!(matches!(ch.recv(), Err(Error::Malformed(_))));
        }
    });
}

#[test]
fn oversized_datagram_is_malformed() {
    without_leaks(|| {
        let (ch, raw) = hostile_pair();
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&raw, 4 << 20);
        let big = with_payload(header(1, FIRST | LAST, 1, 1, 600_000), &vec![0u8; 600_000]);
        raw_send(&raw, &big, 1);
        assert!(matches!(ch.recv(), Err(Error::Malformed(_))));
    });
}

#[test]
fn typed_handle_index_out_of_range_twice_or_unclaimed() {
    without_leaks(|| {
        let (ch, raw) = hostile_pair();
        let rx = handoff::typed::Receiver::<(Handle, Handle)>::new(ch);
        let malformed = |needle: &str| {
            let e = rx.recv().unwrap_err();
            assert!(
                matches!(&e, Error::Malformed(m) if m.contains(needle)),
                "{e}"
            );
        };
        // Index 5 of a 2-handle message.
        send_message(&raw, 2, &indices(&[0, 5]));
        malformed("out of range");
        // Index 0 twice.
        send_message(&raw, 2, &indices(&[0, 0]));
        malformed("twice");
        // Three handles, two claimed.
        let ok = indices(&[0, 1]);
        send_message(&raw, 3, &ok);
        malformed("not referenced");
        // Trailing garbage.
        let mut trailing = ok.clone();
        trailing.push(9);
        send_message(&raw, 2, &trailing);
        malformed("");
        // Truncated value.
        send_message(&raw, 1, &ok[..4]);
        malformed("");
        // And a good one still decodes: the channel was never poisoned.
        send_message(&raw, 2, &ok);
        let (a, b) = rx.recv().unwrap();
        assert_ne!(a.raw(), b.raw());
    });
}

/// The parent's side of a flood: once the child is ready, a message with
/// `n` handles and then one with two, and the child reports done.
fn flood_child(test: &str, n: usize) {
    let (ours, child) = spawn_child_on_channel(test);
    assert_eq!(ours.recv().unwrap().bytes, b"ready");
    let file = std::fs::File::open("/dev/null").unwrap();
    let many: Vec<_> = (0..n).map(|_| file.as_handle()).collect();
    ours.send(b"flood", &many).unwrap();
    ours.send(b"after", &[file.as_handle(), file.as_handle()])
        .unwrap();
    assert_eq!(ours.recv().unwrap().bytes, b"done");
    assert_success(child);
}

/// The child's side of a flood: with room for only 20 more descriptors,
/// `truncated` checks how the flood was refused; everything it brought is
/// closed, and the channel stays usable for the next message.
fn flooded(ch: Channel, truncated: impl FnOnce(handoff::Result<handoff::Message>)) {
    let leaks = LeakCheck::new();
    leave_room_for(20);
    ch.send(b"ready", &[]).unwrap();
    truncated(ch.recv());
    leaks.assert();
    match ch.recv() {
        Ok(msg) => {
            assert_eq!(msg.bytes, b"after");
            assert_eq!(msg.handles.len(), 2);
        }
        other => panic!("expected the next message, got {other:?}"),
    }
    leaks.assert();
    ch.send(b"done", &[]).unwrap();
}

#[test]
fn more_handles_than_the_fd_table_holds_is_ctrunc() {
    if let Some(ch) = child_channel() {
        // The message brings 200.
        return flooded(ch, |got| match got {
            Err(Error::HandlesTruncated { expected, received }) => {
                assert_eq!(expected, 200);
                assert!(received < 200);
            }
            other => panic!("expected HandlesTruncated, got {other:?}"),
        });
    }
    without_leaks(|| flood_child(this_test!(), 200));
}

/// Regression: a message whose every fragment is cut short by a full
/// descriptor table used to give one `HandlesTruncated` per fragment, so
/// the caller counted three lost messages for one and mistook the next
/// good message's turn for another loss. It is one error, and the next
/// receive is the next message.
#[test]
fn a_message_truncated_in_every_fragment_is_one_error() {
    if let Some(ch) = child_channel() {
        // Each of the three fragments brings up to 253.
        return flooded(ch, |got| match got {
            Err(Error::HandlesTruncated { expected, .. }) => assert_eq!(expected, 600),
            other => panic!("expected HandlesTruncated, got {other:?}"),
        });
    }
    without_leaks(|| flood_child(this_test!(), 600));
}

#[test]
fn channel_from_a_handle_of_the_wrong_kind() {
    without_leaks(|| {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(matches!(
            Channel::from_handle(Handle::from(file)),
            Err(Error::WrongKind { .. })
        ));
        // A Unix socket of the other type than channels run over here.
        #[cfg(not(handoff_portable))]
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        #[cfg(handoff_portable)]
        let (a, _b) = seqpacket_pair();
        assert!(matches!(
            Channel::from_handle(Handle::from(a)),
            Err(Error::WrongKind { .. })
        ));
        let long = "x".repeat(200);
        assert!(matches!(
            Channel::connect(format!("/tmp/{long}")),
            Err(Error::InvalidArgument(_))
        ));
        let missing = tempfile::tempdir().unwrap().path().join("nobody-here");
        assert!(matches!(Channel::connect(missing), Err(Error::Io { .. })));
    });
}

#[test]
fn peer_bytes_never_panic_the_receiver() {
    // Random datagrams with random handle counts: whatever they are, the
    // receiver answers with a value or a typed error, never a panic, and
    // closes everything.
    without_leaks(|| {
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let (ch, raw) = hostile_pair();
            let ch = ch.with_limits(Limits {
                max_bytes: 4096,
                max_handles: 16,
            });
            for _ in 0..(next() % 4 + 1) {
                let len = (next() % 40) as usize;
                let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if len >= 2 && next() % 2 == 0 {
                    d[0] = 1;
                    d[1] &= 3;
                }
                raw_send(&raw, &d, (next() % 4) as usize);
            }
            drop(raw);
            while let Ok(msg) = ch.recv() {
                drop(msg);
            }
        }
    });
}

#[test]
fn length_prefix_lies_are_rejected_without_allocating() {
    // Found by fuzzing: an unchecked length prefix made the decoder try to
    // allocate it, aborting the receiver.
    without_leaks(|| {
        let (ch, raw) = hostile_pair();
        let rx = handoff::typed::Receiver::<(String, Vec<u8>)>::new(ch);
        let mut lie = Vec::new();
        lie.extend_from_slice(&(1u64 << 47).to_le_bytes());
        lie.extend_from_slice(b"tiny");
        raw_send(
            &raw,
            &with_payload(header(1, FIRST | LAST, 0, 0, lie.len() as u64), &lie),
            0,
        );
        assert!(matches!(rx.recv(), Err(Error::Malformed(_))));
        let mut ok = Vec::new();
        ok.extend_from_slice(&2u64.to_le_bytes());
        ok.extend_from_slice(b"hi");
        ok.extend_from_slice(&1u64.to_le_bytes());
        ok.push(7);
        raw_send(
            &raw,
            &with_payload(header(1, FIRST | LAST, 0, 0, ok.len() as u64), &ok),
            0,
        );
        assert_eq!(rx.recv().unwrap(), ("hi".to_string(), vec![7]));
    });
}

#[test]
fn datagrams_over_the_maximum_are_malformed_in_any_fragment() {
    // docs/wire-format.md: a datagram is at most 262144 bytes, header
    // included. The raw end's send buffer is raised so the kernel accepts
    // the oversized datagrams at all.
    const MAX: usize = 256 * 1024;
    without_leaks(|| {
        for (len, continuation) in [(MAX + 1, false), (MAX + 16, false), (400_016, true)] {
            let (ch, raw) = hostile_pair();
            rustix::net::sockopt::set_socket_send_buffer_size(&raw, 1 << 20).unwrap();
            if continuation {
                // A first fragment announcing a large message, so the receiver
                // has reserved far more than one datagram when the next arrives.
                let first = with_payload(header(1, FIRST, 0, 1, 1 << 20), &[7; 100]);
                raw_send(&raw, &first, 0);
            }
            let flags = if continuation { LAST } else { FIRST | LAST };
            let total = if continuation {
                1 << 20
            } else {
                (len - 16) as u64
            };
            let big = with_payload(header(1, flags, 1, 1, total), &vec![9; len - 16]);
            raw_send(&raw, &big, 1);
            match ch.recv() {
                Err(Error::Malformed(text)) => assert!(text.contains("262144"), "{text}"),
                other => panic!("{len} bytes: expected Malformed, got {other:?}"),
            }
            assert!(ch.is_poisoned());
        }
    });
}

#[test]
fn a_datagram_of_exactly_the_maximum_is_accepted() {
    without_leaks(|| {
        let (ch, raw) = hostile_pair();
        rustix::net::sockopt::set_socket_send_buffer_size(&raw, 1 << 20).unwrap();
        let len = 256 * 1024;
        let dgram = with_payload(
            header(1, FIRST | LAST, 0, 0, (len - 16) as u64),
            &vec![3; len - 16],
        );
        raw_send(&raw, &dgram, 0);
        let msg = ch.recv().unwrap();
        assert_eq!(msg.bytes.len(), len - 16);
        assert_usable(&ch, &raw);
    });
}
