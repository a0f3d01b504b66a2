//! `handoff-bench`: handoff against hand-written system calls and against
//! ipc-channel, each benchmark between two real processes.
//!
//! ```text
//! cargo run --release -p handoff-bench -- [--quick] [--json] [--pin] [NAME...]
//! ```
//!
//! The same binary is both sides: run without `--role` it is the parent and
//! starts one child per contender (`proc`); with the hidden `--role` it is a
//! child serving one workload (`workload`) until its parent hangs up.
// Unsafe code only in `mapping` (the raw startup baseline's mmap).
#![deny(unsafe_code)]

mod benches;
mod chaos;
mod contender;
mod entrants;
mod handles;
mod job;
mod mapping;
mod pidfd_bench;
mod portable;
mod proc;
mod raw;
mod report;
mod restart;
mod rpc_bench;
mod spawn_bench;
mod startup_bench;
mod stats;
mod suite;
mod with_handoff;
mod with_ipc_channel;
mod workload;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

use crate::proc::Role;
use crate::workload::Workload;

/// Every error ends up as a message on stderr and a failed exit.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Benchmarks handoff against the raw system calls and against ipc-channel.
///
/// Each benchmark runs between this process and child processes it starts,
/// and reports the best raw figure (over STREAM, SEQPACKET and DGRAM
/// sockets), handoff's, and their ratio.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Fewer repetitions and a 256 MiB bulk transfer: under a minute.
    #[arg(long)]
    quick: bool,

    /// Print one JSON object per benchmark instead of a table.
    #[arg(long)]
    json: bool,

    /// Run the reliability cases (docs/reliability.md) instead of the
    /// benchmarks; with `--quick`, the short form.
    #[arg(long)]
    chaos: bool,

    /// Run the zero-downtime restart campaign (docs/restart.md) instead of
    /// the benchmarks: `handoff serve` and `handoff restart` under load in a
    /// private network namespace; with `--quick`, the short form. Needs
    /// the release `handoff` binary and the `restart_server` example built.
    #[arg(long)]
    restart: bool,

    /// Run the benchmarks with handoff built in its portable Unix
    /// configuration (channels over SOCK_STREAM, as on macOS and the BSDs),
    /// against raw SOCK_STREAM as the baseline: builds that configuration
    /// into target/portable-release first (on Linux) and runs it instead.
    #[arg(long)]
    portable: bool,

    /// Also run the throughput benchmarks with both processes pinned to
    /// CPU 0, as `<name>_pinned` (the latency ones always run both ways).
    #[arg(long)]
    pin: bool,

    /// Benchmarks to run, by name or name prefix (`fd_throughput`, `rtt`,
    /// `rtt_1fd_pinned`); all of them when none is given.
    names: Vec<String>,

    /// Child processes only: the library this child speaks.
    #[arg(long, hide = true, value_enum)]
    role: Option<Role>,

    /// Child processes only: what the child does.
    #[arg(long, hide = true)]
    work: Option<Workload>,

    /// Child processes only: a job of the benchmarks in their own modules.
    #[arg(long, hide = true)]
    job: Option<job::Job>,

    /// Child processes only: ipc-channel's one-shot server to connect to.
    #[arg(long, hide = true)]
    ipc_name: Option<String>,

    /// Child processes only: the CPU to pin to.
    #[arg(long, hide = true)]
    pin_cpu: Option<usize>,
}

fn main() -> ExitCode {
    // Chaos children are told their role by the environment, before any
    // argument parsing.
    if let Some(code) = chaos::child_main() {
        return code;
    }
    if let Some(code) = restart::pipe_sink_main() {
        return code;
    }
    let cli = Cli::parse();
    if cli.portable && !portable::active() {
        if let Err(e) = portable::build_and_run() {
            eprintln!("handoff-bench --portable: {}", describe(e.as_ref()));
        }
        return ExitCode::FAILURE;
    }
    if cli.chaos {
        return chaos::run(cli.quick);
    }
    if cli.restart {
        return restart::run(cli.quick, cli.json);
    }
    let outcome = match cli.role {
        Some(role) => child(role, &cli),
        None => parent(&cli),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let who = cli.role.map_or("handoff-bench", |_| "handoff-bench child");
            eprintln!("{who}: {}", describe(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// An error with its chain of sources: handoff's errors keep the OS error
/// as their source rather than in their message.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

fn child(role: Role, cli: &Cli) -> Result<()> {
    if let Some(job) = &cli.job {
        return job::run(role, job, cli.pin_cpu);
    }
    let work = cli.work.ok_or("--work is required with --role")?;
    if let Some(cpu) = cli.pin_cpu {
        proc::pin_to(cpu)?;
    }
    // A name per role lets `top` and `perf report --sort comm` tell the
    // children apart; failing to set it changes nothing measured.
    let _ = rustix::thread::set_name(role.thread_name());
    match role {
        Role::Raw => {
            let socket = proc::stdin_socket()?;
            let _ = rustix::thread::set_name(raw::thread_name(&socket));
            raw::serve(socket, work)
        }
        Role::Handoff => {
            let socket = handoff::Handle::from(proc::stdin_socket()?);
            with_handoff::serve(handoff::Channel::from_handle(socket)?, work)
        }
        Role::IpcChannel => {
            let name = cli.ipc_name.clone().ok_or("--ipc-name is required")?;
            with_ipc_channel::serve(name, work)
        }
    }
}

fn parent(cli: &Cli) -> Result<()> {
    let cfg = if cli.quick {
        benches::Config::quick()
    } else {
        benches::Config::full()
    };
    let benches = select(benches::all(cli.pin), &cli.names)?;
    let mut rows = Vec::new();
    let mut stdout = std::io::stdout().lock();
    for bench in &benches {
        eprintln!("running {} ...", bench.name);
        let row = suite::run(bench, &cfg).map_err(|e| format!("{}: {e}", bench.name))?;
        if cli.json {
            writeln!(stdout, "{}", row.json()?)?;
            stdout.flush()?;
        }
        rows.push(row);
    }
    if !cli.json {
        let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
        writeln!(
            stdout,
            "handoff-bench{}: best of {} repetitions, {threads} CPUs; speed > 1 means faster than the baseline{}\n",
            if cli.quick { " --quick" } else { "" },
            cfg.reps,
            if portable::active() {
                "\nhandoff in its portable Unix configuration (SOCK_STREAM framing): the baseline is the best raw SOCK_STREAM entrant"
            } else {
                ""
            },
        )?;
        write!(stdout, "{}", report::table(&rows))?;
    }
    Ok(())
}

/// The benchmarks whose name starts with one of `names` (all if empty); a
/// name that selects nothing is an error rather than a silent no-op.
fn select(all: Vec<benches::Bench>, names: &[String]) -> Result<Vec<benches::Bench>> {
    if names.is_empty() {
        return Ok(all);
    }
    if let Some(unknown) = names
        .iter()
        .find(|n| !all.iter().any(|b| b.name.starts_with(n.as_str())))
    {
        let known: Vec<&str> = all.iter().map(|b| b.name.as_str()).collect();
        return Err(format!(
            "no benchmark named {unknown:?}; known: {}",
            known.join(", ")
        )
        .into());
    }
    Ok(all
        .into_iter()
        .filter(|b| names.iter().any(|n| b.name.starts_with(n.as_str())))
        .collect())
}
