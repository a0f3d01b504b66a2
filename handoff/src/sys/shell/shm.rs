//! No shared memory.

use std::io;

use super::{BorrowedRaw, Never, OwnedRaw};
use crate::Seals;

pub(crate) const CAN_GROW: bool = false;

no_backend_fns! {
    fn create_with_reader(_name: &str, _len: u64) -> io::Result<(OwnedRaw, Option<OwnedRaw>)>;
    fn len(_b: BorrowedRaw<'_>) -> io::Result<u64>;
    fn write_all_at(_b: BorrowedRaw<'_>, _bytes: &[u8], _offset: u64) -> io::Result<()>;
    fn read(_b: BorrowedRaw<'_>, _buf: &mut [u8]) -> io::Result<usize>;
    fn read_exact_at(_b: BorrowedRaw<'_>, _buf: &mut [u8], _offset: u64) -> io::Result<()>;
    fn copy_in_kernel(
        _src: BorrowedRaw<'_>,
        _dst: BorrowedRaw<'_>,
        _offset: u64,
        _max: u64,
    ) -> io::Result<u64>;
    fn add_seals(_b: BorrowedRaw<'_>, _seals: Seals) -> io::Result<()>;
}

pub(crate) fn size_fits(wanted: u64, size: u64) -> bool {
    wanted == size
}

/// There are no mappings.
#[derive(Debug)]
pub(crate) struct Mapping(Never);

impl Mapping {
    no_backend_fns! {
        fn read_only(_b: BorrowedRaw<'_>, _len: usize, _populate: bool) -> io::Result<Mapping>;
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self.0 {}
    }
}
