//! Shared by the `handoff serve` tests: a supervisor run as a user runs
//! it, and the generation program, which is this test binary run again
//! with a role (the supervisor starts it as CMD).
//!
//! A generation reads what to do from the file named by
//! `TEST_MODE_FILE` when it starts, so each test decides how the next
//! version behaves by writing that file before triggering a restart.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use handoff::restart::{Notification, Service};

#[path = "../../../handoff/tests/common/named.rs"]
mod named;
pub use named::named;

/// The test each `handoff serve` test binary runs as a generation (it
/// calls [`generation_role`]).
pub const ROLE: &str = "generation_role";
pub const ROLE_ENV: &str = "HANDOFF_TEST_ROLE";
pub const MODE_ENV: &str = "TEST_MODE_FILE";

/// A Unix socket path in a fresh temporary directory (removed when the
/// returned `TempDir` drops), and the `--listen` spec that binds it under
/// the name `local`.
pub fn unix_listen() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.sock");
    let spec = format!("local=unix:{}", path.display());
    (dir, path, spec)
}

/// One test at a time: the open-handle counts are per process.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn handoff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_handoff"))
}

/// A running `handoff serve` in a temporary directory.
pub struct Supervisor {
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub control: PathBuf,
    pub mode: PathBuf,
    pub log: PathBuf,
    /// Dropped after the supervisor is killed (see [`Supervisor::alone`]).
    _serial: Option<MutexGuard<'static, ()>>,
}

/// Options for [`Supervisor::start`].
pub struct Opts<'a> {
    pub listens: &'a [&'a str],
    pub extra: &'a [&'a str],
    pub first_mode: &'a str,
    pub ready_timeout: &'a str,
    pub drain_timeout: &'a str,
    /// Words put in front of the generation command (e.g. another
    /// supervisor).
    pub wrap: &'a [&'a std::ffi::OsStr],
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            listens: &["http=tcp:127.0.0.1:0"],
            extra: &[],
            first_mode: "serve",
            ready_timeout: "10",
            drain_timeout: "5",
            wrap: &[],
        }
    }
}

impl<'a> Opts<'a> {
    /// The defaults, with generation 1 in `first_mode`.
    pub fn mode(first_mode: &'a str) -> Self {
        Opts {
            first_mode,
            ..Opts::default()
        }
    }

    /// The defaults, with `listens` instead of one TCP listener.
    pub fn listening(listens: &'a [&'a str]) -> Self {
        Opts {
            listens,
            ..Opts::default()
        }
    }

    /// With `--drain-timeout` set to `secs`.
    pub fn drain(self, secs: &'a str) -> Self {
        Opts {
            drain_timeout: secs,
            ..self
        }
    }

    /// With `--ready-timeout` set to `secs`.
    pub fn ready(self, secs: &'a str) -> Self {
        Opts {
            ready_timeout: secs,
            ..self
        }
    }
}

impl Supervisor {
    pub fn start(test: &str, opts: Opts<'_>) -> Supervisor {
        let s = Supervisor::spawn(test, opts);
        s.wait_serving(1);
        s
    }

    /// As [`Supervisor::start`] for the generation test, holding the
    /// [`serial`] lock until the supervisor is gone.
    pub fn alone(opts: Opts<'_>) -> Supervisor {
        let serial = serial();
        let mut sv = Supervisor::start(ROLE, opts);
        sv._serial = Some(serial);
        sv
    }

    /// Starts without waiting for generation 1.
    pub fn spawn(test: &str, opts: Opts<'_>) -> Supervisor {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("control.sock");
        let mode = dir.path().join("mode");
        let log = dir.path().join("serve.log");
        std::fs::write(&mode, opts.first_mode).unwrap();
        let mut cmd = handoff();
        cmd.arg("serve");
        for l in opts.listens {
            cmd.arg(format!("--listen={l}"));
        }
        cmd.arg("--control")
            .arg(&control)
            .args(["--ready-timeout", opts.ready_timeout])
            .args(["--drain-timeout", opts.drain_timeout])
            .args(opts.extra)
            .arg("--")
            .args(opts.wrap)
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, "generation")
            .env(MODE_ENV, &mode)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("spawn handoff serve");
        Supervisor {
            dir,
            child,
            control,
            mode,
            log,
            _serial: None,
        }
    }

    pub fn set_mode(&self, mode: &str) {
        std::fs::write(&self.mode, mode).unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `handoff status --json`, or `None` while the supervisor cannot
    /// answer.
    pub fn try_status(&self) -> Option<serde_json::Value> {
        let out = handoff()
            .args(["status", "--json", "--control"])
            .arg(&self.control)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn status(&self) -> serde_json::Value {
        self.try_status()
            .unwrap_or_else(|| panic!("no status; log:\n{}", self.log_text()))
    }

    /// Waits until generation `n` serves (bounded, so a broken supervisor
    /// fails the test instead of hanging it).
    pub fn wait_serving(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(s) = self.try_status() {
                // Serving, and the start is over (its last checks done).
                if s["restarting"] == false
                    && s["generations"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|g| g["number"] == n && g["state"] == "serving")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("generation {n} never served; log:\n{}", self.log_text());
    }

    /// Waits until generation `n` is the only one (a restart finished).
    pub fn wait_alone(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(s) = self.try_status() {
                let gens = s["generations"].as_array().unwrap();
                if gens.len() == 1 && gens[0]["number"] == n && s["restarting"] == false {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("generation {n} never alone; log:\n{}", self.log_text());
    }

    /// The port a `tcp` listener named `name` is bound to.
    pub fn port(&self, name: &str) -> u16 {
        let s = self.status();
        let l = named(&s["listeners"], "listener", name);
        let addr = l["address"].as_str().unwrap();
        addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `handoff restart`: its status code and its one line (stdout or
    /// stderr).
    pub fn restart(&self, extra: &[&str]) -> (i32, String) {
        let out = handoff()
            .arg("restart")
            .args(extra)
            .arg("--control")
            .arg(&self.control)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text.trim().to_owned())
    }

    /// `handoff restart` with no options, which must succeed: its line.
    pub fn restart_ok(&self) -> String {
        let (code, line) = self.restart(&[]);
        assert_eq!(code, 0, "{line}\n{}", self.log_text());
        line
    }

    /// Restarts into `mode`, which must succeed with generation `n`
    /// serving: the restart's line.
    pub fn restart_as(&self, mode: &str, n: u64) -> String {
        self.set_mode(mode);
        let line = self.restart_ok();
        assert!(line.starts_with(&format!("generation {n} ")), "{line}");
        line
    }

    /// Main pids of the running generations.
    pub fn generation_pids(&self) -> Vec<u32> {
        self.status()["generations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["main_pid"].as_u64().unwrap() as u32)
            .collect()
    }

    /// Open descriptors of the supervisor.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// Sends it a signal (the supervisor is our unreaped child, so its pid
    /// names it).
    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// What the supervisor's descriptors point at (for failure messages).
    pub fn fd_listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| {
                d.filter_map(|e| {
                    let e = e.ok()?;
                    let t = std::fs::read_link(e.path()).ok()?;
                    Some(format!(
                        "{}->{}",
                        e.file_name().to_string_lossy(),
                        t.display()
                    ))
                })
                .collect()
            })
            .unwrap_or_default();
        v.sort();
        let threads = std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
                    .map(|c| c.trim().to_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        v.push(format!("threads: {threads}"));
        let unix = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
        for l in v.clone() {
            if let Some(ino) = l.split("socket:[").nth(1).map(|x| x.trim_end_matches(']')) {
                for line in unix
                    .lines()
                    .filter(|u| u.split_whitespace().nth(6) == Some(ino))
                {
                    v.push(format!("  {line}"));
                }
            }
        }
        v
    }

    /// Stops it (SIGTERM) and checks it exits 0.
    pub fn stop(mut self) {
        self.signal(rustix::process::Signal::TERM);
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "supervisor: {status}; log:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `handoff restart` to the supervisor whose control socket is `control`,
/// which must succeed.
pub fn restart_at(control: &Path) {
    let out = handoff()
        .args(["restart", "--control"])
        .arg(control)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Children of `pid` that are zombies.
pub fn zombies_of(pid: u32) -> usize {
    children_of(pid)
        .iter()
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/stat"))
                .map(|s| s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
                .unwrap_or(false)
        })
        .count()
}

pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s[s.rfind(')')? + 2..].to_owned();
                    after.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Socket inodes `pid` holds.
pub fn socket_inodes(pid: u32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| {
                let t = std::fs::read_link(e.ok()?.path()).ok()?;
                t.to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            })
            .collect()
        })
        .unwrap_or_default()
}

/// A local TCP port that was free a moment ago (bound, read, released).
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// One request: connect, read the answer to the end.
pub fn get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    if text.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "end of file before the answer",
        ));
    }
    Ok(text)
}

/// A client connecting in a loop until stopped; counts answers per
/// generation and failures.
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>, Vec<String>)>,
}

impl Load {
    pub fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut ok = 0;
            let mut gens = Vec::new();
            let mut failures = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match get(port) {
                    Ok(t) => {
                        ok += 1;
                        let g = t.split_whitespace().nth(1).unwrap_or("?").to_owned();
                        if !gens.contains(&g) {
                            gens.push(g);
                        }
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (ok, gens, failures)
        });
        Load { stop, thread }
    }

    /// (answers, generations seen in order, failures)
    pub fn finish(self) -> (usize, Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

// ---------------------------------------------------------------------
// The generation program.

/// Answers each connection with its generation, until `stop`. Waits
/// for a connection with `poll` before accepting, so a stop request is
/// seen between connections and no accepted connection is abandoned (the
/// listener stays blocking: its flags are shared with the other
/// generation).
fn serve_until(
    listener: std::net::TcpListener,
    gen: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        while !stop.load(Ordering::SeqCst) {
            let mut fds = [PollFd::new(&listener, PollFlags::IN)];
            if !matches!(poll(&mut fds, Some(&tick)), Ok(n) if n > 0) {
                continue;
            }
            if let Ok((mut c, _)) = listener.accept() {
                let _ = writeln!(c, "gen {gen} pid {}", std::process::id());
            }
        }
    })
}

/// Sends the supervisor every kind of malformed datagram, straight onto
/// the socket (the library would refuse to send them).
fn send_malformed() {
    use rustix::net::{sendmsg_addr, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let path = std::env::var("NOTIFY_SOCKET").unwrap();
    let addr = rustix::net::SocketAddrUnix::new(path.as_str()).unwrap();
    let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let fds = [std::os::fd::AsFd::as_fd(&null)];
    let oversized = vec![b'A'; 5000];
    let cases: [(&[u8], bool); 7] = [
        (b"READY", false),
        (b"STATUS=\x00\x01binary", false),
        (b"STATUS=\xff\xfe", false),
        (b"FDSTORE=1\nFDNAME=nohandles", false),
        (b"STATUS=handles without FDSTORE", true),
        (b"FDSTORE=1\nFDNAME=bad:name", true),
        (&oversized, false),
    ];
    for (bytes, with_fd) in cases {
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if with_fd {
            assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        }
        let iov = [std::io::IoSlice::new(bytes)];
        sendmsg_addr(&sock, &addr, &iov, &mut control, SendFlags::empty()).unwrap();
    }
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Runs as a generation when this test binary was started with the
/// role; returns at once otherwise.
pub fn generation_role() {
    if std::env::var(ROLE_ENV).as_deref() != Ok("generation") {
        return;
    }
    let mode_file = std::env::var(MODE_ENV).unwrap();
    let mode = std::fs::read_to_string(&mode_file).unwrap();
    let mode = mode.trim();
    let gen = std::env::var("HANDOFF_GENERATION").unwrap_or_default();
    let mut svc = Service::from_env().expect("Service::from_env");
    match mode {
        "crash-before-ready" => std::process::exit(3),
        "abort-before-ready" => std::process::abort(),
        "hang" => sleep_forever(),
        "double-fork" => {
            // A daemon's move: leave a process behind and exit. The shell
            // backgrounds sleep and exits, so sleep is orphaned.
            let pidfile = Path::new(&mode_file).with_extension("orphan");
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "sleep 1000 >/dev/null 2>&1 & echo $! > {}",
                    pidfile.display()
                ))
                .status()
                .unwrap();
            std::process::exit(0);
        }
        _ => {}
    }
    let listener = svc.tcp_listener("http").expect("tcp listener http");
    let mut status_text = format!("generation {mode}");
    match mode {
        "store" => {
            let (r, w) = rustix::pipe::pipe().unwrap();
            let mut w = std::fs::File::from(w);
            w.write_all(b"kept across generations").unwrap();
            drop(w);
            // Its writer is gone, so the pipe has hung up: only FDPOLL=0
            // keeps it in the store.
            svc.notify(
                &Notification {
                    fd_store: true,
                    fd_name: Some("kept".into()),
                    fd_poll: Some(false),
                    ..Default::default()
                },
                &[handoff::AsHandle::as_handle(&r)],
            )
            .unwrap();
            // This one is dropped at the next start, as systemd does.
            let (r2, w2) = rustix::pipe::pipe().unwrap();
            drop(w2);
            svc.store("gone", &r2).unwrap();
        }
        "check-store" => {
            let h = svc.take("kept").expect("stored handle");
            let mut f = std::fs::File::from(std::os::fd::OwnedFd::from(h));
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            status_text = format!("store: {text}");
        }
        "remove-store" => {
            let _ = svc.take_all("kept");
            svc.remove("kept").unwrap();
        }
        "malformed" => send_malformed(),
        "store-many" => {
            let null = std::fs::File::open("/dev/null").unwrap();
            let handles: Vec<std::fs::File> =
                (0..1100).map(|_| null.try_clone().unwrap()).collect();
            for chunk in handles.chunks(253) {
                let borrowed: Vec<_> = chunk.iter().map(handoff::AsHandle::as_handle).collect();
                svc.notify(
                    &Notification {
                        fd_store: true,
                        fd_name: Some("many".into()),
                        ..Default::default()
                    },
                    &borrowed,
                )
                .unwrap();
            }
        }
        "barrier" => {
            // Returns only once the supervisor has handled the datagram and
            // closed the pipe end that came with it.
            svc.status("before the barrier").unwrap();
            svc.barrier(Duration::from_secs(10)).unwrap();
            status_text = "barrier passed".into();
        }
        "mainpid" => {
            // The service hands the main role to a child, as a forking
            // daemon does.
            let child = Command::new("sleep").arg("1000").spawn().unwrap();
            svc.notify(
                &Notification {
                    main_pid: Some(child.id()),
                    ..Default::default()
                },
                &[],
            )
            .unwrap();
            std::mem::forget(child);
        }
        "slow-start" => {
            // Asks for more time than --ready-timeout gives, and uses it.
            svc.notify(
                &Notification {
                    extend_timeout_usec: Some(5_000_000),
                    ..Default::default()
                },
                &[],
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(2500));
        }
        "count-many" => {
            status_text = format!("many: {}", svc.take_all("many").len());
        }
        "systemd-notify" => {
            let _server = serve_until(listener, gen, Arc::new(AtomicBool::new(false)));
            let st = Command::new("/usr/bin/systemd-notify")
                .arg("--ready")
                .arg("--status=ready via systemd-notify")
                .arg(format!("--pid={}", std::process::id()))
                .status()
                .unwrap();
            assert!(st.success());
            sleep_forever();
        }
        _ => {}
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop)).unwrap();
    if mode == "shutdown-listeners" {
        // Stops the socket for every holder: the supervisor must notice.
        rustix::net::shutdown(&listener, rustix::net::Shutdown::Both).unwrap();
    }
    let server = if mode == "close-listeners" {
        drop(listener);
        None
    } else {
        Some(serve_until(listener, gen, Arc::clone(&stop)))
    };
    svc.notify(
        &Notification {
            ready: true,
            status: Some(status_text),
            ..Default::default()
        },
        &[],
    )
    .unwrap();
    if mode == "crash-after-ready" {
        std::process::exit(4);
    }
    if mode == "ignore-term" {
        sleep_forever();
    }
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(s) = server {
        let _ = s.join();
    }
    std::process::exit(0);
}
