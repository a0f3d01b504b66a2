//! Startup data reaches the child as a descriptor that cannot change it:
//! in the Linux configuration a sealed memfd reopened read-only, in the
//! portable one (POSIX shared memory, which has no seals) the read-only
//! descriptor opened before the name was unlinked. Either way the child
//! can read it but not write it; that it cannot map it writable and
//! shared is asserted on the same descriptor in `sys/unix/shm.rs`.
#![cfg(unix)]

mod common;

use std::io::Write;
use std::os::fd::OwnedFd;

use common::*;
use handoff::{Access, Inherited, Kind, StartupData};

#[test]
fn the_child_gets_startup_data_it_cannot_write() {
    const TEST: &str = "the_child_gets_startup_data_it_cannot_write";
    if role().is_some() {
        let mut inherited = Inherited::from_env().unwrap();
        let handle = inherited.take(handoff::startup::NAME).unwrap();
        assert!(
            matches!(handle.kind().unwrap(), Kind::SharedMemory { size, .. } if size == 64 + 5),
            "{:?}",
            handle.kind()
        );
        assert_eq!(handle.access().unwrap(), Access::READ);
        let copy = handle.try_clone().unwrap();
        let mut file = std::fs::File::from(OwnedFd::from(copy));
        let e = file.write_all(b"forged").unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::BADF.raw_os_error())
        );
        let e = std::os::unix::fs::FileExt::write_at(&file, b"x", 64).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::BADF.raw_os_error())
        );
        let data = StartupData::open(handle).unwrap();
        assert_eq!(data.bytes(), b"hello");
        return;
    }
    without_leaks(|| {
        let mut child = self_command(TEST, "child")
            .startup_data(b"hello")
            .spawn()
            .unwrap();
        assert!(child.wait().unwrap().success());
    });
}

#[test]
fn the_creator_keeps_no_writable_descriptor() {
    without_leaks(|| {
        let before = count_fds();
        let h = handoff::startup::create(b"abc").unwrap();
        // Only the read-only handle remains: the writable one was dropped.
        assert_eq!(count_fds(), before + 1);
        assert_eq!(h.access().unwrap(), Access::READ);
        assert_eq!(StartupData::open(h).unwrap().bytes(), b"abc");
    });
}

fn count_fds() -> usize {
    handoff::count_open_handles().unwrap()
}
