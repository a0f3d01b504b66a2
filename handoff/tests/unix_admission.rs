//! Who may connect: a listener that admits by uid or by a caller's check
//! drops a refused peer before reading a byte from it. The peers are real
//! processes; one switches to another uid (the tests run as root).
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use handoff::{Channel, Error, Listener};

const NOBODY: u32 = 65534;

#[test]
fn a_peer_of_another_uid_is_dropped_before_it_is_read() {
    if let Some(role) = role() {
        let (who, path) = role.split_once(':').unwrap();
        if who == "nobody" {
            // Per-thread on Linux: this thread connects as nobody, which is
            // what the kernel records for the peer.
            rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(NOBODY)).unwrap();
        }
        let ch = Channel::connect(path).unwrap();
        let sent = ch.send(b"let me in", &[]);
        match (who, ch.recv()) {
            ("nobody", Err(Error::Disconnected { .. })) => {}
            ("root", Ok(msg)) => assert_eq!(msg.bytes, b"welcome"),
            (who, other) => panic!("{who}: {other:?} (send: {sent:?})"),
        }
        return;
    }
    if !rustix::process::getuid().is_root() {
        panic!("this test switches a child to another uid and needs root");
    }
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("sock");
        {
            let listener = Listener::bind(&path).unwrap().allow_uids([0]);
            // Widen the file so the filesystem lets nobody connect: only the
            // listener's own rule stands in the way.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
            let outsider = spawn_plain(this_test!(), &format!("nobody:{}", path.display()));
            let insider_path = path.clone();
            let insider = std::thread::spawn(move || {
                // Only after the outsider is done, so accept() sees it first.
                assert_success(outsider);
                spawn_plain(this_test!(), &format!("root:{}", insider_path.display()))
            });
            let ch = listener.accept().unwrap();
            let creds = ch.peer_credentials().unwrap();
            assert_eq!(creds.uid, 0, "the refused peer never came out of accept");
            assert_eq!(ch.recv().unwrap().bytes, b"let me in");
            ch.send(b"welcome", &[]).unwrap();
            let insider = insider.join().unwrap();
            assert_eq!(creds.pid, insider.id());
            assert_success(insider);
            drop(creds);
        }
    });
}

#[test]
fn a_callers_check_sees_the_credentials() {
    if let Some(ch) = client_channel() {
        let _ = ch.send(b"hi", &[]);
        let _ = ch.recv();
        return;
    }
    with_listener(|listener, path| {
        let first = spawn_listener_client(this_test!(), path);
        // Refuse the first client by pid, admit the second; connections
        // wait in the backlog until accept applies the rule.
        let refused = first.id();
        // The portable configuration gives no process handle (it holds
        // processes by pid).
        let has_process =
            |c: &handoff::PeerCredentials| c.process.is_some() || cfg!(handoff_unix_portable);
        let listener = listener.admit_if(move |c| c.pid != refused && has_process(c));
        let second_path = path.to_path_buf();
        let second = std::thread::spawn(move || {
            assert_success(first);
            spawn_listener_client(this_test!(), &second_path)
        });
        let ch = listener.accept().unwrap();
        let second = second.join().unwrap();
        assert_eq!(ch.peer_credentials().unwrap().pid, second.id());
        ch.send(b"ok", &[]).unwrap();
        assert_success(second);
    });
}
