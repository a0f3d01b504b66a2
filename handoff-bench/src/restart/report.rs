//! The campaign's figures, its checks (one per target), the table, the JSON
//! and the closing `N passed, N failed`.

use std::fmt::Write as _;

use serde::Serialize;

use super::counters::Counters;
use super::outcome::{Outcome, Proto, Span};

/// One target, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub target: String,
    pub measured: String,
    pub pass: bool,
}

impl Check {
    pub fn new(
        name: &'static str,
        target: impl Into<String>,
        measured: impl Into<String>,
        pass: bool,
    ) -> Check {
        Check {
            name,
            target: target.into(),
            measured: measured.into(),
            pass,
        }
    }
}

/// Requests and each failure class, per protocol, over a span.
#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    pub protocol: &'static str,
    pub requests: u64,
    /// `(class, count)` for every class, `ok` first.
    pub outcomes: Vec<(&'static str, u64)>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub fn traffic(span: &Span) -> Vec<Traffic> {
    Proto::ALL
        .iter()
        .enumerate()
        .map(|(i, p)| Traffic {
            protocol: p.name(),
            requests: span.requests(i),
            outcomes: Outcome::ALL
                .iter()
                .map(|&o| (o.name(), span.count(i, o)))
                .collect(),
            p50_ms: span.per_proto[i].latency.quantile_ms(0.5),
            p99_ms: span.per_proto[i].latency.quantile_ms(0.99),
        })
        .collect()
}

/// Everything the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub quick: bool,
    /// The whole campaign, start to end.
    pub wall_seconds: f64,
    /// Seconds of load on the supervised server.
    pub seconds: f64,
    pub offered_per_s: [f64; 3],
    pub capacity_per_s: [f64; 3],
    pub restarts: usize,
    pub bad_versions: usize,
    pub self_replacements: usize,
    pub baseline: Vec<Traffic>,
    pub during: Vec<Traffic>,
    pub counters: Counters,
    pub naive_traffic: Vec<Traffic>,
    pub naive_counters: Counters,
    pub naive_restarts: usize,
    /// The self-contained server (no supervisor) under the same load.
    pub self_contained_traffic: Vec<Traffic>,
    pub self_contained_counters: Counters,
    pub gunicorn: Option<String>,
    pub picture: String,
    /// Per second of load: requests, failures, p50 and p99 (ms), and the
    /// load generator's worst start lag (ms).
    pub series: Vec<(u64, u64, f64, f64, f64)>,
    /// Each restart: seconds since the load began, and its kind.
    pub marks: Vec<(f64, &'static str)>,
    pub notes: Vec<String>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| c.pass).count()
    }
    pub fn failed(&self) -> usize {
        self.checks.len() - self.passed()
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "handoff-bench --restart{}: {:.0} s in all, {:.0} s of load, {} restarts ({} bad versions, {} supervisor self-replacements)\n",
            if self.quick { " --quick" } else { "" },
            self.wall_seconds,
            self.seconds,
            self.restarts,
            self.bad_versions,
            self.self_replacements
        );
        let _ = writeln!(
            t,
            "load (open loop) and capacity (closed loop), requests/s:"
        );
        for (i, p) in Proto::LOADED.iter().enumerate() {
            let _ = writeln!(
                t,
                "  {:<6} offered {:>7.0}   capacity {:>8.0}   ({:.0}% of capacity)",
                p.name(),
                self.offered_per_s[i],
                self.capacity_per_s[i],
                100.0 * self.offered_per_s[i] / self.capacity_per_s[i].max(1.0)
            );
        }
        for (title, rows) in [
            ("without restarts (baseline)", &self.baseline),
            ("during restarts", &self.during),
            (
                "self-contained mode (SIGHUP upgrades, no supervisor)",
                &self.self_contained_traffic,
            ),
            (
                "negative control (naive SO_REUSEPORT handover)",
                &self.naive_traffic,
            ),
        ] {
            let _ = writeln!(t, "\n{title}:");
            let _ = write!(t, "  {:<6} {:>9}", "proto", "requests");
            for o in Outcome::ALL {
                let _ = write!(t, " {:>9}", o.name());
            }
            let _ = writeln!(t, " {:>8} {:>8}", "p50 ms", "p99 ms");
            for r in rows.iter() {
                let _ = write!(t, "  {:<6} {:>9}", r.protocol, r.requests);
                for (_, n) in &r.outcomes {
                    let _ = write!(t, " {n:>9}");
                }
                let _ = writeln!(t, " {:>8.2} {:>8.2}", r.p50_ms, r.p99_ms);
            }
        }
        let _ = writeln!(t, "\nkernel counter deltas (private namespace):");
        let _ = writeln!(
            t,
            "  {:<24} {:>10} {:>14} {:>14}",
            "counter", "campaign", "self-contained", "naive control"
        );
        for (k, v) in &self.counters {
            let _ = writeln!(
                t,
                "  {k:<24} {v:>10} {:>14} {:>14}",
                self.self_contained_counters.get(k).copied().unwrap_or(0),
                self.naive_counters.get(k).copied().unwrap_or(0)
            );
        }
        if let Some(g) = &self.gunicorn {
            let _ = writeln!(t, "\ngunicorn under handoff serve: {g}");
        }
        let _ = writeln!(t, "\npicture: {}", self.picture);
        for n in &self.notes {
            let _ = writeln!(t, "note: {n}");
        }
        let _ = writeln!(
            t,
            "\n  {:<34} {:<6} {:<44} measured",
            "check", "result", "target"
        );
        for c in &self.checks {
            let _ = writeln!(
                t,
                "  {:<34} {:<6} {:<44} {}",
                c.name,
                if c.pass { "pass" } else { "FAIL" },
                c.target,
                c.measured
            );
        }
        t
    }
}
