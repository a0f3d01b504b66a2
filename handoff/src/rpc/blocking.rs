//! The blocking client, for programs without a tokio runtime.

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::client::{
    check_limits, close_frame, decode_close, hello_frame, read_welcome, Call, Reply, Session,
};
use super::context::Context;
use super::wire::{self, FrameType, Header};
use super::{CallError, Identity};
use crate::{BorrowedHandle, Channel, Error, Result};

/// A blocking RPC client over a [`Channel`].
///
/// Calls from several threads are made one at a time on the connection
/// (each waits for its reply before the next is sent); open one client per
/// thread for parallel calls. Dropping it closes the connection, and the
/// server runs down this client's contexts. The generated
/// `<Trait>BlockingClient` wraps it.
pub struct BlockingClient {
    channel: Channel,
    session: Session,
    next_id: AtomicU64,
    one_at_a_time: Mutex<()>,
}

impl BlockingClient {
    /// Connects to a server listening at `path` and shakes hands as
    /// `identity`.
    pub fn connect(
        path: impl AsRef<std::path::Path>,
        identity: Identity,
    ) -> Result<BlockingClient> {
        BlockingClient::handshake(Channel::connect(path)?, identity)
    }

    /// Shakes hands over an already connected channel. A server speaking
    /// another interface, version or signature is
    /// [`Error::InterfaceMismatch`] naming both.
    pub fn handshake(channel: Channel, identity: Identity) -> Result<BlockingClient> {
        channel.send(&hello_frame(&identity)?, &[])?;
        let session = read_welcome(&identity, &channel.recv()?)?;
        Ok(BlockingClient {
            channel,
            session,
            next_id: AtomicU64::new(1),
            one_at_a_time: Mutex::new(()),
        })
    }

    /// The server's identity, as it announced it.
    pub fn server_identity(&self) -> &Identity {
        &self.session.server
    }

    /// Sends a call and waits for its reply.
    pub fn call(&self, call: Call<'_>) -> Result<Reply> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (frame, out) = call.into_frame(id)?;
        check_limits(&self.session.limits, &frame, out.len())?;
        let reply = match out.single() {
            Some(one) => self.exchange(id, &frame, &[one]),
            None => self.exchange(id, &frame, &out.borrowed()),
        };
        super::spare::give_bytes(frame);
        reply
    }

    /// Closes a context: the server runs its rundown (once the calls using
    /// it have finished) and forgets the token.
    pub fn close_context<S>(
        &self,
        context: Context<S>,
    ) -> std::result::Result<(), CallError<Infallible>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = close_frame(id, context.token()?)?;
        decode_close(self.exchange(id, &frame, &[])?)
    }

    fn exchange(&self, id: u64, frame: &[u8], handles: &[BorrowedHandle<'_>]) -> Result<Reply> {
        let _turn = self.one_at_a_time.lock().unwrap_or_else(|p| p.into_inner());
        self.channel.send(frame, handles)?;
        loop {
            let mut msg = wire::buffer();
            self.channel.recv_into(&mut msg)?;
            let header = Header::decode(&msg.bytes, msg.handles.len())?;
            match header.ty {
                FrameType::Reply | FrameType::Fault if header.call_id == id => {
                    return Ok(Reply::from_frame(header, msg))
                }
                FrameType::Fault if header.call_id == 0 => {
                    return Ok(Reply::from_frame(header, msg))
                }
                // A reply to a call that failed half-way earlier: drop it
                // and its handles.
                FrameType::Reply | FrameType::Fault => continue,
                other => {
                    return Err(Error::Malformed(format!(
                        "rpc: a server sent a {other:?} frame"
                    )))
                }
            }
        }
    }
}

impl fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingClient")
            .field("server", &self.session.server)
            .finish_non_exhaustive()
    }
}
