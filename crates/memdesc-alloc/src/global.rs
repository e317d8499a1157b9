//! The `GlobalAlloc` adapter.

use core::alloc::{GlobalAlloc, Layout};

/// memdesc as Rust's global allocator:
/// `#[global_allocator] static A: MemdescAlloc = MemdescAlloc;`
///
/// Alignment is honoured up to a page by the size classes, beyond that by
/// folio order (up to 4 MiB) or an aligned direct map. `realloc` stays in
/// place when the usable size suffices.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemdescAlloc;

// SAFETY: every block returned is live until dealloc'd, holds at least
// `layout.size()` bytes, is aligned to `layout.align()` (classes, folios
// and maps as documented above), and is never handed out twice.
unsafe impl GlobalAlloc for MemdescAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        crate::api::alloc(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        crate::api::alloc_zeroed(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: GlobalAlloc's contract: `ptr` is a live block of ours
        // that the caller gives up.
        unsafe { crate::api::free(ptr) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract: `ptr` is a live block of ours
        // aligned to `layout.align()`, given up on success.
        unsafe { crate::api::realloc(ptr, new_size, layout.align()) }
    }
}
