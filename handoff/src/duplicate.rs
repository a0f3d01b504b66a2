//! [`duplicate`]: Windows' `DuplicateHandle` (source process, source handle,
//! target process, access, inheritance, close-source), mapped onto what
//! each platform can do.

use crate::sys;
use crate::{Access, BorrowedHandle, Channel, Error, Handle, Process, RawHandle, Result};

/// Where the handle to duplicate lives.
#[derive(Debug)]
pub enum Source<'a> {
    /// A handle of the calling process, lent for the call; it stays open.
    Current(BorrowedHandle<'a>),
    /// A handle of the calling process, given to the call, which closes it
    /// once the duplicate exists (`close_source` must be set: only an owner
    /// may close). As with Windows' `DUPLICATE_CLOSE_SOURCE`, it is closed
    /// even if the call fails.
    Owned(Handle),
    /// The handle numbered `handle` in another process. The number belongs
    /// to that process's handle table, which is why it is raw.
    Process {
        /// The process holding the handle.
        process: &'a Process,
        /// Its number there.
        handle: RawHandle,
    },
}

/// Where the duplicate goes.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The calling process: [`duplicate`] returns the new handle.
    Current,
    /// The process at the other end of `channel`: the duplicate is sent as
    /// one message with `message` as its bytes and the handle as its only
    /// handle. The peer receives it with [`Channel::recv`] and learns the
    /// handle's number in its own table from the received message.
    Channel {
        /// The channel to the target process.
        channel: &'a Channel,
        /// The bytes sent with the handle (e.g. what it is for).
        message: &'a [u8],
    },
}

/// `DuplicateHandle`'s options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DupOptions {
    /// Close the source handle once the duplicate exists
    /// (`DUPLICATE_CLOSE_SOURCE`).
    pub close_source: bool,
    /// Make the duplicate inheritable by children the target spawns
    /// (`bInheritHandle`); off, it is close-on-exec.
    pub inheritable: bool,
}

/// Duplicates a handle from a source process into a target process,
/// optionally with fewer rights: the shape of Windows' `DuplicateHandle`.
///
/// Returns the new handle when the target is [`Target::Current`], and
/// `None` when it was sent over a channel. `access: None` keeps the same
/// access (`DUPLICATE_SAME_ACCESS`); `Some(a)` narrows it with
/// [`BorrowedHandle::restrict`], enforced by the kernel, with its errors
/// ([`Error::WrongAccess`] for rights the handle lacks,
/// [`Error::Unsupported`] for kinds that cannot be narrowed).
///
/// Options that cannot be honoured are refused before anything happens:
/// nothing is pulled, sent or closed.
///
/// # What each platform does
///
/// | | Linux | Windows (`DuplicateHandle`) | macOS, BSD |
/// |---|---|---|---|
/// | source: this process | duplicate with `F_DUPFD_CLOEXEC` | `GetCurrentProcess()` as source | as Linux |
/// | source: another process | `pidfd_getfd` (Linux ≥ 5.6); needs ptrace-attach rights over it | its process handle, opened with `PROCESS_DUP_HANDLE` | `Unsupported`: no pidfd |
/// | target: this process | the handle is returned | `GetCurrentProcess()` as target; returned | as Linux |
/// | target: another process | sent over a [`Channel`] (`SCM_RIGHTS`); the peer learns the number from the message | `DuplicateHandle` straight into the peer's process (the channel knows its handle), the value sent in the message | as Linux |
/// | `access: None` | same open file description, same access | `DUPLICATE_SAME_ACCESS` | as Linux |
/// | `access: Some(a)` | files and shared memory reopened through `/proc/self/fd` with mode `a`; sockets, pipes, others `Unsupported` | `dwDesiredAccess` = `a` as a rights mask (kernel-enforced for every kind) | `Unsupported` (no `/proc` to reopen through) |
/// | `close_source`, source in this process | [`Source::Owned`] is closed after the duplicate exists | `DUPLICATE_CLOSE_SOURCE` | as Linux |
/// | `close_source`, source in another process | `Unsupported`: Linux cannot close a descriptor in another process | `DUPLICATE_CLOSE_SOURCE` closes it there | `Unsupported` |
/// | `inheritable`, target this process | close-on-exec cleared on the result | `bInheritHandle = TRUE` | as Linux |
/// | `inheritable`, target another process | `Unsupported`: a received handle is close-on-exec and only its receiver can change that | `bInheritHandle = TRUE` in the target | as Linux |
///
/// `close_source` with [`Source::Current`] is [`Error::InvalidArgument`]
/// (a borrower may not close what it does not own), and so is
/// [`Source::Owned`] without `close_source` (a given handle is always
/// closed; lend it instead).
///
/// # A broker
///
/// A process trusted by two others moves a read-write file of `a` to `b`
/// with read access only; `a` told the broker the handle's number:
///
/// ```no_run
/// use handoff::{duplicate, Access, Channel, DupOptions, Process, Source, Target};
/// # #[allow(dead_code)]
/// # fn broker(a: &Process, to_b: &Channel, number_in_a: i32) -> handoff::Result<()> {
/// duplicate(
///     Source::Process { process: a, handle: number_in_a },
///     Target::Channel { channel: to_b, message: b"config" },
///     Some(Access::READ),
///     DupOptions::default(),
/// )?;
/// # Ok(()) }
/// ```
///
/// # References
/// [`pidfd_getfd(2)`](https://man7.org/linux/man-pages/man2/pidfd_getfd.2.html),
/// [`DuplicateHandle`](https://learn.microsoft.com/en-us/windows/win32/api/handleapi/nf-handleapi-duplicatehandle)
#[doc(alias = "DuplicateHandle")]
#[doc(alias = "pidfd_getfd")]
pub fn duplicate(
    source: Source<'_>,
    target: Target<'_>,
    access: Option<Access>,
    options: DupOptions,
) -> Result<Option<Handle>> {
    check(&source, &target, options)?;
    let mut local = match source {
        Source::Current(b) => Local::Borrowed(b),
        Source::Owned(h) => Local::Owned(h),
        Source::Process { process, handle } => Local::Owned(process.pull_handle(handle)?),
    };
    if let Some(access) = access {
        // The restricted handle replaces the source, which (if owned) is
        // closed here: that is close_source "after the duplicate exists".
        local = Local::Owned(local.borrow().restrict(access)?);
    }
    match target {
        Target::Current => {
            let handle = match local {
                Local::Borrowed(b) => b.try_clone_to_owned()?,
                Local::Owned(h) => h,
            };
            if options.inheritable {
                sys::handle::set_inheritable(handle.borrow().into(), true)
                    .map_err(|e| Error::os("set inheritable", e))?;
            }
            Ok(Some(handle))
        }
        Target::Channel { channel, message } => {
            channel.send(message, &[local.borrow()])?;
            Ok(None)
        }
    }
}

fn check(source: &Source<'_>, target: &Target<'_>, options: DupOptions) -> Result<()> {
    match (source, options.close_source) {
        (Source::Current(_), true) => {
            return Err(Error::InvalidArgument(
                "close_source needs a handle the call owns: give it with Source::Owned \
                 (a borrowed handle is closed by its owner)"
                    .into(),
            ))
        }
        (Source::Owned(_), false) => {
            return Err(Error::InvalidArgument(
                "Source::Owned gives the handle to the call, which always closes it: set \
                 close_source, or lend it with Source::Current"
                    .into(),
            ))
        }
        (Source::Process { .. }, true) => {
            return Err(Error::Unsupported(
                "close_source with a handle of another process: this platform cannot close a \
                 descriptor in another process (pidfd_getfd only copies it); ask its owner to close it",
            ))
        }
        _ => {}
    }
    if options.inheritable && matches!(target, Target::Channel { .. }) {
        return Err(Error::Unsupported(
            "inheritable with a channel target: a received handle is close-on-exec, and only the \
             receiving process can make it inheritable",
        ));
    }
    Ok(())
}

/// A handle of the calling process that is either lent or owned.
enum Local<'a> {
    Borrowed(BorrowedHandle<'a>),
    Owned(Handle),
}

impl Local<'_> {
    fn borrow(&self) -> BorrowedHandle<'_> {
        match self {
            Local::Borrowed(b) => *b,
            Local::Owned(h) => h.borrow(),
        }
    }
}
