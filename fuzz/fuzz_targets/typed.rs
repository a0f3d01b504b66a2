//! Typed-message decoding with handle indices: arbitrary payload bytes and
//! 0–7 handles decoded as a value with handles in nested fields.
#![no_main]

use handoff::{Handle, Message};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

mod common;

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
enum Shape {
    Unit,
    One(Handle),
    Many { list: Vec<Handle>, tag: String },
    Maybe(Option<Handle>, u64),
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct Value {
    id: u32,
    first: Handle,
    shapes: Vec<Shape>,
    extra: Option<(Handle, Vec<u8>)>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, bytes)) = data.split_first() else { return };
    common::without_leaks(|| {
        let null = std::fs::File::open("/dev/null").unwrap();
        let handles: Vec<Handle> = (0..n % 8)
            .map(|_| Handle::from(null.try_clone().unwrap()))
            .collect();
        let msg = Message { bytes: bytes.to_vec(), handles };
        let _ = handoff::typed::decode::<Value>(msg);
    });
});
