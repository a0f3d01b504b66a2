//! The same handover session for programs without a tokio runtime of their
//! own: each call blocks the calling thread until it is done.
//!
//! A program that serves with threads and blocking sockets hands its
//! connections over with [`Doorbell`], [`Outgoing::hand_over`] and
//! [`Parked::settle`] (or [`Parked::hold`]); its successor takes them with
//! [`Incoming::connect`], [`Incoming::accept`] (or
//! [`Incoming::refuse`]) and [`Takeover::serving`]. The messages, the
//! timeouts and where each connection is at every step are those of the
//! [async form](super): a session started here can be answered by a
//! generation using either form.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use handoff::restart::handover::{blocking, Connection, TakeLimits};
//! use handoff::Handle;
//!
//! fn serve(_connections: Vec<Connection>) { /* the program's own loop */ }
//!
//! /// The old generation; the far end of `bell` is stored under DOORBELL.
//! fn old(bell: &blocking::Doorbell, connections: Vec<Connection>) -> handoff::Result<()> {
//!     let session = bell.ring()?;
//!     match session.hand_over(None, connections, Duration::from_secs(10)) {
//!         Ok(handed) => {
//!             serve(handed.kept);
//!             // Nothing once the new generation serves; every parked
//!             // connection if it went away first.
//!             serve(handed.parked.settle().map_err(|n| n.error)?);
//!         }
//!         Err(failed) => serve(failed.connections),
//!     }
//!     Ok(())
//! }
//!
//! /// The new generation, given the handle passed under DOORBELL.
//! fn new(doorbell: Handle) -> handoff::Result<()> {
//!     let incoming = blocking::Incoming::connect(doorbell, TakeLimits::default())?;
//!     let mut takeover = incoming.accept()?;
//!     let connections = std::mem::take(&mut takeover.connections);
//!     takeover.serving()?;
//!     serve(connections);
//!     Ok(())
//! }
//! # fn main() { let _ = (old, new); }
//! ```
//!
//! # How it runs
//!
//! Each type wraps its async counterpart and drives it on a private
//! current-thread tokio runtime, created by [`Doorbell::new`] or
//! [`Incoming::connect`] and shared by everything that session makes
//! (the doorbell, each [`Outgoing`] it rings, the [`Parked`] copies; the
//! [`Incoming`] and its [`Takeover`]), since a channel stays registered
//! with the runtime it was made on. It is dropped with the last of them.
//! No second implementation of the protocol exists, so the two forms
//! cannot drift apart; the cost is the runtime's descriptors (three with
//! tokio 1.54: its epoll instance, a duplicate of it, and a wake-up
//! event) for as long as the session's objects live, counted in the new
//! generation's headroom like any other.
//!
//! # Not on a runtime thread
//!
//! A thread that is inside a tokio runtime (a task, `block_on`,
//! `spawn_blocking`, or under `Handle::enter`) gets
//! [`Error::Unsupported`] from every call here, and nothing happens: a
//! blocking wait there would stall the runtime, a current-thread one for
//! good if it also serves the other side, and tokio panics when one
//! runtime is driven from inside another. Use the async form there.
//! [`Parked::settle`] and [`Parked::hold`], which cannot fail in the async
//! form, hand the parked copies back with the error ([`NotRun`]): dropping
//! them would close connections the new generation may not serve yet.
//! The other calls fail as they do for any other error, with the same
//! outcome: [`Outgoing::hand_over`] returns every connection in its
//! [`Failed`], and an [`Incoming`] or [`Takeover`] consumed by the failed
//! call closes its session, so the old generation keeps, or takes back,
//! its connections. Dropping any of these types is fine anywhere.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Connection, Failed, TakeLimits};
use crate::{Error, Handle, Result};

/// The runtime one session's objects are registered with.
#[derive(Debug)]
struct Driver {
    /// Always `Some` until dropped: taken in `drop` to shut it down.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Driver {
    fn start() -> Result<Arc<Driver>> {
        outside_runtime()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::io("building the handover runtime", e))?;
        Ok(Arc::new(Driver {
            runtime: Some(runtime),
        }))
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("taken only in drop")
    }

    /// Runs `work` to its end; callers have checked [`outside_runtime`]
    /// before building the future, so that a refusal can hand their
    /// arguments back.
    fn block_on<F: Future>(&self, work: F) -> F::Output {
        self.runtime().block_on(work)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A plain drop waits for the runtime's blocking pool, which tokio
        // forbids (with a panic) inside another runtime, where these types
        // may well be dropped. Nothing here ever runs on that pool, so not
        // waiting loses nothing, and the runtime's descriptors are closed
        // all the same.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The refusal every call here gives on a thread inside a tokio runtime.
fn outside_runtime() -> Result<()> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Err(Error::Unsupported(
            "the blocking handover API on a thread inside a tokio runtime; use the async form there",
        )),
        Err(_) => Ok(()),
    }
}

/// A call that did not run (on a thread inside a tokio runtime): the
/// value it was called on, unchanged, and why.
#[derive(Debug)]
pub struct NotRun<T> {
    /// Why: [`Error::Unsupported`].
    pub error: Error,
    /// What the call was made on, to be used from another thread.
    pub value: T,
}

impl<T> std::fmt::Display for NotRun<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not run: {}", self.error)
    }
}

impl<T: std::fmt::Debug> std::error::Error for NotRun<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The old generation's end of the doorbell (see [`super::Doorbell`]).
#[derive(Debug)]
pub struct Doorbell {
    bell: super::Doorbell,
    driver: Arc<Driver>,
}

impl Doorbell {
    /// Creates a doorbell: this end, and the handle the next generation
    /// rings it with (to store or pass under
    /// [`DOORBELL`](super::DOORBELL)).
    pub fn new() -> Result<(Doorbell, Handle)> {
        let driver = Driver::start()?;
        // The async doorbell registers its channel with the runtime it is
        // made in: this session's.
        let (bell, theirs) = {
            let _entered = driver.runtime().enter();
            super::Doorbell::new()?
        };
        Ok((Doorbell { bell, driver }, theirs))
    }

    /// Waits for a new generation to ring; errors as
    /// [`super::Doorbell::ring`].
    pub fn ring(&self) -> Result<Outgoing> {
        outside_runtime()?;
        let session = self.driver.block_on(self.bell.ring())?;
        Ok(self.outgoing(session))
    }

    /// As [`ring`](Self::ring), giving up after `limit` with `None` (so a
    /// program can look at its stop flag between waits). Nothing is lost
    /// by giving up: a ring that arrives later is there for the next call.
    pub fn ring_timeout(&self, limit: Duration) -> Result<Option<Outgoing>> {
        outside_runtime()?;
        // The wait is a receive on the doorbell, which keeps whatever part
        // of a message it already read when cancelled.
        match self
            .driver
            .block_on(async { tokio::time::timeout(limit, self.bell.ring()).await })
        {
            Ok(session) => Ok(Some(self.outgoing(session?))),
            Err(_elapsed) => Ok(None),
        }
    }

    fn outgoing(&self, session: super::Outgoing) -> Outgoing {
        Outgoing {
            session,
            driver: Arc::clone(&self.driver),
        }
    }
}

/// One handover session, old side (see [`super::Outgoing`]).
#[derive(Debug)]
pub struct Outgoing {
    session: super::Outgoing,
    driver: Arc<Driver>,
}

/// A handover that happened, whole or in part (see [`super::Handed`]).
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

impl Outgoing {
    /// Hands `state` and `connections` to the new generation, as
    /// [`super::Outgoing::hand_over`]: on failure every connection is in
    /// the [`Failed`], to be served on.
    pub fn hand_over(
        self,
        state: Option<Handle>,
        connections: Vec<Connection>,
        timeout: Duration,
    ) -> std::result::Result<Handed, Failed> {
        if let Err(error) = outside_runtime() {
            return Err(Failed { error, connections });
        }
        let Outgoing { session, driver } = self;
        let handed = driver.block_on(session.hand_over(state, connections, timeout))?;
        Ok(Handed {
            kept: handed.kept,
            refused: handed.refused,
            parked: Parked {
                parked: Box::new(handed.parked),
                driver,
            },
        })
    }
}

/// The old generation's copies of connections the new one serves (see
/// [`super::Parked`]).
#[derive(Debug)]
pub struct Parked {
    /// Boxed: a [`NotRun`] carries the whole value back in an `Err`,
    /// which is better kept small.
    parked: Box<super::Parked>,
    driver: Arc<Driver>,
}

impl Parked {
    /// How many connections are parked.
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    /// True when none are.
    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }

    /// Waits until the new generation says it serves (returns nothing,
    /// the copies closed) or its session closes first (returns the
    /// connections, to be served here), as [`super::Parked::settle`].
    pub fn settle(self) -> std::result::Result<Vec<Connection>, NotRun<Parked>> {
        if let Err(error) = outside_runtime() {
            return Err(NotRun { error, value: self });
        }
        let Parked { parked, driver } = self;
        Ok(driver.block_on(parked.settle()))
    }

    /// Keeps the copies until the new generation's end of the session
    /// closes, and returns them then, as [`super::Parked::hold`]. It does
    /// not return while the new generation lives: call it on a thread of
    /// its own, and when this generation is told to stop, exit, which
    /// closes the copies.
    pub fn hold(self) -> std::result::Result<Vec<Connection>, NotRun<Parked>> {
        if let Err(error) = outside_runtime() {
            return Err(NotRun { error, value: self });
        }
        let Parked { parked, driver } = self;
        Ok(driver.block_on(parked.hold()))
    }
}

/// One handover session, new side, after the old generation's offer (see
/// [`super::Incoming`]).
#[derive(Debug)]
pub struct Incoming {
    session: super::Incoming,
    driver: Arc<Driver>,
}

impl Incoming {
    /// Rings the old generation's doorbell (the handle named
    /// [`DOORBELL`](super::DOORBELL)) and waits for its offer, as
    /// [`super::Incoming::connect`].
    pub fn connect(doorbell: Handle, limits: TakeLimits) -> Result<Incoming> {
        let driver = Driver::start()?;
        let session = driver.block_on(super::Incoming::connect(doorbell, limits))?;
        Ok(Incoming { session, driver })
    }

    /// The state handle, if the old generation sent one.
    pub fn take_state(&mut self) -> Option<Handle> {
        self.session.take_state()
    }

    /// How many connections the old generation offers.
    pub fn offered(&self) -> u64 {
        self.session.offered()
    }

    /// Refuses the handover: the old generation serves on, unchanged, and
    /// reports `reason`.
    pub fn refuse(self, reason: &str) -> Result<()> {
        outside_runtime()?;
        self.driver.block_on(self.session.refuse(reason))
    }

    /// Accepts, as [`super::Incoming::accept`]: the connections are this
    /// generation's to serve once it returns.
    pub fn accept(self) -> Result<Takeover> {
        outside_runtime()?;
        let Incoming { session, driver } = self;
        let mut takeover = driver.block_on(session.accept())?;
        Ok(Takeover {
            connections: std::mem::take(&mut takeover.connections),
            declined: std::mem::take(&mut takeover.declined),
            untaken: takeover.untaken,
            session: takeover,
            driver,
        })
    }
}

/// The connections taken over, the new generation's to serve (see
/// [`super::Takeover`]).
#[derive(Debug)]
pub struct Takeover {
    /// The connections, with their unread bytes and positions.
    pub connections: Vec<Connection>,
    /// Connections refused here, each with the reason: the old generation
    /// keeps them.
    pub declined: Vec<(u64, String)>,
    /// Connections offered but not asked for: the old generation keeps
    /// them.
    pub untaken: u64,
    /// The async session, its connection lists moved out into the fields
    /// above.
    session: super::Takeover,
    driver: Arc<Driver>,
}

impl Takeover {
    /// Tells the old generation this one serves, as
    /// [`super::Takeover::serving`]. On an error, as there, the session is
    /// gone and the old generation takes the connections back: stop
    /// serving them.
    pub fn serving(self) -> Result<()> {
        outside_runtime()?;
        self.driver.block_on(self.session.serving())
    }
}
