//! No random source.

use std::io;

/// Fills `buf` with random bytes: unsupported.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn fill(_buf: &mut [u8]) -> io::Result<()> {
    Err(super::unsupported())
}
