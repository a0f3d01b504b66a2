//! The fragment header every datagram of a channel starts with, and the
//! plan that splits one message into datagrams. Pure functions, no system
//! calls; `docs/wire-format.md` is the specification.

use crate::{Error, Result};

/// The wire-format version this crate speaks.
pub(crate) const VERSION: u8 = 1;
/// Bytes in a fragment header.
pub(crate) const HEADER_LEN: usize = 16;
/// The largest datagram a conforming sender emits, header included; a
/// receiver accepts up to this much.
pub(crate) const MAX_DATAGRAM: usize = 256 * 1024;

/// This datagram starts a message.
pub(crate) const FLAG_FIRST: u8 = 0x01;
/// This datagram ends a message.
pub(crate) const FLAG_LAST: u8 = 0x02;

/// A decoded fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub flags: u8,
    /// Handles attached to this datagram.
    pub handles_here: u16,
    /// Handles in the whole message.
    pub total_handles: u32,
    /// Payload bytes in the whole message.
    pub total_bytes: u64,
}

impl Header {
    pub(crate) fn is_first(&self) -> bool {
        self.flags & FLAG_FIRST != 0
    }

    pub(crate) fn is_last(&self) -> bool {
        self.flags & FLAG_LAST != 0
    }

    /// Encodes the header: version, flags, u16 handles here, u32 total
    /// handles, u64 total bytes; all little-endian.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = VERSION;
        out[1] = self.flags;
        out[2..4].copy_from_slice(&self.handles_here.to_le_bytes());
        out[4..8].copy_from_slice(&self.total_handles.to_le_bytes());
        out[8..16].copy_from_slice(&self.total_bytes.to_le_bytes());
        out
    }

    /// Decodes and checks a header received as the first `len` bytes of a
    /// datagram.
    pub(crate) fn decode(bytes: &[u8; HEADER_LEN], len: usize) -> Result<Header> {
        if len < HEADER_LEN {
            return Err(Error::Malformed(format!(
                "datagram of {len} bytes is shorter than the {HEADER_LEN}-byte header"
            )));
        }
        if bytes[0] != VERSION {
            return Err(Error::Malformed(format!(
                "wire-format version {} (this side speaks {VERSION})",
                bytes[0]
            )));
        }
        let flags = bytes[1];
        if flags & !(FLAG_FIRST | FLAG_LAST) != 0 {
            return Err(Error::Malformed(format!(
                "unknown header flags {flags:#04x}"
            )));
        }
        let header = Header {
            flags,
            handles_here: u16::from_le_bytes([bytes[2], bytes[3]]),
            total_handles: u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")),
            total_bytes: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
        };
        if u32::from(header.handles_here) > header.total_handles {
            return Err(Error::Malformed(format!(
                "fragment carries {} handles of a message announced with {}",
                header.handles_here, header.total_handles
            )));
        }
        Ok(header)
    }
}

/// One datagram of an outgoing message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fragment {
    pub header: [u8; HEADER_LEN],
    /// Range of the message's bytes in this datagram.
    pub bytes: std::ops::Range<usize>,
    /// Range of the message's handles in this datagram.
    pub handles: std::ops::Range<usize>,
}

/// Splits a message of `bytes` bytes and `handles` handles into datagrams
/// of at most `max_datagram` bytes (header included) and `max_handles`
/// handles each.
pub(crate) fn plan(
    bytes: usize,
    handles: usize,
    max_datagram: usize,
    max_handles: usize,
) -> Result<impl ExactSizeIterator<Item = Fragment>> {
    let total_handles = u32::try_from(handles).map_err(|_| Error::TooLarge {
        what: "message handles",
        got: handles as u64,
        limit: u32::MAX.into(),
    })?;
    let per_bytes = max_datagram - HEADER_LEN;
    let count = bytes
        .div_ceil(per_bytes)
        .max(handles.div_ceil(max_handles))
        .max(1);
    Ok((0..count).map(move |i| {
        let b = (i * per_bytes).min(bytes)..((i + 1) * per_bytes).min(bytes);
        let h = (i * max_handles).min(handles)..((i + 1) * max_handles).min(handles);
        let mut flags = 0;
        if i == 0 {
            flags |= FLAG_FIRST;
        }
        if i + 1 == count {
            flags |= FLAG_LAST;
        }
        let header = Header {
            flags,
            handles_here: h.len() as u16,
            total_handles,
            total_bytes: bytes as u64,
        };
        Fragment {
            header: header.encode(),
            bytes: b,
            handles: h,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_header() {
        let h = Header {
            flags: FLAG_FIRST | FLAG_LAST,
            handles_here: 2,
            total_handles: 2,
            total_bytes: 0x0102_0304,
        };
        assert_eq!(
            h.encode(),
            [1, 3, 2, 0, 2, 0, 0, 0, 4, 3, 2, 1, 0, 0, 0, 0],
            "see docs/wire-format.md, fragment header"
        );
        assert_eq!(Header::decode(&h.encode(), 16).unwrap(), h);
    }

    #[test]
    fn rejects_bad_headers() {
        let good = Header {
            flags: FLAG_FIRST,
            handles_here: 1,
            total_handles: 1,
            total_bytes: 0,
        }
        .encode();
        assert!(Header::decode(&good, 15).is_err(), "short datagram");
        let mut v = good;
        v[0] = 2;
        assert!(Header::decode(&v, 16).is_err(), "version");
        let mut f = good;
        f[1] = 0x80;
        assert!(Header::decode(&f, 16).is_err(), "flags");
        let mut h = good;
        h[2] = 5;
        assert!(Header::decode(&h, 16).is_err(), "more here than in total");
    }

    #[test]
    fn plan_covers_everything_once() {
        for (bytes, handles) in [(0, 0), (1, 0), (0, 253), (0, 254), (1000, 600), (10_000, 3)] {
            let frags: Vec<_> = plan(bytes, handles, 1024, 253).unwrap().collect();
            let mut b = 0;
            let mut h = 0;
            for (i, f) in frags.iter().enumerate() {
                let hd = Header::decode(&f.header, 16).unwrap();
                assert_eq!(hd.is_first(), i == 0);
                assert_eq!(hd.is_last(), i + 1 == frags.len());
                assert_eq!(f.bytes.start, b);
                assert_eq!(f.handles.start, h);
                assert!(f.bytes.len() <= 1024 - HEADER_LEN);
                assert!(f.handles.len() <= 253);
                b = f.bytes.end;
                h = f.handles.end;
            }
            assert_eq!((b, h), (bytes, handles));
        }
    }
}
