//! The reference server for zero-downtime restarts: takes its sockets by
//! name from `LISTEN_FDS` (`http`, `udp`, `unix`), serves them, says
//! `READY=1` once its accept loops are armed, and on SIGTERM stops
//! accepting, finishes what is in flight and exits. Every response names
//! the generation that served it.
//!
//! ```text
//! cargo build --release -p handoff --example restart_server
//! handoff serve --listen http=tcp:127.0.0.1:8080 -- target/release/examples/restart_server
//! ```
//!
//! For the restart campaign it can also behave as a bad version (see
//! `mode.rs`): the mode comes from `RESTART_SERVER_MODE`, or from the first
//! line of the file named by `RESTART_SERVER_MODE_FILE`, read once at start,
//! so each generation can be told something different without help from
//! the supervisor.

#[cfg(target_os = "linux")]
mod accept;
#[cfg(target_os = "linux")]
mod echo;
#[cfg(target_os = "linux")]
mod front;
#[cfg(target_os = "linux")]
mod handover;
#[cfg(target_os = "linux")]
mod http;
#[cfg(target_os = "linux")]
mod mode;
#[cfg(target_os = "linux")]
mod server;
#[cfg(target_os = "linux")]
mod snapshot;
#[cfg(target_os = "linux")]
mod upgrade;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    match server::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("restart_server[{}]: {e}", std::process::id());
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("restart_server: Linux only (it is built on handoff::restart::Service)");
}
