//! Spawning through `posix_spawn` (portable configuration).
//!
//! The descriptor moves that `child_side` makes by hand become file
//! actions, in the same order (`order_moves`): a parked descriptor gets a
//! fixed number above every source and target instead of one chosen in
//! the child, and is closed again once its cycle is done. What the platform
//! offers to keep nothing else decides the rest:
//!
//! - Apple: `POSIX_SPAWN_CLOEXEC_DEFAULT` closes every descriptor the file
//!   actions do not name, so a descriptor already at its target number and
//!   an inherited standard stream are named with
//!   `posix_spawn_file_actions_addinherit_np`.
//! - Linux with glibc (2.34 or newer): `posix_spawn_file_actions_addclosefrom_np`
//!   from the first number above the targets. A descriptor already at its
//!   target number goes out and back through a spare number: the `dup2`
//!   back clears close-on-exec whatever the C library makes of a `dup2`
//!   onto itself (POSIX.1-2024 says it must clear the flag, and glibc does
//!   since 2.29, measured here on 2.36; older C libraries leave it set).
//! - Elsewhere (FreeBSD, whose `posix_spawn_file_actions_addclosefrom_np`
//!   the libc crate does not declare): nothing closes the rest, so a
//!   descriptor this process itself inherited without close-on-exec
//!   reaches the child; every descriptor handoff creates is close-on-exec,
//!   so none of its own can.
//!
//! `posix_spawn` cannot write the child's pid into its environment, so a
//! spawn that names handles (`LISTEN_PID`) is not made here; nor one that
//! changes directory where the libc crate has no
//! `posix_spawn_file_actions_addchdir_np`. `spawn.rs` chooses.
//!
//! As on the other paths, `SIGPIPE` (which the Rust runtime ignores) is
//! reset to its default and the signal mask emptied; caught signals are
//! reset by `exec` itself.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use super::child::{Fd, Op, Plan};

/// Whether the file actions can change directory on this target.
pub(super) const CAN_CHDIR: bool = cfg!(any(
    target_vendor = "apple",
    all(
        target_os = "linux",
        any(target_env = "gnu", target_env = "musl")
    )
));

#[cfg(target_vendor = "apple")]
extern "C" {
    // In libSystem since macOS 10.15; the libc crate does not declare it.
    fn posix_spawn_file_actions_addinherit_np(
        actions: *mut libc::posix_spawn_file_actions_t,
        fd: libc::c_int,
    ) -> libc::c_int;
}

/// File actions, destroyed on drop.
struct Actions(libc::posix_spawn_file_actions_t);

impl Actions {
    fn new() -> io::Result<Actions> {
        let mut raw = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        // SAFETY: initialises the object `raw` points at.
        check(unsafe { libc::posix_spawn_file_actions_init(raw.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful call above.
        Ok(Actions(unsafe { raw.assume_init() }))
    }

    fn dup2(&mut self, from: RawFd, to: RawFd) -> io::Result<()> {
        // SAFETY: records an action in an initialised object.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, from, to) })
    }

    fn close(&mut self, fd: RawFd) -> io::Result<()> {
        // SAFETY: records an action in an initialised object.
        check(unsafe { libc::posix_spawn_file_actions_addclose(&mut self.0, fd) })
    }

    /// Keeps `fd` open across exec at its own number.
    fn keep(&mut self, fd: RawFd, spare: RawFd) -> io::Result<()> {
        #[cfg(target_vendor = "apple")]
        {
            let _ = spare;
            // SAFETY: records an action in an initialised object.
            check(unsafe { posix_spawn_file_actions_addinherit_np(&mut self.0, fd) })
        }
        #[cfg(not(target_vendor = "apple"))]
        {
            self.dup2(fd, spare)?;
            self.dup2(spare, fd)?;
            self.close(spare)
        }
    }

    fn chdir(&mut self, dir: &std::ffi::CStr) -> io::Result<()> {
        #[cfg(any(
            target_vendor = "apple",
            all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))
        ))]
        {
            // SAFETY: records an action in an initialised object; the
            // path is copied by the call.
            check(unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut self.0, dir.as_ptr()) })
        }
        #[cfg(not(any(
            target_vendor = "apple",
            all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))
        )))]
        {
            let _ = dir;
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    /// Closes everything from `first` up, where the platform can.
    fn close_from(&mut self, first: RawFd) -> io::Result<()> {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: records an action in an initialised object.
            check(unsafe { libc::posix_spawn_file_actions_addclosefrom_np(&mut self.0, first) })
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        {
            // Apple: POSIX_SPAWN_CLOEXEC_DEFAULT does it; elsewhere see the
            // module comment.
            let _ = first;
            Ok(())
        }
    }
}

impl Drop for Actions {
    fn drop(&mut self) {
        // SAFETY: destroys the object initialised in `new`, once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// Spawn attributes, destroyed on drop.
struct Attributes(libc::posix_spawnattr_t);

impl Attributes {
    fn new() -> io::Result<Attributes> {
        let mut raw = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        // SAFETY: initialises the object `raw` points at.
        check(unsafe { libc::posix_spawnattr_init(raw.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful call above.
        let mut attr = Attributes(unsafe { raw.assume_init() });
        let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
        // Apple closes every descriptor the file actions do not name.
        #[cfg(target_vendor = "apple")]
        let flags = flags | libc::POSIX_SPAWN_CLOEXEC_DEFAULT;
        // SAFETY: plain sigset_t values on this stack, initialised by
        // sigemptyset before use; the attribute calls copy them.
        unsafe {
            let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            let empty = empty.assume_init();
            let mut pipe = empty;
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigmask(&mut attr.0, &empty))?;
            check(libc::posix_spawnattr_setsigdefault(&mut attr.0, &pipe))?;
            // The flags' type differs between platforms (short or int).
            check(libc::posix_spawnattr_setflags(&mut attr.0, flags as _))?;
        }
        Ok(attr)
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: destroys the object initialised in `new`, once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// posix_spawn's functions return the error number instead of setting
/// errno.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// The file actions that place the descriptors as `plan.ops` says.
fn actions_for(plan: &Plan) -> io::Result<Actions> {
    let mut actions = Actions::new()?;
    // Every number a move reads or writes is below `spare`, so parked
    // copies and the round trip of a kept descriptor overwrite nothing
    // still needed.
    let highest = plan
        .ops
        .iter()
        .map(|op| match *op {
            Op::Keep(fd) | Op::Park { fd, .. } => fd,
            Op::Dup2 {
                from: Fd::Num(n),
                to,
            } => n.max(to),
            Op::Dup2 { to, .. } => to,
            Op::Unpark(_) => 0,
        })
        .max()
        .unwrap_or(0);
    let spare = highest.max(plan.first_free - 1) + 1;
    let parked = |slot: usize| spare + 1 + slot as RawFd;
    let mut placed = [false; 3];
    for op in &plan.ops {
        match *op {
            Op::Keep(fd) => actions.keep(fd, spare)?,
            Op::Park { fd, slot } => actions.dup2(fd, parked(slot))?,
            Op::Dup2 { from, to } => {
                let src = match from {
                    Fd::Num(n) => n,
                    Fd::Parked(slot) => parked(slot),
                };
                actions.dup2(src, to)?;
            }
            Op::Unpark(slot) => actions.close(parked(slot))?,
        }
        if let Op::Keep(t) | Op::Dup2 { to: t, .. } = *op {
            if let Some(p) = usize::try_from(t).ok().and_then(|t| placed.get_mut(t)) {
                *p = true;
            }
        }
    }
    // A standard stream left as it is must be named on Apple, where
    // everything unnamed is closed (a stream the parent has closed then
    // fails the spawn with EBADF instead of being left closed).
    #[cfg(target_vendor = "apple")]
    for (fd, done) in placed.iter().enumerate() {
        if !done {
            actions.keep(fd as RawFd, spare)?;
        }
    }
    let _ = placed;
    actions.close_from(plan.first_free)?;
    if let Some(dir) = &plan.cwd {
        actions.chdir(dir)?;
    }
    Ok(actions)
}

/// Spawns the plan's program with `posix_spawn`; returns the child's pid.
/// The plan must name no handles (no `LISTEN_PID` to fill in).
pub(super) fn spawn(plan: &Plan) -> io::Result<libc::pid_t> {
    debug_assert!(!plan.has_handles);
    let actions = actions_for(plan)?;
    let attr = Attributes::new()?;
    let mut pid: libc::pid_t = 0;
    // SAFETY: path, argv and envp are NUL-terminated strings in arrays
    // ending with a null pointer, alive for the call; the actions and
    // attributes are initialised; posix_spawn writes the pid into `pid`.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            plan.path.as_ptr(),
            &actions.0,
            &attr.0,
            plan.argv_ptrs.as_ptr().cast(),
            plan.envp_ptrs.as_ptr().cast(),
        )
    };
    check(rc)?;
    Ok(pid)
}
