//! The test binary runs with memdesc as its global allocator: everything
//! the harness and std allocate, and everything below, goes through it.

use memdesc_alloc::MemdescAlloc;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: MemdescAlloc = MemdescAlloc;

/// Held by the tests that count CPU slots (there are as few as 8), so they
/// do not take each other's.
static SLOT_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn slot_test() -> std::sync::MutexGuard<'static, ()> {
    SLOT_TESTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A byte pattern that differs per block and per offset.
fn pattern(seed: usize, i: usize) -> u8 {
    (seed.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8
}

#[test]
fn the_global_allocator_is_memdesc() {
    let before = memdesc_alloc::snapshot().allocs;
    let v: Vec<u8> = Vec::with_capacity(100);
    let after = memdesc_alloc::snapshot().allocs;
    assert!(after > before, "a Vec allocation did not reach memdesc ({before} -> {after})");
    drop(v);
    assert!(memdesc_alloc::thread_has_cpu_slot(), "an allocating test thread got no CPU slot");
}

#[test]
fn vec_and_string_growth_keep_their_contents() {
    let mut v = Vec::new();
    for i in 0..200_000u64 {
        v.push(i * 3);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    let mut s = String::new();
    for i in 0..20_000 {
        s.push_str(&i.to_string());
        s.push(',');
    }
    let parsed: Vec<usize> = s.split(',').filter(|p| !p.is_empty()).map(|p| p.parse().unwrap()).collect();
    assert_eq!(parsed, (0..20_000).collect::<Vec<_>>());
    v.shrink_to_fit();
    assert_eq!(v[199_999], 199_999 * 3);
}

#[test]
fn hash_map_and_btree_map_grow_and_shrink() {
    let mut h = HashMap::new();
    let mut b = BTreeMap::new();
    for i in 0..50_000u32 {
        h.insert(i, format!("value-{i}"));
        b.insert(format!("key-{i:06}"), vec![i; (i % 17) as usize]);
    }
    for i in (0..50_000u32).step_by(2) {
        assert_eq!(h.remove(&i), Some(format!("value-{i}")));
        assert_eq!(b.remove(&format!("key-{i:06}")), Some(vec![i; (i % 17) as usize]));
    }
    assert_eq!(h.len(), 25_000);
    assert!(b
        .iter()
        .all(|(k, v)| k[4..].parse::<u32>().unwrap() % 2 == 1
            && v.len() == (k[4..].parse::<u32>().unwrap() % 17) as usize));
}

#[test]
fn blocks_of_many_sizes_and_alignments_hold_their_bytes() {
    let sizes = (1..=300).chain((300..20_000).step_by(97)).chain([65_536, 1 << 20, 3 << 20, (4 << 20) + 1, 9 << 20]);
    let mut live = Vec::new();
    for (seed, size) in sizes.enumerate() {
        for align in [1, 8, 16, 32, 64, 256, 4096, 8192, 1 << 16, 1 << 22] {
            if size > (1 << 20) && align > 64 && align < (1 << 22) {
                continue;
            }
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero-size layout.
            let p = unsafe { A.alloc(layout) };
            assert!(!p.is_null(), "size {size} align {align}");
            assert_eq!(p as usize % align, 0, "size {size} align {align}: misaligned");
            assert!(p as usize % 16 == 0, "below the 16-byte minimum alignment");
            for i in [0, size / 2, size - 1] {
                // SAFETY: in bounds of the block just allocated.
                unsafe { p.add(i).write(pattern(seed, i)) };
            }
            live.push((p, layout, seed));
        }
        if live.len() > 100 {
            check_and_free(&mut live);
        }
    }
    check_and_free(&mut live);
}

fn check_and_free(live: &mut Vec<(*mut u8, Layout, usize)>) {
    for (p, layout, seed) in live.drain(..) {
        let size = layout.size();
        for i in [0, size / 2, size - 1] {
            // SAFETY: in bounds of a live block.
            assert_eq!(unsafe { p.add(i).read() }, pattern(seed, i), "block {p:?} size {size} overwritten");
        }
        // SAFETY: allocated above with this layout, freed once.
        unsafe { A.dealloc(p, layout) };
    }
}

#[test]
fn boxed_slices_of_many_sizes() {
    let boxes: Vec<Box<[u8]>> =
        (0..3000).map(|n| (0..n * 7).map(|i| pattern(n, i)).collect::<Vec<_>>().into_boxed_slice()).collect();
    for (n, b) in boxes.iter().enumerate() {
        assert_eq!(b.len(), n * 7);
        assert!(b.iter().enumerate().all(|(i, &x)| x == pattern(n, i)));
    }
}

#[test]
fn zeroed_blocks_are_zero_after_reuse() {
    for size in [24, 100, 3000, 20_000, 300_000] {
        let layout = Layout::from_size_align(size, 16).unwrap();
        // SAFETY: non-zero size; filled then freed so the next block may
        // reuse dirty memory.
        unsafe {
            let p = A.alloc(layout);
            p.write_bytes(0xa5, size);
            A.dealloc(p, layout);
            let z = A.alloc_zeroed(layout);
            assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0), "size {size} not zeroed");
            A.dealloc(z, layout);
        }
    }
}

#[test]
fn realloc_stays_in_place_when_the_block_is_big_enough() {
    let layout = Layout::from_size_align(100, 16).unwrap();
    // SAFETY: a live block, resized within its class (112 bytes), then
    // grown past it; freed once with its last layout.
    unsafe {
        let p = A.alloc(layout);
        p.write_bytes(9, 100);
        let q = A.realloc(p, layout, 110);
        assert_eq!(p, q, "100 -> 110 bytes fits the 112-byte class");
        let r = A.realloc(q, Layout::from_size_align(110, 16).unwrap(), 5000);
        assert!(std::slice::from_raw_parts(r, 100).iter().all(|&b| b == 9));
        A.dealloc(r, Layout::from_size_align(5000, 16).unwrap());
    }
}

#[test]
fn buffers_above_four_mib_are_direct_maps_and_grow() {
    let before = memdesc_alloc::snapshot().direct_maps;
    let mut v = vec![7u8; 10 << 20];
    assert!(memdesc_alloc::snapshot().direct_maps > before);
    v[5 << 20] = 8;
    v.resize(64 << 20, 9);
    assert_eq!(v[0], 7);
    assert_eq!(v[5 << 20], 8);
    assert_eq!(v[(10 << 20) - 1], 7);
    assert_eq!(v[10 << 20], 9);
    assert_eq!(v[(64 << 20) - 1], 9);
    drop(v);
}

#[test]
fn threads_that_allocate_and_exit_give_their_slot_back() {
    let _serial = slot_test();
    // Four rounds of half as many threads as slots, each claiming one:
    // without the exit hook the slots run out after two rounds.
    let per_round = (memdesc_alloc::cpu_slots() as usize / 2).max(1);
    for round in 0..4 {
        let handles: Vec<_> = (0..per_round)
            .map(|t| {
                thread::spawn(move || {
                    let data: Vec<String> = (0..200).map(|i| format!("{round}-{t}-{i}")).collect();
                    assert_eq!(data[199], format!("{round}-{t}-199"));
                    memdesc_alloc::thread_has_cpu_slot()
                })
            })
            .collect();
        let with_slot = handles.into_iter().map(|h| h.join().unwrap()).filter(|&s| s).count();
        // The harness's threads hold a few slots meanwhile.
        assert!(with_slot >= 1, "round {round}: none of {per_round} threads got a CPU slot");
    }
}

#[test]
fn objects_freed_on_other_threads_through_channels() {
    let _serial = slot_test();
    let (tx, rx) = mpsc::channel::<(usize, Box<[u8]>)>();
    let consumer = thread::spawn(move || {
        let mut n = 0;
        for (seed, b) in rx {
            assert!(b.iter().enumerate().all(|(i, &x)| x == pattern(seed, i)), "block {seed} changed in flight");
            n += 1;
        }
        n
    });
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                for k in 0..5000 {
                    let seed = p * 10_000 + k;
                    let len = (k * 13) % 3000 + 1;
                    let b: Box<[u8]> = (0..len).map(|i| pattern(seed, i)).collect();
                    tx.send((seed, b)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), 20_000);
}

#[test]
fn fork_while_other_threads_allocate() {
    let _serial = slot_test();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut keep = Vec::new();
                let mut i = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    keep.push(vec![w as u8; i % 5000 + 1]);
                    if keep.len() > 100 {
                        keep.drain(..50);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for _ in 0..20 {
        // SAFETY: fork in a multi-threaded process; the child only
        // allocates (through memdesc, the point of the test), checks and
        // calls _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: a deadlocked child is killed by the alarm instead of
            // hanging the test.
            unsafe { libc::alarm(10) };
            let v: Vec<Vec<u64>> = (0..2000).map(|i| vec![i; (i % 300) as usize]).collect();
            let ok = v.iter().enumerate().all(|(i, x)| x.len() == i % 300 && x.iter().all(|&y| y == i as u64));
            let big = vec![1u8; 6 << 20];
            // SAFETY: _exit ends the child without running the parent's
            // atexit state.
            unsafe { libc::_exit(if ok && big[6 << 19] == 1 { 0 } else { 3 }) };
        }
        let mut status = 0;
        // SAFETY: our child's pid and a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child failed: status {status:#x}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn allocating_more_than_the_first_section_hot_adds() {
    let before = memdesc_alloc::snapshot();
    // 1 MiB folios: served by the node, not direct maps; 200 MiB is more
    // than the first section (and than anything the other tests hold).
    let blocks: Vec<Vec<u8>> = (0..200).map(|i| vec![i as u8; 1 << 20]).collect();
    let after = memdesc_alloc::snapshot();
    assert_eq!(after.direct_maps, before.direct_maps, "1 MiB blocks went to direct maps");
    assert!(after.hot_adds > before.hot_adds, "200 MiB of folios fit without a hot-add?");
    assert!(after.present_bytes > before.present_bytes);
    assert!(blocks.iter().enumerate().all(|(i, b)| b[0] == i as u8 && b[(1 << 20) - 1] == i as u8));
}

#[test]
fn more_threads_than_cpu_slots_use_the_slow_path_correctly() {
    let _serial = slot_test();
    // 16 threads more than slots alive at once: the rest allocate and free
    // through the locked slow path, objects crossing between both.
    let slots = memdesc_alloc::cpu_slots() as usize;
    let n = slots + 16;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let (tx, rx) = mpsc::channel::<Vec<u32>>();
    let handles: Vec<_> = (0..n as u32)
        .map(|t| {
            let (barrier, tx) = (barrier.clone(), tx.clone());
            thread::spawn(move || {
                let first = vec![t; 10];
                barrier.wait();
                let slot = memdesc_alloc::thread_has_cpu_slot();
                for i in 0..300 {
                    tx.send(vec![t; (i % 50) + 1]).unwrap();
                }
                assert_eq!(first, vec![t; 10]);
                slot
            })
        })
        .collect();
    drop(tx);
    let received = rx.iter().filter(|v| v.iter().all(|&x| x == v[0])).count();
    let with_slot = handles.into_iter().map(|h| h.join().unwrap()).filter(|&s| s).count();
    assert_eq!(received, n * 300, "a block changed between threads");
    assert!(with_slot <= slots, "{with_slot} threads claimed one of {slots} slots");
    assert!(with_slot < n, "every one of {n} live threads had a slot of {slots}");
}

#[test]
fn a_thread_without_a_slot_claims_one_once_slots_free_up() {
    let _serial = slot_test();
    // Six threads more than slots hold on to their first allocation while
    // all are alive; then the ones with slots exit and the rest allocate.
    let n = memdesc_alloc::cpu_slots() as usize + 6;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let (tx, rx) = mpsc::channel::<(usize, bool)>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Arc::new(std::sync::Mutex::new(go_rx));
    let mut handles: Vec<_> = (0..n)
        .map(|index| {
            let (barrier, tx, go_rx) = (barrier.clone(), tx.clone(), go_rx.clone());
            Some(thread::spawn(move || {
                let first = vec![1u8; 8];
                barrier.wait();
                let slot = memdesc_alloc::thread_has_cpu_slot();
                tx.send((index, slot)).unwrap();
                if slot {
                    return (true, true);
                }
                // Slot-less: wait until the others are gone, then allocate.
                go_rx.lock().unwrap().recv().unwrap();
                for i in 0..10_000 {
                    drop(vec![i as u8; 32]);
                }
                drop(first);
                (false, memdesc_alloc::thread_has_cpu_slot())
            }))
        })
        .collect();
    let reports: Vec<(usize, bool)> = rx.iter().take(n).collect();
    let slotless = reports.iter().filter(|&&(_, s)| !s).count();
    assert!(slotless > 0, "{n} live threads all found a slot");
    // The slot holders have ended once joined (their exit key released
    // their slots before the thread ended); then release the slot-less.
    let mut results = Vec::with_capacity(n);
    for &(index, _) in reports.iter().filter(|&&(_, s)| s) {
        results.push(handles[index].take().expect("joined once").join().unwrap());
    }
    for _ in 0..slotless {
        go_tx.send(()).unwrap();
    }
    results.extend(handles.into_iter().flatten().map(|h| h.join().unwrap()));
    let reclaimed = results.iter().filter(|&&(first, later)| !first && later).count();
    // Threads of tests running beside this one may take some of the freed
    // slots first, so not every slot-less thread need get one; none
    // getting one means slot-less threads never retry.
    let holders = n - slotless;
    assert!(reclaimed > 0 || holders == 0, "no slot-less thread claimed one of the {holders} freed slots");
}

static LATE_SLOT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn late_destructor(value: *mut libc::c_void) {
    // Runs after memdesc's exit key (created later, so a higher key: glibc
    // runs destructors in key order): the thread has given its slot back.
    let had_slot = memdesc_alloc::thread_has_cpu_slot();
    LATE_SLOT.store(if had_slot { 1 } else { 2 }, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: the Box leaked into the key by the thread below.
    drop(unsafe { Box::from_raw(value.cast::<Vec<u64>>()) });
    let again: Vec<u64> = (0..1000).collect();
    assert_eq!(again[999], 999);
}

#[test]
fn frees_and_allocations_after_the_exit_hook_take_the_slow_path() {
    let _serial = slot_test();
    let _ = memdesc_alloc::snapshot(); // the engine is up: its key exists
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: a valid out-pointer and a destructor that lives for the process.
    assert_eq!(unsafe { libc::pthread_key_create(&mut key, Some(late_destructor)) }, 0);
    thread::spawn(move || {
        let boxed = Box::new((0..100u64).collect::<Vec<u64>>());
        assert!(memdesc_alloc::thread_has_cpu_slot());
        // SAFETY: our key; the destructor takes the Box back.
        unsafe { libc::pthread_setspecific(key, Box::into_raw(boxed).cast()) };
    })
    .join()
    .unwrap();
    assert_eq!(LATE_SLOT.load(std::sync::atomic::Ordering::SeqCst), 2, "the late destructor ran with a CPU slot");
}
