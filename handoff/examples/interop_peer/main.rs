//! The Rust side of the Python interop tests (`python/tests/`): one
//! program, one role per run, each talking to a Python peer.
//!
//! ```text
//! interop_peer echo PATH            accept one channel at PATH; for each message, send a
//!                                   report of its handles (kind, access) and then the
//!                                   message itself back, handles included
//! interop_peer typed-echo PATH      accept one channel at PATH; decode each typed
//!                                   Envelope and send it back re-encoded
//! interop_peer typed-random PATH SEED COUNT
//!                                   accept one channel at PATH; send COUNT random
//!                                   Envelope::Sample values, expect each back equal
//! interop_peer rpc-server PATH      serve interop.Files at PATH until stdin closes
//! interop_peer rpc-client PATH      call every method of a server at PATH, check results
//! ```
//!
//! Each role prints `ready` on stdout once PATH is bound, and exits 0 only
//! if everything it checked held.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the interop peer passes eventfds and memfds: it runs on Linux");
}

#[cfg(target_os = "linux")]
mod service;
#[cfg(target_os = "linux")]
mod shared;

#[cfg(target_os = "linux")]
fn main() {
    if let Err(e) = linux::main() {
        eprintln!("interop_peer: {e}");
        std::process::exit(1);
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::Write;

    use handoff::rpc::Server;
    use handoff::typed::{Receiver, Sender};
    use handoff::{AsHandle, AsyncListener, Channel, Error, Listener};

    use super::service::*;
    use super::shared::*;

    pub fn main() -> Fallible<()> {
        // Every role ends with everything it opened closed again.
        let before = handoff::count_open_handles()?;
        role()?;
        let after = handoff::count_open_handles()?;
        if after != before {
            return Err(format!("open handles: {before} before, {after} after").into());
        }
        Ok(())
    }

    fn role() -> Fallible<()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let arg = |i: usize| -> Fallible<&str> {
            args.get(i)
                .map(String::as_str)
                .ok_or_else(|| "missing argument: see the usage in main.rs".into())
        };
        match arg(0)? {
            "echo" => echo(accept_one(arg(1)?)?),
            "typed-echo" => typed_echo(accept_one(arg(1)?)?),
            "typed-random" => {
                let ch = accept_one(arg(1)?)?;
                typed_random(ch, arg(2)?.parse()?, arg(3)?.parse()?)
            }
            "rpc-server" => rpc_server(arg(1)?),
            "rpc-client" => rpc_client(arg(1)?),
            other => Err(format!("unknown role {other:?}").into()),
        }
    }

    fn ready() {
        println!("ready");
        let _ = std::io::stdout().flush();
    }

    fn accept_one(path: &str) -> Fallible<Channel> {
        let listener = Listener::bind(path)?;
        ready();
        Ok(listener.accept()?)
    }

    fn echo(ch: Channel) -> Fallible<()> {
        loop {
            let msg = match ch.recv() {
                Ok(msg) => msg,
                Err(Error::Disconnected { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            ch.send(report(&msg.handles).as_bytes(), &[])?;
            let borrowed: Vec<_> = msg.handles.iter().map(|h| h.as_handle()).collect();
            ch.send(&msg.bytes, &borrowed)?;
        }
    }

    fn typed_echo(ch: Channel) -> Fallible<()> {
        let (tx, rx): (Sender<Envelope>, Receiver<Envelope>) = ch.into_typed();
        loop {
            match rx.recv() {
                Ok(value) => tx.send(&value)?,
                Err(Error::Disconnected { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn typed_random(ch: Channel, seed: u64, count: u32) -> Fallible<()> {
        let (tx, rx): (Sender<Envelope>, Receiver<Envelope>) = ch.into_typed();
        let mut rng = Rng(seed.max(1));
        for i in 0..count {
            let sent = rng.sample();
            tx.send(&Envelope::Sample(sent.clone()))?;
            match rx.recv()? {
                Envelope::Sample(back) if back == sent => {}
                other => {
                    return Err(
                        format!("value {i} of seed {seed}: sent {sent:?}, got {other:?}").into(),
                    )
                }
            }
        }
        Ok(())
    }

    fn rpc_server(path: &str) -> Fallible<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let listener = AsyncListener::bind(path)?;
            ready();
            let serve = Server::new(FilesServer::new(Service::default())).serve(listener);
            let parent_gone = tokio::task::spawn_blocking(|| {
                std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
            });
            tokio::select! {
                r = serve => r?,
                _ = parent_gone => {}
            }
            Ok::<_, Error>(())
        })?;
        Ok(())
    }
}
