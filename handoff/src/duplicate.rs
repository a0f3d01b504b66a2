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
    /// Straight into another process's handle table (Windows only:
    /// `DuplicateHandle` with that process as the target; needs
    /// `PROCESS_DUP_HANDLE` on it). [`duplicate`] returns
    /// [`Duplicated::Remote`] with the new handle's value there, which
    /// means nothing in this process: tell it to the target (as a `u32`),
    /// which owns the handle and must close it. If it never learns the
    /// value, the handle stays open until the target exits.
    ///
    /// Unix cannot install a descriptor in another process:
    /// [`Error::Unsupported`] there (use [`Target::Channel`]).
    Process(&'a Process),
}

/// What [`duplicate`] made, one variant per [`Target`].
#[derive(Debug)]
#[must_use]
pub enum Duplicated {
    /// [`Target::Current`]: the new handle, owned by the caller.
    Handle(Handle),
    /// [`Target::Channel`]: the handle was sent; the peer owns its copy
    /// once it receives the message.
    Sent,
    /// [`Target::Process`]: the new handle lives in that process, which
    /// owns it.
    Remote {
        /// The target's pid.
        pid: u32,
        /// The handle's value in the target's table, as the 32 bits that
        /// travel (64-bit Windows keeps handle values within 32 significant
        /// bits). In the target, `value as i32 as isize as RawHandle` is the
        /// handle (sign extension, as for 32-bit processes); here it names
        /// nothing.
        value: u32,
    },
}

impl Duplicated {
    /// The new handle, for [`Target::Current`]; `None` otherwise.
    pub fn into_handle(self) -> Option<Handle> {
        match self {
            Duplicated::Handle(h) => Some(h),
            _ => None,
        }
    }

    /// The value in the target process, for [`Target::Process`].
    pub fn remote_value(&self) -> Option<u32> {
        match self {
            Duplicated::Remote { value, .. } => Some(*value),
            _ => None,
        }
    }
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
/// Returns what it made ([`Duplicated`]): the new handle when the target
/// is [`Target::Current`], [`Duplicated::Sent`] when it went over a
/// channel, and the value in the target's table for [`Target::Process`].
/// `access: None` keeps the same
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
/// | source: this process | duplicate with `F_DUPFD_CLOEXEC` | `DuplicateHandle` within this process | as Linux |
/// | source: another process | `pidfd_getfd` (Linux ≥ 5.6); needs ptrace-attach rights over it | `DuplicateHandle` from its process handle; needs `PROCESS_DUP_HANDLE` on it | `Unsupported`: no pidfd |
/// | target: this process | the handle is returned | the handle is returned | as Linux |
/// | target: a channel's peer | sent over the [`Channel`] (`SCM_RIGHTS`); the peer learns the number from the message | sent over the [`Channel`]: the reader pulls it from this process (`DuplicateHandle`), so this process needs no rights over the reader | as Linux |
/// | target: a [`Process`] | `Unsupported`: no Unix can install a descriptor in another process | `DuplicateHandle` into its table; needs `PROCESS_DUP_HANDLE` on it; [`Duplicated::Remote`] gives the value there | `Unsupported` |
/// | `access: None` | same open file description, same access | `DUPLICATE_SAME_ACCESS` | as Linux |
/// | `access: Some(a)` | files and shared memory reopened through `/proc/self/fd` with mode `a`; sockets, pipes, others `Unsupported` | a second `DuplicateHandle` in this process with `a` as the object's rights mask (kernel-enforced for every kind) | `Unsupported` (no `/proc` to reopen through) |
/// | `close_source`, source in this process | [`Source::Owned`] is closed after the duplicate exists | as Linux | as Linux |
/// | `close_source`, source in another process | `Unsupported`: Linux cannot close a descriptor in another process | `DUPLICATE_CLOSE_SOURCE`: its handle moves out in one step | `Unsupported` |
/// | `inheritable`, target this process | close-on-exec cleared on the result | `HANDLE_FLAG_INHERIT` set on the result | as Linux |
/// | `inheritable`, target a channel's peer | `Unsupported`: a received handle is close-on-exec and only its receiver can change that | `Unsupported`, for the same reason | as Linux |
/// | `inheritable`, target a [`Process`] | `Unsupported` | `bInheritHandle = TRUE` in the target | `Unsupported` |
///
/// The handle passes through this process on every path (pulled, then
/// narrowed, then returned, sent or pushed), so narrowing is checked the
/// same way everywhere; a source in another process with `close_source`
/// has left that process once it is pulled, and, as with
/// `DUPLICATE_CLOSE_SOURCE`, is gone even if a later step (narrowing,
/// sending, pushing) fails.
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
/// # fn broker(a: &Process, to_b: &Channel, number_in_a: handoff::RawHandle) -> handoff::Result<()> {
/// let sent = duplicate(
///     Source::Process { process: a, handle: number_in_a },
///     Target::Channel { channel: to_b, message: b"config" },
///     Some(Access::READ),
///     DupOptions::default(),
/// )?;
/// assert!(matches!(sent, handoff::Duplicated::Sent));
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
) -> Result<Duplicated> {
    check(&source, &target, options)?;
    let mut local = match source {
        Source::Current(b) => Local::Borrowed(b),
        Source::Owned(h) => Local::Owned(h),
        Source::Process { process, handle } => Local::Owned(Handle::from(sys::process::pull(
            process.handle().into(),
            process.pid(),
            handle,
            options.close_source,
        )?)),
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
            Ok(Duplicated::Handle(handle))
        }
        Target::Channel { channel, message } => {
            channel.send(message, &[local.borrow()])?;
            Ok(Duplicated::Sent)
        }
        Target::Process(process) => {
            let value = sys::process::push(
                process.handle().into(),
                process.pid(),
                local.borrow().into(),
                options.inheritable,
            )?;
            Ok(Duplicated::Remote {
                pid: process.pid(),
                value,
            })
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
            if let Some(why) = sys::process::NO_REMOTE_CLOSE {
                return Err(Error::Unsupported(why));
            }
        }
        _ => {}
    }
    if let (Target::Process(_), Some(why)) = (target, sys::process::NO_PUSH) {
        return Err(Error::Unsupported(why));
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
type Local<'a> = crate::handle::MaybeOwned<'a>;
