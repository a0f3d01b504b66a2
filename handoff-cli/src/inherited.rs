//! `handoff inherited [--json]`: run as a child, claim and check what this
//! process inherited under the socket-activation convention, and list it.

use std::process::ExitCode;

use handoff::{Handle, Inherited, Kind, KindName, SocketFamily, StartupData};
use serde::Serialize;

use crate::Failure;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Reads LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES, claims descriptors 3, 4, ... \
and checks each with the kernel. Startup data (handoff.startup) is validated \
(seals, magic, version, size). Any bogus value is a one-line error and exit \
status 1. Works under handoff exec and under systemd or systemd-socket-activate.")]
pub(crate) struct Args {
    /// One JSON object per handle, one per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Entry {
    name: String,
    fd: i32,
    kind: KindName,
    detail: String,
    access: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seals: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    startup_payload_bytes: Option<u64>,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Failure> {
    let mut inherited = Inherited::from_env().map_err(|e| Failure::from_error(1, &e))?;
    let names: Vec<String> = inherited.names().map(str::to_owned).collect();
    let mut entries = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let handle = inherited
            .take_index(i)
            .map_err(|e| Failure::from_error(1, &e))?;
        let entry = describe(name, 3 + i as i32, handle).map_err(|e| Failure::from_error(1, &e))?;
        entries.push(entry);
    }
    if entries.is_empty() && !args.json {
        println!("nothing inherited (LISTEN_FDS is not set)");
    }
    for e in &entries {
        if args.json {
            println!(
                "{}",
                serde_json::to_string(e).expect("plain data serializes")
            );
        } else {
            let extra = e
                .address
                .clone()
                .or_else(|| {
                    e.startup_payload_bytes
                        .map(|n| format!("startup data, {n} payload bytes"))
                })
                .unwrap_or_default();
            println!(
                "{:>4}  {:<16} {:<3} {} {}",
                e.fd, e.name, e.access, e.detail, extra
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(name: String, fd: i32, handle: Handle) -> handoff::Result<Entry> {
    let kind = handle.kind()?;
    let access = handle.access()?.short();
    let (size, seals) = match kind {
        Kind::SharedMemory { size, seals } => (Some(size), Some(seals.to_string())),
        _ => (None, None),
    };
    let address = match kind {
        Kind::Socket { family, .. } => socket_address(&handle, family),
        _ => None,
    };
    let startup_payload_bytes = if name == handoff::startup::NAME {
        let data = StartupData::open(handle)?;
        Some(data.bytes().len() as u64)
    } else {
        None
    };
    Ok(Entry {
        name,
        fd,
        kind: kind.name_of(),
        detail: kind.to_string(),
        access,
        size,
        seals,
        address,
        startup_payload_bytes,
    })
}

/// The socket's local address, read through std on a duplicate.
fn socket_address(handle: &Handle, family: SocketFamily) -> Option<String> {
    let dup = handle.try_clone().ok()?;
    match family {
        SocketFamily::Inet | SocketFamily::Inet6 => std::net::TcpListener::from(dup)
            .local_addr()
            .ok()
            .map(|a| a.to_string()),
        SocketFamily::Unix => {
            let addr = std::os::unix::net::UnixListener::from(dup)
                .local_addr()
                .ok()?;
            Some(match addr.as_pathname() {
                Some(p) => format!("unix:{}", p.display()),
                None => "unix:(unnamed)".to_owned(),
            })
        }
        _ => None,
    }
}
