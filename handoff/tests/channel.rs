//! Channels between real processes, on every platform: handles and bytes in
//! both directions, splitting and reassembly, typed values, limits and
//! undecodable values through the public API, disconnects. Unix-only parts
//! (peer credentials, listeners) are in `unix_channel.rs`; hand-made
//! datagrams in `bad_input.rs`.

mod common;

use std::io::Write;

use common::*;
use handoff::{Access, AsHandle, Channel, Error, Handle, Kind, Limits, Listener, StartupData};
use serde::{Deserialize, Serialize};

#[test]
fn file_and_shared_memory_cross_processes() {
    if let Some(ch) = child_channel() {
        let msg = ch.recv().unwrap();
        assert_eq!(msg.bytes, b"two handles");
        let [file, mem]: [Handle; 2] = msg.handles.try_into().unwrap();
        assert_eq!(file.kind().unwrap(), Kind::File);
        assert_eq!(file.access().unwrap(), Access::READ);
        assert!(
            !file.is_inheritable().unwrap(),
            "received handles are not inheritable"
        );
        assert_eq!(read_all(&file), b"file contents\n");
        assert!(
            matches!(mem.kind().unwrap(), Kind::SharedMemory { size, .. } if size == shm_size(69))
        );
        assert_eq!(mem.access().unwrap(), Access::READ);
        assert_eq!(StartupData::open(mem).unwrap().bytes(), b"hello");
        ch.send(b"verified", &[]).unwrap();
        return;
    }
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.txt");
        std::fs::write(&path, b"file contents\n").unwrap();
        {
            let (ours, child) = spawn_child_on_channel(this_test!());
            let file = std::fs::File::open(&path).unwrap();
            let mem = shared_memory(b"hello");
            ours.send(b"two handles", &[file.as_handle(), mem.as_handle()])
                .unwrap();
            assert_eq!(ours.recv().unwrap().bytes, b"verified");
            assert_success(child);
        }
    });
}

#[test]
fn thousand_handles_and_ten_mib_in_one_message() {
    let payload: Vec<u8> = (0..10 << 20).map(|i: u32| (i % 251) as u8).collect();
    if let Some(ch) = child_channel() {
        let msg = ch.recv().unwrap();
        assert_eq!(msg.handles.len(), 1000);
        assert!(msg.bytes == payload, "payload reassembled in order");
        for (i, h) in msg.handles.iter().enumerate() {
            let file = i % 2 == 0;
            assert_eq!(
                h.kind().unwrap() == Kind::File,
                file,
                "handle {i} kept its place"
            );
        }
        // Send them all back, moved.
        let mut handles = msg.handles;
        ch.send_moved(b"back", &mut handles).unwrap();
        assert!(handles.is_empty());
        return;
    }
    without_leaks(|| {
        let (ours, child) = spawn_child_on_channel(this_test!());
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        let mem = shared_memory(b"m");
        let handles: Vec<_> = (0..1000)
            .map(|i| {
                if i % 2 == 0 {
                    file.as_handle()
                } else {
                    mem.as_handle()
                }
            })
            .collect();
        ours.send(&payload, &handles).unwrap();
        let back = ours.recv().unwrap();
        assert_eq!(back.handles.len(), 1000);
        assert!(matches!(
            back.handles[1].kind().unwrap(),
            Kind::SharedMemory { .. }
        ));
        assert_success(child);
    });
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
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let out_path = dir.path().join("out");
        let (ours, child) = spawn_child_on_channel(this_test!());
        let (tx, rx) = ours.into_typed::<Job, String>();
        let output = std::fs::File::create(&out_path).unwrap();
        let job = Job {
            name: "resize".into(),
            input: std::fs::File::open(std::env::current_exe().unwrap())
                .unwrap()
                .into(),
            outputs: vec![Handle::from(output), null_file().into(), null_file().into()],
            log: None,
            nested: vec![(1, Some(null_file().into())), (2, None)],
        };
        tx.send(&job).unwrap();
        drop(job);
        assert_eq!(rx.recv().unwrap(), "ok");
        assert_success(child);
        assert_eq!(std::fs::read(&out_path).unwrap(), b"done");
    });
}

#[test]
fn peer_exit_is_disconnected_not_a_hang_or_sigpipe() {
    if let Some(ch) = child_channel() {
        ch.send(b"last words", &[]).unwrap();
        std::process::exit(0);
    }
    without_leaks(|| {
        let (ours, child) = spawn_child_on_channel(this_test!());
        assert_eq!(ours.recv().unwrap().bytes, b"last words");
        assert!(matches!(ours.recv(), Err(Error::Disconnected { .. })));
        assert_success(child);
        let file = null_file();
        // Without MSG_NOSIGNAL this would kill the test process on Unix.
        let e = ours.send(b"anyone?", &[file.as_handle()]).unwrap_err();
        assert!(matches!(e, Error::Disconnected { .. }), "{e:?}");
        assert_eq!(e.kind(), handoff::ErrorKind::Disconnected);
        // The system's own report (EPIPE) is kept, and is what the error
        // becomes as an io::Error.
        #[cfg(unix)]
        assert_eq!(
            std::io::Error::from(e).raw_os_error(),
            Some(rustix::io::Errno::PIPE.raw_os_error())
        );
        assert!(!ours.is_poisoned());
    });
}

#[test]
fn killed_peer_mid_message_drops_the_partial_message() {
    if role().is_some() {
        // Send a message far larger than the pipe's buffer; the parent kills
        // us while it is half-way through.
        let ch = parent_channel();
        let big = vec![7u8; 32 << 20];
        let file = null_file();
        let handles: Vec<_> = (0..600).map(|_| file.as_handle()).collect();
        let _ = ch.send(&big, &handles);
        std::thread::sleep(std::time::Duration::from_secs(30));
        return;
    }
    without_leaks(|| {
        let (ours, mut child) = spawn_child_on_channel(this_test!());
        // Let some fragments (and their handles) arrive, then kill.
        std::thread::sleep(std::time::Duration::from_millis(300));
        child.kill().unwrap();
        child.wait().unwrap();
        loop {
            match ours.recv() {
                Err(Error::Disconnected { .. }) => break,
                // On Windows the fragments still queued name handles of a
                // process that no longer exists: they cannot be taken.
                Err(Error::HandlesTruncated { .. }) if cfg!(windows) => continue,
                other => panic!("expected Disconnected, got {other:?}"),
            }
        }
    });
}

#[test]
fn typed_pair_in_one_process() {
    without_leaks(|| {
        let (tx, rx) = handoff::typed::channel::<(u32, Vec<Handle>)>().unwrap();
        let f = null_file();
        tx.send(&(7, vec![Handle::from(f.try_clone().unwrap())]))
            .unwrap();
        let (n, hs) = rx.recv().unwrap();
        assert_eq!(n, 7);
        assert_eq!(
            hs[0].kind().unwrap(),
            Kind::Other,
            "the null device is a character device"
        );
    });
}

#[test]
fn limits_reject_a_message_close_its_handles_and_keep_the_channel() {
    without_leaks(|| {
        let (a, b) = Channel::pair().unwrap();
        let b = b.with_limits(Limits {
            max_bytes: 1000,
            max_handles: 2,
        });
        let f = null_file();
        a.send(b"three", &[f.as_handle(), f.as_handle(), f.as_handle()])
            .unwrap();
        assert!(matches!(
            b.recv(),
            Err(Error::TooLarge {
                what: "message handles",
                got: 3,
                limit: 2
            })
        ));
        // Larger than one datagram: the rest is discarded, not misread.
        a.send(&vec![1u8; 400_000], &[f.as_handle()]).unwrap();
        assert!(matches!(
            b.recv(),
            Err(Error::TooLarge {
                what: "message bytes",
                ..
            })
        ));
        a.send(b"fine", &[f.as_handle()]).unwrap();
        let msg = b.recv().unwrap();
        assert_eq!(msg.bytes, b"fine");
        assert_eq!(msg.handles.len(), 1);
        assert!(!b.is_poisoned());
    });
}

#[test]
fn values_that_do_not_decode_close_their_handles() {
    without_leaks(|| {
        let (a, b) = Channel::pair().unwrap();
        let rx = handoff::typed::Receiver::<(u32, Handle)>::new(b);
        let f = null_file();
        // Index 5 of a message with one handle.
        let mut bytes = 7u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&5u32.to_le_bytes());
        a.send(&bytes, &[f.as_handle()]).unwrap();
        assert!(matches!(rx.recv(), Err(Error::Malformed(_))));
        // A handle no field claims.
        let mut bytes = 7u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&0u32.to_le_bytes());
        a.send(&bytes, &[f.as_handle(), f.as_handle()]).unwrap();
        assert!(matches!(rx.recv(), Err(Error::Malformed(_))));
        // Trailing bytes.
        let mut bytes = 7u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.push(0);
        a.send(&bytes, &[f.as_handle()]).unwrap();
        assert!(matches!(rx.recv(), Err(Error::Malformed(_))));
        // And the channel still works.
        let mut bytes = 7u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&0u32.to_le_bytes());
        a.send(&bytes, &[f.as_handle()]).unwrap();
        let (n, h) = rx.recv().unwrap();
        assert_eq!(n, 7);
        assert_eq!(h.kind().unwrap(), Kind::Other);
    });
}

#[test]
fn listener_serves_client_processes() {
    if let Some(ch) = client_channel() {
        let me = std::process::id().to_string();
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        ch.send(me.as_bytes(), &[file.as_handle()]).unwrap();
        assert_eq!(ch.recv().unwrap().bytes, b"bye");
        return;
    }
    with_listener(|listener, path| {
        let children: Vec<_> = (0..3)
            .map(|_| spawn_listener_client(this_test!(), path))
            .collect();
        for _ in 0..3 {
            let ch = listener.accept().unwrap();
            let msg = ch.recv().unwrap();
            let pid: u32 = String::from_utf8(msg.bytes).unwrap().parse().unwrap();
            assert!(children.iter().any(|c| c.id() == pid));
            assert_eq!(msg.handles.len(), 1);
            assert_eq!(msg.handles[0].kind().unwrap(), Kind::File);
            ch.send(b"bye", &[]).unwrap();
        }
        for c in children {
            assert_success(c);
        }
        // Wine 8 does not enforce FILE_FLAG_FIRST_PIPE_INSTANCE (Windows
        // fails the call with ERROR_ACCESS_DENIED); the CI's Wine is told
        // apart by the prefix it runs in.
        if !(cfg!(windows) && std::env::var_os("WINEPREFIX").is_some()) {
            assert!(
                Listener::bind(path).is_err(),
                "a name in use is not taken over"
            );
        }
        drop(listener);
        // Gone with the listener: the name can be bound again.
        drop(Listener::bind(path).unwrap());
    });
}

#[test]
fn a_channel_converts_to_and_from_its_handle() {
    without_leaks(|| {
        let (a, b) = Channel::pair().unwrap();
        let a = Channel::try_from(Handle::from(a)).unwrap();
        #[cfg(unix)]
        let b = Channel::try_from(std::os::fd::OwnedFd::from(b)).unwrap();
        #[cfg(windows)]
        let b = Channel::try_from(std::os::windows::io::OwnedHandle::from(b)).unwrap();
        a.send(b"still a channel", &[]).unwrap();
        assert_eq!(b.recv().unwrap().bytes, b"still a channel");
        // A handle that is no channel end is refused, and closed.
        let e = Channel::try_from(Handle::from(null_file())).unwrap_err();
        assert!(matches!(e, Error::WrongKind { .. }), "{e:?}");
    });
}
