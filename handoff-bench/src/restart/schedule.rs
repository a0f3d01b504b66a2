//! The fixed clock the load keeps, and the long-lived clients that keep it
//! together: a tick is due at `first + k * period` whether or not the work
//! of earlier ticks took longer, so a stall shows as failures and latency
//! instead of slowing the load down.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Ticks at `first + k * period` for k = 0, 1, ... until stopped.
#[derive(Debug)]
pub struct Schedule {
    first: Instant,
    period: Duration,
    next: u64,
    stop: watch::Receiver<bool>,
}

impl Schedule {
    pub fn new(first: Instant, period: Duration, stop: watch::Receiver<bool>) -> Schedule {
        Schedule {
            first,
            period,
            next: 0,
            stop,
        }
    }

    /// Waits for the next tick and returns its number and scheduled time;
    /// `None` once stopped. A tick already due (the runtime woke late)
    /// comes at once, with its own scheduled time.
    pub async fn tick(&mut self) -> Option<(u64, Instant)> {
        let k = self.next;
        let when = self.first + self.period.mul_f64(k as f64);
        if when > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(when.into()) => {}
                _ = self.stop.wait_for(|s| *s) => return None,
            }
        }
        if *self.stop.borrow() {
            return None;
        }
        self.next += 1;
        Some((k, when))
    }
}

/// How many long-lived clients ran and how many connections they opened
/// in all: each opens one to begin with, so any more is a reconnect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Connections {
    pub clients: u64,
    pub connects: u64,
}

impl Connections {
    /// Connects beyond each client's first.
    pub fn reconnects(&self) -> u64 {
        self.connects.saturating_sub(self.clients)
    }
}

/// The connects of long-lived clients as they happen, shared by them all.
#[derive(Debug, Default)]
pub struct ConnectCounter(AtomicU64);

impl ConnectCounter {
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The connections `clients` clients made.
    pub fn of(&self, clients: u64) -> Connections {
        Connections {
            clients,
            connects: self.0.load(Ordering::Relaxed),
        }
    }
}

/// Long-lived clients on a runtime, counting into one `S`; `stop` ends
/// them all and returns what they counted.
#[derive(Debug)]
pub struct Clients<S> {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<S>,
    count: u64,
}

impl<S: Default + Send + Sync + 'static> Clients<S> {
    /// `count` clients made by `client(i, schedule, shared)`, each with
    /// one tick a `period`, their first ticks spread over the first period
    /// so the load is even.
    pub fn start<F>(
        rt: &Runtime,
        count: usize,
        period: Duration,
        mut client: impl FnMut(u64, Schedule, Arc<S>) -> F,
    ) -> Clients<S>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(S::default());
        let start = Instant::now();
        let tasks = (0..count)
            .map(|i| {
                let first = start + period.mul_f64(i as f64 / count as f64);
                let schedule = Schedule::new(first, period, stop_rx.clone());
                rt.spawn(client(i as u64, schedule, shared.clone()))
            })
            .collect();
        Clients {
            stop,
            tasks,
            shared,
            count: count as u64,
        }
    }

    /// Stops every client and waits for each to end; how many there were
    /// and what they counted.
    pub fn stop(self, rt: &Runtime) -> (u64, Arc<S>) {
        self.stop.send_replace(true);
        rt.block_on(async {
            for t in self.tasks {
                let _ = t.await;
            }
        });
        (self.count, self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_due_come_in_order_with_their_own_times_until_stopped() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let first = Instant::now();
        // A zero period: every tick is already due, none waits.
        let mut schedule = Schedule::new(first, Duration::ZERO, stop_rx);
        rt.block_on(async {
            for k in 0..3 {
                assert_eq!(schedule.tick().await, Some((k, first)));
            }
            stop.send_replace(true);
            assert_eq!(schedule.tick().await, None);
        });
    }
}
