//! Supervisor self-replacement: re-execute this binary (the file at the
//! path it was started from, so an upgraded binary takes over) keeping the
//! listeners, the store, the notify and control sockets and the running
//! generations, which stay this process's children because `exec` keeps
//! the pid. Their descriptors stay open under their numbers (close-on-exec
//! cleared for the `exec`); `HANDOFF_SERVE_RESUME` tells the new image
//! which number is what, and the state that goes with them.

use std::ffi::OsString;

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use handoff::restart::supervise::{claim_kept, keep_across_exec};
use handoff::restart::NotifySocket;
use handoff::{BorrowedHandle, Channel, Handle, Limits, Listener, Process};
use serde::{Deserialize, Serialize};

use super::generation::{self, Waitee};
use super::listeners::Named;
use super::protocol::{Reply, MAX_REQUEST};
use super::state::{Config, Generation, Phase, Shared, Sockets, State};
use super::store::Stored;
use crate::status::FAILED;
use crate::Failure;

const RESUME_VAR: &str = "HANDOFF_SERVE_RESUME";

#[derive(Debug, Serialize, Deserialize)]
struct Resume {
    command: Vec<Vec<u8>>,
    argv: Vec<Vec<u8>>,
    exe: Vec<u8>,
    ready_timeout_ms: u64,
    drain_timeout_ms: u64,
    stop_signal: i32,
    notify_path: Vec<u8>,
    control_path: Vec<u8>,
    notify_fd: i32,
    control_fd: i32,
    reply_fd: Option<i32>,
    listeners: Vec<KeptListener>,
    store: Vec<KeptStored>,
    generations: Vec<KeptGeneration>,
    next_number: u64,
    restarts: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeptListener {
    name: String,
    fd: i32,
    address: String,
    identity: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeptStored {
    name: String,
    fd: i32,
    poll: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeptGeneration {
    number: u64,
    pid: u32,
    main_pid: u32,
    pidfd: i32,
    phase: String,
    started_ms: u64,
    status_text: Option<String>,
    ready: bool,
}

fn bytes(p: &std::path::Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn path(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(b))
}

/// Marks each handle to survive `exec`; undone on drop (if `exec` fails).
struct Keep<'a>(Vec<BorrowedHandle<'a>>);

impl<'a> Keep<'a> {
    fn add(&mut self, h: BorrowedHandle<'a>) -> Result<i32, String> {
        keep_across_exec(h, true).map_err(|e| crate::describe(&e))?;
        self.0.push(h);
        Ok(h.raw())
    }
}

impl Drop for Keep<'_> {
    fn drop(&mut self) {
        for h in &self.0 {
            let _ = keep_across_exec(*h, false);
        }
    }
}

/// Re-executes the supervisor. Returns only on failure (nothing changed
/// then). With `reply`, the new image answers the requester on it.
pub(crate) fn replace(shared: &Arc<Shared>, reply: Option<&Channel>) -> Result<(), String> {
    let state = shared.lock();
    if state.restarting {
        return Err("a restart is under way; the supervisor is not replaced now".into());
    }
    if state.shutting_down {
        return Err("the supervisor is shutting down".into());
    }
    // Held until exec: no restart, notification or exit is handled while
    // the state is written down (the notify socket queues datagrams).
    let cfg = &shared.config;
    let mut keep = Keep(Vec::new());
    let mut run = || -> Result<Resume, String> {
        Ok(Resume {
            command: cfg.command.iter().map(|a| a.as_bytes().to_vec()).collect(),
            argv: cfg.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            exe: bytes(&cfg.exe),
            ready_timeout_ms: cfg.ready_timeout.as_millis() as u64,
            drain_timeout_ms: cfg.drain_timeout.as_millis() as u64,
            stop_signal: cfg.stop_signal,
            notify_path: bytes(&cfg.notify_path),
            control_path: bytes(&cfg.control_path),
            notify_fd: keep.add(shared.sockets.notify.borrow())?,
            control_fd: keep.add(shared.sockets.control.borrow())?,
            reply_fd: reply.map(|c| keep.add(c.as_borrowed())).transpose()?,
            listeners: shared
                .listeners
                .iter()
                .map(|l| {
                    Ok(KeptListener {
                        name: l.name.clone(),
                        fd: keep.add(l.handle.borrow())?,
                        address: l.address.clone(),
                        identity: l.identity,
                    })
                })
                .collect::<Result<_, String>>()?,
            store: state
                .store
                .entries
                .iter()
                .map(|s| {
                    Ok(KeptStored {
                        name: s.name.clone(),
                        fd: keep.add(s.handle.borrow())?,
                        poll: s.poll,
                    })
                })
                .collect::<Result<_, String>>()?,
            generations: state
                .generations
                .iter()
                .map(|g| {
                    Ok(KeptGeneration {
                        number: g.number,
                        pid: g.pid,
                        main_pid: g.main_pid,
                        pidfd: keep.add(g.main.handle())?,
                        phase: g.phase.name().to_owned(),
                        started_ms: g
                            .started
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_millis() as u64,
                        status_text: g.status_text.clone(),
                        ready: g.ready,
                    })
                })
                .collect::<Result<_, String>>()?,
            next_number: state.next_number,
            restarts: state.restarts,
        })
    };
    let resume = run().map_err(|e| format!("cannot keep the supervisor's handles: {e}"))?;
    let text = serde_json::to_string(&resume).map_err(|e| e.to_string())?;
    tracing::info!(
        generations = resume.generations.len(),
        stored = resume.store.len(),
        "re-executing {}",
        cfg.exe.display()
    );
    let error = std::process::Command::new(&cfg.exe)
        .args(&cfg.argv)
        .env(RESUME_VAR, text)
        .exec();
    drop(keep);
    drop(state);
    Err(format!(
        "cannot re-execute {}: {error}; the supervisor goes on as it was",
        cfg.exe.display()
    ))
}

type Resumed = (Arc<Shared>, NotifySocket, Listener);

/// In a re-executed supervisor: takes back what the previous image kept.
pub(crate) fn resume() -> Result<Option<Resumed>, Failure> {
    let Some(text) = std::env::var_os(RESUME_VAR) else {
        return Ok(None);
    };
    std::env::remove_var(RESUME_VAR);
    let bad = |e: String| Failure::new(FAILED, format!("{RESUME_VAR}: {e}"));
    let r: Resume = serde_json::from_slice(text.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let claim = |fd: i32| claim_kept(fd).map_err(|e| bad(crate::describe(&e)));
    let notify_path = path(r.notify_path);
    let control_path = path(r.control_path);
    let notify_h = claim(r.notify_fd)?;
    let control_h = claim(r.control_fd)?;
    let reply = r.reply_fd.map(claim).transpose()?;
    let dup = |h: &Handle| h.try_clone().map_err(|e| bad(crate::describe(&e)));
    let sockets = Sockets {
        notify: dup(&notify_h)?,
        control: dup(&control_h)?,
    };
    let notify = NotifySocket::from_handle(notify_h, Some(notify_path.clone()));
    let me = rustix::process::getuid().as_raw();
    let control = Listener::from_handle(control_h, &control_path)
        .map_err(|e| bad(crate::describe(&e)))?
        .allow_uids([me])
        .with_limits(Limits {
            max_bytes: MAX_REQUEST as u64,
            max_handles: 0,
        });
    let mut listeners = Vec::new();
    for l in r.listeners {
        listeners.push(Named {
            name: l.name,
            handle: claim(l.fd)?,
            address: l.address,
            identity: l.identity,
        });
    }
    let mut state = State {
        next_number: r.next_number,
        restarts: r.restarts,
        ..State::default()
    };
    for s in r.store {
        state.store.entries.push(Stored {
            name: s.name,
            handle: claim(s.fd)?,
            poll: s.poll,
        });
    }
    let mut mains = Vec::new();
    for g in r.generations {
        let main =
            Arc::new(Process::from_handle(claim(g.pidfd)?).map_err(|e| bad(crate::describe(&e)))?);
        mains.push((g.number, Arc::clone(&main)));
        state.generations.push(Generation {
            number: g.number,
            pid: g.pid,
            main_pid: g.main_pid,
            // Only the main process is kept across exec.
            first: Arc::clone(&main),
            main,
            phase: Phase::from_name(&g.phase),
            started: UNIX_EPOCH + Duration::from_millis(g.started_ms),
            status_text: g.status_text,
            ready: g.ready,
            extend_until: None,
        });
    }
    let shared = Shared::new(
        Config {
            command: r.command.into_iter().map(OsString::from_vec).collect(),
            ready_timeout: Duration::from_millis(r.ready_timeout_ms),
            drain_timeout: Duration::from_millis(r.drain_timeout_ms),
            stop_signal: r.stop_signal,
            notify_path,
            control_path,
            exe: path(r.exe),
            argv: r.argv.into_iter().map(OsString::from_vec).collect(),
        },
        listeners,
        sockets,
        state,
    );
    for (number, main) in mains {
        let s = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("gen-{number}"))
            .spawn(move || generation::watch(s, number, Waitee::Process(main)))
            .map_err(|e| bad(e.to_string()))?;
    }
    if let Some(h) = reply {
        if let Ok(channel) = Channel::from_handle(h) {
            let serving: Vec<String> = shared
                .lock()
                .generations
                .iter()
                .map(|g| format!("generation {} (pid {})", g.number, g.main_pid))
                .collect();
            let _ = super::control::send(
                &channel,
                &Reply {
                    ok: true,
                    message: format!(
                        "supervisor replaced (pid {}); kept {} listener(s), {} stored handle(s), {}",
                        std::process::id(),
                        shared.listeners.len(),
                        shared.lock().store.entries.len(),
                        if serving.is_empty() {
                            "no generation".to_owned()
                        } else {
                            serving.join(", ")
                        }
                    ),
                    status: None,
                },
            );
        }
    }
    Ok(Some((shared, notify, control)))
}

/// Logs the takeover once the threads run.
pub(crate) fn resumed(shared: &Shared) {
    tracing::info!(
        generations = shared.lock().generations.len(),
        "supervisor re-executed; state taken back"
    );
}
