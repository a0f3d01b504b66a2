//! `--chaos`: the reliability campaign. Each case throws something at real
//! processes (kills, exhausted limits, strangers, load, hostile bytes),
//! asserts what must hold, and becomes one row of a table; the last line
//! is `N passed, N failed`.
//!
//! Children are this binary again, told their role by an environment
//! variable (so `main`'s argument parser never sees them) and given a
//! control channel as standard input. Every child asks the kernel to kill
//! it when the harness dies, so a failed or hung run leaves no strays.

mod admission;
mod hostile;
mod killed_peers;
mod limits;
mod load;
mod server;

use std::io::Write as _;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use handoff::{BorrowedHandle, Channel, Error, Message};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Result;

/// The variable that makes this binary a chaos child, naming its role.
const ROLE_ENV: &str = "HANDOFF_CHAOS_ROLE";

/// Set to a number to replay a run's random choices.
const SEED_ENV: &str = "HANDOFF_CHAOS_SEED";

/// Panics seen in this process: a child reports them, because tokio turns
/// a panicking task into a lost connection rather than a dead process.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Cfg {
    pub quick: bool,
    pub seed: u64,
}

impl Cfg {
    /// `quick` sized figure or the long one.
    fn pick<T>(&self, quick: T, long: T) -> T {
        if self.quick {
            quick
        } else {
            long
        }
    }
}

/// How a case ended.
#[derive(Debug)]
pub enum Verdict {
    Pass,
    Fail(Vec<String>),
    Skip(String),
}

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    pub case: &'static str,
    pub thrown: String,
    pub expected: &'static str,
    pub observed: String,
    pub counts: String,
    pub verdict: Verdict,
}

/// Collects the failed checks of a case, so one run reports all of them.
#[derive(Debug, Default)]
pub struct Checks {
    failed: Vec<String>,
}

impl Checks {
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failed.push(what());
        }
    }

    pub fn fail(&mut self, what: impl Into<String>) {
        self.failed.push(what.into());
    }

    pub fn verdict(self) -> Verdict {
        if self.failed.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail(self.failed)
        }
    }
}

type Case = fn(&Cfg) -> Result<Row>;

/// The cases in order, each with its row name for when it errors out.
const CASES: &[(&str, Case)] = &[
    ("1 killed peers", killed_peers::run),
    ("2a descriptor table full", limits::nofile),
    ("2b flood a slow receiver", limits::flood),
    ("2c huge frame", limits::huge_frame),
    ("2d abandoned connections", limits::abandoned),
    ("3a who may connect: Listener", admission::listener),
    ("3b who may connect: RPC server", admission::rpc_server),
    ("4 load", load::run),
    ("5a hostile bytes: Channel", hostile::channel),
    ("5b hostile bytes: RPC server", hostile::rpc_server),
];

/// Rows finished so far and the case running, for the watchdog.
static PROGRESS: Mutex<(Vec<Row>, &str)> = Mutex::new((Vec::new(), ""));

/// Runs every case and prints the table. Fails if any case failed.
pub fn run(quick: bool) -> ExitCode {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let cfg = Cfg { quick, seed };
    // The quick form must fit a CI step; the long one a coffee break. A
    // case stuck past this is a hang, which is itself a failure.
    let budget = Duration::from_secs(cfg.pick(115, 900));
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        let mut progress = PROGRESS.lock().unwrap_or_else(|p| p.into_inner());
        let case = progress.1;
        progress.0.push(Row {
            case: "watchdog",
            thrown: String::new(),
            expected: "the run ends in time",
            observed: format!("still in case {case:?} after {}s", budget.as_secs()),
            counts: String::new(),
            verdict: Verdict::Fail(vec![format!("{case} hung")]),
        });
        print_table(&cfg, &progress.0);
        std::process::exit(1);
    });
    let started = Instant::now();
    for &(name, case) in CASES {
        set_running(name);
        eprintln!("chaos: {name} ...");
        let t = Instant::now();
        let mut row = case(&cfg).unwrap_or_else(|e| Row {
            case: name,
            thrown: String::new(),
            expected: "",
            observed: format!("harness error: {}", crate::describe(e.as_ref())),
            counts: String::new(),
            verdict: Verdict::Fail(vec![crate::describe(e.as_ref())]),
        });
        let took = format!("{:.1} s", t.elapsed().as_secs_f64());
        row.counts = if row.counts.is_empty() {
            took
        } else {
            format!("{}; {took}", row.counts)
        };
        eprintln!(
            "chaos: {name}: {} in {:.1}s",
            match &row.verdict {
                Verdict::Pass => "passed".to_owned(),
                Verdict::Fail(why) => format!("FAILED: {}", why.join("; ")),
                Verdict::Skip(why) => format!("skipped: {why}"),
            },
            t.elapsed().as_secs_f64()
        );
        PROGRESS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .push(row);
    }
    let progress = PROGRESS.lock().unwrap_or_else(|p| p.into_inner());
    eprintln!("chaos: done in {:.1}s", started.elapsed().as_secs_f64());
    if print_table(&cfg, &progress.0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn set_running(name: &'static str) {
    PROGRESS.lock().unwrap_or_else(|p| p.into_inner()).1 = name;
}

/// Prints the rows as a Markdown table (so docs/reliability.md can quote a
/// run verbatim) and returns true if none failed.
fn print_table(cfg: &Cfg, rows: &[Row]) -> bool {
    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let _ = writeln!(
        out,
        "handoff-bench --chaos{}: seed {} ({SEED_ENV} replays it), {} CPUs\n",
        if cfg.quick { " --quick" } else { "" },
        cfg.seed,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let _ = writeln!(
        out,
        "| case | thrown at it | expected | observed | counts | result |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in rows {
        let result = match &row.verdict {
            Verdict::Pass => {
                passed += 1;
                "pass".to_owned()
            }
            Verdict::Fail(why) => {
                failed += 1;
                format!("**FAIL**: {}", why.join("; "))
            }
            Verdict::Skip(why) => {
                skipped += 1;
                format!("skipped: {why}")
            }
        };
        let cell = |s: &str| s.replace('|', "/").replace('\n', " ");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            cell(row.case),
            cell(&row.thrown),
            cell(row.expected),
            cell(&row.observed),
            cell(&row.counts),
            cell(&result)
        );
    }
    if skipped > 0 {
        let _ = writeln!(out, "\n{skipped} skipped (counted neither way)");
    }
    let _ = writeln!(out, "\n{passed} passed, {failed} failed");
    let _ = out.flush();
    failed == 0
}

/// If this process is a chaos child, runs its role and returns its exit
/// code; `None` for the harness and the benchmark's own processes.
pub fn child_main() -> Option<ExitCode> {
    let role = std::env::var(ROLE_ENV).ok()?;
    // Orphans would outlive a killed harness and skew the next run.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let outcome = match role.as_str() {
        server::ROLE => server::role(),
        killed_peers::ROLE => killed_peers::client_role(),
        limits::NOFILE_ROLE => limits::nofile_role(),
        limits::SENDER_ROLE => limits::sender_role(),
        limits::RECEIVER_ROLE => limits::receiver_role(),
        limits::HUGE_ROLE => limits::huge_role(),
        admission::ROLE => admission::peer_role(),
        load::ROLE => load::client_role(),
        hostile::ROLE => hostile::receiver_role(),
        other => Err(format!("unknown chaos role {other:?}").into()),
    };
    Some(match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaos child {role}: {}", crate::describe(e.as_ref()));
            ExitCode::FAILURE
        }
    })
}

/// Panics this process has seen.
pub fn panics() -> u64 {
    PANICS.load(Ordering::SeqCst)
}

/// A child process in a role, with a control channel to it. Dropping it
/// kills the child.
#[derive(Debug)]
pub struct Kid {
    process: Option<std::process::Child>,
    ctl: Channel,
    role: &'static str,
}

impl Kid {
    /// Starts this binary as `role` with `env` set and the control channel
    /// as its standard input.
    pub fn spawn(role: &'static str, env: &[(&str, String)]) -> Result<Kid> {
        let (ours, theirs) = Channel::pair()?;
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.env(ROLE_ENV, role)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(
                theirs.into_handle(),
            )))
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let process = cmd
            .spawn()
            .map_err(|e| format!("spawn chaos child {role}: {e}"))?;
        // The Command holds the parent's copy of the child's end until
        // dropped; without it the child alone owns it and sees our exit.
        drop(cmd);
        Ok(Kid {
            process: Some(process),
            ctl: ours,
            role,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, |p| p.id())
    }

    pub fn ctl(&self) -> &Channel {
        &self.ctl
    }

    pub fn send(&self, bytes: &[u8], handles: &[BorrowedHandle<'_>]) -> Result<()> {
        self.ctl
            .send(bytes, handles)
            .map_err(|e| format!("to {}: {e}", self.role))?;
        Ok(())
    }

    pub fn recv(&self, timeout: Duration) -> Result<Message> {
        recv_timeout(&self.ctl, timeout).map_err(|e| format!("from {}: {e}", self.role).into())
    }

    pub fn recv_json<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        let msg = self.recv(timeout)?;
        Ok(serde_json::from_slice(&msg.bytes)?)
    }

    /// The exit status if the child has ended.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        match self.process.as_mut() {
            Some(p) => Ok(p.try_wait()?),
            None => Ok(None),
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        let mut p = self.process.take().ok_or("child already reaped")?;
        let _ = p.kill();
        Ok(p.wait()?)
    }

    /// Waits for the child to exit on its own, killing it after `timeout`
    /// (then the error says it hung).
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited()? {
                self.process = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.kill();
                return Err(format!("{} child did not exit in {timeout:?}", self.role).into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// Receives a message within `timeout`, else [`Error::WouldBlock`]: no
/// harness wait is unbounded.
pub fn recv_timeout(ch: &Channel, timeout: Duration) -> handoff::Result<Message> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = Instant::now() + timeout;
    let mut msg = Message::new();
    loop {
        match ch.try_recv_into(&mut msg) {
            Err(Error::WouldBlock) => {}
            other => return other.map(|()| msg),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::WouldBlock);
        }
        let wait = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let fd = ch.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&wait)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(Error::Io {
                    op: "poll",
                    source: e.into(),
                })
            }
        }
    }
}

/// In a child: the control channel on standard input.
pub fn child_ctl() -> Result<Channel> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    Ok(Channel::from_handle(handoff::Handle::from(fd))?)
}

pub fn send_json<T: Serialize>(ch: &Channel, value: &T) -> Result<()> {
    ch.send(&serde_json::to_vec(value)?, &[])?;
    Ok(())
}

pub fn env<T: std::str::FromStr>(name: &str) -> Result<T> {
    let v = std::env::var(name).map_err(|_| format!("{name} is not set"))?;
    v.parse()
        .map_err(|_| format!("{name}={v:?} does not parse").into())
}

/// A file at `path`, created empty for reading and writing and unlinked at
/// once: a client's handle to pass, which nothing else can reach and
/// nothing has to clean up.
pub fn unlinked_file(path: &std::path::Path) -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    std::fs::remove_file(path)?;
    Ok(file)
}

/// This process's resident set now and at its peak, in KiB.
pub fn memory() -> Result<Memory> {
    memory_of("self")
}

/// `VmRSS` and `VmHWM` of `/proc/<pid>/status`.
pub fn memory_of(pid: &str) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .ok_or("empty field")?
            .parse()?)
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// xorshift64*: reproducible from the printed seed, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A directory for a case's sockets and files, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "handoff-chaos-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path)?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `probe` until it returns `Some` or `timeout` passes; then the
/// last value it saw is the caller's to judge.
pub fn wait_for<T>(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<(bool, T)>,
) -> Result<(bool, T)> {
    let deadline = Instant::now() + timeout;
    loop {
        let (done, value) = probe()?;
        if done || Instant::now() > deadline {
            return Ok((done, value));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
