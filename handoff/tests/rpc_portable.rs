//! RPC on every platform, across real processes: a file handle passed in
//! with declared read access (a read-write handle narrowed by the client, a
//! handle of the wrong kind or with more rights refused before the method
//! runs), a shared-memory handle passed out, and context handles run down
//! exactly once when their client is killed. The server runs in the test
//! process; clients are children re-running this binary.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use handoff::__private::Call;
use handoff::rpc::{CallError, Context, Server};
use handoff::{Access, BorrowedHandle, Error, Handle, Kind, StartupData};

/// Per-client state behind a context handle.
#[derive(Debug)]
pub struct Session {
    label: String,
}

#[handoff::interface(name = "handoff.test.Portable", version = 1)]
pub trait Portable {
    /// 0: the contents of the file the client passes.
    async fn read_file(
        &self,
        #[handle(file, read)] source: BorrowedHandle<'_>,
    ) -> Result<String, String>;
    /// 1: a read-only shared-memory region holding `text`.
    #[out(shared_memory, read)]
    async fn region(&self, text: String) -> Result<Handle, String>;
    /// 2: how many times `read_file` ran.
    async fn ran(&self) -> Result<u64, String>;
    /// 3
    async fn open(&self, label: String) -> Result<Context<Session>, String>;
    /// 4
    async fn label(&self, #[context] session: &Session) -> Result<String, String>;
    /// 5: never returns.
    async fn hold(&self, #[context] session: &Session) -> Result<(), String>;
}

#[derive(Default)]
struct Stats {
    ran: AtomicU64,
    opened: AtomicU64,
    holding: AtomicU64,
    rundowns: Mutex<HashMap<String, u32>>,
}

struct Impl {
    stats: Arc<Stats>,
}

impl Portable for Impl {
    async fn read_file(&self, source: BorrowedHandle<'_>) -> Result<String, String> {
        self.stats.ran.fetch_add(1, Ordering::SeqCst);
        let h = source.try_clone_to_owned().map_err(|e| e.to_string())?;
        String::from_utf8(read_all(&h)).map_err(|e| e.to_string())
    }

    async fn region(&self, text: String) -> Result<Handle, String> {
        handoff::startup::create(text.as_bytes()).map_err(|e| e.to_string())
    }

    async fn ran(&self) -> Result<u64, String> {
        Ok(self.stats.ran.load(Ordering::SeqCst))
    }

    async fn open(&self, label: String) -> Result<Context<Session>, String> {
        self.stats.opened.fetch_add(1, Ordering::SeqCst);
        let stats = self.stats.clone();
        Ok(Context::with_rundown(Session { label }, move |s| {
            *stats.rundowns.lock().unwrap().entry(s.label).or_default() += 1;
        }))
    }

    async fn label(&self, session: &Session) -> Result<String, String> {
        Ok(session.label.clone())
    }

    async fn hold(&self, session: &Session) -> Result<(), String> {
        let _ = &session.label;
        self.stats.holding.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
        Ok(())
    }
}

fn start_server() -> Serving<Stats> {
    let stats = Arc::new(Stats::default());
    let imp = Impl {
        stats: stats.clone(),
    };
    serve(Server::new(PortableServer::new(imp)), stats)
}

/// The client's side of `handles_in_and_out_across_processes`.
fn client_scenario(path: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, b"hello from the client").unwrap();
    let read_only = std::fs::File::open(&file).unwrap();
    let read_write = open_rw(&file);
    let write_only = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    runtime().block_on(async {
        let client = PortableClient::connect(path).await.unwrap();
        assert_eq!(client.ran().await.unwrap(), 0);
        // The first round makes what a process creates once (Wine opens
        // some objects lazily); the second must leave the count unchanged.
        calls(&client, &read_only, &read_write, &write_only).await;
        assert_eq!(client.ran().await.unwrap(), 2, "refused calls ran nothing");
        let before = handoff::count_open_handles().unwrap();
        calls(&client, &read_only, &read_write, &write_only).await;
        assert_eq!(client.ran().await.unwrap(), 4, "refused calls ran nothing");

        // Every handle the calls made here is closed again (the client's
        // reader may be between two reads for a moment: let it settle).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = handoff::count_open_handles().unwrap();
            if now == before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "client: {before} handles before the calls, {now} after"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

/// One round of calls: in handles checked on both sides, an out handle, a
/// context handle.
async fn calls(
    client: &PortableClient,
    read_only: &std::fs::File,
    read_write: &std::fs::File,
    write_only: &std::fs::File,
) {
    // Declared read: a read-only handle passes as it is, a read-write
    // one is narrowed by the client before it is sent.
    for source in [read_only, read_write] {
        assert_eq!(
            client.read_file(source).await.unwrap(),
            "hello from the client"
        );
    }

    // A handle lacking the declared right: refused before sending.
    match client.read_file(write_only).await {
        Err(CallError::Handoff(Error::WrongAccess { expected, actual })) => {
            assert_eq!(expected, Access::READ);
            assert_eq!(actual, Access::WRITE);
        }
        other => panic!("{other:?}"),
    }

    // The wrong kind, and more rights than declared (a client that
    // skips its own checks): refused by the server before the method.
    let (pipe_reader, _pipe_writer) = std::io::pipe().unwrap();
    assert_wrong_kind(
        fault(client.read_file(&pipe_reader).await),
        "source",
        "file",
        "pipe",
    );
    drop((pipe_reader, _pipe_writer));
    let mut call = Call::new(0);
    let index = call.unchecked_handle(read_write).unwrap();
    call.args(&(index,)).unwrap();
    let mut reply = client.raw().call(call).await.unwrap();
    assert_wrong_access(
        fault(reply.decode::<String, String>()),
        "source",
        "read",
        "read+write",
    );
    drop(reply);
    // An out handle: owned by the caller, checked on arrival.
    let region = client.region("from the server".into()).await.unwrap();
    assert!(matches!(region.kind().unwrap(), Kind::SharedMemory { .. }));
    assert_eq!(region.access().unwrap(), Access::READ);
    assert_eq!(
        StartupData::open(region).unwrap().bytes(),
        b"from the server"
    );

    // A context handle.
    let session = client.open("mine".into()).await.unwrap();
    assert_eq!(client.label(&session).await.unwrap(), "mine");
    client.close_context(session).await.unwrap();
}

#[test]
fn handles_in_and_out_across_processes() {
    if role().is_some() {
        client_scenario(&std::env::var(RPC_PATH_ENV).unwrap());
        return;
    }
    without_leaks_once_warm(|| {
        let server = start_server();
        let path = server.path.to_str().unwrap().to_owned();
        let child = spawn_plain_with(this_test!(), "client", &[(RPC_PATH_ENV, &path)]);
        assert_success(child);
        wait_until("the context ran down", || {
            server.stats.rundowns.lock().unwrap().get("mine") == Some(&2)
        });
        let stats = server.stop();
        assert_eq!(stats.ran.load(Ordering::SeqCst), 4);
        assert_eq!(stats.opened.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn context_rundown_runs_once_per_killed_client() {
    const CLIENTS: usize = 6;
    if role().is_some() {
        let index: usize = std::env::var(RPC_INDEX_ENV).unwrap().parse().unwrap();
        let parent = parent_channel();
        let client = PortableBlockingClient::connect(std::env::var(RPC_PATH_ENV).unwrap()).unwrap();
        let session = client.open(format!("victim-{index}")).unwrap();
        assert_eq!(client.label(&session).unwrap(), format!("victim-{index}"));
        ready_to_be_killed(&parent, index, || {
            let _ = client.hold(&session);
        });
    }
    without_leaks_once_warm(|| {
        {
            let server = start_server();
            let mut children = Vec::new();
            for i in 0..CLIENTS {
                let (ours, child) = server.spawn_client(this_test!(), "victim", i);
                children.push((ours, child));
            }
            for (ours, _) in &children {
                assert_eq!(ours.recv().unwrap().bytes, b"ready");
            }
            wait_until("the holding calls are in flight", || {
                server.stats.holding.load(Ordering::SeqCst) == (CLIENTS / 2) as u64
            });
            assert!(
                server.stats.rundowns.lock().unwrap().is_empty(),
                "nothing ran down while the clients lived"
            );
            for (_, mut child) in children {
                child.kill().unwrap();
                let status = child.wait().unwrap();
                assert!(!status.success());
            }
            wait_until("every killed client's context ran down", || {
                server.stats.rundowns.lock().unwrap().values().sum::<u32>() as usize >= CLIENTS
            });
            // Give a second run of any rundown the chance to show itself.
            std::thread::sleep(Duration::from_millis(200));
            let stats = server.stop();
            assert_eq!(stats.opened.load(Ordering::SeqCst), CLIENTS as u64);
            let rundowns = stats.rundowns.lock().unwrap();
            assert_eq!(rundowns.len(), CLIENTS, "one rundown per client");
            for (label, count) in rundowns.iter() {
                assert_eq!(*count, 1, "{label} ran down {count} times");
            }
        }
    });
}
