//! `handoff ls [PID] [--json]`: every open handle of a process.
//!
//! Everything is read from `/proc` without taking the handles: the
//! `/proc/PID/fd/N` link names the object, `/proc/PID/fdinfo/N` gives the
//! open flags (access, close-on-exec) and a pidfd's pid, `stat` through the
//! link gives the file type, and `/proc/PID/net/*` tables name sockets by
//! inode. Only shared memory is opened (read-only, through the link) to
//! read its seals, which nothing in `/proc` shows. That is a handful of
//! system calls per handle, so 10,000 handles list in well under a second.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::FileTypeExt;
use std::process::ExitCode;

use handoff::{Handle, Kind, KindName};
use serde::Serialize;

use crate::Failure;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The process [default: this handoff process, i.e. what its caller let it inherit].
    #[arg(value_parser = crate::args::pid, allow_negative_numbers = true)]
    pid: Option<u32>,
    /// Print one JSON object per handle per line, with fields fd, kind, access, cloexec, target.
    #[arg(long)]
    json: bool,
}

/// One handle. The kind names are the library's (`KindName`).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Entry {
    fd: u32,
    kind: KindName,
    access: &'static str,
    cloexec: bool,
    target: String,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Failure> {
    let pid = args.pid.unwrap_or_else(std::process::id);
    let entries = list(pid)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let written = if args.json {
        write_json(&mut out, &entries)
    } else {
        write_table(&mut out, &entries)
    }
    .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `handoff ls | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Failure::new(1, format!("writing the listing: {e}"))),
    }
}

fn write_table(out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    writeln!(
        out,
        "{:>5}  {:<13}  {:<6}  {:<7}  TARGET",
        "FD", "KIND", "ACCESS", "CLOEXEC"
    )?;
    for e in entries {
        let cloexec = if e.cloexec { "yes" } else { "no" };
        writeln!(
            out,
            "{:>5}  {:<13}  {:<6}  {:<7}  {}",
            e.fd, e.kind, e.access, cloexec, e.target
        )?;
    }
    Ok(())
}

fn write_json(out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    for e in entries {
        serde_json::to_writer(&mut *out, e).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Lists the handles of `pid`, in order of number.
pub(crate) fn list(pid: u32) -> Result<Vec<Entry>, Failure> {
    // The listing is collected and its directory closed before any handle
    // is examined, so when `pid` is this process the directory's own
    // descriptor is gone by then and drops out like any handle closed
    // meanwhile.
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| proc_error(pid, e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    let mut sockets = None;
    let mut entries = Vec::with_capacity(fds.len());
    for fd in fds {
        if let Some(entry) = describe(pid, fd, &mut sockets).map_err(|e| proc_error(pid, e))? {
            entries.push(entry);
        }
    }
    Ok(entries)
}

fn proc_error(pid: u32, e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::NotFound => Failure::new(1, format!("no such process: {pid}")),
        io::ErrorKind::PermissionDenied => Failure::new(
            1,
            format!(
                "not permitted: listing the handles of process {pid} needs ptrace-read rights over it \
                 (the same uid and the process dumpable, or CAP_SYS_PTRACE)"
            ),
        ),
        _ => Failure::new(1, format!("reading /proc/{pid}: {e}")),
    }
}

/// One handle, or `None` if it was closed while we looked.
fn describe(pid: u32, fd: u32, sockets: &mut Option<SocketTable>) -> io::Result<Option<Entry>> {
    let link_path = format!("/proc/{pid}/fd/{fd}");
    let link = match std::fs::read_link(&link_path) {
        Ok(l) => l.to_string_lossy().into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let info = match std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) {
        Ok(i) => i,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let flags = field(&info, "flags:")
        .and_then(|v| u32::from_str_radix(v, 8).ok())
        .unwrap_or(0);
    let access = access_of(flags);
    let (kind, target) = classify(pid, &link_path, link, &info, access, sockets);
    Ok(Some(Entry {
        fd,
        kind,
        access,
        cloexec: flags & O_CLOEXEC != 0,
        target,
    }))
}

// Octal values from fdinfo's `flags:` line (asm-generic, used by x86 and
// arm; the kernel prints the file's f_flags there).
const O_ACCMODE: u32 = 0o3;
const O_CLOEXEC: u32 = 0o2000000;
const O_PATH: u32 = 0o10000000;

fn access_of(flags: u32) -> &'static str {
    if flags & O_PATH != 0 {
        return "-";
    }
    match flags & O_ACCMODE {
        0 => "r",
        1 => "w",
        _ => "rw",
    }
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

/// `prefix[N]` → N.
fn bracketed(link: &str, prefix: &str) -> Option<u64> {
    link.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn classify(
    pid: u32,
    link_path: &str,
    link: String,
    info: &str,
    access: &'static str,
    sockets: &mut Option<SocketTable>,
) -> (KindName, String) {
    if let Some(inode) = bracketed(&link, "socket:") {
        let table = sockets.get_or_insert_with(|| SocketTable::load(pid));
        return (KindName::Socket, table.describe(inode));
    }
    if let Some(inode) = bracketed(&link, "pipe:") {
        let end = match access {
            "r" => "read end",
            "w" => "write end",
            _ => "both ends",
        };
        return (KindName::Pipe, format!("pipe inode {inode}, {end}"));
    }
    if link == "anon_inode:[pidfd]" || link.starts_with("pidfd:") {
        let target = match field(info, "Pid:") {
            Some("-1") => "exited process (reaped)".to_owned(),
            Some("0") => "process outside this pid namespace".to_owned(),
            Some(p) => format!("pid {p}"),
            None => "pidfd".to_owned(),
        };
        return (KindName::Process, target);
    }
    match link.as_str() {
        "anon_inode:[eventfd]" => {
            let count = field(info, "eventfd-count:").unwrap_or("?");
            return (KindName::Event, format!("eventfd, count {count}"));
        }
        "anon_inode:[timerfd]" => return (KindName::Timer, "timerfd".to_owned()),
        _ => {}
    }
    if let Some(rest) = link.strip_prefix("/memfd:") {
        let name = rest.strip_suffix(" (deleted)").unwrap_or(rest);
        return (KindName::SharedMemory, memfd(link_path, name));
    }
    if !link.starts_with('/') {
        return (KindName::Other, link);
    }
    // `stat` through the link reaches the object even if its path was
    // deleted or is not visible from here.
    let Ok(meta) = std::fs::metadata(link_path) else {
        return (KindName::Other, link);
    };
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        KindName::Directory
    } else if ft.is_file() && link.starts_with("/dev/shm/") {
        return (
            KindName::SharedMemory,
            format!("{link}, {} bytes", meta.len()),
        );
    } else if ft.is_file() {
        KindName::File
    } else if ft.is_fifo() {
        return (KindName::Pipe, format!("{link} (named pipe)"));
    } else if ft.is_char_device() && is_terminal_path(&link) {
        KindName::Terminal
    } else {
        KindName::Other
    };
    (kind, link)
}

fn is_terminal_path(path: &str) -> bool {
    path.starts_with("/dev/pts/")
        || path.starts_with("/dev/tty")
        || path == "/dev/console"
        || path == "/dev/ptmx"
}

/// A memfd's name, size and seals. The seals are only visible to
/// `F_GET_SEALS` on an open descriptor, so it is opened read-only through
/// the link (a new open of the same object, not the target's handle).
fn memfd(link_path: &str, name: &str) -> String {
    let opened = std::fs::File::open(link_path).map(Handle::from);
    match opened.as_ref().map(|h| h.kind()) {
        Ok(Ok(Kind::SharedMemory { size, seals })) if seals.is_empty() => {
            format!("memfd {name:?}, {size} bytes, no seals")
        }
        Ok(Ok(Kind::SharedMemory { size, seals })) => {
            format!("memfd {name:?}, {size} bytes, sealed {seals}")
        }
        _ => match std::fs::metadata(link_path) {
            Ok(m) => format!("memfd {name:?}, {} bytes, seals unknown", m.len()),
            Err(_) => format!("memfd {name:?}"),
        },
    }
}

/// Sockets of the target's network namespace, by inode.
struct SocketTable(HashMap<u64, String>);

impl SocketTable {
    fn load(pid: u32) -> Self {
        let mut map = HashMap::new();
        let read = |name: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/net/{name}")).unwrap_or_default()
        };
        unix_sockets(&read("unix"), &mut map);
        for (proto, v6) in [
            ("tcp", false),
            ("tcp6", true),
            ("udp", false),
            ("udp6", true),
        ] {
            inet_sockets(proto, v6, &read(proto), &mut map);
        }
        netlink_sockets(&read("netlink"), &mut map);
        SocketTable(map)
    }

    fn describe(&self, inode: u64) -> String {
        self.0
            .get(&inode)
            .cloned()
            .unwrap_or_else(|| format!("socket inode {inode}"))
    }
}

/// The rows of a `/proc/net` table, its header skipped: each row's
/// columns, and the ones at `at`; rows too short for those are passed over.
fn rows<const N: usize>(
    table: &str,
    at: [usize; N],
) -> impl Iterator<Item = (Vec<&str>, [&str; N])> + '_ {
    table.lines().skip(1).filter_map(move |line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let picked = at.map(|i| cols.get(i).copied());
        if picked.contains(&None) {
            return None;
        }
        Some((cols, picked.map(Option::unwrap_or_default)))
    })
}

/// `Num RefCount Protocol Flags Type St Inode [Path]`, numbers in hex
/// except the inode.
fn unix_sockets(table: &str, map: &mut HashMap<u64, String>) {
    const SO_ACCEPTCON: u32 = 0x10000;
    for (cols, [flags, ty, state, inode]) in rows(table, [3, 4, 5, 6]) {
        let Ok(inode) = inode.parse::<u64>() else {
            continue;
        };
        let ty = match ty {
            "0001" => "stream",
            "0002" => "datagram",
            "0005" => "seqpacket",
            _ => "other type",
        };
        let flags = u32::from_str_radix(flags, 16).unwrap_or(0);
        let state = if flags & SO_ACCEPTCON != 0 {
            "listening"
        } else if state == "03" {
            "connected"
        } else {
            "unconnected"
        };
        let mut text = format!("unix {ty} {state}");
        if let Some(path) = cols.get(7) {
            text.push(' ');
            text.push_str(path);
        }
        text.push_str(&format!(", inode {inode}"));
        map.insert(inode, text);
    }
}

/// `sl local_address rem_address st ... inode` with addresses as hex
/// words in the kernel's byte order.
fn inet_sockets(proto: &str, v6: bool, table: &str, map: &mut HashMap<u64, String>) {
    for (_, [local, remote, state, inode]) in rows(table, [1, 2, 3, 9]) {
        let (Ok(inode), Some(local)) = (inode.parse::<u64>(), address(local, v6)) else {
            continue;
        };
        let remote = address(remote, v6).filter(|r| !r.ends_with(":0"));
        let text = match (proto.starts_with("tcp"), state, remote) {
            (true, "0A", _) => format!("{proto} {local} (listening)"),
            (true, st, Some(r)) => format!("{proto} {local} -> {r} ({})", tcp_state(st)),
            (true, st, None) => format!("{proto} {local} ({})", tcp_state(st)),
            (false, _, Some(r)) => format!("{proto} {local} -> {r}"),
            (false, _, None) => format!("{proto} {local}"),
        };
        map.insert(inode, text);
    }
}

fn tcp_state(hex: &str) -> &'static str {
    match hex {
        "01" => "established",
        "02" => "syn-sent",
        "03" => "syn-received",
        "04" => "fin-wait-1",
        "05" => "fin-wait-2",
        "06" => "time-wait",
        "07" => "closed",
        "08" => "close-wait",
        "09" => "last-ack",
        "0B" => "closing",
        _ => "unknown state",
    }
}

/// `0100007F:1F90` → `127.0.0.1:8080`. The kernel prints each 32-bit word
/// of the (network-order) address as a native integer, so native byte
/// order gives the bytes back.
fn address(text: &str, v6: bool) -> Option<String> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    if v6 {
        let mut bytes = [0u8; 16];
        for i in 0..4 {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        Some(format!("[{}]:{port}", Ipv6Addr::from(bytes)))
    } else {
        Some(format!("{}:{port}", Ipv4Addr::from(word(0)?)))
    }
}

/// `sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode`.
fn netlink_sockets(table: &str, map: &mut HashMap<u64, String>) {
    for (_, [proto, port, inode]) in rows(table, [1, 2, 9]) {
        if let Ok(inode) = inode.parse::<u64>() {
            map.insert(
                inode,
                format!("netlink protocol {proto}, port {port}, inode {inode}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff::{PipeEnd, Seals, SocketFamily, SocketType};

    #[test]
    fn kind_names_are_the_librarys() {
        let kinds = [
            (Kind::File, "file"),
            (Kind::Directory, "directory"),
            (Kind::Pipe { end: PipeEnd::Read }, "pipe"),
            (
                Kind::Socket {
                    family: SocketFamily::Unix,
                    ty: SocketType::Stream,
                    listening: false,
                },
                "socket",
            ),
            (
                Kind::SharedMemory {
                    size: 0,
                    seals: Seals::NONE,
                },
                "shared-memory",
            ),
            (Kind::Event, "event"),
            (Kind::Process, "process"),
            (Kind::Timer, "timer"),
            (Kind::Terminal, "terminal"),
            (Kind::Other, "other"),
        ];
        for (kind, name) in kinds {
            assert_eq!(kind.name(), name);
        }
    }

    #[test]
    fn addresses_and_flags_decode() {
        assert_eq!(
            address("0100007F:1F90", false).as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            address("00000000000000000000000001000000:0050", true).as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(address("zz", false), None);
        assert_eq!(access_of(0o2000002), "rw");
        assert_eq!(access_of(0o100000), "r");
        assert_eq!(access_of(0o10000000), "-");
        assert_eq!(bracketed("socket:[123]", "socket:"), Some(123));
        assert_eq!(bracketed("socket:[x]", "socket:"), None);
    }
}
