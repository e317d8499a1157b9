//! The entry points both adapters call: each enters through the guard
//! (re-entrant calls go to the bootstrap arena), makes sure the engine is
//! up and the thread has had its chance at a CPU slot, then calls the
//! engine.

use crate::engine::{self, Block};
use crate::platform;
use crate::thread;
use crate::{bootstrap, large, stats};
use core::ptr::NonNull;

pub use crate::stats::Stats;

/// Allocates `size` bytes aligned to `align` (a power of two; at least 16
/// is given anyway); null when memory is exhausted. `size` 0 is served as 1.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    let Some(guard) = thread::enter() else { return bootstrap::alloc(size.max(1), align) };
    let Some(engine) = engine::get() else { return core::ptr::null_mut() };
    guard.claim();
    let (ptr, _) = engine.alloc(size.max(1), align);
    if !ptr.is_null() {
        stats::count_alloc(platform::binding());
    }
    ptr
}

/// [`alloc`], zeroed.
pub fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    let size = size.max(1);
    let Some(guard) = thread::enter() else { return bootstrap::alloc(size, align) };
    let Some(engine) = engine::get() else { return core::ptr::null_mut() };
    guard.claim();
    let (ptr, fresh) = engine.alloc(size, align);
    if !ptr.is_null() {
        stats::count_alloc(platform::binding());
        if !fresh {
            // SAFETY: `ptr` is a new block of at least `size` bytes.
            unsafe { ptr.write_bytes(0, size) };
        }
    }
    ptr
}

/// Frees `ptr` (null does nothing). A pointer this allocator did not hand
/// out, or one freed already where that can be seen, is reported on stderr
/// and the process aborts.
///
/// # Safety
/// 1. If `ptr` is a live allocation of this allocator, the caller gives it
///    up: no access after.
pub unsafe fn free(ptr: *mut u8) {
    // SAFETY: duty 1 is the caller's.
    unsafe { free_as("free", ptr) }
}

/// [`free`], reporting misuse as `op`.
///
/// # Safety
/// As [`free`].
pub(crate) unsafe fn free_as(op: &str, ptr: *mut u8) {
    let Some(ptr) = NonNull::new(ptr) else { return };
    let guard = thread::enter();
    if guard.is_none() && bootstrap::contains(ptr.as_ptr() as usize) {
        return;
    }
    // A re-entrant free of an engine block (libc freeing during our own
    // hooks) goes to the engine directly: no core lock is held there.
    let Some(engine) = engine::ready() else {
        if bootstrap::contains(ptr.as_ptr() as usize) {
            return;
        }
        crate::report::misuse(op, ptr.as_ptr() as usize, crate::report::Misuse::Foreign, &"allocator not initialised")
    };
    // SAFETY: duty 1 is the caller's.
    unsafe { engine.free(op, ptr) };
    stats::count_free(platform::binding());
    drop(guard);
}

/// The usable size of the block at `ptr` (0 for null); misuse aborts.
pub fn usable_size(ptr: *const u8) -> usize {
    let Some(ptr) = NonNull::new(ptr.cast_mut()) else { return 0 };
    let _guard = thread::enter();
    if bootstrap::contains(ptr.as_ptr() as usize) {
        // SAFETY: duty 1 of size_of: the program's pointer into the arena.
        return unsafe { bootstrap::size_of(ptr.as_ptr()) };
    }
    match engine::ready() {
        Some(engine) => match engine.check("malloc_usable_size", ptr) {
            Block::Span(n) | Block::Bootstrap(n) | Block::Map(n) => n,
        },
        None => crate::report::misuse(
            "malloc_usable_size",
            ptr.as_ptr() as usize,
            crate::report::Misuse::Foreign,
            &"allocator not initialised",
        ),
    }
}

/// Resizes the block at `ptr` to `size` bytes aligned to `align`: in place
/// when its usable size suffices and it would not waste more than half,
/// else by a new block, a copy and a free (a direct map is remapped). Null
/// `ptr` allocates. On failure returns null and leaves the block as it was.
/// `size` 0 is served as 1 (the C adapter frees instead, as glibc does).
///
/// # Safety
/// 1. `ptr` is null or a live allocation of this allocator aligned to
///    `align`; on success the caller gives it up for the result.
pub unsafe fn realloc(ptr: *mut u8, size: usize, align: usize) -> *mut u8 {
    let Some(old) = NonNull::new(ptr) else { return alloc(size, align) };
    let size = size.max(1);
    let usable = {
        let guard = thread::enter();
        if guard.is_none() && bootstrap::contains(old.as_ptr() as usize) {
            // SAFETY: a bootstrap block (re-entrant realloc of one).
            let usable = unsafe { bootstrap::size_of(old.as_ptr()) };
            if size <= usable {
                return old.as_ptr();
            }
            let new = bootstrap::alloc(size, align);
            if !new.is_null() {
                // SAFETY: both blocks hold at least `usable` bytes and are
                // disjoint (the bump pointer never hands bytes out twice).
                unsafe { core::ptr::copy_nonoverlapping(old.as_ptr(), new, usable) };
            }
            return new;
        }
        let Some(engine) = engine::ready() else { return core::ptr::null_mut() };
        match engine.check("realloc", old) {
            Block::Span(n) => n,
            Block::Bootstrap(n) => n,
            Block::Map(n) => {
                if align <= memdesc::PAGE_SIZE && size > n / 2 {
                    let moved = large::remap(old.as_ptr() as usize, size);
                    if !moved.is_null() {
                        return moved;
                    }
                    return core::ptr::null_mut();
                }
                n
            }
        }
    };
    if size <= usable && (size > usable / 2 || usable <= 32) && !bootstrap::contains(old.as_ptr() as usize) {
        return old.as_ptr();
    }
    let new = alloc(size, align);
    if new.is_null() {
        return new;
    }
    // SAFETY: the old block holds `usable` bytes, the new one `size`; they
    // are distinct live blocks.
    unsafe { core::ptr::copy_nonoverlapping(old.as_ptr(), new, usable.min(size)) };
    // SAFETY: duty 1: the caller gives the old block up on success.
    unsafe { free_as("realloc", old.as_ptr()) };
    new
}
