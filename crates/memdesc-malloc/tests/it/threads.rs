//! Threads and fork through the C functions.

use core::ffi::c_void;
use memdesc_malloc::{free, malloc};
use std::sync::mpsc;
use std::thread;

struct Block(*mut c_void, usize, u8);
// SAFETY: the block is owned by whoever holds the value.
unsafe impl Send for Block {}

#[test]
fn blocks_freed_by_other_threads() {
    let (tx, rx) = mpsc::sync_channel::<Block>(64);
    let consumer = thread::spawn(move || {
        let mut n = 0;
        for Block(p, len, byte) in rx {
            // SAFETY: a live block of len bytes, given to us.
            assert!(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }.iter().all(|&b| b == byte));
            // SAFETY: freed once, by us.
            unsafe { free(p) };
            n += 1;
        }
        n
    });
    let producers: Vec<_> = (0..3u8)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..3000usize {
                    let len = (i * 37) % 9000 + 1;
                    let p = malloc(len);
                    // SAFETY: a new block of len bytes.
                    unsafe { p.cast::<u8>().write_bytes(t, len) };
                    tx.send(Block(p, len, t)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    producers.into_iter().for_each(|p| p.join().unwrap());
    assert_eq!(consumer.join().unwrap(), 9000);
}

#[test]
fn fork_from_a_threaded_program_leaves_the_child_a_working_heap() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                // Sizes across every class and folio orders, kept in a
                // ring, so the workers run the slow paths (slab refills and
                // give-backs under list locks, the zone lock) all the time.
                let mut ring = [core::ptr::null_mut(); 64];
                let mut i = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let slot = &mut ring[i % 64];
                    // SAFETY: null or live, freed once.
                    unsafe { free(*slot) };
                    *slot = malloc((i * 7919) % 300_000 + 1);
                    i += 1;
                }
                for p in ring {
                    // SAFETY: null or live, freed once.
                    unsafe { free(p) };
                }
            })
        })
        .collect();
    for _ in 0..60 {
        // SAFETY: the child uses only our malloc/free and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: kills a deadlocked child instead of hanging.
            unsafe { libc::alarm(5) };
            let mut ok = true;
            for i in 0..5000usize {
                let p = malloc((i * 7919) % 300_000 + 1);
                ok &= !p.is_null();
                // SAFETY: live, freed once.
                unsafe { free(p) };
            }
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        }
        let mut status = 0;
        // SAFETY: our child; a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    workers.into_iter().for_each(|w| w.join().unwrap());
}
