//! Bad input to `handoff serve`: forged and malformed notifications,
//! too many stored handles, control clients that stall or belong to
//! another user, a restart with no descriptors left. Each is refused with
//! a clear error; the supervisor keeps serving and leaks nothing.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn generation_role() {
    support::generation_role();
}

const NOBODY: u32 = 65534;

/// Runs `f` on a thread whose credentials are another user's (root can
/// do that to one thread: the kernel keeps credentials per thread, and
/// both SO_PEERCRED and SCM_CREDENTIALS take the caller thread's).
fn as_nobody<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(NOBODY)).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

fn notify_path(sv: &Supervisor) -> std::path::PathBuf {
    let mut p = sv.control.clone().into_os_string();
    p.push(".notify");
    p.into()
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Waits until the supervisor's log holds `text` at least `times` times.
fn wait_log(sv: &Supervisor, text: &str, times: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sv.log_text().matches(text).count() < times {
        assert!(
            std::time::Instant::now() < deadline,
            "log never had {times} x {text:?}:\n{}",
            sv.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn notifications_from_outside_the_generation_are_dropped() {
    let _g = serial();
    let before = handoff::count_open_handles().unwrap();
    let sv = Supervisor::start(ROLE, Opts::default());
    let fds = sv.open_fds();
    let path = notify_path(&sv);
    // This test process is no part of any generation.
    let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
    sock.send_to(b"STATUS=forged\nMAINPID=1", &path).unwrap();
    drop(sock);
    wait_log(&sv, "not part of a running generation dropped", 1);
    // Another user, with the socket opened up to everyone for the test.
    chmod(sv.dir.path(), 0o755);
    chmod(&path, 0o777);
    as_nobody(|| {
        let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sock.send_to(b"STATUS=forged by nobody", &path).unwrap();
    });
    wait_log(&sv, "not part of a running generation dropped", 2);
    assert!(sv.log_text().contains(&format!("uid={NOBODY}")));
    let s = sv.status();
    assert_eq!(s["generations"][0]["status"], "generation serve");
    assert_eq!(s["generations"][0]["main_pid"], s["generations"][0]["pid"]);
    assert_eq!(sv.open_fds(), fds);
    sv.stop();
    assert_eq!(handoff::count_open_handles().unwrap(), before);
}

#[test]
fn malformed_notifications_are_dropped_with_their_handles() {
    let sv = Supervisor::alone(Opts::mode("malformed"));
    wait_log(&sv, "malformed notification dropped", 7);
    let log = sv.log_text();
    for why in [
        "has no '='",
        "is not text",
        "FDSTORE=1 came without any handle",
        "1 handle(s) came without FDSTORE=1",
        "':' separates names",
        "longer than 4096",
    ] {
        assert!(log.contains(why), "{why}:\n{log}");
    }
    // Nothing was stored, and the handles that came along were closed.
    assert_eq!(sv.status()["stored"].as_array().unwrap().len(), 0);
    let fds = sv.open_fds();
    sv.restart_ok();
    assert_eq!(sv.open_fds(), fds);
    sv.stop();
}

#[test]
fn more_stored_handles_than_the_cap_are_refused_and_the_rest_passed_on() {
    let sv = Supervisor::alone(Opts::mode("store-many"));
    wait_log(&sv, "would pass its cap of 1024", 1);
    let s = sv.status();
    // Four datagrams of 253 fit (1012); the fifth would pass the cap.
    assert_eq!(s["stored"][0]["count"], 1012);
    let fds = sv.open_fds();
    sv.set_mode("count-many");
    sv.restart_ok();
    assert_eq!(sv.status()["generations"][0]["status"], "many: 1012");
    assert_eq!(sv.open_fds(), fds);
    sv.stop();
}

#[test]
fn a_control_client_that_never_speaks_stalls_nothing() {
    let sv = Supervisor::alone(Opts::default());
    let fds = sv.open_fds();
    let listing = sv.fd_listing();
    let silent = handoff::Channel::connect(&sv.control).unwrap();
    // The supervisor still answers others at once.
    sv.restart_ok();
    // And gives up on the silent one.
    let msg = silent.recv().unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&msg.bytes).unwrap();
    assert_eq!(reply["ok"], false);
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .contains("no request within"));
    assert!(matches!(
        silent.recv(),
        Err(handoff::Error::Disconnected { .. })
    ));
    drop(silent);
    assert_eq!(
        sv.open_fds(),
        fds,
        "{listing:?}\n{:?}\n{}",
        sv.fd_listing(),
        sv.log_text()
    );
    sv.stop();
}

#[test]
fn a_control_client_of_another_uid_is_refused() {
    let sv = Supervisor::alone(Opts::default());
    // The socket file is owner-only: the kernel refuses the connection.
    chmod(sv.dir.path(), 0o755);
    let e = as_nobody(|| handoff::Channel::connect(&sv.control).map(drop)).unwrap_err();
    assert!(e.to_string().contains("connect"), "{e}");
    // Opened up to everyone, the peer's uid still refuses it, before a
    // byte of it is read: the connection is closed unanswered.
    chmod(&sv.control, 0o777);
    let answer = as_nobody(|| {
        let c = handoff::Channel::connect(&sv.control).unwrap();
        let _ = c.send(br#"{"op":"status"}"#, &[]);
        c.recv().map(|m| m.bytes)
    });
    assert!(
        matches!(answer, Err(handoff::Error::Disconnected { .. })),
        "{answer:?}"
    );
    wait_log(
        &sv,
        "refused a connection that the admission rules do not allow",
        1,
    );
    sv.stop();
}

#[test]
fn a_restart_with_no_descriptors_left_fails_and_the_old_one_serves() {
    let sv = Supervisor::alone(Opts::default());
    let port = sv.port("http");
    let fds = sv.open_fds();
    let limit = |n: usize| {
        let st = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", sv.pid()))
            .arg(format!("--nofile={n}:"))
            .status()
            .unwrap();
        assert!(st.success());
    };
    // Room to accept the control connection and nothing more.
    limit(fds + 1);
    let (code, line) = sv.restart(&[]);
    assert_eq!(code, 1, "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("could not start generation 2"), "{line}");
    assert!(get(port).unwrap().starts_with("gen 1 "));
    limit(4096);
    assert_eq!(sv.open_fds(), fds);
    sv.restart_ok();
    assert!(get(port).unwrap().starts_with("gen 3 "));
    sv.stop();
}

#[test]
fn a_first_generation_that_never_gets_ready_ends_the_supervisor_with_one_line() {
    let _g = serial();
    let mut sv = Supervisor::spawn(ROLE, Opts::mode("crash-before-ready"));
    let status = sv.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let log = sv.log_text();
    let last = log.lines().last().unwrap();
    assert_eq!(
        last, "handoff: generation 1 exited with status 3 before READY=1",
        "{log}"
    );
    assert!(!sv.control.exists(), "no control socket left behind");
}

#[test]
fn a_barrier_returns_once_the_supervisor_has_read_the_notifications() {
    let sv = Supervisor::alone(Opts::mode("barrier"));
    assert_eq!(sv.status()["generations"][0]["status"], "barrier passed");
    sv.stop();
}

#[test]
fn a_second_supervisor_on_the_same_control_socket_is_refused() {
    let sv = Supervisor::alone(Opts::default());
    let out = handoff()
        .args(["serve", "--listen", "x=tcp:127.0.0.1:0", "--control"])
        .arg(&sv.control)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another supervisor is running there"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // The first one is untouched.
    assert_eq!(sv.status()["generations"][0]["state"], "serving");
    sv.stop();
}

#[test]
fn stale_socket_files_of_a_killed_supervisor_are_replaced() {
    let _g = serial();
    let (_dir, path, unix) = unix_listen();
    let listens = ["http=tcp:127.0.0.1:0", unix.as_str()];
    let mut sv = Supervisor::start(ROLE, Opts::listening(&listens));
    let control = sv.control.clone();
    let gen = handoff::Process::open(sv.generation_pids()[0]).unwrap();
    sv.child.kill().unwrap();
    sv.child.wait().unwrap();
    gen.kill().unwrap();
    gen.wait().unwrap();
    // Control, notify and Unix listener files are left behind by SIGKILL.
    assert!(control.exists() && path.exists());
    let out = handoff()
        .arg("serve")
        .arg(format!("--listen={unix}"))
        .arg("--control")
        .arg(&control)
        .args(["--ready-timeout", "1", "--", "sleep", "5"])
        .output()
        .unwrap();
    // It got past binding both paths: what failed is the command, which
    // never says READY=1.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("generation 1 was not ready within 1 s"),
        "{err}"
    );
}
