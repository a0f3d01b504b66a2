//! The system's random generator (RPC context tokens).

use std::io;

/// Fills `buf` with random bytes from the kernel.
///
/// Linux and Android have `getrandom`, which needs no descriptor (a leak
/// check counting descriptors sees nothing); elsewhere the bytes come from
/// `/dev/urandom`, which every Unix has.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn fill(buf: &mut [u8]) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut filled = 0;
        while filled < buf.len() {
            match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())
            {
                Ok(n) => filled += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")?.read_exact(buf)
    }
}
