//! `handoff exec [--fd NAME=PATH[:r|:w|:rw]]... [--listen NAME=ADDRESS]...
//! [--data PATH|-] -- CMD [ARGS...]`: run a command with exactly these
//! handles, under the systemd socket-activation convention.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use handoff::{Command, Handle};

use crate::spec::{self, Address, FdSpec, ListenSpec, Mode};
use crate::status::{cannot_run, exit_code, FAILED};
use crate::{describe, Failure};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
CMD gets descriptors 3, 4, ... in this order: the --fd files, then the --listen \
sockets, then the startup data (named handoff.startup), with LISTEN_FDS, \
LISTEN_PID and LISTEN_FDNAMES set as systemd does. Nothing else handoff holds \
reaches CMD. The startup data is a sealed, read-only memfd with a 64-byte \
header (docs/wire-format.md); the kernel copies it in (sendfile/splice).

Exit status: CMD's, or 128+N if signal N killed it; 125 if handoff could not \
prepare the handles; 127 if CMD could not be started.")]
pub(crate) struct Args {
    /// Open PATH (r: read-only, the default; w: write-only; rw: read-write;
    /// w and rw create a missing file and never truncate) and pass it as NAME.
    #[arg(long = "fd", value_name = "NAME=PATH[:r|:w|:rw]", value_parser = spec::fd_spec)]
    fds: Vec<FdSpec>,
    /// Bind and listen (tcp:HOST:PORT, or unix:PATH for a stream socket),
    /// or bind a udp:HOST:PORT socket, and pass the socket as NAME.
    #[arg(long = "listen", value_name = "NAME=tcp:HOST:PORT|NAME=udp:HOST:PORT|NAME=unix:PATH", value_parser = spec::listen_spec)]
    listens: Vec<ListenSpec>,
    /// Load this file (or standard input for -) into sealed startup data.
    #[arg(long, value_name = "PATH|-")]
    data: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Failure> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Failure::new(2, "no command given after --"))?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
    for f in &args.fds {
        cmd.handle_owned(&f.name, open(f)?);
    }
    for l in &args.listens {
        cmd.handle_owned(&l.name, listen(l)?);
    }
    if let Some(path) = &args.data {
        cmd.handle_owned(handoff::startup::NAME, load(path)?);
    }
    let mut child = cmd.spawn().map_err(|e| cannot_run(program, &e))?;
    let status = child.wait().map_err(|e| Failure::from_error(FAILED, &e))?;
    Ok(exit_code(status))
}

pub(crate) fn open(f: &FdSpec) -> Result<Handle, Failure> {
    let mut options = std::fs::OpenOptions::new();
    match f.mode {
        Mode::Read => options.read(true),
        Mode::Write => options.write(true).create(true),
        Mode::ReadWrite => options.read(true).write(true).create(true),
    };
    options.open(&f.path).map(Handle::from).map_err(|e| {
        Failure::new(
            FAILED,
            format!("--fd {}: {}: {e}", f.name, f.path.display()),
        )
    })
}

pub(crate) fn listen(l: &ListenSpec) -> Result<Handle, Failure> {
    let failed = |what: String, e: std::io::Error| {
        Failure::new(FAILED, format!("--listen {}: {what}: {e}", l.name))
    };
    match &l.address {
        Address::Tcp { host, port } => std::net::TcpListener::bind((host.as_str(), *port))
            .map(Handle::from)
            .map_err(|e| failed(format!("{host}:{port}"), e)),
        Address::Udp { host, port } => std::net::UdpSocket::bind((host.as_str(), *port))
            .map(Handle::from)
            .map_err(|e| failed(format!("udp {host}:{port}"), e)),
        Address::Unix(path) => std::os::unix::net::UnixListener::bind(path)
            .map(Handle::from)
            .map_err(|e| failed(path.display().to_string(), e)),
    }
}

fn load(path: &PathBuf) -> Result<Handle, Failure> {
    let failed = |e: &handoff::Error| {
        Failure::new(
            FAILED,
            format!("--data {}: {}", path.display(), describe(e)),
        )
    };
    if path.as_os_str() == "-" {
        return handoff::startup::create_from(std::io::stdin(), None).map_err(|e| failed(&e));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::new(FAILED, format!("--data {}: {e}", path.display())))?;
    handoff::startup::create_from(&file, None).map_err(|e| failed(&e))
}
