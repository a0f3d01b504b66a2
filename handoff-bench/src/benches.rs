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
    /// Bytes per repetition of `bulk_1gib`.
    pub bulk_total: u64,
}

impl Config {
    /// The full run: about two and a half minutes on a 2-core machine.
    pub fn full() -> Config {
        Config {
            reps: 9,
            fd_batch: Duration::from_millis(200),
            rtt_rounds: 30_000,
            bulk_total: 1 << 30,
        }
    }

    /// `--quick`: well under a minute.
    pub fn quick() -> Config {
        Config {
            reps: 3,
            fd_batch: Duration::from_millis(60),
            rtt_rounds: 3_000,
            bulk_total: 256 << 20,
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
}

impl Measure {
    /// The unit its figures are in.
    pub fn unit(self) -> &'static str {
        match self {
            Measure::Fds { .. } => "fds/s",
            Measure::Rtt { .. } => "us",
            Measure::Bulk => "GB/s",
        }
    }

    /// Which way its figures improve.
    pub fn better(self) -> Better {
        match self {
            Measure::Rtt { .. } => Better::Lower,
            Measure::Fds { .. } | Measure::Bulk => Better::Higher,
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
    out
}
