//! Intrusive lists of free blocks, linked through descriptor owner words.
//!
//! A block's head descriptor holds the links as pfn offsets from the memory
//! map's base: owner word 0 is `next`, owner word 1 is `prev` ([`NIL`] ends
//! the list). Doubly linked, so a buddy found by arithmetic is unlinked in
//! O(1) when it merges. The lists own their frames: every function takes
//! `&mut` of the list heads, which only the holder of the owning lock (zone
//! or per-CPU) can have, and that is the safety argument for the owner-word
//! accesses.

use crate::memmap::{MemMap, Pfn};

/// The end of a list.
pub(crate) const NIL: u32 = u32::MAX;

const NEXT: usize = 0;
const PREV: usize = 1;

/// A list head: the first block's offset, and the list length.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FreeList {
    first: u32,
    len: u32,
}

impl FreeList {
    pub(crate) const fn new() -> Self {
        Self { first: NIL, len: 0 }
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first == NIL
    }

    /// Pushes the block headed at `pfn` at the front.
    ///
    /// The caller owns the block (it just took it off another list or out
    /// of a freed folio) and holds the lock that owns this list.
    pub(crate) fn push(&mut self, map: &MemMap<'_>, pfn: Pfn) {
        let index = offset(map, pfn);
        let page = map.page_of(pfn);
        // SAFETY: duty 1 of set_owner_word: the block is owned by the caller,
        // who holds this list's lock (`&mut self` proves it), so no one else
        // touches its owner words.
        unsafe {
            page.set_owner_word(NEXT, self.first as u64);
            page.set_owner_word(PREV, NIL as u64);
        }
        if self.first != NIL {
            // SAFETY: the old first block is on this list, owned through the
            // same lock.
            unsafe { map.page_of(at(map, self.first)).set_owner_word(PREV, index as u64) };
        }
        self.first = index;
        self.len += 1;
    }

    /// The front block, left on the list.
    pub(crate) fn first(&self, map: &MemMap<'_>) -> Option<Pfn> {
        (self.first != NIL).then(|| at(map, self.first))
    }

    /// Pops the front block.
    pub(crate) fn pop(&mut self, map: &MemMap<'_>) -> Option<Pfn> {
        if self.first == NIL {
            return None;
        }
        let pfn = at(map, self.first);
        self.remove(map, pfn);
        Some(pfn)
    }

    /// Unlinks the block headed at `pfn`, which is on this list.
    pub(crate) fn remove(&mut self, map: &MemMap<'_>, pfn: Pfn) {
        let page = map.page_of(pfn);
        // SAFETY: the block is on this list, owned through its lock (`&mut
        // self`); no one else reads or writes its links.
        let (next, prev) = unsafe { (page.owner_word(NEXT) as u32, page.owner_word(PREV) as u32) };
        if prev == NIL {
            debug_assert_eq!(self.first, offset(map, pfn));
            self.first = next;
        } else {
            // SAFETY: `prev` is on this list (same lock).
            unsafe { map.page_of(at(map, prev)).set_owner_word(NEXT, next as u64) };
        }
        if next != NIL {
            // SAFETY: `next` is on this list (same lock).
            unsafe { map.page_of(at(map, next)).set_owner_word(PREV, prev as u64) };
        }
        self.len -= 1;
    }

    /// Calls `f` on every block (for audits and reports). Returns `false`
    /// if the links do not end within `len` blocks (a corrupt or cyclic
    /// list), so an audit reports corruption instead of looping forever.
    pub(crate) fn for_each(&self, map: &MemMap<'_>, mut f: impl FnMut(Pfn)) -> bool {
        let mut cursor = self.first;
        for _ in 0..self.len {
            if cursor == NIL {
                return false;
            }
            let pfn = at(map, cursor);
            if map.page(pfn).is_none() {
                return false;
            }
            // SAFETY: the caller holds this list's lock for the whole walk
            // (it borrowed `self` from the guard), so the links are stable.
            cursor = unsafe { map.page_of(pfn).owner_word(NEXT) } as u32;
            f(pfn);
        }
        cursor == NIL
    }
}

#[inline(always)]
fn offset(map: &MemMap<'_>, pfn: Pfn) -> u32 {
    (pfn.0 - map.base_pfn().0) as u32
}

#[inline(always)]
fn at(map: &MemMap<'_>, offset: u32) -> Pfn {
    map.base_pfn().add(offset as u64)
}
