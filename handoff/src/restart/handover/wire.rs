//! The handover messages: a serde payload (typed-payload encoding) plus
//! the handles that travel beside it in `SCM_RIGHTS`. Which handles a
//! message carries is fixed by its kind, so [`decode`] checks the count
//! the kernel delivered against the payload before anything is trusted.
//! Pure: the fuzz target `handover` runs it on arbitrary bytes.

use serde::{Deserialize, Serialize};

use crate::restart::HandoverError;

/// The protocol version in [`Msg::Hello`].
pub const PROTOCOL: u32 = 1;

/// Bytes of one handover message at most (the connections' metadata of
/// one batch included); a peer announcing more is refused by the channel.
pub const MAX_MESSAGE: u64 = 256 << 20;

/// Bytes of one message from the new generation to the old at most: its
/// answers are small (a `Taken` for 100,000 connections with a reason for
/// each is a few MiB), and the side that keeps serving should not be made
/// to buffer more on a peer's word.
pub const MAX_ANSWER: u64 = 32 << 20;

/// What one generation tells the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// New → old over the doorbell, with one handle: the session channel.
    Hello {
        /// The new generation's protocol version.
        protocol: u32,
    },
    /// Old → new: the state (one handle when `state`) and how many
    /// connections the old generation has to hand over.
    Offer {
        /// Whether a state handle is attached.
        state: bool,
        /// Connections the old generation offers.
        connections: u64,
    },
    /// New → old: state accepted; how many connections it can take.
    Grant {
        /// At most the offered count.
        take: u64,
    },
    /// New → old: the state (or the whole handover) is refused.
    Refuse {
        /// Why, for the trigger's report.
        reason: String,
    },
    /// Old → new: one batch of connections, one handle each, in order.
    Connections(Vec<ConnMeta>),
    /// New → old: which connections it holds and which it refused.
    Taken {
        /// Held by the new generation.
        taken: Vec<u64>,
        /// Refused, with the reason (they stay with the old generation).
        refused: Vec<(u64, String)>,
    },
    /// Old → new: the taken connections are the new generation's now.
    Commit,
    /// Old → new: the handover is off; drop every connection received.
    Abort {
        /// Why.
        reason: String,
    },
    /// New → old: it serves; the old generation closes its parked copies.
    Serving,
}

/// A connection's application state, beside its handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnMeta {
    /// The old generation's number for it.
    pub id: u64,
    /// Bytes read from it but not yet handled.
    pub pending: Vec<u8>,
    /// The protocol position, in the application's own encoding.
    pub position: Vec<u8>,
}

impl Msg {
    /// How many handles this message carries.
    pub fn handles(&self) -> usize {
        match self {
            Msg::Hello { .. } => 1,
            Msg::Offer { state, .. } => usize::from(*state),
            Msg::Connections(list) => list.len(),
            _ => 0,
        }
    }

    /// The message's name, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "Hello",
            Msg::Offer { .. } => "Offer",
            Msg::Grant { .. } => "Grant",
            Msg::Refuse { .. } => "Refuse",
            Msg::Connections(_) => "Connections",
            Msg::Taken { .. } => "Taken",
            Msg::Commit => "Commit",
            Msg::Abort { .. } => "Abort",
            Msg::Serving => "Serving",
        }
    }
}

/// Encodes a message's payload.
pub fn encode(msg: &Msg) -> crate::Result<Vec<u8>> {
    Ok(crate::typed::encode(msg)?.0)
}

/// Decodes a payload that arrived with `handles` handles: the payload must
/// decode whole and the handle count must be the message's.
pub fn decode(bytes: &[u8], handles: usize) -> Result<Msg, HandoverError> {
    let (msg, used) = crate::channel::typed::decode_bounded::<Msg>(bytes)
        .map_err(|e| HandoverError::Protocol(format!("undecodable message: {e}")))?;
    if used != bytes.len() {
        return Err(HandoverError::Protocol(format!(
            "{} trailing bytes after {}",
            bytes.len() - used,
            msg.name()
        )));
    }
    if msg.handles() != handles {
        return Err(HandoverError::Protocol(format!(
            "{} carries {} handles, {handles} arrived",
            msg.name(),
            msg.handles()
        )));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips_and_a_wrong_handle_count_is_refused() {
        let all = [
            Msg::Hello { protocol: PROTOCOL },
            Msg::Offer {
                state: true,
                connections: 3,
            },
            Msg::Grant { take: 2 },
            Msg::Refuse {
                reason: "no".into(),
            },
            Msg::Connections(vec![ConnMeta {
                id: 7,
                pending: b"GET".to_vec(),
                position: vec![1],
            }]),
            Msg::Taken {
                taken: vec![7],
                refused: vec![(8, "pipe".into())],
            },
            Msg::Commit,
            Msg::Abort {
                reason: "late".into(),
            },
            Msg::Serving,
        ];
        for m in all {
            let bytes = encode(&m).unwrap();
            assert_eq!(decode(&bytes, m.handles()).unwrap(), m);
            assert!(matches!(
                decode(&bytes, m.handles() + 1),
                Err(HandoverError::Protocol(_))
            ));
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode(&longer, m.handles()).is_err());
            assert!(decode(&bytes[..bytes.len() - 1], m.handles()).is_err());
        }
    }
}
