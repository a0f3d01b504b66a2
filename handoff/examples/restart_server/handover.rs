//! Live handover of state and connections to the next generation
//! (`handoff::restart::handover`). The doorbell's far end reaches the next
//! generation under `handoff.handover`: from the supervisor's store under
//! `handoff serve`, or passed directly by a generation that starts its own
//! successor (`upgrade.rs`).
//!
//! The new generation rings before it says `READY=1`. The old one then
//! halts its accept loops, gathers its idle keep-alive connections and
//! long-lived streams (each gives itself up between two requests or
//! lines), halts its UDP loop, seals the flows and its cache as state and
//! offers both. The new one validates the state (or refuses it, and
//! exits: the restart fails and the old generation resumes as it was),
//! takes the connections, serves them, starts reading UDP with the flows,
//! and only then says `READY=1`. The old generation keeps its parked
//! copies until it is told to stop; if the new one dies first, they come
//! back and the old one resumes everything.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff::restart::handover::{
    Connection, Doorbell, Incoming, Outgoing, TakeLimits, Takeover, DOORBELL,
};
use handoff::restart::Service;
use handoff::Handle;
use tokio::sync::{mpsc, watch, Mutex};

use crate::front::Front;
use crate::mode::Mode;
use crate::server::{stopped, Shared};
use crate::snapshot::{self, Cache, Flows};

/// How long the old generation waits for its connections to reach a
/// point between two requests.
const GATHER: Duration = Duration::from_millis(200);
/// How long each side waits for the other's answer.
const ANSWER: Duration = Duration::from_secs(5);
/// How a handed-over connection says what it is.
const HTTP: &[u8] = b"http";
const STREAM: &[u8] = b"stream";

/// What each connection task holds to take part in a handover.
#[derive(Clone)]
pub struct Pool {
    /// Raised while a handover gathers connections.
    pub requested: watch::Receiver<bool>,
    /// Where a connection between two requests gives itself up.
    yielded: mpsc::UnboundedSender<Connection>,
    live: Arc<AtomicUsize>,
    next_id: Arc<AtomicU64>,
}

/// Counts a connection task while it lives.
pub struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    pub fn live(&self) -> Live {
        self.live.fetch_add(1, Ordering::Relaxed);
        Live(self.live.clone())
    }

    /// Gives an HTTP connection idle between requests (`pending` bytes
    /// already read) to the handover.
    pub fn give_tcp(&self, stream: tokio::net::TcpStream, pending: Vec<u8>) {
        if let Ok(s) = stream.into_std() {
            self.give(OwnedFd::from(s), pending, HTTP);
        }
    }

    /// Gives a long-lived stream between two lines to the handover.
    pub fn give_stream(&self, stream: tokio::net::UnixStream, pending: Vec<u8>) {
        if let Ok(s) = stream.into_std() {
            self.give(OwnedFd::from(s), pending, STREAM);
        }
    }

    fn give(&self, fd: OwnedFd, pending: Vec<u8>, what: &[u8]) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.yielded.send(Connection {
            id,
            handle: Handle::from(fd),
            pending,
            position: what.to_vec(),
        });
    }
}

/// The gatherer's side of the pool.
pub struct Gatherer {
    request: watch::Sender<bool>,
    yielded: mpsc::UnboundedReceiver<Connection>,
}

pub fn pool() -> (Pool, Gatherer) {
    let (request, requested) = watch::channel(false);
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Pool {
            requested,
            yielded: tx,
            live: Arc::new(AtomicUsize::new(0)),
            next_id: Arc::new(AtomicU64::new(0)),
        },
        Gatherer {
            request,
            yielded: rx,
        },
    )
}

/// Serves `conns` here (taken over, handed back or kept).
pub fn serve(conns: Vec<Connection>, shared: &Shared) {
    for c in conns {
        let fd = OwnedFd::from(c.handle);
        if c.position == STREAM {
            let std = std::os::unix::net::UnixStream::from(fd);
            if let Ok(s) = tokio::net::UnixStream::from_std(std) {
                tokio::spawn(crate::echo::stream_echo(s, shared.clone(), c.pending));
            }
        } else {
            let std = std::net::TcpStream::from(fd);
            if let Ok(s) = tokio::net::TcpStream::from_std(std) {
                tokio::spawn(crate::http::connection_with(s, shared.clone(), c.pending));
            }
        }
    }
}

/// What the new generation took from its predecessor.
pub struct Took {
    pub flows: Flows,
    pub cache: Cache,
    pub connections: Vec<Connection>,
    /// Kept open while this generation lives: its end closing is what
    /// tells the predecessor to take the connections back.
    pub session: Takeover,
}

/// The new generation, before `READY=1`: rings the predecessor's doorbell
/// and takes its state and connections. `Ok(None)`: nobody answered (no
/// predecessor alive), start afresh. `Err`: the predecessor answered and
/// the handover failed; this generation must not say it is ready (the
/// predecessor serves on). The bad versions of `mode.rs` end here.
pub async fn take_over(bell: Handle, mode: Mode, label: &str) -> Result<Option<Took>, String> {
    let limits = TakeLimits {
        timeout: ANSWER,
        ..TakeLimits::default()
    };
    let mut incoming = match Incoming::connect(bell, limits).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("restart_server[{label}]: no predecessor answers ({e}): starting afresh");
            return Ok(None);
        }
    };
    let offered = incoming.offered();
    let version = if mode == Mode::RefuseState {
        snapshot::VERSION + 1
    } else {
        snapshot::VERSION
    };
    let started = Instant::now();
    let opened = match incoming.take_state() {
        Some(h) => snapshot::open(h, version),
        None => Err("the predecessor offered no state".into()),
    };
    let (flows, cache) = match opened {
        Ok(s) => s,
        Err(reason) => {
            let _ = incoming.refuse(&reason).await;
            eprintln!("restart_server[{label}]: {mode}: refused the state: {reason}; exiting with status 5");
            std::process::exit(5);
        }
    };
    let validated = started.elapsed();
    match mode {
        Mode::CrashTaking if offered == 0 => {
            eprintln!(
                "restart_server[{label}]: {mode}: no connections offered; exiting with status 6"
            );
            std::process::exit(6);
        }
        Mode::CrashTaking => die_when_descriptors_arrive(),
        Mode::FewDescriptors => room_for_half(offered),
        _ => {}
    }
    let mut t = incoming
        .accept()
        .await
        .map_err(|e| format!("handover failed: {e}"))?;
    let connections = std::mem::take(&mut t.connections);
    match mode {
        Mode::CrashTaken => {
            eprintln!(
                "restart_server[{label}]: {mode}: took {} connections; exiting with status 7",
                connections.len()
            );
            std::process::exit(7);
        }
        Mode::FewDescriptors => {
            eprintln!(
                "restart_server[{label}]: {mode}: room for {} of {offered} connections; exiting with status 8",
                connections.len()
            );
            std::process::exit(8);
        }
        _ => {}
    }
    eprintln!(
        "restart_server[{label}]: took {} of {offered} connections and {} bytes of state (validated in {:.1} ms)",
        connections.len(),
        cache.bytes().len(),
        validated.as_secs_f64() * 1e3
    );
    Ok(Some(Took {
        flows,
        cache,
        connections,
        session: t,
    }))
}

/// `crash-taking`: a thread that kills this process once the descriptor
/// count rises, i.e. when the connections have arrived and before they
/// are acknowledged.
fn die_when_descriptors_arrive() {
    let open = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let before = open();
    std::thread::spawn(move || loop {
        if open() > before {
            eprintln!("restart_server: crash-taking: the connections arrived; SIGKILL");
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
        std::thread::sleep(Duration::from_micros(200));
    });
}

/// `few-descriptors`: a soft descriptor limit with room for about half of
/// `offered` beyond the library's reserve.
fn room_for_half(offered: u64) {
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as u64;
    let limit = open + TakeLimits::default().reserve + offered.div_ceil(2);
    let old = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: old.maximum,
        },
    );
}

/// The old generation's side, shared by every way the next one arrives.
pub struct Answerer {
    /// Under a supervisor: where a dead doorbell is replaced.
    pub service: Option<Arc<Service>>,
    pub front: Arc<Mutex<Front>>,
    pub shared: Shared,
    pub gatherer: Gatherer,
    pub cache: Arc<Cache>,
}

/// A new doorbell whose far end replaces whatever the store holds under
/// the name.
pub fn store_doorbell(service: &Service) -> Option<Doorbell> {
    let (bell, peer) = Doorbell::new().ok()?;
    service.remove(DOORBELL).ok()?;
    service.store(DOORBELL, &peer).ok()?;
    Some(bell)
}

impl Answerer {
    /// Answers rings until this generation is told to stop (`None`) or,
    /// without a supervisor's store, the doorbell's far end is gone (the
    /// answerer comes back for another doorbell). After a handover it
    /// answers no more (the doorbell in the store is the new generation's)
    /// unless the connections come back.
    pub async fn run(mut self, mut bell: Doorbell) -> Option<Answerer> {
        let mut stop = self.shared.stop.clone();
        loop {
            let session = tokio::select! {
                biased;
                _ = stopped(&mut stop) => return None,
                r = bell.ring() => match r {
                    Ok(s) => s,
                    // Nobody holds the far end any more (the store dropped
                    // it, or a new generation replaced it and then died):
                    // a dead doorbell answers every ring at once, so go on
                    // with a new one rather than spin on this one.
                    Err(handoff::Error::Disconnected { .. }) => {
                        let Some(service) = self.service.as_deref() else {
                            return Some(self);
                        };
                        match store_doorbell(service) {
                            Some(b) => {
                                bell = b;
                                continue;
                            }
                            None => return None,
                        }
                    }
                    // A malformed ring: the next one is answered.
                    Err(_) => continue,
                },
                // A connection that gave itself up too late for a handover.
                Some(c) = self.gatherer.yielded.recv() => {
                    serve(vec![c], &self.shared);
                    continue;
                }
            };
            let Some(parked) = self.hand_over(session).await else {
                continue;
            };
            let hold = parked.hold();
            tokio::pin!(hold);
            let back = loop {
                tokio::select! {
                    // Told to stop: the new generation was judged; the
                    // parked copies close here.
                    _ = stopped(&mut stop) => return None,
                    // One that gave itself up after the gathering: it
                    // stays here.
                    Some(c) = self.gatherer.yielded.recv() => serve(vec![c], &self.shared),
                    back = &mut hold => break back,
                }
            };
            eprintln!(
                "restart_server[{}]: the next generation ended; {} connections back, serving again",
                self.shared.label,
                back.len()
            );
            serve(back, &self.shared);
            if let Err(e) = self.front.lock().await.resume(&self.shared) {
                eprintln!("restart_server[{}]: resume: {e}", self.shared.label);
            }
        }
    }

    /// One handover; the parked connections if it happened.
    async fn hand_over(&mut self, session: Outgoing) -> Option<handoff::restart::handover::Parked> {
        let label = self.shared.label.clone();
        let started = Instant::now();
        let front = self.front.clone();
        let mut front = front.lock().await;
        // New connections go to the next generation from now on.
        front.halt_accept().await;
        let conns = self.gather().await;
        let gathered = started.elapsed();
        let udp_halted = Instant::now();
        let flows = front.halt_udp().await;
        let built = Instant::now();
        let state = match snapshot::create(&flows, &self.cache) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("restart_server[{label}]: state not sealed: {e}; serving on");
                serve(conns, &self.shared);
                let _ = front.resume(&self.shared);
                return None;
            }
        };
        let build = built.elapsed();
        let offered = conns.len();
        let session_started = Instant::now();
        let outcome = session.hand_over(Some(state), conns, ANSWER).await;
        let session_time = session_started.elapsed();
        self.gatherer.request.send_replace(false);
        match outcome {
            Err(f) => {
                eprintln!(
                    "restart_server[{label}]: handover failed: {}; serving on",
                    f.error
                );
                serve(f.connections, &self.shared);
                if let Err(e) = front.resume(&self.shared) {
                    eprintln!("restart_server[{label}]: resume: {e}");
                }
                None
            }
            Ok(h) => {
                let udp_pause = udp_halted.elapsed();
                eprintln!(
                    "restart_server[{label}]: handed over {} of {offered} connections",
                    h.parked.len()
                );
                stats(&format!(
                    "handover {label} connections={} offered={offered} state_bytes={} gather_ms={:.3} build_ms={:.3} session_ms={:.3} udp_pause_ms={:.3}",
                    h.parked.len(),
                    self.cache.bytes().len(),
                    gathered.as_secs_f64() * 1e3,
                    build.as_secs_f64() * 1e3,
                    session_time.as_secs_f64() * 1e3,
                    udp_pause.as_secs_f64() * 1e3,
                ));
                // Those it had no room for stay here until this
                // generation stops.
                serve(h.kept, &self.shared);
                Some(h.parked)
            }
        }
    }

    /// Every connection task gives itself up between two requests or
    /// ends (a task counts itself live until then, and gives before it
    /// ends), so one in the middle of a request is waited for too, up to
    /// `GATHER`.
    async fn gather(&mut self) -> Vec<Connection> {
        self.gatherer.request.send_replace(true);
        let live = self.shared.pool.live.clone();
        let mut conns = Vec::new();
        let deadline = tokio::time::sleep(GATHER);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        while live.load(Ordering::Relaxed) > 0 {
            tokio::select! {
                Some(c) = self.gatherer.yielded.recv() => conns.push(c),
                _ = tick.tick() => {}
                _ = &mut deadline => break,
            }
        }
        while let Ok(c) = self.gatherer.yielded.try_recv() {
            conns.push(c);
        }
        conns
    }
}

/// One line to the file named by `RESTART_SERVER_STATS`, for the campaign.
fn stats(line: &str) {
    let Some(path) = std::env::var_os("RESTART_SERVER_STATS") else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}
