//! The RPC interface the chaos cases call, and the server child that
//! serves it and reports on its control channel what only it can see: its
//! open handles, its memory, which contexts ran down and how often.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use handoff::rpc::{Context, Server};
use handoff::{AsyncListener, BorrowedHandle, Error, Handle, Listener};
use serde::{Deserialize, Serialize};

use super::{child_ctl, env, send_json, wait_for, Checks, Kid};

pub const ROLE: &str = "rpc-server";
const SOCKET_ENV: &str = "HANDOFF_CHAOS_SOCKET";
const ROOT_ONLY_ENV: &str = "HANDOFF_CHAOS_ROOT_ONLY";

/// Method indices (positions in the trait), for hand-made frames.
pub const M_STAMP: u32 = 0;
pub const M_OPEN: u32 = 2;

/// Bytes `stamp` writes at offset 0: `client:seq`, space-padded, so a
/// shorter stamp never leaves the tail of a longer one behind.
pub const STAMP_LEN: usize = 32;

pub fn stamp_text(client: u32, seq: u64) -> [u8; STAMP_LEN] {
    let mut out = [b' '; STAMP_LEN];
    let text = format!("{client}:{seq}");
    out[..text.len()].copy_from_slice(text.as_bytes());
    out
}

#[handoff::interface(name = "handoff.bench.Chaos", version = 1)]
pub trait Chaos {
    /// Writes [`stamp_text`] at offset 0 of the caller's file and echoes
    /// the ids: the in handle and the reply both prove whose call it was.
    async fn stamp(
        &self,
        #[handle(file, write)] target: BorrowedHandle<'_>,
        client: u32,
        seq: u64,
    ) -> Result<(u32, u64), String>;

    /// A pipe holding `client:seq`, written and closed by the server.
    #[out(pipe, read)]
    async fn fetch(&self, client: u32, seq: u64) -> Result<Handle, String>;

    /// Per-client state, labelled `c<client>.i<incarnation>`; its rundown
    /// is counted.
    async fn open(&self, client: u32, incarnation: u32) -> Result<Context<Session>, String>;

    /// Echoes the ids if the context belongs to `client`.
    async fn note(
        &self,
        #[context] session: &Session,
        client: u32,
        seq: u64,
    ) -> Result<(u32, u64), String>;
}

/// What a context holds on the server.
#[derive(Debug)]
pub struct Session {
    client: u32,
    serial: u64,
}

/// What the server counts.
#[derive(Debug, Default)]
struct Book {
    calls: AtomicU64,
    accepted: AtomicU64,
    wrong_session: AtomicU64,
    next_serial: AtomicU64,
    /// serial → (label, rundowns so far)
    contexts: Mutex<BTreeMap<u64, (String, u32)>>,
}

#[derive(Debug)]
struct Impl {
    book: Arc<Book>,
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Chaos for Impl {
    async fn stamp(
        &self,
        target: BorrowedHandle<'_>,
        client: u32,
        seq: u64,
    ) -> Result<(u32, u64), String> {
        self.book.calls.fetch_add(1, Ordering::Relaxed);
        rustix::io::pwrite(target, &stamp_text(client, seq), 0).map_err(text)?;
        Ok((client, seq))
    }

    async fn fetch(&self, client: u32, seq: u64) -> Result<Handle, String> {
        self.book.calls.fetch_add(1, Ordering::Relaxed);
        let (reader, mut writer) = std::io::pipe().map_err(text)?;
        std::io::Write::write_all(&mut writer, format!("{client}:{seq}").as_bytes())
            .map_err(text)?;
        Ok(reader.into())
    }

    async fn open(&self, client: u32, incarnation: u32) -> Result<Context<Session>, String> {
        self.book.calls.fetch_add(1, Ordering::Relaxed);
        let serial = self.book.next_serial.fetch_add(1, Ordering::Relaxed);
        self.book
            .contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(serial, (format!("c{client}.i{incarnation}"), 0));
        let book = self.book.clone();
        Ok(Context::with_rundown(
            Session { client, serial },
            move |s| {
                if let Some(entry) = book
                    .contexts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(&s.serial)
                {
                    entry.1 += 1;
                }
            },
        ))
    }

    async fn note(&self, session: &Session, client: u32, seq: u64) -> Result<(u32, u64), String> {
        self.book.calls.fetch_add(1, Ordering::Relaxed);
        if session.client != client {
            self.book.wrong_session.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "context of client {} used by client {client}",
                session.client
            ));
        }
        Ok((client, seq))
    }
}

/// One context as the server saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ctx {
    pub label: String,
    pub rundowns: u32,
}

/// The server's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub handles: usize,
    pub baseline: usize,
    pub memory: super::Memory,
    pub calls: u64,
    pub accepted: u64,
    pub panics: u64,
    pub wrong_session: u64,
    pub contexts: Vec<Ctx>,
}

impl Stats {
    /// Every context ran down exactly once and the handle table is back
    /// where it started: nothing held for clients that are gone.
    pub fn settled(&self) -> bool {
        self.handles == self.baseline && self.contexts.iter().all(|c| c.rundowns == 1)
    }

    pub fn ran_down_more_than_once(&self) -> Vec<String> {
        self.contexts
            .iter()
            .filter(|c| c.rundowns > 1)
            .map(|c| format!("{} ran down {} times", c.label, c.rundowns))
            .collect()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Ready {
    baseline: usize,
}

/// The child: serves until its control channel closes.
pub fn role() -> crate::Result<()> {
    let ctl = child_ctl()?;
    let path: PathBuf = env(SOCKET_ENV)?;
    let root_only = std::env::var_os(ROOT_ONLY_ENV).is_some();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let book = Arc::new(Book::default());
    let listener = {
        let _enter = rt.enter();
        let mut listener = Listener::bind(&path)?;
        if root_only {
            listener = listener.allow_uids([0]);
        }
        AsyncListener::new(listener)?
    };
    let server = Server::new(ChaosServer::new(Impl { book: book.clone() }));
    rt.spawn(accept_loop(server, listener, book.clone()));
    let baseline = handoff::count_open_handles()?;
    send_json(&ctl, &Ready { baseline })?;
    loop {
        match ctl.recv() {
            Ok(msg) if msg.bytes == b"stats" => {
                let contexts = book
                    .contexts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .map(|(label, rundowns)| Ctx {
                        label: label.clone(),
                        rundowns: *rundowns,
                    })
                    .collect();
                send_json(
                    &ctl,
                    &Stats {
                        handles: handoff::count_open_handles()?,
                        baseline,
                        memory: super::memory()?,
                        calls: book.calls.load(Ordering::Relaxed),
                        accepted: book.accepted.load(Ordering::Relaxed),
                        panics: super::panics(),
                        wrong_session: book.wrong_session.load(Ordering::Relaxed),
                        contexts,
                    },
                )?;
            }
            Ok(msg) if msg.bytes == b"exit" => return Ok(()),
            Ok(_) => return Err("unknown control request".into()),
            Err(Error::Disconnected { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// `Server::serve`, counting admitted connections.
async fn accept_loop(server: Server<ChaosServer<Impl>>, listener: AsyncListener, book: Arc<Book>) {
    loop {
        match listener.accept().await {
            Ok(channel) => {
                book.accepted.fetch_add(1, Ordering::Relaxed);
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = server.serve_connection(channel).await;
                });
            }
            Err(e) => {
                // Out of descriptors, say: the server must live on.
                eprintln!("chaos server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The harness's handle on a server child.
#[derive(Debug)]
pub struct ServerKid {
    pub kid: Kid,
}

impl ServerKid {
    /// Starts a server listening at `path` (which must not exist).
    pub fn start(path: &Path, root_only: bool) -> crate::Result<ServerKid> {
        let mut env = vec![(SOCKET_ENV, path.display().to_string())];
        if root_only {
            env.push((ROOT_ONLY_ENV, "1".into()));
        }
        let kid = Kid::spawn(ROLE, &env)?;
        // The baseline travels in every report; this only waits for it.
        let _: Ready = kid.recv_json(Duration::from_secs(10))?;
        Ok(ServerKid { kid })
    }

    pub fn stats(&self) -> crate::Result<Stats> {
        self.kid.send(b"stats", &[])?;
        self.kid.recv_json(Duration::from_secs(10))
    }

    /// Waits until [`Stats::settled`], returning the last stats either way.
    pub fn settle(&self, timeout: Duration) -> crate::Result<(bool, Stats)> {
        wait_for(timeout, || {
            let s = self.stats()?;
            Ok((s.settled(), s))
        })
    }

    /// Fails unless the server is still running.
    pub fn alive(&mut self) -> crate::Result<bool> {
        Ok(self.kid.exited()?.is_none())
    }

    /// Asks the server to exit, and checks that it ends cleanly.
    pub fn stop(&mut self, checks: &mut Checks) -> crate::Result<()> {
        self.kid.send(b"exit", &[])?;
        let status = self.kid.wait(Duration::from_secs(10))?;
        checks.check(status.success(), || {
            format!("the server ended with {status}")
        });
        Ok(())
    }
}
