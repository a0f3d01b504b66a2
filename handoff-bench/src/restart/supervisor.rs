//! Driving `handoff serve` / `handoff restart` as a user would: the real
//! binary, its real flags, its exit status and one-line reason.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::load::Target;
use super::procs;
use crate::Result;

/// A running `handoff serve`.
#[derive(Debug)]
pub struct Supervisor {
    child: Child,
    pub bin: PathBuf,
    pub control: PathBuf,
}

/// What one `handoff restart` said.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub ok: bool,
    /// Its last non-empty line of output (the reason, on failure).
    pub line: String,
    /// How many non-empty lines it wrote on stderr.
    pub lines: usize,
    pub took: Duration,
}

/// The timeouts the campaign's supervisor runs with.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub ready: u64,
    pub drain: u64,
}

impl Supervisor {
    /// `handoff serve --listen ... --control C --ready-timeout R
    /// --drain-timeout D -- CMD...`, its output appended to `log`.
    pub fn start(
        bin: &Path,
        listens: &[String],
        control: &Path,
        timeouts: Timeouts,
        cmd: &[&std::ffi::OsStr],
        envs: &[(&str, &std::ffi::OsStr)],
        log: &Path,
    ) -> Result<Supervisor> {
        let out = File::options().create(true).append(true).open(log)?;
        let mut command = Command::new(bin);
        command.arg("serve");
        for l in listens {
            command.arg("--listen").arg(l);
        }
        command
            .arg("--control")
            .arg(control)
            .arg("--ready-timeout")
            .arg(timeouts.ready.to_string())
            .arg("--drain-timeout")
            .arg(timeouts.drain.to_string())
            .arg("--")
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (k, v) in envs {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting {} serve: {e}", bin.display()))?;
        Ok(Supervisor {
            child,
            bin: bin.to_owned(),
            control: control.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the supervisor process is still there.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until exactly one generation runs and `probe` succeeds.
    pub fn wait_serving(&mut self, within: Duration, probe: impl Fn() -> bool) -> Result<u32> {
        let until = Instant::now() + within;
        loop {
            if !self.running() {
                return Err("handoff serve exited before serving (see its log)".into());
            }
            let gens = procs::live_children(self.pid());
            if gens.len() == 1 && probe() {
                return Ok(gens[0]);
            }
            if Instant::now() > until {
                return Err(format!(
                    "no single serving generation within {within:?} (children {gens:?})"
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `handoff restart --control C [extra...]`.
    pub fn restart(&self, extra: &[&str]) -> Trigger {
        let started = Instant::now();
        let output = Command::new(&self.bin)
            .arg("restart")
            .arg("--control")
            .arg(&self.control)
            .args(extra)
            .stdin(Stdio::null())
            .output();
        let took = started.elapsed();
        match output {
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let all = format!("{}{err}", String::from_utf8_lossy(&out.stdout));
                Trigger {
                    ok: out.status.success(),
                    line: all
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .to_owned(),
                    lines: err.lines().filter(|l| !l.trim().is_empty()).count(),
                    took,
                }
            }
            Err(e) => Trigger {
                ok: false,
                line: format!("could not run `handoff restart`: {e}"),
                lines: 1,
                took,
            },
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; reaps it.
    pub fn stop(mut self, grace: Duration) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `--listen` arguments for a target.
pub fn listens(target: &Target) -> Vec<String> {
    vec![
        format!("http=tcp:{}", target.http),
        format!("udp=udp:{}", target.udp),
        format!("unix=unix:{}", target.unix.display()),
    ]
}

/// One blocking HTTP request: is someone answering?
pub fn probe_http(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
}
