//! Backends: the only place with `unsafe` code and system calls.
//!
//! The portable modules above (`handle`, `channel`, …) call into exactly one
//! backend, chosen here by `cfg`: `unix/`, `windows/`, or `shell/`, the stub
//! that implements every item by returning `Unsupported` (chosen with
//! `--cfg handoff_no_backend`, and on platforms with no backend). Every
//! backend provides the same modules with the same items, and this list is
//! the contract a new backend must meet; CI builds the library on the stub,
//! so an item portable code uses that is missing from a backend is a compile
//! error rather than drift. Portable code names only `sys::<module>::<item>`
//! from this table, never a backend's own module.
//!
//! | item | meaning |
//! |---|---|
//! | `OwnedRaw`, `BorrowedRaw<'a>`, `RawHandle` | the platform's owned and borrowed handle types (std's `OwnedFd`/`BorrowedFd`, `OwnedHandle`/`BorrowedHandle`) and the number that names a handle in one process |
//! | `handle::try_clone(b) -> io::Result<OwnedRaw>` | a new handle to the same object, created non-inheritable in one step |
//! | `handle::kind(b) -> io::Result<Kind>` | what the object is, read from the kernel |
//! | `handle::access(b) -> io::Result<Access>` | the rights the handle grants, read from the kernel |
//! | `handle::is_inheritable(b)`, `handle::set_inheritable(b, on)` | close-on-exec / `HANDLE_FLAG_INHERIT` |
//! | `handle::restrict(b, access) -> Result<OwnedRaw>` | a new handle with fewer rights enforced by the kernel, `Error::Unsupported` where the kind cannot be narrowed, `Error::WrongAccess` when asking for rights the handle lacks |
//! | `handle::borrow_raw`, `handle::own_raw` (`unsafe`) | the one place raw numbers become handles |
//! | `handle::as_raw_slice(&[BorrowedHandle]) -> &[BorrowedRaw]` | the portable borrowed handles as the backend's, without copying |
//! | `handle::raw_from_bits(u64) -> RawHandle` | a handle number from its widened form (`Inherited` stores numbers as `u64`) |
//! | `handle::claim_inherited(raw) -> io::Result<OwnedRaw>` | own a handle the parent passed, after checking it is open and arrived by inheritance; make it non-inheritable |
//! | `handle::count_open() -> io::Result<usize>` | how many handles the process holds (leak checks) |
//! | `socket::Socket`, `From<OwnedRaw> for Socket`, `socket::as_raw`, `socket::into_raw` | one end of a channel, made from, lent as and given up as a handle |
//! | `socket::pair()`, `socket::connect(path)` | channel ends that keep datagram boundaries (Unix portable configuration: stream sockets whose `send`/`recv` frame each fragment) |
//! | `listener::Listening` (Unix: `AsFd`), `listener::bind(path, backlog)`, `listener::accept(l, nb)`, `listener::wait_accept(l)`, `listener::file_identity`, `listener::remove_if_same`; Windows also `listener::poll_accept` | listeners many clients connect to (an uninhabited type and `Unsupported` where there are none) |
//! | `socket::is_channel(b)`, `socket::CHANNEL_KIND` | whether a handle can be a channel end, and what one is called in errors |
//! | `socket::configure(s, want) -> io::Result<usize>` | prepare a channel end, return the largest datagram it can send |
//! | `socket::send(s, header, payload, handles, nb)` | send one datagram atomically with its handles; non-blocking, `WouldBlock` means nothing of it went out, and `Ok` that it is committed (a byte stream may keep an unsent tail for `flush`) |
//! | `socket::flush(s, nb)` | write out a committed fragment's unsent tail (`WouldBlock` while there is no room); `Ok` at once where sends are whole |
//! | `socket::recv(s, header, dst, scratch, on_handle, nb) -> io::Result<Received>` | receive one datagram, handing every handle it carried to `on_handle`, owned, before anything is checked; report truncation of bytes or handles; the transport's own framing errors are `InvalidData` |
//! | `socket::peer_hung_up(s)`, `socket::wait(s, writable)` | end-of-file told from an empty datagram; wait for readiness after a would-block |
//! | `random::fill(buf)` | bytes from the system's random generator (RPC context tokens) |
//! | `socket::is_exhaustion(e)` | whether an error means "out of handles or memory for now" (the RPC server waits it out) |
//! | `reactor` (feature `tokio`): `Registered<T>` with `readable()` (a guard with `clear_ready`), `get_ref`, `into_inner`; `register(x, interest)`, `register_listener(l)`, `CHANNEL_INTEREST`, `when_writable(channel, attempt)` | readiness for `AsyncChannel`/`AsyncListener`, whose code is the same on every backend: a non-blocking `send`/`recv`/`accept` after readiness, and a future dropped while waiting loses nothing (Unix: `Registered` is tokio's `AsyncFd`, channels registered for reading only and a send that finds the socket full waiting through a duplicate registered for writing, so replies read by the peer wake nobody; Windows: overlapped operations owned by the end, `socket::poll_readable`/`poll_writable`/`poll_accept`) |
//! | `socket::MAX_HANDLES_PER_DATAGRAM` | how many handles one datagram (fragment) carries |
//! | `socket::peer_credentials(s)` | pid, uid, gid and a race-free process handle where the OS has one (Windows: the pid the pipe recorded, a handle opened by it, uid/gid `u32::MAX`), else `Unsupported` (`socket::NO_PEER_CREDENTIALS` says why) |
//! | `socket::NO_TRANSPORT` | why channels or listeners are `Unsupported` where a backend reports `ErrorKind::Unsupported` |
//! | `shm::create_with_reader(name, len)`, `shm::CAN_GROW` | anonymous, non-inheritable shared memory of `len` bytes, and a read-only handle to it where none can be made later (Unix portable configuration: POSIX shared memory, whose name is unlinked at once), else `None`; whether it can grow after creation |
//! | `shm::size_fits(wanted, size)` | whether an object of `size` bytes is what `wanted` bytes were created as (sections round up to pages) |
//! | `shm::write_all_at`, `shm::read_exact_at`, `shm::read`, `shm::len`, `shm::copy_in_kernel`, `shm::add_seals` | fill and inspect it (`add_seals` is `Unsupported` where nothing can be sealed) |
//! | `shm::Mapping::read_only(b, len, populate)`, `Mapping::as_slice` | a read-only mapping whose bytes cannot change under the slice |
//! | `spawn::SpawnRequest`, `spawn::spawn(&mut Spec, req) -> io::Result<spawn::Child>` | start the command described by the portable `Spec` (program, arguments, environment, directory, `Stdio`s) so that it inherits exactly its standard handles and the named handles, under the platform's convention; Unix also provides `spawn::StdCommand` (`new(program)`, `as_std_mut`), where `spawn::unix::CommandExt` (`sys/command_ext.rs`) records uid, gid, process group and `pre_exec` hooks |
//! | `spawn::CONVENTION_VARS`, `spawn::HANDLES_VAR`, `spawn::same_var`, `spawn::forget_convention_vars()` | the convention's variables (never passed on from the parent's own environment), how names compare, and removing them from this process's environment once claimed |
//! | Windows: `spawn::parent_pid()` | the parent's pid, which the Windows convention checks against `HANDOFF_PARENT_PID` |
//! | `spawn::Child` | `id`, `exit_handle`, `wait`, `try_wait`, `kill`, `take_stdio` |
//! | `process::current_pid()`, `process::open(pid) -> Result<OwnedRaw>`, `process::pid_of(b)` | a process held by handle (pidfd, `OpenProcess`), opened by pid or checked to be one; errors are `crate::Error` naming the cause (no such process, a thread id, missing rights) |
//! | `process::wait(b, pid, block) -> Result<Option<ExitStatus>>`, `process::kill(b, pid)` | wait for or poll the exit; kill (`SIGKILL`, `TerminateProcess`); a process that exited is `NoSuchProcess` to `kill` |
//! | `process::pull(b, pid, value, close_source) -> Result<OwnedRaw>` | copy handle `value` of that process into this one, non-inheritable; `NoSuchHandle`, `NoSuchProcess`, `NotPermitted` by cause |
//! | `process::push(b, pid, handle, inheritable) -> Result<u32>`, `process::NO_PUSH`, `process::NO_REMOTE_CLOSE` | duplicate a handle into that process and return its 32-bit value there; the constants say why pushing or closing in another process is `Unsupported` (`None` where it works) |
//!
//! Rules every backend keeps: every handle it creates is non-inheritable
//! (except the duplicates it makes for one child); a received handle is
//! owned before any check can return early; `Drop` never panics; errors are
//! `io::Error` from the call that failed, mapped to `crate::Error` by the
//! portable layer, except `process`, whose errors depend on the call
//! and are `crate::Error` from the backend. `signal` is Unix-only.
#![allow(unsafe_code)]

// Unix settings of `Command` (uid, gid, process group, `pre_exec`), the
// same on every backend there.
#[cfg(unix)]
mod command_ext;

// The bounds check both shared-memory backends make before mapping.
#[cfg(all(any(unix, windows), not(handoff_no_backend)))]
mod mapping;

#[cfg(all(unix, not(handoff_no_backend)))]
mod unix;
#[cfg(all(unix, not(handoff_no_backend)))]
pub(crate) use unix::*;

#[cfg(all(windows, not(handoff_no_backend)))]
mod windows;
#[cfg(all(windows, not(handoff_no_backend)))]
pub(crate) use windows::*;

#[cfg(any(handoff_no_backend, not(any(unix, windows))))]
mod shell;
#[cfg(any(handoff_no_backend, not(any(unix, windows))))]
pub(crate) use shell::*;
