//! Plumbing shared by the integration tests: re-running the test binary as
//! a child process with a role, and counting open handles.
#![allow(dead_code)]

use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use handoff::{count_open_handles, Channel, Handle};

const ROLE_ENV: &str = "HANDOFF_TEST_ROLE";

/// The role this process was started with, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// Tests in one binary run on parallel threads; handle counts are
/// per-process, so every test that counts takes this lock first.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs this test binary again, running only `test`, as `role`, with
/// `channel` (the child's end) as its standard input.
pub fn spawn_child(test: &str, role: &str, channel: Channel) -> Child {
    spawn_child_with(test, role, channel, &[])
}

/// As [`spawn_child`], with extra environment variables.
pub fn spawn_child_with(test: &str, role: &str, channel: Channel, env: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        // The child's own libtest report would muddle the parent's; its
        // panics still reach stderr.
        .stdout(Stdio::null())
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(
            channel.into_handle(),
        )));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn test child")
}

/// Runs this test binary again as `role` with no channel.
pub fn spawn_plain(test: &str, role: &str) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn test child")
}

/// In a child: the channel the parent passed on standard input.
pub fn parent_channel() -> Channel {
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .expect("dup stdin");
    Channel::from_handle(Handle::from(fd)).expect("stdin is a channel")
}

/// Waits for a child and asserts it succeeded.
pub fn assert_success(mut child: Child) {
    let status = child.wait().expect("wait");
    assert!(status.success(), "child failed: {status}");
}

/// Asserts the open-handle count is back where it was when created.
pub struct LeakCheck {
    before: usize,
}

impl LeakCheck {
    pub fn new() -> Self {
        LeakCheck {
            before: count_open_handles().expect("count"),
        }
    }

    pub fn assert(&self) {
        let after = count_open_handles().expect("count");
        assert_eq!(
            after, self.before,
            "open handles: {} before, {after} after",
            self.before
        );
    }
}

/// A sealed memfd holding `contents`.
pub fn sealed_memfd(contents: &[u8]) -> Handle {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(
        "handoff-test",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    let mut written = 0;
    while written < contents.len() {
        written += rustix::io::write(&fd, &contents[written..]).unwrap();
    }
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )
    .unwrap();
    Handle::from(fd)
}

/// Reads a whole file-like handle from offset 0.
pub fn read_all(h: &Handle) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut off = 0u64;
    loop {
        let n = rustix::io::pread(h, &mut buf, off).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
        off += n as u64;
    }
}

/// A `handoff::Command` that runs this test binary again, running only
/// `test`, as `role`.
pub fn self_command(test: &str, role: &str) -> handoff::Command {
    let mut cmd = handoff::Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .stdout(Stdio::null());
    cmd
}

/// The descriptor numbers open in this process (without the one used to
/// list them).
pub fn open_fds() -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The listing's own descriptor is closed by now: keep what still exists.
    fds.retain(|fd| std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok());
    fds.sort_unstable();
    fds
}
