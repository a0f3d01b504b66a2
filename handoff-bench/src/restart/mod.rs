//! `--restart`: the zero-downtime restart campaign. The reference server
//! (`handoff/examples/restart_server`) runs under `handoff serve` in a
//! private network namespace; an open-loop load of new TCP connections
//! (HTTP, `Connection: close`), sequenced UDP datagrams and Unix-stream
//! connections, plus keep-alive HTTP clients that count their own
//! connects, records every request's outcome while `handoff restart`
//! replaces the server again and again, bad versions and supervisor
//! self-replacements mixed in. Kernel counters, the supervisor's open
//! descriptors and zombies are checked; a naive `SO_REUSEPORT` handover
//! under the same load must fail (else the harness is blind). Prints a
//! table (or JSON), writes an SVG, ends with `N passed, N failed`.
//!
//! Needs the release binaries beside this one:
//! `cargo build --release -p handoff-cli && cargo build --release -p handoff --example restart_server`.

mod campaign;
mod counters;
mod gunicorn;
mod handover_stats;
mod http_client;
mod keepalive;
mod load;
mod naive;
mod netns;
mod outcome;
mod plot;
mod procs;
mod report;
mod schedule;
mod self_contained;
mod state_phase;
mod stream_client;
mod supervisor;
mod udp_client;
mod unix_client;

use std::process::ExitCode;

/// The receiving process of the large-state phase's pipe copy, when this
/// binary was started as one.
pub fn pipe_sink_main() -> Option<ExitCode> {
    state_phase::pipe_sink_main()
}

pub fn run(quick: bool, json: bool) -> ExitCode {
    match netns::enter() {
        Ok(Some(code)) => return code,
        Ok(None) => {}
        Err(e) => {
            eprintln!("handoff-bench --restart: {}", crate::describe(e.as_ref()));
            return ExitCode::FAILURE;
        }
    }
    match campaign::run(quick) {
        Ok(report) => {
            if json {
                match serde_json::to_string(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("handoff-bench --restart: json: {e}"),
                }
            } else {
                print!("{}", report.table());
            }
            println!("{} passed, {} failed", report.passed(), report.failed());
            if report.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("handoff-bench --restart: {}", crate::describe(e.as_ref()));
            println!("0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}
