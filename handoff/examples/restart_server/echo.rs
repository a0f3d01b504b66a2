//! The UDP echo with per-flow sequence numbers and the Unix-stream echo.
//!
//! UDP: a datagram `seq=N` from a flow (its source address) is answered
//! `seq=N gen=G pid=P`; the client checks every number comes back exactly
//! once. Unix: everything up to the first newline (or end of file) comes
//! back after `gen=G pid=P `.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UdpSocket, UnixListener, UnixStream};

use crate::server::{stopped, Shared};

const MAX_LINE: usize = 4096;

pub async fn udp_loop(socket: UdpSocket, mut shared: Shared) -> UdpSocket {
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = tokio::select! {
            biased;
            _ = stopped(&mut shared.stop) => return socket,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("restart_server[{}]: udp receive: {e}", shared.label);
                    continue;
                }
            },
        };
        let reply = match std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|t| t.strip_prefix("seq="))
        {
            Some(seq) if !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) => {
                format!("seq={seq} {}", shared.label)
            }
            _ => format!("bad datagram {}", shared.label),
        };
        // A full send buffer loses this answer; the client counts it.
        let _ = socket.send_to(reply.as_bytes(), from).await;
    }
}

pub async fn unix_accept_loop(listener: UnixListener, mut shared: Shared) -> UnixListener {
    loop {
        let stream = tokio::select! {
            biased;
            _ = stopped(&mut shared.stop) => return listener,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("restart_server[{}]: unix accept: {e}", shared.label);
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        tokio::spawn(unix_echo(stream, shared.clone()));
    }
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
    if let Some(end) = line.iter().position(|&b| b == b'\n') {
        line.truncate(end + 1);
    }
    let mut reply = format!("{} ", shared.label).into_bytes();
    reply.extend_from_slice(&line);
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
    drop(shared);
}
