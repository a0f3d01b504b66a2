//! The broker pattern across three real processes: A owns a file opened
//! read-write, the broker (this test process) moves it to B with read
//! access only, and B checks that the kernel refuses writes.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::AsRawFd;

use common::*;
use handoff::{
    duplicate, Access, AsHandle, Channel, DupOptions, Handle, Kind, Process, Source, Target,
};
use rustix::io::Errno;

const CONTENTS: &[u8] = b"owned by A, readable by B\n";
const FILE_ENV: &str = "HANDOFF_TEST_FILE";

fn open_read_write() -> std::fs::File {
    let path = std::env::var(FILE_ENV).unwrap();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// B: receives the handle, reads it, and finds every write refused.
fn role_b() {
    let ch = parent_channel();
    let msg = ch.recv().unwrap();
    assert_eq!(msg.bytes, b"read this");
    let [file]: [Handle; 1] = msg.handles.try_into().unwrap();
    assert_eq!(file.kind().unwrap(), Kind::File);
    assert_eq!(file.access().unwrap(), Access::READ);
    assert_eq!(read_all(&file), CONTENTS);
    assert_eq!(rustix::io::write(&file, b"overwrite"), Err(Errno::BADF));
    assert_eq!(rustix::io::pwrite(&file, b"overwrite", 0), Err(Errno::BADF));
    ch.send(b"verified", &[]).unwrap();
}

/// Runs A and B, lets `broker` move the handle, and checks both children
/// and the file.
fn run_broker(test: &str, broker: impl FnOnce(&Channel, &Process, &Channel)) {
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.txt");
        std::fs::write(&path, CONTENTS).unwrap();
        let (to_a, a_end) = Channel::pair().unwrap();
        let (to_b, b_end) = Channel::pair().unwrap();
        let a = spawn_child_with(test, "a", a_end, &[(FILE_ENV, path.to_str().unwrap())]);
        let b = spawn_child(test, "b", b_end);
        // Race-free: A is our unreaped child, so its pid names only it.
        let process_a = Process::open(a.id()).unwrap();

        broker(&to_a, &process_a, &to_b);

        assert_eq!(to_b.recv().unwrap().bytes, b"verified");
        to_a.send(b"done", &[]).unwrap();
        assert_success(a);
        assert_success(b);
        assert_eq!(std::fs::read(&path).unwrap(), CONTENTS, "nobody wrote");
    }
    leaks.assert();
}

#[test]
fn broker_pulls_from_a_and_gives_b_read_only() {
    const TEST: &str = "broker_pulls_from_a_and_gives_b_read_only";
    match role().as_deref() {
        Some("a") => {
            // A only says which number its file has; the broker pulls it.
            let ch = parent_channel();
            let file = open_read_write();
            ch.send(file.as_raw_fd().to_string().as_bytes(), &[])
                .unwrap();
            assert_eq!(ch.recv().unwrap().bytes, b"done");
            return;
        }
        Some("b") => return role_b(),
        _ => {}
    }
    run_broker(TEST, |to_a, process_a, to_b| {
        let number: i32 = String::from_utf8(to_a.recv().unwrap().bytes)
            .unwrap()
            .parse()
            .unwrap();
        let sent = duplicate(
            Source::Process {
                process: process_a,
                handle: number,
            },
            Target::Channel {
                channel: to_b,
                message: b"read this",
            },
            Some(Access::READ),
            DupOptions::default(),
        )
        .unwrap();
        assert!(sent.is_none());
    });
}

#[test]
fn broker_receives_from_a_and_forwards_read_only() {
    const TEST: &str = "broker_receives_from_a_and_forwards_read_only";
    match role().as_deref() {
        Some("a") => {
            let ch = parent_channel();
            let file = open_read_write();
            ch.send(b"mine", &[file.as_handle()]).unwrap();
            assert_eq!(ch.recv().unwrap().bytes, b"done");
            return;
        }
        Some("b") => return role_b(),
        _ => {}
    }
    run_broker(TEST, |to_a, _, to_b| {
        let mut msg = to_a.recv().unwrap();
        let file = msg.handles.pop().unwrap();
        assert_eq!(file.access().unwrap(), Access::READ_WRITE);
        // The broker keeps nothing: its read-write copy is closed once B's
        // read-only one is on its way (the leak check proves it).
        duplicate(
            Source::Owned(file),
            Target::Channel {
                channel: to_b,
                message: b"read this",
            },
            Some(Access::READ),
            DupOptions {
                close_source: true,
                inheritable: false,
            },
        )
        .unwrap();
    });
}
