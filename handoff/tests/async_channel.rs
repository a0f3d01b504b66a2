//! The tokio side of channels and listeners, across real processes, on
//! every platform.

mod common;

use std::time::Duration;

use common::*;
use handoff::{AsHandle, AsyncChannel, Channel, Error, Handle, Kind};

#[test]
fn async_pair_moves_handles_and_large_messages() {
    without_leaks_once_warm(|| {
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
            assert!(matches!(b.recv().await, Err(Error::Disconnected { .. })));
        });
    });
}

#[test]
fn async_listener_with_blocking_client_processes() {
    if let Some(ch) = client_channel() {
        ch.send(b"ping", &[std::io::stderr().as_handle()]).unwrap();
        let reply = ch.recv().unwrap();
        assert_eq!(reply.bytes, b"pong");
        assert_eq!(reply.handles.len(), 1);
        return;
    }
    with_async_listener(|listener, path| async move {
        let children: Vec<_> = (0..4)
            .map(|_| spawn_listener_client(this_test!(), &path))
            .collect();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let ch = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut msg = ch.recv().await.unwrap();
                assert_eq!(msg.bytes, b"ping");
                ch.send_moved(b"pong", &mut msg.handles).await.unwrap();
                assert!(matches!(ch.recv().await, Err(Error::Disconnected { .. })));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for c in children {
            assert_success(c);
        }
    });
}

#[test]
fn no_runtime_is_an_error_not_a_panic() {
    let (a, _b) = Channel::pair().unwrap();
    assert!(matches!(AsyncChannel::new(a), Err(Error::Io { .. })));
}

/// A recv future dropped at any point loses nothing: a large message with
/// handles arrives whole and in order however often receiving is cut short,
/// and a blocking recv takes over where an async one left off.
#[test]
fn dropped_recv_futures_lose_nothing() {
    without_leaks_once_warm(|| {
        runtime().block_on(async {
            let (a, b) = AsyncChannel::pair().unwrap();

            // Nothing there: the future is dropped while waiting.
            assert!(tokio::time::timeout(Duration::from_millis(20), b.recv())
                .await
                .is_err());
            a.send(b"first", &[]).await.unwrap();
            assert_eq!(b.recv().await.unwrap().bytes, b"first");

            // Dropped again and again while multi-fragment messages with
            // handles come in from a blocking sender on another thread.
            let (sender, receiver) = Channel::pair().unwrap();
            let receiver = AsyncChannel::new(receiver).unwrap();
            let big: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7) as u8).collect();
            let f = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
            let thread = {
                let (big, f) = (big.clone(), f.try_clone().unwrap());
                std::thread::spawn(move || {
                    let handles: Vec<_> = (0..260).map(|_| f.as_handle()).collect();
                    for i in 0..4u8 {
                        let mut bytes = big.clone();
                        bytes[0] = i;
                        sender.send(&bytes, &handles).unwrap();
                    }
                    sender.send(b"after", &[]).unwrap();
                    sender
                })
            };
            let mut cut = 0u32;
            for i in 0..4u8 {
                let msg = loop {
                    match tokio::time::timeout(Duration::from_micros(100), receiver.recv()).await {
                        Ok(m) => break m.unwrap(),
                        Err(_) => cut += 1,
                    }
                };
                assert_eq!(msg.bytes[0], i, "in order");
                assert!(msg.bytes[1..] == big[1..]);
                assert_eq!(msg.handles.len(), 260);
                assert_eq!(msg.handles[259].kind().unwrap(), Kind::File);
            }
            eprintln!("recv futures dropped: {cut}");
            assert_eq!(receiver.recv().await.unwrap().bytes, b"after");
            drop((receiver, thread.join().unwrap()));
            a.send(b"after", &[]).await.unwrap();
            assert_eq!(b.recv().await.unwrap().bytes, b"after");

            // An async recv left waiting, then the blocking side receives.
            assert!(tokio::time::timeout(Duration::from_millis(20), b.recv())
                .await
                .is_err());
            a.send(b"blocking", &[f.as_handle()]).await.unwrap();
            let msg = b.get_ref().recv().unwrap();
            assert_eq!(msg.bytes, b"blocking");
            assert_eq!(msg.handles.len(), 1);
            drop(msg);

            // And back: the channel moves out of the runtime with a read
            // under way and still delivers in order.
            assert!(tokio::time::timeout(Duration::from_millis(20), b.recv())
                .await
                .is_err());
            a.send(b"one", &[]).await.unwrap();
            a.send(b"two", &[]).await.unwrap();
            let b = b.into_inner();
            assert_eq!(b.recv().unwrap().bytes, b"one");
            assert_eq!(b.recv().unwrap().bytes, b"two");
            drop(a);
            assert!(matches!(b.recv(), Err(Error::Disconnected { .. })));
        });
    });
}

/// An accept future dropped while waiting keeps the listener usable, and
/// the next accept gets the client.
#[test]
fn dropped_accept_futures_lose_nothing() {
    if let Some(ch) = client_channel() {
        ch.send(b"hello", &[]).unwrap();
        assert!(matches!(ch.recv(), Err(Error::Disconnected { .. })));
        return;
    }
    with_async_listener(|listener, path| async move {
        for _ in 0..3 {
            assert!(
                tokio::time::timeout(Duration::from_millis(10), listener.accept())
                    .await
                    .is_err()
            );
        }
        let child = spawn_listener_client(this_test!(), &path);
        let ch = listener.accept().await.unwrap();
        assert_eq!(ch.recv().await.unwrap().bytes, b"hello");
        drop(ch);
        assert_success(child);
    });
}
