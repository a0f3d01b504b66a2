//! `handoff serve` / `restart` / `status` as a user runs them: the real
//! binary, real generations (this test binary with a role), real sockets.
//! Every test checks the supervisor's open descriptors are back to where
//! they were once old generations are gone, and that it leaves no zombie.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn generation_role() {
    support::generation_role();
}

#[test]
fn restart_switches_generation_under_load_on_the_same_socket() {
    let _g = serial();
    let before = handoff::count_open_handles().unwrap();
    let sv = Supervisor::start(ROLE, Opts::default());
    let port = sv.port("http");
    let identity = sv.status()["listeners"][0]["identity"].as_u64().unwrap();
    assert!(get(port).unwrap().starts_with("gen 1 "));
    let fds = sv.open_fds();
    let load = Load::start(port);
    for n in 2..=4u64 {
        let line = sv.restart_ok();
        assert!(line.starts_with(&format!("generation {n} (pid ")), "{line}");
        // The new generation holds the very socket the supervisor bound.
        let pids = sv.generation_pids();
        assert_eq!(pids.len(), 1);
        assert!(socket_inodes(pids[0]).contains(&identity));
        assert_eq!(sv.status()["listeners"][0]["identity"], identity);
        assert_eq!(
            sv.open_fds(),
            fds,
            "supervisor descriptors after restart {n}"
        );
    }
    let (ok, gens, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 0);
    assert_eq!(gens.last().map(String::as_str), Some("4"), "{gens:?}");
    assert_eq!(sv.status()["restarts"], 3);
    assert_eq!(zombies_of(sv.pid()), 0);
    sv.stop();
    assert_eq!(handoff::count_open_handles().unwrap(), before);
}

/// Each bad version is refused with one line, killed and reaped, and the
/// old generation still answers on the same socket.
fn bad_version(mode: &str, opts: Opts<'_>, expect: &str) {
    let before = handoff::count_open_handles().unwrap();
    let sv = Supervisor::start(ROLE, opts);
    let port = sv.port("http");
    let fds = sv.open_fds();
    let old = sv.generation_pids();
    sv.set_mode(mode);
    let (code, line) = sv.restart(&[]);
    assert_eq!(code, 1, "{mode}: {line}");
    assert_eq!(line.lines().count(), 1, "{mode}: {line}");
    assert!(line.contains(expect), "{mode}: {line:?} lacks {expect:?}");
    assert_eq!(
        sv.generation_pids(),
        old,
        "{mode}: the old generation must remain"
    );
    assert!(get(port).unwrap().starts_with("gen 1 "), "{mode}");
    assert_eq!(sv.open_fds(), fds, "{mode}: supervisor descriptors");
    assert_eq!(zombies_of(sv.pid()), 0, "{mode}");
    assert_eq!(
        children_of(sv.pid()),
        old,
        "{mode}: only the old generation is left"
    );
    // And it recovers: the next good version takes over.
    sv.set_mode("serve");
    let (code, line) = sv.restart(&[]);
    assert_eq!(code, 0, "{mode}: {line}");
    assert!(get(port).unwrap().starts_with("gen 3 "), "{mode}");
    sv.stop();
    assert_eq!(handoff::count_open_handles().unwrap(), before);
}

#[test]
fn crash_before_ready_is_reported() {
    let _g = serial();
    bad_version(
        "crash-before-ready",
        Opts::default(),
        "generation 2 exited with status 3 before READY=1",
    );
}

#[test]
fn death_by_signal_before_ready_is_reported() {
    let _g = serial();
    bad_version(
        "abort-before-ready",
        Opts::default(),
        "generation 2 was killed by signal 6 (SIGABRT) before READY=1",
    );
}

#[test]
fn hang_without_ready_is_killed_at_the_ready_timeout() {
    let _g = serial();
    bad_version(
        "hang",
        Opts::default().ready("1.5"),
        "generation 2 was not ready within 1.5 s; killed",
    );
}

#[test]
fn crash_right_after_ready_is_reported() {
    let _g = serial();
    bad_version(
        "crash-after-ready",
        Opts::default(),
        "generation 2 exited with status 4 right after READY=1",
    );
}

#[test]
fn closing_the_listeners_is_reported() {
    let _g = serial();
    bad_version(
        "close-listeners",
        Opts::default(),
        "generation 2 closed its listener(s) http after READY=1; killed",
    );
}

#[test]
fn shutting_down_the_listeners_is_reported_and_repaired() {
    let _g = serial();
    // A fixed port: shutdown() releases an ephemeral one, and then no
    // listen() gets the same address back.
    let port = free_port();
    let listen = format!("http=tcp:127.0.0.1:{port}");
    bad_version(
        "shutdown-listeners",
        Opts::listening(&[&listen]),
        "generation 2 shut down its listener(s) http after READY=1; killed; listening again on the same socket",
    );
}

#[test]
fn a_generation_that_double_forks_and_exits_is_reported_and_its_orphan_reaped() {
    let sv = Supervisor::alone(Opts::default());
    let orphan_file = sv.mode.with_extension("orphan");
    sv.set_mode("double-fork");
    let (code, line) = sv.restart(&[]);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.contains("generation 2 exited with status 0 before READY=1"),
        "{line}"
    );
    let orphan: u32 = std::fs::read_to_string(&orphan_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The orphan was adopted by the supervisor (a subreaper), killed and
    // reaped: no such process any more, not even a zombie.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{orphan}")).exists()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!std::path::Path::new(&format!("/proc/{orphan}")).exists());
    assert_eq!(zombies_of(sv.pid()), 0);
    sv.stop();
}

#[test]
fn ignoring_the_stop_signal_ends_in_sigkill_at_the_drain_timeout() {
    let sv = Supervisor::alone(Opts::mode("ignore-term").drain("1"));
    let port = sv.port("http");
    let fds = sv.open_fds();
    let line = sv.restart_as("serve", 2);
    assert!(
        line.contains("generation 1 ignored SIGTERM and was killed at the drain timeout (1 s)"),
        "{line}"
    );
    assert!(get(port).unwrap().starts_with("gen 2 "));
    assert_eq!(sv.open_fds(), fds);
    assert_eq!(zombies_of(sv.pid()), 0);
    sv.stop();
}

#[test]
fn two_triggers_at_once_give_one_restart() {
    let sv = Supervisor::alone(Opts::default());
    // A slow version keeps the first restart under way long enough for
    // the second trigger to find it (it waits for a ready timeout).
    sv.set_mode("hang");
    let first = std::thread::scope(|s| {
        let a = s.spawn(|| sv.restart(&[]));
        // The second trigger comes once the first has started generation 2.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sv.status()["restarting"] != true && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (code, line) = sv.restart(&[]);
        assert_eq!(code, 1, "{line}");
        assert!(line.contains("a restart is already under way"), "{line}");
        a.join().unwrap()
    });
    assert_eq!(first.0, 1, "{}", first.1);
    assert!(
        first.1.contains("generation 2 was not ready"),
        "{}",
        first.1
    );
    // Exactly one generation was tried: the next is number 3.
    sv.restart_as("serve", 3);
    sv.stop();
}

#[test]
fn sighup_restarts() {
    let sv = Supervisor::alone(Opts::default());
    let port = sv.port("http");
    sv.signal(rustix::process::Signal::HUP);
    sv.wait_alone(2);
    assert!(get(port).unwrap().starts_with("gen 2 "));
    assert!(sv.log_text().contains("SIGHUP: restart"));
    sv.stop();
}

#[test]
fn status_json_lists_generations_listeners_and_store() {
    let sv = Supervisor::alone(Opts {
        listens: &["http=tcp:127.0.0.1:0", "dns=udp:127.0.0.1:0"],
        first_mode: "store",
        ..Opts::default()
    });
    let s = sv.status();
    assert_eq!(s["supervisor_pid"], sv.pid());
    assert_eq!(s["restarts"], 0);
    let g = &s["generations"][0];
    assert_eq!(g["number"], 1);
    assert_eq!(g["state"], "serving");
    assert_eq!(g["status"], "generation store");
    assert!(g["started"].as_u64().unwrap() > 1_600_000_000);
    let names: Vec<_> = s["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["http", "dns"]);
    assert!(s["listeners"][0]["address"]
        .as_str()
        .unwrap()
        .starts_with("tcp 127.0.0.1:"));
    assert!(s["listeners"][1]["address"]
        .as_str()
        .unwrap()
        .starts_with("udp 127.0.0.1:"));
    assert_eq!(s["stored"][0]["name"], "kept");
    assert_eq!(s["stored"][0]["count"], 1);
    let text = handoff()
        .args(["status", "--control"])
        .arg(&sv.control)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("generation 1: pid"), "{text}");
    assert!(text.contains("stored kept: 1 handle(s)"), "{text}");
    sv.stop();
}

#[test]
fn a_stored_handle_reaches_the_next_generation_and_remove_closes_it() {
    let sv = Supervisor::alone(Opts::mode("store"));
    let fds = sv.open_fds();
    sv.restart_as("check-store", 2);
    let s = sv.status();
    assert_eq!(
        s["generations"][0]["status"],
        "store: kept across generations"
    );
    // Generation 2 took the handle; the supervisor still holds its copy.
    // The other stored pipe had hung up (no FDPOLL=0): closed at the start.
    assert_eq!(s["stored"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["stored"][0]["count"], 1);
    assert_eq!(sv.open_fds(), fds - 1);
    assert!(sv
        .log_text()
        .contains("stored handle hung up; closed name=\"gone\""));
    sv.restart_as("remove-store", 3);
    assert_eq!(sv.status()["stored"].as_array().unwrap().len(), 0);
    assert_eq!(sv.open_fds(), fds - 2, "FDSTOREREMOVE=1 closed the copy");
    sv.stop();
}

#[test]
fn listen_on_an_address_in_use_fails_loudly() {
    let _g = serial();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = handoff()
        .arg("serve")
        .arg(format!("--listen=http=tcp:127.0.0.1:{port}"))
        .arg("--control")
        .arg(dir.path().join("c.sock"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("--listen http: 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
}

#[test]
fn the_real_systemd_notify_tool_is_heard() {
    let _g = serial();
    if !std::path::Path::new("/usr/bin/systemd-notify").exists() {
        panic!("/usr/bin/systemd-notify is missing (.ci/run installs systemd)");
    }
    let sv = Supervisor::start(ROLE, Opts::mode("systemd-notify"));
    let s = sv.status();
    assert_eq!(s["generations"][0]["status"], "ready via systemd-notify");
    assert!(get(sv.port("http")).unwrap().starts_with("gen 1 "));
    sv.stop();
}

#[test]
fn the_supervisor_replaces_itself_under_load_and_keeps_everything() {
    let sv = Supervisor::alone(Opts::mode("store"));
    let port = sv.port("http");
    let before = sv.status();
    let fds = sv.open_fds();
    let load = Load::start(port);
    let (code, line) = sv.restart(&["--supervisor"]);
    assert_eq!(code, 0, "{line}\n{}", sv.log_text());
    assert!(
        line.starts_with(&format!("supervisor replaced (pid {}); kept 1 listener(s), 2 stored handle(s), generation 1 (pid ", sv.pid())),
        "{line}"
    );
    // SIGUSR2 does the same.
    sv.signal(rustix::process::Signal::USR2);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sv.log_text().matches("state taken back").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", sv.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = sv.status();
    assert_eq!(after["generations"], before["generations"]);
    assert_eq!(after["listeners"], before["listeners"]);
    assert_eq!(after["stored"], before["stored"]);
    // Everything kept, less one: the first image held the generation it
    // spawned twice (its `Child` and a pidfd `Process`); the new image
    // holds the kept pidfd only.
    assert_eq!(sv.open_fds(), fds - 1);
    // The new image still restarts, stops and reaps the generation it
    // adopted by pidfd.
    sv.set_mode("check-store");
    let line = sv.restart_ok();
    assert!(line.contains("generation 1 exited with status 0"), "{line}");
    let (ok, gens, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(ok > 0);
    assert_eq!(gens, ["1", "2"]);
    assert_eq!(
        sv.status()["generations"][0]["status"],
        "store: kept across generations"
    );
    assert_eq!(zombies_of(sv.pid()), 0);
    sv.stop();
}

#[test]
fn a_sigkilled_supervisor_leaves_the_generation_serving() {
    let mut sv = Supervisor::alone(Opts::default());
    let port = sv.port("http");
    let gen = sv.generation_pids()[0];
    sv.child.kill().unwrap();
    sv.child.wait().unwrap();
    // The generation holds its own copy of the listener.
    assert!(get(port).unwrap().starts_with("gen 1 "));
    let p = handoff::Process::open(gen).unwrap();
    p.kill().unwrap();
    // Not our child: the kernel only says it exited.
    p.wait().unwrap();
}

#[test]
fn several_listeners_on_the_same_host_and_a_unix_path_survive_restarts() {
    let _g = serial();
    let (_dir, path, unix) = unix_listen();
    let sv = Supervisor::start(
        ROLE,
        Opts::listening(&["http=tcp:127.0.0.1:0", "admin=tcp:127.0.0.1:0", &unix]),
    );
    let before = sv.status()["listeners"].clone();
    let identities: Vec<u64> = before
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["identity"].as_u64().unwrap())
        .collect();
    assert_eq!(identities.len(), 3);
    let fds = sv.open_fds();
    for n in 2..=6u64 {
        sv.restart_ok();
        let pid = sv.generation_pids()[0];
        let held = socket_inodes(pid);
        assert!(
            identities.iter().all(|i| held.contains(i)),
            "generation {n}"
        );
        assert_eq!(sv.status()["listeners"], before);
        assert_eq!(sv.open_fds(), fds);
        // The path still reaches the socket (no generation unlinked it).
        std::os::unix::net::UnixStream::connect(&path).unwrap();
    }
    sv.stop();
}

#[test]
fn a_supervisor_under_a_supervisor_adopts_the_sockets_and_reports_ready() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let inner_control = dir.path().join("inner.sock");
    let wrap: Vec<&std::ffi::OsStr> = vec![
        env!("CARGO_BIN_EXE_handoff").as_ref(),
        "serve".as_ref(),
        "--control".as_ref(),
        inner_control.as_os_str(),
        "--".as_ref(),
    ];
    let outer = Supervisor::start(
        ROLE,
        Opts {
            wrap: &wrap,
            ..Opts::default()
        },
    );
    // The outer one's generation 1 is the inner supervisor, ready once
    // its own generation 1 serves.
    let s = outer.status();
    assert_eq!(s["generations"][0]["status"], "generation 1 serves");
    let port = outer.port("http");
    let identity = s["listeners"][0]["identity"].clone();
    let inner = handoff()
        .args(["status", "--json", "--control"])
        .arg(&inner_control)
        .output()
        .unwrap();
    let inner: serde_json::Value = serde_json::from_slice(&inner.stdout).unwrap();
    // Adopted, not re-bound: the same socket.
    assert_eq!(inner["listeners"][0]["name"], "http");
    assert_eq!(inner["listeners"][0]["identity"], identity);
    assert!(get(port).unwrap().starts_with("gen 1 "));
    restart_at(&inner_control);
    assert!(get(port).unwrap().starts_with("gen 2 "));
    outer.stop();
}

#[test]
fn under_systemd_socket_activate_the_first_connection_waits_for_generation_1() {
    let _g = serial();
    // Debian's systemd package ships it; .ci/run installs it.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("c.sock");
    let mode = dir.path().join("mode");
    std::fs::write(&mode, "serve").unwrap();
    let mut child = std::process::Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=http"])
        // It passes on only the environment it is told to.
        .arg(format!("-E{ROLE_ENV}=generation"))
        .arg(format!("-E{MODE_ENV}={}", mode.display()))
        .arg(env!("CARGO_BIN_EXE_handoff"))
        .arg("serve")
        .arg("--control")
        .arg(&control)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", ROLE, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, "generation")
        .env(MODE_ENV, &mode)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("systemd-socket-activate is installed");
    // It starts the supervisor on the first connection, which waits in the
    // socket's queue until generation 1 accepts it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        match get(port) {
            Ok(text) => break text,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert!(first.starts_with("gen 1 "), "{first}");
    // Generation 1 answers before its start is complete (the supervisor
    // watches it for a moment after READY=1); a restart waits for that.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = handoff()
            .args(["status", "--json", "--control"])
            .arg(&control)
            .output()
            .unwrap();
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if s["restarting"] == false && s["generations"][0]["state"] == "serving" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never serving");
        std::thread::sleep(Duration::from_millis(20));
    }
    restart_at(&control);
    assert!(get(port).unwrap().starts_with("gen 2 "));
    // systemd-socket-activate exec'd the supervisor: same pid.
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_serving_generation_that_dies_is_replaced() {
    let sv = Supervisor::alone(Opts::default());
    let port = sv.port("http");
    let gen = handoff::Process::open(sv.generation_pids()[0]).unwrap();
    gen.kill().unwrap();
    sv.wait_alone(2);
    assert!(get(port).unwrap().starts_with("gen 2 "));
    assert!(sv
        .log_text()
        .contains("on its own; starting a new one in 1 s"));
    assert_eq!(zombies_of(sv.pid()), 0);
    sv.stop();
}

#[test]
fn mainpid_moves_the_main_process_and_a_restart_stops_both() {
    let sv = Supervisor::alone(Opts::mode("mainpid").drain("1"));
    let s = sv.status();
    let g = &s["generations"][0];
    assert_ne!(g["main_pid"], g["pid"], "{s}");
    let main = g["main_pid"].as_u64().unwrap() as u32;
    let first = g["pid"].as_u64().unwrap() as u32;
    let line = sv.restart_as("serve", 2);
    // The stop signal went to the main process (sleep, which died of it);
    // the process first spawned held on and was killed at the deadline.
    assert!(
        line.contains("generation 1 ignored SIGTERM and was killed"),
        "{line}"
    );
    for pid in [main, first] {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} left"
        );
    }
    assert_eq!(zombies_of(sv.pid()), 0);
    sv.stop();
}

#[test]
fn extend_timeout_usec_moves_the_ready_deadline() {
    let sv = Supervisor::alone(Opts::default().ready("1"));
    // Ready 2.5 s after start, with a 1 s ready timeout extended to 5 s.
    sv.restart_as("slow-start", 2);
    sv.stop();
}

#[test]
fn fd_files_reach_every_generation() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("app.conf");
    std::fs::write(&cfg, "x=1").unwrap();
    let fd = format!("--fd=cfg={}", cfg.display());
    let sv = Supervisor::start(
        ROLE,
        Opts {
            extra: &[&fd],
            ..Opts::default()
        },
    );
    let s = sv.status();
    assert_eq!(s["listeners"][1]["name"], "cfg");
    assert_eq!(s["listeners"][1]["address"], "file");
    sv.restart_ok();
    let pid = sv.generation_pids()[0];
    let held = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|t| t == cfg);
    assert!(held, "generation 2 holds the file");
    sv.stop();
}
