//! The user-space allocators the slab goals (S1–S3) compare with, called
//! through [`GlobalAlloc`] in this process: mimalloc (the `mimalloc` crate,
//! its C library built from source) and glibc's malloc (std's [`System`]
//! allocator, which calls `malloc` and `free` for alignments up to 16).
//! Neither is the process's global allocator: each is called directly, on
//! the same object size and pattern as ours.
//!
//! `GlobalAlloc` calls are `unsafe`, so this module holds `unsafe` blocks:
//! each frees exactly the blocks the same loop allocated, once, with their
//! layout.
#![deny(unsafe_op_in_unsafe_fn)]

use crate::harness::{run_threads, time_loop};
use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

/// A peer allocator.
#[derive(Clone, Copy, Debug)]
pub enum Malloc {
    /// mimalloc 2.x through the `mimalloc` crate.
    Mimalloc,
    /// glibc's `malloc`/`free` through std's `System`.
    Glibc,
}

/// The layout of every block: `size` bytes aligned to 8 (what kmalloc and
/// our cache are asked for; both mallocs give at least 16).
fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("a small power-of-two alignment")
}

/// Alloc + free pairs of `size`-byte blocks.
pub fn pair_loop(peer: Malloc, size: usize, iters: u64) -> Duration {
    match peer {
        Malloc::Mimalloc => pair_on(&MiMalloc, layout(size), iters),
        Malloc::Glibc => pair_on(&System, layout(size), iters),
    }
}

/// One symbol per peer (`pair_on::<MiMalloc>`, `pair_on::<System>`), so
/// callgrind counts each alone.
#[inline(never)]
fn pair_on(a: &impl GlobalAlloc, layout: Layout, iters: u64) -> Duration {
    // One block stays live around the loop, as in S1 (ours holds one
    // object too): the pair never empties its page, whose retirement is
    // not what a hot pair measures.
    // SAFETY: `layout` has a non-zero size.
    let held = unsafe { a.alloc(layout) };
    assert!(!held.is_null(), "the peer ran out of memory");
    let elapsed = time_loop(iters, || {
        // SAFETY: `layout` has a non-zero size.
        let block = unsafe { a.alloc(layout) };
        assert!(!block.is_null(), "the peer ran out of memory");
        // SAFETY: `block` was just allocated by `a` with `layout`, and is
        // freed once. `black_box` keeps the compiler from pairing the two
        // calls away (it knows malloc and free).
        unsafe { a.dealloc(black_box(block), layout) };
    });
    // SAFETY: allocated above by `a` with `layout`, freed once.
    unsafe { a.dealloc(held, layout) };
    elapsed
}

/// Batches: `batch.capacity()` blocks of `size` bytes allocated and kept,
/// then all freed in allocation order.
pub fn batch_loop(peer: Malloc, size: usize, batch: &mut Vec<usize>, iters: u64) -> Duration {
    match peer {
        Malloc::Mimalloc => batch_on(&MiMalloc, layout(size), batch, iters),
        Malloc::Glibc => batch_on(&System, layout(size), batch, iters),
    }
}

/// One symbol per peer, as [`pair_on`].
#[inline(never)]
fn batch_on(a: &impl GlobalAlloc, layout: Layout, batch: &mut Vec<usize>, iters: u64) -> Duration {
    let size = batch.capacity();
    time_loop(iters, || {
        for _ in 0..size {
            // SAFETY: `layout` has a non-zero size.
            let block = unsafe { a.alloc(layout) };
            assert!(!block.is_null(), "the peer ran out of memory");
            batch.push(block as usize);
        }
        for &block in black_box(&*batch) {
            // SAFETY: each block of the batch was allocated above by `a`
            // with `layout` and is freed once: the batch is cleared right
            // after.
            unsafe { a.dealloc(block as *mut u8, layout) };
        }
        batch.clear();
    })
}

/// `threads` threads, each running `iters` batches of `size` blocks of
/// `object` bytes; returns the wall time.
pub fn batch_threads(peer: Malloc, object: usize, threads: usize, size: usize, iters: u64) -> Duration {
    run_threads(
        threads,
        |_| {},
        |_| {
            batch_loop(peer, object, &mut Vec::with_capacity(size), iters);
        },
    )
}
