//! Receiving: one datagram at a time into a message, with the checks that
//! keep a hostile or broken peer from leaking handles into, or allocating
//! memory in, the receiver.

use std::cell::RefCell;

use super::frame::{Header, HEADER_LEN, MAX_DATAGRAM};
use super::{Channel, Message};
use crate::{sys, Error, Handle, Result};

thread_local! {
    /// Where the part of a datagram that does not fit the destination's
    /// spare capacity lands. One per thread, not per channel, so ten
    /// thousand idle channels cost nothing.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Where a channel is between datagrams.
#[derive(Debug, Default)]
pub(crate) enum RecvState {
    /// The next datagram must start a message.
    #[default]
    Idle,
    /// Collecting the fragments of a message.
    Assembling {
        msg: Message,
        total_bytes: u64,
        total_handles: u32,
    },
    /// Throwing away the rest of a rejected message.
    Discarding {
        total_bytes: u64,
        total_handles: u32,
    },
}

impl RecvState {
    pub(crate) fn reset(&mut self) {
        *self = RecvState::Idle;
    }

    /// Receives one datagram. `Ok(true)`: `out` holds a whole message.
    /// `Ok(false)`: more fragments are needed.
    pub(crate) fn step(
        &mut self,
        ch: &Channel,
        out: &mut Message,
        nonblocking: bool,
    ) -> Result<bool> {
        let limits = ch.limits;
        let discarding = matches!(self, RecvState::Discarding { .. });
        // Pick the destination before receiving, because bytes and handles
        // arrive in the same call as the header that says what they are.
        let mut discard = Message::new();
        let dst: &mut Message = match self {
            RecvState::Idle => out,
            RecvState::Assembling { msg, .. } => msg,
            RecvState::Discarding { .. } => &mut discard,
        };
        let (bytes_before, handles_before) = (dst.bytes.len(), dst.handles.len());
        let mut header = [0u8; HEADER_LEN];
        let got = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.capacity() < MAX_DATAGRAM {
                scratch.reserve_exact(MAX_DATAGRAM);
            }
            sys::socket::recv(
                ch.socket(),
                &mut header,
                &mut dst.bytes,
                &mut scratch,
                |fd| dst.handles.push(Handle::from(fd)),
                nonblocking,
            )
        });
        let got = got.map_err(|e| Error::io("recvmsg", e))?;
        let handles_here = dst.handles.len() - handles_before;
        let payload = dst.bytes.len() - bytes_before;

        // From here on, any rejection must close what this datagram brought.
        let reject = |dst: &mut Message, e: Error| -> Error {
            dst.handles.truncate(handles_before);
            dst.bytes.truncate(bytes_before);
            e
        };

        if got.len == 0 {
            // A conforming sender never sends an empty datagram, so 0 bytes
            // is end-of-file unless the peer is still there.
            if !sys::socket::peer_hung_up(ch.socket()) {
                return Err(reject(dst, Error::Malformed("empty datagram".into())));
            }
            // The peer is gone. A half-assembled message and its handles are
            // dropped with the state.
            drop(reject(dst, Error::disconnected()));
            *self = RecvState::Idle;
            out.clear();
            return Err(Error::disconnected());
        }
        let header = match Header::decode(&header, got.len) {
            Ok(h) => h,
            Err(e) => return Err(reject(dst, e)),
        };
        if got.truncated {
            return Err(reject(
                dst,
                Error::Malformed(format!(
                    "datagram longer than the {MAX_DATAGRAM}-byte maximum"
                )),
            ));
        }
        // The rest of a message already rejected: its error was reported
        // once, and whatever of its handles did arrive goes with `discard`.
        let cut_while_discarding =
            got.handles_truncated && handles_here < usize::from(header.handles_here) && discarding;
        if handles_here != usize::from(header.handles_here) && !cut_while_discarding {
            if got.handles_truncated && handles_here < usize::from(header.handles_here) {
                let e = Error::HandlesTruncated {
                    expected: header.total_handles,
                    received: handles_here as u32,
                };
                reject(dst, Error::Poisoned);
                self.discard_rest(&header, out);
                return Err(e);
            }
            return Err(reject(
                dst,
                Error::Malformed(format!(
                    "header announces {} handles, {} arrived",
                    header.handles_here, handles_here
                )),
            ));
        }

        match self {
            RecvState::Idle => {
                if !header.is_first() {
                    return Err(reject(
                        out,
                        Error::Malformed("a message continues that never started".into()),
                    ));
                }
                if header.total_bytes > limits.max_bytes
                    || header.total_handles > limits.max_handles
                {
                    let e = if header.total_bytes > limits.max_bytes {
                        Error::TooLarge {
                            what: "message bytes",
                            got: header.total_bytes,
                            limit: limits.max_bytes,
                        }
                    } else {
                        Error::TooLarge {
                            what: "message handles",
                            got: header.total_handles.into(),
                            limit: limits.max_handles.into(),
                        }
                    };
                    reject(out, Error::Poisoned);
                    self.discard_rest(&header, out);
                    return Err(e);
                }
                if payload as u64 > header.total_bytes {
                    return Err(reject(
                        out,
                        Error::Malformed("fragment holds more bytes than its message".into()),
                    ));
                }
                if header.is_last() {
                    return complete(&header, out).map_err(|e| reject(out, e));
                }
                // A message in several fragments: reserve what it announced
                // (already checked against the limits) and keep collecting.
                let mut msg = std::mem::take(out);
                msg.bytes
                    .reserve_exact(header.total_bytes as usize - msg.bytes.len());
                *self = RecvState::Assembling {
                    msg,
                    total_bytes: header.total_bytes,
                    total_handles: header.total_handles,
                };
                Ok(false)
            }
            RecvState::Assembling {
                msg,
                total_bytes,
                total_handles,
            } => {
                let consistent = !header.is_first()
                    && header.total_bytes == *total_bytes
                    && header.total_handles == *total_handles
                    && msg.bytes.len() as u64 <= *total_bytes
                    && msg.handles.len() as u64 <= u64::from(*total_handles);
                if !consistent {
                    *self = RecvState::Idle;
                    return Err(Error::Malformed(
                        "fragment does not continue the message in progress".into(),
                    ));
                }
                if header.is_last() {
                    let mut msg = std::mem::take(msg);
                    *self = RecvState::Idle;
                    complete(&header, &mut msg)?;
                    *out = msg;
                    return Ok(true);
                }
                Ok(false)
            }
            RecvState::Discarding {
                total_bytes,
                total_handles,
            } => {
                if header.is_first()
                    || header.total_bytes != *total_bytes
                    || header.total_handles != *total_handles
                {
                    *self = RecvState::Idle;
                    return Err(Error::Malformed(
                        "fragment does not continue the message being discarded".into(),
                    ));
                }
                if header.is_last() {
                    *self = RecvState::Idle;
                }
                Ok(false)
            }
        }
    }

    /// After rejecting the first fragments of a message, skip the rest.
    fn discard_rest(&mut self, header: &Header, out: &mut Message) {
        out.clear();
        *self = if header.is_last() {
            RecvState::Idle
        } else {
            RecvState::Discarding {
                total_bytes: header.total_bytes,
                total_handles: header.total_handles,
            }
        };
    }
}

/// Checks that the last fragment made the message exactly as announced.
fn complete(header: &Header, msg: &mut Message) -> Result<bool> {
    if msg.bytes.len() as u64 != header.total_bytes
        || msg.handles.len() as u64 != u64::from(header.total_handles)
    {
        let e = Error::Malformed(format!(
            "message announced {} bytes and {} handles, carried {} and {}",
            header.total_bytes,
            header.total_handles,
            msg.bytes.len(),
            msg.handles.len()
        ));
        msg.clear();
        return Err(e);
    }
    Ok(true)
}
