//! The entry points both adapters call: each enters through the guard
//! (re-entrant calls go to the bootstrap arena), makes sure the engine is
//! up and the thread has had its chance at a CPU slot, then calls the
//! engine.

use crate::engine::{self, Block, MAX_FOLIO_BYTES};
use crate::platform::{self, Binding, ThreadState};
use crate::thread;
use crate::{bootstrap, large, stats};
use core::ptr::NonNull;

pub use crate::stats::Stats;

/// A slot holder answers pcp drain requests posted to its CPU every this
/// many allocations, even if it allocates no frames meanwhile (its objects
/// come from the sheaves), so a drainer under memory pressure does not wait
/// for it.
const ANSWER_PERIOD: u64 = 1024;

/// Allocates `size` bytes aligned to `align` (a power of two; at least 16
/// is given anyway); null when memory is exhausted. `size` 0 is served as 1.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    platform::with_thread(|t| alloc_as(t, size, align))
}

#[inline(always)]
fn alloc_as(thread: &ThreadState, size: usize, align: usize) -> *mut u8 {
    alloc_fresh(thread, size, align).0
}

/// [`alloc_as`], also saying whether the block is known zero (a new map,
/// or the bootstrap arena's never-used bytes).
#[inline(always)]
fn alloc_fresh(thread: &ThreadState, size: usize, align: usize) -> (*mut u8, bool) {
    // Read before entering: only this thread changes it (claim, exit
    // hook), and the entry's fences would make the compiler read it again.
    let binding = thread.binding();
    let Some(guard) = thread::enter(thread) else { return (bootstrap_alloc(size.max(1), align), true) };
    let Some(engine) = engine::get() else { return (core::ptr::null_mut(), false) };
    let binding = match binding {
        Binding::Slot(slot) => Binding::Slot(slot),
        _ => claim(&guard),
    };
    // SAFETY: duty 1 of Engine::alloc: our binding, read under the guard.
    let (ptr, fresh) = unsafe { engine.alloc(binding, size.max(1), align) };
    if !ptr.is_null() {
        match binding {
            // The slot's allocation count doubles as the drain period.
            Binding::Slot(slot) => {
                if stats::count_alloc_on(slot) % ANSWER_PERIOD == 0 {
                    answer_drain(engine);
                }
            }
            _ => stats::count_alloc(binding),
        }
    }
    (ptr, fresh)
}

/// A re-entrant allocation, from the bootstrap arena.
#[cold]
#[inline(never)]
fn bootstrap_alloc(size: usize, align: usize) -> *mut u8 {
    bootstrap::alloc(size, align)
}

/// A thread without a slot: claims one if it is time, and returns its
/// binding now.
#[cold]
#[inline(never)]
fn claim(guard: &thread::Guard<'_>) -> Binding {
    guard.claim();
    guard.binding()
}

#[cold]
#[inline(never)]
fn answer_drain(engine: &engine::Engine) {
    engine.node.answer_drain();
}

/// [`alloc`], zeroed.
pub fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    let size = size.max(1);
    platform::with_thread(|t| alloc_zeroed_as(t, size, align))
}

fn alloc_zeroed_as(thread: &ThreadState, size: usize, align: usize) -> *mut u8 {
    let (ptr, fresh) = alloc_fresh(thread, size, align);
    if !ptr.is_null() && !fresh {
        // SAFETY: `ptr` is a new block of at least `size` bytes, ours
        // until we return it.
        unsafe { ptr.write_bytes(0, size) };
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
    // SAFETY: duty 1 is the caller's.
    platform::with_thread(|t| unsafe { free_as_thread(t, op, ptr) })
}

/// [`free_as`] for `thread`.
///
/// # Safety
/// As [`free`].
#[inline(always)]
unsafe fn free_as_thread(thread: &ThreadState, op: &str, ptr: NonNull<u8>) {
    // Read before entering, as in alloc_as.
    let binding = thread.binding();
    let guard = thread::enter(thread);
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
    // A re-entrant free takes the locked path: its thread may be claiming
    // or releasing its slot.
    let binding = if guard.is_some() { binding } else { Binding::Unclaimed };
    // SAFETY: duty 1 is the caller's; duty 2: our binding, read under the
    // guard (or none).
    unsafe { engine.free(binding, op, ptr) };
    stats::count_free(binding);
    drop(guard);
}

/// The usable size of the block at `ptr` (0 for null); misuse aborts.
pub fn usable_size(ptr: *const u8) -> usize {
    let Some(ptr) = NonNull::new(ptr.cast_mut()) else { return 0 };
    platform::with_thread(|t| usable_size_as(t, ptr))
}

fn usable_size_as(thread: &ThreadState, ptr: NonNull<u8>) -> usize {
    let _guard = thread::enter(thread);
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
    // Err: the call's result, decided while inside.
    let usable = platform::with_thread(|t| -> Result<usize, *mut u8> {
        let guard = thread::enter(t);
        if guard.is_none() && bootstrap::contains(old.as_ptr() as usize) {
            // SAFETY: a bootstrap block (re-entrant realloc of one).
            let usable = unsafe { bootstrap::size_of(old.as_ptr()) };
            if size <= usable {
                return Err(old.as_ptr());
            }
            let new = bootstrap::alloc(size, align);
            if !new.is_null() {
                // SAFETY: both blocks hold at least `usable` bytes and are
                // disjoint (the bump pointer never hands bytes out twice).
                unsafe { core::ptr::copy_nonoverlapping(old.as_ptr(), new, usable) };
            }
            return Err(new);
        }
        let Some(engine) = engine::ready() else { return Err(core::ptr::null_mut()) };
        match engine.check("realloc", old) {
            Block::Span(n) | Block::Bootstrap(n) => Ok(n),
            // A direct map grows or shrinks in place or moves, by mremap.
            Block::Map(_) if align <= memdesc::PAGE_SIZE && size > MAX_FOLIO_BYTES => {
                Err(large::remap(old.as_ptr() as usize, size))
            }
            Block::Map(n) => Ok(n),
        }
    });
    let usable = match usable {
        Ok(n) => n,
        Err(result) => return result,
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
