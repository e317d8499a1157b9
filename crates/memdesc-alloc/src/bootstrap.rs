//! The bootstrap arena: a static bump allocator for re-entrant calls (libc
//! calling `malloc` from inside the allocator's own initialisation or hooks,
//! a panic message). Its memory is never reused: frees are ignored, which
//! is why it serves only what cannot be served otherwise.
//!
//! Each block has a 16-byte header holding its size, so `realloc` and
//! `malloc_usable_size` work on bootstrap blocks too.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

const ARENA_BYTES: usize = 1 << 20;
const HEADER: usize = 16;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: disjoint blocks are handed out by the atomic bump pointer; each
// block's bytes belong to the one caller that got it.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));
/// Bytes handed out so far.
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn base() -> usize {
    ARENA.0.get() as usize
}

/// Whether `addr` is a bootstrap block.
#[inline(always)]
pub(crate) fn contains(addr: usize) -> bool {
    addr.wrapping_sub(base()) < ARENA_BYTES
}

/// A block of `size` bytes aligned to `align` (a power of two), or null
/// when the arena is used up.
pub(crate) fn alloc(size: usize, align: usize) -> *mut u8 {
    let align = align.max(HEADER);
    // Relaxed: the CAS below decides; nothing is published through NEXT.
    let mut next = NEXT.load(Ordering::Relaxed);
    loop {
        let start = (base() + next + HEADER).next_multiple_of(align) - base();
        let Some(end) = start.checked_add(size).filter(|&e| e <= ARENA_BYTES) else {
            return core::ptr::null_mut();
        };
        // Relaxed: the bump pointer only partitions the arena; the block
        // is written by its owner after the CAS.
        match NEXT.compare_exchange_weak(next, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                let block = (base() + start) as *mut u8;
                // SAFETY: the header's 8 bytes lie in our block's padding,
                // inside the arena, aligned to 8 (start is 16-aligned).
                unsafe { block.sub(HEADER).cast::<usize>().write(size) };
                return block;
            }
            Err(actual) => next = actual,
        }
    }
}

/// The size a bootstrap block was allocated with.
///
/// # Safety
/// 1. `ptr` is a block [`alloc`] returned.
pub(crate) unsafe fn size_of(ptr: *const u8) -> usize {
    // SAFETY: duty 1: `alloc` wrote the size in the header before `ptr`.
    unsafe { ptr.sub(HEADER).cast::<usize>().read() }
}
