//! `handoff serve`'s control-socket request decoder (JSON).
#![no_main]

#[path = "../../handoff-cli/src/serve/protocol.rs"]
#[allow(dead_code)]
mod protocol;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(r) = protocol::decode_request(bytes) {
        assert!(bytes.len() <= protocol::MAX_REQUEST);
        let _ = r;
    }
});
