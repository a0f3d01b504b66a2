//! Typed messages: serde values with handles anywhere in their fields.
//!
//! A [`Handle`] inside a value travels as a fixed-width `u32` index into the
//! message's handle list (as D-Bus does); the handle itself goes in the
//! message's `SCM_RIGHTS`. Payloads are encoded with bincode's fixed-width
//! little-endian integers, so nothing pointer-sized or machine-dependent is
//! on the wire (`docs/wire-format.md`).
//!
//! On receipt, an index out of range or used twice, trailing bytes, or a
//! handle that no field claimed rejects the message and closes all of its
//! handles; the channel stays usable.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Channel, Message};
use crate::{BorrowedHandle, Error, Handle, Result};

thread_local! {
    /// Handles collected while a value is being encoded.
    static OUTGOING: RefCell<Option<Vec<Handle>>> = const { RefCell::new(None) };
    /// Handles of the message being decoded; a slot is emptied when claimed.
    static INCOMING: RefCell<Option<Vec<Option<Handle>>>> = const { RefCell::new(None) };
}

/// The bincode configuration of typed payloads (`docs/wire-format.md`).
pub(crate) fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
}

/// Decodes `bytes` as a `T` with bincode's read limit set to the smallest
/// power of two that holds `bytes`.
///
/// Without a limit a length prefix is trusted before it is checked against
/// the input: a peer announcing a 2^47-byte string makes the decoder try to
/// allocate it and abort the process (found by fuzzing). Honest input never
/// claims more than its own length (every claim is bytes read or a byte
/// string's length), so the limit rejects only lies, and caps what a lie
/// can allocate at twice the payload.
pub(crate) fn decode_bounded<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
) -> std::result::Result<(T, usize), String> {
    macro_rules! ladder {
        ($($bits:literal),*) => {$(
            if bytes.len() <= 1usize << $bits {
                return bincode::serde::borrow_decode_from_slice(
                    bytes,
                    bincode::config::standard()
                        .with_little_endian()
                        .with_fixed_int_encoding()
                        .with_limit::<{ 1usize << $bits }>(),
                )
                .map_err(|e| e.to_string());
            }
        )*};
    }
    ladder!(12, 16, 20, 24, 28, 32, 36, 40, 44, 48);
    Err(format!(
        "{} bytes is more than a value may hold",
        bytes.len()
    ))
}

/// Encodes `value` into bytes plus the handles it contains, each duplicated
/// (so the value keeps its own).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<Handle>)> {
    let previous = OUTGOING.with(|o| o.borrow_mut().replace(Vec::new()));
    let encoded = bincode::serde::encode_to_vec(value, config());
    let handles = OUTGOING.with(|o| std::mem::replace(&mut *o.borrow_mut(), previous));
    let bytes = encoded.map_err(|e| Error::Encode(e.to_string()))?;
    Ok((bytes, handles.unwrap_or_default()))
}

/// Decodes a received message into a `T`, moving its handles into the
/// value's fields.
///
/// Every handle of the message must be claimed by exactly one field and
/// every byte consumed; otherwise the message is [`Error::Malformed`] and
/// all its handles are closed.
pub fn decode<T: DeserializeOwned>(msg: Message) -> Result<T> {
    let Message { bytes, handles } = msg;
    let slots: Vec<Option<Handle>> = handles.into_iter().map(Some).collect();
    let previous = INCOMING.with(|i| i.borrow_mut().replace(slots));
    let decoded = decode_bounded::<T>(&bytes);
    let slots = INCOMING
        .with(|i| std::mem::replace(&mut *i.borrow_mut(), previous))
        .unwrap_or_default();
    let (value, used) = decoded.map_err(|e| Error::Malformed(format!("typed payload: {e}")))?;
    if used != bytes.len() {
        return Err(Error::Malformed(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )));
    }
    let unclaimed = slots.iter().filter(|s| s.is_some()).count();
    if unclaimed > 0 {
        // `value` is dropped here too, closing the handles it claimed.
        return Err(Error::Malformed(format!(
            "{unclaimed} of {} handles are not referenced by the value",
            slots.len()
        )));
    }
    Ok(value)
}

fn push_outgoing<S: Serializer>(
    handle: Result<Handle>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    let index = OUTGOING.with(|o| match o.borrow_mut().as_mut() {
        Some(list) => {
            let handle = handle.map_err(S::Error::custom)?;
            let index =
                u32::try_from(list.len()).map_err(|_| S::Error::custom("too many handles"))?;
            list.push(handle);
            Ok(index)
        }
        None => Err(S::Error::custom(
            "a handle can only be serialized by handoff's typed channels",
        )),
    })?;
    s.serialize_u32(index)
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        push_outgoing(self.try_clone(), s)
    }
}

impl Serialize for BorrowedHandle<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        push_outgoing(self.try_clone_to_owned(), s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let index = u32::deserialize(d)?;
        INCOMING.with(|i| match i.borrow_mut().as_mut() {
            Some(slots) => match slots.get_mut(index as usize) {
                Some(slot) => slot
                    .take()
                    .ok_or_else(|| D::Error::custom(format!("handle index {index} used twice"))),
                None => Err(D::Error::custom(format!(
                    "handle index {index} out of range (message has {})",
                    slots.len()
                ))),
            },
            None => Err(D::Error::custom(
                "a handle can only be deserialized by handoff's typed channels",
            )),
        })
    }
}

/// The sending half of a typed channel.
pub struct Sender<T: ?Sized> {
    channel: Arc<Channel>,
    _type: PhantomData<fn(&T)>,
}

/// The receiving half of a typed channel.
pub struct Receiver<T> {
    channel: Arc<Channel>,
    _type: PhantomData<fn() -> T>,
}

/// Creates a connected typed pair: what the `Sender` sends, the `Receiver`
/// receives.
pub fn channel<T: Serialize + DeserializeOwned>() -> Result<(Sender<T>, Receiver<T>)> {
    let (a, b) = Channel::pair()?;
    Ok((Sender::new(a), Receiver::new(b)))
}

impl<T: Serialize + ?Sized> Sender<T> {
    /// Sends on `channel`.
    pub fn new(channel: impl Into<Arc<Channel>>) -> Self {
        Sender {
            channel: channel.into(),
            _type: PhantomData,
        }
    }

    /// Encodes and sends `value`; handles inside it are duplicated into the
    /// peer and the caller keeps its own.
    pub fn send(&self, value: &T) -> Result<()> {
        let (bytes, mut handles) = encode(value)?;
        self.channel.send_moved(&bytes, &mut handles)
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    /// Receives from `channel`.
    pub fn new(channel: impl Into<Arc<Channel>>) -> Self {
        Receiver {
            channel: channel.into(),
            _type: PhantomData,
        }
    }

    /// Receives and decodes the next value. A message that does not decode
    /// is [`Error::Malformed`] and its handles are closed; the channel stays
    /// usable.
    pub fn recv(&self) -> Result<T> {
        decode(self.channel.recv()?)
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }
}

impl Channel {
    /// Splits the channel into a typed sender and receiver sharing it: what
    /// this side sends is `S`, what it receives is `R`.
    pub fn into_typed<S: Serialize, R: DeserializeOwned>(self) -> (Sender<S>, Receiver<R>) {
        let shared = Arc::new(self);
        (Sender::new(shared.clone()), Receiver::new(shared))
    }
}

impl<T: ?Sized> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("channel", &self.channel)
            .finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("channel", &self.channel)
            .finish()
    }
}
