//! Who enters each benchmark: the raw baseline in every configuration that
//! may win, handoff, and ipc-channel where it can do the job.

use crate::benches::Measure;
use crate::contender::Kind;
use crate::raw::{Buffers, SocketKind};
use crate::with_ipc_channel;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// The payload of one full handoff datagram: 256 KiB less its 16-byte
/// header, so the message goes out in one `sendmsg`.
const HANDOFF_DATAGRAM_PAYLOAD: usize = 256 * KIB - 16;

/// Which column an entrant's figure goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Baseline,
    Handoff,
    IpcChannel,
    /// A variant measured for the analysis (another setting of the raw
    /// code or of handoff): reported in `figures`, never the baseline.
    Experiment,
}

/// One contender in one benchmark, with the message size it uses.
#[derive(Debug, Clone)]
pub struct Entrant {
    pub side: Side,
    pub label: String,
    pub kind: Kind,
    /// Bytes per message for `Bulk`; unused otherwise.
    pub chunk: usize,
}

impl Entrant {
    fn new(side: Side, label: impl Into<String>, kind: Kind, chunk: usize) -> Entrant {
        Entrant {
            side,
            label: label.into(),
            kind,
            chunk,
        }
    }
}

/// The entrants of a benchmark. The raw baseline tries every socket type
/// that can do the job, with the kernel's default socket buffers and with
/// the larger send buffer handoff asks for, since either may win; the
/// best one is the baseline. When handoff is built in its portable Unix
/// configuration (channels over `SOCK_STREAM`), only the `SOCK_STREAM`
/// entrants are the baseline, so each row's speed is the portable channel
/// against raw `SOCK_STREAM` in the same run; the others still run, as
/// experiments.
pub fn entrants(measure: Measure) -> Vec<Entrant> {
    let mut out: Vec<Entrant> = Vec::new();
    let raw = |s: SocketKind, b: Buffers, chunk: usize| {
        let mut label = format!("{} {}", s.name(), b.name());
        if chunk > 0 {
            label = format!("{label} {}", size_label(chunk));
        }
        let side = if handoff::__private::PORTABLE_UNIX && s != SocketKind::Stream {
            Side::Experiment
        } else {
            Side::Baseline
        };
        Entrant::new(side, label, Kind::Raw(s, b), chunk)
    };
    match measure {
        Measure::Fds { .. } | Measure::Rtt { .. } => {
            for s in [SocketKind::Stream, SocketKind::Seqpacket, SocketKind::Dgram] {
                for b in [Buffers::Library, Buffers::System] {
                    out.push(raw(s, b, 0));
                }
            }
            out.push(Entrant::new(Side::Handoff, "handoff", Kind::Handoff, 0));
            let fits = match measure {
                Measure::Fds { per_message } => per_message <= with_ipc_channel::MAX_HANDLES,
                _ => true,
            };
            if fits {
                out.push(Entrant::new(
                    Side::IpcChannel,
                    "ipc-channel",
                    Kind::IpcChannel,
                    0,
                ));
            }
        }
        // Their modules pick their own entrants.
        Measure::Own(_) => {}
        Measure::Bulk => {
            out.push(raw(SocketKind::Stream, Buffers::System, 256 * KIB));
            out.push(raw(SocketKind::Stream, Buffers::Library, MIB));
            // Datagrams just under the kernel's default send buffer (the
            // fastest raw configuration found here, and close to what
            // ipc-channel does), and the library's own configuration.
            out.push(raw(SocketKind::Seqpacket, Buffers::System, 200 * KIB));
            out.push(raw(SocketKind::Seqpacket, Buffers::Library, 256 * KIB));
            for chunk in [HANDOFF_DATAGRAM_PAYLOAD, MIB] {
                let label = format!("handoff {}", size_label(chunk));
                out.push(Entrant::new(Side::Handoff, label, Kind::Handoff, chunk));
            }
            // ipc-channel's own largest unfragmented message, and 1 MiB,
            // which it splits over a socket pair it creates per message.
            let ipc_single = ipc_channel::platform::OsIpcSender::get_max_fragment_size();
            for chunk in [ipc_single, MIB] {
                let label = format!("ipc-channel {}", size_label(chunk));
                out.push(Entrant::new(
                    Side::IpcChannel,
                    label,
                    Kind::IpcChannel,
                    chunk,
                ));
            }
        }
    }
    out
}

fn size_label(bytes: usize) -> String {
    if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}
