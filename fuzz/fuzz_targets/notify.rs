//! The notify protocol decoder: bytes and a handle count into
//! `Notification::parse`. Accepted input re-encodes to the same message.
#![no_main]

use handoff::restart::Notification;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|input: (u8, &[u8])| {
    common::with_handle_count(input, |bytes, handles| {
        if let Ok(n) = Notification::parse(bytes, handles) {
            if n.fd_store {
                assert!(handles > 0);
            }
            let again = Notification::parse(n.encode().as_bytes(), handles).unwrap();
            // Repeated keys keep the last value, so compare the re-encoding.
            assert_eq!(again.encode(), n.encode());
        }
    });
});
