//! Processes held for waiting and killing, in both Unix configurations:
//! by pidfd on Linux, by pid and a watch on its exit in the portable one
//! (a kqueue on macOS and the BSDs, a `/proc/<pid>` directory on Linux),
//! which also refuses to pull a handle out of another process.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use handoff::process::ExitStatus;
use handoff::{Error, Process};

fn sleeper() -> handoff::spawn::Child {
    handoff::Command::new("sleep").arg("60").spawn().unwrap()
}

#[test]
fn a_child_is_waited_for_with_its_status() {
    without_leaks(|| {
        let child = handoff::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let process = child.into_process().unwrap();
        assert_eq!(process.wait().unwrap(), ExitStatus::Code(7));
        // Once reaped the answer stays that it exited.
        assert!(process.try_wait().unwrap().is_some());
    });
}

#[test]
fn a_running_child_is_polled_then_killed() {
    without_leaks(|| {
        let process = sleeper().into_process().unwrap();
        assert_eq!(process.try_wait().unwrap(), None);
        process.kill().unwrap();
        assert_eq!(
            process.wait().unwrap(),
            ExitStatus::Signal(rustix::process::Signal::KILL.as_raw())
        );
        assert!(matches!(process.kill(), Err(Error::NoSuchProcess { .. })));
    });
}

#[test]
fn a_process_that_is_not_our_child_is_seen_to_exit() {
    without_leaks(|| {
        // sh starts sleep in the background and reports its pid: a
        // grandchild, which this process cannot reap.
        let mut sh = handoff::Command::new("sh")
            .args(["-c", "sleep 60 >/dev/null & echo $!"])
            .stdout(handoff::spawn::Stdio::piped())
            .spawn()
            .unwrap();
        let pid: u32 = read_text(sh.take_stdout().unwrap()).trim().parse().unwrap();
        assert!(sh.wait().unwrap().success());
        let grandchild = Process::open(pid).unwrap();
        assert_eq!(grandchild.try_wait().unwrap(), None);
        grandchild.kill().unwrap();
        // How it ended is for its parent (init, or a subreaper) to know.
        assert!(grandchild.wait().is_ok());
    });
}

#[test]
fn bad_pids_are_named() {
    without_leaks(|| {
        assert!(matches!(Process::open(0), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            Process::open(u32::MAX),
            Err(Error::InvalidArgument(_))
        ));
        // Above the kernel's pid_max (at most 2^22).
        assert!(matches!(
            Process::open(1 << 23),
            Err(Error::NoSuchProcess { .. })
        ));
        let me = Process::current().unwrap();
        assert!(matches!(me.wait(), Err(Error::InvalidArgument(_))));
    });
}

#[test]
fn a_thread_id_is_not_a_process() {
    without_leaks(|| {
        with_another_thread(|tid| {
            assert!(matches!(Process::open(tid), Err(Error::InvalidArgument(_))));
        });
    });
}

#[cfg(handoff_unix_portable)]
#[test]
fn pulling_a_handle_is_unsupported() {
    without_leaks(|| {
        let process = sleeper().into_process().unwrap();
        assert!(matches!(process.pull_handle(0), Err(Error::Unsupported(_))));
        assert!(matches!(
            Process::from_handle(process.handle().try_clone_to_owned().unwrap()),
            Err(Error::Unsupported(_))
        ));
        process.kill().unwrap();
        process.wait().unwrap();
    });
}
