//! A child spawned without named handles gets its standard streams and
//! nothing else, whichever way it is created (`clone` on Linux,
//! `posix_spawn` in the portable configuration): a descriptor this process
//! holds without close-on-exec stays behind. (A stream whose source already
//! has the stream's number is tested in `sys/unix/spawn.rs`: only there can
//! a test own descriptor 0.)
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::AsRawFd;

use common::*;
use handoff::spawn::Stdio;

#[test]
fn a_descriptor_left_inheritable_does_not_reach_the_child() {
    without_leaks(|| {
        let (stray, _w) = std::io::pipe().unwrap();
        // As if this process had inherited it: close-on-exec clear.
        rustix::io::fcntl_setfd(&stray, rustix::io::FdFlags::empty()).unwrap();
        let mut child = handoff::Command::new("sh")
            .args(["-c", "ls /proc/self/fd | wc -l"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = read_text(child.take_stdout().unwrap());
        assert!(child.wait().unwrap().success());
        // 0, 1, 2 and the directory `ls` reads.
        assert_eq!(out.trim(), "4", "{} leaked in", stray.as_raw_fd());
    });
}
