//! Peer credentials in both Unix configurations: the pid, uid and gid the
//! kernel recorded at connect time (`SO_PEERCRED` here; `getpeereid` and
//! `LOCAL_PEERPID` on macOS, `LOCAL_PEERCRED` on FreeBSD, which CI only
//! compiles), and a process handle only where it is race-free: never in the
//! portable configuration, which holds processes by pid.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use handoff::{Channel, Listener};

#[test]
fn both_ends_of_a_pair_name_this_process() {
    without_leaks(|| {
        let (a, b) = Channel::pair().unwrap();
        for end in [&a, &b] {
            let creds = end.peer_credentials().unwrap();
            assert_eq!(creds.pid, std::process::id());
            assert_eq!(creds.uid, rustix::process::geteuid().as_raw());
            assert_eq!(creds.gid, rustix::process::getegid().as_raw());
            if cfg!(handoff_unix_portable) {
                assert!(creds.process.is_none(), "no pidfd in the portable form");
            }
        }
    });
}

#[test]
fn a_listener_sees_the_connecting_child() {
    const TEST: &str = "a_listener_sees_the_connecting_child";
    if let Some(path) = role() {
        let ch = Channel::connect(&path).unwrap();
        ch.send(b"hello", &[]).unwrap();
        let _ = ch.recv();
        return;
    }
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let listener = Listener::bind(&path).unwrap();
        let child = spawn_plain(TEST, path.to_str().unwrap());
        let ch = listener.accept().unwrap();
        let creds = ch.peer_credentials().unwrap();
        assert_eq!(creds.pid, child.id());
        assert_eq!(ch.recv().unwrap().bytes, b"hello");
        ch.send(b"bye", &[]).unwrap();
        assert_success(child);
        drop(creds);
    });
}
