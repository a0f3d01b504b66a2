//! Handles on every platform: kind and access read from the kernel,
//! restriction enforced by the kernel, non-inheritable duplicates, interop
//! with std. Unix-only kinds are in `unix_handle.rs`, Windows-only ones in
//! the backend's unit tests.

mod common;

use std::io::{Read, Seek, Write};

use common::*;
use handoff::{Access, AsHandle, Error, Handle, Kind, KindName, Requirement};

#[test]
fn kinds_of_files_directories_pipes_shared_memory_and_processes() {
    without_leaks(|| {
        assert_kinds_every_platform_has();

        let mem = shared_memory(&[1, 2, 3]);
        assert!(
            matches!(mem.kind().unwrap(), Kind::SharedMemory { size, .. } if size == shm_size(67))
        );
        assert_eq!(mem.access().unwrap(), Access::READ);

        // A child that runs no test and exits; its process handle (a pidfd
        // on Linux, none on macOS) is a process.
        let mut child = handoff::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "no test has this name"])
            .stdout(handoff::spawn::Stdio::null())
            .spawn()
            .unwrap();
        if let Some(h) = child.exit_handle() {
            assert_eq!(h.kind().unwrap(), Kind::Process);
        }
        assert!(child.wait().unwrap().success());

        let null = null_file();
        assert_eq!(null.as_handle().kind().unwrap(), Kind::Other);
    });
}

#[test]
fn access_is_read_from_the_handle() {
    without_leaks(|| {
        let (_dir, p) = temp_file(b"x");
        let r = std::fs::File::open(&p).unwrap();
        let w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let rw = open_rw(&p);
        assert_eq!(r.as_handle().access().unwrap(), Access::READ);
        assert_eq!(w.as_handle().access().unwrap(), Access::WRITE);
        assert_eq!(rw.as_handle().access().unwrap(), Access::READ_WRITE);
    });
}

#[test]
fn restrict_is_enforced_by_the_kernel() {
    without_leaks(|| {
        let (_dir, p) = temp_file(b"secret");
        let rw = Handle::from(open_rw(&p));
        let ro = rw.restrict(Access::READ).unwrap();
        assert_eq!(ro.access().unwrap(), Access::READ);
        assert_eq!(ro.kind().unwrap(), Kind::File);
        assert!(!ro.is_inheritable().unwrap());
        let mut ro_file = std::fs::File::from(ro);
        let refused = ro_file.write(b"x");
        assert!(refused.is_err(), "a read-only handle cannot write");
        #[cfg(unix)]
        assert_eq!(
            refused.unwrap_err().raw_os_error(),
            Some(rustix::io::Errno::BADF.raw_os_error()),
            "the kernel refuses the write itself"
        );
        let mut s = String::new();
        ro_file.read_to_string(&mut s).unwrap();
        assert_eq!(s, "secret");

        let wo = rw.restrict(Access::WRITE).unwrap();
        assert_eq!(wo.access().unwrap(), Access::WRITE);
        let mut wo_file = std::fs::File::from(wo);
        let mut buf = [0u8; 1];
        assert!(
            wo_file.read(&mut buf).is_err(),
            "a write-only handle cannot read"
        );
        wo_file.rewind().unwrap();
        wo_file.write_all(b"S").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"Secret");

        // Asking for rights the handle lacks.
        let r = Handle::from(std::fs::File::open(&p).unwrap());
        assert!(matches!(
            r.restrict(Access::READ_WRITE),
            Err(Error::WrongAccess { .. })
        ));
        let mem = shared_memory(b"x");
        assert!(matches!(
            mem.restrict(Access::WRITE),
            Err(Error::WrongAccess { .. })
        ));
        // Same access is a plain duplicate.
        assert_eq!(
            mem.restrict(Access::READ).unwrap().access().unwrap(),
            Access::READ
        );
    });
}

#[test]
fn clones_are_not_inheritable_and_close_once() {
    without_leaks(|| {
        let f = null_file();
        let h = f.as_handle().try_clone_to_owned().unwrap();
        assert!(!h.is_inheritable().unwrap());
        let h2 = h.try_clone().unwrap();
        assert!(!h2.is_inheritable().unwrap());
        assert_ne!(h.raw(), h2.raw());
        // Round trips through std keep ownership single.
        let back = Handle::from(std::fs::File::from(h2));
        assert!(back.try_clone().is_ok());
    });
}

#[test]
fn expect_checks_kind_and_access_and_gives_the_handle_back() {
    without_leaks(|| {
        let (r, _w) = std::io::pipe().unwrap();
        let h = Handle::from(r);
        let (err, h) = h
            .expect(Requirement::kind(KindName::File).at_least(Access::READ))
            .unwrap_err();
        assert!(matches!(err, Error::WrongKind { .. }));
        let (err, h) = h
            .expect(Requirement::kind(KindName::Pipe).at_least(Access::WRITE))
            .unwrap_err();
        assert!(matches!(err, Error::WrongAccess { .. }));
        let h = h
            .expect(Requirement::kind(KindName::Pipe).at_least(Access::READ))
            .unwrap();
        drop(h);
    });
}
