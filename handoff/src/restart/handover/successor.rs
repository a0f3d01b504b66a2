//! Self-contained mode: a service without a supervisor starts its own
//! successor, as a supervisor would: the listeners and the doorbell under
//! `LISTEN_FDS`, a notify socket of its own under `NOTIFY_SOCKET`, and
//! waits for `READY=1` (the successor takes the state and connections
//! before it says so). The successor runs the same code as under
//! `handoff serve` or systemd.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::DOORBELL;
use crate::restart::{HandoverError, Notification, NotifySocket, NOTIFY_SOCKET};
use crate::{BorrowedHandle, Child, Command, Error, Result};

/// Set in a successor started by [`start_successor`]: its notify socket is
/// its predecessor's and goes away with it, so it has no store.
pub const SELF_CONTAINED: &str = "HANDOFF_SELF_CONTAINED";

/// The command that starts this same program again with the same
/// arguments (the usual successor; an upgrade replaces the file first).
pub fn this_program() -> Result<Command> {
    let exe = std::env::current_exe().map_err(|e| Error::io("current_exe", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    Ok(cmd)
}

fn notify_path() -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    dir.join(format!(
        "handoff-successor-{}-{nanos}.notify",
        std::process::id()
    ))
}

/// Starts `cmd` as this process's successor with `handles` (listeners,
/// by name, as a supervisor passes them) and the doorbell's far end under
/// [`DOORBELL`], and waits up to `ready_timeout` for its `READY=1`. Runs
/// blocking: call it from a thread (`spawn_blocking`) while the doorbell
/// is being answered. A successor that exits first or is not ready in
/// time is killed and the error says which; this process serves on.
pub fn start_successor(
    mut cmd: Command,
    handles: &[(&str, BorrowedHandle<'_>)],
    doorbell: BorrowedHandle<'_>,
    ready_timeout: Duration,
) -> Result<Child> {
    let path = notify_path();
    let socket = NotifySocket::bind(&path)?;
    let generation: u64 = std::env::var("HANDOFF_GENERATION")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(1);
    for (name, h) in handles {
        cmd.handle(name, *h);
    }
    cmd.handle(DOORBELL, doorbell)
        .env(NOTIFY_SOCKET, &path)
        .env(SELF_CONTAINED, "1")
        .env("HANDOFF_GENERATION", (generation + 1).to_string());
    let mut child = cmd.spawn()?;
    let pid = child.id();
    // The socket's receive blocks; a thread reads it and is woken by a
    // last datagram of our own when the wait ends.
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut socket = socket;
        while let Ok(r) = socket.recv() {
            let ready =
                r.sender.map(|s| s.0) == Some(pid) && r.message.as_ref().is_ok_and(|m| m.ready);
            if tx.send(ready).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + ready_timeout;
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(HandoverError::Protocol("the notify socket failed".into()))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(status) = child.try_wait()? {
            break Err(HandoverError::Refused(format!(
                "the successor exited with {status} before READY=1"
            )));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break Err(HandoverError::Timeout(ready_timeout));
        }
    };
    drop(rx);
    let wake = path.to_str().map(|p| {
        crate::restart::send(
            p,
            &Notification {
                status: Some("done".into()),
                ..Default::default()
            },
            &[],
        )
    });
    if matches!(wake, Some(Ok(()))) {
        let _ = reader.join();
    }
    outcome.map(|()| child).map_err(Error::from)
}
