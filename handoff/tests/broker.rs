//! The broker pattern across three real processes: A owns a file opened
//! read-write, the broker (this test process) moves it to B with read
//! access only, and B checks that the kernel refuses writes (`EBADF` on
//! Linux, `ERROR_ACCESS_DENIED` on Windows). Linux and Windows; on Windows
//! the broker can also move the handle from A's table straight into B's.
//! Not in the portable configuration, which cannot pull handles.
#![cfg(all(any(target_os = "linux", windows), not(handoff_unix_portable)))]

mod common;

use std::io::Write;

use common::*;
use handoff::{
    duplicate, Access, AsHandle, Channel, DupOptions, Duplicated, Handle, Kind, Process, Source,
    Target,
};

const CONTENTS: &[u8] = b"owned by A, readable by B\n";
const FILE_ENV: &str = "HANDOFF_TEST_FILE";

fn open_read_write() -> std::fs::File {
    open_rw(std::env::var(FILE_ENV).unwrap())
}

/// A: opens the file read-write, lets `offer` give the broker the means
/// to take it, and holds it until the broker is done.
fn role_a(offer: impl FnOnce(&Channel, &std::fs::File)) {
    let ch = parent_channel();
    let file = open_read_write();
    offer(&ch, &file);
    assert_eq!(ch.recv().unwrap().bytes, b"done");
}

/// B's checks: the handle reads the file and every write is refused.
fn check_read_only(file: Handle) {
    assert_eq!(file.kind().unwrap(), Kind::File);
    assert_eq!(file.access().unwrap(), Access::READ);
    assert_eq!(read_all(&file), CONTENTS);
    // EBADF on Unix (not open for writing), ERROR_ACCESS_DENIED on Windows.
    let refused = if cfg!(windows) { 5 } else { 9 };
    let mut f = std::fs::File::from(file);
    let e = f.write(b"overwrite").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(refused), "{e:?}");
    #[cfg(unix)]
    let e = std::os::unix::fs::FileExt::write_at(&f, b"overwrite", 0).unwrap_err();
    #[cfg(windows)]
    let e = std::os::windows::fs::FileExt::seek_write(&f, b"overwrite", 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(refused), "{e:?}");
}

/// B: receives the handle, reads it, and finds every write refused.
fn role_b() {
    let ch = parent_channel();
    let msg = ch.recv().unwrap();
    assert_eq!(msg.bytes, b"read this");
    let [file]: [Handle; 1] = msg.handles.try_into().unwrap();
    check_read_only(file);
    ch.send(b"verified", &[]).unwrap();
}

/// A's file as a source to duplicate from: A sends its number, the
/// broker pulls the handle out of A.
fn file_of_a<'a>(to_a: &Channel, process_a: &'a Process) -> Source<'a> {
    Source::Process {
        process: process_a,
        handle: parse_number(&to_a.recv().unwrap().bytes),
    }
}

/// Runs A and B, lets `broker` move the handle, and checks both children
/// and the file.
fn run_broker(test: &str, broker: impl FnOnce(&Channel, &Process, &Channel, &Process)) {
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.txt");
        std::fs::write(&path, CONTENTS).unwrap();
        let (to_a, a_end) = Channel::pair().unwrap();
        let (to_b, b_end) = Channel::pair().unwrap();
        let a = spawn_child_with(test, "a", a_end, &[(FILE_ENV, path.to_str().unwrap())]);
        let b = spawn_child(test, "b", b_end);
        // Race-free: A is our unreaped child, so its pid names only it.
        let process_a = Process::open(a.id()).unwrap();
        let process_b = Process::open(b.id()).unwrap();

        broker(&to_a, &process_a, &to_b, &process_b);

        assert_eq!(to_b.recv().unwrap().bytes, b"verified");
        to_a.send(b"done", &[]).unwrap();
        assert_success(a);
        assert_success(b);
        assert_eq!(std::fs::read(&path).unwrap(), CONTENTS, "nobody wrote");
    });
}

#[test]
fn broker_pulls_from_a_and_gives_b_read_only() {
    match role().as_deref() {
        // A only says which number its file has; the broker pulls it.
        Some("a") => {
            return role_a(|ch, file| {
                ch.send(number_of(file.as_handle()).as_bytes(), &[])
                    .unwrap();
            })
        }
        Some("b") => return role_b(),
        _ => {}
    }
    run_broker(this_test!(), |to_a, process_a, to_b, _| {
        let sent = duplicate(
            file_of_a(to_a, process_a),
            Target::Channel {
                channel: to_b,
                message: b"read this",
            },
            Some(Access::READ),
            DupOptions::default(),
        )
        .unwrap();
        assert!(matches!(sent, Duplicated::Sent), "{sent:?}");
    });
}

#[test]
fn broker_receives_from_a_and_forwards_read_only() {
    match role().as_deref() {
        Some("a") => return role_a(|ch, file| ch.send(b"mine", &[file.as_handle()]).unwrap()),
        Some("b") => return role_b(),
        _ => {}
    }
    run_broker(this_test!(), |to_a, _, to_b, _| {
        let mut msg = to_a.recv().unwrap();
        let file = msg.handles.pop().unwrap();
        assert_eq!(file.access().unwrap(), Access::READ_WRITE);
        // The broker keeps nothing: its read-write copy is closed once B's
        // read-only one is on its way (the leak check proves it).
        let sent = duplicate(
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
        assert!(matches!(sent, Duplicated::Sent), "{sent:?}");
    });
}

/// Windows only: the broker moves A's handle straight into B's table
/// (`DuplicateHandle` from A to B through this process, with
/// `DUPLICATE_CLOSE_SOURCE`): A's copy is gone, B owns a read-only one and
/// learns its value from the broker.
#[cfg(windows)]
#[test]
fn broker_moves_from_a_into_b_read_only() {
    use std::os::windows::io::IntoRawHandle;
    match role().as_deref() {
        Some("a") => {
            let ch = parent_channel();
            let me = Process::current().unwrap();
            let file = open_read_write();
            ch.send(number_of(file.as_handle()).as_bytes(), &[])
                .unwrap();
            assert_eq!(ch.recv().unwrap().bytes, b"done");
            // Asked the way another process would, by pulling a copy: Wine's
            // GetProcessHandleCount always says 0, so counting cannot tell,
            // and a freed value may already name something else.
            let gone = match me.pull_handle(file.as_handle().raw()) {
                Ok(h) => h.kind().unwrap() != Kind::File,
                Err(handoff::Error::NoSuchHandle { .. }) => true,
                Err(e) => panic!("{e:?}"),
            };
            assert!(gone, "the broker took our handle away");
            // Closed by the broker: give up the value without closing it.
            let _ = file.into_raw_handle();
            return;
        }
        Some("b") => {
            // B owns the pushed value; it takes it into a Handle by pulling
            // it out of itself with close_source (no unsafe code needed).
            let ch = parent_channel();
            let file = take_pushed(&ch);
            check_read_only(file);
            ch.send(b"verified", &[]).unwrap();
            return;
        }
        _ => {}
    }
    run_broker(this_test!(), |to_a, process_a, to_b, process_b| {
        let moved = duplicate(
            file_of_a(to_a, process_a),
            Target::Process(process_b),
            Some(Access::READ),
            DupOptions {
                close_source: true,
                inheritable: false,
            },
        )
        .unwrap();
        let Duplicated::Remote { pid, value } = moved else {
            panic!("expected Remote, got {moved:?}");
        };
        assert_eq!(pid, process_b.pid());
        to_b.send(value.to_string().as_bytes(), &[]).unwrap();
    });
}
