//! Handle parameters and results: what was declared, and the checks that
//! hold a handle to it on both sides.

use crate::{AccessRule, BorrowedHandle, Error, Handle, Requirement, Result};

/// What the signature declares for a handle parameter or result:
/// `#[handle(kind, access, max = N)]` or `#[out(...)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandleSpec {
    /// The parameter's name (`"result"` for out handles), for errors.
    pub name: &'static str,
    /// The declared kind (`None` for `any`) and access: exactly the
    /// declared access (a handle with more rights than declared is as wrong
    /// as one with fewer), or any when none is declared.
    pub requirement: Requirement,
    /// The most handles the parameter may carry (1 unless it is a `Vec`).
    pub max: u32,
}

impl HandleSpec {
    /// Checks a handle that arrived against the declaration.
    pub fn check(&self, handle: BorrowedHandle<'_>) -> Result<()> {
        self.requirement.check(handle)
    }

    /// What to send for `handle`: the caller's own handle when it passes
    /// the declared access as it is (or no access is declared), since the
    /// kernel gives the receiver its own descriptor for the same open file
    /// anyway; otherwise a duplicate restricted to the declared access. A
    /// handle lacking a declared right is [`Error::WrongAccess`].
    pub(crate) fn prepare<'a>(&self, handle: BorrowedHandle<'a>) -> Result<OutHandle<'a>> {
        let rule = self.requirement.access;
        if rule == AccessRule::Any {
            return Ok(OutHandle::Borrowed(handle));
        }
        let have = handle.access()?;
        if rule.admits(have) {
            return Ok(OutHandle::Borrowed(handle));
        }
        let want = rule.access();
        if !have.contains(want) {
            return Err(Error::WrongAccess {
                expected: want,
                actual: have,
            });
        }
        handle.restrict(want).map(OutHandle::Owned)
    }

    pub(crate) fn check_count(&self, got: usize) -> Result<()> {
        if got > self.max as usize {
            return Err(Error::TooLarge {
                what: "handles in one parameter",
                got: got as u64,
                limit: u64::from(self.max),
            });
        }
        Ok(())
    }
}

/// A handle a call sends: the caller's, borrowed for the call, or a
/// restricted duplicate the call owns (closed once the call is sent).
pub(crate) type OutHandle<'a> = crate::handle::MaybeOwned<'a>;

/// The handles of a call being built, in index order. The first is kept
/// inline: most calls carry at most one, and need no list.
#[derive(Debug, Default)]
pub(crate) struct Outgoing<'a> {
    first: Option<OutHandle<'a>>,
    rest: Vec<OutHandle<'a>>,
}

impl<'a> Outgoing<'a> {
    pub fn push(&mut self, handle: OutHandle<'a>) -> Result<u32> {
        let index = next_index(self.len())?;
        if self.first.is_none() {
            self.first = Some(handle);
        } else {
            self.rest.push(handle);
        }
        Ok(index)
    }

    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// The only handle, if there is exactly one.
    pub fn single(&self) -> Option<BorrowedHandle<'_>> {
        match (&self.first, self.rest.is_empty()) {
            (Some(h), true) => Some(h.borrow()),
            _ => None,
        }
    }

    /// The handles to attach to the message, in index order.
    pub fn borrowed(&self) -> Vec<BorrowedHandle<'_>> {
        self.first
            .iter()
            .chain(&self.rest)
            .map(OutHandle::borrow)
            .collect()
    }
}

/// The index the next handle of a message gets.
pub(crate) fn next_index(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::InvalidArgument("too many handles in one call".into()))
}

/// The handles of a received message, each claimed at most once by index.
/// Dropping it closes every unclaimed handle.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    slots: Vec<Option<Handle>>,
}

impl Slots {
    pub fn new(handles: Vec<Handle>) -> Slots {
        Slots {
            slots: handles.into_iter().map(Some).collect(),
        }
    }

    pub fn take(&mut self, index: u32, spec: &HandleSpec) -> Result<Handle> {
        let count = self.slots.len();
        let slot = self.slots.get_mut(index as usize).ok_or_else(|| {
            Error::Malformed(format!(
                "handle index {index} out of range (message has {count})"
            ))
        })?;
        let handle = slot
            .take()
            .ok_or_else(|| Error::Malformed(format!("handle index {index} used twice")))?;
        spec.check(handle.borrow())?;
        Ok(handle)
    }

    pub fn take_opt(&mut self, index: Option<u32>, spec: &HandleSpec) -> Result<Option<Handle>> {
        index.map(|i| self.take(i, spec)).transpose()
    }

    pub fn take_many(&mut self, indices: Vec<u32>, spec: &HandleSpec) -> Result<Vec<Handle>> {
        spec.check_count(indices.len())?;
        indices.into_iter().map(|i| self.take(i, spec)).collect()
    }

    /// Every handle must have been claimed by a declared parameter.
    pub fn finish(&mut self) -> Result<()> {
        let unclaimed = self.slots.iter().filter(|s| s.is_some()).count();
        self.slots.clear();
        if unclaimed > 0 {
            return Err(Error::Malformed(format!(
                "{unclaimed} handles are not claimed by a declared handle parameter"
            )));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        super::spare::give_slots(std::mem::take(&mut self.slots));
    }
}
