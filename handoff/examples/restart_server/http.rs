//! HTTP/1.1 with `Connection: close` and keep-alive, parsed by `httparse`.
//! Every answer is `200 OK` with the body `gen=G pid=P` and the same in the
//! `X-Handoff-Generation` header.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::accept;
use crate::server::{stopped, Shared};

const MAX_HEAD: usize = 16 * 1024;
/// How long a keep-alive connection idle at stop may still send one last
/// request (answered with `Connection: close`).
const IDLE_AT_STOP: Duration = Duration::from_secs(1);

pub async fn accept_loop(listener: TcpListener, shared: Shared, halt: watch::Receiver<bool>) {
    accept::accept_loop(listener, "http", shared, halt, |stream, shared| {
        let _ = stream.set_nodelay(true);
        connection(stream, shared)
    })
    .await
}

/// What one request asked for, once its head is complete.
struct Head {
    len: usize,
    body: usize,
    keep_alive: bool,
}

fn parse(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf).map_err(|e| e.to_string())? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let mut keep_alive = req.version == Some(1);
    let mut body = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or("bad Content-Length")?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked request bodies are not supported".into());
        }
    }
    Ok(Some(Head {
        len,
        body,
        keep_alive,
    }))
}

async fn connection(stream: TcpStream, shared: Shared) {
    connection_with(stream, shared, Vec::with_capacity(1024)).await
}

/// Serves a connection whose first `buf` bytes were already read (by this
/// or the previous generation).
pub async fn connection_with(mut stream: TcpStream, mut shared: Shared, mut buf: Vec<u8>) {
    let _live = shared.pool.live();
    let mut handover = shared.pool.requested.clone();
    let mut chunk = [0u8; 4096];
    loop {
        // Read until one request head is complete.
        let head = loop {
            match parse(&buf) {
                Ok(Some(head)) => break head,
                Ok(None) if buf.len() < MAX_HEAD => {}
                Ok(None) | Err(_) => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
            }
            let read = if buf.is_empty() {
                let stopping = *shared.stop.borrow();
                tokio::select! {
                    r = stream.read(&mut chunk) => r,
                    _ = stopped(&mut shared.stop), if !stopping => continue,
                    // Idle at stop: one last chance to send a request,
                    // then close.
                    _ = tokio::time::sleep(IDLE_AT_STOP), if stopping => return,
                    // Between two requests: the next generation may take it.
                    // (`Err`, no handover in this generation, never fires.)
                    Ok(_) = handover.wait_for(|h| *h) => {
                        shared.pool.give_tcp(stream, buf);
                        return;
                    }
                }
            } else {
                stream.read(&mut chunk).await
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        // Discard the request's body.
        let mut body = head.body;
        let have = buf.len() - head.len;
        if have >= body {
            buf.drain(..head.len + body);
            body = 0;
        } else {
            body -= have;
            buf.clear();
        }
        while body > 0 {
            match stream.read(&mut chunk[..body.min(4096)]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body -= n,
            }
        }
        // At stop the connection closes after this answer: a next
        // generation takes connections before it says it is ready, so
        // none waits for them by now.
        let keep_alive = head.keep_alive && !*shared.stop.borrow();
        let text = format!("{}\n", shared.label);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Handoff-Generation: {}\r\nConnection: {}\r\n\r\n{text}",
            text.len(),
            shared.label,
            if keep_alive { "keep-alive" } else { "close" },
        );
        if stream.write_all(response.as_bytes()).await.is_err() || !keep_alive {
            let _ = stream.shutdown().await;
            return;
        }
    }
}
