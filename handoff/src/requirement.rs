//! What a receiver can require of a handle: a kind by name and an access
//! rule. One type serves every check (`BorrowedHandle::check`,
//! `inherited::Expect`, the RPC's declared handle parameters), so they
//! cannot drift apart in what "expected" means.

use std::fmt;
use std::str::FromStr;

use crate::{Access, BorrowedHandle, Error, Kind, Result};

/// The names of the kinds of handle, without a kind's details: what a
/// caller can require (`#[handle(file)]`, [`Expect::kind`]) and what an
/// error says was expected.
///
/// [`Kind::name_of`] gives the name of a [`Kind`]; `Display` and `FromStr`
/// use the stable spelling of [`Kind::name`] (`"shared-memory"`, …).
///
/// [`Expect::kind`]: crate::Expect::kind
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KindName {
    /// [`Kind::File`].
    File,
    /// [`Kind::Directory`].
    Directory,
    /// [`Kind::Pipe`].
    Pipe,
    /// [`Kind::Socket`].
    Socket,
    /// [`Kind::SharedMemory`].
    SharedMemory,
    /// [`Kind::Event`].
    Event,
    /// [`Kind::Process`].
    Process,
    /// [`Kind::Timer`].
    Timer,
    /// [`Kind::Terminal`].
    Terminal,
    /// [`Kind::Other`].
    Other,
}

impl KindName {
    /// Every name, in declaration order.
    pub const ALL: &'static [KindName] = &[
        KindName::File,
        KindName::Directory,
        KindName::Pipe,
        KindName::Socket,
        KindName::SharedMemory,
        KindName::Event,
        KindName::Process,
        KindName::Timer,
        KindName::Terminal,
        KindName::Other,
    ];

    /// The stable spelling: `file`, `directory`, `pipe`, `socket`,
    /// `shared-memory`, `event`, `process`, `timer`, `terminal`, `other`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KindName::File => "file",
            KindName::Directory => "directory",
            KindName::Pipe => "pipe",
            KindName::Socket => "socket",
            KindName::SharedMemory => "shared-memory",
            KindName::Event => "event",
            KindName::Process => "process",
            KindName::Timer => "timer",
            KindName::Terminal => "terminal",
            KindName::Other => "other",
        }
    }
}

impl fmt::Display for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for KindName {
    type Err = Error;

    /// Parses the stable spelling (`"shared-memory"`); anything else is
    /// [`Error::InvalidArgument`] listing the names.
    fn from_str(s: &str) -> Result<KindName> {
        KindName::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = KindName::ALL.iter().map(|k| k.as_str()).collect();
                Error::InvalidArgument(format!(
                    "unknown handle kind {s:?}: expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// How a handle's access must compare with the one asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AccessRule {
    /// Whatever the handle grants.
    #[default]
    Any,
    /// At least these rights; more are fine.
    AtLeast(Access),
    /// Exactly these rights: more is as wrong as fewer (a write handle
    /// where a read-only one was promised).
    Exactly(Access),
}

impl AccessRule {
    /// Whether a handle granting `have` passes.
    pub fn admits(self, have: Access) -> bool {
        match self {
            AccessRule::Any => true,
            AccessRule::AtLeast(want) => have.contains(want),
            AccessRule::Exactly(want) => have == want,
        }
    }

    /// The access named by the rule (empty for [`AccessRule::Any`]).
    pub fn access(self) -> Access {
        match self {
            AccessRule::Any => Access::NONE,
            AccessRule::AtLeast(a) | AccessRule::Exactly(a) => a,
        }
    }
}

/// What a handle must be: a kind (`None`: any kind) and an access rule.
///
/// Built as a constant (`Requirement::kind(KindName::File).exactly(Access::READ)`)
/// or as a literal; the RPC macro emits one for every declared handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Requirement {
    /// The kind required, or `None` for any.
    pub kind: Option<KindName>,
    /// How the handle's access must compare.
    pub access: AccessRule,
}

impl Requirement {
    /// Any handle at all.
    pub const ANY: Requirement = Requirement {
        kind: None,
        access: AccessRule::Any,
    };

    /// A handle of kind `kind`, with any access.
    pub const fn kind(kind: KindName) -> Requirement {
        Requirement {
            kind: Some(kind),
            access: AccessRule::Any,
        }
    }

    /// The same requirement, granting at least `access`.
    pub const fn at_least(self, access: Access) -> Requirement {
        Requirement {
            access: AccessRule::AtLeast(access),
            ..self
        }
    }

    /// The same requirement, granting exactly `access`.
    pub const fn exactly(self, access: Access) -> Requirement {
        Requirement {
            access: AccessRule::Exactly(access),
            ..self
        }
    }

    /// Checks a kind already read from the handle.
    pub fn check_kind(&self, actual: Kind) -> Result<()> {
        match self.kind {
            Some(expected) if Kind::name_of(&actual) != expected => {
                Err(Error::WrongKind { expected, actual })
            }
            _ => Ok(()),
        }
    }

    /// Checks an access already read from the handle.
    pub fn check_access(&self, actual: Access) -> Result<()> {
        if self.access.admits(actual) {
            Ok(())
        } else {
            Err(Error::WrongAccess {
                expected: self.access.access(),
                actual,
            })
        }
    }

    /// Checks `handle`: its kind, then its access, both read from the
    /// kernel. The error names what is wrong.
    pub fn check(&self, handle: BorrowedHandle<'_>) -> Result<()> {
        self.check_kind(handle.kind()?)?;
        if self.access != AccessRule::Any {
            self.check_access(handle.access()?)?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Some(k) => write!(f, "{k}")?,
            None => f.write_str("any kind")?,
        }
        match self.access {
            AccessRule::Any => Ok(()),
            AccessRule::AtLeast(a) => write!(f, ", at least {a}"),
            AccessRule::Exactly(a) => write!(f, ", exactly {a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_ones_are_refused() {
        for &k in KindName::ALL {
            assert_eq!(k.as_str().parse::<KindName>().unwrap(), k);
        }
        assert!(matches!(
            "fifo".parse::<KindName>(),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn access_rules_differ_only_where_they_say() {
        let rw = Access::READ_WRITE;
        assert!(AccessRule::Any.admits(Access::NONE));
        assert!(AccessRule::AtLeast(Access::READ).admits(rw));
        assert!(!AccessRule::Exactly(Access::READ).admits(rw));
        assert!(AccessRule::Exactly(rw).admits(rw));
        assert!(!AccessRule::AtLeast(rw).admits(Access::READ));
    }
}
