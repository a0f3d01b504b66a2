//! Channels, the Unix-only part: peer credentials (Linux) and listeners on
//! a socket path. The portable part is in `channel.rs`.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use handoff::{AsHandle, Channel, Kind, Listener};

#[test]
fn peer_credentials_name_the_child() {
    if let Some(ch) = child_channel() {
        let creds = ch.peer_credentials().unwrap();
        assert_eq!(creds.pid, std::os::unix::process::parent_id());
        ch.send(b"", &[]).unwrap();
        let _ = ch.recv();
        return;
    }
    without_leaks(|| {
        let (ours, child) = spawn_child_on_channel(this_test!());
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
    });
}

#[test]
fn listener_serves_many_client_processes() {
    if let Some(ch) = client_channel() {
        let me = std::process::id().to_string();
        ch.send(me.as_bytes(), &[std::io::stdout().as_handle()])
            .unwrap();
        assert_eq!(ch.recv().unwrap().bytes, b"bye");
        return;
    }
    with_listener(|listener, path| {
        let mode = std::fs::metadata(path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            mode.permissions().mode() & 0o777,
            0o600,
            "owner-only socket file"
        );
        assert!(!listener.as_handle().is_inheritable().unwrap());
        let children: Vec<_> = (0..3)
            .map(|_| spawn_listener_client(this_test!(), path))
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
            Listener::bind(path).is_err(),
            "an existing path is not replaced"
        );
        drop(listener);
        assert!(!path.exists(), "the socket file is removed on drop");
    });
}

/// An async send to a full socket waits for room and then delivers, with
/// its handle; a send given up while waiting sends nothing and leaves no
/// descriptor behind. The reader is a child process that starts reading
/// only when told to, over a second channel.
#[test]
fn an_async_send_waits_for_room_then_delivers() {
    if let Some(ch) = child_channel() {
        let control = take_control(&ch);
        // Reading that first message gave the parent's socket room back:
        // the parent fills it only after this.
        control.send(b"up", &[]).unwrap();
        drain_when_told(&ch, &control);
        ch.send(b"ok", &[]).unwrap();
        return;
    }
    without_leaks(|| {
        let (ours, control, child) = child_with_control(this_test!());
        assert_eq!(control.recv().unwrap().bytes, b"up");
        let runtime = current_thread();
        runtime.block_on(async {
            let ch = handoff::AsyncChannel::new(ours).unwrap();
            let fills = fill(&ch).await;
            assert!(fills > 0);
            let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
            send_last_then_tell(&ch, &control, fills, &file).await;
            assert_eq!(ch.recv().await.unwrap().bytes, b"ok");
        });
        drop((runtime, control));
        assert_success(child);
    });
}

/// The same with the sender's descriptor table full, where waiting for room
/// cannot take the descriptor it normally uses: the send still completes
/// once the peer reads, and nothing is lost.
#[test]
fn an_async_send_waits_for_room_with_the_descriptor_table_full() {
    if let Some(ch) = child_channel() {
        let control = take_control(&ch);
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        current_thread().block_on(async {
            let ch = handoff::AsyncChannel::new(ch).unwrap();
            let fills = fill(&ch).await;
            // Every descriptor number under the limit taken.
            leave_room_for(8);
            let mut filler = Vec::new();
            let exhausted = loop {
                match std::fs::File::open("/dev/null") {
                    Ok(f) => filler.push(f),
                    Err(e) => break e,
                }
            };
            assert_eq!(
                exhausted.raw_os_error(),
                Some(rustix::io::Errno::MFILE.raw_os_error())
            );
            send_last_then_tell(&ch, &control, fills, &file).await;
            drop(filler);
        });
        return;
    }
    without_leaks(|| {
        let (ours, control, child) = child_with_control(this_test!());
        drain_when_told(&ours, &control);
        assert_success(child);
    });
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Starts the child with one channel, and a second one (the control
/// channel) in the first message on it.
fn child_with_control(test: &str) -> (Channel, Channel, std::process::Child) {
    let (ours, theirs) = Channel::pair().unwrap();
    let (control, control_theirs) = Channel::pair().unwrap();
    ours.send(b"control", &[control_theirs.as_borrowed()])
        .unwrap();
    drop(control_theirs);
    let child = spawn_child(test, "child", theirs);
    (ours, control, child)
}

/// The child's side of [`child_with_control`].
fn take_control(ch: &Channel) -> Channel {
    let mut first = ch.recv().unwrap();
    Channel::from_handle(first.handles.pop().unwrap()).unwrap()
}

/// Sends small messages until one has to wait for room; returns how many
/// went out (the one given up on sent nothing).
async fn fill(ch: &handoff::AsyncChannel) -> u64 {
    let mut fills = 0u64;
    loop {
        let send = ch.send(b"fill", &[]);
        match tokio::time::timeout(std::time::Duration::from_millis(50), send).await {
            Ok(sent) => {
                sent.unwrap();
                fills += 1;
            }
            Err(_) => return fills,
        }
    }
}

/// On a full channel: starts sending "last" with `file`, checks that it
/// waits, tells the reader how many messages came before it, and waits for
/// the send to complete.
async fn send_last_then_tell(
    ch: &handoff::AsyncChannel,
    control: &Channel,
    fills: u64,
    file: &std::fs::File,
) {
    let with = [file.as_handle()];
    let mut last = std::pin::pin!(ch.send(b"last", &with));
    let early = tokio::time::timeout(std::time::Duration::from_millis(50), last.as_mut()).await;
    assert!(
        early.is_err(),
        "the socket had room after all: {early:?} after {fills}"
    );
    control.send(&fills.to_le_bytes(), &[]).unwrap();
    // Generous: only a send that is never woken takes this long.
    tokio::time::timeout(std::time::Duration::from_secs(60), last)
        .await
        .expect("the send waiting for room was never woken")
        .unwrap();
}

/// The reader's side of [`send_last_then_tell`]: every message, in order.
fn drain_when_told(ch: &Channel, control: &Channel) {
    let go = control.recv().unwrap();
    let fills = u64::from_le_bytes(go.bytes[..8].try_into().unwrap());
    for _ in 0..fills {
        assert_eq!(ch.recv().unwrap().bytes, b"fill");
    }
    let last = ch.recv().unwrap();
    assert_eq!(last.bytes, b"last");
    assert_eq!(last.handles.len(), 1);
    assert_eq!(last.handles[0].kind().unwrap(), Kind::File);
}
