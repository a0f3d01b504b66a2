//! Keep-alive HTTP/1.1 clients: each holds one connection and sends its
//! requests on it, one at a time on its own fixed schedule, and counts its
//! own connects. With the live handover every restart leaves the
//! connection open (the next generation answers on it), so the connects at
//! the end equal the clients: any more is a reconnect, because the server
//! closed the connection or a request on it failed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

use super::http_client;
use super::outcome::{Outcome, Proto, Recorder};
use super::schedule::{Clients, ConnectCounter, Connections, Schedule};

/// No request waits longer than this for its answer.
const DEADLINE: Duration = Duration::from_secs(5);
/// A response head and body larger than this is wrong.
const MAX_RESPONSE: usize = 16 * 1024;

/// What the clients counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub connections: Connections,
    pub requests: u64,
    /// Connections the server ended with `Connection: close`.
    pub closed_by_server: u64,
}

#[derive(Debug, Default)]
struct Shared {
    connects: ConnectCounter,
    requests: AtomicU64,
    closed_by_server: AtomicU64,
}

/// The running clients; `stop` ends them and returns the counts.
#[derive(Debug)]
pub struct KeepAlive(Clients<Shared>);

impl KeepAlive {
    /// `clients` connections to `server`, `rate` requests a second in all.
    pub fn start(
        rt: &Runtime,
        server: SocketAddr,
        clients: usize,
        rate: f64,
        recorder: &Recorder,
    ) -> KeepAlive {
        let period = Duration::from_secs_f64(clients as f64 / rate);
        KeepAlive(Clients::start(
            rt,
            clients,
            period,
            |_, schedule, shared| client(server, schedule, shared, recorder.clone()),
        ))
    }

    pub fn stop(self, rt: &Runtime) -> Counts {
        let (clients, shared) = self.0.stop(rt);
        Counts {
            connections: shared.connects.of(clients),
            requests: shared.requests.load(Ordering::Relaxed),
            closed_by_server: shared.closed_by_server.load(Ordering::Relaxed),
        }
    }
}

async fn client(server: SocketAddr, mut schedule: Schedule, shared: Arc<Shared>, rec: Recorder) {
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(512);
    while let Some((k, when)) = schedule.tick().await {
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::time::timeout(DEADLINE, async {
            if conn.is_none() {
                shared.connects.add();
                let s = TcpStream::connect(server)
                    .await
                    .map_err(|e| Outcome::of_error(&e))?;
                let _ = s.set_nodelay(true);
                conn = Some(s);
            }
            let stream = conn.as_mut().ok_or(Outcome::Other)?;
            exchange(stream, server, k, &mut buf).await
        })
        .await;
        let outcome = match answer {
            Ok(Ok(keep)) => {
                if !keep {
                    shared.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
                Outcome::Ok
            }
            Ok(Err(o)) => {
                conn = None;
                o
            }
            Err(_) => {
                conn = None;
                Outcome::Late
            }
        };
        if conn.is_none() {
            // Where in the run, for the log beside the restarts'.
            eprintln!(
                "restart campaign: keep-alive connection lost at {:.1} s ({})",
                when.saturating_duration_since(rec.start).as_secs_f64(),
                if outcome == Outcome::Ok {
                    "Connection: close"
                } else {
                    outcome.name()
                }
            );
        }
        rec.record(Proto::Http, when, outcome);
    }
}

/// One request on an open connection; whether the server keeps it open.
async fn exchange(
    stream: &mut TcpStream,
    server: SocketAddr,
    n: u64,
    buf: &mut Vec<u8>,
) -> Result<bool, Outcome> {
    let request = format!("GET /?n={n} HTTP/1.1\r\nHost: {server}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| Outcome::of_error(&e))?;
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some((len, keep)) = complete(buf)? {
            http_client::check(&buf[..len])?;
            if buf.len() > len {
                // Nothing was asked for beyond this response.
                return Err(Outcome::Wrong);
            }
            return Ok(keep);
        }
        match stream.read(&mut chunk).await {
            Ok(0) => return Err(Outcome::Eof),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(Outcome::of_error(&e)),
        }
        if buf.len() > MAX_RESPONSE {
            return Err(Outcome::Wrong);
        }
    }
}

/// The length of the whole response in `buf` once it is there (head and
/// `Content-Length` bytes of body), and whether the connection stays open.
fn complete(buf: &[u8]) -> Result<Option<(usize, bool)>, Outcome> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let head = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Outcome::Wrong),
    };
    let mut length = None;
    let mut keep = parsed.version == Some(1);
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        } else if h.name.eq_ignore_ascii_case("connection") {
            keep = !h.value.eq_ignore_ascii_case(b"close");
        }
    }
    let length = length.ok_or(Outcome::Wrong)?;
    Ok((buf.len() >= head + length).then_some((head + length, keep)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_only_with_its_body_and_says_if_it_keeps_the_connection() {
        let keep = b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\nConnection: keep-alive\r\n\r\ngen=3 pid=12345\n";
        assert_eq!(complete(keep), Ok(Some((keep.len(), true))));
        assert_eq!(complete(&keep[..keep.len() - 1]), Ok(None));
        let close =
            b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\nConnection: close\r\n\r\ngen=3 pid=12345\n";
        assert_eq!(complete(close), Ok(Some((close.len(), false))));
        assert_eq!(complete(b"HTTP/1.1 200 OK\r\n\r\n"), Err(Outcome::Wrong));
        assert_eq!(complete(b"garbage\r\n\r\n"), Err(Outcome::Wrong));
    }
}
