//! No channels and no listeners.

use std::io;
use std::path::Path;

use super::{BorrowedRaw, OwnedRaw, NO_BACKEND};

/// One end of a channel. It can be made from a handle (the contract asks
/// for `From<OwnedRaw>`), but `is_channel` never lets the portable code try.
pub(crate) type Socket = OwnedRaw;
pub(crate) const MAX_HANDLES_PER_DATAGRAM: usize = 1;
pub(crate) const NO_TRANSPORT: &str = NO_BACKEND;
pub(crate) const NO_PEER_CREDENTIALS: &str = NO_BACKEND;
pub(crate) const CHANNEL_KIND: crate::KindName = crate::KindName::Other;

/// What one receive delivered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub len: usize,
    pub truncated: bool,
    pub handles_truncated: bool,
}

no_backend_fns! {
    fn pair() -> io::Result<(Socket, Socket)>;
    fn connect(_path: &Path) -> io::Result<Socket>;
    fn is_channel(_b: BorrowedRaw<'_>) -> io::Result<bool>;
    fn configure(_s: &Socket, _wanted_datagram: usize) -> io::Result<usize>;
    fn send(
        _s: &Socket,
        _header: &[u8],
        _payload: &[u8],
        _handles: &[BorrowedRaw<'_>],
        _nonblocking: bool,
    ) -> io::Result<()>;
    fn recv(
        _s: &Socket,
        _header: &mut [u8],
        _dst: &mut Vec<u8>,
        _scratch: &mut Vec<u8>,
        _on_handle: impl FnMut(OwnedRaw),
        _nonblocking: bool,
    ) -> io::Result<Received>;
    fn wait(_s: &Socket, _writable: bool) -> io::Result<()>;
    fn peer_credentials(_s: &Socket) -> io::Result<(u32, u32, u32, Option<OwnedRaw>)>;
}

pub(crate) fn flush(_s: &Socket, _nonblocking: bool) -> io::Result<()> {
    Ok(())
}

pub(crate) fn peer_hung_up(_s: &Socket) -> bool {
    true
}

pub(crate) fn is_exhaustion(_e: &io::Error) -> bool {
    false
}

pub(crate) fn as_raw(s: &Socket) -> BorrowedRaw<'_> {
    #[cfg(unix)]
    return std::os::fd::AsFd::as_fd(s);
    #[cfg(windows)]
    return std::os::windows::io::AsHandle::as_handle(s);
}

pub(crate) fn into_raw(s: Socket) -> OwnedRaw {
    s
}
