//! The frame prefix that puts fragment boundaries back into a byte stream.
//!
//! A `SOCK_STREAM` socket keeps no datagram boundaries, so in the portable
//! configuration every fragment (header and payload, exactly as on a
//! seqpacket socket) goes out behind an 8-byte prefix saying how long it is
//! and how many descriptors travel with it, padded to [`MIN_FRAME`] bytes
//! when shorter (`docs/wire-format.md`, "Stream framing"). Pure functions, no system calls, so they are unit-tested here
//! on every platform the portable configuration is built for.

use crate::channel::frame::HEADER_LEN;

/// Bytes in a frame prefix.
pub const PREFIX_LEN: usize = 8;

/// The last two bytes of every prefix. A reader that finds anything else
/// there has lost its place in the stream (or the peer wrote garbage
/// between fragments) and says so, rather than reading a length out of
/// payload bytes.
pub const MARKER: [u8; 2] = *b"HF";

/// The fewest bytes a frame takes on the wire: a shorter one (prefix and
/// fragment) is followed by zero bytes up to this size. A receiver reads
/// this much first, in one call, and can never run into the next frame
/// doing so; a small message (an RPC call, a marker with a handle) then
/// costs one `recvmsg`, and only longer payloads a second, exact one.
pub const MIN_FRAME: usize = 256;

/// Bytes a frame whose fragment is `len` bytes takes on the wire, prefix
/// and padding included.
pub fn frame_size(len: usize) -> usize {
    (PREFIX_LEN + len).max(MIN_FRAME)
}

/// A decoded prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// Bytes of the fragment that follows: its 16-byte header and payload.
    pub len: usize,
    /// Descriptors sent with the fragment's bytes.
    pub handles: usize,
}

impl Prefix {
    /// Payload bytes after the fragment header.
    pub fn payload_len(&self) -> usize {
        self.len - HEADER_LEN
    }
}

/// Encodes the prefix of a fragment of `len` bytes (header included)
/// carrying `handles` descriptors: u32 length, u16 handle count, both
/// little-endian, then [`MARKER`]. The caller keeps both within the limits
/// [`decode`] checks, which fit the fields.
pub fn encode(len: usize, handles: usize) -> [u8; PREFIX_LEN] {
    debug_assert!(len <= u32::MAX as usize && handles <= usize::from(u16::MAX));
    let mut out = [0u8; PREFIX_LEN];
    out[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    out[4..6].copy_from_slice(&(handles as u16).to_le_bytes());
    out[6..8].copy_from_slice(&MARKER);
    out
}

/// Decodes and checks a prefix: the marker, a fragment at least as long as
/// its header and at most `max_len` bytes, at most `max_handles`
/// descriptors. The error says which rule was broken; the caller turns it
/// into `InvalidData`, because a stream whose framing is wrong cannot be
/// resynchronised.
pub fn decode(
    bytes: &[u8; PREFIX_LEN],
    max_len: usize,
    max_handles: usize,
) -> Result<Prefix, String> {
    if bytes[6..8] != MARKER {
        return Err(format!(
            "stream frame marker {:02x} {:02x} is not \"HF\": bytes between fragments or a lost position",
            bytes[6], bytes[7]
        ));
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let handles = u16::from_le_bytes([bytes[4], bytes[5]]);
    // u32 into usize never overflows where this code runs (32 and 64 bits);
    // the comparison is made in u64 so it cannot wrap either way.
    if u64::from(len) > max_len as u64 {
        return Err(format!(
            "stream frame of {len} bytes is over the {max_len}-byte maximum"
        ));
    }
    let len = len as usize;
    if len < HEADER_LEN {
        return Err(format!(
            "stream frame of {len} bytes is shorter than the {HEADER_LEN}-byte fragment header"
        ));
    }
    if usize::from(handles) > max_handles {
        return Err(format!(
            "stream frame announces {handles} handles, more than the {max_handles} one fragment carries"
        ));
    }
    Ok(Prefix {
        len,
        handles: handles.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_prefix() {
        assert_eq!(
            encode(0x0001_0203, 2),
            [3, 2, 1, 0, 2, 0, b'H', b'F'],
            "see docs/wire-format.md, stream framing"
        );
        assert_eq!(
            decode(&encode(16 + 5, 3), 1 << 18, 253),
            Ok(Prefix {
                len: 21,
                handles: 3
            })
        );
        assert_eq!(decode(&encode(16, 0), 16, 0).unwrap().payload_len(), 0);
    }

    #[test]
    fn frames_are_padded_to_the_minimum() {
        assert_eq!(frame_size(16), MIN_FRAME);
        assert_eq!(frame_size(MIN_FRAME - PREFIX_LEN), MIN_FRAME);
        assert_eq!(frame_size(MIN_FRAME - PREFIX_LEN + 1), MIN_FRAME + 1);
        assert_eq!(frame_size(1 << 18), (1 << 18) + PREFIX_LEN);
    }

    #[test]
    fn rejects_bad_prefixes() {
        let max = 256 * 1024;
        assert!(
            decode(&encode(15, 0), max, 253).is_err(),
            "shorter than a header"
        );
        assert!(
            decode(&encode(max + 1, 0), max, 253).is_err(),
            "over the maximum"
        );
        assert!(
            decode(&encode(16, 254), max, 253).is_err(),
            "too many handles"
        );
        let mut p = encode(16, 0);
        p[7] = 0;
        assert!(decode(&p, max, 253).is_err(), "marker");
        // The largest length the field holds, against the largest maximum.
        let p = [0xff, 0xff, 0xff, 0xff, 0, 0, b'H', b'F'];
        assert!(decode(&p, u32::MAX as usize - 1, 253).is_err());
        assert!(decode(&p, usize::MAX, 253).is_ok());
    }

    #[test]
    fn every_prefix_decodes_or_is_refused_without_panicking() {
        // A cheap sweep over lengths and handle counts near the edges.
        for len in [0u32, 1, 15, 16, 17, 1 << 18, (1 << 18) + 1, u32::MAX] {
            for handles in [0u16, 1, 253, 254, u16::MAX] {
                let mut p = [0u8; PREFIX_LEN];
                p[0..4].copy_from_slice(&len.to_le_bytes());
                p[4..6].copy_from_slice(&handles.to_le_bytes());
                p[6..8].copy_from_slice(&MARKER);
                if let Ok(d) = decode(&p, 1 << 18, 253) {
                    assert!(d.len >= HEADER_LEN && d.len <= 1 << 18 && d.handles <= 253);
                    assert_eq!(encode(d.len, d.handles), p);
                }
            }
        }
    }
}
