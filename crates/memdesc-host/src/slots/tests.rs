use super::*;
use crate::HostPlatform;
use memdesc::Platform;
use std::sync::atomic::AtomicU64;
use std::sync::Barrier;

fn slots(nr: u32) -> CpuSlots {
    CpuSlots::new(nr).expect("a valid count")
}

#[test]
fn counts_outside_one_to_max_cpus_are_refused() {
    assert!(matches!(CpuSlots::new(0), Err(SlotError::BadCount { nr: 0, .. })));
    assert!(matches!(CpuSlots::new(MAX_CPUS as u32 + 1), Err(SlotError::BadCount { .. })));
    assert_eq!(slots(MAX_CPUS as u32).nr_cpus(), MAX_CPUS as u32);
}

#[test]
fn two_threads_cannot_bind_the_same_cpu() {
    let set = slots(2);
    let held = set.bind(CpuId(1)).expect("cpu 1 is free");
    assert_eq!(held.cpu(), CpuId(1));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(set.bind(CpuId(1)).err(), Some(SlotError::Taken(CpuId(1))));
            assert_eq!(set.current(), None, "a refused bind leaves the thread unbound");
            let other = set.bind(CpuId(0)).expect("cpu 0 is free");
            assert_eq!(set.current(), Some(CpuId(0)));
            drop(other);
        });
    });
    assert_eq!(set.bind(CpuId(2)).err(), Some(SlotError::OutOfRange { cpu: CpuId(2), nr: 2 }));
}

#[test]
fn a_thread_binds_once_per_set() {
    let set = slots(2);
    let _held = set.bind(CpuId(0)).expect("cpu 0 is free");
    assert_eq!(set.bind(CpuId(1)).err(), Some(SlotError::AlreadyBound(CpuId(0))));
    assert!(set.claim_any().is_none(), "claim_any does not give a bound thread a second CPU");
    assert_eq!(set.current(), Some(CpuId(0)));
}

#[test]
fn claim_any_hands_out_distinct_slots_and_none_when_full() {
    let set = slots(3);
    let barrier = Barrier::new(4);
    let claimed: Vec<Option<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let binding = set.claim_any();
                    let cpu = binding.as_ref().map(|b| b.cpu().0);
                    assert_eq!(set.current().map(|c| c.0), cpu);
                    // Hold until every thread has claimed, so none reuses a
                    // slot another gave back.
                    barrier.wait();
                    cpu
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("no panic")).collect()
    });
    let mut cpus: Vec<u32> = claimed.iter().flatten().copied().collect();
    cpus.sort_unstable();
    assert_eq!(cpus, [0, 1, 2], "three distinct slots: {claimed:?}");
    assert_eq!(claimed.iter().filter(|c| c.is_none()).count(), 1, "the fourth thread found none");
}

#[test]
fn release_makes_the_slot_reusable() {
    let set = slots(1);
    let binding = set.claim_any().expect("a free slot");
    assert_eq!(binding.cpu(), CpuId(0));
    std::thread::scope(|s| {
        s.spawn(|| assert!(set.claim_any().is_none(), "the only slot is held"));
    });
    drop(binding);
    assert_eq!(set.current(), None);
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(set.claim_any().map(|b| b.cpu()), Some(CpuId(0))));
    });
    // And by the guard-less path.
    let binding = set.bind(CpuId(0)).expect("free again");
    std::mem::forget(binding);
    assert_eq!(set.release_current(), Some(CpuId(0)));
    assert_eq!(set.release_current(), None, "nothing left to release");
    std::thread::scope(|s| {
        s.spawn(|| assert!(set.bind(CpuId(0)).is_ok(), "release_current gave it back"));
    });
}

#[test]
fn a_binding_in_one_set_is_not_a_binding_in_another() {
    let (a, b) = (slots(2), slots(2));
    let _in_a = a.bind(CpuId(1)).expect("free");
    assert_eq!(a.current(), Some(CpuId(1)));
    assert_eq!(b.current(), None);
    let platform_b = HostPlatform::with_slots(slots(2));
    assert!(platform_b.local_enter().is_none());
    let in_b = b.bind(CpuId(1)).expect("cpu 1 of another set");
    assert_eq!(b.current(), Some(CpuId(1)));
    drop(in_b);
    assert_eq!(a.current(), Some(CpuId(1)), "releasing in b keeps a's binding");
}

#[test]
fn a_dropped_set_leaves_no_binding_for_a_new_one() {
    {
        let first = slots(1);
        std::mem::forget(first.bind(CpuId(0)).expect("free"));
    }
    // A new set (possibly at the same address) has a fresh identity.
    let second = slots(1);
    assert_eq!(second.current(), None);
    assert!(second.bind(CpuId(0)).is_ok());
}

#[test]
fn a_thread_is_bound_in_at_most_max_sets() {
    let sets: Vec<CpuSlots> = (0..=MAX_SETS_PER_THREAD).map(|_| slots(1)).collect();
    let bindings: Vec<_> = sets[..MAX_SETS_PER_THREAD].iter().map(|s| s.bind(CpuId(0)).expect("free")).collect();
    assert_eq!(sets[MAX_SETS_PER_THREAD].bind(CpuId(0)).err(), Some(SlotError::TooManySets));
    drop(bindings);
    assert!(sets[MAX_SETS_PER_THREAD].bind(CpuId(0)).is_ok());
}

#[test]
fn a_thread_that_exits_releases_its_cpu() {
    let set = slots(1);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _binding = set.bind(CpuId(0)).expect("free");
            assert_eq!(set.current(), Some(CpuId(0)));
        });
    });
    assert!(set.bind(CpuId(0)).is_ok(), "the exited thread's guard gave it back");
}

/// CPUs the release hook saw, as a bit mask (one test uses it).
static HOOKED: AtomicU64 = AtomicU64::new(0);

fn record_release(cpu: CpuId) {
    // Relaxed: read after the threads are joined.
    HOOKED.fetch_or(1 << cpu.0, Ordering::Relaxed);
}

#[test]
fn the_release_hook_runs_while_the_thread_still_holds_its_cpu() {
    static SET: CpuSlots = match CpuSlots::new(2) {
        Ok(set) => set.with_release_hook(record_release),
        Err(_) => panic!("a valid count"),
    };
    let flushed = std::thread::scope(|s| {
        s.spawn(|| {
            let binding = SET.bind(CpuId(1)).expect("free");
            let mut seen = None;
            binding.release_with(|cpu| seen = Some((cpu, SET.current())));
            seen
        })
        .join()
        .expect("no panic")
    });
    assert_eq!(flushed, Some((CpuId(1), Some(CpuId(1)))), "flush ran as the CPU");
    std::thread::scope(|s| {
        s.spawn(|| drop(SET.bind(CpuId(0)).expect("free")));
    });
    // Relaxed: the threads are joined.
    assert_eq!(HOOKED.load(Ordering::Relaxed), 0b11, "the hook ran for both releases");
}

#[test]
fn local_enter_is_none_for_an_unbound_thread() {
    let platform = HostPlatform::new(2).expect("a valid count");
    assert!(platform.local_enter().is_none());
    assert!(platform.rcu_reader_cpu().is_none());
    assert_eq!(platform.current_cpu(), CpuId(0));
    let binding = platform.bind_current_thread(CpuId(1)).expect("free");
    let token = platform.local_enter().expect("a bound thread is its CPU");
    assert_eq!(token.cpu(), CpuId(1));
    platform.local_exit(token);
    assert_eq!(platform.rcu_reader_cpu().map(|t| t.cpu()), Some(CpuId(1)));
    drop(binding);
    assert!(platform.local_enter().is_none(), "released: no CPU any more");
}

#[test]
fn releasing_inside_a_local_section_panics_and_keeps_the_slot() {
    let platform = HostPlatform::new(1).expect("a valid count");
    let binding = platform.bind_current_thread(CpuId(0)).expect("free");
    let token = platform.local_enter().expect("bound");
    let released = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| platform.slots().release_current()));
    assert!(released.is_err(), "a release inside a section must refuse");
    std::thread::scope(|s| {
        s.spawn(|| assert!(platform.slots().claim_any().is_none(), "the slot is still held"));
    });
    platform.local_exit(token);
    drop(binding);
    std::thread::scope(|s| {
        s.spawn(|| assert!(platform.slots().claim_any().is_some(), "released after the exit"));
    });
}

#[test]
fn while_unbound_lends_the_cpu_and_takes_it_back() {
    let set = slots(1);
    let binding = set.bind(CpuId(0)).expect("free");
    let lent = set
        .while_unbound(|| {
            std::thread::scope(|s| s.spawn(|| set.bind(CpuId(0)).map(|b| b.cpu())).join().expect("no panic"))
        })
        .expect("taken back");
    assert_eq!(lent, Ok(CpuId(0)), "a worker ran as the lent CPU");
    assert_eq!(set.current(), Some(CpuId(0)));
    drop(binding);
    assert_eq!(set.current(), None);
}

#[test]
fn threads_claiming_and_releasing_never_share_a_slot() {
    const THREADS: usize = 8;
    const NR: u32 = 4;
    let rounds = if cfg!(miri) { 20 } else { 2000 };
    let set = slots(NR);
    // The test's own owner word per slot: a holder swaps its id in and out.
    let owners: Vec<AtomicUsize> = (0..NR).map(|_| AtomicUsize::new(0)).collect();
    std::thread::scope(|s| {
        for t in 1..=THREADS {
            let (set, owners) = (&set, &owners);
            s.spawn(move || {
                for round in 0..rounds {
                    let binding = if round % 2 == 0 { set.claim_any() } else { set.bind(CpuId((t as u32) % NR)).ok() };
                    let Some(binding) = binding else { continue };
                    let owner = &owners[binding.cpu().index()];
                    // Relaxed (all): the slot's own Acquire/Release orders
                    // holders; a swap seeing another holder is the bug.
                    assert_eq!(owner.swap(t, Ordering::Relaxed), 0, "two holders of {:?}", binding.cpu());
                    std::thread::yield_now();
                    assert_eq!(owner.swap(0, Ordering::Relaxed), t, "two holders of {:?}", binding.cpu());
                    drop(binding);
                }
            });
        }
    });
}
