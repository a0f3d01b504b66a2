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

mod new;
mod old;
mod successor;
pub mod wire;

pub use new::{Incoming, TakeLimits, Takeover};
pub use old::{Doorbell, Failed, Handed, Outgoing, Parked};
pub use successor::{start_successor, this_program, SELF_CONTAINED};

use crate::{Handle, Kind, SocketType};

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
/// socket, not a listener, pipe, file or datagram socket.
pub(crate) fn check_connection(id: u64, handle: &Handle) -> Result<(), super::HandoverError> {
    let kind = handle
        .kind()
        .map_err(|e| super::HandoverError::Protocol(format!("connection {id}: {e}")))?;
    match kind {
        Kind::Socket {
            ty: SocketType::Stream,
            listening: false,
            ..
        } => Ok(()),
        kind => Err(super::HandoverError::NotAConnection { id, kind }),
    }
}

fn closed(during: &'static str) -> impl Fn(crate::Error) -> crate::Error {
    move |e| match e {
        crate::Error::Disconnected { .. } => super::HandoverError::Closed(during).into(),
        other => other,
    }
}
