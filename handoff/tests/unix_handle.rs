//! Handles, the Unix-only part: kinds only Unix has (sockets std can make,
//! memfd seals, eventfd, pidfd, timerfd, pty), `O_PATH`, kinds whose rights
//! cannot be narrowed, close-on-exec. The portable part is in `handle.rs`.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::{AsFd, OwnedFd};

use common::*;
use handoff::{Access, AsHandle, Error, Handle, Kind, Seals, SocketFamily, SocketType};

#[test]
fn kinds_of_everything() {
    without_leaks(|| {
        assert_kinds_every_platform_has();

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            listener.as_handle().kind().unwrap(),
            Kind::Socket {
                family: SocketFamily::Inet,
                ty: SocketType::Stream,
                listening: true
            }
        );
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        assert_eq!(
            a.as_handle().kind().unwrap(),
            Kind::Socket {
                family: SocketFamily::Unix,
                ty: SocketType::Datagram,
                listening: false
            }
        );
        let (ch, _other) = handoff::Channel::pair().unwrap();
        // The portable configuration runs channels over stream sockets.
        let channel_type = if cfg!(handoff_portable) {
            SocketType::Stream
        } else {
            SocketType::SeqPacket
        };
        assert!(matches!(
            ch.as_handle().kind().unwrap(),
            Kind::Socket {
                family: SocketFamily::Unix,
                ty,
                ..
            } if ty == channel_type
        ));

        let mem = sealed_memfd(&[1, 2, 3]);
        assert_eq!(
            mem.kind().unwrap(),
            Kind::SharedMemory {
                size: 3,
                seals: Seals::IMMUTABLE
            }
        );
        let unsealed = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        assert!(matches!(
            unsealed.as_handle().kind().unwrap(),
            Kind::SharedMemory { size: 0, .. }
        ));

        let ev = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
        assert_eq!(ev.as_handle().kind().unwrap(), Kind::Event);
        let pidfd = rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();
        assert_eq!(pidfd.as_handle().kind().unwrap(), Kind::Process);
        let timer = rustix::time::timerfd_create(
            rustix::time::TimerfdClockId::Monotonic,
            rustix::time::TimerfdFlags::CLOEXEC,
        )
        .unwrap();
        assert_eq!(timer.as_handle().kind().unwrap(), Kind::Timer);
        let pty =
            rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
                .unwrap();
        assert_eq!(pty.as_handle().kind().unwrap(), Kind::Terminal);
        let null = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(null.as_handle().kind().unwrap(), Kind::Other);
    });
}

#[test]
fn a_path_only_descriptor_grants_nothing() {
    without_leaks(|| {
        let (_dir, p) = temp_file(b"x");
        let path_only = rustix::fs::open(
            &p,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        assert_eq!(path_only.as_handle().access().unwrap(), Access::NONE);
    });
}

/// Restricting the kinds only Unix has (a read-only file's refusal by the
/// kernel itself is checked in `handle.rs`).
#[test]
fn restriction_of_unix_kinds() {
    without_leaks(|| {
        // A read-only memfd cannot be mapped writable.
        let mem = rustix::fs::memfd_create("m", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&mem, 4096).unwrap();
        let ro_mem = mem.as_handle().restrict(Access::READ).unwrap();
        assert!(matches!(
            ro_mem.kind().unwrap(),
            Kind::SharedMemory { size: 4096, .. }
        ));
        assert_eq!(ro_mem.access().unwrap(), Access::READ);

        // Kinds that cannot be narrowed say so.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(matches!(
            a.as_handle().restrict(Access::READ),
            Err(Error::Unsupported(_))
        ));
        let ev = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
        assert!(matches!(
            ev.as_handle().restrict(Access::READ),
            Err(Error::Unsupported(_))
        ));
        // Same access is a plain duplicate, for any kind.
        assert!(a.as_handle().restrict(Access::READ_WRITE).is_ok());
    });
}

#[test]
fn clones_are_close_on_exec_and_close_once() {
    without_leaks(|| {
        let f = std::fs::File::open("/dev/null").unwrap();
        rustix::io::fcntl_setfd(&f, rustix::io::FdFlags::empty()).unwrap();
        assert!(f.as_handle().is_inheritable().unwrap());
        let h = f.as_handle().try_clone_to_owned().unwrap();
        assert!(!h.is_inheritable().unwrap(), "F_DUPFD_CLOEXEC");
        let h2 = h.try_clone().unwrap();
        assert_ne!(h.raw(), h2.raw());
        // Round trips through std keep ownership single.
        let owned: OwnedFd = h2.into();
        let back = Handle::from(std::fs::File::from(owned));
        assert!(back.as_fd().try_clone_to_owned().is_ok());
    });
}
