//! The old generation's side: wait for the next generation to ring, offer
//! state and connections, keep what it refuses, park what it took until
//! it serves.

use std::collections::HashMap;
use std::time::Duration;

use super::wire::{self, ConnMeta, Msg, PROTOCOL};
use super::{closed, send_within, Connection};
use crate::restart::HandoverError;
use crate::{AsyncChannel, BorrowedHandle, Channel, Error, Handle, Limits, Result};

/// The old generation's end of the doorbell; the other end is the handle
/// to store or pass under [`DOORBELL`](super::DOORBELL).
#[derive(Debug)]
pub struct Doorbell {
    chan: AsyncChannel,
}

impl Doorbell {
    /// Creates a doorbell: this end, and the handle the next generation
    /// rings it with. Call it inside a tokio runtime.
    pub fn new() -> Result<(Doorbell, Handle)> {
        let (ours, theirs) = Channel::pair()?;
        let ours = ours.with_limits(Limits {
            max_bytes: 4096,
            max_handles: 1,
        });
        Ok((
            Doorbell {
                chan: AsyncChannel::new(ours)?,
            },
            theirs.into_handle(),
        ))
    }

    /// Waits for a new generation to ring. A malformed ring is an error
    /// (its handles closed); call again to go on waiting.
    /// `Error::Disconnected` means nobody holds the far end any more (it
    /// was removed from the store): every later call fails the same way at
    /// once, so store a new doorbell instead of calling again.
    pub async fn ring(&self) -> Result<Outgoing> {
        let msg = match self.chan.recv().await {
            Ok(msg) => msg,
            Err(e @ Error::Malformed(_)) => {
                // Anyone holding the stored end can ring, and one datagram
                // that breaks the fragment format would otherwise poison
                // the doorbell for good. A ring is a single datagram
                // (4 KiB cap) on a transport that keeps boundaries, so
                // nothing of the next ring is lost by going on. The
                // portable transport is a byte stream: after garbage there
                // is no next boundary to find, so the doorbell stays dead
                // there (ring answers Poisoned; store a new one).
                #[cfg(not(handoff_portable))]
                self.chan.get_ref().clear_poison();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let n = msg.handles.len();
        match wire::decode(&msg.bytes, n)? {
            Msg::Hello { protocol } if protocol == PROTOCOL => {
                let session = msg.handles.into_iter().next().expect("one handle");
                let session = Channel::from_handle(session)?.with_limits(Limits {
                    max_bytes: wire::MAX_ANSWER,
                    max_handles: 0,
                });
                Ok(Outgoing {
                    chan: AsyncChannel::new(session)?,
                })
            }
            Msg::Hello { protocol } => Err(HandoverError::Protocol(format!(
                "the new generation speaks protocol {protocol}, this one {PROTOCOL}"
            ))
            .into()),
            other => {
                Err(HandoverError::Protocol(format!("{} on the doorbell", other.name())).into())
            }
        }
    }
}

/// One handover session, old side.
#[derive(Debug)]
pub struct Outgoing {
    chan: AsyncChannel,
}

/// A handover that did not happen: every connection is back with the old
/// generation, unchanged.
#[derive(Debug)]
pub struct Failed {
    /// Why.
    pub error: Error,
    /// Every connection offered, to be served on.
    pub connections: Vec<Connection>,
}

/// A handover that happened, whole or in part.
#[derive(Debug)]
pub struct Handed {
    /// Connections the new generation refused or had no room for: the old
    /// generation finishes them.
    pub kept: Vec<Connection>,
    /// Why each refused one was refused (id, reason).
    pub refused: Vec<(u64, String)>,
    /// The connections the new generation serves, parked here unserved.
    pub parked: Parked,
}

/// The old generation's copies of connections the new one serves. Not to
/// be read or written: [`settle`](Self::settle) says whether they stay
/// with the new generation or come back.
#[derive(Debug)]
pub struct Parked {
    chan: AsyncChannel,
    connections: Vec<Connection>,
}

impl Parked {
    /// How many connections are parked.
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    /// True when none are.
    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// Waits until the new generation says it serves (then closes the
    /// parked copies and returns nothing) or its session closes first (it
    /// died: returns the connections, to be served by the old generation).
    pub async fn settle(self) -> Vec<Connection> {
        let Parked { chan, connections } = self;
        loop {
            match chan.recv().await {
                Ok(msg) => match wire::decode(&msg.bytes, msg.handles.len()) {
                    Ok(Msg::Serving) => return Vec::new(),
                    // Anything else is out of protocol; the new generation
                    // may still serve them, so only its end decides.
                    _ => continue,
                },
                Err(crate::Error::Disconnected { .. }) => return connections,
                // A message over the caps or malformed: the channel cannot
                // be trusted; the new generation's end still decides.
                Err(_) if !chan.get_ref().is_poisoned() => continue,
                Err(_) => return connections,
            }
        }
    }
}

impl Parked {
    /// Keeps the parked copies until the new generation's end of the
    /// session closes, even after it says it serves: returns them then (it
    /// died or was killed, e.g. by a supervisor after a bad start), to be
    /// served by the old generation. Dropping the future closes the
    /// copies: do that when this generation is told to stop (the
    /// supervisor has judged the new one). Until then a connection the new
    /// generation closes reaches its client as end-of-file only when the
    /// copies go.
    pub async fn hold(self) -> Vec<Connection> {
        let Parked { chan, connections } = self;
        loop {
            match chan.recv().await {
                Ok(_) => continue,
                Err(crate::Error::Disconnected { .. }) => return connections,
                Err(_) if !chan.get_ref().is_poisoned() => continue,
                Err(_) => return connections,
            }
        }
    }
}

async fn recv_within(chan: &AsyncChannel, timeout: Duration, during: &'static str) -> Result<Msg> {
    let msg = tokio::time::timeout(timeout, chan.recv())
        .await
        .map_err(|_| HandoverError::Timeout(timeout))?
        .map_err(closed(during))?;
    Ok(wire::decode(&msg.bytes, msg.handles.len())?)
}

impl Outgoing {
    /// Hands `state` (from [`state::create`](crate::restart::state::create))
    /// and `connections` to the new generation, waiting at most `timeout`
    /// for each of its answers and for room to send each message.
    ///
    /// Run it to the end: the connections are returned in either outcome,
    /// and dropping the future part way closes this generation's copies
    /// while the new one may not hold them yet.
    pub async fn hand_over(
        self,
        state: Option<Handle>,
        connections: Vec<Connection>,
        timeout: Duration,
    ) -> std::result::Result<Handed, Failed> {
        let mut connections = connections;
        match self.run(state, &mut connections, timeout).await {
            Ok((taken, refused)) => {
                let mut parked = Vec::new();
                let mut kept = Vec::new();
                for c in connections {
                    if taken.contains_key(&c.id) {
                        parked.push(c);
                    } else {
                        kept.push(c);
                    }
                }
                Ok(Handed {
                    kept,
                    refused,
                    parked: Parked {
                        chan: self.chan,
                        connections: parked,
                    },
                })
            }
            Err(error) => {
                let reason = error.to_string();
                // Best effort, and never waiting: the new side drops what it
                // got either way once the session closes without a Commit,
                // and a blocking send to a peer that stopped reading would
                // hold this runtime thread for good.
                if let Ok(bytes) = wire::encode(&Msg::Abort { reason }) {
                    let _ = self.chan.try_send(&bytes, &[]);
                }
                Err(Failed { error, connections })
            }
        }
    }

    async fn run(
        &self,
        state: Option<Handle>,
        connections: &mut [Connection],
        timeout: Duration,
    ) -> Result<(HashMap<u64, ()>, Vec<(u64, String)>)> {
        let mut ids = std::collections::HashSet::new();
        if let Some(c) = connections.iter().find(|c| !ids.insert(c.id)) {
            return Err(Error::InvalidArgument(format!(
                "connection id {} offered twice",
                c.id
            )));
        }
        let offer = Msg::Offer {
            state: state.is_some(),
            connections: connections.len() as u64,
        };
        let state_handles: Vec<BorrowedHandle<'_>> = state.iter().map(|h| h.borrow()).collect();
        send_within(
            &self.chan,
            &offer,
            &state_handles,
            timeout,
            "before the offer",
        )
        .await?;
        drop(state_handles);
        drop(state);
        let take = match recv_within(&self.chan, timeout, "before the state was answered").await? {
            Msg::Grant { take } if take <= connections.len() as u64 => take as usize,
            Msg::Grant { take } => {
                return Err(HandoverError::TooManyConnections {
                    sent: take,
                    allowed: connections.len() as u64,
                }
                .into())
            }
            Msg::Refuse { reason } => return Err(HandoverError::Refused(reason).into()),
            other => {
                return Err(
                    HandoverError::Protocol(format!("{} instead of Grant", other.name())).into(),
                )
            }
        };
        let sent = &connections[..take];
        let meta: Vec<ConnMeta> = sent
            .iter()
            .map(|c| ConnMeta {
                id: c.id,
                pending: c.pending.clone(),
                position: c.position.clone(),
            })
            .collect();
        let handles: Vec<BorrowedHandle<'_>> = sent.iter().map(|c| c.handle.borrow()).collect();
        send_within(
            &self.chan,
            &Msg::Connections(meta),
            &handles,
            timeout,
            "while sending connections",
        )
        .await?;
        let (taken, refused) = match recv_within(
            &self.chan,
            timeout,
            "before the connections were acknowledged",
        )
        .await?
        {
            Msg::Taken { taken, refused } => (taken, refused),
            Msg::Refuse { reason } => return Err(HandoverError::Refused(reason).into()),
            other => {
                return Err(
                    HandoverError::Protocol(format!("{} instead of Taken", other.name())).into(),
                )
            }
        };
        // Every connection sent is accounted for exactly once.
        let mut seen: HashMap<u64, bool> = sent.iter().map(|c| (c.id, false)).collect();
        for id in taken.iter().chain(refused.iter().map(|(id, _)| id)) {
            match seen.get_mut(id) {
                Some(s) if !*s => *s = true,
                _ => {
                    return Err(HandoverError::Protocol(format!(
                        "connection {id} acknowledged twice or never sent"
                    ))
                    .into())
                }
            }
        }
        if seen.values().any(|s| !s) {
            return Err(
                HandoverError::Protocol("a connection sent was not acknowledged".into()).into(),
            );
        }
        send_within(&self.chan, &Msg::Commit, &[], timeout, "before the commit").await?;
        Ok((taken.into_iter().map(|id| (id, ())).collect(), refused))
    }
}
