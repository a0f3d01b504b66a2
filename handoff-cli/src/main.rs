//! `handoff`: look at the handles a process holds and hand them to commands.
//!
//! Each subcommand lives in its own file with an `Args` struct (clap
//! derive) and a `run(Args) -> Result<ExitCode, Failure>`; adding one is a
//! new file, a variant below and an arm in `main`.

mod args;
mod exec;
mod grab;
mod inherited;
mod ls;
mod serve;
mod spec;
mod status;

use std::error::Error as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Look at the handles a process holds and hand them to commands.
#[derive(Debug, Parser)]
#[command(name = "handoff", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every open handle of a process: number, kind, access, close-on-exec, target.
    Ls(ls::Args),
    /// Pull a handle out of another process and run a command with it.
    Grab(grab::Args),
    /// Run a command with exactly the given files, sockets and startup data.
    Exec(exec::Args),
    /// Check and list what this process inherited (run it as the child).
    Inherited(inherited::Args),
    /// Hold listening sockets and run a service on them, restartable with no downtime.
    Serve(serve::Args),
    /// Restart the service a `handoff serve` runs (or the supervisor itself).
    Restart(serve::client::RestartArgs),
    /// Show the generations, listeners and stored handles of a `handoff serve`.
    Status(serve::client::StatusArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Ls(args) => ls::run(args),
        Command::Grab(args) => grab::run(args),
        Command::Exec(args) => exec::run(args),
        Command::Inherited(args) => inherited::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Restart(args) => serve::client::restart(args),
        Command::Status(args) => serve::client::status(args),
    };
    result.unwrap_or_else(Failure::report)
}

/// Why a subcommand gave up: one line for stderr and the exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// The library error with its whole chain of causes, since its
    /// `Display` leaves the operating system's words to `source()`.
    pub(crate) fn from_error(code: u8, error: &handoff::Error) -> Self {
        Failure::new(code, describe(error))
    }

    fn report(self) -> ExitCode {
        eprintln!("handoff: {}", self.message);
        ExitCode::from(self.code)
    }
}

/// An error and its causes on one line.
pub(crate) fn describe(error: &handoff::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Help and version go out as clap prints them; a usage mistake becomes
/// one line (clap's first paragraph, without its usage block).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
    }
    let text = e.to_string();
    let first: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = first.join(" ");
    eprintln!(
        "handoff: {} (see 'handoff --help')",
        line.strip_prefix("error: ").unwrap_or(&line)
    );
    ExitCode::from(2)
}
