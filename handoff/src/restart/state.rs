//! Restart state: bytes or a serde value one generation hands the next,
//! in sealed shared memory (the [`startup`](crate::startup) machinery), with
//! the application's version and a CRC-32 of the payload.
//!
//! The sender writes its bytes once into the shared memory and seals it;
//! the receiver maps it read-only and reads the payload in place (no copy),
//! after checking, before it trusts a byte: shared memory, sealed, the
//! startup header, then this module's 32-byte header (magic `HNDOFSTA`,
//! version, format, length, checksum) against the object and its cap, and
//! the checksum over the payload. Layout in `docs/restart.md`.

use serde::{Deserialize, Serialize};

use super::HandoverError;
use crate::startup::{Populate, StartupData};
use crate::{Error, Handle, Result};

/// Identifies restart state inside startup data.
pub const MAGIC: [u8; 8] = *b"HNDOFSTA";
/// Bytes of this module's header, before the payload.
pub const HEADER_LEN: usize = 32;
const FORMAT_BYTES: u32 = 0;
const FORMAT_VALUE: u32 = 1;

fn header(version: u32, format: u32, len: u64, crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..16].copy_from_slice(&format.to_le_bytes());
    h[16..24].copy_from_slice(&len.to_le_bytes());
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Seals `bytes` as state of the application's `version`: one copy into
/// shared memory, none on the receiving side.
pub fn create(version: u32, bytes: &[u8]) -> Result<Handle> {
    create_parts(version, &[bytes])
}

/// Seals the concatenation of `parts` as state of `version`, each part
/// copied once into the shared memory: a large part (a cache) and a small
/// one (positions read at the last moment) need not be joined first.
pub fn create_parts(version: u32, parts: &[&[u8]]) -> Result<Handle> {
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let (fd, reader) =
        crate::startup::begin(crate::startup::FORMAT_BYTES, HEADER_LEN as u64 + total)?;
    let write = |bytes: &[u8], at: u64| {
        crate::sys::shm::write_all_at(fd.borrow().into(), bytes, at)
            .map_err(|e| Error::os("write restart state", e))
    };
    // The checksum is taken of each piece just before it is written, while
    // it is in the processor's cache: one pass over the caller's memory
    // rather than two (a gigabyte of state is read once, not twice).
    let mut crc = crc32fast::Hasher::new();
    let mut at = crate::startup::HEADER_LEN + HEADER_LEN as u64;
    for part in parts {
        for piece in part.chunks(1 << 20) {
            crc.update(piece);
            write(piece, at)?;
            at += piece.len() as u64;
        }
    }
    let h = header(version, FORMAT_BYTES, total, crc.finalize());
    write(&h, crate::startup::HEADER_LEN)?;
    crate::startup::finish(fd, reader)
}

/// Seals `value` (encoded as a typed payload, without handles) as state
/// of the application's `version`.
pub fn create_value<T: Serialize + ?Sized>(version: u32, value: &T) -> Result<Handle> {
    let (bytes, handles) = crate::typed::encode(value)?;
    if !handles.is_empty() {
        return Err(Error::InvalidArgument(
            "state cannot carry handles; hand them over as connections or store them".into(),
        ));
    }
    let h = header(
        version,
        FORMAT_VALUE,
        bytes.len() as u64,
        crc32fast::hash(&bytes),
    );
    crate::startup::create_parts(&[&h, &bytes])
}

/// State received from the previous generation, validated and mapped
/// read-only.
#[derive(Debug)]
pub struct State {
    data: StartupData,
    version: u32,
    format: u32,
}

impl State {
    /// Validates `handle` as state of `version`, at most `max_len` payload
    /// bytes, and maps it. Every failure is an
    /// [`Error::Handover`] naming the check; the handle is closed.
    pub fn open(handle: Handle, version: u32, max_len: u64) -> Result<State> {
        // Every byte is read at once by the checksum: map them all in one
        // go rather than fault them in page by page.
        let data = StartupData::open_with(handle, Populate::Now).map_err(|e| match e {
            Error::BadStartupData(m) if m.starts_with("not sealed") => {
                Error::from(HandoverError::StateNotSealed(m))
            }
            Error::BadStartupData(m) => HandoverError::StateMalformed(m).into(),
            Error::WrongKind { actual, .. } => {
                HandoverError::StateMalformed(format!("not shared memory but {actual}")).into()
            }
            other => other,
        })?;
        let (found, format) = check(data.bytes(), version, max_len)?;
        debug_assert_eq!(found, version);
        Ok(State {
            data,
            version,
            format,
        })
    }

    /// The application version the sender wrote.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The payload, read in place from the shared memory.
    pub fn bytes(&self) -> &[u8] {
        &self.data.bytes()[HEADER_LEN..]
    }

    /// Decodes the payload as a `T` (borrowing from the mapping where `T`
    /// allows).
    pub fn value<'a, T: Deserialize<'a>>(&'a self) -> Result<T> {
        if self.format != FORMAT_VALUE {
            return Err(
                HandoverError::StateMalformed("the state is bytes, not a value".into()).into(),
            );
        }
        let (value, used) = crate::channel::typed::decode_bounded(self.bytes()).map_err(|e| {
            HandoverError::StateMalformed(format!("the value does not decode: {e}"))
        })?;
        if used != self.bytes().len() {
            return Err(
                HandoverError::StateMalformed("trailing bytes after the value".into()).into(),
            );
        }
        Ok(value)
    }
}

/// Checks a state's bytes (this module's header and payload, as found in
/// the startup data): returns the version and format. Pure, so the fuzz
/// target runs it on any input.
pub fn check(all: &[u8], version: u32, max_len: u64) -> Result<(u32, u32), HandoverError> {
    if all.len() < HEADER_LEN {
        return Err(HandoverError::StateTruncated {
            said: HEADER_LEN as u64,
            held: all.len() as u64,
        });
    }
    let (h, payload) = all.split_at(HEADER_LEN);
    if h[0..8] != MAGIC {
        return Err(HandoverError::StateMalformed(
            "wrong magic: not restart state".into(),
        ));
    }
    let word = |r: std::ops::Range<usize>| u32::from_le_bytes(h[r].try_into().expect("4 bytes"));
    let found = word(8..12);
    let format = word(12..16);
    let len = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    let sum = word(24..28);
    if found != version {
        return Err(HandoverError::StateVersion {
            found,
            expected: version,
        });
    }
    if format != FORMAT_BYTES && format != FORMAT_VALUE || word(28..32) != 0 {
        return Err(HandoverError::StateMalformed(format!(
            "unknown format {format} or reserved bytes set"
        )));
    }
    if len > max_len {
        return Err(HandoverError::StateTooLarge { len, max: max_len });
    }
    if len != payload.len() as u64 {
        return Err(HandoverError::StateTruncated {
            said: len,
            held: payload.len() as u64,
        });
    }
    let computed = crc32fast::hash(payload);
    if computed != sum {
        return Err(HandoverError::StateChecksum {
            found: sum,
            computed,
        });
    }
    Ok((found, format))
}
