//! Misuse is reported on stderr and aborts. Each case runs in a fresh copy
//! of this test binary (an ignored test selected by name), so the abort
//! and `MEMDESC_DEBUG` stay there.

use memdesc_malloc::{free, malloc, malloc_usable_size, realloc};
use std::process::Command;

/// Runs the ignored test `name` in a child; returns its stderr after
/// checking it died of SIGABRT.
fn run_child(name: &str, debug: bool) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "--nocapture", name]);
    if debug {
        cmd.env("MEMDESC_DEBUG", "1");
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{name} did not abort: {:?}\n{stderr}", out.status);
    stderr
}

#[test]
fn a_foreign_pointer_is_reported() {
    let err = run_child("misuse::child_free_foreign", false);
    assert!(err.contains("memdesc: free(") && err.contains("not allocated by memdesc"), "{err}");
}

#[test]
fn an_interior_pointer_is_reported() {
    let err = run_child("misuse::child_free_interior", false);
    assert!(err.contains("middle of an allocation"), "{err}");
}

#[test]
fn an_interior_pointer_of_a_direct_map_is_reported() {
    let err = run_child("misuse::child_free_map_interior", false);
    assert!(err.contains("middle of an allocation") && err.contains("inside the direct map"), "{err}");
}

#[test]
fn a_double_free_of_a_large_block_is_reported() {
    let err = run_child("misuse::child_double_free_large", false);
    assert!(err.contains("not an allocated block"), "{err}");
}

#[test]
fn usable_size_of_a_foreign_pointer_is_reported() {
    let err = run_child("misuse::child_usable_size_foreign", false);
    assert!(err.contains("malloc_usable_size(") && err.contains("not allocated by memdesc"), "{err}");
}

#[test]
fn an_immediate_double_free_of_a_small_object_is_reported_without_debug() {
    let err = run_child("misuse::child_double_free_small", false);
    assert!(err.contains("double free") && err.contains("class malloc-64"), "{err}");
}

#[test]
fn a_double_free_of_a_small_object_is_reported_under_debug() {
    let err = run_child("misuse::child_double_free_small_later", true);
    assert!(err.contains("double free") && err.contains("class malloc-64"), "{err}");
}

#[test]
fn a_heap_overflow_into_the_red_zone_is_reported_under_debug() {
    let err = run_child("misuse::child_overflow", true);
    assert!(err.contains("heap corruption") && err.contains("right red zone"), "{err}");
}

#[test]
#[ignore = "run by a_foreign_pointer_is_reported"]
fn child_free_foreign() {
    let mut on_stack = [0u64; 4];
    // SAFETY: deliberately wrong: not a block of ours (the allocator
    // checks and aborts before touching it).
    unsafe { free(on_stack.as_mut_ptr().cast()) };
}

#[test]
#[ignore = "run by an_interior_pointer_is_reported"]
fn child_free_interior() {
    let p = malloc(64);
    // SAFETY: deliberately wrong: 16 bytes into a block.
    unsafe { free(p.cast::<u8>().add(16).cast()) };
}

#[test]
#[ignore = "run by an_interior_pointer_of_a_direct_map_is_reported"]
fn child_free_map_interior() {
    let p = malloc(10 << 20);
    // SAFETY: deliberately wrong: a page into a 10 MiB direct map.
    unsafe { free(p.cast::<u8>().add(4096).cast()) };
}

#[test]
#[ignore = "run by a_double_free_of_a_large_block_is_reported"]
fn child_double_free_large() {
    let p = malloc(100_000);
    // SAFETY: the first free is right, the second deliberately wrong.
    unsafe { (free(p), free(p)) };
}

#[test]
#[ignore = "run by usable_size_of_a_foreign_pointer_is_reported"]
fn child_usable_size_foreign() {
    let x = 5u64;
    // SAFETY: deliberately wrong: not a block of ours.
    unsafe { malloc_usable_size((&x as *const u64).cast_mut().cast()) };
}

#[test]
#[ignore = "run by an_immediate_double_free_of_a_small_object_is_reported_without_debug"]
fn child_double_free_small() {
    let p = malloc(50);
    // SAFETY: the first free is right, the second deliberately wrong.
    unsafe { (free(p), free(p)) };
}

#[test]
#[ignore = "run by a_double_free_of_a_small_object_is_reported_under_debug"]
fn child_double_free_small_later() {
    let p = malloc(50);
    let q = malloc(50);
    // SAFETY: the first two frees are right, the third deliberately wrong
    // (`p` is no longer the top of the sheaf: only debug caches see it).
    unsafe { (free(p), free(q), free(p)) };
}

#[test]
#[ignore = "run by a_heap_overflow_into_the_red_zone_is_reported_under_debug"]
fn child_overflow() {
    let p = malloc(64).cast::<u8>();
    // SAFETY: deliberately wrong: one byte past the 64-byte object, into
    // the red zone (inside the slab, so no fault).
    unsafe { p.add(64).write(0) };
    // SAFETY: live; the free checks the red zones.
    unsafe { free(realloc(p.cast(), 64)) };
}
