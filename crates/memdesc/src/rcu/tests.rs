use super::{Rcu, RcuConfig, RcuError, RcuHead};
use crate::platform::{CpuId, SpinPlatform};
use crate::testutil::{set_thread_cpu, ThreadCpus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::vec::Vec;

/// Bound on every wait loop of these tests: a hang fails instead.
const SPINS: u64 = if cfg!(miri) { 200_000 } else { 50_000_000 };

/// Spins (yielding) until `cond`, failing the test past [`SPINS`].
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..SPINS {
        if cond() {
            return;
        }
        std::thread::yield_now();
    }
    panic!("timed out waiting until {what}");
}

#[test]
fn new_refuses_a_platform_without_cpus() {
    let none = ThreadCpus { nr: 0 };
    assert_eq!(Rcu::new(&none, RcuConfig::default()).err(), Some(RcuError::TooManyCpus(0)));
    let many = ThreadCpus { nr: crate::buddy::MAX_CPUS as u32 + 1 };
    assert!(matches!(Rcu::new(&many, RcuConfig::default()), Err(RcuError::TooManyCpus(_))));
}

#[test]
fn synchronize_without_readers_completes_one_grace_period() {
    let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
    rcu.synchronize();
    rcu.synchronize();
    let report = rcu.report();
    assert_eq!((report.gp_started, report.gp_completed), (2, 2));
    assert_eq!(report.stalls, 0);
}

#[test]
fn grace_period_waits_for_an_open_section_of_a_non_cpu_thread() {
    let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
    let outer = rcu.read_lock();
    let inner = rcu.read_lock();
    let gp = rcu.start_gp();
    assert!(!rcu.gp_done(gp), "GP ended under two open sections");
    drop(outer);
    assert!(!rcu.gp_done(gp), "GP ended under the nested section");
    drop(inner);
    assert!(rcu.gp_done(gp));
}

#[test]
fn quiescent_report_ends_the_grace_period_of_a_busy_cpu() {
    let platform = ThreadCpus { nr: 2 };
    let rcu = Rcu::new(&platform, RcuConfig::default()).unwrap();
    let gp = rcu.start_gp();
    // CPU 1 is seen inside a section, as a scan may always see a busy CPU.
    rcu.cpus[1].readers.store(1, Ordering::Relaxed);
    assert!(!rcu.gp_done(gp));
    // A report ignored: made by a thread that is not running as CPU 1.
    rcu.cpus[1].readers.store(0, Ordering::Relaxed);
    set_thread_cpu(Some(0));
    rcu.quiescent(CpuId(1));
    set_thread_cpu(None);
    rcu.quiescent(CpuId(1));
    rcu.cpus[1].readers.store(1, Ordering::Relaxed);
    assert!(!rcu.gp_done(gp), "another thread's report counted for CPU 1");
    set_thread_cpu(Some(1));
    // A report ignored: made from inside a section.
    rcu.quiescent(CpuId(1));
    assert!(!rcu.gp_done(gp));
    rcu.cpus[1].readers.store(0, Ordering::Relaxed);
    rcu.quiescent(CpuId(1));
    rcu.cpus[1].readers.store(1, Ordering::Relaxed);
    assert!(rcu.gp_done(gp), "the report after the GP started counts for it");
    let later = rcu.start_gp();
    assert!(!rcu.gp_done(later), "an old report counted for a later GP");
    rcu.cpus[1].readers.store(0, Ordering::Relaxed);
    set_thread_cpu(None);
}

#[test]
fn busy_cpu_is_reported_as_stalled_and_synchronize_waits_for_it() {
    let platform = ThreadCpus { nr: 2 };
    let rcu = Rcu::new(&platform, RcuConfig { stall_scans: 2, ..RcuConfig::default() }).unwrap();
    let synchronized = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            set_thread_cpu(Some(0));
            let guard = rcu.read_lock();
            wait_until("the stall is reported", || rcu.report().stalls >= 1);
            assert!(!synchronized.load(Ordering::SeqCst), "synchronize returned under an open section");
            assert_eq!(rcu.report().last_stalled_cpu, Some(CpuId(0)));
            drop(guard);
        });
        s.spawn(|| {
            set_thread_cpu(Some(1));
            // Starts only once the reader is inside its section.
            wait_until("the reader enters", || rcu.cpus[0].readers.load(Ordering::SeqCst) == 1);
            rcu.synchronize();
            synchronized.store(true, Ordering::SeqCst);
        });
    });
    assert!(synchronized.load(Ordering::SeqCst));
}

static RAN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn record(head: &RcuHead<'_>) {
    RAN.lock().unwrap().push(head.tag());
}

#[test]
fn callbacks_wait_for_a_grace_period_and_run_in_order() {
    let heads = [RcuHead::new(100), RcuHead::new(101), RcuHead::new(102)];
    let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
    let taken = |tags: &[u64]| RAN.lock().unwrap().iter().filter(|t| tags.contains(t)).count();
    let guard = rcu.read_lock();
    for head in &heads {
        rcu.call_rcu(head, &record).unwrap();
    }
    assert_eq!(rcu.call_rcu(&heads[0], &record), Err(RcuError::AlreadyQueued));
    for _ in 0..4 {
        rcu.poll();
    }
    assert_eq!(taken(&[100, 101, 102]), 0, "a callback ran under an open section");
    drop(guard);
    rcu.barrier();
    let ran: Vec<u64> = RAN.lock().unwrap().iter().copied().filter(|t| (100..103).contains(t)).collect();
    assert_eq!(ran, [100, 101, 102]);
    let report = rcu.report();
    assert_eq!((report.callbacks_queued, report.callbacks_invoked), (3, 3));
    // Run: the head may be queued again.
    rcu.call_rcu(&heads[0], &record).unwrap();
    rcu.barrier();
    assert_eq!(taken(&[100]), 2);
}

static SYNC_RAN: AtomicU64 = AtomicU64::new(0);

fn count_sync(_head: &RcuHead<'_>) {
    SYNC_RAN.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn full_queue_makes_call_rcu_wait_and_run_the_callback() {
    let heads = [RcuHead::new(0), RcuHead::new(1)];
    let rcu = Rcu::new(&SpinPlatform, RcuConfig { max_pending: 1, ..RcuConfig::default() }).unwrap();
    rcu.call_rcu(&heads[0], &count_sync).unwrap();
    assert_eq!(SYNC_RAN.load(Ordering::SeqCst), 0);
    rcu.call_rcu(&heads[1], &count_sync).unwrap();
    assert_eq!(SYNC_RAN.load(Ordering::SeqCst), 1, "the overflowing callback did not run at once");
    assert_eq!(rcu.report().callbacks_synchronous, 1);
    rcu.barrier();
    assert_eq!(SYNC_RAN.load(Ordering::SeqCst), 2);
}

/// rcutorture in miniature: CPU readers and a non-CPU reader check that
/// the object they reach is alive while an updater replaces and retires
/// it, on real threads (and under Miri's race detector).
#[test]
fn readers_never_see_a_retired_object() {
    const OBJECTS: usize = 4;
    let rounds: u64 = if cfg!(miri) { 4 } else { 300 };
    let platform = ThreadCpus { nr: 2 };
    let rcu = Rcu::new(&platform, RcuConfig::default()).unwrap();
    let current = AtomicU64::new(0);
    let alive: [AtomicBool; OBJECTS] = core::array::from_fn(|i| AtomicBool::new(i == 0));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for cpu in [Some(0), None] {
            let (rcu, current, alive, stop) = (&rcu, &current, &alive, &stop);
            s.spawn(move || {
                set_thread_cpu(cpu);
                // Relaxed throughout: the RCU steps order these accesses.
                while !stop.load(Ordering::Relaxed) {
                    let guard = rcu.read_lock();
                    let object = current.load(Ordering::Acquire) as usize;
                    assert!(alive[object].load(Ordering::Relaxed), "reader saw retired object {object}");
                    drop(guard);
                    if let Some(cpu) = cpu {
                        rcu.quiescent(CpuId(cpu));
                    }
                }
            });
        }
        s.spawn(|| {
            set_thread_cpu(Some(1));
            for round in 1..=rounds {
                let old = current.load(Ordering::Relaxed) as usize;
                let new = (round as usize) % OBJECTS;
                alive[new].store(true, Ordering::Relaxed);
                current.store(new as u64, Ordering::Release);
                rcu.synchronize();
                alive[old].store(false, Ordering::Relaxed);
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    assert!(rcu.report().gp_completed >= rounds);
}

static RAN_TWO_CPUS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

fn count_two_cpus(head: &RcuHead<'_>) {
    RAN_TWO_CPUS[head.tag() as usize].fetch_add(1, Ordering::SeqCst);
}

/// Two CPUs queue callbacks and report quiescent states on real threads
/// (one of them inside read sections); after a barrier each callback has
/// run exactly once.
#[test]
fn callbacks_from_two_cpus_each_run_once_after_barrier() {
    let heads: [RcuHead<'_>; 8] = core::array::from_fn(|i| RcuHead::new(i as u64));
    let platform = ThreadCpus { nr: 2 };
    let rcu = Rcu::new(&platform, RcuConfig::default()).unwrap();
    std::thread::scope(|s| {
        for cpu in 0..2u32 {
            let (rcu, heads) = (&rcu, &heads);
            s.spawn(move || {
                set_thread_cpu(Some(cpu));
                for head in heads.iter().skip(cpu as usize).step_by(2) {
                    let guard = (cpu == 0).then(|| rcu.read_lock());
                    rcu.call_rcu(head, &count_two_cpus).unwrap();
                    drop(guard);
                    rcu.quiescent(CpuId(cpu));
                }
            });
        }
    });
    rcu.barrier();
    for (tag, ran) in RAN_TWO_CPUS.iter().enumerate() {
        assert_eq!(ran.load(Ordering::SeqCst), 1, "callback {tag} ran a wrong number of times");
    }
    let report = rcu.report();
    assert_eq!((report.callbacks_queued, report.callbacks_invoked), (8, 8));
}

/// Frames handed back by the frame tests' callbacks: their pfns, in order.
struct Collect(Mutex<Vec<u64>>);

impl<'n> super::FrameCallback<'n> for Collect {
    fn invoke(&self, folio: crate::buddy::FrozenFolio<'n>) {
        assert_eq!(folio.page_type(), crate::folio::PageType::PageTable, "the folio came back changed");
        self.0.lock().unwrap().push(folio.pfn().0);
        // Dropping the handle frees the frames.
    }
}

fn table_frame<'n>(node: &'n crate::buddy::Node<'n>) -> crate::buddy::FrozenFolio<'n> {
    let gfp = crate::buddy::Gfp::KERNEL.zeroed().typed(crate::folio::PageType::PageTable);
    node.alloc_frozen(crate::folio::Order::ZERO, gfp).unwrap()
}

/// A frame head lives in the frame's owner words, waits for the grace
/// period and comes back as the frozen folio, which the callback frees.
#[test]
fn frame_comes_back_after_its_grace_period_and_is_freed() {
    use crate::buddy::NodeConfig;
    crate::testutil::with_node(64, &[], NodeConfig::default(), &SpinPlatform, |node| {
        let to = super::FrameReturn::new(node, Collect(Mutex::new(Vec::new())));
        let collect = to.callback();
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
        let (a, b) = (table_frame(node), table_frame(node));
        let pfns = [a.pfn().0, b.pfn().0];
        assert_eq!(node.audit().allocated, 2);
        let guard = rcu.read_lock();
        rcu.call_rcu_frame(a, &to).unwrap();
        rcu.call_rcu_frame(b, &to).unwrap();
        for _ in 0..4 {
            rcu.poll();
        }
        assert!(collect.0.lock().unwrap().is_empty(), "a frame came back under an open section");
        assert_eq!(node.audit().allocated, 2, "a queued frame was freed");
        drop(guard);
        rcu.barrier();
        assert_eq!(*collect.0.lock().unwrap(), pfns);
        let audit = node.audit();
        assert_eq!((audit.allocated, audit.violations), (0, 0), "{:?}", audit.first_violation);
        let report = rcu.report();
        assert_eq!((report.callbacks_queued, report.callbacks_invoked), (2, 2));
    });
}

/// A frame of another node is refused and given back untouched.
#[test]
fn frame_of_another_node_is_refused() {
    use crate::buddy::NodeConfig;
    crate::testutil::with_node(64, &[], NodeConfig::default(), &SpinPlatform, |node| {
        crate::testutil::with_node(64, &[], NodeConfig::default(), &SpinPlatform, |other| {
            let to = super::FrameReturn::new(node, Collect(Mutex::new(Vec::new())));
            let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
            let mut frame = table_frame(other);
            assert!(frame.set_owner_word(2, 0xfeed));
            let (frame, error) = rcu.call_rcu_frame(frame, &to).unwrap_err();
            assert_eq!(error, RcuError::ForeignFolio);
            assert_eq!(frame.owner_word(2), Some(0xfeed), "a refused frame was written");
            drop(frame);
            assert_eq!(other.audit().allocated, 0);
            assert_eq!(rcu.report().callbacks_queued, 0);
        });
    });
}

/// A full queue makes `call_rcu_frame` wait for a grace period and hand
/// the frame back at once (RCU.10), with a closure as the callback.
#[test]
fn full_queue_hands_a_frame_back_at_once() {
    use crate::buddy::NodeConfig;
    crate::testutil::with_node(64, &[], NodeConfig::default(), &SpinPlatform, |node| {
        let back = AtomicU64::new(0);
        let count = |folio: crate::buddy::FrozenFolio<'_>| {
            back.fetch_add(1, Ordering::SeqCst);
            drop(folio);
        };
        let to = super::FrameReturn::new(node, &count);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig { max_pending: 1, ..RcuConfig::default() }).unwrap();
        rcu.call_rcu_frame(table_frame(node), &to).unwrap();
        assert_eq!(back.load(Ordering::SeqCst), 0);
        rcu.call_rcu_frame(table_frame(node), &to).unwrap();
        assert_eq!(back.load(Ordering::SeqCst), 1, "the overflowing frame did not come back at once");
        rcu.barrier();
        assert_eq!(back.load(Ordering::SeqCst), 2);
        assert_eq!(node.audit().allocated, 0);
    });
}

/// Frames queued from two CPUs on real threads while the node keeps
/// allocating (so freed frames are reused at once, over the spent heads):
/// every frame comes back once, and the node ends clean.
#[test]
fn frames_from_two_cpus_come_back_once() {
    let per_cpu: u64 = if cfg!(miri) { 3 } else { 40 };
    let platform = ThreadCpus { nr: 2 };
    crate::testutil::with_node(64, &[], crate::testutil::small_config(true), &platform, |node| {
        let to = super::FrameReturn::new(node, Collect(Mutex::new(Vec::new())));
        let collect = to.callback();
        let rcu = Rcu::new(&platform, RcuConfig::default()).unwrap();
        std::thread::scope(|s| {
            for cpu in 0..2u32 {
                let (rcu, to) = (&rcu, &to);
                s.spawn(move || {
                    set_thread_cpu(Some(cpu));
                    for _ in 0..per_cpu {
                        let guard = rcu.read_lock();
                        let frame = table_frame(node);
                        rcu.call_rcu_frame(frame, to).unwrap();
                        drop(guard);
                        rcu.quiescent(CpuId(cpu));
                    }
                });
            }
        });
        rcu.barrier();
        assert_eq!(collect.0.lock().unwrap().len() as u64, 2 * per_cpu);
        let audit = node.audit();
        assert_eq!((audit.allocated, audit.violations), (0, 0), "{:?}", audit.first_violation);
    });
}

/// A head fits in the owner words (P5), with the callback's context.
#[test]
fn head_fits_in_the_owner_words() {
    assert!(core::mem::size_of::<RcuHead<'_>>() <= crate::memmap::OWNER_WORDS * 8);
}
