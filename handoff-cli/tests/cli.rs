//! The `handoff` binary against real processes. Children that hold handles
//! are this test binary run again with a role (see `child_roles`); they
//! print their descriptor numbers and wait for their stdin to close.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::Instant;

const ROLE_ENV: &str = "HANDOFF_CLI_TEST_ROLE";
const FILE_ENV: &str = "HANDOFF_CLI_TEST_FILE";
const FILE_DATA: &[u8] = b"file contents\n";
const PIPE_DATA: &[u8] = b"through the pipe\n";

fn handoff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_handoff"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run handoff")
}

/// As [`run`], for a command that must succeed (its stderr if not).
fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A usage or runtime error: the given status and exactly one line on
/// stderr, prefixed and free of panics.
fn assert_one_line_error(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("handoff: "), "{err:?}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
    assert!(!err.contains("panicked"), "{err:?}");
}

/// A child process holding handles, alive until dropped.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    _stdout: BufReader<ChildStdout>,
    fds: HashMap<String, String>,
}

impl Holder {
    fn spawn(role: &str, env: &[(&str, &str)]) -> Holder {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "child_roles", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let fds = loop {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "child ended before it was ready"
            );
            // libtest may have printed "test child_roles ... " on the same
            // line first.
            if let Some(at) = line.find("ready ") {
                break line[at + "ready ".len()..]
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
            }
        };
        Holder {
            child,
            stdin,
            _stdout: reader,
            fds,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn fd(&self, name: &str) -> &str {
        &self.fds[name]
    }

    /// `handoff grab` of the handle this holder printed as `name`, then
    /// `rest`: the options, `--` and the command.
    fn grab(&self, name: &str, rest: &[&str]) -> Command {
        let mut cmd = handoff();
        cmd.args(["grab", &self.pid(), self.fd(name)]).args(rest);
        cmd
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn holder_with_file() -> (Holder, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.txt");
    std::fs::write(&path, FILE_DATA).unwrap();
    let holder = Holder::spawn("holder", &[(FILE_ENV, path.to_str().unwrap())]);
    (holder, dir, path)
}

/// Not a test of its own: the body of the child processes.
#[test]
fn child_roles() {
    // Each role holds its handles until the parent closes our stdin.
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("holder") => hold_one_of_each(),
        Ok("many") => hold_ten_thousand(),
        _ => {}
    }
}

fn hold_one_of_each() {
    use rustix::fs::{MemfdFlags, SealFlags};
    let path = std::env::var(FILE_ENV).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let (pipe_r, pipe_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    rustix::io::write(&pipe_w, PIPE_DATA).unwrap();
    drop(pipe_w);
    let memfd =
        rustix::fs::memfd_create("cli-test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .unwrap();
    rustix::io::write(&memfd, b"sealed!").unwrap();
    rustix::fs::fcntl_add_seals(
        &memfd,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )
    .unwrap();
    let event = rustix::event::eventfd(5, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let (sock, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let parent = rustix::process::getppid().unwrap();
    let pidfd = rustix::process::pidfd_open(parent, rustix::process::PidfdFlags::empty()).unwrap();
    println!(
        "ready file={} pipe={} memfd={} event={} socket={} listener={} port={} pidfd={}",
        file.as_raw_fd(),
        pipe_r.as_raw_fd(),
        memfd.as_raw_fd(),
        event.as_raw_fd(),
        sock.as_raw_fd(),
        listener.as_raw_fd(),
        listener.local_addr().unwrap().port(),
        pidfd.as_raw_fd(),
    );
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop((file, pipe_r, memfd, event, sock, listener, pidfd));
}

fn hold_ten_thousand() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < 10_200) {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit).unwrap();
    }
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let mut held: Vec<OwnedFd> = Vec::with_capacity(10_000);
    for _ in 0..1000 {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        held.push(a.into());
        held.push(b.into());
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        held.push(r);
        held.push(w);
    }
    while held.len() < 10_000 {
        held.push(rustix::io::fcntl_dupfd_cloexec(&file, 0).unwrap());
    }
    println!("ready count={}", held.len());
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(held);
}

/// The descriptors of this process that a child inherits: those without
/// close-on-exec.
fn inheritable_fds() -> Vec<u32> {
    let mut fds: Vec<u32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| {
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .map(str::trim);
            flags.is_some_and(|f| u32::from_str_radix(f, 8).is_ok_and(|f| f & 0o2000000 == 0))
        })
        .collect();
    fds.sort_unstable();
    fds
}

#[test]
fn ls_of_itself_shows_exactly_what_it_inherited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stdin.txt");
    std::fs::write(&path, b"x").unwrap();
    let out = handoff()
        .arg("ls")
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(text.lines().next().unwrap().contains("TARGET"));
    assert_eq!(rows[0][..4], ["0", "file", "r", "no"]);
    assert_eq!(rows[0][4], path.to_str().unwrap());
    assert_eq!(rows[1][..4], ["1", "pipe", "w", "no"]);
    assert_eq!(rows[2][..4], ["2", "pipe", "w", "no"]);
    // Besides its stdio, exactly what this process let it inherit: not the
    // directory it read the listing from.
    let listed: Vec<u32> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    let mut expected: Vec<u32> = inheritable_fds().into_iter().filter(|fd| *fd > 2).collect();
    expected.splice(0..0, [0, 1, 2]);
    assert_eq!(listed, expected, "{text}");
}

#[test]
fn ls_of_a_child_names_every_kind() {
    let (holder, _dir, path) = holder_with_file();
    let out = run_ok(handoff().args(["ls", &holder.pid()]));
    let text = stdout(&out);
    let row = |name: &str| -> String {
        let fd = holder.fd(name);
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(fd))
            .unwrap_or_else(|| panic!("no row for {name} ({fd}):\n{text}"))
            .to_owned()
    };
    assert!(
        row("file").contains(&format!(
            "file           rw      yes      {}",
            path.display()
        )),
        "{}",
        row("file")
    );
    assert!(
        row("pipe").contains("pipe           r       yes      pipe inode"),
        "{}",
        row("pipe")
    );
    assert!(row("pipe").ends_with("read end"));
    assert!(row("memfd").contains(r#"shared-memory  rw      yes      memfd "cli-test", 7 bytes, sealed seal+shrink+grow+write"#), "{}", row("memfd"));
    assert!(
        row("event").contains("event") && row("event").ends_with("eventfd, count 5"),
        "{}",
        row("event")
    );
    assert!(
        row("socket").contains("socket") && row("socket").contains("unix stream connected"),
        "{}",
        row("socket")
    );
    let port = holder.fd("port");
    assert!(
        row("listener").ends_with(&format!("tcp 127.0.0.1:{port} (listening)")),
        "{}",
        row("listener")
    );
    assert!(
        row("pidfd").ends_with(&format!(
            "process        rw      yes      pid {}",
            std::process::id()
        )),
        "{}",
        row("pidfd")
    );
}

#[test]
fn ls_json_is_one_object_per_handle() {
    let (holder, _dir, path) = holder_with_file();
    let out = run(handoff().args(["ls", "--json", &holder.pid()]));
    assert!(out.status.success());
    let mut by_fd = HashMap::new();
    for line in stdout(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["access", "cloexec", "fd", "kind", "target"]);
        assert!(obj["fd"].is_u64() && obj["kind"].is_string() && obj["access"].is_string());
        assert!(obj["cloexec"].is_boolean() && obj["target"].is_string());
        by_fd.insert(obj["fd"].to_string(), v.clone());
    }
    let get = |name: &str| &by_fd[holder.fd(name)];
    assert_eq!(get("file")["kind"], "file");
    assert_eq!(get("file")["access"], "rw");
    assert_eq!(get("file")["cloexec"], true);
    assert_eq!(get("file")["target"], path.to_str().unwrap());
    assert_eq!(get("pipe")["kind"], "pipe");
    assert_eq!(get("pipe")["access"], "r");
    assert_eq!(get("memfd")["kind"], "shared-memory");
    assert_eq!(get("event")["kind"], "event");
    assert_eq!(get("socket")["kind"], "socket");
    assert_eq!(get("pidfd")["kind"], "process");
    assert_eq!(
        get("pidfd")["target"],
        format!("pid {}", std::process::id())
    );
    assert_eq!(by_fd["0"]["kind"], "pipe", "the holder's stdin");
}

/// Every one of ten thousand handles is listed, each kind as many times as
/// the holder made it. How long the listing takes is printed, not asserted:
/// a test's verdict does not hang on the machine's load.
#[test]
fn ls_lists_ten_thousand_handles() {
    let holder = Holder::spawn("many", &[]);
    assert_eq!(holder.fd("count"), "10000");
    let start = Instant::now();
    let out = run_ok(handoff().args(["ls", "--json", &holder.pid()]));
    let took = start.elapsed();
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let mut lines = 0;
    for line in stdout(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *kinds
            .entry(v["kind"].as_str().unwrap().to_owned())
            .or_default() += 1;
        lines += 1;
    }
    eprintln!("handoff ls --json: {lines} handles in {took:?}");
    assert!(lines >= 10_000, "{lines} handles listed");
    // The holder's 1000 socket pairs and 1000 pipes, the rest copies of
    // one file; stdio and the test harness add a few of each.
    let listed = |kind: &str| kinds.get(kind).copied().unwrap_or(0);
    assert!(listed("socket") >= 2000, "{kinds:?}");
    assert!(listed("pipe") >= 2000, "{kinds:?}");
    assert!(listed("file") >= 6000, "{kinds:?}");
}

#[test]
fn grab_a_file_into_cat() {
    let (holder, _dir, _path) = holder_with_file();
    let out = run_ok(&mut holder.grab("file", &["--stdin", "--", "cat"]));
    assert_eq!(out.stdout, FILE_DATA);
}

#[test]
fn grab_a_pipe_at_fd_3_with_the_systemd_variables() {
    let holder = holder_with_file().0;
    let script = r#"cat <&3; echo "$LISTEN_FDS $LISTEN_PID $$ $LISTEN_FDNAMES"; if [ -e /proc/$$/fd/4 ]; then echo leaked; fi"#;
    let out = run_ok(&mut holder.grab("pipe", &["--", "sh", "-c", script]));
    let text = stdout(&out);
    let (data, vars) = text.split_at(PIPE_DATA.len());
    assert_eq!(data.as_bytes(), PIPE_DATA);
    let vars: Vec<&str> = vars.split_whitespace().collect();
    assert_eq!(vars.len(), 4, "{text:?}");
    assert_eq!(vars[0], "1");
    assert_eq!(vars[1], vars[2], "LISTEN_PID is the command's own pid");
    assert_eq!(vars[3], "grabbed");
}

#[test]
fn grab_as_another_number_or_as_stdout() {
    let (holder, _dir, path) = holder_with_file();
    let script = r#"cat <&7; echo "[$LISTEN_FDS]""#;
    let out = run_ok(&mut holder.grab("file", &["--as", "7", "--", "sh", "-c", script]));
    assert_eq!(
        stdout(&out),
        format!("{}[]\n", String::from_utf8_lossy(FILE_DATA))
    );

    // The grabbed handle shares the holder's file offset, now at the end.
    let out = run(&mut holder.grab("file", &["--stdout", "--", "echo", "appended"]));
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        [FILE_DATA, b"appended\n"].concat()
    );
}

#[test]
fn grab_with_reduced_access_is_enforced_by_the_kernel() {
    let (holder, _dir, path) = holder_with_file();
    let out = run(&mut holder.grab(
        "file",
        &["--access", "r", "--", "sh", "-c", "echo overwrite >&3"],
    ));
    assert!(!out.status.success());
    assert_ne!(
        out.status.code(),
        Some(125),
        "handoff itself succeeded; the write failed"
    );
    assert_eq!(std::fs::read(&path).unwrap(), FILE_DATA);

    let out = run(&mut holder.grab("pipe", &["--access", "w", "--", "true"]));
    assert_one_line_error(&out, 125, "wrong access");
}

#[test]
fn grab_passes_on_the_commands_status() {
    let holder = holder_with_file().0;
    let pid = holder.pid();
    let out = run(handoff().args(["grab", &pid, "0", "--", "sh", "-c", "exit 7"]));
    assert_eq!(out.status.code(), Some(7));
    let out = run(handoff().args(["grab", &pid, "0", "--", "sh", "-c", "kill -TERM $$"]));
    assert_eq!(out.status.code(), Some(128 + 15));
    let out = run(handoff().args(["grab", &pid, "0", "--", "/nonexistent/command"]));
    assert_one_line_error(&out, 127, "cannot run");
}

#[test]
fn bogus_pid_and_fd_are_one_line_errors() {
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id().to_string();
    gone.wait().unwrap();
    assert_one_line_error(
        &run(handoff().args(["ls", &gone_pid])),
        1,
        &format!("no such process: {gone_pid}"),
    );
    assert_one_line_error(
        &run(handoff().args(["grab", &gone_pid, "0", "--", "true"])),
        125,
        &format!("no such process: {gone_pid}"),
    );

    let holder = holder_with_file().0;
    let pid = holder.pid();
    assert_one_line_error(
        &run(handoff().args(["grab", &pid, "9999", "--", "true"])),
        125,
        &format!("process {pid} has no open handle 9999"),
    );
    assert_one_line_error(
        &run(&mut holder.grab("socket", &["--access", "r", "--", "true"])),
        125,
        "unsupported",
    );
}

#[test]
fn non_numeric_and_negative_arguments_are_usage_errors() {
    for args in [
        &["ls", "abc"][..],
        &["ls", "-5"],
        &["ls", "0"],
        &["ls", "99999999999999999999"],
        &["grab", "abc", "3", "--", "true"],
        &["grab", "1", "x", "--", "true"],
        &["grab", "1", "-1", "--", "true"],
        &["grab", "1", "3", "--access", "rwx", "--", "true"],
        &["grab", "1", "3", "--stdin", "--stdout", "--", "true"],
        &["grab", "1", "3"],
        &["frobnicate"],
    ] {
        let out = run(handoff().args(args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(
            err.starts_with("handoff: ") && !err.contains("panicked"),
            "{args:?}: {err:?}"
        );
    }
    let out = run(handoff().args(["ls", "abc"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"abc\" is not a process id"));
}

#[test]
fn refused_permission_is_explained() {
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: needs root to run handoff as another user");
        return;
    }
    let holder = holder_with_file().0;
    let pid = holder.pid();
    let as_nobody = |args: &[&str]| run(handoff().args(args).uid(65534).gid(65534));
    let out = as_nobody(&["grab", &pid, "0", "--", "true"]);
    assert_one_line_error(&out, 125, "not permitted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ptrace"));
    assert_one_line_error(&as_nobody(&["ls", &pid]), 1, "not permitted");
}
