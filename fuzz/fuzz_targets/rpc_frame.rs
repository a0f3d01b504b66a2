//! The RPC frame decoder: a header checked against the handles that
//! arrived, and bodies decoded as the shapes calls and replies take.
#![no_main]

use handoff::__private::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&handles, frame)) = data.split_first() else { return };
    if let Ok(header) = wire::Header::decode(frame, usize::from(handles % 8)) {
        // A header that decodes re-encodes to the same bytes.
        assert_eq!(&header.encode()[..], &frame[..wire::HEADER_LEN]);
    }
    let _ = wire::body::<(String, Vec<u32>, Option<u64>)>(frame);
    let _ = wire::body::<Vec<String>>(frame);
    let _ = wire::body::<(u32, Vec<u8>)>(frame);
});
