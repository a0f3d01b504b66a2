//! Start-up, the per-mode behaviour, and the graceful stop: take the
//! sockets, arm the accept loops, say `READY=1`, serve until SIGTERM, then
//! stop accepting and wait for every connection in flight.

use std::error::Error;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use handoff::restart::Service;
use signal_hook::consts::{SIGINT, SIGTERM};
use tokio::sync::{mpsc, watch};

use crate::mode::Mode;
use crate::{echo, http};

const UDP_BUFFER: usize = 4 << 20;
const BACKLOG: i32 = 4096;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The sockets this generation serves, each optional: the supervisor may
/// hand over any subset.
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
    /// Live handover of idle HTTP connections (`handover.rs`).
    pub pool: crate::handover::Pool,
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
    let bell = service.take_all(handoff::restart::handover::DOORBELL).pop();
    let service = Arc::new(service);
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
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
        // Registering with the runtime arms the loops; only then ready.
        // Each loop gives its socket back when it stops.
        let mut loops = tokio::task::JoinSet::new();
        if let Some(l) = sockets.http {
            deepen(&l);
            let listener = tokio::net::TcpListener::from_std(nonblocking(l)?)?;
            loops.spawn(keep(http::accept_loop(listener, shared.clone())));
        }
        if let Some(s) = sockets.udp {
            // Room for a few hundred milliseconds of datagrams: on a busy
            // machine a generation can be off the CPU that long, and the
            // default buffer holds only some tens of milliseconds at
            // thousands of datagrams a second. (The kernel caps it at
            // net.core.rmem_max; the socket, and so the setting, is shared
            // with every generation.)
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&s, UDP_BUFFER);
            let socket = tokio::net::UdpSocket::from_std(nonblocking(s)?)?;
            loops.spawn(keep(echo::udp_loop(socket, shared.clone())));
        }
        if let Some(l) = sockets.unix {
            deepen(&l);
            l.set_nonblocking(true)?;
            let listener = tokio::net::UnixListener::from_std(l)?;
            loops.spawn(keep(echo::unix_accept_loop(listener, shared.clone())));
        }
        tokio::task::yield_now().await;
        service.status(&format!("serving as {mode} ({label})"))?;
        service.ready()?;
        // Live handover of keep-alive connections, with
        // unless RESTART_SERVER_HANDOVER=0 (docs/restart.md).
        if std::env::var_os("RESTART_SERVER_HANDOVER").is_none_or(|v| v != "0") {
            crate::handover::start(service.clone(), bell, shared.clone(), gatherer);
        } else {
            drop(gatherer);
        }
        drop(pool);
        if mode == Mode::CloseListeners {
            // The loops stop and their sockets are closed: this process
            // stays alive, ready, and serves nothing.
            eprintln!("restart_server[{label}]: {mode}: closing every listener");
            stop_tx.send_replace(true);
            while loops.join_next().await.is_some() {}
        }
        let signal =
            tokio::task::spawn_blocking(move || signals.forever().next().unwrap_or(SIGTERM))
                .await?;
        if mode == Mode::IgnoreStop {
            eprintln!(
                "restart_server[{label}]: {mode}: signal {signal}: stops accepting, never exits"
            );
            stop_tx.send_replace(true);
            std::future::pending::<()>().await;
        }
        let _ = service.stopping();
        eprintln!("restart_server[{label}]: signal {signal}: draining");
        stop_tx.send_replace(true);
        drop(shared);
        // The sockets stay open, unpolled, until the drain is over, as
        // most servers' do until they exit: harmless for a socket shared
        // with the next generation (one queue), and what makes the naive
        // handover lose the connections queued on its own socket meanwhile.
        let mut sockets = Vec::new();
        while let Some(socket) = loops.join_next().await {
            sockets.push(socket?);
        }
        // Every accept loop and connection holds a sender: `None` means the
        // last one finished.
        let _ = all_done.recv().await;
        drop(sockets);
        Ok::<(), Box<dyn Error>>(())
    })?;
    // Blocking tasks (the signal thread is done) need not be waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

/// Calls `listen` again with a deeper backlog, as nginx does with the
/// sockets it inherits: std binds with 128, about 60 ms of new connections
/// at 2,000 a second, and a generation briefly off the CPU on a busy
/// machine would see the kernel drop SYNs (`TcpExtListenOverflows`), which
/// clients feel as a one-second retransmission. The kernel caps it at
/// net.core.somaxconn; the socket is shared, so every generation agrees.
fn deepen(listener: &impl std::os::fd::AsFd) {
    let _ = rustix::net::listen(listener, BACKLOG);
}

/// A loop's returned socket, kept only to be closed later.
type Kept = Box<dyn std::any::Any + Send>;

async fn keep<T: Send + 'static>(run: impl std::future::Future<Output = T>) -> Kept {
    Box::new(run.await)
}

fn nonblocking<T: Into<OwnedFd> + From<OwnedFd>>(socket: T) -> std::io::Result<T> {
    let fd: OwnedFd = socket.into();
    rustix::io::ioctl_fionbio(&fd, true)?;
    Ok(T::from(fd))
}

/// The sockets named under `LISTEN_FDS`, each checked to be of its kind
/// (a UDP socket passed as `http` is an error naming both); any other
/// inherited name is an error rather than silently left open.
fn inherit(service: &mut Service) -> Result<Sockets> {
    let mut sockets = Sockets {
        http: None,
        udp: None,
        unix: None,
    };
    let names: Vec<String> = service.names().map(str::to_owned).collect();
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
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let fresh = |ty: SocketType, var: &str| -> Result<Option<OwnedFd>> {
        let Ok(addr) = std::env::var(var) else {
            return Ok(None);
        };
        let addr: std::net::SocketAddrV4 =
            addr.parse().map_err(|e| format!("{var}={addr}: {e}"))?;
        let fd = rustix::net::socket_with(AddressFamily::INET, ty, SocketFlags::CLOEXEC, None)?;
        sockopt::set_socket_reuseaddr(&fd, true)?;
        sockopt::set_socket_reuseport(&fd, true)?;
        rustix::net::bind(&fd, &addr)?;
        if ty == SocketType::STREAM {
            rustix::net::listen(&fd, 1024)?;
        }
        Ok(Some(fd))
    };
    let unix = match std::env::var("RESTART_SERVER_NAIVE_UNIX") {
        Ok(path) => {
            let _ = std::fs::remove_file(&path);
            Some(std::os::unix::net::UnixListener::bind(&path)?)
        }
        Err(_) => None,
    };
    Ok(Sockets {
        http: fresh(SocketType::STREAM, "RESTART_SERVER_NAIVE_HTTP")?.map(Into::into),
        udp: fresh(SocketType::DGRAM, "RESTART_SERVER_NAIVE_UDP")?.map(Into::into),
        unix,
    })
}

/// Sleeps until the stop flag is raised (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
