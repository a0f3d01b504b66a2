//! The check both shared-memory backends make before mapping.

use std::io;

/// Whether a read-only mapping of `len` bytes of an object of `size` bytes
/// is to be made: an error past the end of the object, `false` for an
/// empty one (the kernels refuse zero-length mappings; the caller makes an
/// empty mapping without asking them).
pub(crate) fn check(len: usize, size: u64) -> io::Result<bool> {
    if len as u64 > size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "mapping beyond the end of the object",
        ));
    }
    Ok(len != 0)
}
