//! The system's random generator: pipe names, batch numbers, RPC context
//! tokens.

use std::io;

use windows_sys::Win32::Security::Cryptography::ProcessPrng;

use super::cvt;

/// Fills `buf` from `ProcessPrng`, which cannot fail once loaded.
pub(crate) fn fill(buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: ProcessPrng writes exactly `len` bytes into the buffer.
    cvt(unsafe { ProcessPrng(buf.as_mut_ptr(), buf.len()) })
}
