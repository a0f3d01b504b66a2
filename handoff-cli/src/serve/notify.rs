//! The notify socket's thread: every datagram is judged by the sender's
//! pid as the kernel recorded it (`SCM_CREDENTIALS`), never by what it
//! says. Only the processes of a running generation are heard: its main
//! process and its descendants (so `systemd-notify` run by the service
//! works); anything else is dropped and logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff::restart::{Notification, NotifySocket, Received};
use handoff::Process;

use super::generation::descends_from;
use super::state::Shared;

pub(crate) fn serve(shared: Arc<Shared>, mut socket: NotifySocket) {
    loop {
        match socket.recv() {
            Ok(r) => handle(&shared, r),
            Err(e) => {
                tracing::error!(error = %crate::describe(&e), "notify socket failed");
                // A descriptor shortage passes; do not spin on it.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The key of the supervisor's own flush markers.
const FLUSH_KEY: &str = "X_HANDOFF_FLUSH";

/// Returns once the notify thread has handled every datagram queued
/// before this call (a marker sent to the socket comes out after them:
/// a datagram socket's queue is in order). A generation that sends
/// `READY=1` and exits at once is then judged with its `READY=1`.
pub(crate) fn flush(shared: &Shared) {
    use std::sync::atomic::Ordering;
    let n = shared.flush_seq.fetch_add(1, Ordering::SeqCst) + 1;
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    if sock
        .send_to(
            format!("{FLUSH_KEY}={n}").as_bytes(),
            &shared.config.notify_path,
        )
        .is_err()
    {
        return;
    }
    drop(sock);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut state = shared.lock();
    while state.flushed < n && Instant::now() < deadline {
        state = shared.wait_until(state, deadline);
    }
}

fn handle(shared: &Arc<Shared>, r: Received) {
    let Some((pid, uid, _)) = r.sender else {
        tracing::warn!("notification without credentials dropped");
        return;
    };
    if pid == std::process::id() {
        if let Ok(m) = &r.message {
            if let Some((_, v)) = m.unknown.iter().find(|(k, _)| k == FLUSH_KEY) {
                let n = v.parse().unwrap_or(0);
                let mut state = shared.lock();
                state.flushed = state.flushed.max(n);
                drop(state);
                shared.changed.notify_all();
            }
        }
        return;
    }
    let mut state = shared.lock();
    let Some(g) = state
        .generations
        .iter_mut()
        .find(|g| pid == g.main_pid || pid == g.pid || descends_from(pid, g.main_pid))
    else {
        drop(state);
        tracing::warn!(
            pid,
            uid,
            "notification from a process that is not part of a running generation dropped"
        );
        return;
    };
    let number = g.number;
    let message: Notification = match r.message {
        Ok(m) => m,
        Err(e) => {
            drop(state);
            tracing::warn!(pid, generation = number, error = %e, "malformed notification dropped");
            return;
        }
    };
    if let Some(text) = &message.status {
        g.status_text = Some(text.clone());
    }
    if let Some(main) = message.main_pid {
        if main != g.main_pid {
            if descends_from(main, g.main_pid) || descends_from(main, g.pid) {
                match Process::open(main) {
                    Ok(p) => {
                        tracing::info!(generation = number, pid = main, "main process is now");
                        g.main_pid = main;
                        g.main = Arc::new(p);
                    }
                    Err(e) => {
                        tracing::warn!(pid = main, error = %crate::describe(&e), "MAINPID= names no process; ignored")
                    }
                }
            } else {
                tracing::warn!(
                    generation = number,
                    pid = main,
                    "MAINPID= names a process outside the generation; ignored"
                );
            }
        }
    }
    if let Some(usec) = message.extend_timeout_usec {
        g.extend_until = Some(Instant::now() + Duration::from_micros(usec));
    }
    if message.ready && !g.ready {
        g.ready = true;
        tracing::info!(generation = number, pid, "READY=1");
    }
    if message.stopping {
        tracing::info!(generation = number, "STOPPING=1");
    }
    if message.fd_store_remove {
        let name = message.store_name().to_owned();
        let n = state.store.remove(&name);
        tracing::info!(generation = number, name, closed = n, "FDSTOREREMOVE=1");
    }
    if message.fd_store {
        let name = message.store_name().to_owned();
        let count = r.handles.len();
        let poll = message.fd_poll.unwrap_or(true);
        match state.store.add(&name, r.handles, poll) {
            Ok(()) => tracing::info!(generation = number, name, count, "stored"),
            Err(e) => tracing::error!(generation = number, "{e}"),
        }
    }
    // Handles not stored (BARRIER=1's pipe end) close here: that is the
    // barrier's answer.
    drop(state);
    shared.changed.notify_all();
}
