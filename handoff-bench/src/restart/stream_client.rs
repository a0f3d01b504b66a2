//! Long-lived Unix streams: each client opens one connection, says
//! `stream`, then sends one line a period (bytes of every value but the
//! newline, a different length and content each time) and expects the
//! same bytes back. It counts its own connects: with the live handover a
//! restart moves the connection to the next generation, so the connects
//! at the end equal the clients, and every byte sent came back as sent.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::runtime::Runtime;

use super::outcome::{Outcome, Proto, Recorder};
use super::schedule::{Clients, ConnectCounter, Connections, Schedule};

/// No line waits longer than this for its echo.
const DEADLINE: Duration = Duration::from_secs(5);

/// What the clients counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub connections: Connections,
    pub lines: u64,
    /// Bytes sent and compared with their echo.
    pub bytes: u64,
    /// Echoes that differed from what was sent.
    pub corrupted: u64,
}

#[derive(Debug, Default)]
struct Shared {
    connects: ConnectCounter,
    lines: AtomicU64,
    bytes: AtomicU64,
    corrupted: AtomicU64,
}

#[derive(Debug)]
pub struct Streams(Clients<Shared>);

impl Streams {
    /// `clients` streams to the Unix socket at `path`, one line each per
    /// `period`, spread over the period.
    pub fn start(
        rt: &Runtime,
        path: PathBuf,
        clients: usize,
        period: Duration,
        recorder: &Recorder,
    ) -> Streams {
        Streams(Clients::start(
            rt,
            clients,
            period,
            |id, schedule, shared| client(path.clone(), id, schedule, shared, recorder.clone()),
        ))
    }

    pub fn stop(self, rt: &Runtime) -> Counts {
        let (clients, shared) = self.0.stop(rt);
        Counts {
            connections: shared.connects.of(clients),
            lines: shared.lines.load(Ordering::Relaxed),
            bytes: shared.bytes.load(Ordering::Relaxed),
            corrupted: shared.corrupted.load(Ordering::Relaxed),
        }
    }
}

async fn client(
    path: PathBuf,
    id: u64,
    mut schedule: Schedule,
    shared: Arc<Shared>,
    rec: Recorder,
) {
    let mut conn: Option<UnixStream> = None;
    while let Some((k, when)) = schedule.tick().await {
        let line = message(id, k);
        shared.lines.fetch_add(1, Ordering::Relaxed);
        shared.bytes.fetch_add(line.len() as u64, Ordering::Relaxed);
        let answer = tokio::time::timeout(DEADLINE, async {
            if conn.is_none() {
                shared.connects.add();
                let mut s = UnixStream::connect(&path)
                    .await
                    .map_err(|e| Outcome::of_error(&e))?;
                s.write_all(b"stream\n")
                    .await
                    .map_err(|e| Outcome::of_error(&e))?;
                conn = Some(s);
            }
            let stream = conn.as_mut().ok_or(Outcome::Other)?;
            stream
                .write_all(&line)
                .await
                .map_err(|e| Outcome::of_error(&e))?;
            let mut echo = vec![0u8; line.len()];
            stream
                .read_exact(&mut echo)
                .await
                .map_err(|e| Outcome::of_error(&e))?;
            Ok::<bool, Outcome>(echo == line)
        })
        .await;
        let outcome = match answer {
            Ok(Ok(true)) => Outcome::Ok,
            Ok(Ok(false)) => {
                shared.corrupted.fetch_add(1, Ordering::Relaxed);
                Outcome::Wrong
            }
            Ok(Err(o)) => o,
            Err(_) => Outcome::Late,
        };
        if outcome != Outcome::Ok {
            // Whatever is left on it would be read as the next echo.
            conn = None;
            eprintln!(
                "restart campaign: stream {id} failed at {:.1} s ({})",
                when.saturating_duration_since(rec.start).as_secs_f64(),
                outcome.name()
            );
        }
        rec.record(Proto::Stream, when, outcome);
    }
}

/// Line `k` of stream `id`: 16 to 271 bytes of every value but the
/// newline, then the newline.
fn message(id: u64, k: u64) -> Vec<u8> {
    let mut x = (id << 32 ^ k).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = 16 + (next() % 256) as usize;
    let mut line: Vec<u8> = (0..len)
        .map(|_| match (next() % 256) as u8 {
            b'\n' => b'\r',
            b => b,
        })
        .collect();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_differ_and_end_once_with_a_newline() {
        let a = super::message(1, 2);
        let b = super::message(1, 3);
        assert_ne!(a, b);
        for m in [&a, &b] {
            assert!(m.len() >= 17);
            assert_eq!(m.iter().filter(|&&c| c == b'\n').count(), 1);
            assert_eq!(m.last(), Some(&b'\n'));
        }
    }
}
