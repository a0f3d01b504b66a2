//! The portable Unix transport's frame prefix (u32 length, u16 handle
//! count, "HF"), decoded against limits taken from the input: a typed
//! refusal, or a prefix within the limits that re-encodes to the same
//! bytes. Never a panic, whatever the length field holds.
#![no_main]

use handoff::__private::stream_prefix::{decode, encode, frame_size, MIN_FRAME, PREFIX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < PREFIX_LEN + 5 {
        return;
    }
    let bytes: [u8; PREFIX_LEN] = data[..PREFIX_LEN].try_into().unwrap();
    let limits = &data[PREFIX_LEN..];
    let max_len = u32::from_le_bytes(limits[..4].try_into().unwrap()) as usize;
    let max_handles = usize::from(limits[4]);
    if let Ok(p) = decode(&bytes, max_len, max_handles) {
        assert!(p.len >= 16 && p.len <= max_len, "{p:?} against {max_len}");
        assert!(p.handles <= max_handles);
        assert_eq!(p.payload_len(), p.len - 16);
        assert_eq!(encode(p.len, p.handles), bytes);
        assert!(frame_size(p.len) >= MIN_FRAME.max(PREFIX_LEN + p.len));
    }
});
