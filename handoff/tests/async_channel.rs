//! The tokio side of channels and listeners, across real processes.
// AsyncChannel and AsyncListener are Unix-only for now.
#![cfg(unix)]

mod common;

use common::*;
use handoff::{AsHandle, AsyncChannel, AsyncListener, Channel, Error, Handle, Kind};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn async_pair_moves_handles_and_large_messages() {
    let _serial = serial();
    let leaks = LeakCheck::new();
    runtime().block_on(async {
        let (a, b) = AsyncChannel::pair().unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let f = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        let handles: Vec<_> = (0..300).map(|_| f.as_handle()).collect();
        let send = a.send(&big, &handles);
        let recv = b.recv();
        let (sent, got) = tokio::join!(send, recv);
        sent.unwrap();
        let got = got.unwrap();
        assert!(got.bytes == big);
        assert_eq!(got.handles.len(), 300);
        assert_eq!(got.handles[299].kind().unwrap(), Kind::File);

        // Typed values with handles.
        a.send_value(&("hi".to_string(), Handle::from(f.try_clone().unwrap())))
            .await
            .unwrap();
        let (s, h): (String, Handle) = b.recv_value().await.unwrap();
        assert_eq!(s, "hi");
        assert_eq!(h.kind().unwrap(), Kind::File);

        drop(a);
        assert!(matches!(b.recv().await, Err(Error::Disconnected)));
    });
    leaks.assert();
}

#[test]
fn async_listener_with_blocking_client_processes() {
    const TEST: &str = "async_listener_with_blocking_client_processes";
    if let Some(role) = role() {
        let path = role.strip_prefix("client:").unwrap();
        let ch = Channel::connect(path).unwrap();
        ch.send(b"ping", &[std::io::stderr().as_handle()]).unwrap();
        let reply = ch.recv().unwrap();
        assert_eq!(reply.bytes, b"pong");
        assert_eq!(reply.handles.len(), 1);
        return;
    }
    let _serial = serial();
    let leaks = LeakCheck::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    runtime().block_on(async {
        let listener = AsyncListener::bind(&path).unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| spawn_plain(TEST, &format!("client:{}", path.display())))
            .collect();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let ch = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut msg = ch.recv().await.unwrap();
                assert_eq!(msg.bytes, b"ping");
                ch.send_moved(b"pong", &mut msg.handles).await.unwrap();
                assert!(matches!(ch.recv().await, Err(Error::Disconnected)));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for c in children {
            assert_success(c);
        }
    });
    leaks.assert();
}

#[test]
fn no_runtime_is_an_error_not_a_panic() {
    let (a, _b) = Channel::pair().unwrap();
    assert!(matches!(AsyncChannel::new(a), Err(Error::Io { .. })));
}
