//! How a spawned child's standard input, output and error are set up.
//!
//! handoff has its own `Stdio` rather than std's: std's cannot be taken
//! apart, and both backends need to see what was asked for (the Unix one
//! places the streams itself between `clone` and `exec`, the Windows one puts
//! them on the inherited-handle list).

use crate::Handle;

/// How a child's standard input, output or error is set up:
/// [`Stdio::inherit`] (the default), [`Stdio::null`], [`Stdio::piped`], or
/// any owned handle (`File`, `OwnedFd`/`OwnedHandle`, pipe ends, another
/// child's stream, a [`Handle`]).
#[derive(Debug)]
pub struct Stdio(pub(crate) StdioKind);

#[derive(Debug)]
pub(crate) enum StdioKind {
    Inherit,
    Null,
    Piped,
    Handle(Handle),
}

impl Stdio {
    /// The child gets this process's stream.
    pub fn inherit() -> Stdio {
        Stdio(StdioKind::Inherit)
    }

    /// The child gets the null device (`/dev/null`, `NUL`).
    pub fn null() -> Stdio {
        Stdio(StdioKind::Null)
    }

    /// A new pipe joins the child's stream to this process (see
    /// [`Child::take_stdout`](crate::Child::take_stdout) and friends).
    pub fn piped() -> Stdio {
        Stdio(StdioKind::Piped)
    }
}

impl From<Handle> for Stdio {
    fn from(h: Handle) -> Stdio {
        Stdio(StdioKind::Handle(h))
    }
}

macro_rules! via_handle {
    ($($t:ty),*) => {$(
        impl From<$t> for Stdio {
            fn from(v: $t) -> Stdio {
                Stdio(StdioKind::Handle(Handle::from(crate::sys::OwnedRaw::from(v))))
            }
        }
    )*};
}

via_handle!(
    crate::sys::OwnedRaw,
    std::fs::File,
    std::io::PipeReader,
    std::io::PipeWriter,
    std::process::ChildStdin,
    std::process::ChildStdout,
    std::process::ChildStderr
);
