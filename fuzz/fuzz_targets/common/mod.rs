//! What the fuzz targets share: the check that no input leaves a handle
//! open, and the decoders' input of bytes with a handle count. Each target
//! uses what it needs of it.
#![allow(dead_code)]

/// Runs `f`, then asserts the process's open-handle count is what it was
/// before: whatever the input, no handle outlives it.
pub fn without_leaks(f: impl FnOnce()) {
    let before = handoff::count_open_handles().unwrap();
    f();
    assert_eq!(handoff::count_open_handles().unwrap(), before, "handle leak");
}

/// Runs `decode` on the input's bytes with the count of handles (0 to 3,
/// from the input's number) said to have arrived with them, without leaks.
pub fn with_handle_count(input: (u8, &[u8]), decode: impl FnOnce(&[u8], usize)) {
    let (handles, bytes) = input;
    without_leaks(|| decode(bytes, usize::from(handles % 4)));
}
