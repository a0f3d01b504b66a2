//! The reference server's own account of each handover it made (one line
//! per handover in the file named by `RESTART_SERVER_STATS`): how many
//! connections, how much state, and how long each step took, measured
//! inside the old generation.

use std::path::Path;

/// One handover, as the old generation measured it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handover {
    pub connections: u64,
    pub offered: u64,
    pub state_bytes: u64,
    /// Waiting for the connections to come between two requests.
    pub gather_ms: f64,
    /// Sealing the state (one copy into shared memory, CRC).
    pub build_ms: f64,
    /// The session: offer, the new generation's validation of the state,
    /// the connections, their acknowledgement, the commit.
    pub session_ms: f64,
    /// From the UDP loop's halt to the commit (the new generation starts
    /// reading then).
    pub udp_pause_ms: f64,
}

impl Handover {
    /// State sealed, handed over and validated.
    pub fn state_ms(&self) -> f64 {
        self.build_ms + self.session_ms
    }
}

pub fn read(path: &Path) -> Vec<Handover> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().filter_map(parse).collect())
        .unwrap_or_default()
}

fn parse(line: &str) -> Option<Handover> {
    let rest = line.strip_prefix("handover ")?;
    let mut h = Handover::default();
    for word in rest.split(' ') {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        let int = || value.parse::<u64>().ok();
        let float = || value.parse::<f64>().ok();
        match key {
            "connections" => h.connections = int()?,
            "offered" => h.offered = int()?,
            "state_bytes" => h.state_bytes = int()?,
            "gather_ms" => h.gather_ms = float()?,
            "build_ms" => h.build_ms = float()?,
            "session_ms" => h.session_ms = float()?,
            "udp_pause_ms" => h.udp_pause_ms = float()?,
            _ => {}
        }
    }
    Some(h)
}

/// The `q` quantile of `values` (nearest rank); 0 when empty.
pub fn quantile(values: impl IntoIterator<Item = f64>, q: f64) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// One line: how many, how big, how long (median and worst).
pub fn summary(all: &[Handover]) -> String {
    if all.is_empty() {
        return "no handover recorded".into();
    }
    let most = all.iter().map(|h| h.connections).max().unwrap_or(0);
    let conns = quantile(all.iter().map(|h| h.connections as f64), 0.5);
    let bytes = all.iter().map(|h| h.state_bytes).max().unwrap_or(0);
    let f = |g: fn(&Handover) -> f64| {
        (
            quantile(all.iter().map(g), 0.5),
            quantile(all.iter().map(g), 1.0),
        )
    };
    let (s50, smax) = f(Handover::state_ms);
    let (u50, umax) = f(|h| h.udp_pause_ms);
    let (g50, gmax) = f(|h| h.gather_ms);
    format!(
        "{} handovers, {conns:.0} connections each (median, most {most}), {bytes} bytes of state: \
         state sealed, handed over and validated in {s50:.1} ms median / {smax:.1} ms worst; \
         gathering {g50:.1} / {gmax:.1} ms; UDP unread {u50:.1} / {umax:.1} ms",
        all.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_the_server_parses_and_others_are_skipped() {
        let h = parse("handover gen=3 pid=7 connections=5 offered=6 state_bytes=1048576 gather_ms=0.5 build_ms=2.0 session_ms=3.0 udp_pause_ms=6.0").unwrap();
        assert_eq!((h.connections, h.offered, h.state_bytes), (5, 6, 1 << 20));
        assert_eq!(h.state_ms(), 5.0);
        assert!(parse("taken gen=3").is_none());
        assert!(parse("handover connections=x").is_none());
        assert_eq!(quantile([3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile([3.0, 1.0, 2.0], 1.0), 3.0);
    }
}
