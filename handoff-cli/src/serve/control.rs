//! The control socket: owner-only, a peer of another uid refused before a
//! byte of it is read (the library's `Listener` admission), one thread per
//! client, and a client that says nothing within `READ_TIMEOUT` is dropped.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use handoff::{Channel, Error, Limits, Listener, Message};

use super::protocol::{
    decode_request, GenerationReport, ListenerReport, Reply, Request, StatusReport, StoredReport,
    MAX_REQUEST,
};
use super::state::Shared;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the control socket, replacing a stale one (a socket file nobody
/// answers on); a live supervisor on the path is an error.
pub(crate) fn bind(path: &Path) -> Result<Listener, String> {
    if path.exists() {
        if Channel::connect(path).is_ok() {
            return Err(format!(
                "{}: another supervisor is running there (use --control for another path)",
                path.display()
            ));
        }
        use std::os::unix::fs::FileTypeExt;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(path);
        }
    }
    let me = rustix::process::getuid().as_raw();
    Listener::bind(path)
        .map(|l| {
            l.allow_uids([me]).with_limits(Limits {
                max_bytes: MAX_REQUEST as u64,
                max_handles: 0,
            })
        })
        .map_err(|e| format!("control socket {}: {}", path.display(), crate::describe(&e)))
}

pub(crate) fn serve(shared: Arc<Shared>, listener: Listener) {
    loop {
        match listener.accept() {
            Ok(channel) => {
                let shared = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || client(&shared, channel));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "no thread for a control client; dropped");
                }
            }
            Err(e) => {
                tracing::error!(error = %crate::describe(&e), "control socket accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request, giving up at the deadline (the channel has no
/// timeout of its own, so this polls without blocking).
fn read_request(channel: &Channel) -> Result<Request, String> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut msg = Message::new();
    loop {
        match channel.try_recv_into(&mut msg) {
            Ok(()) => return decode_request(&msg.bytes),
            Err(Error::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(Error::WouldBlock) => {
                return Err(format!("no request within {} s", READ_TIMEOUT.as_secs()))
            }
            Err(e) => return Err(crate::describe(&e)),
        }
    }
}

fn client(shared: &Arc<Shared>, channel: Channel) {
    let request = match read_request(&channel) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("control client dropped: {e}");
            let _ = send(
                &channel,
                &Reply {
                    ok: false,
                    message: e,
                    status: None,
                },
            );
            return;
        }
    };
    let reply = match request {
        Request::Status => Reply {
            ok: true,
            message: String::new(),
            status: Some(report(shared)),
        },
        Request::Restart => {
            tracing::info!("restart requested on the control socket");
            match super::restart::trigger(shared) {
                Ok(message) => Reply {
                    ok: true,
                    message,
                    status: None,
                },
                Err(message) => Reply {
                    ok: false,
                    message,
                    status: None,
                },
            }
        }
        Request::RestartSupervisor => {
            tracing::info!("supervisor replacement requested on the control socket");
            // On success this process is replaced, and the new image
            // answers on this very connection.
            match super::reexec::replace(shared, Some(&channel)) {
                Ok(()) => return,
                Err(message) => Reply {
                    ok: false,
                    message,
                    status: None,
                },
            }
        }
    };
    let _ = send(&channel, &reply);
}

pub(crate) fn send(channel: &Channel, reply: &Reply) -> Result<(), String> {
    let bytes = serde_json::to_vec(reply).map_err(|e| e.to_string())?;
    channel.send(&bytes, &[]).map_err(|e| crate::describe(&e))
}

pub(crate) fn report(shared: &Shared) -> StatusReport {
    let state = shared.lock();
    StatusReport {
        supervisor_pid: std::process::id(),
        restarts: state.restarts,
        restarting: state.restarting,
        generations: state
            .generations
            .iter()
            .map(|g| GenerationReport {
                number: g.number,
                pid: g.pid,
                main_pid: g.main_pid,
                state: g.phase.name().to_owned(),
                started: g
                    .started
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
                status: g.status_text.clone(),
            })
            .collect(),
        listeners: shared
            .listeners
            .iter()
            .map(|l| ListenerReport {
                name: l.name.clone(),
                address: l.address.clone(),
                identity: l.identity,
            })
            .collect(),
        stored: state
            .store
            .summary()
            .into_iter()
            .map(|(name, count)| StoredReport { name, count })
            .collect(),
    }
}

/// The client side: one request, one reply.
pub(crate) fn call(path: &Path, request: &Request) -> Result<Reply, String> {
    let channel = Channel::connect(path).map_err(|e| {
        format!(
            "cannot reach the supervisor at {}: {}",
            path.display(),
            crate::describe(&e)
        )
    })?;
    let bytes = super::protocol::encode_request(*request);
    channel.send(&bytes, &[]).map_err(|e| match e {
        Error::Disconnected => "the supervisor closed the connection without answering".to_owned(),
        e => format!("sending to the supervisor: {}", crate::describe(&e)),
    })?;
    let msg = channel.recv().map_err(|e| match e {
        Error::Disconnected => "the supervisor closed the connection without answering".to_owned(),
        e => format!("reading the supervisor's answer: {}", crate::describe(&e)),
    })?;
    let reply = serde_json::from_slice(&msg.bytes)
        .map_err(|e| format!("bad answer from the supervisor: {e}"))?;
    // Wait for the supervisor to close its end, so that once this returns
    // the supervisor holds nothing for this request.
    let _ = channel.recv();
    Ok(reply)
}
