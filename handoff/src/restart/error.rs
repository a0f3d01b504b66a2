//! What can go wrong when one generation hands its state and connections
//! to the next: each a variant of its own, so either side can say exactly
//! why a handover failed (and the old generation can go on serving).

use std::time::Duration;

use crate::Kind;

/// A failed state or connection handover.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// The state was written by a version this generation does not read.
    #[error("state version {found}, this generation reads {expected}")]
    StateVersion {
        /// The version in the state's header.
        found: u32,
        /// The version the receiver accepts.
        expected: u32,
    },
    /// The state's bytes do not match the checksum in its header.
    #[error("state checksum {found:#010x} in the header, {computed:#010x} computed")]
    StateChecksum {
        /// The checksum the sender wrote.
        found: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// The state holds fewer (or more) bytes than its header says.
    #[error("state header says {said} bytes, the object holds {held}")]
    StateTruncated {
        /// The length in the header.
        said: u64,
        /// The bytes actually there.
        held: u64,
    },
    /// The state is larger than the receiver accepts.
    #[error("state of {len} bytes is over the {max}-byte cap")]
    StateTooLarge {
        /// Its length.
        len: u64,
        /// The receiver's cap.
        max: u64,
    },
    /// The state's shared memory could still be changed by its sender.
    #[error("state is not sealed: {0}")]
    StateNotSealed(String),
    /// The state is not state at all (wrong magic, reserved fields set,
    /// not shared memory).
    #[error("malformed state: {0}")]
    StateMalformed(String),
    /// The new generation refused the handover; its reason.
    #[error("the new generation refused the handover: {0}")]
    Refused(String),
    /// A handed-over "connection" is not a connected stream socket.
    #[error("connection {id} is not a connected stream socket: it is {kind}")]
    NotAConnection {
        /// The sender's number for it.
        id: u64,
        /// What it is.
        kind: Kind,
    },
    /// A handed-over stream socket has no peer: it was never connected.
    #[error("connection {id} is a stream socket that is not connected")]
    NotConnected {
        /// The sender's number for it.
        id: u64,
    },
    /// The peer sent more connections than it announced or than the cap.
    #[error("{sent} connections arrived, {allowed} were allowed")]
    TooManyConnections {
        /// How many arrived (or were announced).
        sent: u64,
        /// How many were allowed.
        allowed: u64,
    },
    /// The receiver cannot open the connections: too few descriptors left.
    #[error("{wanted} connections offered, descriptors for {available} left")]
    NoHeadroom {
        /// Connections offered.
        wanted: u64,
        /// Descriptors free under the limit, less the reserve.
        available: u64,
    },
    /// The new generation did not answer in time; everything it was sent
    /// stays with the old one.
    #[error("no answer from the other generation within {0:?}")]
    Timeout(Duration),
    /// The handover channel closed before the protocol finished.
    #[error("the handover channel closed {0}")]
    Closed(&'static str),
    /// A message out of order or inconsistent with the protocol.
    #[error("handover protocol violation: {0}")]
    Protocol(String),
}
