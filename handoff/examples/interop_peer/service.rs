//! The Rust side of interop.Files and the checks a Rust client makes of
//! any server of it; shared by `examples/interop_peer` and
//! `tests/python_interop.rs`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use handoff::rpc::{CallError, Context};
use handoff::{Access, AsHandle, BorrowedHandle, Handle, Kind, StartupData};

use super::shared::*;

pub type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

/// `kind access` of each handle, one per line: what the kernel says.
pub fn report(handles: &[Handle]) -> String {
    let mut out = String::new();
    for h in handles {
        let kind = h.kind().map(|k| k.name().to_owned()).unwrap_or_default();
        let access = match h.access() {
            Ok(a) if a == Access::READ_WRITE => "read_write",
            Ok(a) if a == Access::READ => "read",
            Ok(a) if a == Access::WRITE => "write",
            _ => "none",
        };
        out.push_str(&format!("{kind} {access}\n"));
    }
    out
}

// ───────────────────────────── RPC server ─────────────────────────────

#[derive(Default)]
pub struct Service {
    pub sessions: AtomicU32,
}

impl Files for Service {
    async fn write_file(&self, file: BorrowedHandle<'_>, text: String) -> Result<u64, Failure> {
        let mut f = std::fs::File::from(file.try_clone_to_owned().map_err(fail)?);
        f.write_all(text.as_bytes()).map_err(fail)?;
        Ok(text.len() as u64)
    }

    async fn read_pipe(&self, pipe: Option<BorrowedHandle<'_>>) -> Result<Option<String>, Failure> {
        let Some(pipe) = pipe else { return Ok(None) };
        let mut text = String::new();
        std::fs::File::from(pipe.try_clone_to_owned().map_err(fail)?)
            .read_to_string(&mut text)
            .map_err(fail)?;
        Ok(Some(text))
    }

    async fn signal_all(&self, events: Vec<BorrowedHandle<'_>>, add: u64) -> Result<u32, Failure> {
        for e in &events {
            rustix::io::write(e, &add.to_ne_bytes()).map_err(fail)?;
        }
        Ok(events.len() as u32)
    }

    async fn region(&self, text: String) -> Result<Handle, Failure> {
        handoff::startup::create(text.as_bytes()).map_err(fail)
    }

    async fn events(&self, count: u32) -> Result<Vec<Handle>, Failure> {
        use rustix::event::EventfdFlags;
        (0..count)
            .map(|i| {
                rustix::event::eventfd(i + 1, EventfdFlags::CLOEXEC)
                    .map(Handle::from)
                    .map_err(fail)
            })
            .collect()
    }

    async fn open_session(&self, name: String) -> Result<Context<Session>, Failure> {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        Ok(Context::new(Session {
            name,
            lines: Mutex::new(Vec::new()),
        }))
    }

    async fn log(&self, session: &Session, line: String) -> Result<(String, u32), Failure> {
        let mut lines = session.lines.lock().unwrap();
        lines.push(line);
        Ok((session.name.clone(), lines.len() as u32))
    }

    async fn refuse(&self, text: String) -> Result<u32, Failure> {
        Err(Failure(text))
    }
}

// ───────────────────────────── RPC client ─────────────────────────────

fn check(what: &str, ok: bool) -> Fallible<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

pub fn rpc_client(path: &str) -> Fallible<()> {
    let client = FilesBlockingClient::connect(path)?;
    let dir = std::env::temp_dir().join(format!("handoff-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = calls(&client, &dir);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn calls(client: &FilesBlockingClient, dir: &std::path::Path) -> Fallible<()> {
    // One handle, write access.
    let path = dir.join("out.txt");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let n = client.write_file(&file, "from rust".into())?;
    check("write_file count", n == 9)?;
    check(
        "write_file contents",
        std::fs::read_to_string(&path)? == "from rust",
    )?;

    // An optional handle, present and absent.
    let (r, mut w) = std::io::pipe()?;
    w.write_all(b"piped")?;
    drop(w);
    check(
        "read_pipe some",
        client.read_pipe(Some(r.as_handle()))? == Some("piped".into()),
    )?;
    check("read_pipe none", client.read_pipe(None)?.is_none())?;

    // An array of handles.
    let events: Vec<Handle> = (0..3)
        .map(|_| rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).map(Handle::from))
        .collect::<Result<_, _>>()?;
    let borrowed: Vec<_> = events.iter().map(|e| e.as_handle()).collect();
    check("signal_all count", client.signal_all(&borrowed, 7)? == 3)?;
    for e in &events {
        let mut buf = [0u8; 8];
        rustix::io::read(e, &mut buf)?;
        check("signal_all counter", u64::from_ne_bytes(buf) == 7)?;
    }

    // Returned handles.
    let region = client.region("shared text".into())?;
    check(
        "region kind",
        matches!(region.kind()?, Kind::SharedMemory { .. }),
    )?;
    check(
        "region contents",
        StartupData::open(region)?.bytes() == b"shared text",
    )?;
    let got = client.events(4)?;
    check("events count", got.len() == 4)?;
    for (i, e) in got.iter().enumerate() {
        check("events kind", e.kind()? == Kind::Event)?;
        let mut buf = [0u8; 8];
        rustix::io::read(e, &mut buf)?;
        check("events counter", u64::from_ne_bytes(buf) == i as u64 + 1)?;
    }

    // A context.
    let session = client.open_session("rusty".into())?;
    check(
        "log 1",
        client.log(&session, "a".into())? == ("rusty".into(), 1),
    )?;
    check(
        "log 2",
        client.log(&session, "b".into())? == ("rusty".into(), 2),
    )?;
    client.close_context(session)?;

    // The application's error.
    match client.refuse("no way".into()) {
        Err(CallError::Application(Failure(text))) if text == "no way" => {}
        other => return Err(format!("refuse: {other:?}").into()),
    }
    // A wrong kind is refused by the server before the method runs.
    let (_r2, w2) = std::io::pipe()?;
    match client.write_file(&w2, "x".into()) {
        Err(CallError::Fault(_)) => {}
        other => return Err(format!("write_file with a pipe: {other:?}").into()),
    }
    Ok(())
}
