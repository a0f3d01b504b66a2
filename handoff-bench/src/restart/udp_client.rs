//! UDP flows with sequence numbers: each flow is one client socket (its
//! source address is the flow), sends `seq=N` with N counting up from 0,
//! and expects `seq=N gen=G pid=P` back exactly once.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::http_client::generation_pid;
use super::outcome::{Outcome, Proto, Recorder};

/// A datagram unanswered this long is lost (answers later than a second
/// are already failures as late).
const GIVE_UP: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Flow {
    socket: UdpSocket,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    waiting: HashMap<u64, Instant>,
}

impl Flow {
    pub async fn open(server: SocketAddr, source: Ipv4Addr) -> std::io::Result<Arc<Flow>> {
        let socket = UdpSocket::bind(SocketAddr::from((source, 0))).await?;
        socket.connect(server).await?;
        Ok(Arc::new(Flow {
            socket,
            state: Mutex::default(),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the flow's next number, scheduled at `scheduled`.
    pub async fn send(&self, scheduled: Instant, recorder: &Recorder) {
        let seq = {
            let mut state = self.state();
            let seq = state.next;
            state.next += 1;
            state.waiting.insert(seq, scheduled);
            seq
        };
        if let Err(e) = self.socket.send(format!("seq={seq}").as_bytes()).await {
            self.state().waiting.remove(&seq);
            recorder.record(Proto::Udp, scheduled, Outcome::of_error(&e));
        }
    }

    /// Takes answers until `stop`, then counts every number still
    /// unanswered as lost.
    pub async fn receive(self: Arc<Self>, recorder: Recorder, mut stop: watch::Receiver<bool>) {
        let mut buf = [0u8; 256];
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = sweep.tick() => self.give_up(&recorder, GIVE_UP),
                r = self.socket.recv(&mut buf) => {
                    // An error is an ICMP report on an earlier datagram:
                    // that one is counted when it goes unanswered.
                    if let Ok(n) = r {
                        self.answer(&buf[..n], &recorder);
                    }
                }
            }
        }
        self.give_up(&recorder, Duration::ZERO);
    }

    fn answer(&self, datagram: &[u8], recorder: &Recorder) {
        let text = std::str::from_utf8(datagram).unwrap_or("");
        let parsed = text.strip_prefix("seq=").and_then(|rest| {
            let (seq, label) = rest.split_once(' ')?;
            generation_pid(label)?;
            seq.parse::<u64>().ok()
        });
        let now = Instant::now();
        let Some(seq) = parsed else {
            recorder.record(Proto::Udp, now, Outcome::Wrong);
            return;
        };
        let mut state = self.state();
        match state.waiting.remove(&seq) {
            Some(scheduled) => {
                drop(state);
                recorder.record(Proto::Udp, scheduled, Outcome::Ok);
            }
            None if seq < state.next => {
                drop(state);
                recorder.record(Proto::Udp, now, Outcome::Duplicate);
            }
            None => {
                drop(state);
                recorder.record(Proto::Udp, now, Outcome::Wrong);
            }
        }
    }

    fn give_up(&self, recorder: &Recorder, older_than: Duration) {
        let lost: Vec<Instant> = {
            let mut state = self.state();
            let mut lost = Vec::new();
            state.waiting.retain(|_, &mut at| {
                let keep = at.elapsed() < older_than;
                if !keep {
                    lost.push(at);
                }
                keep
            });
            lost
        };
        for at in lost {
            recorder.record(Proto::Udp, at, Outcome::Lost);
        }
    }
}

/// One closed-loop exchange on a socket of its own: for the capacity run.
pub async fn ping(socket: &UdpSocket, seq: u64) -> Result<(), Outcome> {
    socket
        .send(format!("seq={seq}").as_bytes())
        .await
        .map_err(|e| Outcome::of_error(&e))?;
    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .await
        .map_err(|e| Outcome::of_error(&e))?;
    let want = format!("seq={seq} ");
    match std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|t| t.strip_prefix(want.as_str()))
    {
        Some(label) if generation_pid(label).is_some() => Ok(()),
        _ => Err(Outcome::Wrong),
    }
}
