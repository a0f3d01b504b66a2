//! Creating a child with `clone(CLONE_VM | CLONE_VFORK)` (Linux).
//!
//! `fork` copies the parent's page tables and then pays copy-on-write faults
//! in the parent; for a process with a large heap that is most of the cost
//! of spawning. A `CLONE_VM` child shares the parent's memory instead and
//! `CLONE_VFORK` suspends the parent until the child has called `execve`
//! (or exited), so the child runs `child_side` on a small stack of its own,
//! reading the plan prepared before the clone, and reports a failed step by
//! writing its errno into that plan.
//!
//! Where `CLONE_VM | CLONE_VFORK` is emulated with a plain fork (qemu-user,
//! valgrind), the child's errno never reaches the parent: a failed exec
//! then looks like a child that exited with 127, as it does with glibc's
//! `posix_spawn` there.
//!
//! Sharing memory puts two rules on the child: no signal handler of the
//! parent may run in it (every signal is blocked, libc's internal ones
//! included, from before the clone until the child has reset handlers to
//! their defaults), and it must not allocate, lock, panic or touch
//! thread-local state other than `errno`.

use std::ffi::c_void;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::child::{child_side, Plan};
use super::process::pidfd_for;

/// The child's stack: the child side needs a few KiB; the rest is margin,
/// mapped lazily. The lowest page is a guard.
const STACK_SIZE: usize = 256 * 1024;
const GUARD: usize = 4096;

/// Clones a child that runs the plan; returns its pid and pidfd once it has
/// called `execve`, or the error of the step that failed (the child is then
/// reaped before returning).
pub(super) fn spawn(plan: &mut Plan) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    let stack = Stack::new()?;
    let mut pidfd: libc::c_int = -1;
    let blocked = SignalsBlocked::all()?;
    let mut pid = clone(plan, &stack, libc::CLONE_PIDFD, &mut pidfd);
    if pid < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // Kernels before 5.2 have no CLONE_PIDFD.
        pid = clone(plan, &stack, 0, &mut pidfd);
    }
    let clone_error = io::Error::last_os_error();
    drop(blocked);
    // The child has exec'd or exited: its stack is free again.
    drop(stack);
    if pid < 0 {
        return Err(clone_error);
    }
    let pidfd = if pidfd >= 0 {
        // SAFETY: the kernel stored a new pidfd that nothing else owns.
        Some(unsafe { OwnedFd::from_raw_fd(pidfd) })
    } else {
        pidfd_for(pid)
    };
    let errno = plan.child_errno.load(Ordering::Acquire);
    if errno != 0 {
        // The child exited with 127 before exec; reap it so no zombie stays.
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child, writing into a local integer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break;
            }
        }
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok((pid, pidfd))
}

fn clone(plan: &mut Plan, stack: &Stack, extra: libc::c_int, pidfd: &mut libc::c_int) -> i32 {
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD | extra;
    // SAFETY: the child runs `entry` on a stack mapped for it alone, with
    // every signal blocked; the parent stays suspended (CLONE_VFORK) until
    // the child has exec'd or exited, so the plan and the stack outlive
    // every use the child makes of them. With CLONE_PIDFD the kernel writes
    // the pidfd into `pidfd` (the parent_tid argument).
    unsafe {
        libc::clone(
            entry,
            stack.top(),
            flags,
            (plan as *mut Plan).cast::<c_void>(),
            pidfd as *mut libc::c_int,
        )
    }
}

extern "C" fn entry(arg: *mut c_void) -> libc::c_int {
    // SAFETY: `arg` is the plan passed to clone; the parent is suspended
    // and does not touch it until this child has exec'd or exited.
    let plan = unsafe { &mut *arg.cast::<Plan>() };
    let error = child_side(plan);
    let errno = error
        .raw_os_error()
        .filter(|&e| e > 0)
        .unwrap_or(libc::EINVAL);
    plan.child_errno.store(errno, Ordering::Release);
    // SAFETY: ends the child without running anything of the parent's
    // (no atexit handlers, no stdio flushing on shared buffers).
    unsafe { libc::_exit(127) }
}

/// Every signal blocked in this thread, libc's internal ones included
/// (hence the raw system call: libc's wrappers leave those unblocked),
/// until dropped.
struct SignalsBlocked {
    old: u64,
}

impl SignalsBlocked {
    fn all() -> io::Result<SignalsBlocked> {
        let all: u64 = !0;
        let mut old: u64 = 0;
        // SAFETY: reads and writes 8-byte kernel sigsets on this stack.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &all as *const u64,
                &mut old as *mut u64,
                8usize,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SignalsBlocked { old })
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `all`.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &self.old as *const u64,
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
}

/// An anonymous mapping used as the child's stack, with a guard page below.
struct Stack {
    base: *mut c_void,
}

impl Stack {
    fn new() -> io::Result<Stack> {
        use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
        // SAFETY: a fresh anonymous mapping that aliases nothing; the guard
        // page is its own lowest page.
        unsafe {
            let base = rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                STACK_SIZE,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::STACK,
            )?;
            let stack = Stack { base };
            rustix::mm::mprotect(base, GUARD, MprotectFlags::empty())?;
            Ok(stack)
        }
    }

    /// The highest address, where a downward-growing stack starts.
    fn top(&self) -> *mut c_void {
        // SAFETY: one past the end of the mapping, 16-byte aligned since
        // the mapping is page-aligned and its size a multiple of pages.
        unsafe { self.base.cast::<u8>().add(STACK_SIZE).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, used by no one
        // once the child has exec'd or exited.
        let _ = unsafe { rustix::mm::munmap(self.base, STACK_SIZE) };
    }
}
