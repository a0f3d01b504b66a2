//! The restart handover decoders: arbitrary bytes with a handle count as
//! a handover message, and arbitrary bytes as restart state. Never a
//! panic; an accepted message re-encodes to the same bytes and carries
//! exactly the handles that arrived.
#![no_main]

use handoff::restart::handover::wire;
use handoff::restart::state;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|input: (u8, &[u8])| {
    common::with_handle_count(input, |bytes, handles| {
        if let Ok(msg) = wire::decode(bytes, handles) {
            assert_eq!(msg.handles(), handles);
            assert_eq!(wire::encode(&msg).unwrap(), bytes);
        }
        let _ = state::check(bytes, 1, 1 << 20);
    });
});
