//! `handoff exec` and `handoff inherited` as a user runs them: the real
//! binary, real children, real sockets.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn handoff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_handoff"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run handoff")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn exec_passes_files_sockets_and_startup_data_to_inherited() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    std::fs::write(&cfg, "x=1").unwrap();
    let data = dir.path().join("data");
    std::fs::write(&data, vec![7u8; 300_000]).unwrap();
    let sock = dir.path().join("s.sock");
    let out = run(handoff()
        .arg("exec")
        .arg(format!("--fd=cfg={}", cfg.display()))
        .arg(format!("--fd=log={}:w", dir.path().join("log").display()))
        .args(["--listen", "web=tcp:127.0.0.1:0"])
        .arg(format!("--listen=local=unix:{}", sock.display()))
        .arg(format!("--data={}", data.display()))
        .args(["--", env!("CARGO_BIN_EXE_handoff"), "inherited", "--json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let names: Vec<_> = lines.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cfg", "log", "web", "local", "handoff.startup"]);
    let fds: Vec<_> = lines.iter().map(|l| l["fd"].as_i64().unwrap()).collect();
    assert_eq!(fds, [3, 4, 5, 6, 7]);
    assert_eq!(lines[0]["kind"], "file");
    assert_eq!(lines[0]["access"], "r");
    assert_eq!(lines[1]["access"], "w");
    assert_eq!(lines[2]["kind"], "socket");
    assert!(lines[2]["address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(lines[3]["address"], format!("unix:{}", sock.display()));
    assert_eq!(lines[4]["kind"], "shared-memory");
    assert_eq!(lines[4]["access"], "r");
    assert_eq!(lines[4]["startup_payload_bytes"], 300_000);
    assert_eq!(lines[4]["seals"], "seal+shrink+grow+write");
}

#[test]
fn exec_data_from_stdin() {
    let mut child = handoff()
        .args([
            "exec",
            "--data",
            "-",
            "--",
            env!("CARGO_BIN_EXE_handoff"),
            "inherited",
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&[1u8; 100_000])
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(json_lines(&out)[0]["startup_payload_bytes"], 100_000);
}

#[test]
fn nothing_but_the_named_handles_reaches_cmd() {
    // An inheritable descriptor that handoff itself inherits from us must
    // not reach CMD.
    let leaked = std::fs::File::open("/dev/null").unwrap();
    rustix::io::fcntl_setfd(&leaked, rustix::io::FdFlags::empty()).unwrap();
    let out = run(handoff().args([
        "exec",
        "--fd",
        "only=/dev/null",
        "--",
        "sh",
        "-c",
        // ls is the shell's child: it lists the shell's table, untouched
        // by its own directory handle.
        "ls /proc/$$/fd",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut fds: Vec<i32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    fds.sort_unstable();
    assert_eq!(fds, [0, 1, 2, 3]);
    drop(leaked);
}

#[test]
fn exit_status_passes_through() {
    let out = run(handoff().args(["exec", "--", "sh", "-c", "exit 7"]));
    assert_eq!(out.status.code(), Some(7));
    let out = run(handoff().args(["exec", "--", "sh", "-c", "kill -9 $$"]));
    assert_eq!(out.status.code(), Some(128 + 9));
}

#[test]
fn bad_command_lines_are_one_line_errors() {
    for (args, code, needle) in [
        (vec!["exec", "--fd", "noequals", "--", "true"], 2, "NAME="),
        (
            vec!["exec", "--listen", "web=tcp:h:99999", "--", "true"],
            2,
            "port",
        ),
        (
            vec!["exec", "--listen", "web=sctp:h:1", "--", "true"],
            2,
            "tcp:HOST:PORT",
        ),
        (
            vec!["exec", "--fd", "x=/nonexistent/file", "--", "true"],
            125,
            "/nonexistent/file",
        ),
        (
            vec!["exec", "--data", "/nonexistent/data", "--", "true"],
            125,
            "/nonexistent/data",
        ),
        (vec!["exec", "--", "/no/such/program"], 127, "cannot run"),
        (vec!["exec"], 2, ""),
    ] {
        let out = run(handoff().args(&args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {err}"
        );
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn inherited_rejects_bogus_environment() {
    for (fds, pid, names) in [
        ("abc", "1", None),
        ("-1", "1", None),
        ("1", "1", None),
        ("2", "", Some("a")),
    ] {
        let mut cmd = handoff();
        cmd.arg("inherited")
            .env("LISTEN_FDS", fds)
            .env("LISTEN_PID", pid);
        if let Some(n) = names {
            cmd.env("LISTEN_FDNAMES", n);
        }
        let out = run(&mut cmd);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{fds} {pid}: {err}");
        assert!(err.starts_with("handoff: bad inherited handles: "), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1);
    }
    // Announced descriptors that are not open, with the right pid: the shell
    // execs handoff, so $$ is handoff's pid.
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "LISTEN_FDS=3 LISTEN_PID=$$ exec {} inherited",
        env!("CARGO_BIN_EXE_handoff")
    )));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not open"), "{}", stderr(&out));
}

#[test]
fn inherited_under_systemd_socket_activate() {
    // Debian's systemd package ships it; .ci/run installs it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let child = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=web"])
        .args([env!("CARGO_BIN_EXE_handoff"), "inherited", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate is installed");
    // It execs the command on the first connection.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "socket never came up");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["name"], "web");
    assert_eq!(lines[0]["fd"], 3);
    assert_eq!(lines[0]["address"], format!("127.0.0.1:{port}"));
}
