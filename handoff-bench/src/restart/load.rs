//! The open-loop load: each protocol's requests are scheduled on a fixed
//! clock and started whether or not earlier ones have finished, so a stall
//! shows as failures and latency instead of slowing the load down. Also the
//! short closed-loop run that measures what the server can take.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::outcome::{Outcome, Proto, Recorder};
use super::schedule::Schedule;
use super::udp_client::{self, Flow};
use super::{http_client, unix_client};

/// No request waits longer than this for its answer (it is late anyway).
const DEADLINE: Duration = Duration::from_secs(5);
/// Client sources: 127.0.0.2 to 127.0.0.9.
const SOURCES: u8 = 8;

fn source(i: u64) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % u64::from(SOURCES)) as u8)
}

/// Where the server listens.
#[derive(Debug, Clone)]
pub struct Target {
    pub http: SocketAddr,
    pub udp: SocketAddr,
    pub unix: PathBuf,
}

impl Target {
    /// A server on the loopback address at ports `http` (TCP) and `udp`,
    /// with its Unix socket at `unix`.
    pub fn local(http: u16, udp: u16, unix: PathBuf) -> Target {
        Target {
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, http)),
            udp: SocketAddr::from((Ipv4Addr::LOCALHOST, udp)),
            unix,
        }
    }
}

/// Requests per second per protocol, and the number of UDP flows.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub http: f64,
    pub udp: f64,
    pub unix: f64,
    pub flows: usize,
}

/// A running load; `stop` ends it and waits for every answer.
#[derive(Debug)]
pub struct Load {
    stop: watch::Sender<bool>,
    receivers_stop: watch::Sender<bool>,
    tickers: Vec<JoinHandle<()>>,
    receivers: Vec<JoinHandle<()>>,
    in_flight: Arc<AtomicU64>,
}

/// Decrements the in-flight count when a request task ends, however.
struct Flight(Arc<AtomicU64>);

impl Flight {
    fn new(count: &Arc<AtomicU64>) -> Flight {
        count.fetch_add(1, Ordering::SeqCst);
        Flight(count.clone())
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Calls `fire(k, when)` at `when = start + k / rate` for k = 0, 1, ...
/// until `stop`; if the runtime wakes late, the missed ticks fire at once
/// with their own scheduled times.
async fn ticker(rate: f64, stop: watch::Receiver<bool>, mut fire: impl FnMut(u64, Instant)) {
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut schedule = Schedule::new(Instant::now(), period, stop);
    while let Some((k, when)) = schedule.tick().await {
        fire(k, when);
    }
}

/// A request's outcome: its own, or `Late` once past the deadline.
async fn in_time(request: impl std::future::Future<Output = Result<(), Outcome>>) -> Outcome {
    match tokio::time::timeout(DEADLINE, request).await {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(o)) => o,
        Err(_) => Outcome::Late,
    }
}

impl Load {
    pub fn start(
        rt: &Runtime,
        target: &Target,
        rates: Rates,
        recorder: &Recorder,
    ) -> std::io::Result<Load> {
        let (stop, stop_rx) = watch::channel(false);
        let (receivers_stop, receivers_rx) = watch::channel(false);
        let in_flight = Arc::new(AtomicU64::new(0));
        let mut tickers = Vec::new();
        let mut receivers = Vec::new();

        let flows: Vec<Arc<Flow>> = rt.block_on(async {
            let mut flows = Vec::with_capacity(rates.flows);
            for i in 0..rates.flows {
                flows.push(Flow::open(target.udp, source(i as u64)).await?);
            }
            Ok::<_, std::io::Error>(flows)
        })?;
        for flow in &flows {
            receivers.push(rt.spawn(flow.clone().receive(recorder.clone(), receivers_rx.clone())));
        }

        let (server, rec, count) = (target.http, recorder.clone(), in_flight.clone());
        tickers.push(
            rt.spawn(ticker(rates.http, stop_rx.clone(), move |k, when| {
                let (rec, flight) = (rec.clone(), Flight::new(&count));
                tokio::spawn(async move {
                    let outcome = in_time(http_client::request(server, source(k), k)).await;
                    rec.record(Proto::Http, when, outcome);
                    drop(flight);
                });
            })),
        );

        let (path, rec, count) = (
            Arc::new(target.unix.clone()),
            recorder.clone(),
            in_flight.clone(),
        );
        tickers.push(
            rt.spawn(ticker(rates.unix, stop_rx.clone(), move |k, when| {
                let (rec, flight, path) = (rec.clone(), Flight::new(&count), path.clone());
                tokio::spawn(async move {
                    let outcome = in_time(unix_client::request(&path, k)).await;
                    rec.record(Proto::Unix, when, outcome);
                    drop(flight);
                });
            })),
        );

        let (rec, count) = (recorder.clone(), in_flight.clone());
        tickers.push(rt.spawn(ticker(rates.udp, stop_rx, move |k, when| {
            let flow = flows[(k % flows.len() as u64) as usize].clone();
            let (rec, flight) = (rec.clone(), Flight::new(&count));
            tokio::spawn(async move {
                rec.started(when);
                flow.send(when, &rec).await;
                drop(flight);
            });
        })));

        Ok(Load {
            stop,
            receivers_stop,
            tickers,
            receivers,
            in_flight,
        })
    }

    /// Stops scheduling, waits for the requests in flight (each has a
    /// deadline) and for late UDP answers, then counts the unanswered.
    pub fn stop(self, rt: &Runtime) {
        self.stop.send_replace(true);
        rt.block_on(async {
            for t in self.tickers {
                let _ = t.await;
            }
            let until = Instant::now() + DEADLINE + Duration::from_secs(1);
            while self.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // UDP answers still on their way.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            self.receivers_stop.send_replace(true);
            for r in self.receivers {
                let _ = r.await;
            }
        });
    }
}

/// Closed-loop capacity: `workers` loops per protocol, each sending its
/// next request as soon as the last is answered, for `time` per protocol
/// (one protocol at a time). Successful requests per second.
pub fn capacity(rt: &Runtime, target: &Target, time: Duration) -> [f64; 3] {
    let mut rates = [0.0; 3];
    for (i, proto) in Proto::LOADED.into_iter().enumerate() {
        let done = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + time;
        rt.block_on(async {
            let mut workers = Vec::new();
            for w in 0..32u64 {
                let (done, target) = (done.clone(), target.clone());
                workers.push(tokio::spawn(async move {
                    let socket = match proto {
                        Proto::Udp => {
                            let s = tokio::net::UdpSocket::bind(SocketAddr::from((source(w), 0)))
                                .await
                                .ok();
                            if let Some(s) = &s {
                                let _ = s.connect(target.udp).await;
                            }
                            s
                        }
                        _ => None,
                    };
                    let mut n = 0u64;
                    while Instant::now() < until {
                        let one = async {
                            match (proto, &socket) {
                                (Proto::Http, _) => {
                                    http_client::request(target.http, source(w + n), n).await
                                }
                                (Proto::Unix, _) => unix_client::request(&target.unix, n).await,
                                (Proto::Udp, Some(s)) => udp_client::ping(s, n).await,
                                (Proto::Udp, None) | (Proto::Stream, _) => Err(Outcome::Other),
                            }
                        };
                        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), one).await
                        {
                            done.fetch_add(1, Ordering::Relaxed);
                        } else if proto == Proto::Udp {
                            // A lost datagram would leave its answer to
                            // arrive as the next one's: start afresh.
                            return;
                        }
                        n += 1;
                    }
                }));
            }
            for w in workers {
                let _ = w.await;
            }
        });
        rates[i] = done.load(Ordering::Relaxed) as f64 / time.as_secs_f64();
    }
    rates
}
