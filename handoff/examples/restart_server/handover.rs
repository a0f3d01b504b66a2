//! Live handover of idle keep-alive HTTP connections to the next
//! generation (`handoff::restart::handover`). The doorbell's far end is in
//! the supervisor's store under `handoff.handover`. A new generation rings
//! it once it has said `READY=1`; its predecessor answers only when it is
//! told to stop, that is once the supervisor has judged the new generation
//! (ready, stayed up, holds its listeners), so connections never go to a
//! version that is about to be killed. Then the new generation stores a
//! doorbell of its own in place of its predecessor's.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use handoff::restart::handover::{
    Connection, Doorbell, Incoming, Outgoing, TakeLimits, Takeover, DOORBELL,
};
use handoff::restart::Service;
use handoff::Handle;
use tokio::sync::{mpsc, watch};

use crate::server::Shared;

/// How long the old generation waits for its connections to reach a
/// point between two requests.
const GATHER: Duration = Duration::from_millis(200);
/// How long each side waits for the other's answer.
const ANSWER: Duration = Duration::from_secs(5);
/// How long a new generation waits for its predecessor to be told to stop
/// (the supervisor's judgement after `READY=1`, then the stop signal).
const OFFER: Duration = Duration::from_secs(60);

/// What each HTTP connection task holds to take part in a handover.
#[derive(Clone)]
pub struct Pool {
    /// Raised while a handover gathers connections.
    pub requested: watch::Receiver<bool>,
    /// Where a connection between two requests gives itself up.
    pub yielded: mpsc::UnboundedSender<Connection>,
    /// Set while a next generation has rung and waits: a request answered
    /// during the stop then keeps its connection open, to be handed over.
    pending: Arc<AtomicBool>,
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
    /// Whether a next generation waits for this one's connections.
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn live(&self) -> Live {
        self.live.fetch_add(1, Ordering::Relaxed);
        Live(self.live.clone())
    }

    /// Gives `stream` (idle between requests, `pending` bytes already
    /// read) to the handover.
    pub fn give(&self, stream: tokio::net::TcpStream, pending: Vec<u8>) {
        let Ok(std) = stream.into_std() else { return };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.yielded.send(Connection {
            id,
            handle: Handle::from(OwnedFd::from(std)),
            pending,
            position: Vec::new(),
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
            pending: Arc::new(AtomicBool::new(false)),
            live: Arc::new(AtomicUsize::new(0)),
            next_id: Arc::new(AtomicU64::new(0)),
        },
        Gatherer {
            request,
            yielded: rx,
        },
    )
}

/// Serves `conns` here again (handed back, or taken over).
pub fn serve(conns: Vec<Connection>, shared: &Shared) {
    for c in conns {
        let std = std::net::TcpStream::from(OwnedFd::from(c.handle));
        if let Ok(stream) = tokio::net::TcpStream::from_std(std) {
            tokio::spawn(crate::http::connection_with(
                stream,
                shared.clone(),
                c.pending,
            ));
        }
    }
}

/// The new generation, once it has said `READY=1`: rings the
/// predecessor's doorbell (`bell`, from the store) and serves what it is
/// handed when the predecessor stops; then stores a doorbell of its own,
/// and only then says `Serving` (the predecessor exits after it, so the
/// next restart finds this generation's doorbell in the store).
pub fn start(service: Arc<Service>, bell: Option<Handle>, shared: Shared, gatherer: Gatherer) {
    tokio::spawn(async move {
        let mut stop = shared.stop.clone();
        let taken = match bell {
            None => None,
            Some(bell) => tokio::select! {
                t = take_over(bell, &shared) => t,
                // Told to stop before its predecessor was (a version the
                // supervisor refused): nothing to take, and the
                // predecessor's doorbell must stay in the store.
                _ = crate::server::stopped(&mut stop) => return,
            },
        };
        if *stop.borrow() {
            return;
        }
        announce(service, shared, gatherer);
        if let Some(t) = taken {
            if let Err(e) = t.serving().await {
                eprintln!("restart_server: Serving not sent: {e}");
            }
        }
    });
}

async fn take_over(bell: Handle, shared: &Shared) -> Option<Takeover> {
    let limits = TakeLimits {
        timeout: OFFER,
        ..TakeLimits::default()
    };
    let incoming = match Incoming::connect(bell, limits).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("restart_server[{}]: no handover: {e}", shared.label);
            return None;
        }
    };
    match incoming.accept().await {
        Ok(mut t) => {
            eprintln!(
                "restart_server[{}]: took {} connections",
                shared.label,
                t.connections.len()
            );
            serve(std::mem::take(&mut t.connections), shared);
            Some(t)
        }
        Err(e) => {
            eprintln!("restart_server[{}]: handover failed: {e}", shared.label);
            None
        }
    }
}

/// Stores a doorbell of this generation's own in place of its
/// predecessor's and answers the next generation's ring at stop.
fn announce(service: Arc<Service>, shared: Shared, gatherer: Gatherer) {
    if !service.is_supervised() {
        return;
    }
    if let Some(bell) = store_doorbell(&service) {
        tokio::spawn(answer(service, bell, shared, gatherer));
    }
}

/// A new doorbell whose far end replaces whatever the store holds under
/// the name.
fn store_doorbell(service: &Service) -> Option<Doorbell> {
    let (bell, peer) = Doorbell::new().ok()?;
    service.remove(DOORBELL).ok()?;
    service.store(DOORBELL, &peer).ok()?;
    Some(bell)
}

/// Keeps the latest ring until this generation is told to stop, then
/// hands its idle connections over on it.
async fn answer(service: Arc<Service>, mut bell: Doorbell, mut shared: Shared, mut g: Gatherer) {
    let pool = shared.pool.clone();
    let mut waiting: Option<Outgoing> = None;
    loop {
        tokio::select! {
            biased;
            _ = crate::server::stopped(&mut shared.stop) => break,
            // A later ring replaces an earlier one: the generation that
            // rang first was refused and killed, or it would not ring again.
            r = bell.ring() => match r {
                Ok(s) => {
                    waiting = Some(s);
                    pool.pending.store(true, Ordering::Relaxed);
                }
                // Nobody holds the far end any more: a refused version
                // took it out of the store, or the store dropped it. A
                // dead doorbell answers every ring at once, so go on with
                // a new one rather than spin on this one.
                Err(handoff::Error::Disconnected { .. }) => match store_doorbell(&service) {
                    Some(b) => bell = b,
                    None => return,
                },
                // A malformed ring: the next one is answered.
                Err(_) => {}
            },
            // A connection that gave itself up too late for a handover.
            Some(c) = g.yielded.recv() => serve(vec![c], &shared),
        }
    }
    let Some(session) = waiting else { return };
    g.request.send_replace(true);
    let mut conns = Vec::new();
    let deadline = tokio::time::sleep(GATHER);
    tokio::pin!(deadline);
    // Until every connection task has given itself up or ended (a task
    // counts itself live until then, and gives before it ends), so one in
    // the middle of a request is waited for too. Counting the tasks once at
    // the start instead missed one spawned just before the stop but not yet
    // running: it gave itself in place of one still answering, which then
    // came too late and was closed here (2 reconnects in a quick campaign).
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    while pool.live.load(Ordering::Relaxed) > 0 {
        tokio::select! {
            Some(c) = g.yielded.recv() => conns.push(c),
            _ = tick.tick() => {}
            _ = &mut deadline => break,
        }
    }
    while let Ok(c) = g.yielded.try_recv() {
        conns.push(c);
    }
    let offered = conns.len();
    let outcome = session.hand_over(None, conns, ANSWER).await;
    g.request.send_replace(false);
    pool.pending.store(false, Ordering::Relaxed);
    match outcome {
        Err(f) => {
            eprintln!(
                "restart_server[{}]: handover failed: {}",
                shared.label, f.error
            );
            serve(f.connections, &shared);
        }
        Ok(h) => {
            eprintln!(
                "restart_server[{}]: handed over {} of {offered} connections",
                shared.label,
                h.parked.len()
            );
            serve(h.kept, &shared);
            // The new generation says Serving once it serves them; if it
            // dies first they come back and are finished here.
            if let Ok(back) = tokio::time::timeout(ANSWER, h.parked.settle()).await {
                serve(back, &shared);
            }
        }
    }
    while let Ok(c) = g.yielded.try_recv() {
        serve(vec![c], &shared);
    }
}
