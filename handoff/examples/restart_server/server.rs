//! Start-up, the per-mode behaviour, and the graceful stop: take the
//! sockets, arm the accept loops, say `READY=1`, serve until SIGTERM, then
//! stop accepting and wait for every connection in flight.

use std::error::Error;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use handoff::restart::handover::DOORBELL;
use handoff::restart::Service;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tokio::sync::{mpsc, watch};

use crate::front::Front;
use crate::handover::{Answerer, Took};
use crate::mode::Mode;
use crate::snapshot::Cache;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The sockets this generation serves, each optional: the supervisor may
/// hand over any subset.
#[derive(Default)]
pub struct Sockets {
    pub http: Option<std::net::TcpListener>,
    pub udp: Option<std::net::UdpSocket>,
    pub unix: Option<std::os::unix::net::UnixListener>,
}

/// What every connection task holds: the stop flag, the label to answer
/// with, and a token whose drop tells the stop path it is done.
#[derive(Clone)]
pub struct Shared {
    pub label: Arc<str>,
    pub stop: watch::Receiver<bool>,
    #[expect(dead_code, reason = "held, never read: the last drop ends the drain")]
    pub in_flight: mpsc::Sender<()>,
    /// Live handover of idle connections (`handover.rs`).
    pub pool: crate::handover::Pool,
}

/// Whether this process starts its own successor on `SIGHUP`
/// (`RESTART_SERVER_SELF_CONTAINED=1`, passed on to every successor)
/// rather than being restarted by a supervisor.
fn self_contained() -> bool {
    std::env::var_os("RESTART_SERVER_SELF_CONTAINED").is_some_and(|v| v == "1")
}

pub fn run() -> Result<ExitCode> {
    let mode = Mode::from_env()?;
    // The generation the supervisor numbered, else only the pid: either way
    // every answer says which process gave it.
    let generation = std::env::var("HANDOFF_GENERATION").unwrap_or_else(|_| "-".into());
    let label: Arc<str> = format!("gen={generation} pid={}", std::process::id()).into();
    // Before any thread starts: claiming the inheritance edits the
    // environment, and the signal mask is per thread at creation.
    let mut service = Service::from_env()?;
    let sockets = match mode {
        Mode::Naive => bind_naive()?,
        _ => inherit(&mut service)?,
    };
    let bell = service.take_all(DOORBELL).pop();
    let service = Arc::new(service);
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    match mode {
        Mode::CrashBeforeReady => {
            eprintln!("restart_server[{label}]: {mode}: exiting with status 3");
            std::process::exit(3);
        }
        Mode::HangBeforeReady => {
            eprintln!("restart_server[{label}]: {mode}: never ready");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        _ => {}
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (in_flight, mut all_done) = mpsc::channel::<()>(1);
    let (pool, gatherer) = crate::handover::pool();
    let shared = Shared {
        label: label.clone(),
        stop: stop_rx,
        in_flight,
        pool: pool.clone(),
    };
    runtime.block_on(async {
        if mode == Mode::CrashAfterReady {
            service.ready()?;
            eprintln!("restart_server[{label}]: {mode}: exiting with status 4");
            std::process::exit(4);
        }
        let mut front = Front::new(sockets)?;
        // New connections are this generation's at once: its answers do
        // not depend on the state, and the predecessor stops accepting when
        // it answers the ring, so accepting only after the handover would
        // leave the queue unserved meanwhile (a full campaign saw that
        // pause at 151 ms at worst, and the HTTP p99 with it). A service
        // whose answers need the state would accept after `take_over`.
        if !mode.fails_handover() {
            front.accept(&shared)?;
        }
        // The predecessor's state and connections, before READY=1.
        let handover = std::env::var_os("RESTART_SERVER_HANDOVER").is_none_or(|v| v != "0");
        // A version that does not take over from a live predecessor must
        // not read UDP either: it would answer flows without their state
        // while the predecessor still reads the same socket.
        let leaves_udp = bell.is_some() && handover && !mode.takes_over();
        let took: Option<Took> = match bell {
            Some(bell) if handover && mode.takes_over() => {
                match crate::handover::take_over(bell, mode, &label).await {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("restart_server[{label}]: {e}; exiting with status 9");
                        std::process::exit(9);
                    }
                }
            }
            _ => None,
        };
        let (cache, session) = match took {
            Some(t) => {
                *front.flows.lock().unwrap_or_else(|e| e.into_inner()) = t.flows;
                crate::handover::serve(t.connections, &shared);
                (t.cache, Some(t.session))
            }
            None => (Cache::fresh(), None),
        };
        // Registering with the runtime arms the loops; only then ready.
        front.accept(&shared)?;
        if !leaves_udp {
            front.read_udp(&label)?;
        }
        let front = Arc::new(tokio::sync::Mutex::new(front));
        tokio::task::yield_now().await;
        service.status(&format!("serving as {mode} ({label})"))?;
        service.ready()?;
        write_pid_file();
        let answerer = Answerer {
            service: None,
            front: front.clone(),
            shared: shared.clone(),
            gatherer,
            cache: Arc::new(cache),
        };
        // Under a supervisor: a doorbell of this generation's own in the
        // store, in place of its predecessor's, answered until the stop.
        let mut answerer = Some(answerer);
        if handover && !self_contained() && service.is_supervised() && mode.takes_over() {
            if let Some(bell) = crate::handover::store_doorbell(&service) {
                if let Some(mut a) = answerer.take() {
                    a.service = Some(service.clone());
                    tokio::spawn(a.run(bell));
                }
            }
        }
        drop(pool);
        if mode == Mode::CloseListeners {
            // The loops stop and the sockets are closed: this process
            // stays alive, ready, and serves nothing.
            eprintln!("restart_server[{label}]: {mode}: closing every listener");
            let mut f = front.lock().await;
            f.halt().await;
            f.close();
        }
        let (sig_tx, mut sig_rx) = mpsc::unbounded_channel();
        tokio::task::spawn_blocking(move || {
            for s in signals.forever() {
                if sig_tx.send(s).is_err() {
                    break;
                }
            }
        });
        let signal = loop {
            let s = sig_rx.recv().await.unwrap_or(SIGTERM);
            if s != SIGHUP {
                break s;
            }
            if !self_contained() {
                eprintln!("restart_server[{label}]: SIGHUP ignored: not self-contained");
                continue;
            }
            match answerer.take() {
                Some(a) => match crate::upgrade::upgrade(a, &front, &label).await {
                    crate::upgrade::Upgrade::Done => break SIGTERM,
                    crate::upgrade::Upgrade::Failed(back) => answerer = back,
                },
                None => eprintln!("restart_server[{label}]: SIGHUP: no upgrade possible any more"),
            }
        };
        // It holds a `Shared`: the drain below waits for every one.
        drop(answerer);
        if mode == Mode::IgnoreStop {
            eprintln!(
                "restart_server[{label}]: {mode}: signal {signal}: stops accepting, never exits"
            );
            front.lock().await.halt().await;
            stop_tx.send_replace(true);
            std::future::pending::<()>().await;
        }
        let _ = service.stopping();
        eprintln!("restart_server[{label}]: signal {signal}: draining");
        // The sockets stay open, unpolled, until the drain is over, as
        // most servers' do until they exit: harmless for a socket shared
        // with the next generation (one queue), and what makes the naive
        // handover lose the connections queued on its own socket meanwhile.
        front.lock().await.halt().await;
        stop_tx.send_replace(true);
        drop(shared);
        // Every connection holds a sender: `None` means the last one
        // finished.
        let _ = all_done.recv().await;
        drop(session);
        drop(front);
        Ok::<(), Box<dyn Error>>(())
    })?;
    // Blocking tasks (the signal thread) need not be waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

/// The pid of the generation that serves, for whoever sends the next
/// `SIGHUP` in self-contained mode (`RESTART_SERVER_PID_FILE`), replaced
/// whole by a rename.
fn write_pid_file() {
    let Some(path) = std::env::var_os("RESTART_SERVER_PID_FILE") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    if std::fs::write(&tmp, format!("{}\n", std::process::id())).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// The sockets named under `LISTEN_FDS`, each checked to be of its kind
/// (a UDP socket passed as `http` is an error naming both); any other
/// inherited name is an error rather than silently left open.
fn inherit(service: &mut Service) -> Result<Sockets> {
    let mut sockets = Sockets::default();
    let names: Vec<String> = service.names().map(str::to_owned).collect();
    if names.is_empty() && self_contained() {
        return bind_own();
    }
    if names.is_empty() {
        return Err("no sockets under LISTEN_FDS: run under `handoff serve --listen http=tcp:HOST:PORT ...`".into());
    }
    for name in names {
        match name.as_str() {
            "http" => sockets.http = Some(service.tcp_listener("http")?),
            "udp" => sockets.udp = Some(service.udp_socket("udp")?),
            "unix" => sockets.unix = Some(service.unix_listener("unix")?),
            // The previous generation's doorbell, taken by handover.rs.
            handoff::restart::handover::DOORBELL => {}
            other => {
                return Err(format!(
                    "inherited a handle named {other:?}; this server knows http, udp and unix"
                )
                .into())
            }
        }
    }
    Ok(sockets)
}

/// The negative control's handover: a fresh socket per address with
/// `SO_REUSEPORT`, beside the previous generation's own (for Unix sockets,
/// the path unlinked and bound anew).
fn bind_naive() -> Result<Sockets> {
    bind_fresh("RESTART_SERVER_NAIVE", true)
}

/// Self-contained generation 1 with nothing inherited: binds the
/// addresses in `RESTART_SERVER_BIND_{HTTP,UDP,UNIX}` itself (without
/// `SO_REUSEPORT`: an address in use is an error). Its successors inherit
/// these sockets from it.
fn bind_own() -> Result<Sockets> {
    bind_fresh("RESTART_SERVER_BIND", false)
}

fn bind_fresh(prefix: &str, reuseport: bool) -> Result<Sockets> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let fresh = |ty: SocketType, var: &str| -> Result<Option<OwnedFd>> {
        let var = format!("{prefix}_{var}");
        let Ok(addr) = std::env::var(&var) else {
            return Ok(None);
        };
        let addr: std::net::SocketAddrV4 =
            addr.parse().map_err(|e| format!("{var}={addr}: {e}"))?;
        let fd = rustix::net::socket_with(AddressFamily::INET, ty, SocketFlags::CLOEXEC, None)?;
        sockopt::set_socket_reuseaddr(&fd, true)?;
        if reuseport {
            sockopt::set_socket_reuseport(&fd, true)?;
        }
        rustix::net::bind(&fd, &addr)?;
        if ty == SocketType::STREAM {
            rustix::net::listen(&fd, 1024)?;
        }
        Ok(Some(fd))
    };
    let unix = match std::env::var(format!("{prefix}_UNIX")) {
        Ok(path) => {
            let _ = std::fs::remove_file(&path);
            Some(std::os::unix::net::UnixListener::bind(&path)?)
        }
        Err(_) => None,
    };
    Ok(Sockets {
        http: fresh(SocketType::STREAM, "HTTP")?.map(Into::into),
        udp: fresh(SocketType::DGRAM, "UDP")?.map(Into::into),
        unix,
    })
}

/// Sleeps until the stop flag is raised (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
