//! `handoff serve [--listen ...] [--fd ...] [--control PATH]
//! [--ready-timeout SECS] [--drain-timeout SECS] [--stop-signal SIG] -- CMD`:
//! hold the sockets, run CMD as generation 1 with them and a
//! `NOTIFY_SOCKET`, and restart it on request without closing them.
//!
//! Threads: the main one waits for signals; one reads the notify socket;
//! one accepts on the control socket (plus one per client); one per
//! generation reaps it. They share `state::Shared`.

mod control;
mod generation;
mod listeners;
mod notify;
pub(crate) mod protocol;
mod reexec;
mod restart;
mod state;
mod store;

pub(crate) mod client;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use handoff::restart::NotifySocket;
use handoff::Inherited;

use crate::spec::{self, FdSpec, ListenSpec};
use crate::status::FAILED;
use crate::Failure;
use state::{Config, Shared, Sockets, State};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Each generation gets the --listen sockets and --fd files (and, first, whatever \
this supervisor itself inherited under LISTEN_FDS), then the stored handles, as \
descriptors 3, 4, ... under LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID, plus \
NOTIFY_SOCKET (systemd's notify protocol: READY=1, STATUS=, MAINPID=, \
FDSTORE=1, FDNAME=, FDSTOREREMOVE=1, FDPOLL=0, EXTEND_TIMEOUT_USEC=, \
BARRIER=1...) and HANDOFF_GENERATION=N. A generation that does not send \
READY=1 within --ready-timeout has failed.

Restart with `handoff restart` or SIGHUP; replace the supervisor itself with \
`handoff restart --supervisor` or SIGUSR2. SIGTERM or SIGINT stop every \
generation and exit.

The control socket defaults to $XDG_RUNTIME_DIR/handoff-serve.sock, or \
./handoff-serve.sock without XDG_RUNTIME_DIR; the notify socket is the same \
path with .notify appended. See docs/restart.md.")]
pub(crate) struct Args {
    /// Bind (no SO_REUSEPORT: an address in use is an error) and pass to
    /// every generation as NAME.
    #[arg(long = "listen", value_name = "NAME=tcp:HOST:PORT|NAME=udp:HOST:PORT|NAME=unix:PATH", value_parser = spec::listen_spec)]
    listens: Vec<ListenSpec>,
    /// Open PATH (r: read-only, the default; w; rw) and pass it as NAME.
    #[arg(long = "fd", value_name = "NAME=PATH[:r|:w|:rw]", value_parser = spec::fd_spec)]
    fds: Vec<FdSpec>,
    /// The control socket `handoff restart` and `handoff status` talk to.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Seconds a new generation has to send READY=1.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = state::parse_seconds)]
    ready_timeout: Duration,
    /// Seconds an old generation has to exit after the stop signal before
    /// it is killed.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = state::parse_seconds)]
    drain_timeout: Duration,
    /// The signal that asks an old generation to stop.
    #[arg(long, value_name = "SIG", default_value = "TERM", value_parser = state::parse_signal)]
    stop_signal: i32,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// The default control socket path.
pub(crate) fn default_control() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("handoff-serve.sock"),
        _ => PathBuf::from("handoff-serve.sock"),
    }
}

fn notify_path(control: &std::path::Path) -> PathBuf {
    let mut p = control.as_os_str().to_owned();
    p.push(".notify");
    PathBuf::from(p)
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Failure> {
    init_logging();
    // Signal handlers first: from here on a SIGTERM or SIGHUP is caught
    // (and acted on once the first generation serves), and the
    // supervisor's set of open descriptors is complete before any
    // generation runs.
    let signals = signals()?;
    if let Some((shared, notify, control)) = reexec::resume()? {
        start_threads(&shared, notify, control)?;
        reexec::resumed(&shared);
        return main_loop(shared, signals);
    }
    // Supervised itself (systemd Type=notify, another handoff serve): it
    // tells its own supervisor once generation 1 serves. Generations get
    // this supervisor's socket instead.
    let parent_notify = std::env::var(handoff::restart::NOTIFY_SOCKET)
        .ok()
        .filter(|s| !s.is_empty());
    let control_path = args.control.clone().unwrap_or_else(default_control);
    let control_path = std::path::absolute(&control_path).unwrap_or(control_path);
    let notify_path = notify_path(&control_path);
    // Adopt what this supervisor inherited (systemd, another handoff serve).
    let inherited = match std::env::var_os("LISTEN_FDS") {
        Some(_) => Some(Inherited::from_env().map_err(|e| Failure::from_error(FAILED, &e))?),
        None => None,
    };
    let listeners = listeners::gather(&args.listens, &args.fds, inherited)?;
    let _ = handoff::restart::supervise::raise_fd_limit(65_536);
    handoff::restart::supervise::become_subreaper().map_err(|e| Failure::from_error(FAILED, &e))?;
    let control = control::bind(&control_path).map_err(|e| Failure::new(FAILED, e))?;
    let notify = NotifySocket::bind(&notify_path).map_err(|e| {
        Failure::new(
            FAILED,
            format!(
                "notify socket {}: {}",
                notify_path.display(),
                crate::describe(&e)
            ),
        )
    })?;
    let dup = |h: handoff::BorrowedHandle<'_>| {
        h.try_clone_to_owned()
            .map_err(|e| Failure::from_error(FAILED, &e))
    };
    let sockets = Sockets {
        notify: dup(notify.handle())?,
        control: dup(handoff::AsHandle::as_handle(&control))?,
    };
    let shared = Shared::new(
        Config {
            command: args.command,
            ready_timeout: args.ready_timeout,
            drain_timeout: args.drain_timeout,
            stop_signal: args.stop_signal,
            notify_path,
            control_path,
            exe: std::env::current_exe()
                .map_err(|e| Failure::new(FAILED, format!("cannot find this binary: {e}")))?,
            argv: std::env::args_os().skip(1).collect(),
        },
        listeners,
        sockets,
        State::default(),
    );
    start_threads(&shared, notify, control)?;
    if let Err(line) = restart::trigger(&shared) {
        restart::stop_all(&shared);
        remove_socket_files(&shared);
        return Err(Failure::new(1, line));
    }
    if let Some(parent) = parent_notify {
        let ready = handoff::restart::Notification {
            ready: true,
            status: Some("generation 1 serves".into()),
            ..Default::default()
        };
        if let Err(e) = handoff::restart::send(&parent, &ready, &[]) {
            tracing::warn!(error = %crate::describe(&e), "could not tell READY=1 to this supervisor's own supervisor");
        }
    }
    main_loop(shared, signals)
}

fn start_threads(
    shared: &Arc<Shared>,
    notify: NotifySocket,
    control: handoff::Listener,
) -> Result<(), Failure> {
    let s = Arc::clone(shared);
    std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || notify::serve(s, notify))
        .map_err(|e| Failure::new(FAILED, format!("thread: {e}")))?;
    let s = Arc::clone(shared);
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || control::serve(s, control))
        .map_err(|e| Failure::new(FAILED, format!("thread: {e}")))?;
    Ok(())
}

fn signals() -> Result<signal_hook::iterator::Signals, Failure> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
    signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM, SIGUSR2])
        .map_err(|e| Failure::new(FAILED, format!("signal handlers: {e}")))
}

/// Waits for signals until told to stop.
fn main_loop(
    shared: Arc<Shared>,
    mut signals: signal_hook::iterator::Signals,
) -> Result<ExitCode, Failure> {
    use signal_hook::consts::{SIGHUP, SIGUSR2};
    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                tracing::info!("SIGHUP: restart");
                let s = Arc::clone(&shared);
                let _ = std::thread::Builder::new()
                    .name("sighup".into())
                    .spawn(move || {
                        let _ = restart::trigger(&s);
                    });
            }
            SIGUSR2 => {
                tracing::info!("SIGUSR2: supervisor replacement");
                if let Err(e) = reexec::replace(&shared, None) {
                    tracing::error!("{e}");
                }
            }
            _ => {
                tracing::info!(signal = sig, "stopping every generation");
                restart::stop_all(&shared);
                remove_socket_files(&shared);
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The socket threads own the sockets and never return, so their files
/// are removed here when the supervisor exits.
fn remove_socket_files(shared: &Shared) {
    let _ = std::fs::remove_file(&shared.config.control_path);
    let _ = std::fs::remove_file(&shared.config.notify_path);
}
