//! `libmemdesc_malloc.so`: the C `malloc` family over memdesc, for
//! `LD_PRELOAD`.
//!
//! ```text
//! cargo build --release -p memdesc-malloc
//! LD_PRELOAD=target/release/libmemdesc_malloc.so MEMDESC_STATS=1 ls -l
//! ```
//!
//! Every function keeps glibc's semantics: `malloc` sets `ENOMEM` on
//! failure; `free` preserves `errno`; `calloc` and `reallocarray` refuse a
//! product that overflows (`ENOMEM`); `realloc(NULL, n)` is `malloc(n)`,
//! `realloc(p, 0)` frees `p` and returns NULL, and a failed `realloc` leaves
//! the block as it was; `posix_memalign` returns `EINVAL` for an alignment
//! that is not a power of two multiple of `sizeof(void *)` and `ENOMEM`
//! when out of memory, leaving `errno` alone; `aligned_alloc` refuses an
//! alignment that is not a power of two (`EINVAL`, as glibc ≥ 2.38);
//! `memalign` rounds such an alignment up (as glibc); `valloc` aligns to a
//! page and `pvalloc` also rounds the size up to pages. The `__libc_*`
//! names are exported too (as mimalloc does), so code that calls glibc's
//! internal names reaches the same heap, and so is `pvalloc`, whose glibc
//! version would not come here.
//!
//! Misuse (a foreign or interior pointer, a double free that can be
//! seen, a red zone overwritten under `MEMDESC_DEBUG=1`) is reported on
//! stderr and aborts. A panic cannot unwind out of these `extern "C"`
//! functions: Rust aborts the process instead.
//!
//! Environment: `MEMDESC_STATS=1` prints a summary at exit (lines starting
//! `memdesc:`); `MEMDESC_DEBUG=1` makes every size class a debug cache.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
#![warn(missing_docs)]

use core::ffi::{c_int, c_void};
use memdesc_alloc as engine;

/// glibc's `MALLOC_ALIGNMENT` on x86_64 (`alignof(max_align_t)`).
const MIN_ALIGN: usize = 16;
const PAGE: usize = memdesc::PAGE_SIZE;

fn set_errno(value: c_int) {
    // SAFETY: glibc's errno location is this thread's, always valid.
    unsafe { *libc::__errno_location() = value };
}

fn errno() -> c_int {
    // SAFETY: as in set_errno.
    unsafe { *libc::__errno_location() }
}

/// The allocation or null with `ENOMEM`.
fn or_enomem(ptr: *mut u8) -> *mut c_void {
    if ptr.is_null() {
        set_errno(libc::ENOMEM);
    }
    ptr.cast()
}

/// Allocates `size` bytes aligned to 16; null with `ENOMEM` on failure.
/// `malloc(0)` returns a unique pointer, as glibc's does.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    or_enomem(engine::alloc(size, MIN_ALIGN))
}

/// Frees `ptr` (null does nothing), preserving `errno`; misuse aborts.
///
/// # Safety
/// 1. `ptr` is null or a live block from this allocator, given up.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // The engine's free leaves errno alone (its munmap path restores it).
    // SAFETY: duty 1 is the caller's.
    unsafe { engine::free(ptr.cast()) };
}

/// `free`, for very old programs.
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn cfree(ptr: *mut c_void) {
    // SAFETY: duty 1 is the caller's.
    unsafe { free(ptr) }
}

/// `nmemb * size` zeroed bytes; null with `ENOMEM` if the product
/// overflows or memory is exhausted.
#[no_mangle]
pub extern "C" fn calloc(nmemb: usize, size: usize) -> *mut c_void {
    match nmemb.checked_mul(size) {
        Some(bytes) => or_enomem(engine::alloc_zeroed(bytes, MIN_ALIGN)),
        None => or_enomem(core::ptr::null_mut()),
    }
}

/// Resizes `ptr` to `size` bytes: `realloc(NULL, n)` is `malloc(n)`;
/// `realloc(p, 0)` frees `p` and returns null (glibc); on failure returns
/// null with `ENOMEM` and leaves the block as it was.
///
/// # Safety
/// 1. `ptr` is null or a live block from this allocator; on success it is
///    given up for the result.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: duty 1: the caller gives the block up.
        unsafe { free(ptr) };
        return core::ptr::null_mut();
    }
    // SAFETY: duty 1 is the caller's; blocks are at least 16-aligned.
    or_enomem(unsafe { engine::realloc(ptr.cast(), size, MIN_ALIGN) })
}

/// `realloc(ptr, nmemb * size)`, refusing a product that overflows
/// (`ENOMEM`, the block unchanged).
///
/// # Safety
/// As [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, nmemb: usize, size: usize) -> *mut c_void {
    match nmemb.checked_mul(size) {
        // SAFETY: duty 1 is the caller's.
        Some(bytes) => unsafe { realloc(ptr, bytes) },
        None => or_enomem(core::ptr::null_mut()),
    }
}

/// Stores a block of `size` bytes aligned to `alignment` in `*memptr`.
/// Returns 0, `EINVAL` (alignment not a power of two multiple of
/// `sizeof(void *)`) or `ENOMEM`; `errno` is left alone.
///
/// # Safety
/// 1. `memptr` is valid for a pointer-sized write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(memptr: *mut *mut c_void, alignment: usize, size: usize) -> c_int {
    if !alignment.is_power_of_two() || alignment % size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let saved = errno();
    let ptr = engine::alloc(size, alignment.max(MIN_ALIGN));
    set_errno(saved);
    if ptr.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: duty 1.
    unsafe { memptr.write(ptr.cast()) };
    0
}

/// C11 `aligned_alloc`: null with `EINVAL` for an alignment that is not a
/// power of two, `ENOMEM` when out of memory.
#[no_mangle]
pub extern "C" fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    if !alignment.is_power_of_two() {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    or_enomem(engine::alloc(size, alignment.max(MIN_ALIGN)))
}

/// `memalign`: an alignment that is not a power of two is rounded up to
/// one (glibc); one above half the address space is `EINVAL`.
#[no_mangle]
pub extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    let Some(alignment) = alignment.max(MIN_ALIGN).checked_next_power_of_two().filter(|&a| a <= usize::MAX / 2 + 1)
    else {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    };
    or_enomem(engine::alloc(size, alignment))
}

/// `size` bytes aligned to a page.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    or_enomem(engine::alloc(size, PAGE))
}

/// `size` rounded up to whole pages (one page for 0), aligned to a page;
/// `ENOMEM` if the rounding overflows.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    match size.max(1).checked_next_multiple_of(PAGE) {
        Some(bytes) => or_enomem(engine::alloc(bytes, PAGE)),
        None => or_enomem(core::ptr::null_mut()),
    }
}

/// The usable size of the block at `ptr` (0 for null); misuse aborts.
///
/// # Safety
/// 1. `ptr` is null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    engine::usable_size(ptr.cast_const().cast())
}

/// glibc's internal name for [`malloc`].
#[no_mangle]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    malloc(size)
}

/// glibc's internal name for [`free`].
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn __libc_free(ptr: *mut c_void) {
    // SAFETY: duty 1 is the caller's.
    unsafe { free(ptr) }
}

/// glibc's internal name for [`cfree`].
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn __libc_cfree(ptr: *mut c_void) {
    // SAFETY: duty 1 is the caller's.
    unsafe { free(ptr) }
}

/// glibc's internal name for [`calloc`].
#[no_mangle]
pub extern "C" fn __libc_calloc(nmemb: usize, size: usize) -> *mut c_void {
    calloc(nmemb, size)
}

/// glibc's internal name for [`realloc`].
///
/// # Safety
/// As [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: duty 1 is the caller's.
    unsafe { realloc(ptr, size) }
}

/// glibc's internal name for [`memalign`].
#[no_mangle]
pub extern "C" fn __libc_memalign(alignment: usize, size: usize) -> *mut c_void {
    memalign(alignment, size)
}

/// glibc's internal name for [`valloc`].
#[no_mangle]
pub extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    valloc(size)
}

/// glibc's internal name for [`pvalloc`].
#[no_mangle]
pub extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    pvalloc(size)
}

/// glibc's internal name for [`posix_memalign`].
///
/// # Safety
/// As [`posix_memalign`].
#[no_mangle]
pub unsafe extern "C" fn __posix_memalign(memptr: *mut *mut c_void, alignment: usize, size: usize) -> c_int {
    // SAFETY: duty 1 is the caller's.
    unsafe { posix_memalign(memptr, alignment, size) }
}
