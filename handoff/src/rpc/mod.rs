//! RPC whose parameters can be handles, with context handles for
//! per-client server state.
//!
//! Annotate a trait with [`#[handoff::interface]`](crate::interface) and
//! the macro generates, beside the trait (which the server implements):
//!
//! * `<Trait>Client`: the async client (tokio), one method per trait method;
//! * `<Trait>BlockingClient`: the same calls for programs without a tokio
//!   runtime;
//! * `<Trait>Server<S>`: the dispatcher, a [`Dispatch`] that [`Server`]
//!   runs for every connection;
//! * an [`Identity`] (`<Trait>Client::IDENTITY`): the interface's name,
//!   version and a hash of its method signatures computed at compile time,
//!   compared in the handshake so a client and a server built from different
//!   definitions refuse each other with [`Error::InterfaceMismatch`].
//!
//! ```
//! use handoff::rpc::{Context, Server};
//! use handoff::{AsyncChannel, BorrowedHandle, Handle};
//!
//! #[handoff::interface(name = "example.Files", version = 1)]
//! pub trait Files {
//!     /// Writes `text` to the file the client passes, opened for writing.
//!     async fn write(
//!         &self,
//!         #[handle(file, write)] target: BorrowedHandle<'_>,
//!         text: String,
//!     ) -> Result<u64, String>;
//!
//!     /// Returns a sealed read-only shared-memory region.
//!     #[out(shared_memory, read)]
//!     async fn snapshot(&self) -> Result<Handle, String>;
//!
//!     /// Opens per-client state on the server.
//!     async fn open(&self, label: String) -> Result<Context<Session>, String>;
//!
//!     /// Uses it: the server sees the state, the client passes its token.
//!     async fn label(&self, #[context] session: &Session) -> Result<String, String>;
//! }
//!
//! pub struct Session {
//!     label: String,
//! }
//!
//! struct Service;
//!
//! impl Files for Service {
//!     async fn write(&self, target: BorrowedHandle<'_>, text: String) -> Result<u64, String> {
//!         // `target` is valid for this call only; the runtime closes it.
//!         let mut file = std::fs::File::from(target.try_clone_to_owned().map_err(|e| e.to_string())?);
//!         std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| e.to_string())?;
//!         Ok(text.len() as u64)
//!     }
//!
//!     async fn snapshot(&self) -> Result<Handle, String> {
//!         handoff::startup::create(b"v1").map_err(|e| e.to_string())
//!     }
//!
//!     async fn open(&self, label: String) -> Result<Context<Session>, String> {
//!         Ok(Context::with_rundown(Session { label }, |s| println!("{} ran down", s.label)))
//!     }
//!
//!     async fn label(&self, session: &Session) -> Result<String, String> {
//!         Ok(session.label.clone())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let (client_end, server_end) = AsyncChannel::pair()?;
//!     let server = Server::new(FilesServer::new(Service));
//!     tokio::spawn(async move { server.serve_connection(server_end).await });
//!     let client = FilesClient::handshake(client_end).await?;
//!
//!     let file = tempfile::tempfile()?;
//!     assert_eq!(client.write(&file, "hello".into()).await?, 5);
//!     let region = client.snapshot().await?;
//!     assert_eq!(handoff::StartupData::open(region)?.bytes(), b"v1");
//!     let session = client.open("mine".into()).await?;
//!     assert_eq!(client.label(&session).await?, "mine");
//!     client.close_context(session).await?; // prints "mine ran down"
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Writing an interface
//!
//! Every method is an `async fn` taking `&self` and returning
//! `Result<T, E>`, where `E` is the application's error type (serde). The
//! trait is rewritten so each method returns `impl Future + Send`;
//! implement it with `async fn` as written. What each side sees:
//!
//! | in the trait (the server's view)                          | the client passes / gets           |
//! |-----------------------------------------------------------|------------------------------------|
//! | `x: T` (serde)                                            | `x: T`                             |
//! | `#[handle(kind, access)] x: BorrowedHandle<'_>`           | `x: impl AsHandle`                 |
//! | `#[handle(kind, access)] x: Option<BorrowedHandle<'_>>`   | `x: Option<BorrowedHandle<'_>>`    |
//! | `#[handle(kind, access, max = N)] x: Vec<BorrowedHandle<'_>>` | `x: &[BorrowedHandle<'_>]`     |
//! | `#[context] x: &S`                                        | `x: &Context<S>`                   |
//! | `-> Result<T, E>`                                         | `-> Result<T, CallError<E>>`       |
//! | `#[out(kind, access)]` `-> Result<Handle, E>`             | `-> Result<Handle, CallError<E>>`  |
//! | `#[out(kind, access)]` `-> Result<Option<Handle>, E>`     | the same                           |
//! | `#[out(kind, access, max = N)]` `-> Result<Vec<Handle>, E>` | the same                         |
//! | `-> Result<Context<S>, E>` (`Ok(Context::new(state))`)    | `-> Result<Context<S>, CallError<E>>` |
//!
//! `kind` is one of `file`, `directory`, `pipe`, `socket`, `shared_memory`,
//! `event`, `process`, `timer`, `terminal`, `other` or `any`; `access` is
//! `read`, `write` or `read_write`, and may be left out to pass the handle
//! with whatever rights it has (as MIDL's `system_handle` without an access
//! mask).
//!
//! # What the runtime guarantees
//!
//! * **In handles.** The client sends its handle as it is when it grants
//!   exactly the declared access (the server gets its own descriptor from
//!   the kernel either way), and otherwise a duplicate restricted to the
//!   declared access ([`Handle::restrict`](crate::Handle::restrict)); a
//!   handle lacking a declared right is an error before anything is sent.
//!   The server reads kind and access from each arrived handle and rejects
//!   a mismatch (more rights than declared too) with a [`Fault`] before the
//!   method runs. The method borrows the handle for the call; the runtime
//!   closes it when the method returns (`try_clone` it to keep it).
//! * **Out handles.** The server's returned handle is restricted to the
//!   declared access if it has more, sent, and closed on the server. The
//!   client checks kind and access again and owns what it receives.
//! * **Context handles.** [`Context::new`] puts state in the connection's
//!   table under a random 64-bit token; tokens from another connection, or
//!   closed ones, are rejected with [`Fault::UnknownContext`]. When the
//!   client closes the context ([`Client::close_context`]), disconnects or
//!   dies, the state is run down exactly once (dropped, after the optional
//!   hook of [`Context::with_rundown`]) as soon as no call is using it.
//! * **Errors stay apart.** A client method returns [`CallError`]: the
//!   method's own error ([`CallError::Application`]), the server runtime's
//!   refusal ([`CallError::Fault`]), or a handoff failure on this side or in
//!   transit ([`CallError::Handoff`]).
//! * **Concurrency.** Calls on one connection run concurrently (a slow call
//!   does not hold up others: a call runs in the connection's task until it
//!   first has to wait, and then as a task of its own); [`Server`] limits calls in flight and message
//!   size per connection. If the client disconnects, its calls in flight
//!   are cancelled.
//!
//! The frames are specified in `docs/wire-format.md` ("RPC").

mod blocking;
pub(crate) mod client;
mod context;
pub(crate) mod handles;
pub(crate) mod server;
mod spare;
pub(crate) mod wire;

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use blocking::BlockingClient;
pub use client::Client;
pub use context::{Context, ContextRef};
pub use server::Server;
pub(crate) use server::{ServerCall, ServerReply};

use crate::Error;

/// Who an interface is: compared in the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The interface's name: the trait's name unless the attribute says
    /// `name = "..."`.
    pub name: Cow<'static, str>,
    /// The version the attribute declares (`version = N`, default 1).
    pub version: u32,
    /// A hash of the method signatures (names, parameters with their handle
    /// declarations, result types), computed when the trait is compiled.
    pub hash: u64,
}

impl Identity {
    /// An identity from its parts (the macro uses this in a `const`).
    pub const fn new(name: &'static str, version: u32, hash: u64) -> Identity {
        Identity {
            name: Cow::Borrowed(name),
            version,
            hash,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} v{} (signature hash {:016x})",
            self.name, self.version, self.hash
        )
    }
}

/// A client method's error: the application's own, the server runtime's
/// refusal, or a failure in handoff.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The method ran and returned this error.
    #[error("the method returned an error: {0:?}")]
    Application(E),
    /// The server's runtime refused or failed the call; unless the fault
    /// says otherwise, the method did not run.
    #[error("the server refused the call: {0}")]
    Fault(Fault),
    /// handoff failed on this side (a handle lacking a declared right, a
    /// value that does not encode, a message over the server's limits) or in
    /// transit (disconnected, a malformed reply, an out handle of the wrong
    /// kind or access).
    #[error(transparent)]
    Handoff(#[from] Error),
}

impl<E> CallError<E> {
    /// The application error, if that is what this is.
    pub fn application(self) -> Option<E> {
        match self {
            CallError::Application(e) => Some(e),
            _ => None,
        }
    }

    /// The fault, if the server's runtime refused the call.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            CallError::Fault(f) => Some(f),
            _ => None,
        }
    }
}

/// Why the server's runtime refused or failed a call. Sent in a FAULT frame
/// (`docs/wire-format.md`); the variant order is part of the wire format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// The frame does not follow the wire format (or, with call id 0, the
    /// connection broke it and is being closed).
    #[error("malformed frame: {detail}")]
    Malformed {
        /// What was wrong.
        detail: String,
    },
    /// No method has this index.
    #[error("no method with index {method}")]
    UnknownMethod {
        /// The index asked for.
        method: u32,
    },
    /// A handle parameter is not of the declared kind.
    #[error("parameter `{parameter}`: expected a handle of kind {expected}, got {actual}")]
    WrongKind {
        /// The parameter's name.
        parameter: String,
        /// The declared kind.
        expected: String,
        /// What the handle is, read from the kernel.
        actual: String,
    },
    /// A handle parameter grants other rights than declared (fewer or more).
    #[error("parameter `{parameter}`: expected exactly {expected} access, got {actual}")]
    WrongAccess {
        /// The parameter's name.
        parameter: String,
        /// The declared access.
        expected: String,
        /// What the handle grants, read from the kernel.
        actual: String,
    },
    /// A handle array parameter has more handles than its declared maximum.
    #[error("parameter `{parameter}`: {got} handles exceed the declared maximum of {max}")]
    TooManyHandles {
        /// The parameter's name.
        parameter: String,
        /// The declared maximum.
        max: u32,
        /// How many were sent.
        got: u32,
    },
    /// A context token is not open on this connection (never was, closed, or
    /// belongs to another connection) or names state of another type.
    #[error("parameter `{parameter}`: no such context on this connection")]
    UnknownContext {
        /// The parameter's name.
        parameter: String,
    },
    /// A message is over the connection's limits; the connection is closed.
    #[error("{what} {got} exceeds the server's limit of {limit}")]
    TooLarge {
        /// What was counted.
        what: String,
        /// The size found.
        got: u64,
        /// The limit.
        limit: u64,
    },
    /// The connection already has as many calls in flight as the server
    /// allows; the call did not run.
    #[error("too many calls in flight (the server allows {limit})")]
    Busy {
        /// The server's limit.
        limit: u32,
    },
    /// The method ran but its result could not be sent as declared (e.g.
    /// an out handle that cannot be restricted to the declared access).
    #[error("the method's result could not be sent: {detail}")]
    BadResult {
        /// What was wrong.
        detail: String,
    },
    /// The method panicked.
    #[error("the method panicked")]
    Panicked,
}

/// A server-side dispatcher: decodes a call, runs the method, encodes the
/// reply. `#[handoff::interface]` implements it for `<Trait>Server<S>`.
pub trait Dispatch: Send + Sync + 'static {
    /// The interface this dispatcher serves.
    fn identity(&self) -> Identity;

    /// Runs one call. The future owns everything it needs, so the server
    /// can run it as its own task.
    fn dispatch(
        self: Arc<Self>,
        call: ServerCall,
    ) -> Pin<Box<dyn Future<Output = ServerReply> + Send>>;
}

/// Borrows every handle of an array parameter for the method (the
/// generated dispatcher's helper, reached as `__private::borrow_all`).
pub(crate) fn borrow_all(handles: &[crate::Handle]) -> Vec<crate::BorrowedHandle<'_>> {
    handles.iter().map(crate::Handle::borrow).collect()
}
