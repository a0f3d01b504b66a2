//! Spawning, the Unix-only part: exactly descriptors 3.. and nothing else
//! (counted in /proc), sources that collide with targets, hand-written
//! LISTEN_* values, and forged memfds. The portable part is in `spawn.rs`.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use handoff::{Access, AsHandle, Error, Expect, Handle, Inherited, Kind, KindName, StartupData};

#[test]
fn only_the_named_handles_reach_the_child() {
    if role().is_some() {
        // Before claiming: exactly stdio plus the three named ones.
        assert_eq!(open_fds(), vec![0, 1, 2, 3, 4, 5]);
        let mut inherited = Inherited::from_env().unwrap();
        assert_eq!(
            inherited.names().collect::<Vec<_>>(),
            ["config", "sock", "mem"]
        );
        assert!(std::env::var("LISTEN_FDS").is_err(), "variables are unset");
        let _config = claim_read_only_config(&mut inherited);
        let sock = inherited
            .take_checked("sock", &Expect::kind(KindName::Socket))
            .unwrap();
        assert!(matches!(
            sock.kind().unwrap(),
            Kind::Socket {
                listening: true,
                ..
            }
        ));
        inherited
            .take_checked("mem", &Expect::kind(KindName::SharedMemory).min_size(3))
            .unwrap();
        assert_claims_refused(&mut inherited, "mem");
        return;
    }
    without_leaks(|| {
        // 200 other handles, some of them deliberately inheritable.
        let dir = tempfile::tempdir().unwrap();
        let mut clutter: Vec<Handle> = Vec::new();
        for i in 0..200 {
            let h: Handle = match i % 4 {
                0 => std::fs::File::create(dir.path().join(format!("f{i}")))
                    .unwrap()
                    .into(),
                1 => std::os::unix::net::UnixStream::pair().unwrap().0.into(),
                2 => sealed_memfd(b"x"),
                _ => std::fs::File::open("/dev/null").unwrap().into(),
            };
            if i % 3 == 0 {
                rustix::io::fcntl_setfd(&h, rustix::io::FdFlags::empty()).unwrap();
            }
            clutter.push(h);
        }
        let config_path = dir.path().join("config");
        std::fs::write(&config_path, b"x=1").unwrap();
        let config = std::fs::File::open(&config_path).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mem = sealed_memfd(b"abc");
        run_child_with_handles(
            this_test!(),
            &[
                ("config", config.as_handle()),
                ("sock", listener.as_handle()),
                ("mem", mem.as_handle()),
            ],
        );
        drop(clutter);
    });
}

#[test]
fn sources_that_collide_with_targets_and_one_handle_twice() {
    match role().as_deref() {
        Some("launcher") => {
            // A fresh process: the next descriptors are 3 and 4, exactly the
            // targets. Hand 4 to slot 3 and 3 to slot 4.
            let dir = std::env::var("TEST_DIR").unwrap();
            let a = std::fs::File::open(format!("{dir}/a")).unwrap();
            let b = std::fs::File::open(format!("{dir}/b")).unwrap();
            assert_eq!(open_fds(), vec![0, 1, 2, 3, 4], "test precondition");
            run_child_with_handles(
                this_test!(),
                &[
                    ("first", b.as_handle()),
                    ("second", a.as_handle()),
                    ("again", a.as_handle()),
                ],
            );
        }
        Some(_) => {
            let mut inherited = Inherited::from_env().unwrap();
            let first = inherited.take("first").unwrap();
            let second = inherited.take("second").unwrap();
            let again = inherited.take("again").unwrap();
            let ino = |h: &Handle| rustix::fs::fstat(h).unwrap().st_ino;
            assert_eq!(ino(&second), ino(&again), "the same file under two names");
            assert_eq!(read_text(first), "B");
            assert_eq!(read_text(second), "A");
        }
        None => {
            let _serial = serial();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("a"), "A").unwrap();
            std::fs::write(dir.path().join("b"), "B").unwrap();
            let mut launcher = self_command(this_test!(), "launcher")
                .env("TEST_DIR", dir.path())
                .spawn()
                .unwrap();
            assert!(launcher.wait().unwrap().success());
        }
    }
}

/// Runs `script` under `sh`, which then `exec`s this test binary as `role`:
/// `$$` is the pid the test binary will have, so the script can write any
/// convention values, bogus ones included.
fn via_shell(test: &str, role: &str, script: &str) -> std::process::ExitStatus {
    let exe = std::env::current_exe().unwrap();
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{script} exec \"$0\" --exact {test} --nocapture --test-threads=1"
        ))
        .arg(exe)
        .env("HANDOFF_TEST_ROLE", role)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
}

#[test]
fn bogus_inherited_descriptors_are_named() {
    match role().as_deref() {
        Some("not-open") => {
            let e = Inherited::from_env().unwrap_err();
            assert!(
                matches!(&e, Error::BadInheritance { var: Some("LISTEN_FDS"), problem } if problem.contains("not open")),
                "{e}"
            );
        }
        Some("opened-here") => {
            // fd 3 exists, but this process opened it (close-on-exec).
            let _mine = std::fs::File::open("/dev/null").unwrap();
            let e = Inherited::from_env().unwrap_err();
            assert!(
                matches!(&e, Error::BadInheritance { var: Some("LISTEN_FDS"), problem } if problem.contains("close-on-exec")),
                "{e}"
            );
        }
        Some("wrong-kind") => {
            let mut inh = Inherited::from_env().unwrap();
            let e = inh
                .take_checked("data", &Expect::kind(KindName::File))
                .unwrap_err();
            assert!(matches!(e, Error::WrongKind { .. }), "{e}");
            let e = inh.take("data").unwrap_err();
            assert!(
                matches!(e, Error::AlreadyClaimed(_)),
                "claimed even when rejected: {e}"
            );
            let e = inh
                .take_checked("out", &Expect::kind(KindName::Pipe).access(Access::READ))
                .unwrap_err();
            assert!(matches!(e, Error::WrongAccess { .. }), "{e}");
            let e = inh
                .take_checked("mem", &Expect::kind(KindName::SharedMemory))
                .unwrap_err();
            assert!(
                matches!(e, Error::WrongKind { .. }),
                "a FIFO is not shared memory: {e}"
            );
        }
        Some("duplicate-names") => {
            let mut inh = Inherited::from_env().unwrap();
            assert!(matches!(inh.take("a"), Err(Error::BadInheritance { .. })));
            assert!(inh.take_index(1).is_ok());
        }
        Some("pid-mismatch") => {
            let e = Inherited::from_env().unwrap_err();
            assert!(
                matches!(&e, Error::BadInheritance { var: Some("LISTEN_PID"), problem } if problem.contains("another process")),
                "{e}"
            );
            assert!(
                std::env::var("LISTEN_FDS").is_ok(),
                "nothing claimed, nothing unset"
            );
        }
        Some(other) => panic!("unknown role {other}"),
        None => {
            let _serial = serial();
            let dir = tempfile::tempdir().unwrap();
            let fifo = dir.path().join("fifo");
            rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RWXU).unwrap();
            for (role, script) in [
                ("not-open", "export LISTEN_FDS=3 LISTEN_PID=$$;".to_string()),
                ("opened-here", "export LISTEN_FDS=1 LISTEN_PID=$$;".to_string()),
                (
                    "wrong-kind",
                    format!(
                        "exec 5<>{0} 3</dev/null 4>{0}; export LISTEN_FDS=3 LISTEN_PID=$$ LISTEN_FDNAMES=data:out:mem;",
                        fifo.display()
                    ),
                ),
                (
                    "duplicate-names",
                    "exec 3</dev/null 4</dev/null; export LISTEN_FDS=2 LISTEN_PID=$$ LISTEN_FDNAMES=a:a;".to_string(),
                ),
                ("pid-mismatch", "exec 3</dev/null; export LISTEN_FDS=1 LISTEN_PID=1;".to_string()),
            ] {
                let status = via_shell(this_test!(), role, &script);
                assert!(status.success(), "{role}: {status}");
            }
        }
    }
}

#[test]
fn startup_data_validation_rejects_forgeries() {
    without_leaks(|| {
        use rustix::fs::{MemfdFlags, SealFlags};
        let forge = |bytes: &[u8], seal: bool| -> Handle {
            let fd =
                rustix::fs::memfd_create("forged", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                    .unwrap();
            rustix::io::write(&fd, bytes).unwrap();
            if seal {
                rustix::fs::fcntl_add_seals(
                    &fd,
                    SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK,
                )
                .unwrap();
            }
            fd.into()
        };
        let good = handoff::startup::create(b"payload").unwrap();
        assert_eq!(
            StartupData::open(good.try_clone().unwrap())
                .unwrap()
                .bytes(),
            b"payload"
        );
        assert_eq!(
            good.access().unwrap(),
            Access::READ,
            "handed over read-only"
        );
        let mut header = vec![0u8; 64];
        assert_eq!(read_at(&good, &mut header, 0), header.len());

        let bad = |h: Handle| match StartupData::open(h) {
            Err(Error::BadStartupData(m)) => m,
            other => panic!("expected BadStartupData, got {other:?}"),
        };
        let mut valid = header.clone();
        valid.extend_from_slice(b"payload");
        assert!(bad(forge(&valid, false)).contains("sealed"));
        assert!(bad(forge(&valid[..40], true)).contains("shorter"));
        let mut magic = valid.clone();
        magic[0] = b'X';
        assert!(bad(forge(&magic, true)).contains("magic"));
        let mut version = valid.clone();
        version[8] = 2;
        assert!(bad(forge(&version, true)).contains("version"));
        let mut long = valid.clone();
        long[16] = 200;
        assert!(bad(forge(&long, true)).contains("payload bytes"));
        let mut reserved = valid.clone();
        reserved[40] = 1;
        assert!(bad(forge(&reserved, true)).contains("reserved"));
        let data = StartupData::open(forge(&valid, true)).unwrap();
        assert!(matches!(data.value::<u32>(), Err(Error::BadStartupData(_))));
        drop(data);
        let (r, _w) = std::io::pipe().unwrap();
        assert!(matches!(
            StartupData::open(r.into()),
            Err(Error::WrongKind { .. })
        ));
    });
}

/// The zombies among this process's children (`/proc/<tid>/children`).
fn zombie_children() -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path().join("children");
        let Ok(list) = std::fs::read_to_string(path) else {
            continue;
        };
        for pid in list.split_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            if stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            {
                out.push(pid.parse().unwrap());
            }
        }
    }
    out
}

#[test]
fn exec_failures_are_reported_and_the_child_reaped() {
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let not_executable = dir.path().join("data.txt");
        std::fs::write(&not_executable, b"not a program").unwrap();
        let file = null_file();
        for program in [not_executable.as_path(), dir.path()] {
            let err = handoff::Command::new(program)
                .handle("null", &file)
                .startup_data(b"never read")
                .spawn()
                .expect_err("exec must fail");
            match err {
                Error::Io { source, .. } => assert_eq!(
                    source.kind(),
                    std::io::ErrorKind::PermissionDenied,
                    "{program:?}: {source}"
                ),
                other => panic!("{program:?}: {other:?}"),
            }
        }
        assert_eq!(zombie_children(), Vec::<u32>::new());
    });
}

#[test]
fn standard_streams_and_working_directory() {
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let err_path = dir.path().join("err");
        let err_file = std::fs::File::create(&err_path).unwrap();
        let mut child = handoff::Command::new("sh")
            .args([
                "-c",
                "pwd; cat; echo to-stderr >&2; ls /proc/self/fd | wc -l >&2",
            ])
            .current_dir(dir.path())
            .stdin(handoff::spawn::Stdio::piped())
            .stdout(handoff::spawn::Stdio::piped())
            .stderr(err_file)
            .spawn()
            .unwrap();
        let stdin = child.take_stdin().expect("piped stdin");
        let stdout = child.take_stdout().expect("piped stdout");
        assert!(child.take_stderr().is_none(), "stderr went to a file");
        let mut stdin = std::fs::File::from(std::os::fd::OwnedFd::from(stdin));
        std::io::Write::write_all(&mut stdin, b"through the pipe\n").unwrap();
        drop(stdin);
        let out = read_text(stdout);
        assert!(child.wait().unwrap().success());
        let here = dir.path().canonicalize().unwrap();
        assert_eq!(out, format!("{}\nthrough the pipe\n", here.display()));
        // stdio, plus the directory `ls` reads: nothing else leaked in.
        let err = std::fs::read_to_string(&err_path).unwrap();
        assert_eq!(err, "to-stderr\n4\n");
    });
}

#[test]
fn signals_start_at_their_defaults() {
    let _serial = serial();
    // The test process ignores SIGPIPE (the Rust runtime does) and catches
    // SIGUSR1; the spawn itself blocks every signal around the clone. The
    // child must see none of it.
    let caught = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, caught).unwrap();
    let leaks = LeakCheck::new();
    let status_of = |mut child: handoff::Child| {
        let status = read_text(child.take_stdout().unwrap());
        assert!(child.wait().unwrap().success());
        status
    };
    let ours = status_of(
        handoff::Command::new("cat")
            .arg("/proc/self/status")
            .stdout(handoff::spawn::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let std_child = std::process::Command::new("cat")
        .arg("/proc/self/status")
        .output()
        .unwrap();
    let theirs = String::from_utf8(std_child.stdout).unwrap();
    let field = |status: &str, name: &str| -> String {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"));
        line.split_whitespace().nth(1).unwrap().to_owned()
    };
    // Nothing blocked, nothing caught; ignored only what this process
    // inherited ignored (exec keeps those), as std does. glibc's
    // posix_spawn, which std uses, sets libc's own signals (32, 33) to
    // ignored in every child; they are left out of the comparison.
    for name in ["SigBlk:", "SigCgt:"] {
        assert_eq!(field(&ours, name), "0000000000000000", "{name}");
    }
    let ignored =
        |status: &str| u64::from_str_radix(&field(status, "SigIgn:"), 16).unwrap() & !(0b11 << 31);
    assert_eq!(ignored(&ours), ignored(&theirs));
    assert_ne!(
        u64::from_str_radix(&field(&ours, "SigIgn:"), 16).unwrap() & (1 << (13 - 1)),
        1 << (13 - 1),
        "SIGPIPE (13) is back to its default"
    );
    leaks.assert();
}

#[test]
fn std_settings_through_command_ext() {
    if role().is_some() {
        let me = rustix::process::getpid();
        assert_eq!(rustix::process::getpgrp(), me, "its own process group");
        assert_eq!(open_fds(), vec![0, 1, 2, 3]);
        let mut inherited = Inherited::from_env().unwrap();
        let null = inherited.take("null").unwrap();
        assert_eq!(null.access().unwrap(), Access::READ);
        return;
    }
    without_leaks(|| {
        let file = null_file();
        let mut cmd = self_command(this_test!(), "child");
        handoff::spawn::unix::CommandExt::process_group(&mut cmd, 0);
        cmd.handle("null", &file);
        let mut child = cmd.spawn().unwrap();
        assert!(child.wait().unwrap().success());
    });
}

#[test]
fn relative_program_and_path_entries_are_seen_from_the_working_directory() {
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let script = sub.join("prog");
        std::fs::write(&script, "#!/bin/sh\necho ran in \"$(pwd)\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let here = sub.canonicalize().unwrap();
        // `./prog` relative to the child's directory, the directory given
        // relative to ours, and a relative PATH entry: each as std does.
        for (program, path) in [("./prog", None), ("prog", Some(".")), ("prog", Some(""))] {
            let mut cmd = handoff::Command::new(program);
            cmd.current_dir(&sub).stdout(handoff::spawn::Stdio::piped());
            if let Some(p) = path {
                cmd.env("PATH", p);
            }
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("{program} {path:?}: {e}"));
            let out = read_text(child.take_stdout().unwrap());
            assert!(child.wait().unwrap().success());
            assert_eq!(out, format!("ran in {}\n", here.display()));
        }
    });
}

#[test]
fn many_handles_in_reverse_under_a_tight_descriptor_limit() {
    const N: usize = 55;
    match role().as_deref() {
        // The grandchild: exactly stdio plus the N, in the right order.
        Some("grandchild") => {
            assert_eq!(open_fds(), (0..3 + N as i32).collect::<Vec<_>>());
            let mut inherited = Inherited::from_env().unwrap();
            for i in 0..N {
                let h = inherited.take(&format!("h{i}")).unwrap();
                // File i holds the one byte i.
                let mut byte = [0u8; 1];
                assert_eq!(read_at(&h, &mut byte, 0), 1, "h{i}");
                assert_eq!(byte[0], i as u8, "h{i} is the wrong handle");
            }
            return;
        }
        // The child: a limit of 64 descriptors, N handles at the lowest
        // numbers, passed in reverse so that every one collides.
        Some("child") => {
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            rustix::process::setrlimit(
                rustix::process::Resource::Nofile,
                rustix::process::Rlimit {
                    current: Some(64),
                    maximum: limit.maximum,
                },
            )
            .unwrap();
            let mut handles: Vec<Handle> = Vec::new();
            for i in 0..N {
                let f = tempfile::tempfile().unwrap();
                std::os::unix::fs::FileExt::write_all_at(&f, &[i as u8], 0).unwrap();
                handles.push(f.into());
            }
            let mut cmd = self_command(this_test!(), "grandchild");
            for (i, h) in handles.into_iter().enumerate().rev() {
                cmd.handle_owned(&format!("h{}", i), h);
            }
            let mut child = cmd.spawn().unwrap();
            assert!(child.wait().unwrap().success());
            return;
        }
        _ => {}
    }
    without_leaks(|| {
        let mut child = self_command(this_test!(), "child").spawn().unwrap();
        assert!(child.wait().unwrap().success());
    });
}

#[test]
fn spawning_from_many_threads_while_others_allocate() {
    without_leaks(|| {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A thread that keeps the allocator and its locks busy while
        // children share this process's memory until they exec.
        let churn = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    kept.push(vec![7u8; 4096]);
                    if kept.len() > 256 {
                        kept.clear();
                    }
                }
            })
        };
        let file = null_file();
        let spawners: Vec<_> = (0..4)
            .map(|t| {
                let file = file.try_clone().unwrap();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let mut child = handoff::Command::new("sh")
                            .args([
                                "-c",
                                "test \"$LISTEN_FDNAMES\" = \"$0\"",
                                &format!("t{t}i{i}"),
                            ])
                            .handle(&format!("t{t}i{i}"), &file)
                            .stdout(handoff::spawn::Stdio::null())
                            .spawn()
                            .unwrap();
                        assert!(child.wait().unwrap().success(), "thread {t} spawn {i}");
                    }
                })
            })
            .collect();
        for s in spawners {
            s.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
    });
}

#[test]
#[allow(unsafe_code)]
fn a_pre_exec_hook_runs_in_the_child_and_its_error_fails_the_spawn() {
    use handoff::spawn::unix::CommandExt;
    without_leaks(|| {
        let file = null_file();
        let mut cmd = handoff::Command::new("/bin/true");
        cmd.handle("null", &file);
        let refuse = || Err(std::io::Error::from(rustix::io::Errno::ACCESS));
        // SAFETY: the hook makes no call at all, so it is async-signal-safe.
        unsafe { cmd.pre_exec(refuse) };
        let e = cmd.spawn().unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::ACCESS.raw_os_error()),
            "{e:?}"
        );
    });
}
