//! `handoff::restart` across a real process boundary: a service (this
//! binary run again) claims its sockets by name through `Service` and
//! talks to a real notify socket; the supervisor side reads what the
//! kernel says about the sender.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod common;

use std::io::{Read, Write};

use common::{role, self_command, serial, LeakCheck};
use handoff::restart::{NotifyError, NotifySocket, Service};
use handoff::Error;

const TEST: &str = "a_service_claims_by_name_and_notifies";

#[test]
fn a_service_claims_by_name_and_notifies() {
    if role().is_some() {
        let mut svc = Service::from_env().unwrap();
        assert!(svc.is_supervised());
        assert_eq!(
            svc.names().collect::<Vec<_>>(),
            ["dns", "web", "kept", "kept"]
        );
        // A UDP socket where a TCP listener is expected: both kinds named.
        let e = svc.tcp_listener("dns").unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::WrongKind { .. }), "{text}");
        assert!(text.contains("a listening TCP socket"), "{text}");
        assert!(text.contains("datagram"), "{text}");
        let _web = svc.tcp_listener("web").unwrap();
        assert_eq!(svc.take_all("kept").len(), 2);
        // An FDNAME systemd refuses is refused before sending.
        let (r, mut w) = std::io::pipe().unwrap();
        assert!(svc.store("a:b", &r).is_err());
        w.write_all(b"stored").unwrap();
        drop(w);
        svc.store("pipe", &r).unwrap();
        svc.status("warming up").unwrap();
        svc.ready().unwrap();
        svc.remove("pipe").unwrap();
        svc.stopping().unwrap();
        return;
    }
    let _g = serial();
    let leaks = LeakCheck::new();
    let dir = tempfile::tempdir().unwrap();
    for path in [
        dir.path().join("notify").to_str().unwrap().to_owned(),
        format!("@handoff-test-{}", std::process::id()),
    ] {
        let mut socket = NotifySocket::bind(&path).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let mut cmd = self_command(TEST, "service");
        cmd.handle("dns", &udp)
            .handle("web", &tcp)
            .handle("kept", &null)
            .handle("kept", &null)
            .env("NOTIFY_SOCKET", &path);
        let mut child = cmd.spawn().unwrap();
        let pid = child.id();
        let mut got = Vec::new();
        for _ in 0..5 {
            let r = socket.recv().unwrap();
            assert_eq!(r.sender.unwrap().0, pid, "the kernel names the sender");
            got.push((r.message.unwrap(), r.handles));
        }
        assert!(child.wait().unwrap().success());
        let (store, handles) = &got[0];
        assert!(store.fd_store);
        assert_eq!(store.store_name(), "pipe");
        assert_eq!(handles.len(), 1);
        let mut text = String::new();
        std::fs::File::from(std::os::fd::OwnedFd::from(handles[0].try_clone().unwrap()))
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "stored");
        assert_eq!(got[1].0.status.as_deref(), Some("warming up"));
        assert!(got[2].0.ready);
        assert!(got[3].0.fd_store_remove);
        assert!(got[4].0.stopping);
        drop(got);
        drop(socket);
    }
    leaks.assert();
}

#[test]
fn malformed_datagrams_on_a_real_socket_are_refused_and_their_handles_closed() {
    let _g = serial();
    let leaks = LeakCheck::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let mut socket = NotifySocket::bind(&path).unwrap();
    let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
    sender.send_to(b"READY", &path).unwrap();
    sender.send_to(&vec![b'X'; 9000], &path).unwrap();
    // A handle without FDSTORE=1: refused, and closed on arrival.
    {
        use rustix::net::{sendmsg_addr, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let null = std::fs::File::open("/dev/null").unwrap();
        let fds = [std::os::fd::AsFd::as_fd(&null)];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        let addr = rustix::net::SocketAddrUnix::new(&path).unwrap();
        let iov = [std::io::IoSlice::new(b"STATUS=look, a handle")];
        sendmsg_addr(&sender, &addr, &iov, &mut control, SendFlags::empty()).unwrap();
    }
    drop(sender);
    let r = socket.recv().unwrap();
    assert!(matches!(r.message, Err(NotifyError::NoEquals { .. })));
    assert_eq!(r.sender.unwrap().0, std::process::id());
    let r = socket.recv().unwrap();
    assert!(
        matches!(r.message, Err(NotifyError::TooLong { .. })),
        "{:?}",
        r.message
    );
    let r = socket.recv().unwrap();
    assert_eq!(
        r.message,
        Err(NotifyError::HandlesWithoutFdStore { count: 1 })
    );
    assert!(r.handles.is_empty());
    drop(socket);
    assert!(!path.exists(), "the socket file goes with the socket");
    leaks.assert();
}
