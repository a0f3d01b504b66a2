//! Plumbing shared by the integration tests, on every platform: re-running
//! the test binary itself as a child process with a role, counting open
//! handles, and making the test objects each platform has.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use handoff::{count_open_handles, AsHandle, BorrowedHandle, Channel, Handle, RawHandle};

#[cfg(all(target_os = "linux", feature = "tokio"))]
pub mod handover;
mod named;
#[allow(unused_imports)]
pub use named::named;

const ROLE_ENV: &str = "HANDOFF_TEST_ROLE";

/// The name of the test function it is written in, as libtest lists it
/// and `--exact` wants it: how a test re-runs itself in a child without
/// spelling its own name again.
#[allow(unused_macros)]
macro_rules! this_test {
    () => {{
        fn here() {}
        &*$crate::common::test_name(::std::any::type_name_of_val(&here))
    }};
}
#[allow(unused_imports)]
pub(crate) use this_test;

/// The test's name from the path of an item declared in it
/// (`crate::module::test::here`, with `{{closure}}` steps when declared in
/// a closure or async block): the path less the crate, the item and those
/// steps.
pub fn test_name(item_path: &'static str) -> String {
    let steps: Vec<&str> = item_path
        .split("::")
        .skip(1)
        .filter(|s| !s.starts_with('{'))
        .collect();
    steps[..steps.len() - 1].join("::")
}

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

/// Runs `test` with no other counting test of this binary at the same
/// time, and asserts the open-handle count afterwards is what it was before.
pub fn without_leaks(test: impl FnOnce()) {
    let _serial = serial();
    let leaks = LeakCheck::new();
    test();
    leaks.assert();
}

/// As [`without_leaks`], counting only once the async side has made what it
/// makes once per process (see [`warm_up`]).
pub fn without_leaks_once_warm(test: impl FnOnce()) {
    let _serial = serial();
    warm_up();
    let leaks = LeakCheck::new();
    test();
    leaks.assert();
}

/// A handle as std's `Stdio` (for `std::process::Command`).
pub fn std_stdio(h: Handle) -> Stdio {
    #[cfg(unix)]
    {
        Stdio::from(std::os::fd::OwnedFd::from(h))
    }
    #[cfg(windows)]
    {
        Stdio::from(std::os::windows::io::OwnedHandle::from(h))
    }
}

/// Runs this test binary again, running only `test`, as `role`, with
/// `channel` (the child's end) as its standard input.
pub fn spawn_child(test: &str, role: &str, channel: Channel) -> Child {
    spawn_child_with(test, role, channel, &[])
}

/// Re-runs this binary's `test` in the role "child", and returns our end
/// of a channel to it with the child.
pub fn spawn_child_on_channel(test: &str) -> (Channel, Child) {
    let (ours, theirs) = Channel::pair().unwrap();
    (ours, spawn_child(test, "child", theirs))
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
        .stdin(std_stdio(channel.into_handle()));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn test child")
}

/// Runs this test binary again as `role` with no channel.
pub fn spawn_plain(test: &str, role: &str) -> Child {
    spawn_plain_with(test, role, &[])
}

/// As [`spawn_plain`], with extra environment variables.
pub fn spawn_plain_with(test: &str, role: &str, env: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn test child")
}

/// In a child: the channel the parent passed on standard input.
pub fn parent_channel() -> Channel {
    let h = std::io::stdin()
        .as_handle()
        .try_clone_to_owned()
        .expect("duplicate stdin");
    Channel::from_handle(h).expect("stdin is a channel")
}

/// In a child: the channel the parent passed on standard input; in the
/// parent (no role), `None`. How a test that re-runs itself tells which
/// side it is on.
pub fn child_channel() -> Option<Channel> {
    role().map(|_| parent_channel())
}

/// Lowers this process's descriptor limit to leave room for `more`
/// descriptors beyond those open now (Unix: RLIMIT_NOFILE).
#[cfg(unix)]
pub fn leave_room_for(more: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let open = count_open_handles().unwrap() as u64;
    let old = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(open + more),
            maximum: old.maximum,
        },
    )
    .unwrap();
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

/// The null device, opened for reading.
pub fn null_file() -> std::fs::File {
    #[cfg(unix)]
    let path = "/dev/null";
    #[cfg(windows)]
    let path = "NUL";
    std::fs::File::open(path).expect("open the null device")
}

/// Read-only anonymous shared memory holding `contents` after handoff's
/// 64-byte startup header: sealed on Linux, a read-only section on
/// Windows. Its size is `64 + contents.len()`.
pub fn shared_memory(contents: &[u8]) -> Handle {
    handoff::startup::create(contents).expect("create shared memory")
}

/// The size the kernel reports for shared memory created for `n` bytes:
/// exact on Unix, whole pages for a Windows section.
pub fn shm_size(n: u64) -> u64 {
    if cfg!(windows) {
        n.div_ceil(4096) * 4096
    } else {
        n
    }
}

/// Opens a directory as a handle (Windows needs backup semantics for it).
pub fn open_dir(path: &std::path::Path) -> std::fs::File {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(windows)]
    std::os::windows::fs::OpenOptionsExt::custom_flags(&mut o, 0x0200_0000);
    o.open(path).expect("open a directory")
}

/// A `handoff::Command` that runs this test binary again, running only
/// `test`, as `role`.
pub fn self_command(test: &str, role: &str) -> handoff::Command {
    let mut cmd = handoff::Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .stdout(handoff::spawn::Stdio::null());
    cmd
}

/// Re-runs this binary's `test` in the role "child" with `handles` passed
/// under their names, and asserts the child succeeded.
pub fn run_child_with_handles(test: &str, handles: &[(&str, BorrowedHandle<'_>)]) {
    let mut cmd = self_command(test, "child");
    for (name, handle) in handles {
        cmd.handle(name, handle);
    }
    let status = cmd.spawn().unwrap().wait().unwrap();
    assert!(status.success(), "child failed: {status:?}");
}

/// Reads a whole file-like handle from offset 0.
pub fn read_all(h: &Handle) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut off = 0u64;
    loop {
        let n = read_at(h, &mut buf, off);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
        off += n as u64;
    }
}

/// Reads at `offset` without a shared file position where the platform
/// allows (pread); Windows moves the position of a synchronous handle.
pub fn read_at(h: &Handle, buf: &mut [u8], offset: u64) -> usize {
    let file = std::fs::File::from(h.try_clone().expect("duplicate"));
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(&file, buf, offset).expect("read")
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(&file, buf, offset).expect("read")
    }
}

/// A sealed memfd holding `contents`.
#[cfg(target_os = "linux")]
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

/// The descriptor numbers open in this process (without the one used to
/// list them).
#[cfg(target_os = "linux")]
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

/// Runs `f` with the thread id of another thread of this process, which
/// lives until `f` returns.
#[cfg(target_os = "linux")]
pub fn with_another_thread(f: impl FnOnce(u32)) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        tx.send(rustix::thread::gettid().as_raw_nonzero().get() as u32)
            .unwrap();
        let _ = done_rx.recv();
    });
    f(rx.recv().unwrap());
    drop(done_tx);
    t.join().unwrap();
}

/// A handle's number as it travels to another process: the descriptor on
/// Unix, the 32-bit value on Windows.
pub fn number_of(h: BorrowedHandle<'_>) -> String {
    #[cfg(unix)]
    {
        h.raw().to_string()
    }
    #[cfg(windows)]
    {
        (h.raw() as usize as u32).to_string()
    }
}

/// The number back as a `RawHandle` (sign-extended on Windows).
pub fn parse_number(bytes: &[u8]) -> RawHandle {
    let s = std::str::from_utf8(bytes).unwrap();
    #[cfg(unix)]
    {
        s.parse::<i32>().unwrap()
    }
    #[cfg(windows)]
    {
        s.parse::<u32>().unwrap() as i32 as isize as RawHandle
    }
}

/// Receives the number of a handle another process pushed into this one
/// (`Target::Process`) and takes ownership of it by pulling it out of this
/// process with close-source (no unsafe code needed).
pub fn take_pushed(ch: &Channel) -> Handle {
    let value = parse_number(&ch.recv().unwrap().bytes);
    let me = handoff::Process::current().unwrap();
    handoff::duplicate(
        handoff::Source::Process {
            process: &me,
            handle: value,
        },
        handoff::Target::Current,
        None,
        handoff::DupOptions {
            close_source: true,
            ..handoff::DupOptions::default()
        },
    )
    .unwrap()
    .into_handle()
    .unwrap()
}

/// The runtime the async tests run on: two workers, I/O and time.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Makes what the async side creates once per process (on Windows, the
/// thread that waits for overlapped operations and its event) before a
/// test counts handles.
pub fn warm_up() {
    runtime().block_on(async {
        let (a, b) = handoff::AsyncChannel::pair().unwrap();
        let (sent, got) = tokio::join!(a.send(b"warm", &[]), b.recv());
        sent.unwrap();
        got.unwrap();
    });
}

/// Polls `done` until it holds; fails the test after 30 seconds, so that a
/// condition that never comes is a failure rather than a hang.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The fault an RPC call ended with; fails the test on any other outcome.
pub fn fault<T: std::fmt::Debug, E: std::fmt::Debug>(
    r: Result<T, handoff::rpc::CallError<E>>,
) -> handoff::rpc::Fault {
    match r {
        Err(handoff::rpc::CallError::Fault(f)) => f,
        other => panic!("expected a fault, got {other:?}"),
    }
}

/// In a child that has claimed `claimed`: claiming it again, claiming a name
/// the parent never gave, and reading the environment a second time are
/// each refused with their own error.
pub fn assert_claims_refused(inherited: &mut handoff::Inherited, claimed: &str) {
    assert!(matches!(
        inherited.take(claimed),
        Err(handoff::Error::AlreadyClaimed(_))
    ));
    assert!(matches!(
        inherited.take("nope"),
        Err(handoff::Error::MissingHandle(_))
    ));
    assert!(matches!(
        handoff::Inherited::from_env(),
        Err(handoff::Error::AlreadyClaimed(_))
    ));
}

/// A file named "f" holding `contents`, in a fresh temporary directory that
/// is removed when the returned `TempDir` drops; and the file's path.
pub fn temp_file(contents: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

/// An existing file opened for reading and writing.
pub fn open_rw(path: impl AsRef<std::path::Path>) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// Where an RPC test's client child finds the server.
pub const RPC_PATH_ENV: &str = "HANDOFF_RPC_PATH";
/// Which of the server's clients an RPC test's child is.
pub const RPC_INDEX_ENV: &str = "HANDOFF_RPC_INDEX";

/// An RPC server running on a runtime of its own, and what its
/// implementation counts.
pub struct Serving<S> {
    pub rt: tokio::runtime::Runtime,
    /// Where it listens (see [`listener_path`]).
    pub path: std::path::PathBuf,
    pub stats: std::sync::Arc<S>,
    _dir: tempfile::TempDir,
}

/// Starts `server`, whose implementation counts into `stats`, on a fresh
/// runtime and a fresh address.
pub fn serve<D: handoff::rpc::Dispatch, S>(
    server: handoff::rpc::Server<D>,
    stats: std::sync::Arc<S>,
) -> Serving<S> {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = listener_path(dir.path());
    let listener = {
        let _enter = rt.enter();
        handoff::AsyncListener::bind(&path).unwrap()
    };
    rt.spawn(server.serve(listener));
    Serving {
        rt,
        path,
        stats,
        _dir: dir,
    }
}

impl<S> Serving<S> {
    /// Re-runs this binary's `test` in `role` as client number `index` of
    /// this server (the address in `RPC_PATH_ENV`, the number in
    /// `RPC_INDEX_ENV`); returns our end of a channel to it, and the child.
    pub fn spawn_client(&self, test: &str, role: &str, index: usize) -> (Channel, Child) {
        let (ours, theirs) = Channel::pair().unwrap();
        let path = self.path.to_str().unwrap();
        let index = index.to_string();
        let env = [(RPC_PATH_ENV, path), (RPC_INDEX_ENV, index.as_str())];
        (ours, spawn_child_with(test, role, theirs, &env))
    }

    /// Stops the server: its runtime goes, so its connections end and its
    /// contexts run down.
    pub fn stop(self) -> std::sync::Arc<S> {
        drop(self.rt);
        self.stats
    }
}

/// A file, a directory and both ends of a pipe report their kinds.
pub fn assert_kinds_every_platform_has() {
    use handoff::{Kind, PipeEnd};
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("f")).unwrap();
    assert_eq!(file.as_handle().kind().unwrap(), Kind::File);
    let d = open_dir(dir.path());
    assert_eq!(d.as_handle().kind().unwrap(), Kind::Directory);
    let (r, w) = std::io::pipe().unwrap();
    assert_eq!(
        r.as_handle().kind().unwrap(),
        Kind::Pipe { end: PipeEnd::Read }
    );
    assert_eq!(
        w.as_handle().kind().unwrap(),
        Kind::Pipe {
            end: PipeEnd::Write
        }
    );
}

/// In a child: claims "config", which must be a file opened for reading
/// only; a claimed handle is not inherited any further.
pub fn claim_read_only_config(inherited: &mut handoff::Inherited) -> Handle {
    use handoff::{Access, Expect, KindName};
    let config = inherited
        .take_checked(
            "config",
            &Expect::kind(KindName::File).exact_access(Access::READ),
        )
        .unwrap();
    assert!(
        !config.is_inheritable().unwrap(),
        "claimed handles go no further"
    );
    config
}

/// Reads a handle (a child's piped stdout, say) to its end, as text.
pub fn read_text(h: impl Into<Handle>) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(h.into()), &mut text).unwrap();
    text
}

/// `fault` is `WrongKind` for `parameter`: `expected` declared, and a kind
/// starting with `actual` received.
pub fn assert_wrong_kind(
    fault: handoff::rpc::Fault,
    parameter: &str,
    expected: &str,
    actual: &str,
) {
    let handoff::rpc::Fault::WrongKind {
        parameter: p,
        expected: e,
        actual: a,
    } = fault
    else {
        panic!("{fault:?}")
    };
    assert_eq!((p.as_str(), e.as_str()), (parameter, expected));
    assert!(a.starts_with(actual), "{a}");
}

/// `fault` is `WrongAccess` for `parameter`: `expected` declared, `actual`
/// received.
pub fn assert_wrong_access(
    fault: handoff::rpc::Fault,
    parameter: &str,
    expected: &str,
    actual: &str,
) {
    match fault {
        handoff::rpc::Fault::WrongAccess {
            parameter: p,
            expected: e,
            actual: a,
        } => assert_eq!(
            (p.as_str(), e.as_str(), a.as_str()),
            (parameter, expected, actual)
        ),
        other => panic!("{other:?}"),
    }
}

/// In a client child: tells the parent it is ready, then waits to be
/// killed, odd-numbered clients inside `hold` (so they die with a call in
/// flight on the server), even ones on the parent's channel.
pub fn ready_to_be_killed(parent: &Channel, index: usize, hold: impl FnOnce()) -> ! {
    parent.send(b"ready", &[]).unwrap();
    if index % 2 == 1 {
        hold();
    } else {
        let _ = parent.recv();
    }
    unreachable!("the parent kills this process");
}

/// Re-runs this binary's `test` as a client of the listener at `path` (the
/// child's role says where: see [`client_channel`]).
pub fn spawn_listener_client(test: &str, path: &std::path::Path) -> Child {
    spawn_plain(test, &format!("client:{}", path.display()))
}

/// In a child started by [`spawn_listener_client`]: a channel connected
/// to the listener its role names; in the parent (no role), `None`.
pub fn client_channel() -> Option<Channel> {
    let role = role()?;
    Some(Channel::connect(role.strip_prefix("client:").unwrap()).unwrap())
}

/// Runs `test` with a listener bound at a fresh address (and that
/// address), no other counting test running, and asserts the open-handle
/// count is back where it was afterwards.
pub fn with_listener(test: impl FnOnce(handoff::Listener, &std::path::Path)) {
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = listener_path(dir.path());
        test(handoff::Listener::bind(&path).unwrap(), &path);
    });
}

/// Runs `test` on the async runtime with a listener bound at a fresh
/// address (and that address, for clients), counting handles once warm.
pub fn with_async_listener<F: std::future::Future<Output = ()>>(
    test: impl FnOnce(handoff::AsyncListener, std::path::PathBuf) -> F,
) {
    without_leaks_once_warm(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = listener_path(dir.path());
        runtime().block_on(async {
            let listener = handoff::AsyncListener::bind(&path).unwrap();
            test(listener, path.clone()).await
        });
    });
}

/// Where a listener binds: a socket file in `dir` on Unix, a fresh pipe
/// name on Windows.
pub fn listener_path(dir: &std::path::Path) -> std::path::PathBuf {
    if cfg!(windows) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!(r"\\.\pipe\handoff-test-{}-{nanos}", std::process::id()).into()
    } else {
        dir.join("sock")
    }
}

/// Writes `bytes` with one `sendmsg` on `sock`, `n` duplicates of
/// /dev/null attached (closed here once sent: the receiver's copies are its
/// own); returns the bytes the kernel took. How the raw-peer tests forge
/// datagrams and frames.
#[cfg(unix)]
pub fn sendmsg_with_devnull(
    sock: impl std::os::fd::AsFd,
    bytes: &[u8],
    n: usize,
    flags: rustix::net::SendFlags,
) -> usize {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};
    use std::os::fd::AsFd as _;
    let file = std::fs::File::open("/dev/null").unwrap();
    let fds: Vec<_> = (0..n).map(|_| file.as_fd()).collect();
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if n > 0 {
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    }
    rustix::net::sendmsg(sock, &[std::io::IoSlice::new(bytes)], &mut control, flags).unwrap()
}

/// A connected pair of seqpacket Unix sockets (Linux; the other Unix
/// systems have none), for the checks that a channel of the stream
/// transport refuses one.
#[cfg(target_os = "linux")]
pub fn seqpacket_pair() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}
