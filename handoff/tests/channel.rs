//! Channels between real processes: handles and bytes in both directions,
//! splitting and reassembly, typed values, credentials, disconnects.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;

use common::*;
use handoff::{Access, AsHandle, Channel, Error, Handle, Kind, Listener, Seals};
use serde::{Deserialize, Serialize};

#[test]
fn file_and_sealed_memfd_cross_processes() {
    const TEST: &str = "file_and_sealed_memfd_cross_processes";
    if role().is_some() {
        let ch = parent_channel();
        let msg = ch.recv().unwrap();
        assert_eq!(msg.bytes, b"two handles");
        let [file, mem]: [Handle; 2] = msg.handles.try_into().unwrap();
        assert_eq!(file.kind().unwrap(), Kind::File);
        assert_eq!(file.access().unwrap(), Access::READ);
        assert!(
            !file.is_inheritable().unwrap(),
            "received handles are close-on-exec"
        );
        assert_eq!(read_all(&file), b"file contents\n");
        match mem.kind().unwrap() {
            Kind::SharedMemory { size, seals } => {
                assert_eq!(size, 5);
                assert!(seals.contains(Seals::IMMUTABLE));
            }
            other => panic!("expected shared memory, got {other}"),
        }
        assert_eq!(read_all(&mem), b"hello");
        ch.send(b"verified", &[]).unwrap();
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    std::fs::write(&path, b"file contents\n").unwrap();
    {
        let (ours, theirs) = Channel::pair().unwrap();
        let child = spawn_child(TEST, "child", theirs);
        let file = std::fs::File::open(&path).unwrap();
        let mem = sealed_memfd(b"hello");
        ours.send(b"two handles", &[file.as_handle(), mem.as_handle()])
            .unwrap();
        assert_eq!(ours.recv().unwrap().bytes, b"verified");
        assert_success(child);
    }
    leaks.assert();
}

#[test]
fn thousand_handles_and_ten_mib_in_one_message() {
    const TEST: &str = "thousand_handles_and_ten_mib_in_one_message";
    let payload: Vec<u8> = (0..10 << 20).map(|i: u32| (i % 251) as u8).collect();
    if role().is_some() {
        let ch = parent_channel();
        let msg = ch.recv().unwrap();
        assert_eq!(msg.handles.len(), 1000);
        assert!(msg.bytes == payload, "payload reassembled in order");
        for (i, h) in msg.handles.iter().enumerate() {
            let expected = if i % 2 == 0 { Kind::File } else { Kind::Event };
            assert_eq!(h.kind().unwrap(), expected, "handle {i} kept its place");
        }
        // Send them all back, moved.
        let mut handles = msg.handles;
        ch.send_moved(b"back", &mut handles).unwrap();
        assert!(handles.is_empty());
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let (ours, theirs) = Channel::pair().unwrap();
        let child = spawn_child(TEST, "child", theirs);
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        let event = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
        let handles: Vec<_> = (0..1000)
            .map(|i| {
                if i % 2 == 0 {
                    file.as_handle()
                } else {
                    event.as_handle()
                }
            })
            .collect();
        ours.send(&payload, &handles).unwrap();
        let back = ours.recv().unwrap();
        assert_eq!(back.handles.len(), 1000);
        assert_eq!(back.handles[1].kind().unwrap(), Kind::Event);
        assert_success(child);
    }
    leaks.assert();
}

#[derive(Serialize, Deserialize)]
struct Job {
    name: String,
    input: Handle,
    outputs: Vec<Handle>,
    log: Option<Handle>,
    nested: Vec<(u64, Option<Handle>)>,
}

#[test]
fn typed_values_carry_handles_in_any_field() {
    const TEST: &str = "typed_values_carry_handles_in_any_field";
    if role().is_some() {
        let (tx, rx) = parent_channel().into_typed::<String, Job>();
        let job = rx.recv().unwrap();
        assert_eq!(job.name, "resize");
        assert_eq!(job.input.kind().unwrap(), Kind::File);
        assert_eq!(job.outputs.len(), 3);
        assert!(job.log.is_none());
        assert_eq!(job.nested.len(), 2);
        assert!(job.nested[0].1.is_some() && job.nested[1].1.is_none());
        let mut out = std::fs::File::from(job.outputs[0].try_clone().unwrap());
        out.write_all(b"done").unwrap();
        tx.send(&"ok".to_string()).unwrap();
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let dir = tempfile::tempdir().unwrap();
        let out_path = dir.path().join("out");
        let (ours, theirs) = Channel::pair().unwrap();
        let child = spawn_child(TEST, "child", theirs);
        let (tx, rx) = ours.into_typed::<Job, String>();
        let output = std::fs::File::create(&out_path).unwrap();
        let job = Job {
            name: "resize".into(),
            input: std::fs::File::open(std::env::current_exe().unwrap())
                .unwrap()
                .into(),
            outputs: vec![
                Handle::from(output),
                std::fs::File::open("/dev/null").unwrap().into(),
                std::fs::File::open("/dev/null").unwrap().into(),
            ],
            log: None,
            nested: vec![
                (1, Some(std::fs::File::open("/dev/null").unwrap().into())),
                (2, None),
            ],
        };
        tx.send(&job).unwrap();
        drop(job);
        assert_eq!(rx.recv().unwrap(), "ok");
        assert_success(child);
        assert_eq!(std::fs::read(&out_path).unwrap(), b"done");
    }
    leaks.assert();
}

#[test]
fn peer_credentials_name_the_child() {
    const TEST: &str = "peer_credentials_name_the_child";
    if role().is_some() {
        let ch = parent_channel();
        let creds = ch.peer_credentials().unwrap();
        assert_eq!(creds.pid, std::os::unix::process::parent_id());
        ch.send(b"", &[]).unwrap();
        let _ = ch.recv();
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let (ours, theirs) = Channel::pair().unwrap();
        let child = spawn_child(TEST, "child", theirs);
        // A socketpair's credentials are those of its creator (this process);
        // the child checked that from its side.
        let creds = ours.peer_credentials().unwrap();
        assert_eq!(creds.pid, std::process::id());
        assert_eq!(creds.uid, rustix::process::getuid().as_raw());
        assert_eq!(creds.gid, rustix::process::getgid().as_raw());
        if let Some(pidfd) = &creds.process {
            assert_eq!(pidfd.kind().unwrap(), Kind::Process);
        }
        ours.recv().unwrap();
        drop(ours);
        assert_success(child);
    }
    leaks.assert();
}

#[test]
fn listener_serves_many_client_processes() {
    const TEST: &str = "listener_serves_many_client_processes";
    if let Some(role) = role() {
        let path = role.strip_prefix("client:").unwrap();
        let ch = Channel::connect(path).unwrap();
        let me = std::process::id().to_string();
        ch.send(me.as_bytes(), &[std::io::stdout().as_handle()])
            .unwrap();
        assert_eq!(ch.recv().unwrap().bytes, b"bye");
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    {
        let listener = Listener::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            mode.permissions().mode() & 0o777,
            0o600,
            "owner-only socket file"
        );
        assert!(!listener.as_handle().is_inheritable().unwrap());
        let children: Vec<_> = (0..3)
            .map(|_| spawn_plain(TEST, &format!("client:{}", path.display())))
            .collect();
        let mut pids = Vec::new();
        for _ in 0..3 {
            let ch = listener.accept().unwrap();
            let msg = ch.recv().unwrap();
            let pid: u32 = String::from_utf8(msg.bytes).unwrap().parse().unwrap();
            assert_eq!(
                ch.peer_credentials().unwrap().pid,
                pid,
                "credentials name the client"
            );
            let creds = ch.peer_credentials().unwrap();
            if let Some(pidfd) = creds.process {
                assert_eq!(pidfd.kind().unwrap(), Kind::Process);
            }
            assert_eq!(msg.handles.len(), 1);
            ch.send(b"bye", &[]).unwrap();
            pids.push(pid);
        }
        for c in children {
            assert_success(c);
        }
        assert!(
            Listener::bind(&path).is_err(),
            "an existing path is not replaced"
        );
    }
    assert!(!path.exists(), "the socket file is removed on drop");
    leaks.assert();
}

#[test]
fn peer_exit_is_disconnected_not_a_hang_or_sigpipe() {
    const TEST: &str = "peer_exit_is_disconnected_not_a_hang_or_sigpipe";
    if role().is_some() {
        let ch = parent_channel();
        ch.send(b"last words", &[]).unwrap();
        std::process::exit(0);
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let (ours, theirs) = Channel::pair().unwrap();
        let child = spawn_child(TEST, "child", theirs);
        assert_eq!(ours.recv().unwrap().bytes, b"last words");
        assert!(matches!(ours.recv(), Err(Error::Disconnected)));
        assert_success(child);
        let file = std::fs::File::open("/dev/null").unwrap();
        // Without MSG_NOSIGNAL this would kill the test process.
        assert!(matches!(
            ours.send(b"anyone?", &[file.as_handle()]),
            Err(Error::Disconnected)
        ));
        assert!(!ours.is_poisoned());
    }
    leaks.assert();
}

#[test]
fn killed_peer_mid_message_drops_the_partial_message() {
    const TEST: &str = "killed_peer_mid_message_drops_the_partial_message";
    if role().is_some() {
        // Send a message far larger than the socket buffer; the parent kills
        // us while it is half-way through.
        let ch = parent_channel();
        let big = vec![7u8; 32 << 20];
        let file = std::fs::File::open("/dev/null").unwrap();
        let handles: Vec<_> = (0..600).map(|_| file.as_handle()).collect();
        let _ = ch.send(&big, &handles);
        std::thread::sleep(std::time::Duration::from_secs(30));
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let (ours, theirs) = Channel::pair().unwrap();
        let mut child = spawn_child(TEST, "child", theirs);
        // Let some fragments (and their handles) arrive, then kill.
        std::thread::sleep(std::time::Duration::from_millis(300));
        child.kill().unwrap();
        child.wait().unwrap();
        match ours.recv() {
            Err(Error::Disconnected) => {}
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }
    leaks.assert();
}

#[test]
fn typed_pair_in_one_process() {
    let _serial = serial();
    let leaks = LeakCheck::new();
    {
        let (tx, rx) = handoff::typed::channel::<(u32, Vec<Handle>)>().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        tx.send(&(7, vec![Handle::from(f.try_clone().unwrap())]))
            .unwrap();
        let (n, hs) = rx.recv().unwrap();
        assert_eq!(n, 7);
        assert_eq!(
            hs[0].kind().unwrap(),
            Kind::Other,
            "/dev/null is a character device"
        );
    }
    leaks.assert();
}
