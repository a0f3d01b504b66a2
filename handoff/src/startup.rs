//! Startup data: any amount of bytes or a serde value handed to a child
//! through sealed anonymous shared memory.
//!
//! The parent writes a 64-byte header and the payload into a memfd, seals it
//! (`F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL`) so nobody,
//! the parent included, can change it afterwards, and passes it to the child
//! under the name [`NAME`]. Fire and forget: the parent may exit at once.
//! The child checks the seals and the header (magic, version, sizes) before
//! it trusts a byte, then maps it read-only. Nothing is copied between the
//! processes and no name exists that another process could squat.
//!
//! Windows sections cannot be sealed. There the object is an anonymous
//! section (`CreateFileMappingW` on the paging file) whose size is fixed at
//! creation; the creator writes it, then keeps only a read-only duplicate
//! (`SECTION_MAP_READ | SECTION_QUERY`) and closes the writable handle, so
//! once the child holds its handle no writable handle exists anywhere. The
//! child checks that its handle cannot map the section writable: that
//! replaces the seal, and it trusts the creator (the parent) not to have
//! kept a writable duplicate.
//!
//! The portable Unix configuration (macOS, the BSDs; Linux with
//! `--cfg handoff_unix_portable`) has POSIX shared memory, which cannot be
//! sealed either. The object is created under a random name with `O_EXCL`,
//! opened a second time read-only and unlinked at once; the creator writes
//! through its writable descriptor, drops it, and hands on the read-only
//! one. The child checks that its descriptor is read-only (it can then
//! neither `write` the object nor map it writable and shared) and, as on
//! Windows, trusts its creator not to have kept a writable descriptor.
//!
//! The header is specified in `docs/wire-format.md`.

use serde::{Deserialize, Serialize};

use crate::sys;
use crate::{Access, AsHandle, Error, Handle, Kind, Result, Seals};

/// The name under which startup data is passed to a child.
pub const NAME: &str = "handoff.startup";

/// Identifies handoff startup data.
pub const MAGIC: [u8; 8] = *b"HNDOFFSD";
/// The header version this crate writes and reads.
pub const VERSION: u32 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: u64 = 64;

/// The payload is opaque bytes.
pub(crate) const FORMAT_BYTES: u32 = 0;
/// The payload is a value encoded as in `docs/wire-format.md` (typed payloads).
const FORMAT_VALUE: u32 = 1;

fn header(format: u32, payload_len: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&format.to_le_bytes());
    h[16..24].copy_from_slice(&payload_len.to_le_bytes());
    h[24..32].copy_from_slice(&HEADER_LEN.to_le_bytes());
    h
}

fn os(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::os(op, e)
}

/// Creates sealed startup data holding `bytes`.
///
/// # References
/// [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html),
/// [`F_ADD_SEALS`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
#[doc(alias = "memfd_create")]
pub fn create(bytes: &[u8]) -> Result<Handle> {
    let (fd, reader) = begin(FORMAT_BYTES, bytes.len() as u64)?;
    sys::shm::write_all_at(fd.borrow().into(), bytes, HEADER_LEN)
        .map_err(os("write startup data"))?;
    finish(fd, reader)
}

/// Creates sealed startup data holding the concatenation of `parts`, each
/// written once into the shared memory (restart state puts its own header
/// before a caller's bytes this way without copying them first).
pub(crate) fn create_parts(parts: &[&[u8]]) -> Result<Handle> {
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let (fd, reader) = begin(FORMAT_BYTES, total)?;
    let mut at = HEADER_LEN;
    for part in parts {
        sys::shm::write_all_at(fd.borrow().into(), part, at).map_err(os("write startup data"))?;
        at += part.len() as u64;
    }
    finish(fd, reader)
}

/// Creates sealed startup data holding `value`, encoded as a typed payload.
/// Handles cannot travel this way (pass them as named handles instead).
pub fn create_value<T: Serialize + ?Sized>(value: &T) -> Result<Handle> {
    let (bytes, handles) = crate::typed::encode(value)?;
    if !handles.is_empty() {
        return Err(Error::InvalidArgument(
            "startup data cannot carry handles; pass them as named handles".into(),
        ));
    }
    let (fd, reader) = begin(FORMAT_VALUE, bytes.len() as u64)?;
    sys::shm::write_all_at(fd.borrow().into(), &bytes, HEADER_LEN)
        .map_err(os("write startup data"))?;
    finish(fd, reader)
}

/// Creates sealed startup data from `source` (a file or a pipe): the next
/// `len` bytes, or everything up to end-of-file with `None`. The kernel
/// copies where it can (`sendfile`, `splice`); otherwise a buffer does.
/// A source that ends before `len` bytes is an error.
///
/// Where shared memory cannot grow after creation (Windows sections), a
/// source of unknown length is read to its end in memory first.
pub fn create_from(source: impl AsHandle, len: Option<u64>) -> Result<Handle> {
    let src = source.as_handle();
    if len.is_none() && !sys::shm::CAN_GROW {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match sys::shm::read(src.into(), &mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) => return Err(Error::os("read startup data", e)),
            }
        }
        return create(&all);
    }
    let (fd, reader) = begin(FORMAT_BYTES, len.unwrap_or(0))?;
    let dst = fd.borrow();
    let max = len.unwrap_or(u64::MAX);
    let mut copied = sys::shm::copy_in_kernel(src.into(), dst.into(), HEADER_LEN, max)
        .map_err(os("copy startup data"))?;
    let mut buf = vec![0u8; if copied < max { 1 << 20 } else { 0 }];
    while copied < max {
        let want = (buf.len() as u64).min(max - copied) as usize;
        let n = match sys::shm::read(src.into(), &mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(Error::os("read startup data", e)),
        };
        sys::shm::write_all_at(dst.into(), &buf[..n], HEADER_LEN + copied)
            .map_err(os("write startup data"))?;
        copied += n as u64;
    }
    match len {
        Some(len) if copied != len => {
            return Err(Error::InvalidArgument(format!(
                "source ended after {copied} of {len} bytes"
            )))
        }
        Some(_) => {}
        // Only now is the length known: the header says what was copied.
        None => sys::shm::write_all_at(dst.into(), &header(FORMAT_BYTES, copied), 0)
            .map_err(os("write startup header"))?,
    }
    finish(fd, reader)
}

/// The writable object with its header, and the read-only handle to hand
/// on where one cannot be made later (see `finish`).
pub(crate) fn begin(format: u32, payload_len: u64) -> Result<(Handle, Option<Handle>)> {
    let total = HEADER_LEN
        .checked_add(payload_len)
        .ok_or_else(|| Error::InvalidArgument("startup data too large".into()))?;
    let (fd, reader) = sys::shm::create_with_reader("handoff-startup", total)
        .map_err(os("create shared memory"))?;
    let fd = Handle::from(fd);
    sys::shm::write_all_at(fd.borrow().into(), &header(format, payload_len), 0)
        .map_err(os("write startup header"))?;
    Ok((fd, reader.map(Handle::from)))
}

pub(crate) fn finish(fd: Handle, reader: Option<Handle>) -> Result<Handle> {
    match sys::shm::add_seals(fd.borrow().into(), Seals::IMMUTABLE) {
        Ok(()) => {}
        // Platforms without seals still get the data; the child is told by
        // `StartupData::open` that immutability is not enforced there.
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
        Err(e) => return Err(Error::os("seal startup data", e)),
    }
    // Hand over a read-only handle: the child can map it read-only only.
    // The writable one is dropped here, so where nothing is sealed (POSIX
    // shared memory, Windows sections) no writable handle is left.
    match reader {
        Some(reader) => Ok(reader),
        None => fd.restrict(Access::READ).or(Ok(fd)),
    }
}

/// When the pages of [`StartupData`] are faulted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Populate {
    /// As they are read (what [`StartupData::open`] does).
    #[default]
    OnRead,
    /// All at once when opened (`MAP_POPULATE`): faster when all of it
    /// will be read.
    Now,
}

/// Startup data a child received, validated and mapped read-only.
#[derive(Debug)]
pub struct StartupData {
    map: sys::shm::Mapping,
    format: u32,
    _handle: Handle,
}

impl StartupData {
    /// Validates `handle` as startup data and maps it read-only.
    ///
    /// Checks, in order, before trusting a byte: it is shared memory; it is
    /// sealed against writing, growing and shrinking (on Windows and in the
    /// portable Unix configuration, where nothing can be sealed: the handle
    /// cannot write it or map it writable); it is at
    /// least a header long; magic and version match; the header's payload
    /// length and offset describe exactly the object's size (on Windows,
    /// where a section is a whole number of pages, that size rounded up to
    /// the next page). Any failure is
    /// [`Error::BadStartupData`] naming the check (or [`Error::WrongKind`]).
    ///
    /// Pages are mapped as they are read: faulting all of them in up front
    /// (`MAP_POPULATE`) measured slower end to end, 1.30 against 1.81 GB/s
    /// for 1 GiB (`handoff-bench startup_data_1gib`).
    pub fn open(handle: Handle) -> Result<StartupData> {
        Self::open_with(handle, Populate::OnRead)
    }

    /// As [`open`](Self::open), choosing when the pages are faulted in.
    pub fn open_with(handle: Handle, populate: Populate) -> Result<StartupData> {
        let populate = populate == Populate::Now;
        let bad = |m: String| Error::BadStartupData(m);
        let size = match handle.kind()? {
            Kind::SharedMemory { size, seals } => {
                let sealed = seals.contains(Seals::WRITE | Seals::GROW | Seals::SHRINK);
                if cfg!(all(unix, not(handoff_portable))) && !sealed {
                    return Err(bad(format!(
                        "not sealed against change (seals: {seals}); its creator could still modify it"
                    )));
                }
                // POSIX shared memory has no seals: a read-only descriptor
                // stands in for them, as on Windows (a sealed memfd, where
                // the platform has them, is accepted as it is).
                if cfg!(handoff_portable) && !sealed && handle.access()?.contains(Access::WRITE) {
                    return Err(bad(format!(
                        "not sealed against change (seals: {seals}) and the descriptor can write it; without seals startup data must arrive read-only"
                    )));
                }
                if cfg!(windows) && handle.access()?.contains(Access::WRITE) {
                    return Err(bad(
                        "the handle can map the section writable; startup data must arrive read-only".into(),
                    ));
                }
                size
            }
            actual => {
                return Err(Error::WrongKind {
                    expected: crate::KindName::SharedMemory,
                    actual,
                })
            }
        };
        if size < HEADER_LEN {
            return Err(bad(format!(
                "{size} bytes is shorter than the {HEADER_LEN}-byte header"
            )));
        }
        let mut h = [0u8; HEADER_LEN as usize];
        read_exact_at(&handle, &mut h, 0)?;
        if h[0..8] != MAGIC {
            return Err(bad("wrong magic: not handoff startup data".into()));
        }
        let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(bad(format!(
                "header version {version}, this side reads {VERSION}"
            )));
        }
        let format = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes"));
        if format != FORMAT_BYTES && format != FORMAT_VALUE {
            return Err(bad(format!("unknown payload format {format}")));
        }
        let len = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
        let offset = u64::from_le_bytes(h[24..32].try_into().expect("8 bytes"));
        if offset != HEADER_LEN {
            return Err(bad(format!(
                "payload_offset {offset}, version {VERSION} puts the payload at {HEADER_LEN}"
            )));
        }
        if h[32..].iter().any(|&b| b != 0) {
            return Err(bad(
                "header bytes reserved in version 1 (32 to 63) are not zero".into(),
            ));
        }
        let total = match offset.checked_add(len) {
            Some(total) if sys::shm::size_fits(total, size) => total,
            _ => {
                return Err(bad(format!(
                "header says {len} payload bytes at offset {offset}, but the object holds {size}"
            )))
            }
        };
        let total =
            usize::try_from(total).map_err(|_| bad("too large to map on this machine".into()))?;
        let map = sys::shm::Mapping::read_only(handle.borrow().into(), total, populate)
            .map_err(os("mmap startup data"))?;
        Ok(StartupData {
            map,
            format,
            _handle: handle,
        })
    }

    /// The payload bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map.as_slice()[HEADER_LEN as usize..]
    }

    /// Decodes the payload as a `T`, borrowing from the mapping where `T`
    /// allows (`&str`, `&[u8]` with `serde_bytes`): zero-copy.
    pub fn value<'a, T: Deserialize<'a>>(&'a self) -> Result<T> {
        if self.format != FORMAT_VALUE {
            return Err(Error::BadStartupData(
                "the payload is bytes, not a value".into(),
            ));
        }
        let (value, used) = crate::channel::typed::decode_bounded(self.bytes())
            .map_err(|e| Error::BadStartupData(format!("value does not decode: {e}")))?;
        if used != self.bytes().len() {
            return Err(Error::BadStartupData(
                "trailing bytes after the value".into(),
            ));
        }
        Ok(value)
    }
}

fn read_exact_at(h: &Handle, buf: &mut [u8], offset: u64) -> Result<()> {
    sys::shm::read_exact_at(h.borrow().into(), buf, offset)
        .map_err(|e| Error::BadStartupData(format!("cannot read the header: {e}")))
}

#[cfg(all(test, windows))]
mod windows_tests {
    use super::*;

    /// Where sections cannot be sealed, a handle that could map the section
    /// writable is refused: only the read-only handle stands in for a seal.
    #[test]
    fn a_writable_section_is_refused() {
        let payload = b"abc";
        let h = Handle::from(sys::shm::create("t", HEADER_LEN + 3).unwrap());
        sys::shm::write_all_at(h.borrow().into(), &header(FORMAT_BYTES, 3), 0).unwrap();
        sys::shm::write_all_at(h.borrow().into(), payload, HEADER_LEN).unwrap();
        let ro = h.restrict(Access::READ).unwrap();
        match StartupData::open(h) {
            Err(Error::BadStartupData(m)) => assert!(m.contains("writable"), "{m}"),
            other => panic!("expected BadStartupData, got {other:?}"),
        }
        let data = StartupData::open(ro).unwrap();
        assert_eq!(data.bytes(), payload, "exactly the payload, not the page");
    }
}
