//! Processes held by pidfd: opening, waiting, signalling, pulling handles
//! out of real child processes, and `duplicate`'s option rules.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use handoff::process::ExitStatus;
use handoff::{
    duplicate, Access, AsHandle, Channel, DupOptions, Error, Handle, Kind, Process, Source, Target,
};

const CONTENTS: &[u8] = b"held by the child\n";
const FILE_ENV: &str = "HANDOFF_TEST_FILE";

#[test]
fn open_self_by_pid_and_by_handle() {
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let me = Process::current().unwrap();
        assert_eq!(me.pid(), std::process::id());
        assert_eq!(me.handle().kind().unwrap(), Kind::Process);
        assert!(
            !me.handle().is_inheritable().unwrap(),
            "pidfds are close-on-exec"
        );

        let again = Process::open(std::process::id()).unwrap();
        assert_eq!(again.pid(), me.pid());

        let back = Process::from_handle(me.into_handle()).unwrap();
        assert_eq!(back.pid(), std::process::id(), "pid read back from fdinfo");

        assert!(
            matches!(back.try_wait(), Err(Error::InvalidArgument(_))),
            "no waiting for oneself"
        );
    }
    leaks.assert();
}

#[test]
fn process_handle_crosses_a_channel() {
    const TEST: &str = "process_handle_crosses_a_channel";
    if role().is_some() {
        let ch = parent_channel();
        let mut msg = ch.recv().unwrap();
        let parent = Process::from_handle(msg.handles.pop().unwrap()).unwrap();
        assert_eq!(parent.pid(), std::os::unix::process::parent_id());
        assert_eq!(
            parent.try_wait().unwrap(),
            None,
            "the parent is still running"
        );
        ch.send(b"ok", &[]).unwrap();
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let (ours, theirs) = Channel::pair().unwrap();
        let child = spawn_child(TEST, "child", theirs);
        let me = Process::current().unwrap();
        ours.send(b"me", &[me.handle()]).unwrap();
        assert_eq!(ours.recv().unwrap().bytes, b"ok");
        assert_success(child);
    }
    leaks.assert();
}

#[test]
fn wait_collects_a_childs_exit_code() {
    const TEST: &str = "wait_collects_a_childs_exit_code";
    if role().is_some() {
        let ch = parent_channel();
        ch.recv().unwrap();
        std::process::exit(7);
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let (ours, theirs) = Channel::pair().unwrap();
        let child = spawn_child(TEST, "child", theirs);
        // Race-free: our own child cannot be reaped (and its pid reused)
        // by anyone but us.
        let p = Process::open(child.id()).unwrap();
        assert_eq!(p.try_wait().unwrap(), None, "still waiting for the go");
        ours.send(b"go", &[]).unwrap();
        let status = p.wait().unwrap();
        assert_eq!(status, ExitStatus::Code(7));
        assert!(!status.success());
        // Reaped through the pidfd; a second wait finds nothing to collect.
        assert_eq!(p.wait().unwrap(), ExitStatus::Unknown);
        drop(child);
    }
    leaks.assert();
}

#[test]
fn kill_and_wait_report_the_signal() {
    const TEST: &str = "kill_and_wait_report_the_signal";
    if role().is_some() {
        let ch = parent_channel();
        let _ = ch.recv();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let (_ours, theirs) = Channel::pair().unwrap();
        let child = spawn_child(TEST, "child", theirs);
        let p = Process::open(child.id()).unwrap();
        assert!(matches!(p.signal(12345), Err(Error::InvalidArgument(_))));
        p.kill().unwrap();
        assert_eq!(p.wait().unwrap(), ExitStatus::Signal(9));
        assert!(matches!(p.kill(), Err(Error::NoSuchProcess { pid }) if pid == child.id()));
        drop(child);
    }
    leaks.assert();
}

#[test]
fn wait_for_a_process_that_is_not_our_child() {
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        // sh's child, not ours: the pidfd tells us it exited, not how.
        let mut sh = Command::new("sh")
            .args(["-c", "sleep 0.3 & echo $!; wait"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(sh.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        let p = Process::open(grandchild).unwrap();
        assert_eq!(p.wait().unwrap(), ExitStatus::Unknown);
        assert!(sh.wait().unwrap().success());
    }
    leaks.assert();
}

#[test]
fn pull_a_file_out_of_a_child() {
    const TEST: &str = "pull_a_file_out_of_a_child";
    if role().is_some() {
        let ch = parent_channel();
        let path = std::env::var(FILE_ENV).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        ch.send(file.as_raw_fd().to_string().as_bytes(), &[])
            .unwrap();
        assert_eq!(ch.recv().unwrap().bytes, b"done");
        drop(file);
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        std::fs::write(&path, CONTENTS).unwrap();
        let (ours, theirs) = Channel::pair().unwrap();
        let child = spawn_child_with(TEST, "child", theirs, &[(FILE_ENV, path.to_str().unwrap())]);
        let number: i32 = String::from_utf8(ours.recv().unwrap().bytes)
            .unwrap()
            .parse()
            .unwrap();
        let p = Process::open(child.id()).unwrap();

        let pulled = p.pull_handle(number).unwrap();
        assert_eq!(pulled.kind().unwrap(), Kind::File);
        assert_eq!(pulled.access().unwrap(), Access::READ_WRITE);
        assert!(
            !pulled.is_inheritable().unwrap(),
            "pulled handles are close-on-exec"
        );
        assert_eq!(read_all(&pulled), CONTENTS);
        drop(pulled);

        let narrowed = duplicate(
            Source::Process {
                process: &p,
                handle: number,
            },
            Target::Current,
            Some(Access::READ),
            DupOptions::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(narrowed.access().unwrap(), Access::READ);
        assert_eq!(read_all(&narrowed), CONTENTS);
        drop(narrowed);

        match p.pull_handle(9999) {
            Err(Error::NoSuchHandle { pid, handle: 9999 }) => assert_eq!(pid, child.id()),
            other => panic!("expected NoSuchHandle, got {other:?}"),
        }
        assert!(matches!(p.pull_handle(-1), Err(Error::InvalidArgument(_))));

        ours.send(b"done", &[]).unwrap();
        // The child closes the file, then exits. Exited but not yet reaped,
        // it has no descriptor table any more, which the library reports as
        // the process being gone, not the handle.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match p.pull_handle(number) {
                Ok(h) => drop(h),
                Err(Error::NoSuchHandle { .. }) => {}
                Err(Error::NoSuchProcess { pid }) => {
                    assert_eq!(pid, child.id());
                    break;
                }
                Err(e) => panic!("expected NoSuchProcess, got {e:?}"),
            }
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(p.wait().unwrap().success());
        assert!(
            matches!(p.pull_handle(number), Err(Error::NoSuchProcess { .. })),
            "reaped"
        );
        drop(child);
    }
    leaks.assert();
}

#[test]
fn bogus_pids_and_handles_are_typed_errors() {
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        assert!(matches!(Process::open(0), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            Process::open(u32::MAX),
            Err(Error::InvalidArgument(_))
        ));

        let mut gone = Command::new("true").spawn().unwrap();
        let pid = gone.id();
        gone.wait().unwrap();
        assert!(matches!(Process::open(pid), Err(Error::NoSuchProcess { pid: p }) if p == pid));

        // A thread id names a task but not a process.
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(rustix::thread::gettid().as_raw_nonzero().get() as u32)
                .unwrap();
            let _ = stop_rx.recv();
        });
        let tid = rx.recv().unwrap();
        assert!(matches!(Process::open(tid), Err(Error::InvalidArgument(_))));
        stop_tx.send(()).unwrap();
        t.join().unwrap();

        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        match Process::from_handle(Handle::from(file)) {
            Err(Error::WrongKind {
                actual: Kind::File, ..
            }) => {}
            other => panic!("expected WrongKind, got {other:?}"),
        }
    }
    leaks.assert();
}

#[test]
fn pulling_needs_ptrace_rights() {
    const TEST: &str = "pulling_needs_ptrace_rights";
    if role().is_some() {
        if rustix::process::getuid().is_root() {
            // Only this thread's credentials change; that is the thread
            // whose rights pidfd_getfd checks.
            rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(65534)).unwrap();
        }
        let parent = Process::open(std::os::unix::process::parent_id()).unwrap();
        match parent.pull_handle(0) {
            Err(Error::NotPermitted(why)) => assert!(why.contains("ptrace"), "{why}"),
            Ok(_) => eprintln!("skipped: same uid as the parent and no Yama restriction"),
            Err(e) => panic!("expected NotPermitted, got {e:?}"),
        }
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let (_ours, theirs) = Channel::pair().unwrap();
        assert_success(spawn_child(TEST, "child", theirs));
    }
    leaks.assert();
}

#[test]
fn close_source_and_inheritance_follow_the_table() {
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let exe = std::env::current_exe().unwrap();
        let open = || Handle::from(std::fs::File::open(&exe).unwrap());

        // Lent: the source stays open, close_source is refused.
        let h = open();
        let before = handoff::count_open_handles().unwrap();
        let close = DupOptions {
            close_source: true,
            ..DupOptions::default()
        };
        let err = duplicate(Source::Current(h.borrow()), Target::Current, None, close).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        let copy = duplicate(
            Source::Current(h.borrow()),
            Target::Current,
            None,
            DupOptions::default(),
        )
        .unwrap()
        .unwrap();
        assert_ne!(copy.raw(), h.raw());
        assert!(!copy.is_inheritable().unwrap());
        drop(copy);
        assert_eq!(handoff::count_open_handles().unwrap(), before);

        // Given with close_source: ours is closed once the duplicate exists.
        let narrowed = duplicate(Source::Owned(h), Target::Current, Some(Access::READ), close)
            .unwrap()
            .unwrap();
        assert_eq!(narrowed.access().unwrap(), Access::READ);
        assert_eq!(
            handoff::count_open_handles().unwrap(),
            before,
            "source closed, duplicate open"
        );
        drop(narrowed);

        // Given without close_source: refused (and, given, closed).
        let before = handoff::count_open_handles().unwrap();
        let err = duplicate(
            Source::Owned(open()),
            Target::Current,
            None,
            DupOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert_eq!(handoff::count_open_handles().unwrap(), before);

        // Another process: close_source is unsupported and nothing happens.
        let me = Process::current().unwrap();
        let h = open();
        let before = handoff::count_open_handles().unwrap();
        let err = duplicate(
            Source::Process {
                process: &me,
                handle: h.raw(),
            },
            Target::Current,
            None,
            close,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        assert_eq!(handoff::count_open_handles().unwrap(), before);

        // Inheritable into this process: close-on-exec cleared.
        let inherit = DupOptions {
            inheritable: true,
            ..DupOptions::default()
        };
        let heir = duplicate(Source::Current(h.borrow()), Target::Current, None, inherit)
            .unwrap()
            .unwrap();
        assert!(heir.is_inheritable().unwrap());
        drop(heir);

        // Over a channel: moved with reduced access; inheritable refused.
        let (a, b) = Channel::pair().unwrap();
        let to_b = Target::Channel {
            channel: &a,
            message: b"ro",
        };
        let err = duplicate(Source::Current(h.borrow()), to_b, None, inherit).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        let sent = duplicate(Source::Owned(h), to_b, Some(Access::READ), close).unwrap();
        assert!(sent.is_none());
        let msg = b.recv().unwrap();
        assert_eq!(msg.bytes, b"ro");
        assert_eq!(msg.handles.len(), 1);
        assert_eq!(msg.handles[0].access().unwrap(), Access::READ);
        assert_eq!(msg.handles[0].as_handle().kind().unwrap(), Kind::File);
    }
    leaks.assert();
}
