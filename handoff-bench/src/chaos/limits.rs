//! Case 2: exhausted limits. A receiver whose descriptor table is nearly
//! full; a sender flooding a slow receiver; a peer announcing a frame of a
//! terabyte; ten thousand connections opened and abandoned.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use handoff::__private::wire::{self, FrameType};
use handoff::{AsHandle, BorrowedHandle, Channel, Error, Limits};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde::{Deserialize, Serialize};

use super::hostile::{fragment_header, hello, kind_of, raw_send};
use super::server::{ChaosBlockingClient, ServerKid, M_OPEN, M_STAMP};
use super::{child_ctl, memory, mib, send_json, Cfg, Checks, Kid, Memory, Row, TempDir};
use crate::Result;

pub const NOFILE_ROLE: &str = "nofile-receiver";
pub const SENDER_ROLE: &str = "flood-sender";
pub const RECEIVER_ROLE: &str = "slow-receiver";
pub const HUGE_ROLE: &str = "huge-frame-receiver";

/// (tag, handles, whether they fit under the limit).
type NofileMessage = (u8, usize, bool);

/// The messages of one round of 2a, by how many descriptors the receiver
/// has free. With 16 free every fragment of a big message is cut short;
/// with 300 free a message's first fragment (253 handles) arrives whole
/// and a later one is cut.
const NOFILE_PHASES: &[(u64, &[NofileMessage])] = &[
    (
        16,
        &[
            (b'a', 20, false),
            (b'b', 600, false),
            (b'c', 1, true),
            (b'd', 200, false),
            (b'e', 8, true),
        ],
    ),
    (
        300,
        &[
            (b'f', 400, false),
            (b'g', 1, true),
            (b'h', 600, false),
            (b'i', 250, true),
        ],
    ),
];

#[derive(Debug, Serialize, Deserialize)]
struct NofileReport {
    baseline: usize,
    /// The RLIMIT_NOFILE of each phase.
    limits: Vec<u64>,
    /// Per message received: what came out, and the open handles after it.
    outcomes: Vec<(String, usize)>,
}

/// Sets RLIMIT_NOFILE so that exactly `free` descriptor numbers are free
/// below it, and returns the limit.
fn leave_free(free: u64) -> Result<u64> {
    // The limit caps descriptor numbers, and a new descriptor takes the
    // lowest free number: the limit goes just past the free-th free one.
    let open: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    let limit = (0..)
        .filter(|n| !open.contains(n))
        .nth(free as usize - 1)
        .map_or(free, |n| n + 1);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(limit),
            maximum: getrlimit(Resource::Nofile).maximum,
        },
    )?;
    Ok(limit)
}

/// The child of 2a: lowers its own RLIMIT_NOFILE to just above what it
/// uses, then receives what the harness sends, phase by phase.
pub fn nofile_role() -> Result<()> {
    let ctl = child_ctl()?;
    let rounds: usize = super::env("HANDOFF_CHAOS_ROUNDS")?;
    let baseline = handoff::count_open_handles()?;
    let mut limits = Vec::new();
    let mut outcomes = Vec::new();
    for (free, messages) in NOFILE_PHASES {
        limits.push(leave_free(*free)?);
        ctl.send(b"ready", &[])?;
        for _ in 0..rounds * messages.len() {
            let text = match ctl.recv() {
                Ok(msg) => format!(
                    "{} with {} handles",
                    String::from_utf8_lossy(&msg.bytes),
                    msg.handles.len()
                ),
                Err(e) => kind_of(&e).to_owned(),
            };
            outcomes.push((text, handoff::count_open_handles()?));
        }
    }
    send_json(
        &ctl,
        &NofileReport {
            baseline,
            limits,
            outcomes,
        },
    )
}

/// 2a.
pub fn nofile(cfg: &Cfg) -> Result<Row> {
    let rounds: usize = cfg.pick(10, 200);
    let mut checks = Checks::default();
    let kid = Kid::spawn(NOFILE_ROLE, &[("HANDOFF_CHAOS_ROUNDS", rounds.to_string())])?;
    let null = File::open("/dev/null")?;
    let mut expected = Vec::new();
    let mut sent_handles = 0;
    for (_, messages) in NOFILE_PHASES {
        let ready = kid.recv(Duration::from_secs(10))?;
        if ready.bytes != b"ready" {
            return Err("the receiver did not get ready".into());
        }
        for _ in 0..rounds {
            for &(tag, n, fits) in *messages {
                let handles: Vec<BorrowedHandle<'_>> = (0..n).map(|_| null.as_handle()).collect();
                kid.send(&[tag], &handles)?;
                sent_handles += n;
                expected.push(if fits {
                    format!("{} with {n} handles", tag as char)
                } else {
                    "HandlesTruncated".to_owned()
                });
            }
        }
    }
    let report: NofileReport = kid.recv_json(Duration::from_secs(60))?;
    let got: Vec<&str> = report.outcomes.iter().map(|(t, _)| t.as_str()).collect();
    let first_wrong = expected
        .iter()
        .zip(&got)
        .position(|(want, got)| want != got);
    checks.check(first_wrong.is_none() && got.len() == expected.len(), || {
        let i = first_wrong.unwrap_or(got.len().min(expected.len()));
        format!(
            "message {i}: expected {:?}, got {:?}",
            expected.get(i),
            got.get(i)
        )
    });
    let leaks: Vec<usize> = report
        .outcomes
        .iter()
        .map(|(_, h)| *h)
        .filter(|&h| h != report.baseline)
        .collect();
    checks.check(leaks.is_empty(), || {
        format!(
            "handle counts after a message {leaks:?}, baseline {}",
            report.baseline
        )
    });
    let truncated = got.iter().filter(|t| **t == "HandlesTruncated").count();
    Ok(Row {
        case: "2a descriptor table full",
        thrown: format!(
            "child receives, {rounds} rounds each: with RLIMIT_NOFILE {} (16 free) messages of 20, 600 (3 fragments) and 200 handles between messages of 1 and 8; with RLIMIT_NOFILE {} (300 free) messages of 400 and 600 handles (first fragment fits, later ones cut) between messages of 1 and 250",
            report.limits.first().copied().unwrap_or(0),
            report.limits.get(1).copied().unwrap_or(0),
        ),
        expected: "HandlesTruncated once per message that does not fit, handle count back to baseline after each, the next message intact",
        observed: format!(
            "{truncated} HandlesTruncated, {} intact messages; handle count after every message {}",
            got.len() - truncated,
            if leaks.is_empty() {
                format!("= baseline {}", report.baseline)
            } else {
                format!("off: {leaks:?}")
            }
        ),
        counts: format!("{} messages, {sent_handles} handles sent", got.len()),
        verdict: checks.verdict(),
    })
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct FloodParams {
    messages: u64,
    size: usize,
    delay_us: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SenderReport {
    before: Memory,
    after: Memory,
    elapsed_ms: u64,
    longest_send_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReceiverReport {
    before: Memory,
    after: Memory,
    received: u64,
    out_of_order: u64,
    handle_delta: i64,
}

/// Takes the parameters and the channel the harness passes.
fn flood_setup(ctl: &Channel) -> Result<(FloodParams, Channel)> {
    let mut msg = ctl.recv()?;
    let params: FloodParams = serde_json::from_slice(&msg.bytes)?;
    let ch = Channel::from_handle(msg.handles.pop().ok_or("no channel")?)?;
    Ok((params, ch))
}

/// 2b's sender: sends as fast as `send` lets it.
pub fn sender_role() -> Result<()> {
    let ctl = child_ctl()?;
    let (p, ch) = flood_setup(&ctl)?;
    let mut payload = vec![0x5au8; p.size];
    let null = File::open("/dev/null")?;
    let before = memory()?;
    let started = Instant::now();
    let mut longest = Duration::ZERO;
    for i in 0..p.messages {
        payload[..8].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        ch.send(&payload, &[null.as_handle(), null.as_handle()])?;
        longest = longest.max(t.elapsed());
    }
    let elapsed = started.elapsed();
    send_json(
        &ctl,
        &SenderReport {
            before,
            after: memory()?,
            elapsed_ms: elapsed.as_millis() as u64,
            longest_send_ms: longest.as_millis() as u64,
        },
    )
}

/// 2b's receiver: takes its time over every message.
pub fn receiver_role() -> Result<()> {
    let ctl = child_ctl()?;
    let (p, ch) = flood_setup(&ctl)?;
    let baseline = handoff::count_open_handles()?;
    let before = memory()?;
    let mut out_of_order = 0;
    let mut msg = handoff::Message::new();
    for i in 0..p.messages {
        ch.recv_into(&mut msg)?;
        let seq = msg
            .bytes
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        if seq != Some(i) || msg.bytes.len() != p.size || msg.handles.len() != 2 {
            out_of_order += 1;
        }
        msg.handles.clear();
        std::thread::sleep(Duration::from_micros(p.delay_us));
    }
    drop(msg);
    send_json(
        &ctl,
        &ReceiverReport {
            before,
            after: memory()?,
            received: p.messages,
            out_of_order,
            handle_delta: handoff::count_open_handles()? as i64 - baseline as i64,
        },
    )
}

/// 2b.
pub fn flood(cfg: &Cfg) -> Result<Row> {
    // Growth allowed over the resident set at the start of the flood.
    const BOUND_KIB: u64 = 16 << 10;
    let params = FloodParams {
        messages: cfg.pick(300, 3000),
        size: 1 << 20,
        delay_us: 2000,
    };
    let mut checks = Checks::default();
    let sender = Kid::spawn(SENDER_ROLE, &[])?;
    let receiver = Kid::spawn(RECEIVER_ROLE, &[])?;
    let (a, b) = Channel::pair()?;
    let json = serde_json::to_vec(&params)?;
    receiver.send(&json, &[b.as_handle()])?;
    sender.send(&json, &[a.as_handle()])?;
    drop((a, b));
    let timeout = Duration::from_secs(60 + params.messages * params.delay_us / 500_000);
    let s: SenderReport = sender.recv_json(timeout)?;
    let r: ReceiverReport = receiver.recv_json(timeout)?;
    // The kernel queues at most a couple of 256 KiB fragments; anything
    // near the whole flood's pace means the sender was held back.
    let paced_ms = (params.messages.saturating_sub(8)) * params.delay_us / 1000;
    checks.check(s.elapsed_ms >= paced_ms, || {
        format!(
            "the sender finished in {} ms, faster than the receiver's {paced_ms} ms: it did not block",
            s.elapsed_ms
        )
    });
    let sender_growth = s.after.hwm_kib.saturating_sub(s.before.rss_kib);
    let receiver_growth = r.after.hwm_kib.saturating_sub(r.before.rss_kib);
    checks.check(sender_growth < BOUND_KIB, || {
        format!("sender peak grew {sender_growth} KiB")
    });
    checks.check(receiver_growth < BOUND_KIB, || {
        format!("receiver peak grew {receiver_growth} KiB")
    });
    checks.check(r.out_of_order == 0, || {
        format!("{} messages out of order or damaged", r.out_of_order)
    });
    checks.check(r.handle_delta == 0, || {
        format!("the receiver kept {} handles", r.handle_delta)
    });
    let offered_mib = (params.messages * params.size as u64) >> 20;
    Ok(Row {
        case: "2b flood a slow receiver",
        thrown: format!(
            "sender process pushes {} × 1 MiB messages (+2 handles each, {offered_mib} MiB) at a receiver process that sleeps {} ms per message",
            params.messages,
            params.delay_us / 1000
        ),
        expected: "the sender blocks at the receiver's pace; both peaks stay within 16 MiB of their start; all messages arrive in order",
        observed: format!(
            "sender took {} ms (receiver pace ≥ {paced_ms} ms), longest send {} ms; peak RSS growth sender {:.1} MiB, receiver {:.1} MiB; {} out of order",
            s.elapsed_ms,
            s.longest_send_ms,
            mib(sender_growth),
            mib(receiver_growth),
            r.out_of_order
        ),
        counts: format!(
            "{} messages, {offered_mib} MiB; sender VmHWM {:.1} MiB, receiver VmHWM {:.1} MiB",
            r.received,
            mib(s.after.hwm_kib),
            mib(r.after.hwm_kib)
        ),
        verdict: checks.verdict(),
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct HugeReport {
    before: Memory,
    after: Memory,
    baseline: usize,
    handles: usize,
    too_large: u64,
    intact: u64,
    /// The first receive that was neither, and what it gave.
    first_wrong: Option<(u64, String)>,
}

/// 2c's receiver: a warm-up message, then whatever comes.
pub fn huge_role() -> Result<()> {
    let ctl = child_ctl()?;
    let mut msg = ctl.recv()?;
    let count: usize = serde_json::from_slice(&msg.bytes)?;
    let ch = Channel::from_handle(msg.handles.pop().ok_or("no channel")?)?;
    drop(msg);
    // The first receive sets up the per-thread scratch buffer: part of the
    // baseline, not growth.
    ch.recv()?;
    let baseline = handoff::count_open_handles()?;
    let before = memory()?;
    ctl.send(b"ready", &[])?;
    // Counted, not collected: a list of outcomes would itself be the
    // growth this case looks for.
    let (mut too_large, mut intact, mut first_wrong) = (0, 0, None);
    for i in 0..count as u64 {
        let outcome = ch.recv();
        let right = match &outcome {
            Err(Error::TooLarge { .. }) if i % 2 == 0 => {
                too_large += 1;
                true
            }
            Ok(m) if i % 2 == 1 && m.bytes == format!("after {}", i / 2).as_bytes() => {
                intact += 1;
                true
            }
            _ => false,
        };
        if !right && first_wrong.is_none() {
            first_wrong = Some((i, format!("{outcome:?}")));
        }
    }
    let after = memory()?;
    send_json(
        &ctl,
        &HugeReport {
            before,
            after,
            baseline,
            handles: handoff::count_open_handles()?,
            too_large,
            intact,
            first_wrong,
        },
    )
}

/// 2c.
pub fn huge_frame(cfg: &Cfg) -> Result<Row> {
    let frames: usize = cfg.pick(5000, 100_000);
    let mut checks = Checks::default();
    let kid = Kid::spawn(HUGE_ROLE, &[])?;
    let (ours, theirs) = Channel::pair()?;
    kid.send(&serde_json::to_vec(&(2 * frames))?, &[theirs.as_handle()])?;
    drop(theirs);
    ours.send(b"warm-up", &[])?;
    let ready = kid.recv(Duration::from_secs(10))?;
    if ready.bytes != b"ready" {
        return Err("the receiver did not get ready".into());
    }
    let null = File::open("/dev/null")?;
    let h3 = [null.as_fd(), null.as_fd(), null.as_fd()];
    let limits = Limits::default();
    let raw = ours.as_fd();
    let both = FIRST_LAST;
    for i in 0..frames {
        match i % 5 {
            // A whole message in one datagram announcing 1 TiB.
            0 => raw_send(
                raw,
                &with(fragment_header(1, both, 3, 3, 1 << 40), b"tiny"),
                &h3,
            )?,
            // Announcing 1 TiB over three fragments with handles.
            1 => {
                raw_send(raw, &fragment_header(1, 1, 3, 9, 1 << 40), &h3)?;
                raw_send(raw, &fragment_header(1, 0, 3, 9, 1 << 40), &h3)?;
                raw_send(raw, &fragment_header(1, 2, 3, 9, 1 << 40), &h3)?;
            }
            2 => raw_send(raw, &fragment_header(1, both, 0, 0, u64::MAX), &[])?,
            3 => raw_send(
                raw,
                &fragment_header(1, both, 3, 3, limits.max_bytes + 1),
                &h3,
            )?,
            _ => raw_send(raw, &fragment_header(1, both, 3, u32::MAX, 0), &h3)?,
        }
        ours.send(format!("after {i}").as_bytes(), &[])?;
    }
    let report: HugeReport = kid.recv_json(Duration::from_secs(60))?;
    checks.check(report.first_wrong.is_none(), || {
        format!("receive {:?}", report.first_wrong)
    });
    checks.check(report.too_large == frames as u64, || {
        format!("{} TooLarge for {frames} frames", report.too_large)
    });
    let growth = report.after.hwm_kib.saturating_sub(report.before.hwm_kib);
    checks.check(growth < 1024, || format!("peak RSS grew {growth} KiB"));
    checks.check(report.handles == report.baseline, || {
        format!(
            "the receiver holds {} handles, {} before",
            report.handles, report.baseline
        )
    });
    Ok(Row {
        case: "2c huge frame",
        thrown: format!(
            "{frames} raw datagrams announcing 2^40 bytes (whole, and over 3 fragments with handles), 2^64-1 bytes, 64 MiB + 1 bytes, 2^32-1 handles; each followed by a proper message"
        ),
        expected: "each rejected with TooLarge from its header, the next message intact, receiver peak RSS grows < 1 MiB, handles back to baseline",
        observed: format!(
            "{} TooLarge, {} intact follow-ups; peak RSS {:.1} → {:.1} MiB (+{growth} KiB); handles {} (baseline {})",
            report.too_large,
            report.intact,
            mib(report.before.hwm_kib),
            mib(report.after.hwm_kib),
            report.handles,
            report.baseline
        ),
        counts: format!("{} receives", 2 * frames),
        verdict: checks.verdict(),
    })
}

const FIRST_LAST: u8 = 3;

fn with(mut header: Vec<u8>, payload: &[u8]) -> Vec<u8> {
    header.extend_from_slice(payload);
    header
}

/// 2d.
pub fn abandoned(cfg: &Cfg) -> Result<Row> {
    const CONNECTIONS: u64 = 10_000;
    // Open at once before the oldest is dropped.
    const OPEN: usize = 256;
    let _ = cfg;
    let dir = TempDir::new("abandon")?;
    let path = dir.path().join("rpc.sock");
    let mut server = ServerKid::start(&path, false)?;
    let before = server.stats()?;
    let mut checks = Checks::default();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("target"))?;
    let hello = hello()?;
    let mut open: VecDeque<Channel> = VecDeque::with_capacity(OPEN + 1);
    let mut kinds = [0u64; 5];
    let started = Instant::now();
    for i in 0..CONNECTIONS {
        let ch = Channel::connect(&path)?;
        let kind = (i % 5) as usize;
        // A server that has gone does not answer; no step may wait for ever.
        let welcome = |ch: &Channel| super::recv_timeout(ch, Duration::from_secs(10)).is_ok();
        let done = match kind {
            // Connect and vanish.
            0 => true,
            // Say hello, never listen.
            1 => ch.send(&hello, &[]).is_ok(),
            // Half a frame and a handle.
            2 => raw_send(ch.as_fd(), &[1, 3, 0], &[file.as_fd()]).is_ok(),
            // Open a context, leave before the answer.
            3 => {
                ch.send(&hello, &[]).is_ok()
                    && welcome(&ch)
                    && ch
                        .send(
                            &wire::frame(FrameType::Call, M_OPEN, i + 1, 0, &(i as u32, 0u32))?,
                            &[],
                        )
                        .is_ok()
            }
            // A call with a handle, leave before the answer.
            _ => {
                ch.send(&hello, &[]).is_ok()
                    && welcome(&ch)
                    && ch
                        .send(
                            &wire::frame(FrameType::Call, M_STAMP, i + 1, 1, &(0u32, 1u32, i))?,
                            &[file.as_handle()],
                        )
                        .is_ok()
            }
        };
        checks.check(done, || format!("connection {i} (kind {kind}) failed"));
        kinds[kind] += 1;
        open.push_back(ch);
        if open.len() > OPEN {
            open.pop_front();
        }
    }
    open.clear();
    let opened_in = started.elapsed();
    let (settled, stats) = super::wait_for(Duration::from_secs(30), || {
        let s = server.stats()?;
        Ok((s.settled() && s.accepted == CONNECTIONS, s))
    })?;
    checks.check(stats.accepted == CONNECTIONS, || {
        format!("the server accepted {} of {CONNECTIONS}", stats.accepted)
    });
    checks.check(settled, || {
        format!(
            "not settled: handles {} (baseline {}), {} contexts not run down once",
            stats.handles,
            stats.baseline,
            stats.contexts.iter().filter(|c| c.rundowns != 1).count()
        )
    });
    checks.check(stats.panics == 0, || format!("{} panics", stats.panics));
    checks.check(server.alive()?, || "the server died".into());
    let serves = ChaosBlockingClient::connect(&path)
        .map_err(|e| e.to_string())
        .and_then(|c| c.stamp(&file, 1, 1).map_err(|e| e.to_string()));
    checks.check(serves.is_ok(), || format!("no longer serves: {serves:?}"));
    server.stop(&mut checks)?;
    Ok(Row {
        case: "2d abandoned connections",
        thrown: format!(
            "{CONNECTIONS} connections to an RPC server's Listener, up to {OPEN} open at once, abandoned: {} at once, {} after HELLO, {} after half a frame with a handle, {} after opening a context, {} after a call with a handle",
            kinds[0], kinds[1], kinds[2], kinds[3], kinds[4]
        ),
        expected: "all accepted and dropped; handle count back to baseline; every context opened ran down once; server still serves",
        observed: format!(
            "accepted {}; handles {} (baseline {}); {} contexts, all ran down once: {}; still serves: {}",
            stats.accepted,
            stats.handles,
            stats.baseline,
            stats.contexts.len(),
            stats.contexts.iter().all(|c| c.rundowns == 1),
            serves.is_ok()
        ),
        counts: format!(
            "{CONNECTIONS} connections in {:.1} s; server RSS {:.1} → peak {:.1} MiB",
            opened_in.as_secs_f64(),
            mib(before.memory.rss_kib),
            mib(stats.memory.hwm_kib)
        ),
        verdict: checks.verdict(),
    })
}
