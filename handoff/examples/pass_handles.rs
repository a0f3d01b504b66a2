//! One process hands another a file (restricted to read-only) and sealed
//! startup-style data in anonymous shared memory over a channel; the
//! receiver checks what it got from the handles themselves and prints it.
//!
//! Run: `cargo run -p handoff --example pass_handles`

use std::io::{Read, Seek, Write};
use std::process::{Command, Stdio};

use handoff::{Access, AsHandle, Channel, Handle, KindName, Requirement, StartupData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("--receiver") {
        return receiver();
    }

    // A file we may read and write, handed over read-only.
    let dir = std::env::temp_dir().join(format!("handoff-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("report.txt");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    file.write_all(b"quarterly numbers: 4, 8, 15, 16, 23, 42\n")?;
    let read_only = file.as_handle().restrict(Access::READ)?;

    // Startup-style data in sealed (or, where the platform cannot seal,
    // read-only) anonymous shared memory.
    let config = handoff::startup::create(b"configuration v1: threads=4")?;

    let (ours, theirs) = Channel::pair()?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--receiver")
        .stdin(stdio(theirs.into_handle()))
        .spawn()?;
    println!(
        "sender   {}: handing over {} and startup data",
        std::process::id(),
        path.display()
    );
    ours.send(b"report + config", &[read_only.borrow(), config.borrow()])?;
    let reply = ours.recv()?;
    println!(
        "sender   {}: receiver says {:?}",
        std::process::id(),
        String::from_utf8_lossy(&reply.bytes)
    );
    let status = child.wait()?;
    std::fs::remove_dir_all(&dir)?;
    if !status.success() {
        return Err(format!("receiver failed: {status}").into());
    }
    Ok(())
}

fn receiver() -> Result<(), Box<dyn std::error::Error>> {
    let me = std::process::id();
    let channel = Channel::from_handle(stdin_handle()?)?;
    let msg = channel.recv()?;
    println!(
        "receiver {me}: message {:?}",
        String::from_utf8_lossy(&msg.bytes)
    );
    // Credentials are a Linux feature; elsewhere the error says why.
    match channel.peer_credentials() {
        Ok(c) => println!("receiver {me}: sent by pid {} uid {}", c.pid, c.uid),
        Err(e) => println!("receiver {me}: no peer credentials here: {e}"),
    }
    let [report, config]: [Handle; 2] = msg
        .handles
        .try_into()
        .map_err(|h: Vec<Handle>| format!("expected 2 handles, got {}", h.len()))?;

    // Never trust the sender's word: ask the kernel.
    let report = report
        .expect(Requirement::kind(KindName::File).at_least(Access::READ))
        .map_err(|(e, _)| e)?;
    println!(
        "receiver {me}: handle {:?} is a {} with access {} (close-on-exec: {})",
        report.raw(),
        report.kind()?,
        report.access()?.short(),
        !report.is_inheritable()?
    );
    let mut file = std::fs::File::from(report);
    let mut text = String::new();
    file.rewind()?;
    file.read_to_string(&mut text)?;
    print!("receiver {me}: contents: {text}");
    match file.write_all(b"tamper") {
        Err(e) => println!("receiver {me}: writing is refused by the kernel: {e}"),
        Ok(()) => return Err("the read-only handle accepted a write".into()),
    }

    // Kind, seals (or read-only access), magic, version and size are all
    // checked before a byte is trusted.
    let kind = config.kind()?;
    let data = StartupData::open(config)?;
    println!(
        "receiver {me}: {kind}: {:?}",
        String::from_utf8_lossy(data.bytes())
    );
    channel.send(b"verified: read-only file and immutable startup data", &[])?;
    Ok(())
}

/// The platform's owned handle for std's `Stdio`.
#[cfg(unix)]
fn stdio(h: Handle) -> Stdio {
    Stdio::from(std::os::fd::OwnedFd::from(h))
}

#[cfg(windows)]
fn stdio(h: Handle) -> Stdio {
    Stdio::from(std::os::windows::io::OwnedHandle::from(h))
}

/// A duplicate of this process's standard input.
fn stdin_handle() -> handoff::Result<Handle> {
    std::io::stdin().as_handle().try_clone_to_owned()
}
