//! `handoff restart [--control PATH] [--supervisor]` and
//! `handoff status [--control PATH] [--json]`: clients of a running
//! `handoff serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::control::call;
use super::protocol::{Reply, Request, StatusReport};
use crate::Failure;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status 0 once the new generation serves (the line says so); 1 with one \
line saying why it did not (the old generation still serves); 2 if the \
supervisor cannot be reached.")]
pub(crate) struct RestartArgs {
    /// The supervisor's control socket (default as `handoff serve`).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Replace the supervisor itself (re-execute its binary), keeping the
    /// listeners, the store and the running generation.
    #[arg(long)]
    supervisor: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// The supervisor's control socket (default as `handoff serve`).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

fn ask(control: Option<PathBuf>, request: Request) -> Result<Reply, Failure> {
    let path = control.unwrap_or_else(super::default_control);
    call(&path, &request).map_err(|e| Failure::new(2, e))
}

pub(crate) fn restart(args: RestartArgs) -> Result<ExitCode, Failure> {
    let request = if args.supervisor {
        Request::RestartSupervisor
    } else {
        Request::Restart
    };
    let reply = ask(args.control, request)?;
    if reply.ok {
        println!("{}", reply.message);
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::new(1, reply.message))
    }
}

pub(crate) fn status(args: StatusArgs) -> Result<ExitCode, Failure> {
    let reply = ask(args.control, Request::Status)?;
    let Some(report) = reply.status.filter(|_| reply.ok) else {
        return Err(Failure::new(1, reply.message));
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| Failure::new(1, e.to_string()))?
        );
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(r: &StatusReport) {
    println!(
        "supervisor pid {}, {} restart(s){}",
        r.supervisor_pid,
        r.restarts,
        if r.restarting { ", restarting now" } else { "" }
    );
    for g in &r.generations {
        let main = if g.main_pid != g.pid {
            format!(" (main pid {})", g.main_pid)
        } else {
            String::new()
        };
        println!(
            "generation {}: pid {}{main}, {}, started {} (unix time){}",
            g.number,
            g.pid,
            g.state,
            g.started,
            g.status
                .as_deref()
                .map(|s| format!(", status: {s}"))
                .unwrap_or_default()
        );
    }
    for l in &r.listeners {
        println!("listener {}: {}", l.name, l.address);
    }
    for s in &r.stored {
        println!("stored {}: {} handle(s)", s.name, s.count);
    }
}
