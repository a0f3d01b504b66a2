//! The `restart_server` example across a real process boundary: started
//! with a TCP listener, a UDP socket and a Unix listener under
//! `LISTEN_FDS` and a notify socket of the test's own, it says `READY=1`,
//! answers on each protocol naming its generation, drains and exits on
//! SIGTERM, leaves the shared sockets listening, and behaves as each bad
//! version it can be told to be.
//!
//! The example is built by `cargo test` (all targets); run alone, build it
//! first: `cargo build -p handoff --example restart_server`.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::without_leaks;

/// target/<profile>/examples/restart_server, beside this test's deps/.
fn server() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join("restart_server");
    assert!(
        path.exists(),
        "{} is missing: `cargo build -p handoff --example restart_server`",
        path.display()
    );
    path
}

/// The sockets a supervisor would hold, and the notify socket.
struct Rig {
    dir: tempfile::TempDir,
    http: TcpListener,
    udp: UdpSocket,
    unix: UnixListener,
    notify: UnixDatagram,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let notify = UnixDatagram::bind(dir.path().join("notify")).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Rig {
            http: TcpListener::bind("127.0.0.1:0").unwrap(),
            udp: UdpSocket::bind("127.0.0.1:0").unwrap(),
            unix: UnixListener::bind(dir.path().join("app.sock")).unwrap(),
            notify,
            dir,
        }
    }

    fn spawn(&self, mode: &str) -> handoff::Child {
        handoff::Command::new(server())
            .handle("http", &self.http)
            .handle("udp", &self.udp)
            .handle("unix", &self.unix)
            .env("NOTIFY_SOCKET", self.dir.path().join("notify"))
            .env("HANDOFF_GENERATION", "7")
            .env("RESTART_SERVER_MODE", mode)
            .stderr(handoff::spawn::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Spawns the server in `mode` and waits for its `READY=1`.
    fn spawn_ready(&self, mode: &str) -> handoff::Child {
        let mut child = self.spawn(mode);
        assert!(self.wait_ready(&mut child).is_some(), "{mode}: no READY=1");
        child
    }

    /// The notifications until `READY=1`, or `None` if the child exits
    /// first (or a minute passes: a bound, not a measurement).
    fn wait_ready(&self, child: &mut handoff::Child) -> Option<Vec<String>> {
        let until = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let ready = text.lines().any(|l| l == "READY=1");
                seen.push(text);
                if ready {
                    return Some(seen);
                }
            } else if child.try_wait().unwrap().is_some() {
                return None;
            }
        }
        None
    }

    /// Our own copy still listens: a connection made now is accepted here.
    /// The child made the shared sockets non-blocking (the flag belongs to
    /// the open file description), and it may still take a connection made
    /// before it stopped accepting: connect again until one reaches us.
    fn still_listening(&self) {
        let addr = self.http.local_addr().unwrap();
        accepted_here(
            || TcpStream::connect(addr).map(drop),
            || self.http.accept().map(drop),
        );
        let path = self.dir.path().join("app.sock");
        accepted_here(
            || UnixStream::connect(&path).map(drop),
            || self.unix.accept().map(drop),
        );
    }
}

/// Connects (keeping nothing: a connection queued on a listener stays
/// queued when its client goes) and accepts until an accept succeeds,
/// for at most 10 s.
fn accepted_here(
    mut connect: impl FnMut() -> std::io::Result<()>,
    mut accept: impl FnMut() -> std::io::Result<()>,
) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        connect().unwrap();
        match accept() {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("our copy of the listener accepts nothing: {e}"),
        }
    }
}

fn terminate(child: &handoff::Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_each_protocol_naming_its_generation_then_drains() {
    without_leaks(|| {
        let rig = Rig::new();
        let mut child = rig.spawn_ready("good");
        let label = format!("gen=7 pid={}", child.id());
        let addr = rig.http.local_addr().unwrap();

        let close = http(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(close.starts_with("HTTP/1.1 200 OK\r\n"), "{close}");
        assert!(close.ends_with(&format!("\r\n\r\n{label}\n")), "{close}");
        assert!(close.contains("Connection: close\r\n"), "{close}");

        // Keep-alive: two requests on one connection, the second closing.
        let both = http(
            addr,
            "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(both.matches("HTTP/1.1 200 OK").count(), 2, "{both}");
        assert!(both.contains("Connection: keep-alive\r\n"), "{both}");

        let garbage = http(addr, "NOT HTTP AT ALL\r\n\r\n");
        assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");

        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        client.connect(rig.udp.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 256];
        // The flow's count: every datagram since its `seq=0`.
        for (seq, served) in [(0u32, 1), (1, 2), (41, 3), (0, 1)] {
            client.send(format!("seq={seq}").as_bytes()).unwrap();
            let n = client.recv(&mut buf).unwrap();
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                format!("seq={seq} n={served} {label}")
            );
        }
        client.send(b"seq=x").unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"bad datagram"));

        let mut unix = UnixStream::connect(rig.dir.path().join("app.sock")).unwrap();
        unix.write_all(b"ping 5\n").unwrap();
        let mut echo = String::new();
        unix.read_to_string(&mut echo).unwrap();
        assert_eq!(echo, format!("{label} ping 5\n"));

        // A long-lived stream: every line back as sent, any byte but the
        // newline, until the client closes.
        let mut stream = UnixStream::connect(rig.dir.path().join("app.sock")).unwrap();
        stream.write_all(b"stream\n").unwrap();
        for line in [&b"one\n"[..], b"\x00\xff\r two\n"] {
            stream.write_all(line).unwrap();
            let mut back = vec![0u8; line.len()];
            stream.read_exact(&mut back).unwrap();
            assert_eq!(back, line);
        }
        drop(stream);

        terminate(&child);
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
        // It closed its copies, never shut the shared sockets down.
        rig.still_listening();
    });
}

#[test]
fn each_bad_version_behaves_as_named() {
    without_leaks(|| {
        let rig = Rig::new();

        let mut crash = rig.spawn("crash-before-ready");
        assert!(
            rig.wait_ready(&mut crash).is_none(),
            "crash-before-ready said ready"
        );
        assert_eq!(crash.wait().unwrap().code(), Some(3));

        let mut after = rig.spawn_ready("crash-after-ready");
        assert_eq!(after.wait().unwrap().code(), Some(4));

        let mut closes = rig.spawn_ready("close-listeners");
        // Its copies closed, ours still listen; it stays alive until told.
        rig.still_listening();
        assert!(closes.try_wait().unwrap().is_none());
        terminate(&closes);
        assert!(closes.wait().unwrap().success());

        let mut ignores = rig.spawn_ready("ignore-stop");
        terminate(&ignores);
        // Still there after SIGTERM, until SIGKILL: sockets stay shared.
        rig.still_listening();
        assert!(ignores.try_wait().unwrap().is_none());
        ignores.kill().unwrap();
        assert!(!ignores.wait().unwrap().success());

        let mut hangs = rig.spawn("hang-before-ready");
        hangs.kill().unwrap();
        assert!(!hangs.wait().unwrap().success());

        let mut unknown = rig.spawn("no-such-mode");
        assert!(rig.wait_ready(&mut unknown).is_none());
        assert!(!unknown.wait().unwrap().success());
    });
}

#[test]
fn a_socket_of_the_wrong_kind_is_refused() {
    without_leaks(|| {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let out = handoff::Command::new(server())
            .handle("http", &udp)
            .stderr(handoff::spawn::Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = out;
        let mut stderr =
            std::fs::File::from(std::os::fd::OwnedFd::from(child.take_stderr().unwrap()));
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        drop(stderr);
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(text.contains("a listening TCP socket"), "{text}");
        assert!(text.contains("datagram"), "{text}");
    });
}

/// One keep-alive request on an open connection: the body.
fn keep_alive(http: &mut TcpStream) -> String {
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(http.read(&mut byte).unwrap(), 1, "closed mid-head");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    assert!(head.contains("Connection: keep-alive\r\n"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    http.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

fn read_pid(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pid in `path` once it is there and differs from `old` (a minute at
/// most: a bound, not a measurement).
fn next_pid(path: &std::path::Path, old: Option<u32>) -> u32 {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match read_pid(path) {
            Some(p) if Some(p) != old => return p,
            _ => assert!(Instant::now() < until, "no new pid in {}", path.display()),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

#[test]
fn self_contained_upgrades_keep_connections_streams_and_flows() {
    without_leaks(|| {
        let rig = Rig::new();
        let mode = rig.dir.path().join("mode");
        std::fs::write(&mode, "good\n").unwrap();
        let pid_file = rig.dir.path().join("pid");
        let mut first = handoff::Command::new(server())
            .handle("http", &rig.http)
            .handle("udp", &rig.udp)
            .handle("unix", &rig.unix)
            .env("RESTART_SERVER_SELF_CONTAINED", "1")
            .env("RESTART_SERVER_MODE_FILE", &mode)
            .env("RESTART_SERVER_PID_FILE", &pid_file)
            .env("HANDOFF_GENERATION", "1")
            .stderr(handoff::spawn::Stdio::piped())
            .spawn()
            .unwrap();
        // Every generation writes to this pipe (the successors inherit
        // it); a thread passes the lines on.
        let err = std::fs::File::from(std::os::fd::OwnedFd::from(first.take_stderr().unwrap()));
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let wait_line = |what: &str| {
            let until = Instant::now() + Duration::from_secs(60);
            loop {
                let left = until.saturating_duration_since(Instant::now());
                let l = lines.recv_timeout(left).expect(what);
                if l.contains(what) {
                    return;
                }
            }
        };

        let one = next_pid(&pid_file, None);
        let mut http = TcpStream::connect(rig.http.local_addr().unwrap()).unwrap();
        let mut stream = UnixStream::connect(rig.dir.path().join("app.sock")).unwrap();
        stream.write_all(b"stream\n").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        udp.connect(rig.udp.local_addr().unwrap()).unwrap();
        let mut seq = 0u32;
        // Each exchange on the same three: answered by `pid`, the flow's
        // count carried across generations.
        let mut exchange = |pid: u32| {
            assert!(keep_alive(&mut http).contains(&format!("pid={pid}")));
            let line = format!("line {seq}\n");
            stream.write_all(line.as_bytes()).unwrap();
            let mut back = vec![0u8; line.len()];
            stream.read_exact(&mut back).unwrap();
            assert_eq!(back, line.as_bytes());
            udp.send(format!("seq={seq}").as_bytes()).unwrap();
            let mut buf = [0u8; 128];
            let n = udp.recv(&mut buf).unwrap();
            let answer = std::str::from_utf8(&buf[..n]).unwrap().to_owned();
            assert!(
                answer.starts_with(&format!("seq={seq} n={} ", seq + 1)),
                "{answer}"
            );
            assert!(answer.ends_with(&format!("pid={pid}")), "{answer}");
            seq += 1;
        };
        exchange(one);

        signal(one, rustix::process::Signal::HUP);
        let two = next_pid(&pid_file, Some(one));
        assert!(first.wait().unwrap().success());
        exchange(two);

        // A successor that refuses the state: the upgrade fails, the same
        // process serves on with the same connections and flows.
        std::fs::write(&mode, "refuse-state\n").unwrap();
        signal(two, rustix::process::Signal::HUP);
        wait_line("upgrade failed");
        std::fs::write(&mode, "good\n").unwrap();
        assert_eq!(read_pid(&pid_file), Some(two));
        exchange(two);

        signal(two, rustix::process::Signal::HUP);
        let three = next_pid(&pid_file, Some(two));
        exchange(three);
        let until = Instant::now() + Duration::from_secs(60);
        while !gone(two) {
            assert!(Instant::now() < until, "generation 2 still runs");
            std::thread::sleep(Duration::from_millis(10));
        }

        drop((http, stream, udp));
        signal(three, rustix::process::Signal::TERM);
        reader.join().unwrap();
        assert!(gone(three));
    });
}
