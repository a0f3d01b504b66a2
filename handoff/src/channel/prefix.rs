//! The transport prefix of a Windows channel datagram
//! (`docs/wire-format.md`, "Windows"): a fragment behind the sender's pid,
//! creation time, batch number and the 32-bit values of the handles it
//! left in flight, or an acknowledgement of one batch.
//!
//! Pure bytes in, bytes out: the Windows backend (`sys/windows/socket.rs`)
//! does the pulling and acknowledging. It is built on every platform, so
//! its tests and its fuzz target (`fuzz/fuzz_targets/windows_prefix.rs`)
//! run where the fuzzers do.

/// A datagram carrying a fragment.
pub const KIND_FRAGMENT: u8 = 1;
/// A datagram acknowledging one batch of handles.
pub const KIND_ACK: u8 = 2;
/// Bytes of the fragment prefix before the handle values.
pub const PREFIX_LEN: usize = 24;
/// Bytes of an acknowledgement.
pub const ACK_LEN: usize = 16;
/// Handles one datagram may name (as `SCM_MAX_FD` on Linux).
pub const MAX_HANDLES: usize = 253;
/// The largest datagram a conforming sender writes.
pub const MAX_WIRE: usize = PREFIX_LEN + 4 * MAX_HANDLES + super::frame::MAX_DATAGRAM;

/// What one datagram's transport prefix says.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// The peer took (or discarded) batch `.0`: its copies can close.
    Ack(u64),
    /// A fragment behind the handles its sender left in flight.
    Fragment(Fragment<'a>),
    /// Not a datagram a conforming peer writes; the text says why.
    Bad(&'static str),
}

/// A fragment, naming `count` handles left in flight by process `pid`
/// (created at `created`) as batch `batch`.
#[derive(Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// How many handle values follow the prefix.
    pub count: usize,
    /// The sender's pid.
    pub pid: u32,
    /// The sender's creation time, so a reused pid is told apart.
    pub created: u64,
    /// The batch the values belong to (0 when there are none).
    pub batch: u64,
    /// The values, 4 little-endian bytes each ([`Fragment::values`] reads
    /// them).
    pub values: &'a [u8],
    /// The channel fragment itself (`channel/frame.rs`).
    pub fragment: &'a [u8],
}

impl Fragment<'_> {
    /// The handle values, in order.
    pub fn values(&self) -> impl Iterator<Item = u32> + '_ {
        self.values.chunks_exact(4).map(|v| u32_at(v, 0))
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(std::array::from_fn(|k| b[i + k]))
}

/// Reads a datagram's prefix. Every length is checked before it is used,
/// so no input panics.
pub fn parse(d: &[u8]) -> Datagram<'_> {
    match d.first() {
        None => Datagram::Bad("empty datagram"),
        Some(&KIND_ACK) => {
            if d.len() != ACK_LEN || d[1..8].iter().any(|&b| b != 0) {
                return Datagram::Bad("malformed acknowledgement");
            }
            Datagram::Ack(u64_at(d, 8))
        }
        Some(&KIND_FRAGMENT) => {
            if d.len() < PREFIX_LEN || d[1] != 0 {
                return Datagram::Bad("malformed fragment prefix");
            }
            let count = usize::from(u16_at(d, 2));
            if count > MAX_HANDLES || d.len() < PREFIX_LEN + 4 * count {
                return Datagram::Bad("fragment prefix announces more handles than it holds");
            }
            Datagram::Fragment(Fragment {
                count,
                pid: u32_at(d, 4),
                created: u64_at(d, 8),
                batch: u64_at(d, 16),
                values: &d[PREFIX_LEN..PREFIX_LEN + 4 * count],
                fragment: &d[PREFIX_LEN + 4 * count..],
            })
        }
        Some(_) => Datagram::Bad("unknown datagram kind"),
    }
}

/// Starts a fragment datagram in `d`: the prefix and the handle values;
/// the caller appends the fragment. More than [`MAX_HANDLES`] values is
/// the caller's error (checked before anything is duplicated).
pub fn begin_fragment(d: &mut Vec<u8>, pid: u32, created: u64, batch: u64, values: &[u32]) {
    debug_assert!(values.len() <= MAX_HANDLES);
    d.push(KIND_FRAGMENT);
    d.push(0);
    d.extend_from_slice(&(values.len() as u16).to_le_bytes());
    d.extend_from_slice(&pid.to_le_bytes());
    d.extend_from_slice(&created.to_le_bytes());
    d.extend_from_slice(&batch.to_le_bytes());
    for v in values {
        d.extend_from_slice(&v.to_le_bytes());
    }
}

/// The acknowledgement of batch `batch`.
pub fn ack(batch: u64) -> [u8; ACK_LEN] {
    let mut d = [0u8; ACK_LEN];
    d[0] = KIND_ACK;
    d[8..].copy_from_slice(&batch.to_le_bytes());
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_prefix_and_ack() {
        let mut d = Vec::new();
        begin_fragment(&mut d, 7, 9, 5, &[0x1a4, 0x1b0]);
        d.extend_from_slice(&[1, 3, 2, 0]);
        assert_eq!(
            &d[..PREFIX_LEN + 8],
            &[
                1, 0, 2, 0, 7, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0xa4, 1, 0,
                0, 0xb0, 1, 0, 0
            ],
            "see docs/wire-format.md, Windows"
        );
        match parse(&d) {
            Datagram::Fragment(f) => {
                assert_eq!((f.count, f.pid, f.created, f.batch), (2, 7, 9, 5));
                assert_eq!(f.values().collect::<Vec<_>>(), [0x1a4, 0x1b0]);
                assert_eq!(f.fragment, &[1, 3, 2, 0]);
            }
            other => panic!("not a fragment: {other:?}"),
        }
        let mut a = ack(5);
        assert_eq!(a, [2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse(&a), Datagram::Ack(5));
        a[3] = 1;
        assert!(matches!(parse(&a), Datagram::Bad(_)));
        assert!(matches!(parse(&a[..15]), Datagram::Bad(_)));
        assert!(matches!(
            parse(&[KIND_FRAGMENT, 0, 0xff, 0]),
            Datagram::Bad(_)
        ));
        assert!(matches!(parse(&[9]), Datagram::Bad(_)));
        assert!(matches!(parse(&[]), Datagram::Bad(_)));
    }

    #[test]
    fn a_prefix_promising_more_values_than_it_holds_is_refused() {
        let mut d = Vec::new();
        begin_fragment(&mut d, 1, 2, 3, &[4, 8]);
        d.truncate(PREFIX_LEN + 4);
        assert!(matches!(parse(&d), Datagram::Bad(_)));
        d[2] = (MAX_HANDLES + 1) as u8;
        d[3] = 0;
        d.resize(PREFIX_LEN + 4 * (MAX_HANDLES + 1), 0);
        assert!(matches!(parse(&d), Datagram::Bad(_)));
    }
}
