//! The accept loop both stream listeners run: accept until halted, and
//! give each connection its own task.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::sync::watch;

use crate::server::{stopped, Shared};

/// A listener the loop accepts from: tokio's TCP and Unix listeners, less
/// the peer address nobody here reads.
pub trait Accept {
    type Stream;
    fn accept_stream(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_stream(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept_stream(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// Accepts on `listener` until `halt`, spawning `serve(stream, shared)`
/// for each connection; `what` names the listener in the log.
pub async fn accept_loop<L, F>(
    listener: L,
    what: &str,
    shared: Shared,
    mut halt: watch::Receiver<bool>,
    serve: impl Fn(L::Stream, Shared) -> F,
) where
    L: Accept,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        let stream = tokio::select! {
            biased;
            _ = stopped(&mut halt) => return,
            r = listener.accept_stream() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and the like: back off, keep the listener.
                    eprintln!("restart_server[{}]: {what} accept: {e}", shared.label);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve(stream, shared.clone()));
    }
}
