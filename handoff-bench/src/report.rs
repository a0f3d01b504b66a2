//! One row per benchmark: the best raw figure, handoff's and ipc-channel's,
//! and how they compare; printed as a table or as JSON lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::benches::Bench;
use crate::entrants::Side;
use crate::stats::{self, Better, Figure};
use crate::Result;

/// One entrant's best figure in one benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub side: Side,
    pub label: String,
    #[serde(skip)]
    pub figure: Figure,
}

impl Entry {
    /// `side`'s entry `label` with the best of its repetitions `reps`.
    pub fn best_of(
        side: Side,
        label: impl Into<String>,
        reps: &[Figure],
        better: Better,
    ) -> Result<Entry> {
        Ok(Entry {
            side,
            label: label.into(),
            figure: stats::best(reps, better).ok_or("no repetitions")?,
        })
    }
}

/// A benchmark's result. The first six fields are the stable interface
/// (`name`, `unit`, `baseline`, `handoff`, `speed`, `ipc_channel`); the
/// rest say where the figures came from.
#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub unit: &'static str,
    /// The best raw figure.
    pub baseline: f64,
    /// handoff's best figure.
    pub handoff: f64,
    /// handoff against the baseline: above 1 is faster, whichever the unit.
    pub speed: f64,
    /// ipc-channel against the baseline, as `speed`; null where it cannot
    /// do the job.
    pub ipc_channel: Option<f64>,
    /// The socket type (and message size) of the best raw figure.
    pub baseline_socket: String,
    /// Which handoff variant gave its best figure.
    pub handoff_variant: String,
    /// ipc-channel's own figure, in `unit`.
    pub ipc_channel_value: Option<f64>,
    pub ipc_channel_variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_handoff: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ipc_channel: Option<f64>,
    pub pinned: bool,
    pub reps: usize,
    /// Every entrant's figure, in `unit`, by label.
    pub figures: Vec<(String, f64)>,
    /// Further figures some benchmarks report as top-level keys (e.g.
    /// `memcpy_gbps`), each named with its unit.
    #[serde(flatten)]
    pub extra: BTreeMap<String, f64>,
}

impl Row {
    /// Picks the best entry of each side and compares.
    pub fn new(bench: &Bench, reps: usize, entries: Vec<Entry>) -> Result<Row> {
        let better = bench.measure.better();
        let best = |side: Side| -> Option<&Entry> {
            entries
                .iter()
                .filter(|e| e.side == side)
                .fold(None, |acc: Option<&Entry>, e| match acc {
                    Some(a) if !better.beats(e.figure.value, a.figure.value) => Some(a),
                    _ => Some(e),
                })
        };
        let base = best(Side::Baseline).ok_or("no baseline figure")?;
        let handoff = best(Side::Handoff).ok_or("no handoff figure")?;
        let ipc = best(Side::IpcChannel);
        let unit = bench.measure.unit();
        let ratio = |e: &Entry| round_ratio(better.speed(e.figure.value, base.figure.value));
        let value = |f: f64| round_figure(f);
        Ok(Row {
            name: bench.name.clone(),
            unit,
            baseline: value(base.figure.value),
            handoff: value(handoff.figure.value),
            speed: ratio(handoff),
            ipc_channel: ipc.map(ratio),
            baseline_socket: base.label.clone(),
            handoff_variant: handoff.label.clone(),
            ipc_channel_value: ipc.map(|e| value(e.figure.value)),
            ipc_channel_variant: ipc.map(|e| e.label.clone()),
            p99_baseline: base.figure.p99.map(value),
            p99_handoff: handoff.figure.p99.map(value),
            p99_ipc_channel: ipc.and_then(|e| e.figure.p99).map(value),
            pinned: bench.pinned,
            reps,
            figures: entries
                .iter()
                .map(|e| (e.label.clone(), value(e.figure.value)))
                .collect(),
            extra: BTreeMap::new(),
        })
    }

    /// Adds a further figure as a top-level JSON key.
    pub fn with_extra(mut self, key: &str, value: f64) -> Row {
        self.extra.insert(key.to_owned(), round_figure(value));
        self
    }

    /// The row as one line of JSON.
    pub fn json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }
}

/// Four significant digits: more than the noise on this machine allows.
fn round_figure(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let shift = 3 - x.abs().log10().floor() as i32;
    // Dividing by an exact power of ten keeps the decimal digits exact.
    if shift >= 0 {
        let m = 10f64.powi(shift);
        (x * m).round() / m
    } else {
        let m = 10f64.powi(-shift);
        (x / m).round() * m
    }
}

fn round_ratio(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn show(unit: &str, x: f64) -> String {
    match unit {
        "fds/s" | "calls/s" => format!("{:.3} M", x / 1e6),
        _ => format!("{x:.2}"),
    }
}

/// The human-readable table, then every entrant's figure per benchmark.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<25} {:>6} {:>11} {:<30} {:>11} {:>6} {:>11}  p99 base/handoff/ipc",
        "benchmark", "unit", "baseline", "(best raw)", "handoff", "speed", "ipc-channel"
    );
    for r in rows {
        let ipc = r
            .ipc_channel
            .map_or("null".to_owned(), |s| format!("{s:.3}"));
        let p99 = match (r.p99_baseline, r.p99_handoff) {
            (Some(b), Some(h)) => {
                let i = r
                    .p99_ipc_channel
                    .map_or("-".to_owned(), |i| format!("{i:.2}"));
                format!("  {b:.2} / {h:.2} / {i}")
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<25} {:>6} {:>11} {:<30} {:>11} {:>6.3} {:>11}{p99}",
            r.name,
            r.unit,
            show(r.unit, r.baseline),
            r.baseline_socket,
            show(r.unit, r.handoff),
            r.speed,
            ipc,
        );
    }
    let _ = writeln!(out, "\nevery entrant (best of each):");
    for r in rows {
        let all: Vec<String> = r
            .figures
            .iter()
            .map(|(label, v)| format!("{label} {}", show(r.unit, *v)))
            .collect();
        let _ = writeln!(out, "  {:<25} {} [{}]", r.name, all.join(", "), r.unit);
        if !r.extra.is_empty() {
            let extra: Vec<String> = r.extra.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(out, "  {:<25} {}", "", extra.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_four_significant_digits() {
        assert_eq!(round_figure(1_234_567.0), 1_235_000.0);
        assert_eq!(round_figure(5.123_456), 5.123);
        assert_eq!(round_figure(0.012_345_6), 0.01235);
        assert_eq!(round_figure(0.0), 0.0);
    }
}
