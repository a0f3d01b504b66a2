//! Processes held by handle (a pidfd on Linux, a process handle on
//! Windows): opening, waiting, killing, pulling handles out of real child
//! processes, pushing them in (Windows), and `duplicate`'s option rules.
//!
//! Every test here runs on Linux and on Windows unless it is marked
//! otherwise; other Unix systems have no pidfd (`Unsupported`), nor has the
//! portable configuration forced on Linux (`unix_process_by_pid.rs`).
#![cfg(all(any(target_os = "linux", windows), not(handoff_unix_portable)))]

mod common;

use std::time::{Duration, Instant};

use common::*;
use handoff::process::ExitStatus;
use handoff::{
    duplicate, Access, AsHandle, Channel, DupOptions, Duplicated, Error, Handle, Kind, Process,
    RawHandle, Source, Target,
};

const CONTENTS: &[u8] = b"held by the child\n";
const FILE_ENV: &str = "HANDOFF_TEST_FILE";

/// A number that is not open anywhere here, or a negative one.
fn raw_number(n: i32) -> RawHandle {
    #[cfg(unix)]
    {
        n
    }
    #[cfg(windows)]
    {
        n as isize as RawHandle
    }
}

fn open_read_write() -> std::fs::File {
    open_rw(std::env::var(FILE_ENV).unwrap())
}

/// Starts a child of `test` that opens a file holding `CONTENTS` (its path
/// in `FILE_ENV`) and tells us the file's number; returns our channel to
/// it, the child, the child as a process we can pull from, that number,
/// and the file's directory (removed on drop).
fn child_holding_a_file(
    test: &str,
) -> (
    Channel,
    std::process::Child,
    Process,
    RawHandle,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held");
    std::fs::write(&path, CONTENTS).unwrap();
    let (ours, theirs) = Channel::pair().unwrap();
    let child = spawn_child_with(test, "child", theirs, &[(FILE_ENV, path.to_str().unwrap())]);
    let number = parse_number(&ours.recv().unwrap().bytes);
    let process = Process::open(child.id()).unwrap();
    (ours, child, process, number, dir)
}

/// Whether `value` still names a file handle in `me` (this process),
/// asked the way another process would: by pulling a copy. Wine's
/// `GetProcessHandleCount` always says 0, so counting cannot tell, and a
/// freed value is soon reused (Wine hands out the lowest free one), so
/// "not open" is too strict: "not a file any more" is the test.
#[cfg(windows)]
fn names_a_file(me: &Process, value: RawHandle) -> bool {
    match me.pull_handle(value) {
        Ok(h) => h.kind().unwrap() == Kind::File,
        Err(Error::NoSuchHandle { .. }) => false,
        Err(e) => panic!("{e:?}"),
    }
}

/// The error the kernel gives a write through a read-only handle.
#[cfg(windows)]
fn refused_write(e: &std::io::Error) -> bool {
    // EBADF on Unix (the descriptor is not open for writing),
    // ERROR_ACCESS_DENIED on Windows.
    e.raw_os_error() == Some(if cfg!(windows) { 5 } else { 9 })
}

#[test]
fn open_self_by_pid_and_by_handle() {
    without_leaks(|| {
        let me = Process::current().unwrap();
        assert_eq!(me.pid(), std::process::id());
        assert_eq!(me.handle().kind().unwrap(), Kind::Process);
        assert!(
            !me.handle().is_inheritable().unwrap(),
            "process handles are close-on-exec"
        );

        let again = Process::open(std::process::id()).unwrap();
        assert_eq!(again.pid(), me.pid());

        let back = Process::from_handle(me.into_handle()).unwrap();
        assert_eq!(
            back.pid(),
            std::process::id(),
            "pid read back from the kernel"
        );

        assert!(
            matches!(back.try_wait(), Err(Error::InvalidArgument(_))),
            "no waiting for oneself"
        );
    });
}

#[test]
fn process_handle_crosses_a_channel() {
    if let Some(ch) = child_channel() {
        let mut msg = ch.recv().unwrap();
        let parent = Process::from_handle(msg.handles.pop().unwrap()).unwrap();
        assert_eq!(parent.pid().to_string().as_bytes(), msg.bytes);
        assert_eq!(
            parent.try_wait().unwrap(),
            None,
            "the parent is still running"
        );
        ch.send(b"ok", &[]).unwrap();
        return;
    }
    without_leaks(|| {
        let (ours, child) = spawn_child_on_channel(this_test!());
        let me = Process::current().unwrap();
        ours.send(me.pid().to_string().as_bytes(), &[me.handle()])
            .unwrap();
        assert_eq!(ours.recv().unwrap().bytes, b"ok");
        assert_success(child);
    });
}

/// What a wait sees of an exit it cannot collect itself: the exit code on
/// Windows (anyone with a handle reads it), nothing on Linux (the pidfd
/// tells that the process exited, not how).
fn code_on_windows_only(code: i32) -> ExitStatus {
    if cfg!(windows) {
        ExitStatus::Code(code)
    } else {
        ExitStatus::Unknown
    }
}

/// How a killed child ended: exit code 1 on Windows, SIGKILL on Unix.
fn killed() -> ExitStatus {
    if cfg!(windows) {
        ExitStatus::Code(1)
    } else {
        ExitStatus::Signal(9)
    }
}

#[test]
fn wait_collects_a_childs_exit_code() {
    if let Some(ch) = child_channel() {
        ch.recv().unwrap();
        std::process::exit(7);
    }
    without_leaks(|| {
        let (ours, child) = spawn_child_on_channel(this_test!());
        // Race-free: our own child cannot be reaped (and its pid reused)
        // by anyone but us.
        let p = Process::open(child.id()).unwrap();
        assert_eq!(p.try_wait().unwrap(), None, "still waiting for the go");
        ours.send(b"go", &[]).unwrap();
        let status = p.wait().unwrap();
        assert_eq!(status, ExitStatus::Code(7));
        assert!(!status.success());
        // Linux: reaped through the pidfd; a second wait finds nothing to
        // collect. Windows: any handle reads the code, as often as asked.
        let again = code_on_windows_only(7);
        assert_eq!(p.wait().unwrap(), again);
        drop(child);
    });
}

#[test]
fn kill_and_wait_report_how_it_ended() {
    if let Some(ch) = child_channel() {
        let _ = ch.recv();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    without_leaks(|| {
        let (_ours, theirs) = Channel::pair().unwrap();
        let child = spawn_child(this_test!(), "child", theirs);
        let p = Process::open(child.id()).unwrap();
        #[cfg(unix)]
        assert!(matches!(p.signal(12345), Err(Error::InvalidArgument(_))));
        p.kill().unwrap();
        let killed = killed();
        assert_eq!(p.wait().unwrap(), killed);
        assert!(matches!(p.kill(), Err(Error::NoSuchProcess { pid }) if pid == child.id()));
        drop(child);
    });
}

#[test]
fn wait_for_a_process_that_is_not_our_child() {
    match role().as_deref() {
        Some("grandchild") => std::process::exit(5),
        Some(_) => {
            // The child starts the grandchild, tells its pid, and reaps it
            // only after the test process has opened it.
            let ch = parent_channel();
            let mut grandchild = spawn_plain(this_test!(), "grandchild");
            ch.send(grandchild.id().to_string().as_bytes(), &[])
                .unwrap();
            assert_eq!(ch.recv().unwrap().bytes, b"opened");
            assert_eq!(grandchild.wait().unwrap().code(), Some(5));
            return;
        }
        None => {}
    }
    without_leaks(|| {
        let (ours, child) = spawn_child_on_channel(this_test!());
        let pid: u32 = String::from_utf8(ours.recv().unwrap().bytes)
            .unwrap()
            .parse()
            .unwrap();
        let p = Process::open(pid).unwrap();
        ours.send(b"opened", &[]).unwrap();
        // Linux: the pidfd tells us it exited, not how. Windows: the code
        // is anyone's to read.
        let status = code_on_windows_only(5);
        assert_eq!(p.wait().unwrap(), status);
        assert_success(child);
    });
}

#[test]
fn pull_a_file_out_of_a_child() {
    if let Some(ch) = child_channel() {
        let file = open_read_write();
        ch.send(number_of(file.as_handle()).as_bytes(), &[])
            .unwrap();
        assert_eq!(ch.recv().unwrap().bytes, b"done");
        drop(file);
        return;
    }
    without_leaks(|| {
        let (ours, child, p, number, _dir) = child_holding_a_file(this_test!());

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
        .into_handle()
        .unwrap();
        assert_eq!(narrowed.access().unwrap(), Access::READ);
        assert_eq!(read_all(&narrowed), CONTENTS);
        drop(narrowed);

        // A multiple of 4 (Windows ignores a value's low two bits) that a
        // fresh child has not opened.
        match p.pull_handle(raw_number(9996)) {
            Err(Error::NoSuchHandle { pid, handle: 9996 }) => assert_eq!(pid, child.id()),
            other => panic!("expected NoSuchHandle, got {other:?}"),
        }
        assert!(matches!(
            p.pull_handle(raw_number(-1)),
            Err(Error::InvalidArgument(_))
        ));

        ours.send(b"done", &[]).unwrap();
        // The child closes the file, then exits. Exited (a zombie on Linux,
        // a process object we still hold on Windows), it has no handle
        // table any more, which the library reports as the process being
        // gone, not the handle.
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
            "waited for"
        );
        drop(child);
    });
}

/// `DUPLICATE_CLOSE_SOURCE`: the handle leaves the child in the same step
/// as it arrives here.
#[cfg(windows)]
#[test]
fn pull_with_close_source_moves_the_handle_out() {
    use std::os::windows::io::IntoRawHandle;
    if let Some(ch) = child_channel() {
        let me = Process::current().unwrap();
        let file = open_read_write();
        assert!(names_a_file(&me, file.as_handle().raw()));
        ch.send(number_of(file.as_handle()).as_bytes(), &[])
            .unwrap();
        assert_eq!(ch.recv().unwrap().bytes, b"moved");
        assert!(
            !names_a_file(&me, file.as_handle().raw()),
            "the parent closed our handle as it took it"
        );
        // Ours is gone: giving it up without closing is the only right
        // thing to do with the value now.
        let _ = file.into_raw_handle();
        ch.send(b"ok", &[]).unwrap();
        return;
    }
    without_leaks(|| {
        let (ours, child, p, number, _dir) = child_holding_a_file(this_test!());
        let close = DupOptions {
            close_source: true,
            ..DupOptions::default()
        };
        let moved = duplicate(
            Source::Process {
                process: &p,
                handle: number,
            },
            Target::Current,
            Some(Access::READ),
            close,
        )
        .unwrap()
        .into_handle()
        .unwrap();
        assert_eq!(moved.access().unwrap(), Access::READ);
        assert_eq!(read_all(&moved), CONTENTS);
        // Wine hands the freed value to the next handle the child makes
        // (an event for its pending read, if it gets there after the
        // close), so "no longer a file" is the test, as in the child.
        match p.pull_handle(number) {
            Err(Error::NoSuchHandle { pid, .. }) => assert_eq!(pid, child.id()),
            Ok(h) if h.kind().unwrap() != Kind::File => {}
            other => panic!("the child's copy should be gone, got {other:?}"),
        }
        ours.send(b"moved", &[]).unwrap();
        assert_eq!(ours.recv().unwrap().bytes, b"ok");
        drop(moved);
        assert_success(child);
    });
}

/// `DuplicateHandle` into another process: the child learns the value
/// and takes the handle as its own (by pulling it out of itself with
/// close-source, which needs no unsafe code), read-only.
#[cfg(windows)]
#[test]
fn push_a_read_only_handle_into_a_child() {
    use std::io::Write;
    if let Some(ch) = child_channel() {
        let mine = take_pushed(&ch);
        assert_eq!(mine.kind().unwrap(), Kind::File);
        assert_eq!(mine.access().unwrap(), Access::READ);
        assert_eq!(read_all(&mine), CONTENTS);
        let mut file = std::fs::File::from(mine);
        let e = file.write(b"overwrite").unwrap_err();
        assert!(refused_write(&e), "{e:?}");
        ch.send(b"verified", &[]).unwrap();
        return;
    }
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pushed");
        std::fs::write(&path, CONTENTS).unwrap();
        let file = open_rw(&path);
        let (ours, child) = spawn_child_on_channel(this_test!());
        let p = Process::open(child.id()).unwrap();
        let pushed = duplicate(
            Source::Current(file.as_handle()),
            Target::Process(&p),
            Some(Access::READ),
            DupOptions::default(),
        )
        .unwrap();
        let Duplicated::Remote { pid, value } = pushed else {
            panic!("expected Remote, got {pushed:?}");
        };
        assert_eq!(pid, child.id());
        ours.send(value.to_string().as_bytes(), &[]).unwrap();
        assert_eq!(ours.recv().unwrap().bytes, b"verified");
        assert_success(child);
        assert_eq!(std::fs::read(&path).unwrap(), CONTENTS, "nobody wrote");
        drop(file);
    });
}

#[test]
fn bogus_pids_and_handles_are_typed_errors() {
    if role().is_some() {
        return;
    }
    without_leaks(|| {
        assert!(matches!(Process::open(0), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            Process::open(u32::MAX),
            Err(Error::InvalidArgument(_))
        ));

        // Linux: once reaped, the pid names nothing. Windows: once the last
        // handle to the exited process (std's) is closed.
        let mut gone = spawn_plain(this_test!(), "exit");
        let pid = gone.id();
        gone.wait().unwrap();
        drop(gone);
        match Process::open(pid) {
            Err(Error::NoSuchProcess { pid: p }) => assert_eq!(p, pid),
            // Windows frees a pid when the last handle to the exited
            // process is closed; Wine 8 keeps the exited process openable
            // after that. It can only be that process: check it is.
            #[cfg(windows)]
            Ok(p) => {
                assert_eq!(p.try_wait().unwrap(), Some(ExitStatus::Code(0)));
                eprintln!("note: exited process {pid} is still openable (Wine)");
            }
            other => panic!("expected NoSuchProcess, got {other:?}"),
        }
        // A pid far above any in use (Linux's pid_max is at most 2^22).
        let unused = 0x7fff_fffc;
        assert!(matches!(
            Process::open(unused),
            Err(Error::NoSuchProcess { pid }) if pid == unused
        ));

        // A thread id names a task but not a process (Windows: in the
        // backend's unit tests, since reading one needs unsafe code).
        #[cfg(target_os = "linux")]
        with_another_thread(|tid| {
            assert!(matches!(Process::open(tid), Err(Error::InvalidArgument(_))));
        });

        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        match Process::from_handle(Handle::from(file)) {
            Err(Error::WrongKind {
                actual: Kind::File, ..
            }) => {}
            other => panic!("expected WrongKind, got {other:?}"),
        }
    });
}

#[cfg(target_os = "linux")]
#[test]
fn pulling_needs_ptrace_rights() {
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
    without_leaks(|| {
        let (_ours, theirs) = Channel::pair().unwrap();
        assert_success(spawn_child(this_test!(), "child", theirs));
    });
}

#[test]
fn close_source_and_inheritance_follow_the_table() {
    without_leaks(|| {
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
        .into_handle()
        .unwrap();
        assert_ne!(copy.raw(), h.raw());
        assert!(!copy.is_inheritable().unwrap());
        drop(copy);
        assert_eq!(handoff::count_open_handles().unwrap(), before);

        // Given with close_source: ours is closed once the duplicate exists.
        let narrowed = duplicate(Source::Owned(h), Target::Current, Some(Access::READ), close)
            .unwrap()
            .into_handle()
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

        let me = Process::current().unwrap();
        let h = open();

        // Another process as the source with close_source, or as the
        // target: Linux can do neither, and nothing happens.
        #[cfg(unix)]
        {
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
            let err = duplicate(
                Source::Current(h.borrow()),
                Target::Process(&me),
                None,
                DupOptions::default(),
            )
            .unwrap_err();
            assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
            assert_eq!(handoff::count_open_handles().unwrap(), before);
        }
        // Windows does both: push into a process (here, this one), then
        // take it back with close_source, which leaves one handle.
        #[cfg(windows)]
        {
            let pushed = duplicate(
                Source::Current(h.borrow()),
                Target::Process(&me),
                Some(Access::READ),
                DupOptions {
                    inheritable: true,
                    ..DupOptions::default()
                },
            )
            .unwrap();
            let value = pushed.remote_value().unwrap() as i32 as isize as RawHandle;
            let back = duplicate(
                Source::Process {
                    process: &me,
                    handle: value,
                },
                Target::Current,
                None,
                close,
            )
            .unwrap()
            .into_handle()
            .unwrap();
            // The pushed value is closed as it is taken, and may be reused
            // for the copy at once (Wine does): the moves between
            // processes are tested with children.
            assert_eq!(back.access().unwrap(), Access::READ);
            assert_eq!(back.kind().unwrap(), Kind::File);
        }

        // Inheritable into this process: close-on-exec cleared.
        let inherit = DupOptions {
            inheritable: true,
            ..DupOptions::default()
        };
        let heir = duplicate(Source::Current(h.borrow()), Target::Current, None, inherit)
            .unwrap()
            .into_handle()
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
        assert!(matches!(sent, Duplicated::Sent), "{sent:?}");
        let msg = b.recv().unwrap();
        assert_eq!(msg.bytes, b"ro");
        assert_eq!(msg.handles.len(), 1);
        assert_eq!(msg.handles[0].access().unwrap(), Access::READ);
        assert_eq!(msg.handles[0].as_handle().kind().unwrap(), Kind::File);
    });
}

/// Peer credentials name the process at the other end: a listener's client
/// is the process that connected (its pid, and a process handle to it);
/// for `Channel::pair` it is the process that created the pair, even after
/// one end moved to a child (`SO_PEERCRED` on a socketpair, and a pipe's
/// recorded pids, both say the creator). uid and gid are numbers on Linux
/// and `u32::MAX` on Windows, where users are SIDs.
#[test]
fn peer_credentials_name_the_connecting_process() {
    if let Some(ch) = client_channel() {
        let creds = ch.peer_credentials().unwrap();
        assert_eq!(creds.pid, parent_pid_of_test(), "the listening process");
        ch.send(b"hi", &[]).unwrap();
        assert_eq!(ch.recv().unwrap().bytes, b"bye");
        return;
    }
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = if cfg!(windows) {
            format!(r"\\.\pipe\handoff-test-creds-{}", std::process::id()).into()
        } else {
            dir.path().join("sock")
        };
        {
            let listener = handoff::Listener::bind(&path).unwrap();
            let child = spawn_plain_with(
                this_test!(),
                &format!("client:{}", path.display()),
                &[(PARENT_ENV, &std::process::id().to_string())],
            );
            let ch = listener.accept().unwrap();
            let creds = ch.peer_credentials().unwrap();
            assert_eq!(creds.pid, child.id());
            if cfg!(windows) {
                assert_eq!((creds.uid, creds.gid), (u32::MAX, u32::MAX));
            }
            // Linux ≥ 6.5 gives a pidfd; Windows opens the peer by pid.
            if let Some(h) = creds.process {
                let p = Process::from_handle(h).unwrap();
                assert_eq!(p.pid(), child.id());
                assert_eq!(p.try_wait().unwrap(), None);
            } else if cfg!(windows) {
                panic!("Windows opens the peer's process");
            }
            assert_eq!(ch.recv().unwrap().bytes, b"hi");
            ch.send(b"bye", &[]).unwrap();
            assert_success(child);

            let (ours, theirs) = Channel::pair().unwrap();
            assert_eq!(ours.peer_credentials().unwrap().pid, std::process::id());
            assert_eq!(theirs.peer_credentials().unwrap().pid, std::process::id());
        }
    });
}

const PARENT_ENV: &str = "HANDOFF_TEST_PARENT_PID";

/// The test process's pid, as the parent passed it.
fn parent_pid_of_test() -> u32 {
    std::env::var(PARENT_ENV).unwrap().parse().unwrap()
}

#[test]
fn a_spawned_child_is_a_process_too() {
    match role().as_deref() {
        Some("five") => std::process::exit(5),
        Some(_) => {
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        None => {}
    }
    without_leaks(|| {
        // Given up after it exited: the Child does not reap it, so the
        // Process still reads how it ended.
        let child = self_command(this_test!(), "five").spawn().unwrap();
        let pid = child.id();
        #[cfg(target_os = "linux")]
        {
            use rustix::event::{poll, PollFd, PollFlags};
            let exit = child.exit_handle().unwrap();
            let mut fds = [PollFd::new(&exit, PollFlags::IN)];
            poll(&mut fds, None).unwrap();
        }
        let p = child.into_process().unwrap();
        assert_eq!(p.pid(), pid);
        assert_eq!(p.wait().unwrap(), ExitStatus::Code(5));

        // Killed through a Process, reaped through the Child: one status
        // type on both sides.
        let mut child = self_command(this_test!(), "sleep").spawn().unwrap();
        let p = child.process().unwrap();
        assert_eq!(p.pid(), child.id());
        p.kill().unwrap();
        let killed = killed();
        assert_eq!(child.wait().unwrap(), killed);
    });
}

#[test]
fn a_process_converts_to_and_from_its_handle() {
    without_leaks(|| {
        let me = Process::current().unwrap();
        let pid = me.pid();
        let again = Process::try_from(Handle::from(me)).unwrap();
        assert_eq!(again.pid(), pid);
        #[cfg(unix)]
        let again = Process::try_from(std::os::fd::OwnedFd::from(again)).unwrap();
        #[cfg(windows)]
        let again = Process::try_from(std::os::windows::io::OwnedHandle::from(again)).unwrap();
        assert_eq!(again.pid(), pid);
        let e = Process::try_from(Handle::from(null_file())).unwrap_err();
        assert!(matches!(e, Error::WrongKind { .. }), "{e:?}");
    });
}
