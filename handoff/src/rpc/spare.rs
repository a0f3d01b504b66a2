//! Spare frame buffers, kept per thread, so that a call in the steady state
//! allocates no frame, receive buffer or handle list on either side.
//!
//! Calls are small and frequent: allocating and freeing three or four
//! buffers per call on each side was a measurable part of a call's cost
//! (BENCHMARKS.md, RPC sections). A buffer comes back here when what owns
//! it is dropped, on whatever thread that happens; each thread keeps a few,
//! and none larger than [`KEEP_BYTES`], so one large message does not stay
//! allocated.

use std::cell::Cell;

use crate::Handle;

/// The largest byte buffer kept; larger ones are freed.
const KEEP_BYTES: usize = 16 << 10;

/// The largest handle list kept; longer ones are freed.
const KEEP_HANDLES: usize = 64;

/// The capacity a new byte buffer gets: a header and a small body.
const NEW_BYTES: usize = 256;

// Two byte buffers, because a call has two in use at once on either side
// (the frame it sends and the one it receives), and one handle list. Plain
// cells: taking and giving back is a few moves, cheaper than the
// allocation it saves (a growable pool behind a `RefCell` was not).
thread_local! {
    static BYTES: [Cell<Vec<u8>>; 2] = const { [Cell::new(Vec::new()), Cell::new(Vec::new())] };
    static HANDLES: Cell<Vec<Handle>> = const { Cell::new(Vec::new()) };
}

/// An empty byte buffer with room for at least [`NEW_BYTES`].
pub(crate) fn bytes() -> Vec<u8> {
    let spare = BYTES
        .try_with(|slots| {
            let first = slots[0].take();
            if first.capacity() > 0 {
                first
            } else {
                slots[1].take()
            }
        })
        .unwrap_or_default();
    if spare.capacity() > 0 {
        spare
    } else {
        Vec::with_capacity(NEW_BYTES)
    }
}

/// An empty handle list.
pub(crate) fn handles() -> Vec<Handle> {
    HANDLES.try_with(Cell::take).unwrap_or_default()
}

/// Keeps `buf` for a later [`bytes`] if it is worth keeping.
pub(crate) fn give_bytes(mut buf: Vec<u8>) {
    if buf.capacity() < NEW_BYTES || buf.capacity() > KEEP_BYTES {
        return;
    }
    buf.clear();
    // During thread teardown the buffer is simply freed; so is whatever a
    // full pair of slots pushes out.
    let _ = BYTES.try_with(|slots| {
        let pushed_out = slots[0].replace(buf);
        if pushed_out.capacity() > 0 {
            drop(slots[1].replace(pushed_out));
        }
    });
}

/// Keeps a received message's handle slots for a later [`handles`], after
/// closing every handle still in them.
pub(crate) fn give_slots(mut slots: Vec<Option<Handle>>) {
    if slots.capacity() == 0 || slots.capacity() > KEEP_HANDLES {
        return;
    }
    slots.clear();
    // `Option<Handle>` and `Handle` have the same layout, so this collects
    // in place and keeps the allocation; `flatten` would not (it holds
    // nothing now either way).
    #[allow(clippy::filter_map_identity)]
    let list: Vec<Handle> = slots.into_iter().filter_map(|slot| slot).collect();
    let _ = HANDLES.try_with(|spare| drop(spare.replace(list)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_with_their_room() {
        let mut b = bytes();
        b.extend_from_slice(b"leftover");
        let at = b.as_ptr();
        give_bytes(b);
        let again = bytes();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), at);
        give_bytes(again);
    }

    #[test]
    fn slots_come_back_as_an_empty_list() {
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        let mut slots: Vec<Option<Handle>> = Vec::with_capacity(4);
        slots.push(Some(Handle::from(file)));
        let at = slots.as_ptr().cast::<u8>();
        give_slots(slots);
        let list = handles();
        assert!(list.is_empty());
        assert_eq!(list.as_ptr().cast::<u8>(), at);
        assert!(list.capacity() >= 4);
    }

    #[test]
    fn large_buffers_are_freed() {
        give_bytes(Vec::with_capacity(KEEP_BYTES + 1));
        assert!(bytes().capacity() <= KEEP_BYTES);
    }
}
