//! The client side: building calls, the async client, decoding replies.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{oneshot, Semaphore};

use super::context::Context;
use super::handles::{HandleSpec, OutHandle, Outgoing, Slots};
use super::wire::{self, FrameType, Header, Hello, Welcome};
use super::{CallError, Fault, Identity};
use crate::{AsHandle, AsyncChannel, BorrowedHandle, Error, Handle, Limits, Message, Result};

/// A call being built: its method, the handles it carries and its encoded
/// arguments.
///
/// A handle that already grants exactly the declared access is sent as it
/// is, borrowed for `'a` (the kernel gives the server its own descriptor);
/// one with more rights is replaced by a duplicate restricted to the
/// declared access, which the call owns and closes once sent.
///
/// The generated clients build calls with it; use it directly only to speak
/// to a server below the generated API (tests of a server's checks do).
#[derive(Debug)]
pub struct Call<'a> {
    method: u32,
    frame: Option<Vec<u8>>,
    out: Outgoing<'a>,
}

impl<'a> Call<'a> {
    /// A call of the method with index `method` (its position in the trait).
    pub fn new(method: u32) -> Call<'a> {
        Call {
            method,
            frame: None,
            out: Outgoing::default(),
        }
    }

    /// Attaches `handle` (or, if it has more rights than declared, a
    /// duplicate restricted to the declared access) and returns its index
    /// for the arguments. A handle lacking a declared right is
    /// [`Error::WrongAccess`], before anything is sent.
    pub fn handle<H: AsHandle + ?Sized>(
        &mut self,
        handle: &'a H,
        spec: &HandleSpec,
    ) -> Result<u32> {
        self.borrowed(handle.as_handle(), spec)
    }

    fn borrowed(&mut self, handle: BorrowedHandle<'a>, spec: &HandleSpec) -> Result<u32> {
        let out = spec.prepare(handle)?;
        self.out.push(out)
    }

    /// [`handle`](Self::handle) for an optional parameter.
    pub fn handle_opt(
        &mut self,
        handle: Option<BorrowedHandle<'a>>,
        spec: &HandleSpec,
    ) -> Result<Option<u32>> {
        handle.map(|h| self.borrowed(h, spec)).transpose()
    }

    /// [`handle`](Self::handle) for an array parameter; more handles than
    /// the declared maximum is [`Error::TooLarge`].
    pub fn handles(
        &mut self,
        handles: &[BorrowedHandle<'a>],
        spec: &HandleSpec,
    ) -> Result<Vec<u32>> {
        spec.check_count(handles.len())?;
        handles.iter().map(|h| self.borrowed(*h, spec)).collect()
    }

    /// The token to pass for a context parameter.
    pub fn context<S>(&mut self, context: &Context<S>) -> Result<u64> {
        context.token()
    }

    /// Attaches a duplicate of `handle` as it is, checking nothing: for
    /// exercising a server's own checks.
    pub fn unchecked_handle(&mut self, handle: impl AsHandle) -> Result<u32> {
        let dup = handle.as_handle().try_clone_to_owned()?;
        self.out.push(OutHandle::Owned(dup))
    }

    /// Encodes the arguments: the parameters in declaration order as a
    /// tuple, handles as the indices returned above, contexts as tokens.
    pub fn args<A: Serialize + ?Sized>(&mut self, args: &A) -> Result<()> {
        let frame = wire::frame(FrameType::Call, self.method, 0, self.out.len(), args)?;
        self.frame = Some(frame);
        Ok(())
    }

    /// The frame with its call id, and the handles to send with it.
    pub(crate) fn into_frame(self, call_id: u64) -> Result<(Vec<u8>, Outgoing<'a>)> {
        let mut frame = match self.frame {
            Some(f) => f,
            None => wire::frame(FrameType::Call, self.method, 0, self.out.len(), &())?,
        };
        wire::set_call_id(&mut frame, call_id);
        Ok((frame, self.out))
    }
}

/// A server's answer to one call: a result (with any out handles) or a
/// fault. Dropping it closes every handle not taken.
#[derive(Debug)]
pub struct Reply {
    ty: FrameType,
    bytes: Vec<u8>,
    slots: Slots,
}

impl Reply {
    pub(crate) fn from_frame(header: Header, msg: Message) -> Reply {
        Reply {
            ty: header.ty,
            bytes: msg.bytes,
            slots: Slots::new(msg.handles),
        }
    }

    fn fault(bytes: Vec<u8>) -> Reply {
        Reply {
            ty: FrameType::Fault,
            bytes,
            slots: Slots::default(),
        }
    }

    /// Decodes the result: `Ok` as the wire form of `T` (handles as indices,
    /// contexts as tokens), the method's error as
    /// [`CallError::Application`], a fault as [`CallError::Fault`].
    pub fn decode<T: DeserializeOwned, E: DeserializeOwned>(
        &mut self,
    ) -> std::result::Result<T, CallError<E>> {
        if self.ty == FrameType::Fault {
            return Err(CallError::Fault(wire::body::<Fault>(&self.bytes)?));
        }
        match wire::body::<std::result::Result<T, E>>(&self.bytes)? {
            Ok(value) => Ok(value),
            Err(e) if self.slots.is_empty() => Err(CallError::Application(e)),
            Err(_) => Err(CallError::Handoff(Error::Malformed(
                "an error reply carried handles".into(),
            ))),
        }
    }

    /// Takes the out handle at `index`, checking its kind and exact access.
    pub fn take(&mut self, index: u32, spec: &HandleSpec) -> Result<Handle> {
        self.slots.take(index, spec)
    }

    /// [`take`](Self::take) for an optional result.
    pub fn take_opt(&mut self, index: Option<u32>, spec: &HandleSpec) -> Result<Option<Handle>> {
        self.slots.take_opt(index, spec)
    }

    /// [`take`](Self::take) for an array result, at most the declared
    /// maximum.
    pub fn take_many(&mut self, indices: Vec<u32>, spec: &HandleSpec) -> Result<Vec<Handle>> {
        self.slots.take_many(indices, spec)
    }

    /// The client's side of a context the server opened.
    pub fn context<S>(&mut self, token: u64) -> Context<S> {
        Context::from_token(token)
    }

    /// Checks that every handle of the reply was declared and taken.
    pub fn finish(&mut self) -> Result<()> {
        self.slots.finish()
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        super::spare::give_bytes(std::mem::take(&mut self.bytes));
    }
}

/// What a client learned in the handshake.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub server: Identity,
    pub limits: Limits,
    pub max_in_flight: u32,
}

pub(crate) fn hello_frame(identity: &Identity) -> Result<Vec<u8>> {
    wire::frame(FrameType::Hello, 0, 0, 0, &Hello::of(identity))
}

/// Checks the server's WELCOME against this client's identity.
pub(crate) fn read_welcome(identity: &Identity, msg: &Message) -> Result<Session> {
    let header = Header::decode(&msg.bytes, msg.handles.len())?;
    if header.ty != FrameType::Welcome {
        return Err(Error::Malformed(format!(
            "rpc handshake: expected WELCOME, got {:?}",
            header.ty
        )));
    }
    let welcome: Welcome = wire::body(&msg.bytes)?;
    let server = Identity {
        name: welcome.name.into(),
        version: welcome.version,
        hash: welcome.hash,
    };
    if !welcome.accepted || server != *identity {
        return Err(Error::InterfaceMismatch {
            client: identity.to_string(),
            server: server.to_string(),
        });
    }
    Ok(Session {
        server,
        limits: Limits {
            max_bytes: welcome.max_bytes,
            max_handles: welcome.max_handles,
        },
        max_in_flight: welcome.max_in_flight.max(1),
    })
}

/// Refuses, before sending, a frame the server would refuse for its size.
pub(crate) fn check_limits(limits: &Limits, frame: &[u8], handles: usize) -> Result<()> {
    if frame.len() as u64 > limits.max_bytes {
        return Err(Error::TooLarge {
            what: "call bytes (the server's limit)",
            got: frame.len() as u64,
            limit: limits.max_bytes,
        });
    }
    if handles as u64 > u64::from(limits.max_handles) {
        return Err(Error::TooLarge {
            what: "call handles (the server's limit)",
            got: handles as u64,
            limit: u64::from(limits.max_handles),
        });
    }
    Ok(())
}

pub(crate) fn close_frame(call_id: u64, token: u64) -> Result<Vec<u8>> {
    wire::frame(FrameType::Close, 0, call_id, 0, &token)
}

pub(crate) fn decode_close(mut reply: Reply) -> std::result::Result<(), CallError<Infallible>> {
    if reply.ty == FrameType::Fault {
        return Err(CallError::Fault(wire::body::<Fault>(&reply.bytes)?));
    }
    wire::body::<()>(&reply.bytes)?;
    reply.finish()?;
    Ok(())
}

/// An async RPC client: one connection, any number of concurrent calls.
///
/// Cheap to clone; clones share the connection, which closes when the last
/// clone is dropped (the server then runs down this client's contexts).
/// Must be created inside a tokio runtime. The generated `<Trait>Client`
/// wraps it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    reader: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

struct Shared {
    channel: AsyncChannel,
    session: Session,
    next_id: AtomicU64,
    // The server refuses calls beyond its limit; queueing here keeps a
    // well-behaved client from ever seeing that.
    permits: Semaphore,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    calls: HashMap<u64, oneshot::Sender<Result<Reply>>>,
    ended: Option<End>,
}

#[derive(Clone)]
enum End {
    Disconnected,
    Malformed(String),
    Fault(Vec<u8>),
}

impl End {
    fn outcome(&self) -> Result<Reply> {
        match self {
            End::Disconnected => Err(Error::disconnected()),
            End::Malformed(m) => Err(Error::Malformed(m.clone())),
            End::Fault(bytes) => Ok(Reply::fault(bytes.clone())),
        }
    }
}

impl Client {
    /// Connects to a server listening at `path` and shakes hands as
    /// `identity`.
    pub async fn connect(path: impl AsRef<std::path::Path>, identity: Identity) -> Result<Client> {
        Client::handshake(AsyncChannel::connect(path)?, identity).await
    }

    /// Shakes hands over an already connected channel. A server speaking
    /// another interface, version or signature is
    /// [`Error::InterfaceMismatch`] naming both.
    pub async fn handshake(channel: AsyncChannel, identity: Identity) -> Result<Client> {
        channel.send(&hello_frame(&identity)?, &[]).await?;
        let session = read_welcome(&identity, &channel.recv().await?)?;
        let shared = Arc::new(Shared {
            channel,
            permits: Semaphore::new((session.max_in_flight as usize).min(Semaphore::MAX_PERMITS)),
            session,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Pending::default()),
        });
        let reader = tokio::spawn(read_replies(shared.clone())).abort_handle();
        Ok(Client {
            inner: Arc::new(Inner { shared, reader }),
        })
    }

    /// The server's identity, as it announced it.
    pub fn server_identity(&self) -> &Identity {
        &self.inner.shared.session.server
    }

    /// Sends a call and waits for its reply. Dropping the future abandons
    /// the call (its reply, and any handles in it, are discarded).
    pub async fn call(&self, call: Call<'_>) -> Result<Reply> {
        let shared = &self.inner.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (frame, out) = call.into_frame(id)?;
        check_limits(&shared.session.limits, &frame, out.len())?;
        let _permit = shared
            .permits
            .acquire()
            .await
            .map_err(|_| Error::disconnected())?;
        let reply = match out.single() {
            Some(one) => self.exchange(id, &frame, &[one]).await,
            None => self.exchange(id, &frame, &out.borrowed()).await,
        };
        super::spare::give_bytes(frame);
        reply
    }

    /// Closes a context: the server runs its rundown (once the calls using
    /// it have finished) and forgets the token.
    pub async fn close_context<S>(
        &self,
        context: Context<S>,
    ) -> std::result::Result<(), CallError<Infallible>> {
        let id = self.inner.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = close_frame(id, context.token()?)?;
        decode_close(self.exchange(id, &frame, &[]).await?)
    }

    async fn exchange(
        &self,
        id: u64,
        frame: &[u8],
        handles: &[BorrowedHandle<'_>],
    ) -> Result<Reply> {
        let shared = &self.inner.shared;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = shared.lock_pending();
            if let Some(end) = &pending.ended {
                return end.outcome();
            }
            pending.calls.insert(id, tx);
        }
        let forget = Forget { shared, id };
        shared.channel.send(frame, handles).await?;
        let reply = rx.await.unwrap_or(Err(Error::disconnected()));
        drop(forget);
        reply
    }
}

/// Removes an abandoned call's entry, so its late reply is dropped.
struct Forget<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.lock_pending().calls.remove(&self.id);
    }
}

impl Shared {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn read_replies(shared: Arc<Shared>) {
    let end = loop {
        let mut msg = wire::buffer();
        match shared.channel.recv_into(&mut msg).await {
            Ok(()) => {}
            Err(Error::Disconnected { .. }) => break End::Disconnected,
            Err(e) => break End::Malformed(format!("rpc reply: {e}")),
        };
        let header = match Header::decode(&msg.bytes, msg.handles.len()) {
            Ok(h) => h,
            Err(e) => break End::Malformed(e.to_string()),
        };
        match header.ty {
            FrameType::Fault if header.call_id == 0 => break End::Fault(msg.bytes),
            FrameType::Reply | FrameType::Fault => {
                let waiter = shared.lock_pending().calls.remove(&header.call_id);
                if let Some(tx) = waiter {
                    // A waiter that gave up drops the reply and its handles.
                    let _ = tx.send(Ok(Reply::from_frame(header, msg)));
                }
            }
            other => break End::Malformed(format!("rpc: a server sent a {other:?} frame")),
        }
    };
    tracing::debug!(server = %shared.session.server, "rpc connection ended");
    let waiters = {
        let mut pending = shared.lock_pending();
        pending.ended = Some(end.clone());
        std::mem::take(&mut pending.calls)
    };
    for (_, tx) in waiters {
        let _ = tx.send(end.outcome());
    }
    shared.permits.close();
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.shared.session.server)
            .finish_non_exhaustive()
    }
}
