//! handoff's RPC against raw ping-pong, across processes.
//!
//! * `rpc_rtt_1fd` (and `_pinned`): one blocking call in the parent that
//!   carries one in-handle (`#[handle(file, read)]`) and returns one
//!   out-handle (`#[out(file, read)]`), against a server child on a
//!   current-thread tokio runtime; the baseline is the existing raw
//!   `rtt_1fd` round trip (one byte and one handle each way) on every
//!   socket type. Experiments: an RPC call without handles (`echo(u64)`),
//!   and `handoff::Channel` carrying one handle each way (`rtt_1fd`'s
//!   handoff entrant), which split the RPC's cost into runtime and handle
//!   checks.
//! * `rpc_calls_64_clients`: 64 client **processes**, each making
//!   `echo(u64)` calls in a closed loop for a fixed time against one server
//!   process; calls per second over all of them. The baseline is raw
//!   one-byte ping-pong with 64 clients, either against 64 echo processes
//!   (64 pairs) or against one server process with an `epoll` loop,
//!   whichever is faster.
//!
//! The RPC handle is a read-only regular file (this binary), since `file`
//! is the declared kind; the raw baseline sends `/dev/null` duplicates, as
//! in `rtt_1fd` (the kernel does the same work for either).

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use handoff::rpc::Server;
use handoff::{AsyncChannel, BorrowedHandle, Channel, Handle};
use rustix::event::epoll;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use serde::{Deserialize, Serialize};

use crate::benches::{Bench, Config};
use crate::contender::{self, Kind};
use crate::entrants::Side;
use crate::job::{self, Guard, Job};
use crate::proc::{self, Role};
use crate::raw::{Buffers, SocketKind};
use crate::report::{Entry, Row};
use crate::stats::{self, Better, Figure};
use crate::suite;
use crate::workload::Workload;

/// The bench's error-boxing result; `Result` stays std's for the interface.
type BenchResult<T> = crate::Result<T>;

/// The application error of the bench interface.
#[derive(Debug, Serialize, Deserialize)]
pub struct Refused(pub String);

fn refused(e: impl std::fmt::Display) -> Refused {
    Refused(e.to_string())
}

#[handoff::interface(name = "handoff.bench.Rpc", version = 1)]
pub trait BenchRpc {
    /// Takes a read-only file and returns one of the server's own.
    #[out(file, read)]
    async fn bounce(
        &self,
        #[handle(file, read)] file: BorrowedHandle<'_>,
    ) -> Result<Handle, Refused>;

    /// Returns its argument.
    async fn echo(&self, value: u64) -> Result<u64, Refused>;
}

struct Service {
    file: std::fs::File,
}

impl BenchRpc for Service {
    async fn bounce(&self, _file: BorrowedHandle<'_>) -> Result<Handle, Refused> {
        handoff::AsHandle::as_handle(&self.file)
            .try_clone_to_owned()
            .map_err(refused)
    }

    async fn echo(&self, value: u64) -> Result<u64, Refused> {
        Ok(value)
    }
}

/// The regular file both sides pass: this binary, read-only.
fn bench_file() -> BenchResult<std::fs::File> {
    Ok(std::fs::File::open(std::env::current_exe()?)?)
}

/// The server job: takes its connections from the control channel on
/// stdin, serves them all, and exits when every client has gone.
pub fn serve(threads: usize) -> BenchResult<()> {
    let control = Channel::from_handle(Handle::from(proc::stdin_socket()?))?;
    let msg = control.recv()?;
    let runtime = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_io()
            .build()?
    };
    let server = Server::new(BenchRpcServer::new(Service {
        file: bench_file()?,
    }));
    runtime.block_on(async move {
        let mut connections = tokio::task::JoinSet::new();
        for h in msg.handles {
            let channel = AsyncChannel::new(Channel::from_handle(h)?)?;
            let server = server.clone();
            connections.spawn(async move { server.serve_connection(channel).await });
        }
        while let Some(done) = connections.join_next().await {
            done??;
        }
        Ok(())
    })
}

/// The raw server of `rpc_calls_64_clients`: one `epoll` loop echoing one
/// byte on every socket from the control channel, until all are closed.
pub fn epoll_serve() -> BenchResult<()> {
    let control = Channel::from_handle(Handle::from(proc::stdin_socket()?))?;
    let sockets: Vec<OwnedFd> = control
        .recv()?
        .handles
        .into_iter()
        .map(OwnedFd::from)
        .collect();
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    for (i, s) in sockets.iter().enumerate() {
        epoll::add(
            &ep,
            s,
            epoll::EventData::new_u64(i as u64),
            epoll::EventFlags::IN,
        )?;
    }
    let mut open = sockets.len();
    let mut events: Vec<epoll::Event> = Vec::with_capacity(sockets.len());
    let mut byte = [0u8; 1];
    while open > 0 {
        events.clear();
        match epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        for event in &events {
            let socket = &sockets[event.data.u64() as usize];
            match rustix::net::recv(socket, &mut byte, RecvFlags::DONTWAIT) {
                Ok((0, _)) => {
                    epoll::delete(&ep, socket)?;
                    open -= 1;
                }
                Ok(_) => {
                    rustix::net::send(socket, &byte, SendFlags::NOSIGNAL)?;
                }
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// A closed-loop client: gets its connection on the control channel, says
/// it is ready, calls from "go" until its window ends, reports the count.
pub fn client(rpc: bool) -> BenchResult<()> {
    let control = Channel::from_handle(Handle::from(proc::stdin_socket()?))?;
    let connection = control
        .recv()?
        .handles
        .pop()
        .ok_or("no connection handle")?;
    // One value on this thread's stack for the whole run; boxing the large
    // variant would only add an indirection to the measured loop.
    #[allow(clippy::large_enum_variant)]
    enum Conn {
        Raw(OwnedFd),
        Rpc(BenchRpcBlockingClient),
    }
    let conn = if rpc {
        Conn::Rpc(BenchRpcBlockingClient::handshake(Channel::from_handle(
            connection,
        )?)?)
    } else {
        Conn::Raw(OwnedFd::from(connection))
    };
    control.send(b"ready", &[])?;
    let go = control.recv()?;
    let window = Duration::from_micros(u64::from_le_bytes(
        go.bytes.get(..8).ok_or("short go")?.try_into()?,
    ));
    let deadline = Instant::now() + window;
    let mut calls = 0u64;
    match &conn {
        Conn::Raw(socket) => {
            let mut byte = [0u8; 1];
            while Instant::now() < deadline {
                rustix::net::send(socket, &[1], SendFlags::NOSIGNAL)?;
                if rustix::net::recv(socket, &mut byte, RecvFlags::empty())?.0 != 1 {
                    return Err("the echo server hung up".into());
                }
                calls += 1;
            }
        }
        Conn::Rpc(client) => {
            while Instant::now() < deadline {
                if client.echo(calls)? != calls {
                    return Err("echo answered another value".into());
                }
                calls += 1;
            }
        }
    }
    control.send(&calls.to_le_bytes(), &[])?;
    Ok(())
}

/// Starts a server job with `connections` (their server ends) and returns
/// the control channel, which must outlive the server's start-up.
fn start_server(
    role: Role,
    job: &Job,
    connections: &[BorrowedHandle<'_>],
    pin: bool,
) -> BenchResult<(Channel, Guard<std::process::Child>)> {
    let (control, theirs) = Channel::pair()?;
    let mut cmd = job::command(role, job, pin)?;
    cmd.stdin(Stdio::from(OwnedFd::from(theirs.into_handle())));
    let server = Guard::new(cmd.spawn()?, "server");
    drop(cmd);
    control.send(b"", connections)?;
    Ok((control, server))
}

// ─────────────────────────────── rpc_rtt_1fd ───────────────────────────────

#[derive(Debug, Clone, Copy)]
enum Rtt {
    /// A contender of the shared loops (raw sockets or `handoff::Channel`).
    Shared(Kind),
    /// An RPC call: `bounce` with handles, or `echo` without.
    Rpc { handles: bool },
}

/// Runs `rpc_rtt_1fd` (pinned or not).
pub fn run_rtt(bench: &Bench, cfg: &Config) -> BenchResult<Row> {
    let mut entrants: Vec<(Side, String, Rtt)> = Vec::new();
    for s in [SocketKind::Stream, SocketKind::Seqpacket, SocketKind::Dgram] {
        for b in [Buffers::Library, Buffers::System] {
            entrants.push((
                Side::Baseline,
                format!("{} {}", s.name(), b.name()),
                Rtt::Shared(Kind::Raw(s, b)),
            ));
        }
    }
    entrants.push((
        Side::Handoff,
        "rpc bounce(file) -> file".into(),
        Rtt::Rpc { handles: true },
    ));
    entrants.push((
        Side::Experiment,
        "rpc echo(u64), no handles".into(),
        Rtt::Rpc { handles: false },
    ));
    entrants.push((
        Side::Experiment,
        "handoff Channel, 1 fd each way".into(),
        Rtt::Shared(Kind::Handoff),
    ));
    let file = bench_file()?;
    let rounds = cfg.rpc_rounds;
    let mut reps: Vec<Vec<Figure>> = vec![Vec::with_capacity(cfg.reps); entrants.len()];
    for _ in 0..cfg.reps {
        for ((_, label, how), r) in entrants.iter().zip(&mut reps) {
            let figure = match *how {
                Rtt::Shared(kind) => {
                    let work = Workload::Echo { with_fd: true };
                    let mut c = contender::spawn(kind, work, bench.pinned)?;
                    let outcome = suite::round_trips(c.as_mut(), true, rounds / 10)
                        .and_then(|_| suite::round_trips(c.as_mut(), true, rounds));
                    let finished = c.finish();
                    let figure = outcome.map_err(|e| format!("{label}: {e}"))?;
                    finished.map_err(|e| format!("{label}: {e}"))?;
                    figure
                }
                Rtt::Rpc { handles } => rpc_round_trips(&file, handles, rounds, bench.pinned)
                    .map_err(|e| format!("{label}: {e}"))?,
            };
            r.push(figure);
        }
    }
    let entries = entrants
        .into_iter()
        .zip(&reps)
        .map(|((side, label, _), r)| Entry::best_of(side, label, r, Better::Lower))
        .collect::<BenchResult<Vec<_>>>()?;
    // What checking one `#[handle(file, read)]` costs (each call checks
    // two: the in-handle on the server, the out-handle on the client), and
    // the `/proc/self/fd` readlink inside it.
    let (check_us, readlink_us) = handle_check_costs(&file, rounds.max(1000))?;
    Ok(Row::new(bench, cfg.reps, entries)?
        .with_extra("file_check_us", check_us)
        .with_extra("proc_fd_readlink_us", readlink_us))
}

/// The time of one `kind()` + `access()` on a regular file, as the RPC
/// runtime checks a `file` handle, and of one readlink of its
/// `/proc/self/fd` entry, which `kind()` makes for every regular file; the
/// best of five runs of `n` each, in microseconds.
fn handle_check_costs(file: &std::fs::File, n: usize) -> BenchResult<(f64, f64)> {
    use std::os::fd::AsRawFd;
    let handle = handoff::AsHandle::as_handle(file);
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let best = |f: &mut dyn FnMut() -> BenchResult<()>| -> BenchResult<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..n {
                f()?;
            }
            best = best.min(t.elapsed().as_secs_f64() * 1e6 / n as f64);
        }
        Ok(best)
    };
    let check = best(&mut || {
        if handle.kind()? != handoff::Kind::File || handle.access()? != handoff::Access::READ {
            return Err("the bench file is not a read-only file".into());
        }
        Ok(())
    })?;
    let readlink = best(&mut || {
        std::hint::black_box(std::fs::read_link(&path)?);
        Ok(())
    })?;
    Ok((check, readlink))
}

/// Starts a server, connects a blocking client, and times `rounds` calls
/// after a tenth as many unmeasured ones.
fn rpc_round_trips(
    file: &std::fs::File,
    handles: bool,
    rounds: usize,
    pin: bool,
) -> BenchResult<Figure> {
    let (mine, theirs) = Channel::pair()?;
    let (control, server) = start_server(
        Role::Handoff,
        &Job::RpcServer { threads: 0 },
        &[theirs.as_borrowed()],
        pin,
    )?;
    drop(theirs);
    let client = BenchRpcBlockingClient::handshake(mine)?;
    let call = || -> BenchResult<()> {
        if handles {
            drop(client.bounce(file)?);
        } else if client.echo(7)? != 7 {
            return Err("echo answered another value".into());
        }
        Ok(())
    };
    for _ in 0..rounds / 10 {
        call()?;
    }
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        call()?;
        samples.push(t.elapsed());
    }
    drop(client);
    drop(control);
    server.wait()?;
    Ok(stats::latency(&mut samples))
}

// ─────────────────────────── rpc_calls_64_clients ───────────────────────────

#[derive(Debug, Clone, Copy)]
enum Calls {
    /// 64 raw client/echo process pairs on socket pairs of this type.
    Pairs(SocketType),
    /// 64 raw clients against one `epoll` echo server (SEQPACKET).
    Epoll,
    /// 64 RPC clients against one server with this many runtime threads
    /// (0: current-thread).
    Rpc { threads: usize },
}

/// Runs `rpc_calls_64_clients`.
pub fn run_calls(bench: &Bench, cfg: &Config) -> BenchResult<Row> {
    let entrants = [
        (
            Side::Baseline,
            "raw 64 pairs SEQPACKET",
            Calls::Pairs(SocketType::SEQPACKET),
        ),
        (
            Side::Baseline,
            "raw 64 pairs STREAM",
            Calls::Pairs(SocketType::STREAM),
        ),
        (Side::Baseline, "raw epoll server SEQPACKET", Calls::Epoll),
        (
            Side::Handoff,
            "rpc, current-thread server",
            Calls::Rpc { threads: 0 },
        ),
        (
            Side::Handoff,
            "rpc, 2-thread server",
            Calls::Rpc { threads: 2 },
        ),
    ];
    let mut reps: Vec<Vec<Figure>> = vec![Vec::with_capacity(cfg.reps); entrants.len()];
    for _ in 0..cfg.reps {
        for ((_, label, how), r) in entrants.iter().zip(&mut reps) {
            let rate = calls_once(*how, cfg).map_err(|e| format!("{label}: {e}"))?;
            r.push(Figure {
                value: rate,
                p99: None,
            });
        }
    }
    let entries = entrants
        .iter()
        .zip(&reps)
        .map(|((side, label, _), r)| Entry::best_of(*side, *label, r, Better::Higher))
        .collect::<BenchResult<Vec<_>>>()?;
    Ok(Row::new(bench, cfg.reps, entries)?.with_extra("clients", cfg.clients as f64))
}

/// One repetition: starts the clients and the server side, lets every
/// client call for the window, and returns calls per second over all.
fn calls_once(how: Calls, cfg: &Config) -> BenchResult<f64> {
    let rpc = matches!(how, Calls::Rpc { .. });
    let role = if rpc { Role::Handoff } else { Role::Raw };
    let mut clients = Vec::with_capacity(cfg.clients);
    for _ in 0..cfg.clients {
        let (control, theirs) = Channel::pair()?;
        let mut cmd = job::command(role, &Job::Client { rpc }, false)?;
        cmd.stdin(Stdio::from(OwnedFd::from(theirs.into_handle())));
        clients.push((control, Guard::new(cmd.spawn()?, "client")));
    }
    let mut client_ends: Vec<Handle> = Vec::with_capacity(cfg.clients);
    let mut server_ends: Vec<Handle> = Vec::with_capacity(cfg.clients);
    for _ in 0..cfg.clients {
        let (a, b) = match how {
            Calls::Pairs(ty) => pair(ty)?,
            Calls::Epoll => pair(SocketType::SEQPACKET)?,
            Calls::Rpc { .. } => {
                let (a, b) = Channel::pair()?;
                (a.into_handle(), b.into_handle())
            }
        };
        client_ends.push(a);
        server_ends.push(b);
    }
    let mut echoes = Vec::new();
    let mut server = None;
    match how {
        Calls::Pairs(_) => {
            for end in server_ends.drain(..) {
                echoes.push(proc::spawn(
                    Role::Raw,
                    Workload::Echo { with_fd: false },
                    Stdio::from(OwnedFd::from(end)),
                    None,
                    false,
                )?);
            }
        }
        Calls::Epoll | Calls::Rpc { .. } => {
            let job = match how {
                Calls::Rpc { threads } => Job::RpcServer { threads },
                _ => Job::EpollServer,
            };
            let borrowed: Vec<BorrowedHandle<'_>> =
                server_ends.iter().map(Handle::borrow).collect();
            server = Some(start_server(role, &job, &borrowed, false)?);
            drop(borrowed);
            server_ends.clear();
        }
    }
    for ((control, _), end) in clients.iter().zip(&client_ends) {
        control.send(b"", &[end.borrow()])?;
    }
    client_ends.clear();
    for (control, _) in &clients {
        if control.recv()?.bytes != b"ready" {
            return Err("a client did not get ready".into());
        }
    }
    let window = u64::try_from(cfg.calls_window.as_micros())?;
    for (control, _) in &clients {
        control.send(&window.to_le_bytes(), &[])?;
    }
    let mut total = 0u64;
    for (control, _) in &clients {
        let count = control.recv()?;
        total += u64::from_le_bytes(count.bytes.get(..8).ok_or("short count")?.try_into()?);
    }
    for (control, client) in clients {
        drop(control);
        client.wait()?;
    }
    for echo in echoes {
        echo.wait()?;
    }
    if let Some((control, server)) = server {
        drop(control);
        server.wait()?;
    }
    Ok(total as f64 / cfg.calls_window.as_secs_f64())
}

fn pair(ty: SocketType) -> BenchResult<(Handle, Handle)> {
    let (a, b) = rustix::net::socketpair(AddressFamily::UNIX, ty, SocketFlags::CLOEXEC, None)?;
    Ok((Handle::from(a), Handle::from(b)))
}
