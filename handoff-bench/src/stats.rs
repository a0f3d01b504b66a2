//! From timings to figures: rates, latency percentiles, and the best of
//! several repetitions.

use std::time::Duration;

/// Which way a unit improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput: more per second.
    Higher,
    /// Latency.
    Lower,
}

impl Better {
    /// True when `a` beats `b`.
    pub fn beats(self, a: f64, b: f64) -> bool {
        match self {
            Better::Higher => a > b,
            Better::Lower => a < b,
        }
    }

    /// How `contender` compares with `baseline`, as a speed: above 1 is
    /// faster than the baseline, whichever way the unit goes.
    pub fn speed(self, contender: f64, baseline: f64) -> f64 {
        match self {
            Better::Higher => contender / baseline,
            Better::Lower => baseline / contender,
        }
    }
}

/// One contender's result in one repetition, or the best of several.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// The rate, or the median latency in microseconds.
    pub value: f64,
    /// The 99th-percentile latency in microseconds, for latency figures.
    pub p99: Option<f64>,
}

/// A rate figure: `amount` units in `elapsed`.
pub fn rate(amount: f64, elapsed: Duration) -> Figure {
    Figure {
        value: amount / elapsed.as_secs_f64(),
        p99: None,
    }
}

/// A latency figure from round-trip times (sorted in place): the median and
/// the 99th percentile, in microseconds.
pub fn latency(samples: &mut [Duration]) -> Figure {
    samples.sort_unstable();
    let at = |q: usize| {
        let i = (samples.len() * q / 100).min(samples.len().saturating_sub(1));
        samples.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    };
    Figure {
        value: at(50),
        p99: Some(at(99)),
    }
}

/// The best of several repetitions: the highest rate, or the lowest median
/// and the lowest 99th percentile (each taken on its own, so one unlucky
/// repetition spoils neither). Noise on a shared machine only ever makes a
/// repetition slower, so the best one is the closest to the true cost.
pub fn best(reps: &[Figure], better: Better) -> Option<Figure> {
    let mut best = *reps.first()?;
    for r in &reps[1..] {
        if better.beats(r.value, best.value) {
            best.value = r.value;
        }
        best.p99 = match (best.p99, r.p99) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_hundred() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let f = latency(&mut samples);
        assert_eq!(f.value, 51.0);
        assert_eq!(f.p99, Some(100.0));
    }

    #[test]
    fn best_takes_each_figure_on_its_own() {
        let reps = [
            Figure {
                value: 5.0,
                p99: Some(9.0),
            },
            Figure {
                value: 4.0,
                p99: Some(12.0),
            },
        ];
        assert_eq!(
            best(&reps, Better::Lower),
            Some(Figure {
                value: 4.0,
                p99: Some(9.0)
            })
        );
        assert_eq!(best(&reps, Better::Higher).map(|f| f.value), Some(5.0));
        assert_eq!(best(&[], Better::Higher), None);
    }

    #[test]
    fn speed_is_above_one_when_faster() {
        assert_eq!(Better::Higher.speed(2.0, 1.0), 2.0);
        assert_eq!(Better::Lower.speed(1.0, 2.0), 2.0);
    }
}
