//! What became of each request, and the per-second tallies the report and
//! the picture are made of (a record per request would be millions).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the reference server serves: HTTP (new connections and
/// keep-alive ones), UDP flows, Unix-stream connections of one exchange
/// each, and long-lived Unix streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http,
    Udp,
    Unix,
    Stream,
}

/// How many protocols are tallied.
pub const PROTOS: usize = 4;

impl Proto {
    pub const ALL: [Proto; PROTOS] = [Proto::Http, Proto::Udp, Proto::Unix, Proto::Stream];
    /// The protocols of the open-loop load (offered at fixed rates, their
    /// capacity measured).
    pub const LOADED: [Proto; 3] = [Proto::Http, Proto::Udp, Proto::Unix];
    pub fn name(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Udp => "udp",
            Proto::Unix => "unix",
            Proto::Stream => "stream",
        }
    }
}

/// How many fates a request can have.
pub const OUTCOMES: usize = 10;

/// One request's fate. Everything but `Ok` is a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// `ECONNREFUSED` on connect (or an ICMP port-unreachable on UDP).
    Refused,
    /// `ECONNRESET` / `EPIPE` at any step.
    Reset,
    /// End of file before a whole response.
    Eof,
    /// A response, but more than a second after its scheduled time; or
    /// none within the request deadline.
    Late,
    /// A response that is not what was asked (bad status, bad echo, no
    /// generation, a UDP answer for another sequence number).
    Wrong,
    /// A UDP sequence number never answered.
    Lost,
    /// A UDP sequence number answered twice.
    Duplicate,
    /// A UDP answer whose flow count is not the flow's: served by a
    /// generation that did not hold the flow's state (or after an earlier
    /// datagram of the flow was lost on the way in).
    Stateless,
    /// Any other error on the client's side (out of ports, ...).
    Other,
}

impl Outcome {
    pub const ALL: [Outcome; OUTCOMES] = [
        Outcome::Ok,
        Outcome::Refused,
        Outcome::Reset,
        Outcome::Eof,
        Outcome::Late,
        Outcome::Wrong,
        Outcome::Lost,
        Outcome::Duplicate,
        Outcome::Stateless,
        Outcome::Other,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Reset => "reset",
            Outcome::Eof => "eof",
            Outcome::Late => "late",
            Outcome::Wrong => "wrong",
            Outcome::Lost => "lost",
            Outcome::Duplicate => "duplicate",
            Outcome::Stateless => "stateless",
            Outcome::Other => "other",
        }
    }
    fn index(self) -> usize {
        Outcome::ALL.iter().position(|&o| o == self).unwrap_or(0)
    }

    /// Classifies an I/O error of a request.
    pub fn of_error(e: &std::io::Error) -> Outcome {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => Outcome::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Outcome::Reset,
            K::UnexpectedEof => Outcome::Eof,
            K::TimedOut => Outcome::Late,
            _ => Outcome::Other,
        }
    }
}

/// A latency histogram: 8 buckets per power of two of microseconds
/// (about 9% wide), up to ~68 s.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
}

const SUB: u32 = 8;
const BUCKETS: usize = (27 * SUB) as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < SUB as u64 {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros();
        let sub = (us >> (exp - 3)) & (SUB as u64 - 1);
        (((exp - 2) * SUB) as usize + sub as usize).min(BUCKETS - 1)
    }
    /// The upper edge of a bucket, in microseconds.
    fn upper(index: usize) -> u64 {
        if index < SUB as usize {
            return index as u64;
        }
        let exp = index as u32 / SUB + 2;
        let sub = index as u64 % SUB as u64;
        ((SUB as u64 + sub + 1) << (exp - 3)) - 1
    }
    pub fn add(&mut self, latency: Duration) {
        self.counts[Self::index(latency.as_micros() as u64)] += 1;
    }
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// The `q` quantile (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i) as f64 / 1000.0;
            }
        }
        Self::upper(BUCKETS - 1) as f64 / 1000.0
    }
}

/// One second of one protocol.
#[derive(Debug, Clone, Default)]
pub struct Second {
    pub outcomes: [u64; OUTCOMES],
    /// Latencies of the successful requests.
    pub latency: Histogram,
}

impl Second {
    pub fn failures(&self) -> u64 {
        self.outcomes.iter().sum::<u64>() - self.outcomes[0]
    }
}

/// Tallies per protocol and per second since `start`, by the time each
/// request was scheduled (so a stall shows where it began).
#[derive(Debug, Clone)]
pub struct Recorder {
    pub start: Instant,
    seconds: Arc<Mutex<Vec<[Second; PROTOS]>>>,
    /// Per second, the most any request started after its scheduled time
    /// (microseconds): the load generator's own stalls, told apart from the
    /// server's.
    lag: Arc<Mutex<Vec<u64>>>,
}

/// A request slower than this is late even if it succeeds.
pub const LATE: Duration = Duration::from_secs(1);

impl Recorder {
    pub fn new(start: Instant) -> Self {
        Recorder {
            start,
            seconds: Arc::default(),
            lag: Arc::default(),
        }
    }

    pub fn record(&self, proto: Proto, scheduled: Instant, outcome: Outcome) {
        let latency = scheduled.elapsed();
        let outcome = if outcome == Outcome::Ok && latency > LATE {
            Outcome::Late
        } else {
            outcome
        };
        let second = scheduled.saturating_duration_since(self.start).as_secs() as usize;
        let p = Proto::ALL.iter().position(|&x| x == proto).unwrap_or(0);
        let mut seconds = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        if seconds.len() <= second {
            seconds.resize_with(second + 1, Default::default);
        }
        let s = &mut seconds[second][p];
        s.outcomes[outcome.index()] += 1;
        if outcome == Outcome::Ok {
            s.latency.add(latency);
        }
    }

    /// Notes that the request scheduled at `scheduled` started only now.
    pub fn started(&self, scheduled: Instant) {
        let lag = scheduled.elapsed().as_micros() as u64;
        let second = scheduled.saturating_duration_since(self.start).as_secs() as usize;
        let mut all = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() <= second {
            all.resize(second + 1, 0);
        }
        all[second] = all[second].max(lag);
    }

    /// The generator's worst start lag per second, in milliseconds.
    pub fn lag_ms(&self) -> Vec<f64> {
        let all = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().map(|&us| us as f64 / 1000.0).collect()
    }

    /// A copy of the tallies so far: `[second][protocol]`.
    pub fn snapshot(&self) -> Vec<[Second; PROTOS]> {
        self.seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The tallies of a span of seconds, per protocol.
#[derive(Debug, Clone, Default)]
pub struct Span {
    pub per_proto: [Second; PROTOS],
}

impl Span {
    pub fn of(seconds: &[[Second; PROTOS]], from: usize, to: usize) -> Span {
        let mut span = Span::default();
        for second in seconds.iter().take(to).skip(from) {
            for (sum, s) in span.per_proto.iter_mut().zip(second) {
                for (a, b) in sum.outcomes.iter_mut().zip(&s.outcomes) {
                    *a += b;
                }
                sum.latency.merge(&s.latency);
            }
        }
        span
    }
    pub fn requests(&self, p: usize) -> u64 {
        self.per_proto[p].outcomes.iter().sum()
    }
    pub fn count(&self, p: usize, o: Outcome) -> u64 {
        self.per_proto[p].outcomes[o.index()]
    }
    pub fn failures(&self) -> u64 {
        self.per_proto.iter().map(Second::failures).sum()
    }
    pub fn all_latency(&self) -> Histogram {
        let mut h = Histogram::default();
        for s in &self.per_proto {
            h.merge(&s.latency);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_bound_their_values() {
        for us in [
            0u64, 1, 7, 8, 9, 15, 16, 100, 1000, 12345, 999_999, 5_000_000,
        ] {
            let i = Histogram::index(us);
            assert!(Histogram::upper(i) >= us, "{us} in bucket {i}");
            if i > 0 {
                assert!(Histogram::upper(i - 1) < us, "{us} in bucket {i}");
            }
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.add(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5);
        let p99 = h.quantile_ms(0.99);
        assert!((46.0..=55.0).contains(&p50), "{p50}");
        assert!((95.0..=108.0).contains(&p99), "{p99}");
    }
}
