//! The server side: connections, concurrent calls, checks on arrival,
//! replies, and context rundown when a connection ends.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::task::JoinSet;

use super::context::{Context, ContextRef, ContextTable};
use super::handles::{next_index, HandleSpec, Slots};
use super::wire::{self, FrameType, Header, Hello, Welcome};
use super::{Dispatch, Fault};
use crate::{
    AccessRule, AsyncChannel, AsyncListener, BorrowedHandle, Error, ErrorKind, Handle, Limits,
    Message, Result,
};

/// Serves an interface: accepts connections and runs their calls.
///
/// ```no_run
/// # #[handoff::interface]
/// # pub trait Echo { async fn echo(&self, s: String) -> Result<String, ()>; }
/// # pub struct Impl;
/// # impl Echo for Impl { async fn echo(&self, s: String) -> Result<String, ()> { Ok(s) } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> handoff::Result<()> {
/// let listener = handoff::AsyncListener::bind("/tmp/echo.sock")?;
/// handoff::rpc::Server::new(EchoServer::new(Impl))
///     .max_in_flight(16)
///     .serve(listener)
///     .await
/// # }
/// ```
pub struct Server<D> {
    dispatch: Arc<D>,
    max_in_flight: u32,
    limits: Limits,
}

impl<D> Clone for Server<D> {
    fn clone(&self) -> Self {
        Server {
            dispatch: self.dispatch.clone(),
            max_in_flight: self.max_in_flight,
            limits: self.limits,
        }
    }
}

impl<D> std::fmt::Debug for Server<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("max_in_flight", &self.max_in_flight)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<D: Dispatch> Server<D> {
    /// A server for `dispatch` (a generated `<Trait>Server`), allowing 64
    /// calls in flight per connection and messages of at most 16 MiB and
    /// 1024 handles.
    pub fn new(dispatch: D) -> Server<D> {
        Server {
            dispatch: Arc::new(dispatch),
            max_in_flight: 64,
            limits: Limits {
                max_bytes: 16 << 20,
                max_handles: 1024,
            },
        }
    }

    /// The most calls one connection may have running at once; a call over
    /// it is refused with [`Fault::Busy`] (the generated clients queue
    /// instead, having learned the limit in the handshake).
    pub fn max_in_flight(mut self, calls: u32) -> Self {
        self.max_in_flight = calls.max(1);
        self
    }

    /// The most bytes and handles one message from a client may carry. A
    /// message over them closes the connection (clients check before
    /// sending).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The dispatcher (and through it the implementation).
    pub fn dispatcher(&self) -> &D {
        &self.dispatch
    }

    /// Accepts connections for ever, serving each on its own task. Returns
    /// only if accepting fails.
    ///
    /// Running out of descriptors or memory while accepting (`EMFILE`,
    /// `ENFILE`, `ENOBUFS`, `ENOMEM`) is waited out, not returned: the
    /// connection stays queued and is accepted once connections close.
    pub async fn serve(self, listener: AsyncListener) -> Result<()> {
        loop {
            let channel = match listener.accept().await {
                Ok(channel) => channel,
                Err(e) if e.kind() == ErrorKind::Exhausted => {
                    tracing::warn!(error = %e, "accept is out of resources; retrying shortly");
                    // The queued connection keeps the listener readable, so
                    // without a pause this would spin.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(e) = server.serve_connection(channel).await {
                    tracing::debug!(error = %e, "rpc connection ended with an error");
                }
            });
        }
    }

    /// Serves one connection until the client disconnects or breaks the
    /// protocol. Then its calls in flight are cancelled and its contexts
    /// run down.
    pub async fn serve_connection(&self, channel: AsyncChannel) -> Result<()> {
        let channel = AsyncChannel::new(channel.into_inner().with_limits(self.limits))?;
        self.handshake(&channel).await?;
        let conn = Arc::new(Connection {
            channel,
            contexts: Arc::new(ContextTable::default()),
        });
        let running = Arc::new(AtomicU32::new(0));
        // A call that has to wait runs as a task until its reply is sent. A
        // client that does not read its replies leaves such tasks behind,
        // and once there are twice the limit this loop stops reading its
        // calls, so it cannot pile up tasks holding replies (and their
        // handles). Twice the limit, so that even with every method hung
        // the loop still reads: calls over the limit get Busy and a hang-up
        // is noticed. (Calls that finish in this loop hold nothing.)
        let max_tasks = 2 * self.max_in_flight as usize;
        let mut tasks = JoinSet::new();
        let result = loop {
            while !tasks.is_empty() && tasks.try_join_next().is_some() {}
            let mut msg = wire::buffer();
            match conn.channel.recv_into(&mut msg).await {
                Ok(()) => {}
                Err(Error::Disconnected { .. }) => break Ok(()),
                Err(e) => {
                    conn.fault_connection(fault_of(&e)).await;
                    break Err(e);
                }
            };
            let header = match Header::decode(&msg.bytes, msg.handles.len()) {
                Ok(h) => h,
                Err(e) => {
                    conn.fault_connection(fault_of(&e)).await;
                    break Err(e);
                }
            };
            match header.ty {
                FrameType::Call => {
                    while tasks.len() >= max_tasks {
                        tasks.join_next().await;
                    }
                    let Some(permit) = Running::start(&running, self.max_in_flight) else {
                        conn.send_fault(
                            header.call_id,
                            Fault::Busy {
                                limit: self.max_in_flight,
                            },
                        )
                        .await;
                        continue;
                    };
                    let call = ServerCall::new(header, msg, conn.contexts.clone());
                    let id = call.id;
                    let mut method = CatchPanic(self.dispatch.clone().dispatch(call));
                    // Most calls finish without waiting for anything: run
                    // them here, reply included, and give a call a task of
                    // its own only when it has to wait (for its method or
                    // to send its reply), so that a slow call never holds
                    // up the calls behind it.
                    match poll_once(&mut method).await {
                        Poll::Ready(reply) => {
                            // Before the reply goes out: a client that sends
                            // its next call the moment this reply arrives
                            // must find the slot free.
                            drop(permit);
                            let reply =
                                reply.unwrap_or_else(|| ServerReply::fault(id, Fault::Panicked));
                            if let Err(reply) = conn.try_reply(id, reply) {
                                let conn = conn.clone();
                                tasks.spawn(async move { conn.reply(id, reply).await });
                            }
                        }
                        Poll::Pending => {
                            tasks.spawn(run_call(conn.clone(), id, method, permit));
                        }
                    }
                }
                FrameType::Close => conn.close_context(header, &msg).await,
                other => {
                    let e = Error::Malformed(format!(
                        "rpc: a client sent a {other:?} frame after the handshake"
                    ));
                    conn.fault_connection(fault_of(&e)).await;
                    break Err(e);
                }
            }
        };
        // Cancel what the client can no longer receive, so the calls drop
        // their references to context state, then run every context down.
        tasks.shutdown().await;
        conn.contexts.close();
        result
    }

    async fn handshake(&self, channel: &AsyncChannel) -> Result<()> {
        let msg = channel.recv().await?;
        let hello = Header::decode(&msg.bytes, msg.handles.len()).and_then(|h| match h.ty {
            FrameType::Hello => wire::body::<Hello>(&msg.bytes),
            other => Err(Error::Malformed(format!(
                "rpc handshake: expected HELLO, got {other:?}"
            ))),
        });
        let hello = match hello {
            Ok(hello) => hello,
            Err(e) => {
                if let Some(frame) = wire::connection_fault(&fault_of(&e)) {
                    let _ = channel.send(&frame, &[]).await;
                }
                return Err(e);
            }
        };
        let ours = self.dispatch.identity();
        let theirs = hello.identity();
        let accepted = ours == theirs;
        let welcome = Welcome {
            accepted,
            name: ours.name.clone().into_owned(),
            version: ours.version,
            hash: ours.hash,
            max_bytes: self.limits.max_bytes,
            max_handles: self.limits.max_handles,
            max_in_flight: self.max_in_flight,
        };
        channel
            .send(&wire::frame(FrameType::Welcome, 0, 0, 0, &welcome)?, &[])
            .await?;
        if !accepted {
            return Err(Error::InterfaceMismatch {
                client: theirs.to_string(),
                server: ours.to_string(),
            });
        }
        Ok(())
    }
}

struct Connection {
    channel: AsyncChannel,
    contexts: Arc<ContextTable>,
}

impl Connection {
    /// Sends a reply if that can be done without waiting; gives it back
    /// unsent otherwise. The out handles are moved: sent, then closed here.
    fn try_reply(&self, id: u64, reply: ServerReply) -> std::result::Result<(), ServerReply> {
        let sent = reply
            .handles
            .with_borrowed(|handles| self.channel.try_send(&reply.frame, handles));
        match sent {
            Err(Error::WouldBlock) => Err(reply),
            Err(e) => {
                tracing::debug!(error = %e, call_id = id, "rpc: reply not delivered");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Sends a reply, waiting for room if need be.
    async fn reply(&self, id: u64, reply: ServerReply) {
        let (frame, handles) = (&reply.frame, &reply.handles);
        // Most replies carry at most one handle: no list to allocate.
        let sent = match (&handles.first, handles.rest.is_empty()) {
            (None, _) => self.channel.send(frame, &[]).await,
            (Some(one), true) => self.channel.send(frame, &[one.borrow()]).await,
            _ => {
                let borrowed: Vec<_> = handles.iter().map(Handle::borrow).collect();
                self.channel.send(frame, &borrowed).await
            }
        };
        drop(reply);
        if let Err(e) = sent {
            tracing::debug!(error = %e, call_id = id, "rpc: reply not delivered");
        }
    }

    async fn send_fault(&self, call_id: u64, fault: Fault) {
        if let Ok(frame) = wire::frame(FrameType::Fault, 0, call_id, 0, &fault) {
            let _ = self.channel.send(&frame, &[]).await;
        }
    }

    /// Tells the client why the connection is being closed.
    async fn fault_connection(&self, fault: Fault) {
        tracing::debug!(%fault, "rpc: closing a connection");
        if !self.channel.get_ref().is_poisoned() {
            self.send_fault(0, fault).await;
        }
    }

    async fn close_context(&self, header: Header, msg: &Message) {
        let outcome = match wire::body::<u64>(&msg.bytes) {
            Err(e) => Err(fault_of(&e)),
            Ok(token) if self.contexts.remove(token) => Ok(()),
            Ok(_) => Err(Fault::UnknownContext {
                parameter: "context".into(),
            }),
        };
        match outcome {
            Ok(()) => {
                if let Ok(frame) = wire::frame(FrameType::Reply, 0, header.call_id, 0, &()) {
                    let _ = self.channel.send(&frame, &[]).await;
                }
            }
            Err(fault) => self.send_fault(header.call_id, fault).await,
        }
    }
}

fn fault_of(e: &Error) -> Fault {
    match e {
        Error::TooLarge { what, got, limit } => Fault::TooLarge {
            what: (*what).to_owned(),
            got: *got,
            limit: *limit,
        },
        other => Fault::Malformed {
            detail: other.to_string(),
        },
    }
}

/// The rest of a call whose method had to wait, as a task of its own.
async fn run_call(
    conn: Arc<Connection>,
    id: u64,
    method: CatchPanic<Pin<Box<dyn Future<Output = ServerReply> + Send>>>,
    running: Running,
) {
    let reply = method
        .await
        .unwrap_or_else(|| ServerReply::fault(id, Fault::Panicked));
    // Before the reply goes out: a client that sends its next call the
    // moment this reply arrives must find the slot free.
    drop(running);
    conn.reply(id, reply).await;
}

/// One of a connection's calls whose method has not returned yet: counted
/// against the server's `max_in_flight` until dropped.
struct Running(Arc<AtomicU32>);

impl Running {
    fn start(count: &Arc<AtomicU32>, max: u32) -> Option<Running> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Running(count.clone()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Polls `future` once in the calling task: `Ready` if it finished.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// Turns a panic in a method into a fault reply instead of a lost call.
struct CatchPanic<F>(F);

impl<F: Future + Unpin> Future for CatchPanic<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Some(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    }
}

/// One call as the dispatcher sees it: arguments to decode, handles to
/// check and claim, the connection's contexts, and the reply to build.
#[derive(Debug)]
pub struct ServerCall {
    id: u64,
    method: u32,
    bytes: Vec<u8>,
    slots: Slots,
    contexts: Arc<ContextTable>,
}

/// The frame and handles that answer one call.
#[derive(Debug)]
pub struct ServerReply {
    frame: Vec<u8>,
    handles: ReplyHandles,
}

/// A reply's handles in index order, the first kept inline: most replies
/// carry at most one, and need no list.
#[derive(Debug, Default)]
struct ReplyHandles {
    first: Option<Handle>,
    rest: Vec<Handle>,
}

impl ReplyHandles {
    fn push(&mut self, handle: Handle) {
        if self.first.is_none() {
            self.first = Some(handle);
        } else {
            self.rest.push(handle);
        }
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn iter(&self) -> impl Iterator<Item = &Handle> {
        self.first.iter().chain(&self.rest)
    }

    /// Runs `f` with the handles borrowed, building a list only for more
    /// than one.
    fn with_borrowed<R>(&self, f: impl FnOnce(&[BorrowedHandle<'_>]) -> R) -> R {
        match (&self.first, self.rest.is_empty()) {
            (None, _) => f(&[]),
            (Some(one), true) => f(&[one.borrow()]),
            _ => f(&self.iter().map(Handle::borrow).collect::<Vec<_>>()),
        }
    }
}

impl Drop for ServerReply {
    fn drop(&mut self) {
        super::spare::give_bytes(std::mem::take(&mut self.frame));
    }
}

impl Drop for ServerCall {
    fn drop(&mut self) {
        super::spare::give_bytes(std::mem::take(&mut self.bytes));
    }
}

impl ServerReply {
    fn fault(call_id: u64, fault: Fault) -> ServerReply {
        let frame = wire::frame(FrameType::Fault, 0, call_id, 0, &fault)
            .or_else(|_| wire::frame(FrameType::Fault, 0, call_id, 0, &Fault::Panicked))
            .unwrap_or_default();
        ServerReply {
            frame,
            handles: ReplyHandles::default(),
        }
    }
}

fn handle_fault(spec: &HandleSpec, e: Error) -> Fault {
    let parameter = spec.name.to_owned();
    match e {
        Error::WrongKind { expected, actual } => Fault::WrongKind {
            parameter,
            expected: expected.to_string(),
            actual: actual.to_string(),
        },
        Error::WrongAccess { expected, actual } => Fault::WrongAccess {
            parameter,
            expected: expected.to_string(),
            actual: actual.to_string(),
        },
        Error::TooLarge { got, limit, .. } => Fault::TooManyHandles {
            parameter,
            max: limit as u32,
            got: got.min(u64::from(u32::MAX)) as u32,
        },
        other => Fault::Malformed {
            detail: format!("parameter `{parameter}`: {other}"),
        },
    }
}

fn bad_result(e: impl std::fmt::Display) -> Fault {
    Fault::BadResult {
        detail: e.to_string(),
    }
}

impl ServerCall {
    fn new(header: Header, msg: Message, contexts: Arc<ContextTable>) -> ServerCall {
        ServerCall {
            id: header.call_id,
            method: header.method,
            bytes: msg.bytes,
            slots: Slots::new(msg.handles),
            contexts,
        }
    }

    /// The method's index (its position in the trait).
    pub fn method(&self) -> u32 {
        self.method
    }

    /// Decodes the arguments (a tuple of the parameters' wire forms).
    pub fn args<A: DeserializeOwned>(&self) -> std::result::Result<A, Fault> {
        wire::body(&self.bytes).map_err(|e| fault_of(&e))
    }

    /// Claims the handle for a parameter, checking kind and exact access.
    pub fn take(&mut self, index: u32, spec: &HandleSpec) -> std::result::Result<Handle, Fault> {
        self.slots
            .take(index, spec)
            .map_err(|e| handle_fault(spec, e))
    }

    /// [`take`](Self::take) for an optional parameter.
    pub fn take_opt(
        &mut self,
        index: Option<u32>,
        spec: &HandleSpec,
    ) -> std::result::Result<Option<Handle>, Fault> {
        self.slots
            .take_opt(index, spec)
            .map_err(|e| handle_fault(spec, e))
    }

    /// [`take`](Self::take) for an array parameter, at most the declared
    /// maximum.
    pub fn take_many(
        &mut self,
        indices: Vec<u32>,
        spec: &HandleSpec,
    ) -> std::result::Result<Vec<Handle>, Fault> {
        self.slots
            .take_many(indices, spec)
            .map_err(|e| handle_fault(spec, e))
    }

    /// Looks up the state of a context parameter on this connection.
    pub fn context<S: Send + Sync + 'static>(
        &self,
        token: u64,
        parameter: &str,
    ) -> std::result::Result<ContextRef<S>, Fault> {
        self.contexts.get(token, parameter)
    }

    /// Checks that every handle that came with the call was claimed by a
    /// declared parameter; call before running the method.
    pub fn finish_args(&mut self) -> std::result::Result<(), Fault> {
        self.slots.finish().map_err(|e| fault_of(&e))
    }

    /// The reply for a method whose result carries no handles.
    pub fn reply<T: Serialize, E: Serialize>(
        &self,
        result: &std::result::Result<T, E>,
    ) -> std::result::Result<ServerReply, Fault> {
        let frame = wire::frame(FrameType::Reply, 0, self.id, 0, result).map_err(bad_result)?;
        Ok(ServerReply {
            frame,
            handles: ReplyHandles::default(),
        })
    }

    /// The reply for a method declared `#[out(...)]`: its handles are
    /// restricted to the declared access if they have more, and moved to
    /// the client.
    pub fn reply_handles<H: OutHandles, E: Serialize>(
        &self,
        result: std::result::Result<H, E>,
        spec: &HandleSpec,
    ) -> std::result::Result<ServerReply, Fault> {
        let mut handles = ReplyHandles::default();
        let wire = match result {
            Ok(value) => {
                spec.check_count(value.count()).map_err(bad_result)?;
                handles.rest.reserve_exact(value.count().saturating_sub(1));
                Ok(value.put(&mut |h| {
                    let index = next_index(handles.len()).map_err(bad_result)?;
                    handles.push(prepare_out(h, spec)?);
                    Ok(index)
                })?)
            }
            Err(e) => Err(e),
        };
        let frame =
            wire::frame(FrameType::Reply, 0, self.id, handles.len(), &wire).map_err(bad_result)?;
        Ok(ServerReply { frame, handles })
    }

    /// The reply for a method returning a new context: its state goes into
    /// this connection's table and the client gets the token.
    pub fn reply_context<S: Send + Sync + 'static, E: Serialize>(
        &self,
        result: std::result::Result<Context<S>, E>,
    ) -> std::result::Result<ServerReply, Fault> {
        let wire = match result {
            Ok(context) => Ok(self.contexts.insert(context)?),
            Err(e) => Err(e),
        };
        self.reply(&wire)
    }

    /// The reply for a call that was refused or failed.
    pub fn respond(&self, outcome: std::result::Result<ServerReply, Fault>) -> ServerReply {
        outcome.unwrap_or_else(|fault| ServerReply::fault(self.id, fault))
    }
}

/// What a method declared `#[out(...)]` may return: `Handle`,
/// `Option<Handle>` or `Vec<Handle>`.
pub trait OutHandles: sealed::Sealed {
    /// The wire form: `u32`, `Option<u32>`, `Vec<u32>` indices.
    type Wire: Serialize;
    /// How many handles the value holds.
    fn count(&self) -> usize;
    /// Hands every handle to `push`, which returns its index.
    fn put(
        self,
        push: &mut dyn FnMut(Handle) -> std::result::Result<u32, Fault>,
    ) -> std::result::Result<Self::Wire, Fault>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Handle {}
    impl Sealed for Option<crate::Handle> {}
    impl Sealed for Vec<crate::Handle> {}
}

fn prepare_out(handle: Handle, spec: &HandleSpec) -> std::result::Result<Handle, Fault> {
    let fault = |e: Error| Fault::BadResult {
        detail: format!("out handle: {e}"),
    };
    let rule = spec.requirement.access;
    if rule == AccessRule::Any || rule.admits(handle.access().map_err(fault)?) {
        return Ok(handle);
    }
    handle.restrict(rule.access()).map_err(fault)
}

impl OutHandles for Handle {
    type Wire = u32;
    fn count(&self) -> usize {
        1
    }
    fn put(
        self,
        push: &mut dyn FnMut(Handle) -> std::result::Result<u32, Fault>,
    ) -> std::result::Result<u32, Fault> {
        push(self)
    }
}

impl OutHandles for Option<Handle> {
    type Wire = Option<u32>;
    fn count(&self) -> usize {
        usize::from(self.is_some())
    }
    fn put(
        self,
        push: &mut dyn FnMut(Handle) -> std::result::Result<u32, Fault>,
    ) -> std::result::Result<Option<u32>, Fault> {
        self.map(push).transpose()
    }
}

impl OutHandles for Vec<Handle> {
    type Wire = Vec<u32>;
    fn count(&self) -> usize {
        self.len()
    }
    fn put(
        self,
        push: &mut dyn FnMut(Handle) -> std::result::Result<u32, Fault>,
    ) -> std::result::Result<Vec<u32>, Fault> {
        self.into_iter().map(push).collect()
    }
}
