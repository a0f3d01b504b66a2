//! No process handles.

use super::{BorrowedRaw, OwnedRaw, RawHandle, NO_BACKEND};
use crate::process::ExitStatus;
use crate::Result;

pub(crate) const NO_PUSH: Option<&str> = Some(NO_BACKEND);
pub(crate) const NO_REMOTE_CLOSE: Option<&str> = Some(NO_BACKEND);

pub(crate) fn current_pid() -> u32 {
    std::process::id()
}

no_backend_fns! {
    fn open(_pid: u32) -> Result<OwnedRaw>;
    fn pid_of(_b: BorrowedRaw<'_>) -> Result<u32>;
    fn wait(_b: BorrowedRaw<'_>, _pid: u32, _block: bool) -> Result<Option<ExitStatus>>;
    fn kill(_b: BorrowedRaw<'_>, _pid: u32) -> Result<()>;
    #[cfg(unix)]
    fn signal(_b: BorrowedRaw<'_>, _pid: u32, _signo: i32) -> Result<()>;
    fn pull(
        _b: BorrowedRaw<'_>,
        _pid: u32,
        _value: RawHandle,
        _close_source: bool,
    ) -> Result<OwnedRaw>;
    fn push(
        _b: BorrowedRaw<'_>,
        _pid: u32,
        _handle: BorrowedRaw<'_>,
        _inheritable: bool,
    ) -> Result<u32>;
}
