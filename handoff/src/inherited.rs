//! The child's side of spawning: claim the handles a parent passed under
//! the systemd socket-activation convention (on Windows, its Windows form:
//! `HANDOFF_HANDLES`, `HANDOFF_PARENT_PID`, `LISTEN_FDNAMES`), each exactly
//! once, and check each against what the caller expects before trusting it.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::spawn::CHANNEL_NAME;
use crate::startup::{self, StartupData};
use crate::sys;
use crate::{
    Access, AccessRule, Channel, Error, Handle, Kind, KindName, RawHandle, Requirement, Result,
};

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
#[cfg(unix)]
const FIRST_FD: u64 = 3;
/// More than any real process could have been handed.
const MAX_FDS: u64 = 1 << 16;

static CLAIMED: AtomicBool = AtomicBool::new(false);

/// The handles this process inherited, by name.
#[derive(Debug)]
pub struct Inherited {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    name: String,
    /// The handle's number, widened (a `RawHandle` is a pointer on Windows,
    /// which would make `Inherited` neither `Send` nor `Sync`).
    raw: u64,
    handle: Option<Handle>,
}

/// What a claimed handle must be: a [`Requirement`] (kind and access
/// rule, the same type every check uses) and, for shared memory or a file,
/// a least size.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    requirement: Requirement,
    min_size: Option<u64>,
}

impl Expect {
    /// Any handle.
    pub fn any() -> Self {
        Self::default()
    }

    /// Of this kind.
    pub fn kind(kind: KindName) -> Self {
        Expect {
            requirement: Requirement::kind(kind),
            ..Self::default()
        }
    }

    /// Granting at least `access`.
    pub fn access(mut self, access: Access) -> Self {
        self.requirement = self.requirement.at_least(access);
        self
    }

    /// Granting exactly `access`: more rights than asked for is also wrong
    /// (a write handle where a read-only one was promised).
    pub fn exact_access(mut self, access: Access) -> Self {
        self.requirement = self.requirement.exactly(access);
        self
    }

    /// Shared memory or a file of at least `bytes`.
    pub fn min_size(mut self, bytes: u64) -> Self {
        self.min_size = Some(bytes);
        self
    }

    /// The kind and access this asks for.
    pub fn requirement(&self) -> Requirement {
        self.requirement
    }

    /// Checks `handle`; the error names what is wrong.
    pub fn check(&self, handle: &Handle) -> Result<()> {
        let kind = handle.kind()?;
        self.requirement.check_kind(kind)?;
        if self.requirement.access != AccessRule::Any {
            self.requirement.check_access(handle.access()?)?;
        }
        if let Some(min) = self.min_size {
            let size = match kind {
                Kind::SharedMemory { size, .. } => size,
                Kind::File => {
                    sys::shm::len(handle.borrow().into()).map_err(|e| Error::os("fstat", e))?
                }
                // Only objects with a size can have a least size; shared
                // memory is what one is usually handed.
                other => {
                    return Err(Error::WrongKind {
                        expected: KindName::SharedMemory,
                        actual: other,
                    })
                }
            };
            if size < min {
                return Err(Error::BadInheritance {
                    var: None,
                    problem: format!("holds {size} bytes, at least {min} are required"),
                });
            }
        }
        Ok(())
    }
}

fn bad(var: &'static str, problem: String) -> Error {
    Error::BadInheritance {
        var: Some(var),
        problem,
    }
}

fn parse_number(var: &'static str, value: &str) -> Result<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            var,
            format!("{var}={value:?} is not a non-negative decimal number"),
        ));
    }
    value
        .parse::<u64>()
        .map_err(|_| bad(var, format!("{var}={value:?} is out of range")))
}

/// The pid variable `var`, which must be set once `set_with` is, and name
/// `expected`; `names_another` says what a different pid means.
fn check_pid(
    var: &'static str,
    value: Option<&str>,
    set_with: &str,
    expected: u32,
    names_another: impl FnOnce(u64) -> String,
) -> Result<()> {
    let value = value.ok_or_else(|| bad(var, format!("{set_with} is set but {var} is not")))?;
    let pid = parse_number(var, value)?;
    if pid != u64::from(expected) {
        return Err(bad(var, names_another(pid)));
    }
    Ok(())
}

/// The handles' names: `LISTEN_FDNAMES` split at `:`, or "unknown" for each
/// of `count` when it is unset; it must name `count`, which `counted` says
/// in words for the error.
fn fd_names(
    list: Option<&str>,
    count: usize,
    counted: impl FnOnce() -> String,
) -> Result<Vec<String>> {
    let names: Vec<String> = match list {
        Some(list) => list.split(':').map(str::to_owned).collect(),
        None => vec!["unknown".to_owned(); count],
    };
    if names.len() != count {
        return Err(bad(
            "LISTEN_FDNAMES",
            format!("LISTEN_FDNAMES has {} names for {}", names.len(), counted()),
        ));
    }
    Ok(names)
}

impl Inherited {
    /// Reads the convention from the environment, claims the handles, and
    /// removes the variables so children of this process do not misread
    /// them.
    ///
    /// No `LISTEN_FDS` means nothing was passed: an empty set. Otherwise
    /// every problem is an error naming it: a number that is not a number,
    /// `LISTEN_PID` missing or not this process, more descriptors announced
    /// than are open, a descriptor that is close-on-exec (so it was opened in
    /// this process, not inherited), a name count that does not match.
    /// Claiming twice in one process is [`Error::AlreadyClaimed`].
    ///
    /// Call it early in `main`, before other threads start: it changes the
    /// environment.
    pub fn from_env() -> Result<Inherited> {
        let get = |k: &str| std::env::var(k).ok();
        #[cfg(unix)]
        let parsed: Vec<(String, u64)> = Self::parse(
            get("LISTEN_FDS").as_deref(),
            get("LISTEN_PID").as_deref(),
            get("LISTEN_FDNAMES").as_deref(),
            std::process::id(),
        )?
        .into_iter()
        .enumerate()
        .map(|(i, name)| (name, FIRST_FD + i as u64))
        .collect();
        #[cfg(windows)]
        let parsed: Vec<(String, u64)> = {
            // Only read when handles were announced: most processes have none.
            let handles = get("HANDOFF_HANDLES");
            let parent = match handles {
                Some(_) => {
                    sys::spawn::parent_pid().map_err(|e| Error::os("query parent pid", e))?
                }
                None => 0,
            };
            Self::parse_windows(
                handles.as_deref(),
                get("HANDOFF_PARENT_PID").as_deref(),
                get("LISTEN_FDNAMES").as_deref(),
                parent,
            )?
            .into_iter()
            .map(|(name, value)| (name, u64::from(value)))
            .collect()
        };
        let var = sys::spawn::HANDLES_VAR;
        if CLAIMED.swap(true, Ordering::SeqCst) {
            return Err(Error::AlreadyClaimed(var.into()));
        }
        sys::spawn::forget_convention_vars();
        let mut entries = Vec::with_capacity(parsed.len());
        for (name, raw) in parsed {
            match sys::handle::claim_inherited(sys::handle::raw_from_bits(raw)) {
                Ok(owned) => entries.push(Entry {
                    name,
                    raw,
                    handle: Some(Handle::from(owned)),
                }),
                // Entries claimed so far are dropped (closed) with `entries`:
                // a broken hand-off is rejected whole.
                Err(e) => {
                    return Err(bad(
                        var,
                        format!("{var} announces handle {raw} ({name}), but {e}"),
                    ))
                }
            }
        }
        Ok(Inherited { entries })
    }

    /// Checks the convention's variables without touching any descriptor:
    /// the names of descriptors 3, 4, … in order.
    pub fn parse(
        listen_fds: Option<&str>,
        listen_pid: Option<&str>,
        listen_fdnames: Option<&str>,
        my_pid: u32,
    ) -> Result<Vec<String>> {
        let Some(fds) = listen_fds else {
            return Ok(Vec::new());
        };
        let count = parse_number("LISTEN_FDS", fds)?;
        if count > MAX_FDS {
            return Err(bad(
                "LISTEN_FDS",
                format!("LISTEN_FDS={count} is more than any process is handed"),
            ));
        }
        check_pid("LISTEN_PID", listen_pid, "LISTEN_FDS", my_pid, |pid| {
            format!(
                "LISTEN_PID={pid} names another process (this is {my_pid}); the handles were meant for it"
            )
        })?;
        fd_names(listen_fdnames, count as usize, || {
            format!("LISTEN_FDS={count}")
        })
    }

    /// Checks the Windows form of the convention without touching any
    /// handle: the names and handle values, in order.
    ///
    /// `handles` is `HANDOFF_HANDLES`, the values in decimal separated by
    /// `:`; `parent_pid` is `HANDOFF_PARENT_PID`, which must be the pid of
    /// the process that created this one (`my_parent_pid`), so a grandchild
    /// that inherited the variables but not the handles refuses them;
    /// `names` is `LISTEN_FDNAMES` as on Unix. A value must be a nonzero
    /// multiple of 4 below 2^32 (the low two bits of a handle value are
    /// ignored by the kernel, so `0x1a5` would name the same handle as
    /// `0x1a4` and be claimed twice) and appear once.
    ///
    /// Public (as `__private::parse_windows`) for the tests, which run it
    /// on every platform.
    pub(crate) fn parse_windows(
        handles: Option<&str>,
        parent_pid: Option<&str>,
        names: Option<&str>,
        my_parent_pid: u32,
    ) -> Result<Vec<(String, u32)>> {
        let Some(list) = handles else {
            return Ok(Vec::new());
        };
        let parts: Vec<&str> = list.split(':').collect();
        if parts.len() as u64 > MAX_FDS {
            return Err(bad(
                "HANDOFF_HANDLES",
                format!(
                    "HANDOFF_HANDLES lists {} handles, more than any process is handed",
                    parts.len()
                ),
            ));
        }
        let mut values = Vec::with_capacity(parts.len());
        for part in parts {
            let v = parse_number("HANDOFF_HANDLES", part)?;
            let v = u32::try_from(v)
                .ok()
                .filter(|v| *v != 0 && v % 4 == 0)
                .ok_or_else(|| {
                    bad("HANDOFF_HANDLES", format!(
                        "HANDOFF_HANDLES value {v} is not a handle value (a nonzero multiple of 4 below 2^32)"
                    ))
                })?;
            if values.contains(&v) {
                return Err(bad(
                    "HANDOFF_HANDLES",
                    format!("HANDOFF_HANDLES lists handle {v} twice"),
                ));
            }
            values.push(v);
        }
        check_pid(
            "HANDOFF_PARENT_PID",
            parent_pid,
            "HANDOFF_HANDLES",
            my_parent_pid,
            |pid| {
                format!(
                "HANDOFF_PARENT_PID={pid} is not this process's parent ({my_parent_pid}); the handles were meant for another process"
            )
            },
        )?;
        let names = fd_names(names, values.len(), || {
            format!("{} values in HANDOFF_HANDLES", values.len())
        })?;
        Ok(names.into_iter().zip(values).collect())
    }

    /// Names in descriptor order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// How many handles were passed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was passed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The descriptor number (handle value) a name arrived at (for display).
    pub fn fd_of(&self, name: &str) -> Option<RawHandle> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| sys::handle::raw_from_bits(e.raw))
    }

    /// Claims the handle named `name`. Missing is [`Error::MissingHandle`],
    /// a second claim [`Error::AlreadyClaimed`], a name passed more than once
    /// [`Error::BadInheritance`] (ambiguous; use [`take_index`](Self::take_index)).
    pub fn take(&mut self, name: &str) -> Result<Handle> {
        let mut found = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.name == name);
        let (index, _) = found
            .next()
            .ok_or_else(|| Error::MissingHandle(name.to_owned()))?;
        let dups = found.count();
        if dups > 0 {
            return Err(bad(
                "LISTEN_FDNAMES",
                format!("the name {name:?} was passed {} times", dups + 1),
            ));
        }
        self.take_index(index)
    }

    /// Claims the handle named `name` and checks it against `expect`. On a
    /// mismatch the handle is closed and the error says why.
    pub fn take_checked(&mut self, name: &str, expect: &Expect) -> Result<Handle> {
        let handle = self.take(name)?;
        expect.check(&handle)?;
        Ok(handle)
    }

    /// Claims the handle at position `index` (descriptor 3 + `index` on
    /// Unix, the `index`th value of `HANDOFF_HANDLES` on Windows).
    pub fn take_index(&mut self, index: usize) -> Result<Handle> {
        let entry = self
            .entries
            .get_mut(index)
            .ok_or_else(|| Error::MissingHandle(format!("#{index}")))?;
        entry
            .handle
            .take()
            .ok_or_else(|| Error::AlreadyClaimed(entry.name.clone()))
    }

    /// Claims and validates the startup data ([`startup::NAME`]).
    pub fn startup_data(&mut self) -> Result<StartupData> {
        StartupData::open(self.take(startup::NAME)?)
    }

    /// Claims the channel to the parent ([`CHANNEL_NAME`]).
    pub fn channel(&mut self) -> Result<Channel> {
        Channel::from_handle(self.take(CHANNEL_NAME)?)
    }
}
