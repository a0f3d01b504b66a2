//! One process hands another a file (restricted to read-only) and a sealed
//! memfd over a channel; the receiver checks what it got from the handles
//! themselves and prints it.
//!
//! Run: `cargo run -p handoff --example pass_handles`

use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use handoff::{Access, AsHandle, Channel, Handle, Kind, Seals};

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

    // Startup-style data in sealed anonymous shared memory.
    let memfd = sealed_memfd(b"configuration v1: threads=4")?;

    let (ours, theirs) = Channel::pair()?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--receiver")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(
            theirs.into_handle(),
        )))
        .spawn()?;
    println!(
        "sender   {}: handing over {} and a sealed memfd",
        std::process::id(),
        path.display()
    );
    ours.send(b"report + config", &[read_only.borrow(), memfd.borrow()])?;
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
    let channel =
        Channel::from_handle(Handle::from(std::io::stdin().as_fd().try_clone_to_owned()?))?;
    let creds = channel.peer_credentials()?;
    let msg = channel.recv()?;
    println!(
        "receiver {me}: message {:?} from pid {} uid {}",
        String::from_utf8_lossy(&msg.bytes),
        creds.pid,
        creds.uid
    );
    let [report, config]: [Handle; 2] = msg
        .handles
        .try_into()
        .map_err(|h: Vec<Handle>| format!("expected 2 handles, got {}", h.len()))?;

    // Never trust the sender's word: ask the kernel.
    let report = report.expect("file", Access::READ).map_err(|(e, _)| e)?;
    println!(
        "receiver {me}: handle {} is a {} with access {} (close-on-exec: {})",
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

    match config.kind()? {
        Kind::SharedMemory { size, seals } if seals.contains(Seals::IMMUTABLE) => {
            let mut buf = vec![0u8; size as usize];
            rustix_read_at(&config, &mut buf)?;
            println!(
                "receiver {me}: handle {} is shared memory, {size} bytes, seals {seals}: {:?}",
                config.raw(),
                String::from_utf8_lossy(&buf)
            );
        }
        other => return Err(format!("expected sealed shared memory, got {other}").into()),
    }
    channel.send(b"verified: read-only file and immutable memfd", &[])?;
    Ok(())
}

fn sealed_memfd(data: &[u8]) -> Result<Handle, Box<dyn std::error::Error>> {
    let file = std::fs::File::from(memfd()?);
    (&file).write_all(data)?;
    seal(&file)?;
    Ok(Handle::from(file))
}

fn memfd() -> std::io::Result<std::os::fd::OwnedFd> {
    Ok(rustix::fs::memfd_create(
        "handoff-example",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )?)
}

fn seal(file: &std::fs::File) -> std::io::Result<()> {
    use rustix::fs::SealFlags;
    Ok(rustix::fs::fcntl_add_seals(
        file,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )?)
}

fn rustix_read_at(h: &Handle, buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = rustix::io::pread(h, &mut buf[done..], done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(())
}
