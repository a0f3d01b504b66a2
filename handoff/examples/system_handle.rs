//! Seed 04's MIDL interface, in Rust, across processes:
//!
//! ```idl
//! HRESULT Proc1([in, system_handle(sh_file)] HANDLE writeThisFile);
//! HRESULT Proc2([in, system_handle(sh_pipe, FILE_GENERIC_READ)] HANDLE readThisPipe);
//! HRESULT Proc3([out, system_handle(sh_section)] HANDLE* region);
//! HRESULT Proc4([in] DWORD cEvents, [out, system_handle(sh_event), size_is(cEvents)] HANDLE* pWatchAllTheseEvents);
//! ```
//!
//! plus a context handle whose rundown runs when its client is killed.
//! The launcher starts a server process (tokio), a client process (the
//! blocking client, no tokio), and a victim that opens a context and is
//! killed with SIGKILL.
//!
//! Run: `cargo run -p handoff --example system_handle`

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("this example passes eventfds and memfds: it runs on Linux");
}

#[cfg(target_os = "linux")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    linux::main()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::{BufRead, Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use handoff::rpc::{CallError, Context, Server};
    use handoff::{Access, AsHandle, AsyncListener, BorrowedHandle, Handle, Kind, StartupData};
    use serde::{Deserialize, Serialize};

    /// The application's error, as the server reports it.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Failure(String);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    fn fail(e: impl std::fmt::Display) -> Failure {
        Failure(e.to_string())
    }

    /// Per-client state on the server, behind a context handle.
    #[derive(Debug)]
    pub struct Session {
        client: String,
        lines: Mutex<Vec<String>>,
    }

    #[handoff::interface(name = "example.SystemHandles", version = 1)]
    pub trait SystemHandles {
        /// Proc1: write to a file the client passes with write access.
        async fn write_this_file(
            &self,
            #[handle(file, write)] file: BorrowedHandle<'_>,
            text: String,
        ) -> Result<u64, Failure>;

        /// Proc2: read from a pipe the client passes read-only.
        async fn read_this_pipe(
            &self,
            #[handle(pipe, read)] pipe: BorrowedHandle<'_>,
        ) -> Result<String, Failure>;

        /// Proc3: return a sealed shared-memory region the client maps.
        #[out(shared_memory, read)]
        async fn shared_region(&self, text: String) -> Result<Handle, Failure>;

        /// Proc4: return `count` events the client signals and the server
        /// watches.
        #[out(event, read_write, max = 64)]
        async fn watch_all_these_events(&self, count: u32) -> Result<Vec<Handle>, Failure>;

        /// What the server saw on the events it handed out.
        async fn events_seen(&self) -> Result<Vec<u64>, Failure>;

        /// Opens per-client state.
        async fn open_session(&self, client: String) -> Result<Context<Session>, Failure>;

        /// Adds a line to a session.
        async fn log(&self, #[context] session: &Session, line: String) -> Result<u32, Failure>;

        /// How many sessions have been run down.
        async fn rundowns(&self) -> Result<u32, Failure>;
    }

    const ROLE_ENV: &str = "HANDOFF_EXAMPLE_ROLE";
    const SOCKET_ENV: &str = "HANDOFF_EXAMPLE_SOCKET";

    pub fn main() -> Result<(), Box<dyn std::error::Error>> {
        match std::env::var(ROLE_ENV).as_deref() {
            Ok("server") => server(&socket()),
            Ok("client") => client(&socket()),
            Ok("victim") => victim(&socket()),
            _ => launcher(),
        }
    }

    fn socket() -> PathBuf {
        PathBuf::from(std::env::var(SOCKET_ENV).expect("the launcher sets the socket path"))
    }

    fn spawn(
        role: &str,
        socket: &Path,
        stdin: Stdio,
        stdout: Stdio,
    ) -> std::io::Result<std::process::Child> {
        Command::new(std::env::current_exe()?)
            .env(ROLE_ENV, role)
            .env(SOCKET_ENV, socket)
            .stdin(stdin)
            .stdout(stdout)
            .spawn()
    }

    // ───────────────────────────── launcher ─────────────────────────────

    fn launcher() -> Result<(), Box<dyn std::error::Error>> {
        let me = std::process::id();
        let dir = std::env::temp_dir().join(format!("handoff-system-handle-{me}"));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("rpc.sock");
        let result = run(&socket);
        std::fs::remove_dir_all(&dir)?;
        result
    }

    fn run(socket: &Path) -> Result<(), Box<dyn std::error::Error>> {
        // The server lives while its standard input is open.
        let mut server = spawn("server", socket, Stdio::piped(), Stdio::inherit())?;
        let monitor = connect_when_ready(socket)?;

        let status = spawn("client", socket, Stdio::null(), Stdio::inherit())?.wait()?;
        if !status.success() {
            return Err(format!("the client failed: {status}").into());
        }

        let mut victim = spawn("victim", socket, Stdio::null(), Stdio::piped())?;
        let mut ready = String::new();
        std::io::BufReader::new(victim.stdout.take().expect("piped")).read_line(&mut ready)?;
        let before = monitor.rundowns()?;
        println!(
            "launcher | victim {} says {:?}; sending it SIGKILL",
            victim.id(),
            ready.trim()
        );
        victim.kill()?;
        println!("launcher | victim exited: {}", victim.wait()?);
        let deadline = Instant::now() + Duration::from_secs(5);
        while monitor.rundowns()? == before {
            if Instant::now() > deadline {
                return Err("the killed client's session was not run down".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        println!(
            "launcher | the server has run down {} sessions",
            monitor.rundowns()?
        );

        drop(monitor);
        drop(server.stdin.take());
        let status = server.wait()?;
        println!("launcher | server exited: {status}");
        Ok(())
    }

    fn connect_when_ready(
        socket: &Path,
    ) -> Result<SystemHandlesBlockingClient, Box<dyn std::error::Error>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match SystemHandlesBlockingClient::connect(socket) {
                Ok(client) => return Ok(client),
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    // ────────────────────────────── server ──────────────────────────────

    #[derive(Default)]
    struct Service {
        events: Mutex<Vec<Handle>>,
        sessions: AtomicU32,
        rundowns: Arc<AtomicU32>,
    }

    fn describe(h: BorrowedHandle<'_>) -> String {
        match (h.kind(), h.access()) {
            (Ok(kind), Ok(access)) => format!("{kind}, {access} access"),
            _ => "unreadable".into(),
        }
    }

    impl SystemHandles for Service {
        async fn write_this_file(
            &self,
            file: BorrowedHandle<'_>,
            text: String,
        ) -> Result<u64, Failure> {
            let n = rustix::io::write(file, text.as_bytes()).map_err(fail)?;
            println!(
                "server   | write_this_file: got handle {} ({}); wrote {n} bytes",
                file.raw(),
                describe(file)
            );
            Ok(n as u64)
        }

        async fn read_this_pipe(&self, pipe: BorrowedHandle<'_>) -> Result<String, Failure> {
            // The handle is the runtime's: borrowing it as a File would close it,
            // so read through a duplicate.
            let mut reader = std::fs::File::from(pipe.try_clone_to_owned().map_err(fail)?);
            let mut text = String::new();
            reader.read_to_string(&mut text).map_err(fail)?;
            println!(
                "server   | read_this_pipe: got handle {} ({}); read {text:?}",
                pipe.raw(),
                describe(pipe)
            );
            Ok(text)
        }

        async fn shared_region(&self, text: String) -> Result<Handle, Failure> {
            let region = handoff::startup::create(text.as_bytes()).map_err(fail)?;
            println!(
                "server   | shared_region: returning {} (the server's copy closes once sent)",
                describe(region.borrow())
            );
            Ok(region)
        }

        async fn watch_all_these_events(&self, count: u32) -> Result<Vec<Handle>, Failure> {
            use rustix::event::EventfdFlags;
            let mut out = Vec::new();
            let mut kept = self.events.lock().unwrap();
            kept.clear();
            for _ in 0..count {
                let event = Handle::from(
                    rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
                        .map_err(fail)?,
                );
                // The server watches through its own duplicate; the original
                // goes to the client.
                kept.push(event.try_clone().map_err(fail)?);
                out.push(event);
            }
            println!("server   | watch_all_these_events: returning {count} eventfds");
            Ok(out)
        }

        async fn events_seen(&self) -> Result<Vec<u64>, Failure> {
            let events = self.events.lock().unwrap();
            let seen: Vec<u64> = events
                .iter()
                .map(|e| {
                    let mut buf = [0u8; 8];
                    match rustix::io::read(e, &mut buf) {
                        Ok(8) => u64::from_ne_bytes(buf),
                        _ => 0,
                    }
                })
                .collect();
            println!("server   | events_seen: counters {seen:?}");
            Ok(seen)
        }

        async fn open_session(&self, client: String) -> Result<Context<Session>, Failure> {
            let n = self.sessions.fetch_add(1, Ordering::SeqCst) + 1;
            println!("server   | open_session: session {n} for {client}");
            let rundowns = self.rundowns.clone();
            Ok(Context::with_rundown(
                Session {
                    client,
                    lines: Mutex::new(Vec::new()),
                },
                move |session| {
                    let lines = session.lines.lock().map(|l| l.len()).unwrap_or(0);
                    let total = rundowns.fetch_add(1, Ordering::SeqCst) + 1;
                    println!(
                        "server   | rundown: session of {} ran down ({lines} lines logged; {total} rundowns so far)",
                        session.client
                    );
                },
            ))
        }

        async fn log(&self, session: &Session, line: String) -> Result<u32, Failure> {
            println!("server   | log from {}: {line:?}", session.client);
            let mut lines = session.lines.lock().unwrap();
            lines.push(line);
            Ok(lines.len() as u32)
        }

        async fn rundowns(&self) -> Result<u32, Failure> {
            Ok(self.rundowns.load(Ordering::SeqCst))
        }
    }

    fn server(socket: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(async {
            let listener = AsyncListener::bind(socket)?;
            println!(
                "server   | pid {} serving {} at {}",
                std::process::id(),
                SystemHandlesServer::<Service>::IDENTITY,
                socket.display()
            );
            let serve = Server::new(SystemHandlesServer::new(Service::default())).serve(listener);
            let launcher_gone = tokio::task::spawn_blocking(|| {
                std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
            });
            tokio::select! {
                r = serve => r?,
                _ = launcher_gone => println!("server   | the launcher closed our stdin; stopping"),
            }
            Ok::<_, handoff::Error>(())
        })?;
        Ok(())
    }

    // ────────────────────────────── client ──────────────────────────────

    fn client(socket: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let me = std::process::id();
        let client = SystemHandlesBlockingClient::connect(socket)?;
        println!(
            "client   | pid {me} connected to {}",
            client.raw().server_identity()
        );

        // Proc1: a file opened read-write goes over write-only.
        let path = socket.with_file_name("proc1.txt");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let n = client.write_this_file(&file, "written by the server\n".into())?;
        println!(
            "client   | Proc1: server wrote {n} bytes; the file now reads {:?}",
            std::fs::read_to_string(&path)?
        );

        // Proc2: the read end of a pipe, read-only.
        let (reader, mut writer) = std::io::pipe()?;
        writer.write_all(b"hello through a pipe")?;
        drop(writer);
        println!(
            "client   | Proc2: server read {:?}",
            client.read_this_pipe(&reader)?
        );

        // Proc3: shared memory the client now owns and maps read-only.
        let region = client.shared_region("a region the server filled".into())?;
        println!("client   | Proc3: got {}", describe(region.borrow()));
        let mapped = StartupData::open(region)?;
        println!(
            "client   | Proc3: mapped, it reads {:?}",
            String::from_utf8_lossy(mapped.bytes())
        );

        // Proc4: events the client signals and the server sees.
        let events = client.watch_all_these_events(4)?;
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.kind()?, Kind::Event);
            rustix::io::write(event, &(10 * (i as u64 + 1)).to_ne_bytes())?;
        }
        println!(
            "client   | Proc4: got {} events ({}), signalled them with 10, 20, 30, 40",
            events.len(),
            describe(events[0].borrow())
        );
        println!("client   | Proc4: server saw {:?}", client.events_seen()?);
        drop(events);

        // What the declarations refuse.
        let read_only = std::fs::File::open(&path)?;
        match client.write_this_file(&read_only, "nope".into()) {
            Err(CallError::Handoff(e)) => {
                println!("client   | a read-only file for Proc1 is refused before sending: {e}")
            }
            other => return Err(format!("expected a refusal, got {other:?}").into()),
        }
        let (_reader, pipe_writer) = std::io::pipe()?;
        match client.write_this_file(&pipe_writer, "nope".into()) {
            Err(CallError::Fault(f)) => println!(
                "client   | a pipe for Proc1 is refused by the server before the method runs: {f}"
            ),
            other => return Err(format!("expected a refusal, got {other:?}").into()),
        }
        assert_eq!(read_only.as_handle().access()?, Access::READ);

        // A context handle, closed properly.
        let session = client.open_session(format!("client pid {me}"))?;
        client.log(&session, "first".into())?;
        client.log(&session, "second".into())?;
        client.close_context(session)?;
        println!("client   | closed my session; done");
        Ok(())
    }

    // ────────────────────────────── victim ──────────────────────────────

    fn victim(socket: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let me = std::process::id();
        let client = SystemHandlesBlockingClient::connect(socket)?;
        let session = client.open_session(format!("victim pid {me}"))?;
        client.log(&session, "about to be killed".into())?;
        println!("ready");
        loop {
            std::thread::park();
        }
    }
}
