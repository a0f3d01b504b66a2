//! Live handover of idle keep-alive HTTP connections to the next
//! generation (`handoff::restart::handover`): the doorbell's far end is in
//! the supervisor's store under `handoff.handover`; a new generation takes
//! the connections its predecessor offers before it says `READY=1`, then
//! stores a doorbell of its own.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use handoff::restart::handover::{Connection, Doorbell, Incoming, TakeLimits, DOORBELL};
use handoff::restart::Service;
use handoff::Handle;
use tokio::sync::{mpsc, watch};

use crate::server::Shared;

/// How long the old generation waits for its connections to reach a
/// point between two requests.
const GATHER: Duration = Duration::from_millis(200);
/// How long each side waits for the other's answer.
const ANSWER: Duration = Duration::from_secs(5);

/// What each HTTP connection task holds to take part in a handover.
#[derive(Clone)]
pub struct Pool {
    /// Raised while a handover gathers connections.
    pub requested: watch::Receiver<bool>,
    /// Where a connection between two requests gives itself up.
    pub yielded: mpsc::UnboundedSender<Connection>,
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

/// The new generation: takes what the previous one offers (if a doorbell
/// was passed). Returns the takeover to confirm once ready.
pub async fn take_over(
    service: &mut Service,
    shared: &Shared,
) -> Option<handoff::restart::handover::Takeover> {
    let bell = service.take_all(DOORBELL).pop()?;
    let incoming = match Incoming::connect(
        bell,
        TakeLimits {
            timeout: ANSWER,
            ..TakeLimits::default()
        },
    )
    .await
    {
        Ok(i) => i,
        Err(e) => {
            eprintln!("restart_server[{}]: no handover: {e}", shared.label);
            return None;
        }
    };
    match incoming.accept().await {
        Ok(mut t) => {
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
/// predecessor's and answers every ring with the idle connections.
pub fn announce(service: &Service, shared: Shared, gatherer: Gatherer, pool: Pool) {
    let Ok((bell, peer)) = Doorbell::new() else {
        return;
    };
    if !service.is_supervised()
        || service.remove(DOORBELL).is_err()
        || service.store(DOORBELL, &peer).is_err()
    {
        return;
    }
    drop(peer);
    tokio::spawn(answer(bell, shared, gatherer, pool));
}

async fn answer(bell: Doorbell, mut shared: Shared, mut g: Gatherer, pool: Pool) {
    loop {
        // Between handovers a connection that gave itself up late is
        // served here again.
        let session = tokio::select! {
            r = bell.ring() => match r {
                Ok(s) => s,
                Err(_) => continue,
            },
            Some(c) = g.yielded.recv() => {
                serve(vec![c], &shared);
                continue;
            }
            // Stopping: this task must not hold the drain open.
            _ = crate::server::stopped(&mut shared.stop) => return,
        };
        let target = pool.live.load(Ordering::Relaxed);
        g.request.send_replace(true);
        let mut conns = Vec::new();
        let deadline = tokio::time::sleep(GATHER);
        tokio::pin!(deadline);
        while conns.len() < target {
            tokio::select! {
                Some(c) = g.yielded.recv() => conns.push(c),
                _ = &mut deadline => break,
            }
        }
        let offered = conns.len();
        let outcome = session.hand_over(None, conns, ANSWER).await;
        g.request.send_replace(false);
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
                // Held until this generation is stopped (the supervisor
                // has then judged the new one), or handed back if the new
                // one goes first (a bad version killed after READY=1).
                let hold = h.parked.hold();
                tokio::pin!(hold);
                loop {
                    tokio::select! {
                        back = &mut hold => {
                            serve(back, &shared);
                            break;
                        }
                        // A connection that gave itself up after the
                        // gathering is served here again meanwhile.
                        Some(c) = g.yielded.recv() => serve(vec![c], &shared),
                        _ = crate::server::stopped(&mut shared.stop) => return,
                    }
                }
            }
        }
    }
}
