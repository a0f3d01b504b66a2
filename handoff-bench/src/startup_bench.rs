//! `startup_data_1gib`: 1 GiB (256 MiB with `--quick`) handed to a child
//! at spawn, timed from "the parent starts" to "the child has validated
//! and read (summed) all of it".
//!
//! * **Baseline**, by hand: `memfd_create`, `write`, `F_ADD_SEALS`, the
//!   memfd as the stdin of a child started with `std::process::Command`;
//!   the child checks size and seals, `mmap`s it read-only and sums it.
//! * **handoff**: `Command::startup_data` in the parent; in the child
//!   `Inherited::from_env()?.startup_data()?` and a sum of `bytes()`.
//! * **ipc-channel**: `IpcSharedMemory::from_bytes` sent over a channel the
//!   child set up through a one-shot server; the child sums it.
//! * **Experiments** on what page faults cost: the raw child with
//!   `MAP_POPULATE` or with `pread` and no mapping; the raw parent with
//!   `fallocate` first, or writing through a mapping as ipc-channel does;
//!   handoff's child with `open_with(populate: false)`.
//!   Also `memcpy` of the same size in one process, into memory already
//!   faulted in (`memcpy_gbps`) and into a fresh allocation
//!   (`memcpy_fresh_gbps`).
//!
//! Every child prints its sum on stdout; the parent stops the clock when
//! it has read it, and checks it.

use std::io::{BufRead, BufReader, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcOneShotServer, IpcSender, IpcSharedMemory};
use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};

use crate::benches::{Bench, Config};
use crate::entrants::Side;
use crate::job::{self, Guard, Job, RawRead};
use crate::mapping;
use crate::proc::{self, Role};
use crate::report::{Entry, Row};
use crate::stats::{self, Better, Figure};
use crate::with_ipc_channel;
use crate::Result;

/// Repetitions at most (the full run's 9 would take a minute and a half).
const REPS: usize = 5;

/// How the parent fills the raw baseline's memfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// `write` from the start (the file grows as it goes).
    Write,
    /// `fallocate` the whole size, then `write`.
    FallocateWrite,
    /// `ftruncate`, then a copy through a writable shared mapping (what
    /// ipc-channel does).
    Mapping,
}

#[derive(Debug, Clone, Copy)]
enum How {
    Raw(Fill, RawRead),
    Handoff { populate: Option<bool> },
    IpcChannel,
}

struct Entrant {
    side: Side,
    label: &'static str,
    how: How,
}

fn entrants() -> Vec<Entrant> {
    let e = |side, label, how| Entrant { side, label, how };
    // The raw variants measured for the analysis only.
    let raw = |label, fill, read| e(Side::Experiment, label, How::Raw(fill, read));
    vec![
        e(
            Side::Baseline,
            "raw write, mmap",
            How::Raw(Fill::Write, RawRead::Map),
        ),
        e(Side::Handoff, "handoff", How::Handoff { populate: None }),
        e(Side::IpcChannel, "ipc-channel", How::IpcChannel),
        raw("raw write, mmap POPULATE", Fill::Write, RawRead::Populate),
        raw(
            "raw fallocate+write, mmap POPULATE",
            Fill::FallocateWrite,
            RawRead::Populate,
        ),
        raw(
            "raw write via mapping, mmap POPULATE",
            Fill::Mapping,
            RawRead::Populate,
        ),
        raw("raw write, pread", Fill::Write, RawRead::Read),
        e(
            Side::Experiment,
            "handoff open_with(populate=false)",
            How::Handoff {
                populate: Some(false),
            },
        ),
    ]
}

/// Runs `startup_data_1gib`.
pub fn run(bench: &Bench, cfg: &Config) -> Result<Row> {
    let total = usize::try_from(cfg.bulk_total)?;
    // Filled so that no page is the shared zero page.
    let pattern: Vec<u8> = (0..251 * 4096).map(|i| (i % 251) as u8).collect();
    let mut data = vec![0u8; total];
    for chunk in data.chunks_mut(pattern.len()) {
        chunk.copy_from_slice(&pattern[..chunk.len()]);
    }
    let expected = checksum(&data);
    let entrants = entrants();
    // A gigabyte per entrant per repetition: five repetitions are enough
    // for a best-of, and keep the full run's share near half a minute.
    let reps_wanted = cfg.reps.min(REPS);
    let mut reps: Vec<Vec<Figure>> = vec![Vec::with_capacity(reps_wanted); entrants.len()];
    let mut memcpy = Vec::with_capacity(reps_wanted);
    let mut memcpy_fresh = Vec::with_capacity(reps_wanted);
    {
        let mut faulted = vec![1u8; total];
        for _ in 0..reps_wanted {
            for (e, r) in entrants.iter().zip(&mut reps) {
                let elapsed = once(e.how, &data, expected)
                    .map_err(|err| format!("{}: {}", e.label, crate::describe(err.as_ref())))?;
                r.push(gbps(total, elapsed));
            }
            let t = Instant::now();
            faulted.copy_from_slice(&data);
            std::hint::black_box(&mut faulted);
            memcpy.push(gbps(total, t.elapsed()));
            let t = Instant::now();
            let fresh = std::hint::black_box(data.to_vec());
            memcpy_fresh.push(gbps(total, t.elapsed()));
            drop(fresh);
        }
    }
    let entries = entrants
        .iter()
        .zip(&reps)
        .map(|(e, r)| Entry::best_of(e.side, e.label, r, Better::Higher))
        .collect::<Result<Vec<_>>>()?;
    let best = |v: &[Figure]| stats::best(v, Better::Higher).map_or(f64::NAN, |f| f.value);
    Ok(Row::new(bench, reps_wanted, entries)?
        .with_extra("memcpy_gbps", best(&memcpy))
        .with_extra("memcpy_fresh_gbps", best(&memcpy_fresh)))
}

fn gbps(bytes: usize, elapsed: Duration) -> Figure {
    let mut f = stats::rate(bytes as f64, elapsed);
    f.value /= 1e9;
    f
}

/// One hand-over, end to end; the sum is checked after the clock stops.
fn once(how: How, data: &[u8], expected: u64) -> Result<Duration> {
    let (elapsed, sum) = match how {
        How::Raw(fill, read) => raw(data, fill, read)?,
        How::Handoff { populate } => with_handoff(data, populate)?,
        How::IpcChannel => with_ipc_channel(data)?,
    };
    if sum != expected {
        return Err(format!("the child summed {sum:#x}, expected {expected:#x}").into());
    }
    Ok(elapsed)
}

fn raw(data: &[u8], fill: Fill, read: RawRead) -> Result<(Duration, u64)> {
    let t = Instant::now();
    let fd = rustix::fs::memfd_create(
        "hb-startup-raw",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let len = data.len() as u64;
    match fill {
        Fill::Write => write_all(fd.as_fd(), data)?,
        Fill::FallocateWrite => {
            rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, len)?;
            write_all(fd.as_fd(), data)?;
        }
        Fill::Mapping => {
            rustix::fs::ftruncate(&fd, len)?;
            mapping::write_through_mapping(fd.as_fd(), data)?;
        }
    }
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )?;
    let mut cmd = job::command(Role::Raw, &Job::StartupRaw(read), false)?;
    cmd.stdin(Stdio::from(fd)).stdout(Stdio::piped());
    let mut child = Guard::new(cmd.spawn()?, "startup raw");
    // The command holds the parent's copy of the memfd until dropped.
    drop(cmd);
    let out = child.get_mut().stdout.take().ok_or("no stdout")?;
    let sum = read_sum(OwnedFd::from(out))?;
    let elapsed = t.elapsed();
    child.wait()?;
    Ok((elapsed, sum))
}

fn with_handoff(data: &[u8], populate: Option<bool>) -> Result<(Duration, u64)> {
    let t = Instant::now();
    let mut cmd = job::handoff_command(Role::Handoff, &Job::StartupHandoff { populate }, false)?;
    cmd.stdout(handoff::spawn::Stdio::piped())
        .startup_data(data);
    let mut child = Guard::new(cmd.spawn()?, "startup handoff");
    let out = child.get_mut().take_stdout().ok_or("no stdout")?;
    let sum = read_sum(OwnedFd::from(out))?;
    let elapsed = t.elapsed();
    child.wait()?;
    Ok((elapsed, sum))
}

fn with_ipc_channel(data: &[u8]) -> Result<(Duration, u64)> {
    let t = Instant::now();
    let (server, name) = IpcOneShotServer::<IpcSender<IpcSharedMemory>>::new()?;
    let mut cmd = job::command(Role::IpcChannel, &Job::StartupIpc { name }, false)?;
    cmd.stdout(Stdio::piped());
    let mut child = Guard::new(cmd.spawn()?, "startup ipc-channel");
    let out = child.get_mut().stdout.take().ok_or("no stdout")?;
    let sender = with_ipc_channel::accept_while_alive(server, || child.has_exited())?;
    sender.send(IpcSharedMemory::from_bytes(data))?;
    let sum = read_sum(OwnedFd::from(out))?;
    let elapsed = t.elapsed();
    child.wait()?;
    Ok((elapsed, sum))
}

fn read_sum(out: OwnedFd) -> Result<u64> {
    let mut line = String::new();
    BufReader::new(std::fs::File::from(out)).read_line(&mut line)?;
    line.trim()
        .parse::<u64>()
        .map_err(|e| format!("child printed {line:?}: {e}").into())
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err("write wrote nothing".into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The wrapping sum of the little-endian 64-bit words of `bytes`, then of
/// any tail bytes: memory-bound, and the same over any split of `bytes`
/// at multiples of 8.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut blocks = bytes.chunks_exact(64);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = lane.wrapping_add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
    }
    let mut sum = lanes.iter().fold(0u64, |a, &b| a.wrapping_add(b));
    let mut words = blocks.remainder().chunks_exact(8);
    for word in &mut words {
        sum = sum.wrapping_add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
    }
    for &b in words.remainder() {
        sum = sum.wrapping_add(u64::from(b));
    }
    sum
}

fn print_sum(sum: u64) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{sum}")?;
    out.flush()?;
    Ok(())
}

/// The raw baseline's child: the sealed memfd is stdin.
pub fn child_raw(read: RawRead) -> Result<()> {
    let fd = proc::stdin_socket()?;
    let size = rustix::fs::fstat(&fd)?.st_size;
    let len = usize::try_from(size)?;
    let seals = rustix::fs::fcntl_get_seals(&fd)?;
    if !seals.contains(SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK) {
        return Err(format!("startup data not sealed: {seals:?}").into());
    }
    let sum = match read {
        RawRead::Map | RawRead::Populate => {
            let map = mapping::ReadOnly::map(fd.as_fd(), len, read == RawRead::Populate)?;
            checksum(map.as_slice())
        }
        RawRead::Read => {
            let mut buf = vec![0u8; 1 << 20];
            let mut sum = 0u64;
            let mut offset = 0u64;
            loop {
                let n = match rustix::io::pread(&fd, &mut buf, offset) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                };
                if n % 8 != 0 && offset + (n as u64) < size as u64 {
                    return Err("a short read not at a word boundary".into());
                }
                sum = sum.wrapping_add(checksum(&buf[..n]));
                offset += n as u64;
            }
            sum
        }
    };
    print_sum(sum)
}

/// handoff's child.
pub fn child_handoff(populate: Option<bool>) -> Result<()> {
    let mut inherited = handoff::Inherited::from_env()?;
    let data = match populate {
        None => inherited.startup_data()?,
        Some(populate) => handoff::StartupData::open_with(
            inherited.take(handoff::startup::NAME)?,
            if populate {
                handoff::startup::Populate::Now
            } else {
                handoff::startup::Populate::OnRead
            },
        )?,
    };
    print_sum(checksum(data.bytes()))
}

/// ipc-channel's child.
pub fn child_ipc(name: &str) -> Result<()> {
    let (tx, rx) = ipc::channel::<IpcSharedMemory>()?;
    IpcSender::<IpcSender<IpcSharedMemory>>::connect(name.to_owned())?.send(tx)?;
    let shared = rx.recv()?;
    print_sum(checksum(&shared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_the_same_over_word_aligned_splits() {
        let data: Vec<u8> = (0..10_003u32).map(|i| (i % 251) as u8).collect();
        let whole = checksum(&data);
        let (a, b) = data.split_at(4096);
        assert_eq!(whole, checksum(a).wrapping_add(checksum(b)));
        let naive = data
            .chunks(8)
            .map(|w| {
                let mut word = [0u8; 8];
                word[..w.len()].copy_from_slice(w);
                if w.len() == 8 {
                    u64::from_le_bytes(word)
                } else {
                    w.iter().map(|&b| u64::from(b)).sum()
                }
            })
            .fold(0u64, u64::wrapping_add);
        assert_eq!(whole, naive);
    }
}
