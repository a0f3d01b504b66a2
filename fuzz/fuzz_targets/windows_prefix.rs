//! The Windows channel's transport prefix (pid, creation time, batch,
//! handle values; or an acknowledgement), decoded on every platform: a
//! typed refusal or a prefix that re-encodes to the same bytes.
#![no_main]

use handoff::__private::prefix::{self, Datagram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match prefix::parse(data) {
        Datagram::Ack(batch) => assert_eq!(&prefix::ack(batch)[..], data),
        Datagram::Fragment(f) => {
            let values: Vec<u32> = f.values().collect();
            assert_eq!(values.len(), f.count);
            let mut again = Vec::new();
            prefix::begin_fragment(&mut again, f.pid, f.created, f.batch, &values);
            again.extend_from_slice(f.fragment);
            assert_eq!(again, data);
        }
        Datagram::Bad(_) => {}
    }
});
