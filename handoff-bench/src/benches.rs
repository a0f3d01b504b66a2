//! What the benchmarks are: their names, what each measures and in which
//! unit, and how long the full and `--quick` runs spend on them.

use std::time::Duration;

use crate::stats::Better;

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Measured repetitions, each in fresh processes after a short warm-up.
    pub reps: usize,
    /// Roughly how long one batch of the handle benchmarks takes on the
    /// baseline; the message count is calibrated to it.
    pub fd_batch: Duration,
    /// Round trips per repetition.
    pub rtt_rounds: usize,
    /// Bytes per repetition of `bulk_1gib` and `startup_data_1gib`.
    pub bulk_total: u64,
    /// Spawns per contender per repetition of `spawn_overhead`.
    pub spawns: usize,
    /// Handles the holder child opens for `pidfd_getfd`.
    pub pidfd_handles: usize,
    /// Calls per repetition of `rpc_rtt_1fd`.
    pub rpc_rounds: usize,
    /// How long the clients of `rpc_calls_64_clients` call, per repetition.
    pub calls_window: Duration,
    /// Client processes in `rpc_calls_64_clients`.
    pub clients: usize,
}

impl Config {
    /// The full run: about two and a half minutes on a 2-core machine.
    pub fn full() -> Config {
        Config {
            reps: 9,
            fd_batch: Duration::from_millis(200),
            rtt_rounds: 30_000,
            bulk_total: 1 << 30,
            spawns: 200,
            pidfd_handles: 10_000,
            rpc_rounds: 10_000,
            calls_window: Duration::from_millis(500),
            clients: 64,
        }
    }

    /// `--quick`: well under a minute.
    pub fn quick() -> Config {
        Config {
            reps: 3,
            fd_batch: Duration::from_millis(60),
            rtt_rounds: 3_000,
            bulk_total: 256 << 20,
            spawns: 40,
            pidfd_handles: 10_000,
            rpc_rounds: 1_000,
            calls_window: Duration::from_millis(200),
            clients: 64,
        }
    }
}

/// What a benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Handles per second, `per_message` handles in each message.
    Fds { per_message: usize },
    /// Round-trip latency of one byte, with one handle each way if `with_fd`.
    Rtt { with_fd: bool },
    /// Bytes per second through the channel.
    Bulk,
    /// A benchmark with its own module, entrants and child jobs.
    Own(Own),
}

/// The benchmarks that run through their own modules rather than the
/// shared contender loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Own {
    /// `startup_data_1gib`: bytes handed to a child at spawn, from "the
    /// parent starts" to "the child has read all of it" (`startup_bench`).
    StartupData,
    /// `spawn_overhead`: spawn and wait of a trivial child (`spawn_bench`).
    Spawn,
    /// `pidfd_getfd`: handles copied out of another process
    /// (`pidfd_bench`).
    PidfdGetfd,
    /// `rpc_rtt_1fd`: one RPC call with a handle each way (`rpc_bench`).
    RpcRtt,
    /// `rpc_calls_64_clients`: small calls from many client processes
    /// against one server (`rpc_bench`).
    RpcCalls,
}

impl Measure {
    /// The unit its figures are in.
    pub fn unit(self) -> &'static str {
        match self {
            Measure::Fds { .. } => "fds/s",
            Measure::Rtt { .. } => "us",
            Measure::Bulk => "GB/s",
            Measure::Own(Own::StartupData) => "GB/s",
            Measure::Own(Own::Spawn | Own::RpcRtt) => "us",
            Measure::Own(Own::PidfdGetfd) => "fds/s",
            Measure::Own(Own::RpcCalls) => "calls/s",
        }
    }

    /// Which way its figures improve.
    pub fn better(self) -> Better {
        match self {
            Measure::Rtt { .. } | Measure::Own(Own::Spawn | Own::RpcRtt) => Better::Lower,
            Measure::Fds { .. } | Measure::Bulk | Measure::Own(_) => Better::Higher,
        }
    }
}

/// One benchmark.
#[derive(Debug, Clone)]
pub struct Bench {
    pub name: String,
    pub measure: Measure,
    /// Both processes on [`crate::proc::PIN_CPU`].
    pub pinned: bool,
}

/// Every benchmark, in the order they run. The latency ones always come
/// both unpinned and pinned; `pin_all` adds pinned runs of the others.
pub fn all(pin_all: bool) -> Vec<Bench> {
    let mut out = Vec::new();
    let mut add = |name: &str, measure: Measure, pinned_too: bool| {
        out.push(Bench {
            name: name.to_owned(),
            measure,
            pinned: false,
        });
        if pinned_too {
            out.push(Bench {
                name: format!("{name}_pinned"),
                measure,
                pinned: true,
            });
        }
    };
    for per_message in [1, 64, 253] {
        add(
            &format!("fd_throughput_{per_message}"),
            Measure::Fds { per_message },
            pin_all,
        );
    }
    add("rtt_bytes", Measure::Rtt { with_fd: false }, true);
    add("rtt_1fd", Measure::Rtt { with_fd: true }, true);
    add("bulk_1gib", Measure::Bulk, pin_all);
    add("startup_data_1gib", Measure::Own(Own::StartupData), false);
    add("spawn_overhead", Measure::Own(Own::Spawn), false);
    add("pidfd_getfd", Measure::Own(Own::PidfdGetfd), false);
    add("rpc_rtt_1fd", Measure::Own(Own::RpcRtt), true);
    add("rpc_calls_64_clients", Measure::Own(Own::RpcCalls), false);
    out
}
