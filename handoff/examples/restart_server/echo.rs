//! The UDP echo with per-flow state and the Unix-stream echoes.
//!
//! UDP: a datagram `seq=N` from a flow (its source address) is answered
//! `seq=N n=K gen=G pid=P`, K counting the flow's datagrams served so far
//! by every generation since the flow's `seq=0`: the flows travel in the
//! state, and one generation reads the socket at a time, so K is N + 1 for
//! a client that started at 0 and lost nothing. Unix: a first line `stream` makes the connection a
//! long-lived echo of every line, byte for byte, handed over at a restart
//! like an idle keep-alive connection; any other first line comes back
//! once after `gen=G pid=P ` and the connection closes.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UdpSocket, UnixListener, UnixStream};
use tokio::sync::watch;

use crate::accept;
use crate::server::{stopped, Shared};
use crate::snapshot::Flows;

const MAX_LINE: usize = 4096;

/// Reads the socket until `halt`; the flows stay behind the lock, read
/// only once the loop has ended.
pub async fn udp_loop(
    socket: UdpSocket,
    flows: Arc<Mutex<Flows>>,
    mut halt: watch::Receiver<bool>,
    label: Arc<str>,
) {
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = tokio::select! {
            biased;
            _ = stopped(&mut halt) => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("restart_server[{label}]: udp receive: {e}");
                    continue;
                }
            },
        };
        let reply = match std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|t| t.strip_prefix("seq="))
        {
            Some(seq) if !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) => {
                let served = {
                    let mut flows = flows.lock().unwrap_or_else(|e| e.into_inner());
                    let served = flows.entry(from).or_insert(0);
                    // `seq=0` starts a flow: a client port the kernel
                    // hands out again is a new flow.
                    if seq == "0" {
                        *served = 0;
                    }
                    *served += 1;
                    *served
                };
                format!("seq={seq} n={served} {label}")
            }
            _ => format!("bad datagram {label}"),
        };
        // A full send buffer loses this answer; the client counts it.
        let _ = socket.send_to(reply.as_bytes(), from).await;
    }
}

pub async fn unix_accept_loop(listener: UnixListener, shared: Shared, halt: watch::Receiver<bool>) {
    accept::accept_loop(listener, "unix", shared, halt, unix_echo).await
}

async fn unix_echo(mut stream: UnixStream, shared: Shared) {
    let mut line = Vec::with_capacity(64);
    let mut buf = [0u8; 512];
    while line.len() < MAX_LINE && !line.contains(&b'\n') {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(_) => return,
        }
    }
    if let Some(rest) = line.strip_prefix(b"stream\n") {
        let pending = rest.to_vec();
        return stream_echo(stream, shared, pending).await;
    }
    if let Some(end) = line.iter().position(|&b| b == b'\n') {
        line.truncate(end + 1);
    }
    let mut reply = format!("{} ", shared.label).into_bytes();
    reply.extend_from_slice(&line);
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
    drop(shared);
}

/// A long-lived stream: every line comes back as it came. Between two
/// lines it gives itself to a handover (its unechoed bytes travel with
/// it); at stop it closes.
pub async fn stream_echo(mut stream: UnixStream, mut shared: Shared, mut buf: Vec<u8>) {
    let _live = shared.pool.live();
    let mut handover = shared.pool.requested.clone();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            if stream.write_all(&buf[..=end]).await.is_err() {
                return;
            }
            buf.drain(..=end);
        }
        if buf.len() > MAX_LINE {
            return;
        }
        tokio::select! {
            r = stream.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            // No line half echoed here: the next generation may take it.
            Ok(_) = handover.wait_for(|h| *h) => {
                shared.pool.give_stream(stream, buf);
                return;
            }
            _ = stopped(&mut shared.stop) => return,
        }
    }
}
