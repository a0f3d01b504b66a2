//! UDP flows with sequence numbers: each flow is one client socket (its
//! source address is the flow), sends `seq=N` with N counting up from 0,
//! and expects `seq=N n=K gen=G pid=P` back exactly once, K being the
//! server's count of the flow's datagrams: N + 1 when the flow's state
//! went with it across every restart (the server keeps it per flow and
//! hands it to the next generation).

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
    /// Held from taking a number to handing its datagram to the kernel:
    /// two sends of one flow (the load generator catching up after a
    /// stall runs them at once) must leave in their numbers' order, or the
    /// server's count would be judged against the wrong datagram.
    sending: tokio::sync::Mutex<()>,
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
            sending: tokio::sync::Mutex::new(()),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the flow's next number, scheduled at `scheduled`.
    pub async fn send(&self, scheduled: Instant, recorder: &Recorder) {
        let _in_order = self.sending.lock().await;
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
        let now = Instant::now();
        let Some((seq, served)) = parse(datagram) else {
            recorder.record(Proto::Udp, now, Outcome::Wrong);
            return;
        };
        let mut state = self.state();
        match state.waiting.remove(&seq) {
            Some(scheduled) => {
                drop(state);
                let outcome = if served == seq + 1 {
                    Outcome::Ok
                } else {
                    Outcome::Stateless
                };
                recorder.record(Proto::Udp, scheduled, outcome);
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
    match parse(&buf[..n]) {
        Some((got, _)) if got == seq => Ok(()),
        _ => Err(Outcome::Wrong),
    }
}

/// `seq=N n=K gen=G pid=P`: the sequence number and the flow count.
fn parse(datagram: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(datagram).ok()?;
    let rest = text.strip_prefix("seq=")?;
    let (seq, rest) = rest.split_once(' ')?;
    let (served, label) = rest.strip_prefix("n=")?.split_once(' ')?;
    generation_pid(label)?;
    Some((seq.parse().ok()?, served.parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_answer_carries_the_number_and_the_flow_count() {
        assert_eq!(super::parse(b"seq=4 n=5 gen=2 pid=77"), Some((4, 5)));
        assert_eq!(super::parse(b"seq=4 gen=2 pid=77"), None);
        assert_eq!(super::parse(b"seq=4 n=x gen=2 pid=77"), None);
        assert_eq!(super::parse(b"bad datagram gen=2 pid=77"), None);
    }
}
