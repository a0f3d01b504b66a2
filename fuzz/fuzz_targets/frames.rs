//! Frame decoding and reassembly: the input is cut into datagrams, each
//! sent with a few handles through a real socket pair into a channel with
//! small limits. Whatever the bytes, the receiver returns messages or typed
//! errors, and no handle outlives the input.
#![no_main]

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use handoff::{Channel, Limits};
use libfuzzer_sys::fuzz_target;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

mod common;

fuzz_target!(|data: &[u8]| {
    common::without_leaks(|| {
        let (ch, theirs) = Channel::pair().unwrap();
        let ch = ch.with_limits(Limits { max_bytes: 1 << 16, max_handles: 64 });
        let raw = OwnedFd::from(theirs.into_handle());
        let null = std::fs::File::open("/dev/null").unwrap();
        // Each datagram: one length byte, one handle-count byte, then bytes.
        let mut rest = data;
        let mut sent = 0;
        while rest.len() >= 2 && sent < 8 {
            let len = (rest[0] as usize).min(rest.len() - 2);
            let handles = (rest[1] % 5) as usize;
            let datagram = &rest[2..2 + len];
            rest = &rest[2 + len..];
            let fds: Vec<_> = (0..handles).map(|_| null.as_fd()).collect();
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !fds.is_empty() {
                control.push(SendAncillaryMessage::ScmRights(&fds));
            }
            if rustix::net::sendmsg(&raw, &[IoSlice::new(datagram)], &mut control, SendFlags::DONTWAIT).is_err() {
                break;
            }
            sent += 1;
        }
        drop(raw);
        // Drain until the channel reports the end or refuses.
        for _ in 0..16 {
            match ch.recv() {
                Ok(msg) => drop(msg),
                Err(handoff::Error::Disconnected { .. }) | Err(handoff::Error::Poisoned) => break,
                Err(_) => continue,
            }
        }
    });
});
