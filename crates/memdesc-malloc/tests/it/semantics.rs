//! glibc's semantics, one rule per test.

use crate::{errno, set_errno};
use core::ffi::c_void;
use memdesc_malloc::*;

const PAGE: usize = 4096;

fn fill(p: *mut c_void, n: usize, byte: u8) {
    // SAFETY: the callers pass a live block of at least n bytes.
    unsafe { p.cast::<u8>().write_bytes(byte, n) };
}

fn all(p: *const c_void, n: usize, byte: u8) -> bool {
    // SAFETY: the callers pass a live block of at least n bytes.
    unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) }.iter().all(|&b| b == byte)
}

#[test]
fn malloc_gives_distinct_blocks_aligned_to_16_with_their_usable_size() {
    let mut blocks = Vec::new();
    for size in (0..5000).step_by(7).chain([20_000, 100_000, 1 << 20, 5 << 20]) {
        let p = malloc(size);
        assert!(!p.is_null(), "malloc({size})");
        assert_eq!(p as usize % 16, 0, "malloc({size}) not 16-aligned");
        // SAFETY: a live block.
        let usable = unsafe { malloc_usable_size(p) };
        assert!(usable >= size.max(1), "malloc({size}): usable {usable}");
        fill(p, usable, size as u8);
        blocks.push((p, usable, size as u8));
    }
    for &(p, usable, byte) in &blocks {
        assert!(all(p, usable, byte), "a block was overwritten by another");
        // SAFETY: live, freed once.
        unsafe { free(p) };
    }
}

#[test]
fn malloc_zero_returns_a_unique_pointer() {
    let (a, b) = (malloc(0), malloc(0));
    assert!(!a.is_null() && !b.is_null() && a != b);
    // SAFETY: live blocks, freed once.
    unsafe { (free(a), free(b)) };
}

#[test]
fn malloc_failure_returns_null_with_enomem() {
    for size in [usize::MAX, usize::MAX / 2, 1 << 55] {
        set_errno(0);
        assert!(malloc(size).is_null(), "malloc({size:#x})");
        assert_eq!(errno(), libc::ENOMEM, "malloc({size:#x})");
    }
}

#[test]
fn free_of_null_does_nothing_and_free_preserves_errno() {
    set_errno(1234);
    // SAFETY: null is allowed.
    unsafe { free(core::ptr::null_mut()) };
    assert_eq!(errno(), 1234);
    for size in [10, 3000, 300_000, 6 << 20] {
        let p = malloc(size);
        set_errno(4321);
        // SAFETY: live, freed once.
        unsafe { free(p) };
        assert_eq!(errno(), 4321, "free of a {size}-byte block changed errno");
    }
}

#[test]
fn calloc_zeroes_reused_memory_and_refuses_overflow() {
    for size in [16, 200, 5000, 70_000, 5 << 20] {
        let dirty = malloc(size);
        fill(dirty, size, 0xee);
        // SAFETY: live, freed once.
        unsafe { free(dirty) };
        let p = calloc(1, size);
        assert!(all(p, size, 0), "calloc(1, {size}) not zeroed");
        // SAFETY: live, freed once.
        unsafe { free(p) };
    }
    set_errno(0);
    assert!(calloc(usize::MAX / 2, 3).is_null());
    assert_eq!(errno(), libc::ENOMEM);
    set_errno(0);
    assert!(calloc(1 << 33, 1 << 33).is_null());
    assert_eq!(errno(), libc::ENOMEM);
    let p = calloc(0, 10);
    assert!(!p.is_null(), "calloc(0, n) returns a unique pointer as malloc(0)");
    // SAFETY: live, freed once.
    unsafe { free(p) };
}

#[test]
fn realloc_of_null_is_malloc_and_to_zero_frees() {
    // SAFETY: null ptr is allowed; the result is live.
    let p = unsafe { realloc(core::ptr::null_mut(), 100) };
    assert!(!p.is_null());
    let allocs = memdesc_alloc::snapshot().frees;
    // SAFETY: live; size 0 frees it.
    let q = unsafe { realloc(p, 0) };
    assert!(q.is_null(), "realloc(p, 0) returns NULL as glibc");
    assert!(memdesc_alloc::snapshot().frees > allocs, "realloc(p, 0) did not free");
}

#[test]
fn realloc_keeps_the_contents_across_classes_folios_and_maps() {
    let sizes = [1, 24, 100, 1000, 16_000, 17_000, 200_000, 3 << 20, 5 << 20, 20 << 20, 6 << 20, 50_000, 40, 8];
    let mut p = malloc(sizes[0]);
    fill(p, 1, 0x11);
    let mut have = 1;
    for &size in &sizes[1..] {
        // SAFETY: a live block, given up for the result.
        let q = unsafe { realloc(p, size) };
        assert!(!q.is_null(), "realloc to {size}");
        let kept = have.min(size);
        assert!(all(q, kept, 0x11), "realloc to {size} lost the contents");
        fill(q, size, 0x11);
        p = q;
        have = size;
    }
    // SAFETY: live, freed once.
    unsafe { free(p) };
}

#[test]
fn realloc_failure_leaves_the_block_and_sets_enomem() {
    let p = malloc(300);
    fill(p, 300, 0x5a);
    for size in [usize::MAX, 1 << 55] {
        set_errno(0);
        // SAFETY: a live block; on failure it stays ours.
        let q = unsafe { realloc(p, size) };
        assert!(q.is_null());
        assert_eq!(errno(), libc::ENOMEM);
        assert!(all(p, 300, 0x5a), "a failed realloc changed the block");
    }
    // SAFETY: still live, freed once.
    unsafe { free(p) };
}

#[test]
fn realloc_in_place_when_the_usable_size_suffices() {
    let p = malloc(100);
    // SAFETY: live.
    let usable = unsafe { malloc_usable_size(p) };
    // SAFETY: live; within its usable size.
    let q = unsafe { realloc(p, usable) };
    assert_eq!(p, q);
    // SAFETY: live, freed once.
    unsafe { free(q) };
}

#[test]
fn reallocarray_refuses_overflow_and_keeps_the_block() {
    let p = malloc(64);
    fill(p, 64, 3);
    set_errno(0);
    // SAFETY: a live block; on failure it stays ours.
    assert!(unsafe { reallocarray(p, usize::MAX / 4, 8) }.is_null());
    assert_eq!(errno(), libc::ENOMEM);
    assert!(all(p, 64, 3));
    // SAFETY: live, given up for the result.
    let q = unsafe { reallocarray(p, 100, 8) };
    assert!(!q.is_null() && all(q, 64, 3));
    // SAFETY: live, freed once.
    unsafe { free(q) };
}

#[test]
fn posix_memalign_checks_the_alignment_and_returns_the_error() {
    let mut out: *mut c_void = core::ptr::null_mut();
    for bad in [0, 1, 2, 4, 12, 24, 48, 100] {
        set_errno(77);
        // SAFETY: `out` is a valid out-pointer.
        assert_eq!(unsafe { posix_memalign(&mut out, bad, 10) }, libc::EINVAL, "alignment {bad}");
        assert_eq!(errno(), 77, "posix_memalign changed errno");
    }
    for shift in 3..=23 {
        let align = 1usize << shift;
        for size in [0, 1, 100, 5000, 70_000] {
            // SAFETY: as above.
            assert_eq!(unsafe { posix_memalign(&mut out, align, size) }, 0, "align {align} size {size}");
            assert!(!out.is_null() && out as usize % align == 0, "align {align} size {size}: {out:?}");
            fill(out, size, 1);
            // SAFETY: live, freed once.
            unsafe { free(out) };
        }
    }
    set_errno(77);
    // SAFETY: as above.
    assert_eq!(unsafe { posix_memalign(&mut out, 64, usize::MAX - 4096) }, libc::ENOMEM);
    assert_eq!(errno(), 77);
}

#[test]
fn aligned_alloc_refuses_alignments_that_are_not_powers_of_two() {
    set_errno(0);
    assert!(aligned_alloc(24, 48).is_null());
    assert_eq!(errno(), libc::EINVAL);
    for align in [1, 8, 16, 64, 4096, 1 << 16] {
        let p = aligned_alloc(align, align * 3);
        assert!(!p.is_null() && p as usize % align == 0, "aligned_alloc({align})");
        // SAFETY: live, freed once.
        unsafe { free(p) };
    }
}

#[test]
fn memalign_rounds_the_alignment_up_to_a_power_of_two() {
    let p = memalign(48, 10);
    assert!(!p.is_null() && p as usize % 64 == 0, "memalign(48) gives 64-byte alignment");
    // SAFETY: live, freed once.
    unsafe { free(p) };
    set_errno(0);
    assert!(memalign(usize::MAX / 2 + 2, 10).is_null());
    assert_eq!(errno(), libc::EINVAL);
    let q = __libc_memalign(8192, 100);
    assert!(!q.is_null() && q as usize % 8192 == 0);
    // SAFETY: live, freed once.
    unsafe { __libc_free(q) };
}

#[test]
fn valloc_and_pvalloc_align_to_a_page_and_pvalloc_rounds_the_size() {
    let v = valloc(100);
    assert_eq!(v as usize % PAGE, 0);
    let p = pvalloc(100);
    assert_eq!(p as usize % PAGE, 0);
    // SAFETY: live.
    assert!(unsafe { malloc_usable_size(p) } >= PAGE, "pvalloc(100) holds a whole page");
    fill(p, PAGE, 2);
    let z = pvalloc(0);
    assert!(!z.is_null() && z as usize % PAGE == 0);
    // SAFETY: live.
    assert!(unsafe { malloc_usable_size(z) } >= PAGE);
    set_errno(0);
    assert!(pvalloc(usize::MAX - 10).is_null());
    assert_eq!(errno(), libc::ENOMEM);
    // SAFETY: live, freed once each.
    unsafe { (free(v), free(p), cfree(z)) };
}

#[test]
fn malloc_usable_size_of_null_is_zero() {
    // SAFETY: null is allowed.
    assert_eq!(unsafe { malloc_usable_size(core::ptr::null_mut()) }, 0);
}

#[test]
fn the_libc_names_reach_the_same_heap() {
    let p = __libc_malloc(40);
    let q = __libc_calloc(4, 10);
    assert!(all(q, 40, 0));
    // SAFETY: live blocks from this heap, given up.
    let r = unsafe { __libc_realloc(p, 4000) };
    // SAFETY: as above.
    unsafe { (free(r), __libc_free(q)) };
    let v = __libc_valloc(10);
    let w = __libc_pvalloc(10);
    let mut x = core::ptr::null_mut();
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { __posix_memalign(&mut x, 32, 10) }, 0);
    // SAFETY: live blocks, freed once.
    unsafe { (__libc_cfree(v), free(w), free(x)) };
}
