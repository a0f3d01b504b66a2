//! The new generation's side: ring the old generation, validate its state,
//! take as many connections as it has descriptors for, and serve them only
//! once the old one commits.

use std::time::Duration;

use super::wire::{self, Msg, PROTOCOL};
use super::{check_connection, closed, send_within, Connection};
use crate::restart::HandoverError;
use crate::{AsyncChannel, Channel, Handle, Limits, Result};

/// What the new generation accepts.
#[derive(Debug, Clone, Copy)]
pub struct TakeLimits {
    /// Most connections taken in one handover.
    pub max_connections: u64,
    /// Descriptors left free after taking them (for listeners, files and
    /// new clients): fewer free means fewer taken.
    pub reserve: u64,
    /// How long to wait for each of the old generation's messages.
    pub timeout: Duration,
}

impl Default for TakeLimits {
    /// 100,000 connections, 64 descriptors spare, 10 s per answer.
    fn default() -> Self {
        TakeLimits {
            max_connections: 100_000,
            reserve: 64,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Descriptors this process can still open under its soft limit.
fn headroom() -> Result<u64> {
    let open = crate::count_open_handles()? as u64;
    Ok(match crate::sys::limits::open_file_limit() {
        Some(limit) => limit.saturating_sub(open),
        None => u64::MAX,
    })
}

/// One handover session, new side, after the old generation's offer.
#[derive(Debug)]
pub struct Incoming {
    chan: AsyncChannel,
    state: Option<Handle>,
    offered: u64,
    limits: TakeLimits,
    /// The most handles the channel lets one message bring in.
    cap: u64,
}

/// The connections taken over, the new generation's to serve.
#[derive(Debug)]
pub struct Takeover {
    /// The connections, with their unread bytes and positions.
    pub connections: Vec<Connection>,
    /// Connections refused here (not a connected stream socket), each
    /// with the reason: the old generation keeps them.
    pub declined: Vec<(u64, String)>,
    /// Connections offered but not asked for (over the cap, or no
    /// descriptors for them): the old generation keeps them.
    pub untaken: u64,
    chan: AsyncChannel,
    timeout: Duration,
}

async fn recv_within(
    chan: &AsyncChannel,
    timeout: Duration,
    during: &'static str,
) -> Result<(Msg, Vec<Handle>)> {
    let msg = tokio::time::timeout(timeout, chan.recv())
        .await
        .map_err(|_| HandoverError::Timeout(timeout))?
        .map_err(closed(during))?;
    let decoded = wire::decode(&msg.bytes, msg.handles.len())?;
    Ok((decoded, msg.handles))
}

impl Incoming {
    /// Rings the old generation's doorbell (the handle named
    /// [`DOORBELL`](super::DOORBELL)) and waits for its offer.
    pub async fn connect(doorbell: Handle, limits: TakeLimits) -> Result<Incoming> {
        let doorbell = Channel::from_handle(doorbell)?;
        let (ours, theirs) = Channel::pair()?;
        // The channel itself refuses a message with more handles than this
        // process has room for, closing what arrived.
        let room = headroom()?.saturating_sub(limits.reserve);
        let cap = limits.max_connections.min(room).clamp(1, u32::MAX as u64) as u32;
        let ours = AsyncChannel::new(ours.with_limits(Limits {
            max_bytes: wire::MAX_MESSAGE,
            max_handles: cap,
        }))?;
        // Async with the session's timeout: a doorbell whose queue is full
        // (an old generation that stopped ringing) must not hold this
        // runtime thread.
        let doorbell = AsyncChannel::new(doorbell)?;
        send_within(
            &doorbell,
            &Msg::Hello { protocol: PROTOCOL },
            &[theirs.as_borrowed()],
            limits.timeout,
            "before the doorbell rang",
        )
        .await?;
        drop(theirs);
        drop(doorbell);
        let (msg, mut handles) = recv_within(&ours, limits.timeout, "before the offer").await?;
        match msg {
            Msg::Offer { connections, .. } => Ok(Incoming {
                chan: ours,
                state: handles.pop(),
                offered: connections,
                limits,
                cap: u64::from(cap),
            }),
            Msg::Abort { reason } => Err(HandoverError::Refused(reason).into()),
            other => {
                Err(HandoverError::Protocol(format!("{} instead of Offer", other.name())).into())
            }
        }
    }

    /// The state handle, if the old generation sent one (open it with
    /// [`State::open`](crate::restart::state::State::open)).
    pub fn take_state(&mut self) -> Option<Handle> {
        self.state.take()
    }

    /// How many connections the old generation offers.
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// Refuses the handover (a state it cannot use): the old generation
    /// serves on, unchanged, and reports `reason`.
    pub async fn refuse(self, reason: &str) -> Result<()> {
        let refuse = Msg::Refuse {
            reason: reason.to_owned(),
        };
        send_within(
            &self.chan,
            &refuse,
            &[],
            self.limits.timeout,
            "before the refusal",
        )
        .await
    }

    /// Accepts: takes as many connections as the limits and the descriptor
    /// headroom allow, checks each is a connected stream socket, and
    /// returns them once the old generation commits. On any failure every
    /// connection received is closed here (the old generation still holds
    /// its copy and serves it).
    pub async fn accept(self) -> Result<Takeover> {
        let room = headroom()?
            .saturating_sub(self.limits.reserve)
            .min(self.cap);
        let take = self.offered.min(self.limits.max_connections).min(room);
        if take < self.offered {
            let why = if take == room {
                HandoverError::NoHeadroom {
                    wanted: self.offered,
                    available: room,
                }
            } else {
                HandoverError::TooManyConnections {
                    sent: self.offered,
                    allowed: self.limits.max_connections,
                }
            };
            tracing::warn!("taking {take} of {} connections: {why}", self.offered);
        }
        let timeout = self.limits.timeout;
        send_within(
            &self.chan,
            &Msg::Grant { take },
            &[],
            timeout,
            "before the grant",
        )
        .await?;
        let (msg, handles) = recv_within(
            &self.chan,
            self.limits.timeout,
            "while receiving connections",
        )
        .await?;
        let Msg::Connections(meta) = msg else {
            return Err(
                HandoverError::Protocol(format!("{} instead of Connections", msg.name())).into(),
            );
        };
        if meta.len() as u64 > take {
            return Err(HandoverError::TooManyConnections {
                sent: meta.len() as u64,
                allowed: take,
            }
            .into());
        }
        let mut connections = Vec::with_capacity(meta.len());
        // A set: thousands of connections per handover must not cost a
        // quadratic duplicate check on the runtime thread.
        let mut seen = std::collections::HashSet::with_capacity(meta.len());
        let mut taken = Vec::with_capacity(meta.len());
        let mut refused = Vec::new();
        for (m, handle) in meta.into_iter().zip(handles) {
            match check_connection(m.id, &handle) {
                Ok(()) if seen.insert(m.id) => {
                    taken.push(m.id);
                    connections.push(Connection {
                        id: m.id,
                        handle,
                        pending: m.pending,
                        position: m.position,
                    });
                }
                Ok(()) => {
                    return Err(
                        HandoverError::Protocol(format!("connection {} sent twice", m.id)).into(),
                    )
                }
                Err(e) => refused.push((m.id, e.to_string())),
            }
        }
        let taken = Msg::Taken {
            taken,
            refused: refused.clone(),
        };
        send_within(
            &self.chan,
            &taken,
            &[],
            timeout,
            "before the acknowledgement",
        )
        .await?;
        match recv_within(&self.chan, self.limits.timeout, "before the commit")
            .await?
            .0
        {
            Msg::Commit => Ok(Takeover {
                connections,
                declined: refused,
                untaken: self.offered - take,
                chan: self.chan,
                timeout,
            }),
            Msg::Abort { reason } => Err(HandoverError::Refused(reason).into()),
            other => {
                Err(HandoverError::Protocol(format!("{} instead of Commit", other.name())).into())
            }
        }
    }
}

impl Takeover {
    /// Tells the old generation this one serves (call it once ready): it
    /// closes its parked copies, so a connection closed here reaches its
    /// client as end-of-file at once.
    pub async fn serving(self) -> Result<()> {
        send_within(
            &self.chan,
            &Msg::Serving,
            &[],
            self.timeout,
            "before Serving",
        )
        .await
    }
}
