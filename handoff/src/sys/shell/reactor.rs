//! No reactor: registration fails, so the async types are never made.

use std::future::Future;
use std::io;

use tokio::io::Interest;

use super::{unsupported, Never};

/// A registered value; none can be made.
#[derive(Debug)]
pub(crate) struct Registered<T> {
    inner: T,
    never: Never,
}

/// What a readiness wait returns.
pub(crate) struct Ready;

impl Ready {
    pub(crate) fn clear_ready(&mut self) {}
}

impl<T> Registered<T> {
    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
    }

    pub(crate) fn into_inner(self) -> T {
        match self.never {}
    }

    pub(crate) fn readable(&self) -> impl Future<Output = io::Result<Ready>> + '_ {
        let never = self.never;
        async move { match never {} }
    }
}

pub(crate) const CHANNEL_INTEREST: Interest = Interest::READABLE;

pub(crate) fn register<T>(_inner: T, _interest: Interest) -> io::Result<Registered<T>> {
    Err(unsupported())
}

pub(crate) fn register_listener(
    listener: crate::Listener,
) -> io::Result<Registered<crate::Listener>> {
    // The other backends register the listening socket itself.
    let _ = listener.socket();
    Err(unsupported())
}

pub(crate) async fn when_writable<R>(
    channel: &Registered<crate::Channel>,
    _attempt: impl FnMut() -> Option<R>,
) -> io::Result<R> {
    match channel.never {}
}
