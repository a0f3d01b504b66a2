//! Restart state of a given size handed to a new process, against copying
//! the same bytes once through a pipe, in the same run.
//!
//! ```sh
//! cargo run --release -p handoff --example state_transfer -- 1024   # MiB
//! ```
//!
//! * **state**: `restart::state::create` (one write into sealed shared
//!   memory, CRC-32 over it), the handle passed to a child that validates
//!   it with `State::open` (seals, headers, CRC-32 over every byte, read in
//!   place) and prints its length.
//! * **pipe**: the child reads the same bytes from a pipe into a buffer
//!   allocated up front and prints the length.
//!
//! The clock runs from "the parent starts" to "the parent has read the
//! child's line". Best of three for each.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use handoff::restart::state::{self, State};
use handoff::spawn::Stdio;
use handoff::{Child, Command, Handle, Inherited};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child-state") => return child_state(),
        Some("child-pipe") => return child_pipe(args[2].parse()?),
        _ => {}
    }
    let mib: usize = args.get(1).map_or(Ok(1024), |a| a.parse())?;
    let len = mib << 20;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut best_state = Duration::MAX;
    let mut best_pipe = Duration::MAX;
    for _ in 0..3 {
        best_state = best_state.min(via_state(&data)?);
        best_pipe = best_pipe.min(via_pipe(&data)?);
    }
    let gbps = |d: Duration| len as f64 / d.as_secs_f64() / 1e9;
    println!("bytes\tstate_ms\tstate_GBps\tpipe_ms\tpipe_GBps");
    println!(
        "{len}\t{:.1}\t{:.2}\t{:.1}\t{:.2}",
        best_state.as_secs_f64() * 1e3,
        gbps(best_state),
        best_pipe.as_secs_f64() * 1e3,
        gbps(best_pipe)
    );
    Ok(())
}

fn line(out: Handle) -> Result<usize> {
    let mut s = String::new();
    BufReader::new(std::fs::File::from(out)).read_line(&mut s)?;
    Ok(s.trim().parse()?)
}

/// Waits for the child's count of the bytes it took (`what` it did with
/// them), stops the clock started at `t`, reaps the child, and fails
/// unless it took all of `data`.
fn took_all(mut child: Child, t: Instant, data: &[u8], what: &str) -> Result<Duration> {
    let got = line(child.take_stdout().ok_or("no stdout")?)?;
    let elapsed = t.elapsed();
    child.wait()?;
    if got != data.len() {
        return Err(format!("child {what} {got} bytes").into());
    }
    Ok(elapsed)
}

fn via_state(data: &[u8]) -> Result<Duration> {
    let t = Instant::now();
    let st = state::create(1, data)?;
    let child = Command::new(std::env::current_exe()?)
        .arg("child-state")
        .handle("state", &st)
        .stdout(Stdio::piped())
        .spawn()?;
    drop(st);
    took_all(child, t, data, "validated")
}

fn via_pipe(data: &[u8]) -> Result<Duration> {
    let t = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["child-pipe", &data.len().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut input = std::fs::File::from(child.take_stdin().ok_or("no stdin")?);
    input.write_all(data)?;
    drop(input);
    took_all(child, t, data, "read")
}

fn child_state() -> Result<()> {
    let h = Inherited::from_env()?.take("state")?;
    let st = State::open(h, 1, u64::MAX)?;
    println!("{}", st.bytes().len());
    Ok(())
}

fn child_pipe(len: usize) -> Result<()> {
    let mut buf = vec![0u8; len];
    std::io::stdin().lock().read_exact(&mut buf)?;
    std::hint::black_box(&buf);
    println!("{}", buf.len());
    Ok(())
}
