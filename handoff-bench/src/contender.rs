//! The parent's side of one contender (raw sockets, handoff, ipc-channel)
//! connected to its own child process, behind one interface so that the
//! timing loops in `suite` are the same code for all of them.

use crate::raw::{self, Buffers, SocketKind};
use crate::workload::Workload;
use crate::{with_handoff, with_ipc_channel, Result};

/// What the timing loops ask of a contender. The child at the other end runs
/// the matching [`Workload`].
pub trait Contender {
    /// Sends one message with `count` handles (from the `handles` pool), marked as the
    /// last of a batch when `last`.
    fn send_fds(&mut self, count: usize, last: bool) -> Result<()>;

    /// Waits for the child to acknowledge a batch.
    fn wait_ack(&mut self) -> Result<()>;

    /// Sends one byte, with one handle when `with_fd`, and waits for the
    /// answer of the same shape.
    fn round_trip(&mut self, with_fd: bool) -> Result<()>;

    /// Sends `chunk` as one message (on a stream socket: writes all of it).
    fn send_bytes(&mut self, chunk: &[u8]) -> Result<()>;

    /// Hangs up and checks that the child exited cleanly.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Which implementation a contender uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The baseline on one socket type.
    Raw(SocketKind, Buffers),
    /// `handoff::Channel`.
    Handoff,
    /// ipc-channel 0.23.
    IpcChannel,
}

/// Starts a child doing `work` and connects a contender of `kind` to it.
pub fn spawn(kind: Kind, work: Workload, pin: bool) -> Result<Box<dyn Contender>> {
    Ok(match kind {
        Kind::Raw(socket, buffers) => Box::new(raw::Parent::spawn(socket, buffers, work, pin)?),
        Kind::Handoff => Box::new(with_handoff::Parent::spawn(work, pin)?),
        Kind::IpcChannel => Box::new(with_ipc_channel::Parent::spawn(work, pin)?),
    })
}
