//! The child's side of a spawn, from its creation to `execve`, in one file
//! so it can be audited as a whole: the plan the parent prepares (argv,
//! envp, the ordered descriptor moves, the `LISTEN_PID` buffer) and the
//! code that runs it in the child, where only async-signal-safe calls are
//! allowed (no allocation, no locks, no panics). `spawn.rs` builds the
//! plan; `vfork.rs` (Linux) and std's `pre_exec` hook run `child_side`,
//! and `posix_spawn.rs` (portable configuration) turns the same ordered
//! moves into file actions.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicI32;

/// Room for "LISTEN_PID=" plus the digits of any pid and a NUL.
pub(super) const LISTEN_PID_CAPACITY: usize = 40;

/// Everything the child side needs, built before the child exists.
pub(super) struct Plan {
    pub(super) path: CString,
    pub(super) _argv: Vec<CString>,
    pub(super) argv_ptrs: Vec<*const libc::c_char>,
    pub(super) _envp: Vec<CString>,
    pub(super) envp_ptrs: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` followed by space for the digits; the child writes them.
    pub(super) listen_pid: Box<[u8; LISTEN_PID_CAPACITY]>,
    pub(super) has_handles: bool,
    /// The steps that place the standard streams and the handles at 3,
    /// 4, …, ordered in the parent (see `order_moves`).
    pub(super) ops: Vec<Op>,
    /// Where `Op::Park` puts descriptors; filled in by the child.
    pub(super) parked: Vec<RawFd>,
    /// The lowest number above every target.
    pub(super) first_free: RawFd,
    pub(super) cwd: Option<CString>,
    /// Whether the child must reset signal handlers and its mask itself
    /// (std does it on its own path).
    #[cfg_attr(handoff_portable, allow(dead_code))]
    pub(super) reset_signals: bool,
    /// Highest descriptor to visit when `close_range` is unavailable.
    pub(super) fallback_max_fd: RawFd,
    /// The error of the step that failed in a `vfork` child; 0 if none.
    #[cfg_attr(handoff_portable, allow(dead_code))]
    pub(super) child_errno: AtomicI32,
}

/// A descriptor the child reads: a number, or one it parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fd {
    Num(RawFd),
    Parked(usize),
}

/// One step of placing descriptors in the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// The source already has its target's number: clear close-on-exec.
    Keep(RawFd),
    /// Copy a descriptor that a pending move still reads out of the way
    /// (above every target, close-on-exec), into `parked[slot]`.
    Park { fd: RawFd, slot: usize },
    /// `dup2` onto the target (which clears close-on-exec there).
    Dup2 { from: Fd, to: RawFd },
    /// Close `parked[slot]` once no move reads it any more.
    Unpark(usize),
}

/// Orders the (source, target) moves so that no `dup2` overwrites a
/// descriptor a later move still reads, with no copies except one per
/// cycle (a → b, b → a), closed again once the cycle is done: the child
/// needs no more descriptors than its final layout plus one. Targets are distinct; one source may feed
/// several targets (one handle under two names).
pub(super) fn order_moves(moves: &[(RawFd, RawFd)]) -> (Vec<Op>, usize) {
    use std::collections::HashMap;
    let mut ops = Vec::with_capacity(moves.len() + 1);
    let mut pending: Vec<Option<(Fd, RawFd)>> = Vec::with_capacity(moves.len());
    // For each number: the pending moves reading it, and the move writing it.
    let mut readers: HashMap<RawFd, Vec<usize>> = HashMap::new();
    let mut writer: HashMap<RawFd, usize> = HashMap::new();
    for &(src, target) in moves {
        if src == target {
            ops.push(Op::Keep(target));
            continue;
        }
        let i = pending.len();
        pending.push(Some((Fd::Num(src), target)));
        readers.entry(src).or_default().push(i);
        writer.insert(target, i);
    }
    let unread = |readers: &HashMap<RawFd, Vec<usize>>, pending: &[Option<(Fd, RawFd)>], t| {
        readers.get(&t).is_none_or(|r| {
            r.iter()
                .all(|&j| !matches!(pending[j], Some((Fd::Num(s), _)) if s == t))
        })
    };
    let mut ready: Vec<usize> = (0..pending.len())
        .filter(|&i| pending[i].is_some_and(|(_, t)| unread(&readers, &pending, t)))
        .collect();
    let mut parked = 0;
    let mut parked_readers: Vec<usize> = Vec::new();
    let mut next = 0;
    loop {
        while let Some(i) = ready.pop() {
            let Some((from, to)) = pending[i].take() else {
                continue;
            };
            ops.push(Op::Dup2 { from, to });
            if let Fd::Parked(slot) = from {
                if let Some(left) = parked_readers.get_mut(slot) {
                    *left -= 1;
                    if *left == 0 {
                        ops.push(Op::Unpark(slot));
                    }
                }
            }
            // Its source may now be free to overwrite.
            if let Fd::Num(src) = from {
                if let Some(&w) = writer.get(&src) {
                    if pending[w].is_some() && unread(&readers, &pending, src) {
                        ready.push(w);
                    }
                }
            }
        }
        while next < pending.len() && pending[next].is_none() {
            next += 1;
        }
        let Some(&Some((_, target))) = pending.get(next) else {
            break;
        };
        // Only cycles are left: park what this target still holds.
        ops.push(Op::Park {
            fd: target,
            slot: parked,
        });
        let mut count = 0;
        for &j in readers.get(&target).into_iter().flatten() {
            if let Some((src, _)) = &mut pending[j] {
                if *src == Fd::Num(target) {
                    *src = Fd::Parked(parked);
                    count += 1;
                }
            }
        }
        parked_readers.push(count);
        parked += 1;
        ready.push(next);
    }
    (ops, parked)
}

/// Runs in the child between its creation and `exec`; returns only on
/// failure. Async-signal-safe only, and free of panics: on the `vfork` path
/// it shares the parent's memory.
pub(super) fn child_side(plan: &mut Plan) -> io::Error {
    #[cfg(not(handoff_portable))]
    if plan.reset_signals {
        reset_signals();
    }
    // 1. Place every descriptor, in the order worked out in the parent.
    let Plan {
        ops,
        parked,
        first_free,
        ..
    } = plan;
    for op in ops.iter() {
        let rc = match *op {
            Op::Keep(fd) => {
                // SAFETY: fcntl on a descriptor number; no memory involved.
                let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
                if flags < 0 {
                    flags
                } else {
                    // SAFETY: as above.
                    unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) }
                }
            }
            Op::Park { fd, slot } => {
                // SAFETY: fcntl on a descriptor number; no memory involved.
                let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, *first_free) };
                if let Some(p) = parked.get_mut(slot) {
                    *p = copy;
                }
                copy
            }
            Op::Dup2 { from, to } => {
                let src = match from {
                    Fd::Num(n) => n,
                    Fd::Parked(slot) => parked.get(slot).copied().unwrap_or(-1),
                };
                // SAFETY: dup2 between descriptor numbers; the target is
                // cleared of close-on-exec.
                unsafe { libc::dup2(src, to) }
            }
            Op::Unpark(slot) => match parked.get(slot) {
                // SAFETY: closes the copy this child made in `Park`.
                Some(&fd) => unsafe { libc::close(fd) },
                None => 0,
            },
        };
        if rc < 0 {
            return io::Error::last_os_error();
        }
    }
    // 2. Nothing else from 3 + n up survives exec.
    mark_cloexec_from(plan.first_free, plan.fallback_max_fd);
    // 3. The working directory, then LISTEN_PID is this process's own pid.
    if let Some(dir) = &plan.cwd {
        // SAFETY: a NUL-terminated path prepared before the child existed.
        if unsafe { libc::chdir(dir.as_ptr()) } != 0 {
            return io::Error::last_os_error();
        }
    }
    if plan.has_handles {
        // SAFETY: getpid cannot fail and touches no memory.
        let pid = unsafe { libc::getpid() } as u64;
        write_decimal(&mut plan.listen_pid[11..], pid);
    }
    // 4. Exec; only returns on failure.
    // SAFETY: path, argv and envp are NUL-terminated strings in arrays ending
    // with a null pointer, prepared before the child existed and alive here.
    unsafe {
        libc::execve(
            plan.path.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        )
    };
    io::Error::last_os_error()
}

fn mark_cloexec_from(first: RawFd, fallback_max: RawFd) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        // SAFETY: close_range with CLOEXEC only sets a flag on descriptors;
        // called as a raw syscall because not every libc wraps it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            )
        };
        if rc == 0 {
            return;
        }
    }
    for fd in first..fallback_max {
        // SAFETY: fcntl on descriptor numbers that may or may not be open;
        // an unopened one just fails with EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Writes `value` in decimal followed by NUL, without allocating.
fn write_decimal(out: &mut [u8], mut value: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (value % 10) as u8;
        len += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    // No indexing that could panic: this runs in a child sharing memory.
    let mut slots = out.iter_mut();
    for d in digits[..len].iter().rev().chain(Some(&0)) {
        if let Some(slot) = slots.next() {
            *slot = *d;
        }
    }
}

#[cfg(not(handoff_portable))]
/// Puts every signal handler back to its default, `SIGPIPE` included (the
/// Rust runtime ignores it, and an ignored signal stays ignored across
/// exec), then unblocks everything, as std does for its children. Runs in
/// the child while all signals are still blocked.
fn reset_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction reads into and writes from local structs;
        // invalid or reserved numbers just fail.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let handler = old.sa_sigaction;
            if sig == libc::SIGPIPE || (handler != libc::SIG_DFL && handler != libc::SIG_IGN) {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
    }
    // libc refuses to name its own two; an all-zero kernel sigaction is
    // SIG_DFL whatever the architecture's field order.
    for sig in [32, 33] {
        let dfl = [0u64; 4];
        // SAFETY: reads a local zeroed struct as large as any kernel
        // sigaction with an 8-byte mask; the old action is not asked for.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
    let empty: u64 = 0;
    // SAFETY: sets this thread's mask from a local 8-byte kernel sigset.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::{order_moves, Fd, Op};
    use std::collections::HashMap;

    /// Runs the ops on a model descriptor table (number -> object) and
    /// returns it with the number of descriptors parked.
    fn run(moves: &[(i32, i32)]) -> (HashMap<i32, i32>, usize) {
        let mut table: HashMap<i32, i32> = HashMap::new();
        for &(src, _) in moves {
            table.insert(src, src * 1000);
        }
        let (ops, n_parked) = order_moves(moves);
        let mut parked = vec![-1; n_parked];
        let mut next_free = 10_000;
        let mut open_parked = 0;
        for op in ops {
            match op {
                Op::Keep(fd) => assert!(table.contains_key(&fd)),
                Op::Park { fd, slot } => {
                    let obj = table[&fd];
                    table.insert(next_free, obj);
                    parked[slot] = next_free;
                    next_free += 1;
                }
                Op::Dup2 { from, to } => {
                    let src = match from {
                        Fd::Num(n) => n,
                        Fd::Parked(k) => parked[k],
                    };
                    let obj = table[&src];
                    table.insert(to, obj);
                }
                Op::Unpark(slot) => {
                    assert!(table.remove(&parked[slot]).is_some());
                    open_parked -= 1;
                }
            }
            if let Op::Park { .. } = op {
                open_parked += 1;
                assert_eq!(open_parked, 1, "{moves:?}: more than one parked at once");
            }
        }
        assert_eq!(open_parked, 0, "{moves:?}: a parked descriptor stays open");
        (table, n_parked)
    }

    fn check(moves: &[(i32, i32)], max_parked: usize) {
        let (table, parked) = run(moves);
        for &(src, target) in moves {
            assert_eq!(table[&target], src * 1000, "{moves:?}: {target}");
        }
        assert!(parked <= max_parked, "{moves:?}: {parked} parked");
    }

    #[test]
    fn moves_without_clobbering() {
        check(&[(5, 3), (6, 4)], 0);
        check(&[(3, 3), (4, 4)], 0);
        check(&[(4, 3), (3, 4)], 1);
        check(&[(4, 3), (5, 4), (3, 5)], 1);
        check(&[(3, 4), (4, 5), (5, 6), (20, 3)], 0);
        check(&[(4, 3), (4, 4), (9, 5)], 0);
        check(&[(3, 3), (3, 4), (3, 5)], 0);
        check(&[(0, 3), (7, 0), (3, 1)], 0);
        check(&[(4, 3), (3, 4), (6, 5), (5, 6)], 2);
        // Random permutations of 3..3+n onto themselves, with duplicates.
        let mut seed = 0x2545_f491_u64;
        let mut rand = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..500 {
            let n = 1 + rand(40) as i32;
            let mut sources: Vec<i32> = (3..3 + n).collect();
            for i in (1..sources.len()).rev() {
                sources.swap(i, rand(i as u64 + 1) as usize);
            }
            if rand(3) == 0 {
                let j = rand(n as u64) as usize;
                sources[j] = sources[(j + 1) % n as usize];
            }
            let moves: Vec<(i32, i32)> = sources.iter().zip(3..).map(|(&s, t)| (s, t)).collect();
            check(&moves, n as usize);
        }
    }

    #[test]
    fn decimal() {
        let mut buf = [9u8; 24];
        super::write_decimal(&mut buf, 4_194_304);
        assert_eq!(&buf[..8], b"4194304\0");
        super::write_decimal(&mut buf, 0);
        assert_eq!(&buf[..2], b"0\0");
    }
}
