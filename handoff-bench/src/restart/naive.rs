//! The negative control: the same load against the handover that loses
//! connections. Each new generation of the reference server binds a fresh
//! `SO_REUSEPORT` socket beside its predecessor's (the Unix path unlinked
//! and bound anew); once it is ready the predecessor is told to stop and
//! closes its own socket when it has drained, losing whatever was queued on
//! it. If the campaign's clients and counters see nothing here, they would
//! see nothing anywhere: the run fails.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::load::Target;
use crate::Result;

/// One naive generation: started, then waited for on the campaign's own
/// notify socket.
pub struct Naive<'a> {
    server: &'a Path,
    target: &'a Target,
    notify: UnixDatagram,
    notify_path: std::path::PathBuf,
    log: &'a Path,
    generation: u64,
}

impl<'a> Naive<'a> {
    pub fn new(
        server: &'a Path,
        target: &'a Target,
        dir: &Path,
        log: &'a Path,
    ) -> Result<Naive<'a>> {
        let notify_path = dir.join("naive-notify");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path)?;
        notify.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Naive {
            server,
            target,
            notify,
            notify_path,
            log,
            generation: 0,
        })
    }

    /// Starts the next generation and waits for its `READY=1`.
    pub fn start_next(&mut self) -> Result<Child> {
        self.generation += 1;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log)?;
        let mut child = Command::new(self.server)
            .env("RESTART_SERVER_MODE", "naive")
            .env("RESTART_SERVER_NAIVE_HTTP", self.target.http.to_string())
            .env("RESTART_SERVER_NAIVE_UDP", self.target.udp.to_string())
            .env("RESTART_SERVER_NAIVE_UNIX", &self.target.unix)
            .env("HANDOFF_GENERATION", self.generation.to_string())
            .env("NOTIFY_SOCKET", &self.notify_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let until = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 512];
        loop {
            if let Ok(n) = self.notify.recv(&mut buf) {
                if buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1") {
                    return Ok(child);
                }
            }
            if Instant::now() > until || matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
                return Err("a naive generation did not become ready".into());
            }
        }
    }
}

/// SIGTERM, as a supervisor would send.
pub fn terminate(child: &Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// Waits for a stopped generation, killing it after `grace`.
pub fn reap(mut child: Child, grace: Duration) {
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
