//! RPC across real processes: handle parameters checked on both sides,
//! context handles run down exactly once, handshakes, hostile frames,
//! concurrency and limits. The server runs in the test process; clients are
//! children re-running this binary, or tasks in the same runtime.
#![cfg(target_os = "linux")]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use handoff::__private::Call;
use handoff::rpc::{CallError, Context, Fault, Server};
use handoff::{
    Access, AsHandle, BorrowedHandle, Channel, Error, Handle, Kind, Limits, StartupData,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum TestError {
    Refused(String),
    Io(String),
}

fn io(e: impl std::fmt::Display) -> TestError {
    TestError::Io(e.to_string())
}

/// Per-client state behind a context handle.
#[derive(Debug)]
pub struct Session {
    label: String,
    notes: Mutex<Vec<String>>,
}

#[handoff::interface(name = "handoff.test.Files", version = 3)]
pub trait Files {
    /// 0
    async fn echo(&self, text: String) -> Result<String, TestError>;
    /// 1: an application error, or a panic if `why` is "panic".
    async fn fail(&self, why: String) -> Result<(), TestError>;
    /// 2
    async fn write_file(
        &self,
        #[handle(file, write)] target: BorrowedHandle<'_>,
        text: String,
    ) -> Result<u64, TestError>;
    /// 3
    async fn read_pipe(
        &self,
        #[handle(pipe, read)] source: BorrowedHandle<'_>,
    ) -> Result<String, TestError>;
    /// 4
    async fn region_len(
        &self,
        #[handle(shared_memory, read)] region: BorrowedHandle<'_>,
    ) -> Result<u64, TestError>;
    /// 5: whether `maybe` came, and the sum of the events' counters.
    async fn count_some(
        &self,
        #[handle(any)] maybe: Option<BorrowedHandle<'_>>,
        #[handle(event, read_write, max = 8)] events: Vec<BorrowedHandle<'_>>,
    ) -> Result<(bool, u64), TestError>;
    /// 6: keeps a duplicate beyond the call.
    async fn keep(&self, #[handle(file, read)] file: BorrowedHandle<'_>) -> Result<(), TestError>;
    /// 7
    #[out(shared_memory, read)]
    async fn region(&self, text: String) -> Result<Handle, TestError>;
    /// 8
    #[out(event, read_write, max = 32)]
    async fn events(&self, count: u32) -> Result<Vec<Handle>, TestError>;
    /// 9: the sum of the counters of the events handed out by `events`.
    async fn signalled(&self) -> Result<u64, TestError>;
    /// 10
    #[out(file, read)]
    async fn maybe_file(&self, want: bool) -> Result<Option<Handle>, TestError>;
    /// 11: declares a file, returns a pipe.
    #[out(file, read)]
    async fn lie(&self) -> Result<Handle, TestError>;
    /// 12: how many handle-taking methods ran.
    async fn ran(&self) -> Result<u64, TestError>;
    /// 13
    async fn open(&self, label: String) -> Result<Context<Session>, TestError>;
    /// 14
    async fn note(&self, #[context] session: &Session, text: String) -> Result<u32, TestError>;
    /// 15: never returns.
    async fn hold(&self, #[context] session: &Session) -> Result<(), TestError>;
    /// 16: returns once `key` is released.
    async fn wait(&self, key: u32) -> Result<u32, TestError>;
}

/// The same name and version with another signature.
mod other_signature {
    use super::TestError;

    #[handoff::interface(name = "handoff.test.Files", version = 3)]
    pub trait Files {
        async fn echo(&self, text: String, loud: bool) -> Result<String, TestError>;
    }
}

/// The same name, a later version.
mod later_version {
    use super::TestError;

    #[handoff::interface(name = "handoff.test.Files", version = 4)]
    pub trait Files {
        async fn echo(&self, text: String) -> Result<String, TestError>;
    }
}

#[derive(Default)]
struct Stats {
    ran: AtomicU64,
    opened: AtomicU64,
    holding: AtomicU64,
    waiting: AtomicU64,
    rundowns: Mutex<HashMap<String, u32>>,
    events: Mutex<Vec<Handle>>,
    kept: Mutex<Vec<Handle>>,
    released: Mutex<Option<tokio::sync::watch::Sender<HashSet<u32>>>>,
}

impl Stats {
    fn rundown_total(&self) -> u32 {
        self.rundowns.lock().unwrap().values().sum()
    }

    fn release(&self, key: u32) {
        if let Some(tx) = &*self.released.lock().unwrap() {
            tx.send_modify(|set| {
                set.insert(key);
            });
        }
    }
}

struct Impl {
    stats: Arc<Stats>,
    released: tokio::sync::watch::Receiver<HashSet<u32>>,
}

fn read_counter(h: BorrowedHandle<'_>) -> u64 {
    let mut buf = [0u8; 8];
    match rustix::io::read(h, &mut buf) {
        Ok(8) => u64::from_ne_bytes(buf),
        _ => 0,
    }
}

impl Files for Impl {
    async fn echo(&self, text: String) -> Result<String, TestError> {
        Ok(text)
    }

    async fn fail(&self, why: String) -> Result<(), TestError> {
        if why == "panic" {
            panic!("the test asked for a panic");
        }
        Err(TestError::Refused(why))
    }

    async fn write_file(&self, target: BorrowedHandle<'_>, text: String) -> Result<u64, TestError> {
        self.stats.ran.fetch_add(1, Ordering::SeqCst);
        let n = rustix::io::write(target, text.as_bytes()).map_err(io)?;
        Ok(n as u64)
    }

    async fn read_pipe(&self, source: BorrowedHandle<'_>) -> Result<String, TestError> {
        self.stats.ran.fetch_add(1, Ordering::SeqCst);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = rustix::io::read(source, &mut buf).map_err(io)?;
            if n == 0 {
                return String::from_utf8(out).map_err(io);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    async fn region_len(&self, region: BorrowedHandle<'_>) -> Result<u64, TestError> {
        self.stats.ran.fetch_add(1, Ordering::SeqCst);
        match region.kind().map_err(io)? {
            Kind::SharedMemory { size, .. } => Ok(size),
            other => Err(TestError::Refused(other.to_string())),
        }
    }

    async fn count_some(
        &self,
        maybe: Option<BorrowedHandle<'_>>,
        events: Vec<BorrowedHandle<'_>>,
    ) -> Result<(bool, u64), TestError> {
        self.stats.ran.fetch_add(1, Ordering::SeqCst);
        Ok((maybe.is_some(), events.into_iter().map(read_counter).sum()))
    }

    async fn keep(&self, file: BorrowedHandle<'_>) -> Result<(), TestError> {
        self.stats.ran.fetch_add(1, Ordering::SeqCst);
        self.stats
            .kept
            .lock()
            .unwrap()
            .push(file.try_clone_to_owned().map_err(io)?);
        Ok(())
    }

    async fn region(&self, text: String) -> Result<Handle, TestError> {
        handoff::startup::create(text.as_bytes()).map_err(io)
    }

    async fn events(&self, count: u32) -> Result<Vec<Handle>, TestError> {
        let mut out = Vec::new();
        for _ in 0..count {
            let fd = rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .map_err(io)?;
            let h = Handle::from(fd);
            self.stats
                .events
                .lock()
                .unwrap()
                .push(h.try_clone().map_err(io)?);
            out.push(h);
        }
        Ok(out)
    }

    async fn signalled(&self) -> Result<u64, TestError> {
        let events = std::mem::take(&mut *self.stats.events.lock().unwrap());
        Ok(events.iter().map(|e| read_counter(e.borrow())).sum())
    }

    async fn maybe_file(&self, want: bool) -> Result<Option<Handle>, TestError> {
        if !want {
            return Ok(None);
        }
        let file = std::fs::File::open(std::env::current_exe().map_err(io)?).map_err(io)?;
        Ok(Some(file.into()))
    }

    async fn lie(&self) -> Result<Handle, TestError> {
        let (reader, _writer) = std::io::pipe().map_err(io)?;
        Ok(reader.into())
    }

    async fn ran(&self) -> Result<u64, TestError> {
        Ok(self.stats.ran.load(Ordering::SeqCst))
    }

    async fn open(&self, label: String) -> Result<Context<Session>, TestError> {
        self.stats.opened.fetch_add(1, Ordering::SeqCst);
        let stats = self.stats.clone();
        Ok(Context::with_rundown(
            Session {
                label,
                notes: Mutex::new(Vec::new()),
            },
            move |session| {
                *stats
                    .rundowns
                    .lock()
                    .unwrap()
                    .entry(session.label)
                    .or_default() += 1;
            },
        ))
    }

    async fn note(&self, session: &Session, text: String) -> Result<u32, TestError> {
        let mut notes = session.notes.lock().unwrap();
        notes.push(text);
        Ok(notes.len() as u32)
    }

    async fn hold(&self, session: &Session) -> Result<(), TestError> {
        let _ = &session.label;
        self.stats.holding.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn wait(&self, key: u32) -> Result<u32, TestError> {
        self.stats.waiting.fetch_add(1, Ordering::SeqCst);
        let mut rx = self.released.clone();
        let _ = rx.wait_for(|set| set.contains(&key)).await;
        self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
        Ok(key)
    }
}

type TestServer = Serving<Stats>;

fn start_server(
    configure: impl FnOnce(Server<FilesServer<Impl>>) -> Server<FilesServer<Impl>>,
) -> TestServer {
    let stats = Arc::new(Stats::default());
    let (tx, rx) = tokio::sync::watch::channel(HashSet::new());
    *stats.released.lock().unwrap() = Some(tx);
    let imp = Impl {
        stats: stats.clone(),
        released: rx,
    };
    serve(configure(Server::new(FilesServer::new(imp))), stats)
}

impl TestServer {
    /// Stops the server, first releasing the calls waiting on a key; then
    /// drops the handles the implementation kept.
    fn stop_all(self) -> Arc<Stats> {
        self.stats.released.lock().unwrap().take();
        let stats = self.stop();
        stats.events.lock().unwrap().clear();
        stats.kept.lock().unwrap().clear();
        stats
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Connects an async client and runs `test` with it on the server's
    /// runtime.
    fn with_client<F: std::future::Future<Output = ()>>(
        &self,
        test: impl FnOnce(FilesClient) -> F,
    ) {
        self.block_on(async {
            let client = FilesClient::connect(&self.path).await.unwrap();
            test(client).await
        })
    }

    /// Runs this binary's `test` as a child in the role "client", pointed
    /// at this server, and asserts it succeeds.
    fn run_client(&self, test: &str) {
        let (_ours, child) = self.spawn_client(test, "client", 0);
        assert_success(child);
    }
}

/// Runs `test` against a fresh server (one such test at a time), stops the
/// server and checks that no handle leaked; returns the server's counters
/// as they stood once it stopped.
fn with_server(test: impl FnOnce(&TestServer)) -> Arc<Stats> {
    with_configured_server(|s| s, test)
}

/// As `with_server`, with the server's limits set by `configure`.
fn with_configured_server(
    configure: impl FnOnce(Server<FilesServer<Impl>>) -> Server<FilesServer<Impl>>,
    test: impl FnOnce(&TestServer),
) -> Arc<Stats> {
    let _serial = serial();
    let leaks = LeakCheck::new();
    let server = start_server(configure);
    test(&server);
    let stats = server.stop_all();
    leaks.assert();
    stats
}

fn socket_path() -> PathBuf {
    PathBuf::from(std::env::var(RPC_PATH_ENV).expect("socket path"))
}

fn rw_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(name))
        .unwrap()
}

/// A new file in a fresh directory (removed when the returned `TempDir`
/// drops), opened for reading and writing, and again for reading only.
fn rw_and_read_only() -> (tempfile::TempDir, std::fs::File, std::fs::File) {
    let dir = tempfile::tempdir().unwrap();
    let rw = rw_file(dir.path(), "f");
    let read_only = std::fs::File::open(dir.path().join("f")).unwrap();
    (dir, rw, read_only)
}

fn eventfd(value: u64) -> Handle {
    use rustix::event::EventfdFlags;
    let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap();
    if value > 0 {
        rustix::io::write(&fd, &value.to_ne_bytes()).unwrap();
    }
    Handle::from(fd)
}

/// Everything a blocking client can do, checked from the client's side.
fn blocking_client_scenario(path: &Path) {
    let leaks = LeakCheck::new();
    {
        let client = FilesBlockingClient::connect(path).unwrap();
        assert_eq!(
            client.raw().server_identity(),
            &FilesBlockingClient::IDENTITY
        );
        assert_eq!(client.echo("hello".into()).unwrap(), "hello");
        match client.fail("no".into()) {
            Err(CallError::Application(TestError::Refused(why))) => assert_eq!(why, "no"),
            other => panic!("expected the application's error, got {other:?}"),
        }

        // In: a read-write file goes over write-only and the server writes.
        let dir = tempfile::tempdir().unwrap();
        let file = rw_file(dir.path(), "out.txt");
        assert_eq!(
            client
                .write_file(&file, "written by the server".into())
                .unwrap(),
            21
        );
        assert_eq!(
            std::fs::read(dir.path().join("out.txt")).unwrap(),
            b"written by the server"
        );

        // In: a pipe's read end; the server reads to end of file.
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"through the pipe").unwrap();
        drop(writer);
        assert_eq!(client.read_pipe(&reader).unwrap(), "through the pipe");

        // In: read-only shared memory; optional and array parameters.
        let region = sealed_memfd(b"0123456789").restrict(Access::READ).unwrap();
        assert_eq!(client.region_len(&region).unwrap(), 10);
        let events = [eventfd(1), eventfd(2), eventfd(3)];
        let borrowed: Vec<BorrowedHandle<'_>> = events.iter().map(Handle::borrow).collect();
        assert_eq!(
            client
                .count_some(Some(file.as_handle()), &borrowed)
                .unwrap(),
            (true, 6)
        );
        assert_eq!(client.count_some(None, &[]).unwrap(), (false, 0));
        let too_many: Vec<BorrowedHandle<'_>> = (0..9).map(|i| events[i % 3].borrow()).collect();
        assert!(matches!(
            client.count_some(None, &too_many),
            Err(CallError::Handoff(Error::TooLarge { .. }))
        ));
        let read_only = std::fs::File::open(dir.path().join("out.txt")).unwrap();
        client.keep(&read_only).unwrap();

        // Out: sealed shared memory, mapped read-only here.
        let region = client.region("shared with you".into()).unwrap();
        assert_eq!(region.access().unwrap(), Access::READ);
        let mapped = StartupData::open(region).unwrap();
        assert_eq!(mapped.bytes(), b"shared with you");

        // Out: an array of events, signalled here, seen there.
        let events = client.events(5).unwrap();
        assert_eq!(events.len(), 5);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.kind().unwrap(), Kind::Event);
            assert_eq!(e.access().unwrap(), Access::READ_WRITE);
            assert!(!e.is_inheritable().unwrap());
            rustix::io::write(e, &(i as u64 + 1).to_ne_bytes()).unwrap();
        }
        assert_eq!(client.signalled().unwrap(), 15);
        drop(events);

        // Out: optional, and a lying server.
        let file = client.maybe_file(true).unwrap().expect("a file");
        assert_eq!(file.kind().unwrap(), Kind::File);
        assert_eq!(file.access().unwrap(), Access::READ);
        assert!(client.maybe_file(false).unwrap().is_none());
        match client.lie() {
            Err(CallError::Handoff(Error::WrongKind { expected, actual })) => {
                assert_eq!(expected, handoff::KindName::File);
                assert!(matches!(actual, Kind::Pipe { .. }));
            }
            other => panic!("expected the client to reject the pipe, got {other:?}"),
        }

        // Contexts.
        let session = client.open("round-trip".into()).unwrap();
        assert_eq!(client.note(&session, "one".into()).unwrap(), 1);
        assert_eq!(client.note(&session, "two".into()).unwrap(), 2);
        client.close_context(session).unwrap();
        assert_eq!(client.ran().unwrap(), 6);
    }
    leaks.assert();
}

#[test]
fn blocking_client_round_trips_across_processes() {
    if role().is_some() {
        blocking_client_scenario(&socket_path());
        return;
    }
    let stats = with_server(|server| {
        server.run_client(this_test!());
    });
    assert_eq!(
        *stats.rundowns.lock().unwrap(),
        HashMap::from([("round-trip".to_owned(), 1)])
    );
    assert_eq!(stats.ran.load(Ordering::SeqCst), 6);
}

#[test]
fn async_client_makes_concurrent_calls_across_processes() {
    if role().is_some() {
        let leaks = LeakCheck::new();
        {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = FilesClient::connect(socket_path()).await.unwrap();
                let dir = tempfile::tempdir().unwrap();
                let file = rw_file(dir.path(), "f");
                let (a, b, c, d) = tokio::join!(
                    client.echo("a".into()),
                    client.region("b".into()),
                    client.write_file(&file, "c".into()),
                    client.events(3),
                );
                assert_eq!(a.unwrap(), "a");
                assert_eq!(StartupData::open(b.unwrap()).unwrap().bytes(), b"b");
                assert_eq!(c.unwrap(), 1);
                assert_eq!(d.unwrap().len(), 3);
                let session = client.open("async".into()).await.unwrap();
                assert_eq!(client.note(&session, "x".into()).await.unwrap(), 1);
                // Not closed: the disconnect runs it down.
            });
        }
        leaks.assert();
        return;
    }
    let stats = with_server(|server| {
        server.run_client(this_test!());
        wait_until("the disconnected client's context ran down", || {
            server.stats.rundown_total() == 1
        });
    });
    assert_eq!(stats.rundowns.lock().unwrap().get("async"), Some(&1));
}

#[test]
fn wrong_kind_is_rejected_before_the_method_runs() {
    with_server(|server| {
        let dir = tempfile::tempdir().unwrap();
        server.with_client(|client| async move {
            // A pipe where a file is declared.
            let (_reader, writer) = std::io::pipe().unwrap();
            assert_wrong_kind(
                fault(client.write_file(&writer, "x".into()).await),
                "target",
                "file",
                "pipe",
            );

            // A FIFO where shared memory is declared.
            let fifo = dir.path().join("fifo");
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &fifo,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
                0,
            )
            .unwrap();
            let fifo = rustix::fs::open(
                &fifo,
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::NONBLOCK
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            match fault(client.region_len(&fifo).await) {
                Fault::WrongKind {
                    parameter,
                    expected,
                    ..
                } => {
                    assert_eq!(parameter, "region");
                    assert_eq!(expected, "shared-memory");
                }
                other => panic!("{other:?}"),
            }

            // A file where events are declared, in an array.
            let file = rw_file(dir.path(), "not-an-event");
            let f = fault(
                client
                    .count_some(None, &[eventfd(0).borrow(), file.as_handle()])
                    .await,
            );
            assert!(
                matches!(f, Fault::WrongKind { ref parameter, .. } if parameter == "events"),
                "{f:?}"
            );

            assert_eq!(client.ran().await.unwrap(), 0, "no method ran");
            assert_eq!(
                client.echo("still usable".into()).await.unwrap(),
                "still usable"
            );
        });
    });
}

#[test]
fn more_or_fewer_rights_are_rejected_before_the_method_runs() {
    with_server(|server| {
        server.with_client(|client| async move {
            let (_dir, rw, read_only) = rw_and_read_only();

            // Fewer rights, a well-behaved client: refused before sending.
            match client.write_file(&read_only, "x".into()).await {
                Err(CallError::Handoff(Error::WrongAccess { expected, actual })) => {
                    assert_eq!(expected, Access::WRITE);
                    assert_eq!(actual, Access::READ);
                }
                other => panic!("{other:?}"),
            }

            // A client that skips its own checks meets the server's.
            let raw_write_file = |handle: BorrowedHandle<'_>| {
                let mut call = Call::new(2);
                let index = call.unchecked_handle(handle).unwrap();
                call.args(&(index, "x")).unwrap();
                call
            };
            for (handle, actual) in [
                (read_only.as_handle(), "read"),
                (rw.as_handle(), "read+write"),
            ] {
                let mut reply = client.raw().call(raw_write_file(handle)).await.unwrap();
                match fault(reply.decode::<u64, TestError>()) {
                    Fault::WrongAccess {
                        parameter,
                        expected,
                        actual: got,
                    } => {
                        assert_eq!(parameter, "target");
                        assert_eq!(expected, "write");
                        assert_eq!(got, actual);
                    }
                    other => panic!("{other:?}"),
                }
            }

            // Read-write shared memory where read-only is declared.
            let memfd = sealed_memfd(b"abc");
            assert_eq!(memfd.access().unwrap(), Access::READ_WRITE);
            let mut call = Call::new(4);
            let index = call.unchecked_handle(&memfd).unwrap();
            call.args(&(index,)).unwrap();
            let mut reply = client.raw().call(call).await.unwrap();
            assert!(matches!(
                fault(reply.decode::<u64, TestError>()),
                Fault::WrongAccess { .. }
            ));

            // The declared access passes, narrowed by the client.
            assert_eq!(client.region_len(&memfd).await.unwrap(), 3);
            assert_eq!(
                client.ran().await.unwrap(),
                1,
                "only the last call ran a method"
            );
        });
    });
}

#[test]
fn context_rundown_runs_once_per_killed_client() {
    const CLIENTS: usize = 100;
    const BATCH: usize = 10;
    if role().is_some() {
        let index: usize = std::env::var(RPC_INDEX_ENV).unwrap().parse().unwrap();
        let parent = parent_channel();
        let client = FilesBlockingClient::connect(socket_path()).unwrap();
        let session = client.open(format!("victim-{index}")).unwrap();
        client.note(&session, "about to be killed".into()).unwrap();
        ready_to_be_killed(&parent, index, || {
            let _ = client.hold(&session);
        });
    }
    let stats = with_server(|server| {
        let mut holders = 0;
        for batch in 0..CLIENTS / BATCH {
            let mut children = Vec::new();
            for i in batch * BATCH..(batch + 1) * BATCH {
                let (ours, child) = server.spawn_client(this_test!(), "victim", i);
                children.push((ours, child));
                holders += i % 2;
            }
            for (ours, _) in &children {
                assert_eq!(ours.recv().unwrap().bytes, b"ready");
            }
            wait_until("the holding calls are in flight", || {
                server.stats.holding.load(Ordering::SeqCst) == holders as u64
            });
            for (_, mut child) in children {
                child.kill().unwrap();
                let status = child.wait().unwrap();
                assert!(!status.success());
            }
        }
        wait_until("every killed client's context ran down", || {
            server.stats.rundown_total() as usize >= CLIENTS
        });
        // Give a second run of any rundown the chance to show itself.
        std::thread::sleep(Duration::from_millis(200));
    });
    assert_eq!(stats.opened.load(Ordering::SeqCst), CLIENTS as u64);
    let rundowns = stats.rundowns.lock().unwrap();
    assert_eq!(rundowns.len(), CLIENTS, "one rundown per client");
    for (label, count) in rundowns.iter() {
        assert_eq!(*count, 1, "{label} ran down {count} times");
    }
}

/// Builds raw frames for the tests that speak the wire format directly.
mod raw {
    use super::*;
    use handoff::__private::wire::{frame, FrameType, Header, HEADER_LEN};

    pub fn hello(identity: &handoff::rpc::Identity) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(identity.name.len() as u64).to_le_bytes());
        body.extend_from_slice(identity.name.as_bytes());
        body.extend_from_slice(&identity.version.to_le_bytes());
        body.extend_from_slice(&identity.hash.to_le_bytes());
        let mut f = vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        f.extend_from_slice(&(body.len() as u32).to_le_bytes());
        f.extend_from_slice(&body);
        f
    }

    /// Connects and shakes hands as the test interface, by hand.
    pub fn connect(path: &Path) -> Channel {
        let ch = Channel::connect(path).unwrap();
        ch.send(&hello(&FilesClient::IDENTITY), &[]).unwrap();
        let welcome = ch.recv().unwrap();
        assert_eq!(welcome.bytes[1], FrameType::Welcome as u8);
        ch
    }

    pub fn call<A: Serialize>(method: u32, id: u64, handles: usize, args: &A) -> Vec<u8> {
        frame(FrameType::Call, method, id, handles, args).unwrap()
    }

    /// A Close frame for the context `token`, as call `id`.
    pub fn close(id: u64, token: u64) -> Vec<u8> {
        frame(FrameType::Close, 0, id, 0, &token).unwrap()
    }

    /// `good` with byte `at` set to `value`.
    pub fn with_byte(good: &[u8], at: usize, value: u8) -> Vec<u8> {
        let mut b = good.to_vec();
        b[at] = value;
        b
    }

    /// The next frame: its header and body.
    pub fn next(ch: &Channel) -> (Header, Vec<u8>, usize) {
        let msg = ch.recv().unwrap();
        let header = Header::decode(&msg.bytes, msg.handles.len()).unwrap();
        (header, msg.bytes[HEADER_LEN..].to_vec(), msg.handles.len())
    }

    pub fn fault_of(body: &[u8]) -> Fault {
        let mut f = vec![0u8; HEADER_LEN];
        f.extend_from_slice(body);
        handoff::__private::wire::body::<Fault>(&f).unwrap()
    }
}

#[test]
fn contexts_belong_to_one_connection_and_close_once() {
    use handoff::__private::wire::FrameType;
    let stats = with_server(|server| {
        let ch = raw::connect(&server.path);
        // open("mine") → Ok(token)
        ch.send(&raw::call(13, 1, 0, &("mine",)), &[]).unwrap();
        let (header, body, _) = raw::next(&ch);
        assert_eq!((header.ty, header.call_id), (FrameType::Reply, 1));
        assert_eq!(&body[..4], &[0, 0, 0, 0], "Ok");
        let token = u64::from_le_bytes(body[4..12].try_into().unwrap());
        assert_ne!(token, 0);

        // The token means nothing on another connection.
        let other = raw::connect(&server.path);
        other
            .send(&raw::call(14, 1, 0, &(token, "x")), &[])
            .unwrap();
        let (header, body, _) = raw::next(&other);
        assert_eq!(header.ty, FrameType::Fault);
        assert_eq!(
            raw::fault_of(&body),
            Fault::UnknownContext {
                parameter: "session".into()
            }
        );
        // Nor can another connection close it.
        other.send(&raw::close(2, token), &[]).unwrap();
        assert_eq!(raw::next(&other).0.ty, FrameType::Fault);

        // A guessed token is refused too.
        ch.send(&raw::call(14, 2, 0, &(token ^ 1, "x")), &[])
            .unwrap();
        assert_eq!(raw::next(&ch).0.ty, FrameType::Fault);
        ch.send(&raw::call(14, 3, 0, &(token, "x")), &[]).unwrap();
        assert_eq!(raw::next(&ch).0.ty, FrameType::Reply);

        // Close: rundown once; the token is dead afterwards.
        ch.send(&raw::close(4, token), &[]).unwrap();
        let (header, body, _) = raw::next(&ch);
        assert_eq!((header.ty, body.len()), (FrameType::Reply, 0));
        assert_eq!(server.stats.rundown_total(), 1);
        ch.send(&raw::call(14, 5, 0, &(token, "x")), &[]).unwrap();
        assert_eq!(raw::next(&ch).0.ty, FrameType::Fault);
        ch.send(&raw::close(6, token), &[]).unwrap();
        assert_eq!(raw::next(&ch).0.ty, FrameType::Fault);
        drop((ch, other));
        std::thread::sleep(Duration::from_millis(100));
    });
    assert_eq!(
        *stats.rundowns.lock().unwrap(),
        HashMap::from([("mine".to_owned(), 1)])
    );
}

#[test]
fn interface_mismatch_names_both_sides() {
    with_server(|server| {
        server.block_on(async {
            assert_ne!(
                other_signature::FilesClient::IDENTITY.hash,
                FilesClient::IDENTITY.hash
            );
            let ours = FilesClient::IDENTITY.to_string();
            for theirs in [
                other_signature::FilesClient::IDENTITY.to_string(),
                later_version::FilesClient::IDENTITY.to_string(),
            ] {
                let result = if theirs.contains(" v4 ") {
                    later_version::FilesClient::connect(&server.path)
                        .await
                        .map(drop)
                } else {
                    other_signature::FilesClient::connect(&server.path)
                        .await
                        .map(drop)
                };
                match result {
                    Err(e @ Error::InterfaceMismatch { .. }) => {
                        let text = e.to_string();
                        assert!(text.contains(&theirs) && text.contains(&ours), "{text}");
                        assert!(
                            text.contains("handoff.test.Files v3")
                                && text.contains("signature hash")
                        );
                    }
                    other => panic!("expected a mismatch, got {other:?}"),
                }
            }
        });
        // The blocking client sees the same.
        let e = later_version::FilesBlockingClient::connect(&server.path).unwrap_err();
        assert!(
            e.to_string().contains("v4") && e.to_string().contains("v3"),
            "{e}"
        );
    });
}

#[test]
fn golden_frames_on_a_real_connection() {
    with_configured_server(
        |s| {
            s.max_in_flight(7).limits(Limits {
                max_bytes: 4096,
                max_handles: 16,
            })
        },
        |server| {
            let id = FilesClient::IDENTITY;
            let ch = Channel::connect(&server.path).unwrap();
            ch.send(&raw::hello(&id), &[]).unwrap();
            let welcome = ch.recv().unwrap().bytes;
            let mut expected = vec![1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let body_len = 1 + 8 + id.name.len() + 4 + 8 + 8 + 4 + 4;
            expected.extend_from_slice(&(body_len as u32).to_le_bytes());
            expected.push(1); // accepted
            expected.extend_from_slice(&(id.name.len() as u64).to_le_bytes());
            expected.extend_from_slice(id.name.as_bytes());
            expected.extend_from_slice(&3u32.to_le_bytes());
            expected.extend_from_slice(&id.hash.to_le_bytes());
            expected.extend_from_slice(&4096u64.to_le_bytes());
            expected.extend_from_slice(&16u32.to_le_bytes());
            expected.extend_from_slice(&7u32.to_le_bytes());
            assert_eq!(welcome, expected);

            // echo("hi") as call 1, written out byte by byte.
            #[rustfmt::skip]
        let call: &[u8] = &[
            0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // version, CALL, flags, method 0
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // call id 1
            0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, // 0 handles, 10 body bytes
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'h', b'i',
        ];
            ch.send(call, &[]).unwrap();
            #[rustfmt::skip]
        let reply: &[u8] = &[
            0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // version, REPLY
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // call id 1
            0x00, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00, // 0 handles, 14 body bytes
            0x00, 0x00, 0x00, 0x00,                         // Ok
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'h', b'i',
        ];
            assert_eq!(ch.recv().unwrap().bytes, reply);

            // fail("no") → Err(Refused("no")): the application's error.
            ch.send(&raw::call(1, 2, 0, &("no",)), &[]).unwrap();
            let (_, body, _) = raw::next(&ch);
            assert_eq!(
                body,
                [&[1, 0, 0, 0][..], &[0, 0, 0, 0], &2u64.to_le_bytes(), b"no"].concat()
            );

            // region("x") → Ok(handle index 0) with one handle attached.
            ch.send(&raw::call(7, 3, 0, &("x",)), &[]).unwrap();
            let (header, body, handles) = raw::next(&ch);
            assert_eq!((header.handles, handles), (1, 1));
            assert_eq!(body, [0, 0, 0, 0, 0, 0, 0, 0]);
            drop(ch);
        },
    );
}

#[test]
fn malformed_frames_get_a_fault_or_a_closed_connection() {
    use handoff::__private::wire::FrameType;
    with_server(|server| {
        // Broken headers: a connection-level fault (call id 0), then the
        // connection closes.
        let good = raw::call(0, 1, 0, &("x",));
        let broken: Vec<Vec<u8>> = vec![
            vec![1, 3, 0],
            raw::with_byte(&good, 0, 9),
            raw::with_byte(&good, 1, 77),
            raw::with_byte(&good, 2, 1),
            raw::with_byte(&good, 8, 0),
            raw::with_byte(&good, 20, 200),
            raw::hello(&FilesClient::IDENTITY),
            handoff::__private::wire::frame(FrameType::Reply, 0, 1, 0, &()).unwrap(),
        ];
        for frame in &broken {
            let ch = raw::connect(&server.path);
            ch.send(frame, &[]).unwrap();
            let (header, body, _) = raw::next(&ch);
            assert_eq!(
                (header.ty, header.call_id),
                (FrameType::Fault, 0),
                "{frame:?}"
            );
            assert!(matches!(raw::fault_of(&body), Fault::Malformed { .. }));
            assert!(
                matches!(ch.recv(), Err(Error::Disconnected { .. })),
                "{frame:?}"
            );
        }

        // A header announcing handles that did not come, with handles that
        // did: closed, and the handles with it.
        let ch = raw::connect(&server.path);
        let file = std::fs::File::open("/dev/null").unwrap();
        ch.send(&raw::call(6, 1, 2, &(0u32,)), &[file.as_handle()])
            .unwrap();
        assert_eq!(raw::next(&ch).0.call_id, 0);
        assert!(matches!(ch.recv(), Err(Error::Disconnected { .. })));

        // No handshake at all.
        let ch = Channel::connect(&server.path).unwrap();
        ch.send(&good, &[]).unwrap();
        assert_eq!(raw::next(&ch).0.ty, FrameType::Fault);
        assert!(matches!(ch.recv(), Err(Error::Disconnected { .. })));

        // Bad calls on a good connection: a fault for that call, and the
        // connection goes on.
        let ch = raw::connect(&server.path);
        let bad_calls: Vec<(Vec<u8>, Vec<BorrowedHandle<'_>>)> = vec![
            (raw::call(999, 1, 0, &()), vec![]),
            (raw::call(0, 2, 0, &()), vec![]),
            (raw::call(0, 3, 0, &(1u8,)), vec![]),
            (raw::call(0, 4, 0, &("x", 5u8)), vec![]),
            (raw::call(0, 5, 1, &("x",)), vec![file.as_handle()]),
            (raw::call(6, 6, 1, &(3u32,)), vec![file.as_handle()]),
            (
                raw::call(5, 7, 2, &(Some(0u32), vec![0u32])),
                vec![file.as_handle(), file.as_handle()],
            ),
            (raw::call(5, 8, 0, &(None::<u32>, vec![0u32; 9])), vec![]),
            (raw::call(14, 9, 0, &(7u64, "x")), vec![]),
        ];
        for (i, (frame, handles)) in bad_calls.iter().enumerate() {
            ch.send(frame, handles).unwrap();
            let (header, body, _) = raw::next(&ch);
            assert_eq!(
                (header.ty, header.call_id),
                (FrameType::Fault, i as u64 + 1)
            );
            let fault = raw::fault_of(&body);
            if i == 0 {
                assert_eq!(fault, Fault::UnknownMethod { method: 999 });
            }
        }
        ch.send(&raw::call(0, 100, 0, &("fine",)), &[]).unwrap();
        assert_eq!(raw::next(&ch).0.ty, FrameType::Reply);

        // Noise: never a panic, and the server keeps serving.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let ch = raw::connect(&server.path);
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let mut noise: Vec<u8> = (0..len)
                .map(|i| (seed >> (i % 8 * 8)) as u8 ^ i as u8)
                .collect();
            if len > 2 {
                noise[0] = 1;
                noise[1] = (seed % 7) as u8;
            }
            if noise.is_empty() {
                noise.push(0);
            }
            ch.send(&noise, &[]).unwrap();
            let _ = ch.recv();
        }
        server.with_client(|client| async move {
            assert_eq!(client.echo("alive".into()).await.unwrap(), "alive");
            assert_eq!(client.ran().await.unwrap(), 0);
        });
        drop((ch, file));
    });
}

#[test]
fn a_slow_call_does_not_hold_up_others_and_calls_in_flight_are_limited() {
    use handoff::__private::wire::FrameType;
    with_configured_server(
        |s| s.max_in_flight(2),
        |server| {
            server.with_client(|client| async move {
                let slow = tokio::spawn({
                    let client = client.clone();
                    async move { client.wait(1).await }
                });
                let fast =
                    tokio::time::timeout(Duration::from_secs(10), client.echo("fast".into())).await;
                assert_eq!(fast.unwrap().unwrap(), "fast");
                assert!(!slow.is_finished());

                // The client queues beyond the server's limit instead of
                // drawing faults.
                let more: Vec<_> = (2..5)
                    .map(|k| {
                        let client = client.clone();
                        tokio::spawn(async move { client.wait(k).await })
                    })
                    .collect();
                let deadline = Instant::now() + Duration::from_secs(20);
                while server.stats.waiting.load(Ordering::SeqCst) < 2 {
                    assert!(Instant::now() < deadline, "the second call never started");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert_eq!(
                    server.stats.waiting.load(Ordering::SeqCst),
                    2,
                    "the rest wait in the client"
                );
                for k in 1..5 {
                    server.stats.release(k);
                }
                assert_eq!(slow.await.unwrap().unwrap(), 1);
                for (k, task) in (2..5).zip(more) {
                    assert_eq!(task.await.unwrap().unwrap(), k);
                }
            });

            // A client that ignores the limit is refused, not queued.
            let ch = raw::connect(&server.path);
            for id in 1..=3 {
                ch.send(&raw::call(16, id, 0, &(10 + id as u32,)), &[])
                    .unwrap();
            }
            let (header, body, _) = raw::next(&ch);
            assert_eq!((header.ty, header.call_id), (FrameType::Fault, 3));
            assert_eq!(raw::fault_of(&body), Fault::Busy { limit: 2 });
            server.stats.release(11);
            server.stats.release(12);
            let mut ids = [raw::next(&ch).0.call_id, raw::next(&ch).0.call_id];
            ids.sort();
            assert_eq!(ids, [1, 2]);

            // A method that panics is a fault, and the server goes on.
            server.with_client(|client| async move {
                assert_eq!(fault(client.fail("panic".into()).await), Fault::Panicked);
                assert_eq!(client.echo("after".into()).await.unwrap(), "after");
            });
            drop(ch);
        },
    );
}

#[test]
fn message_size_is_limited_per_connection() {
    use handoff::__private::wire::FrameType;
    with_configured_server(
        |s| {
            s.limits(Limits {
                max_bytes: 4096,
                max_handles: 4,
            })
        },
        |server| {
            server.with_client(|client| async move {
                match client.echo("x".repeat(5000)).await {
                    Err(CallError::Handoff(Error::TooLarge { limit, .. })) => {
                        assert_eq!(limit, 4096)
                    }
                    other => panic!("expected a refusal before sending, got {other:?}"),
                }
                let events: Vec<Handle> = (0..5).map(|_| eventfd(0)).collect();
                let borrowed: Vec<BorrowedHandle<'_>> = events.iter().map(Handle::borrow).collect();
                assert!(matches!(
                    client.count_some(None, &borrowed).await,
                    Err(CallError::Handoff(Error::TooLarge { .. }))
                ));
                assert_eq!(client.echo("small".into()).await.unwrap(), "small");
            });
            let ch = raw::connect(&server.path);
            ch.send(&raw::call(0, 1, 0, &("x".repeat(5000),)), &[])
                .unwrap();
            let (header, body, _) = raw::next(&ch);
            assert_eq!((header.ty, header.call_id), (FrameType::Fault, 0));
            assert!(matches!(
                raw::fault_of(&body),
                Fault::TooLarge { limit: 4096, .. }
            ));
            assert!(matches!(ch.recv(), Err(Error::Disconnected { .. })));
            drop(ch);
        },
    );
}

#[test]
fn many_clients_at_once() {
    with_server(|server| {
        let path = server.path.clone();
        server.block_on(async move {
            let tasks: Vec<_> = (0..16)
                .map(|i| {
                    let path = path.clone();
                    tokio::spawn(async move {
                        let client = FilesClient::connect(&path).await.unwrap();
                        let session = client.open(format!("client-{i}")).await.unwrap();
                        for j in 0..20u32 {
                            let text = format!("{i}:{j}");
                            assert_eq!(client.echo(text.clone()).await.unwrap(), text);
                            assert_eq!(client.note(&session, text).await.unwrap(), j + 1);
                        }
                        let region = client.region(format!("{i}")).await.unwrap();
                        assert_eq!(
                            StartupData::open(region).unwrap().bytes(),
                            format!("{i}").as_bytes()
                        );
                        client.close_context(session).await.unwrap();
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert_eq!(server.stats.rundown_total(), 16);
    });
}

#[test]
fn in_handles_live_for_the_call_unless_the_method_keeps_a_duplicate() {
    with_server(|server| {
        server.with_client(|client| async move {
            let (_dir, file, read_only) = rw_and_read_only();
            // Client and server share this process: every duplicate made on
            // the way (the client's restricted copy, the server's received
            // one) must be gone when the call returns.
            let before = handoff::count_open_handles().unwrap();
            for _ in 0..10 {
                client.write_file(&file, "x".into()).await.unwrap();
                client
                    .count_some(Some(read_only.as_handle()), &[])
                    .await
                    .unwrap();
            }
            assert_eq!(handoff::count_open_handles().unwrap(), before);
            client.keep(&read_only).await.unwrap();
            assert_eq!(
                handoff::count_open_handles().unwrap(),
                before + 1,
                "the method's duplicate"
            );
            assert_eq!(server.stats.kept.lock().unwrap().len(), 1);
        });
    });
}
