//! Case 5: thousands of random datagrams, with random numbers of handles
//! attached, against a plain channel in a child process and against an
//! RPC server's connections. Nothing may crash, hang or keep a handle.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use handoff::__private::wire::{self, FrameType};
use handoff::{AsHandle, Channel, Error};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use serde::{Deserialize, Serialize};

use super::server::{ChaosBlockingClient, ChaosClient, ServerKid, M_OPEN, M_STAMP};
use super::{child_ctl, recv_timeout, send_json, Cfg, Checks, Kid, Rng, Row, TempDir};
use crate::Result;

pub const ROLE: &str = "hostile-receiver";

/// A channel fragment header as docs/wire-format.md lays it out.
pub fn fragment_header(
    version: u8,
    flags: u8,
    here: u16,
    total_handles: u32,
    total_bytes: u64,
) -> Vec<u8> {
    let mut h = vec![version, flags];
    h.extend_from_slice(&here.to_le_bytes());
    h.extend_from_slice(&total_handles.to_le_bytes());
    h.extend_from_slice(&total_bytes.to_le_bytes());
    h
}

/// One datagram straight onto the socket, below handoff's own framing.
pub fn raw_send(fd: BorrowedFd<'_>, datagram: &[u8], handles: &[BorrowedFd<'_>]) -> Result<()> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !handles.is_empty() && !control.push(SendAncillaryMessage::ScmRights(handles)) {
        return Err("too many handles for one datagram".into());
    }
    rustix::net::sendmsg(
        fd,
        &[IoSlice::new(datagram)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Handles of several kinds to attach: a file, both ends of a pipe, a
/// socket.
#[derive(Debug)]
pub struct Ammunition {
    handles: Vec<OwnedFd>,
}

impl Ammunition {
    pub fn new() -> Result<Ammunition> {
        let (r, w) = std::io::pipe()?;
        let (a, b) = Channel::pair()?;
        drop(b);
        Ok(Ammunition {
            handles: vec![
                File::open("/dev/null")?.into(),
                OwnedFd::from(r),
                OwnedFd::from(w),
                OwnedFd::from(a.into_handle()),
            ],
        })
    }

    pub fn pick(&self, rng: &mut Rng, n: usize) -> Vec<BorrowedFd<'_>> {
        (0..n)
            .map(|_| self.handles[rng.below(self.handles.len() as u64) as usize].as_fd())
            .collect()
    }
}

fn handle_count(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0..=3 => 0,
        4..=8 => 1 + rng.below(8) as usize,
        _ => 1 + rng.below(253) as usize,
    }
}

/// A random datagram: mostly a plausible fragment header with lies in it,
/// sometimes pure noise, of any length up to most of the 256 KiB maximum.
fn random_datagram(rng: &mut Rng, handles: usize) -> Vec<u8> {
    let payload_len = match rng.below(10) {
        0 => 0,
        1..=6 => rng.below(256),
        7..=8 => rng.below(8192),
        _ => rng.below(200_000),
    } as usize;
    let mut bytes = if rng.chance(0.75) {
        let version = if rng.chance(0.9) { 1 } else { rng.next() as u8 };
        let flags = if rng.chance(0.9) {
            rng.below(4) as u8
        } else {
            rng.next() as u8
        };
        let here = if rng.chance(0.8) {
            handles as u16
        } else {
            rng.next() as u16
        };
        let total_handles = match rng.below(4) {
            0 | 1 => u32::from(here),
            2 => u32::from(here) + rng.below(600) as u32,
            _ => rng.next() as u32,
        };
        let total_bytes = match rng.below(5) {
            0 | 1 => payload_len as u64,
            2 => payload_len as u64 + rng.below(1 << 20),
            3 => 1 << 40,
            _ => rng.next(),
        };
        fragment_header(version, flags, here, total_handles, total_bytes)
    } else {
        let mut noise = vec![0u8; rng.below(40) as usize];
        rng.fill(&mut noise);
        noise
    };
    let start = bytes.len();
    bytes.resize(start + payload_len, 0);
    rng.fill(&mut bytes[start..]);
    bytes
}

#[derive(Debug, Serialize, Deserialize)]
struct ReceiverReport {
    baseline: usize,
    handles: usize,
    outcomes: BTreeMap<String, u64>,
}

/// The child: takes one channel per round from the control channel and
/// reads it until the peer hangs up or the channel is poisoned.
pub fn receiver_role() -> Result<()> {
    let ctl = child_ctl()?;
    let baseline = handoff::count_open_handles()?;
    let mut outcomes = BTreeMap::<String, u64>::new();
    loop {
        let mut msg = match ctl.recv() {
            Ok(msg) => msg,
            Err(Error::Disconnected { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if msg.bytes == b"exit" {
            return Ok(());
        }
        if msg.bytes == b"report" {
            let report = ReceiverReport {
                baseline,
                handles: handoff::count_open_handles()?,
                outcomes: outcomes.clone(),
            };
            send_json(&ctl, &report)?;
            continue;
        }
        let target = Channel::from_handle(msg.handles.pop().ok_or("a round without a channel")?)?;
        drop(msg);
        loop {
            let outcome = match target.recv() {
                Ok(_) => "message".to_owned(),
                Err(e) => kind_of(&e).to_owned(),
            };
            let end = outcome == "Disconnected" || outcome == "Poisoned";
            *outcomes.entry(outcome).or_default() += 1;
            if end {
                break;
            }
        }
        drop(target);
        ctl.send(b"round done", &[])?;
    }
}

pub fn kind_of(e: &Error) -> &'static str {
    match e {
        Error::Disconnected { .. } => "Disconnected",
        Error::Poisoned => "Poisoned",
        Error::Malformed(_) => "Malformed",
        Error::TooLarge { .. } => "TooLarge",
        Error::HandlesTruncated { .. } => "HandlesTruncated",
        Error::Io { .. } => "Io",
        _ => "other",
    }
}

/// 5a.
pub fn channel(cfg: &Cfg) -> Result<Row> {
    let datagrams: usize = cfg.pick(5000, 200_000);
    let mut rng = Rng::new(cfg.seed ^ 0x5a);
    let ammo = Ammunition::new()?;
    let mut checks = Checks::default();
    let mut kid = Kid::spawn(ROLE, &[])?;
    let (mut sent, mut handles_sent, mut rounds) = (0usize, 0usize, 0usize);
    while sent < datagrams {
        let (ours, theirs) = Channel::pair()?;
        kid.send(b"round", &[theirs.as_handle()])?;
        drop(theirs);
        for _ in 0..1 + rng.below(6) {
            let n = handle_count(&mut rng);
            let bytes = random_datagram(&mut rng, n);
            // A receiver that already gave up makes the rest fail: fine.
            if raw_send(ours.as_fd(), &bytes, &ammo.pick(&mut rng, n)).is_ok() {
                sent += 1;
                handles_sent += n;
            }
        }
        drop(ours);
        rounds += 1;
        // A round the receiver never finishes is a hang.
        let done = kid.recv(Duration::from_secs(10))?;
        if done.bytes != b"round done" {
            return Err("unexpected message from the receiver".into());
        }
    }
    kid.send(b"report", &[])?;
    let report: ReceiverReport = kid.recv_json(Duration::from_secs(10))?;
    checks.check(kid.exited()?.is_none(), || "the receiver died".into());
    checks.check(report.handles == report.baseline, || {
        format!(
            "the receiver holds {} handles, {} at the start",
            report.handles, report.baseline
        )
    });
    checks.check(
        !report.outcomes.contains_key("other") && !report.outcomes.contains_key("Io"),
        || format!("untyped errors: {:?}", report.outcomes),
    );
    kid.send(b"exit", &[])?;
    let status = kid.wait(Duration::from_secs(10))?;
    checks.check(status.success(), || {
        format!("the receiver ended with {status}")
    });
    Ok(Row {
        case: "5a hostile bytes: Channel",
        thrown: format!(
            "{sent} random datagrams (lying headers, noise, up to 200 KB) with {handles_sent} handles (0-253 each) in {rounds} rounds against a Channel in a child"
        ),
        expected: "typed errors only, no crash or hang, receiver's handle count back to baseline",
        observed: format!(
            "receiver alive, exit 0; handles {} (baseline {}); outcomes {}",
            report.handles,
            report.baseline,
            outcomes_text(&report.outcomes)
        ),
        counts: format!("{sent} datagrams, {handles_sent} handles, {rounds} channels"),
        verdict: checks.verdict(),
    })
}

fn outcomes_text(outcomes: &BTreeMap<String, u64>) -> String {
    outcomes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The HELLO a generated client of the chaos interface sends, by hand.
pub fn hello() -> Result<Vec<u8>> {
    let id = ChaosClient::IDENTITY;
    Ok(wire::frame(
        FrameType::Hello,
        0,
        0,
        0,
        &(id.name.as_ref(), id.version, id.hash),
    )?)
}

/// An RPC frame with random lies in its header and body, or a well-formed
/// call of a random method with random (possibly wrong) handles.
fn random_rpc_frame(rng: &mut Rng, handles: usize) -> Vec<u8> {
    if rng.chance(0.3) {
        let id = rng.next() | 1;
        let framed = match rng.below(4) {
            0 => wire::frame(
                FrameType::Call,
                M_STAMP,
                id,
                handles,
                &(0u32, rng.next() as u32, rng.next()),
            ),
            1 => wire::frame(
                FrameType::Call,
                1,
                id,
                handles,
                &(rng.next() as u32, rng.next()),
            ),
            2 => wire::frame(
                FrameType::Call,
                M_OPEN,
                id,
                handles,
                &(rng.next() as u32, 0u32),
            ),
            _ => wire::frame(FrameType::Close, 0, id, handles, &rng.next()),
        };
        if let Ok(f) = framed {
            return f;
        }
    }
    let mut body = vec![0u8; rng.below(64) as usize];
    rng.fill(&mut body);
    let mut h = vec![
        if rng.chance(0.9) { 1 } else { rng.next() as u8 },
        rng.below(8) as u8,
    ];
    h.extend_from_slice(
        &(if rng.chance(0.9) {
            0u16
        } else {
            rng.next() as u16
        })
        .to_le_bytes(),
    );
    h.extend_from_slice(&(rng.below(6) as u32).to_le_bytes());
    h.extend_from_slice(&rng.next().to_le_bytes());
    let announced = if rng.chance(0.8) {
        handles as u32
    } else {
        rng.next() as u32
    };
    h.extend_from_slice(&announced.to_le_bytes());
    let body_len = if rng.chance(0.8) {
        body.len() as u32
    } else {
        rng.next() as u32
    };
    h.extend_from_slice(&body_len.to_le_bytes());
    h.extend_from_slice(&body);
    h
}

/// 5b.
pub fn rpc_server(cfg: &Cfg) -> Result<Row> {
    let datagrams: usize = cfg.pick(5000, 200_000);
    let mut rng = Rng::new(cfg.seed ^ 0x5b);
    let ammo = Ammunition::new()?;
    let dir = TempDir::new("hostile")?;
    let path = dir.path().join("rpc.sock");
    let mut server = ServerKid::start(&path, false)?;
    let mut checks = Checks::default();
    let (mut sent, mut handles_sent, mut connections, mut replies) = (0, 0, 0, 0);
    let mut deadline_hit = false;
    let deadline = Instant::now() + Duration::from_secs(cfg.pick(40, 300));
    while sent < datagrams {
        if Instant::now() > deadline {
            deadline_hit = true;
            break;
        }
        let ch = Channel::connect(&path)?;
        connections += 1;
        // Most connections get past the handshake, so the frames reach
        // the call dispatcher rather than only the handshake's checks.
        if rng.chance(0.7) {
            ch.send(&hello()?, &[])?;
            let _ = recv_timeout(&ch, Duration::from_secs(5));
        }
        for _ in 0..1 + rng.below(6) {
            let n = handle_count(&mut rng);
            let handles = ammo.pick(&mut rng, n);
            let ok = if rng.chance(0.5) {
                let bytes = random_datagram(&mut rng, n);
                raw_send(ch.as_fd(), &bytes, &handles).is_ok()
            } else {
                let frame = random_rpc_frame(&mut rng, n);
                let borrowed: Vec<handoff::BorrowedHandle<'_>> =
                    handles.iter().map(|h| h.as_handle()).collect();
                ch.send(&frame, &borrowed).is_ok()
            };
            if ok {
                sent += 1;
                handles_sent += n;
            }
            // Read what came back so the server never waits on us.
            let mut msg = handoff::Message::new();
            while ch.try_recv_into(&mut msg).is_ok() {
                replies += 1;
            }
        }
        drop(ch);
    }
    checks.check(!deadline_hit, || format!("only {sent} datagrams in time"));
    checks.check(server.alive()?, || "the server died".into());
    // Still serving: a proper client gets a proper answer.
    let serves = (|| -> Result<()> {
        let client = ChaosBlockingClient::connect(&path)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("after"))?;
        if client.stamp(&file, 7, 7).map_err(|e| e.to_string())? != (7, 7) {
            return Err("wrong answer".into());
        }
        Ok(())
    })();
    checks.check(serves.is_ok(), || {
        format!("the server no longer serves: {serves:?}")
    });
    let (settled, stats) = server.settle(Duration::from_secs(20))?;
    checks.check(settled, || {
        format!(
            "not settled: handles {} (baseline {}), contexts {:?}",
            stats.handles, stats.baseline, stats.contexts
        )
    });
    checks.check(stats.panics == 0, || format!("{} panics", stats.panics));
    server.stop(&mut checks)?;
    Ok(Row {
        case: "5b hostile bytes: RPC server",
        thrown: format!(
            "{sent} random datagrams and RPC frames (lying headers, noise, calls with wrong handles) with {handles_sent} handles on {connections} connections (70% after a handshake)"
        ),
        expected: "faults or closed connections only, no crash or panic, server still serves, handles back to baseline",
        observed: format!(
            "server alive, {} panics, still serves: {}; handles {} (baseline {}); {} contexts opened by chance, all ran down once",
            stats.panics,
            serves.is_ok(),
            stats.handles,
            stats.baseline,
            stats.contexts.len()
        ),
        counts: format!(
            "{sent} datagrams, {handles_sent} handles, {connections} connections, {replies} replies/faults read"
        ),
        verdict: checks.verdict(),
    })
}
