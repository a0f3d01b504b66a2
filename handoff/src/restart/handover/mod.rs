//! Live connection handover between two generations of a service.
//!
//! The old generation holds a [`Doorbell`]; its other end is a handle named
//! [`DOORBELL`] that reaches the next generation the way listeners do: in
//! the supervisor's store (`FDSTORE=1`, under `handoff serve` or systemd)
//! or passed directly by a self-contained service to the successor it
//! starts. The new generation rings it with a fresh channel of its own
//! ([`Incoming::connect`]), so each handover is a private session whose
//! end-of-file means the other side is gone.
//!
//! One session, in order (`docs/restart.md` has the messages):
//! 1. old → new: `Offer` with the sealed [state](super::state) and the
//!    number of connections;
//! 2. new: validates the state; `Refuse` ends it (the old serves on,
//!    unchanged), `Grant` says how many connections it can open, after
//!    checking its descriptor headroom;
//! 3. old → new: `Connections`, each a handle plus its unread bytes and
//!    protocol position (the channel splits past 253 handles a datagram);
//! 4. new → old: `Taken` (and refused, each with its reason); the old
//!    answers `Commit`, or `Abort` if the answer came after its timeout;
//! 5. the new serves; once it is ready it says `Serving` and the old
//!    closes its parked copies. If the session closes before `Serving`
//!    the parked connections come back to the old generation.
//!
//! A connection is only ever served by one side: the old generation keeps
//! its copy, unserved, from `Connections` until `Serving`, and gets it
//! back on every failure; the new one serves only after `Commit`. Copies
//! closed meanwhile are duplicates, so the client sees no FIN and no reset.

pub mod blocking;
mod new;
mod old;
mod successor;
pub mod wire;

pub use new::{Incoming, TakeLimits, Takeover};
pub use old::{Doorbell, Failed, Handed, Outgoing, Parked};
pub use successor::{start_successor, this_program, SELF_CONTAINED};

use std::time::Duration;

use crate::{AsyncChannel, BorrowedHandle, Handle, Kind, SocketFamily, SocketType};

/// The name under which the doorbell's far end is stored or passed.
pub const DOORBELL: &str = "handoff.handover";

/// One live connection with the application's state for it.
#[derive(Debug)]
pub struct Connection {
    /// The old generation's number for it (kept across the handover).
    pub id: u64,
    /// The connected socket (TCP or Unix stream), deregistered from any
    /// event loop (a tokio stream turned into its std type).
    pub handle: Handle,
    /// Bytes already read from it but not yet handled.
    pub pending: Vec<u8>,
    /// The protocol position, in the application's own encoding.
    pub position: Vec<u8>,
}

impl Connection {
    /// A connection with no unread bytes and an empty position.
    pub fn new(id: u64, handle: impl Into<Handle>) -> Connection {
        Connection {
            id,
            handle: handle.into(),
            pending: Vec::new(),
            position: Vec::new(),
        }
    }
}

/// Whether `handle` can be a handed-over connection: a connected stream
/// socket, not a listener, pipe, file, datagram socket or a stream socket
/// that was never connected (which a new generation would serve as a
/// client that hung up).
pub(crate) fn check_connection(id: u64, handle: &Handle) -> Result<(), super::HandoverError> {
    let protocol =
        |e: &dyn std::fmt::Display| super::HandoverError::Protocol(format!("connection {id}: {e}"));
    let kind = handle.kind().map_err(|e| protocol(&e))?;
    let family = match kind {
        Kind::Socket {
            ty: SocketType::Stream,
            listening: false,
            family: family @ (SocketFamily::Unix | SocketFamily::Inet | SocketFamily::Inet6),
        } => family,
        kind => return Err(super::HandoverError::NotAConnection { id, kind }),
    };
    // The peer's address is the kernel's word that the socket is
    // connected; `ENOTCONN` means it never was (or it was shut down).
    let fd = std::os::fd::OwnedFd::from(handle.try_clone().map_err(|e| protocol(&e))?);
    let peer = match family {
        SocketFamily::Unix => std::os::unix::net::UnixStream::from(fd)
            .peer_addr()
            .map(drop),
        _ => std::net::TcpStream::from(fd).peer_addr().map(drop),
    };
    match peer {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {
            Err(super::HandoverError::NotConnected { id })
        }
        Err(e) => Err(protocol(&e)),
    }
}

/// Sends one handover message, waiting at most `timeout` for room: a peer
/// that stopped reading must not hold this runtime thread, and a send
/// abandoned half way poisons the channel, so the peer sees it end.
async fn send_within(
    chan: &AsyncChannel,
    msg: &wire::Msg,
    handles: &[BorrowedHandle<'_>],
    timeout: Duration,
    during: &'static str,
) -> crate::Result<()> {
    let bytes = wire::encode(msg)?;
    tokio::time::timeout(timeout, chan.send(&bytes, handles))
        .await
        .map_err(|_| super::HandoverError::Timeout(timeout))?
        .map_err(closed(during))
}

fn closed(during: &'static str) -> impl Fn(crate::Error) -> crate::Error {
    move |e| match e {
        crate::Error::Disconnected { .. } => super::HandoverError::Closed(during).into(),
        other => other,
    }
}
