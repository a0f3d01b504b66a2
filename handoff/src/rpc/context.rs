//! Context handles: opaque tokens for per-client server state, looked up in
//! a per-connection table and run down exactly once.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use super::Fault;
use crate::{Error, Result};

type Hook<S> = Box<dyn FnOnce(S) + Send>;

/// A context handle: per-client state kept by the server, known to the
/// client only as an opaque token.
///
/// On the server a method returns `Ok(Context::new(state))`; the runtime
/// stores the state in the connection's table under a fresh random 64-bit
/// token (never an address) and sends the token. On the client the same
/// type holds that token, passed back as `&Context<S>` to methods that
/// declare `#[context] x: &S`. A token means nothing on any other
/// connection.
///
/// The state is run down exactly once, when the client closes the context
/// ([`Client::close_context`](super::Client::close_context)), disconnects or
/// dies: the optional hook of [`Context::with_rundown`] gets the state by
/// value, then it is dropped. Calls still using the state finish first (a
/// disconnect cancels them).
pub struct Context<S> {
    inner: Inner<S>,
}

enum Inner<S> {
    /// Made by the server, not yet in a table.
    State(Slot<S>),
    /// Received by the client.
    Token(u64, PhantomData<fn() -> S>),
}

impl<S: Send + Sync + 'static> Context<S> {
    /// New state for the calling client; its rundown is dropping it.
    pub fn new(state: S) -> Context<S> {
        Context {
            inner: Inner::State(Slot {
                state: Some(state),
                hook: Mutex::new(None),
            }),
        }
    }

    /// New state whose rundown calls `hook` with it (then drops it), e.g. to
    /// release what the client held or log that it went away.
    pub fn with_rundown(state: S, hook: impl FnOnce(S) + Send + 'static) -> Context<S> {
        Context {
            inner: Inner::State(Slot {
                state: Some(state),
                hook: Mutex::new(Some(Box::new(hook))),
            }),
        }
    }
}

impl<S> Context<S> {
    pub(crate) fn from_token(token: u64) -> Context<S> {
        Context {
            inner: Inner::Token(token, PhantomData),
        }
    }

    /// The token, if this is the client's side of a context.
    pub(crate) fn token(&self) -> Result<u64> {
        match self.inner {
            Inner::Token(t, _) => Ok(t),
            Inner::State(_) => Err(Error::InvalidArgument(
                "this context holds server state; only a context received from a server can be passed".into(),
            )),
        }
    }
}

impl<S> fmt::Debug for Context<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner {
            Inner::State(_) => f.write_str("Context(state)"),
            Inner::Token(..) => f.write_str("Context(token)"),
        }
    }
}

/// The state behind a context, with its rundown in `Drop`: whoever drops
/// the last reference runs it, so it runs once.
struct Slot<S> {
    state: Option<S>,
    // A Mutex only to make the slot Sync; it is touched in drop alone.
    hook: Mutex<Option<Hook<S>>>,
}

impl<S> Drop for Slot<S> {
    fn drop(&mut self) {
        let hook = self
            .hook
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let (Some(state), Some(hook)) = (self.state.take(), hook) {
            // A panicking hook must not stop the rest of a connection's
            // contexts from running down (they are dropped in a batch).
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(state)));
            if ran.is_err() {
                tracing::warn!("rpc: a context rundown hook panicked");
            }
        }
    }
}

/// A server method's view of a context's state for the length of a call.
pub struct ContextRef<S> {
    slot: Arc<Slot<S>>,
}

impl<S> Deref for ContextRef<S> {
    type Target = S;
    fn deref(&self) -> &S {
        self.slot
            .state
            .as_ref()
            .expect("state is present until the slot drops")
    }
}

impl<S> fmt::Debug for ContextRef<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContextRef")
    }
}

/// One connection's open contexts.
#[derive(Default)]
pub(crate) struct ContextTable {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    closed: bool,
    entries: HashMap<u64, Arc<dyn Any + Send + Sync>>,
}

impl ContextTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a context's state and returns its new token.
    pub fn insert<S: Send + Sync + 'static>(
        &self,
        context: Context<S>,
    ) -> std::result::Result<u64, Fault> {
        let slot = match context.inner {
            Inner::State(slot) => Arc::new(slot),
            Inner::Token(..) => return Err(Fault::BadResult {
                detail:
                    "the method returned a client's context token instead of Context::new(state)"
                        .into(),
            }),
        };
        let mut token = random_token().map_err(|e| Fault::BadResult {
            detail: format!("no random token: {e}"),
        })?;
        let mut table = self.lock();
        if table.closed {
            drop(table);
            // The connection is gone: run the state down now, not never.
            drop(slot);
            return Err(Fault::BadResult {
                detail: "the connection closed".into(),
            });
        }
        while token == 0 || table.entries.contains_key(&token) {
            token = token.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
        }
        table.entries.insert(token, slot);
        Ok(token)
    }

    /// Looks a token up for a parameter declared as `&S`.
    pub fn get<S: Send + Sync + 'static>(
        &self,
        token: u64,
        parameter: &str,
    ) -> std::result::Result<ContextRef<S>, Fault> {
        let entry = self.lock().entries.get(&token).cloned();
        entry
            .and_then(|e| e.downcast::<Slot<S>>().ok())
            .map(|slot| ContextRef { slot })
            .ok_or_else(|| Fault::UnknownContext {
                parameter: parameter.to_owned(),
            })
    }

    /// Closes one context. Its rundown runs here unless a call still holds
    /// it, then when that call ends.
    pub fn remove(&self, token: u64) -> bool {
        let entry = self.lock().entries.remove(&token);
        entry.is_some()
    }

    /// Closes every context and refuses new ones: the connection is over.
    pub fn close(&self) {
        let entries = {
            let mut table = self.lock();
            table.closed = true;
            std::mem::take(&mut table.entries)
        };
        // Rundown hooks run outside the lock: they may take their own.
        drop(entries);
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl fmt::Debug for ContextTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextTable")
            .field("open", &self.len())
            .finish()
    }
}

/// A token from the operating system's CSPRNG, so a client cannot guess
/// another connection's tokens (they would be useless there anyway) or
/// learn anything about the server's memory.
fn random_token() -> std::io::Result<u64> {
    let mut bytes = [0u8; 8];
    crate::sys::random::fill(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}
