//! Loom models of RCU (RCU.1–RCU.9), and the mutants loom must catch.
//!
//! Every model has one object, published (a flag readers check inside
//! their section) and with contents in a loom cell. The updater unpublishes
//! it and then, after a grace period, "frees" it by overwriting the cell. A
//! reader that reads the cell after the free, or concurrently with it, is
//! a data race loom reports (or a stale value the model asserts against).
//!
//! The RCU state, the object and the heads live in `loom::lazy_static`s,
//! built afresh for each execution, so callbacks (plain `fn`s) reach them.

use super::{Rcu, RcuConfig, RcuHead};
use crate::platform::{CpuId, Platform, WaitKey};
use crate::sync::{AtomicU32, Ordering, UnsafeCell};
use crate::testutil::check_model;
use loom::thread;

/// The object's contents while it is live, and after its free.
const LIVE: u64 = 7;
const FREED: u64 = 0xdead;

loom::thread_local! {
    /// The CPU a model thread reads as; `None` for a non-CPU thread.
    static CPU: core::cell::Cell<Option<u32>> = core::cell::Cell::new(None);
}

/// Two CPUs; each model thread says which it runs as (or none).
struct ModelPlatform;

impl Platform for ModelPlatform {
    fn current_cpu(&self) -> CpuId {
        CpuId(CPU.with(core::cell::Cell::get).unwrap_or(0))
    }

    fn nr_cpus(&self) -> u32 {
        2
    }

    fn wait(&self, _key: WaitKey, still_blocked: &dyn Fn() -> bool) {
        if still_blocked() {
            loom::thread::yield_now();
        }
    }

    fn wake_all(&self, _key: WaitKey) {}

    fn rcu_reader_cpu(&self) -> Option<crate::platform::RcuReaderCpu> {
        let cpu = CpuId(CPU.with(core::cell::Cell::get)?);
        // SAFETY: each model thread runs as at most one CPU, its own for its
        // whole life, one thread per CPU.
        Some(unsafe { crate::platform::RcuReaderCpu::new_unchecked(cpu) })
    }
}

/// An RCU-protected object: a published flag and contents.
struct Object {
    published: AtomicU32,
    contents: UnsafeCell<u64>,
    /// Set by the barrier model's callbacks, one cell per CPU.
    marks: [UnsafeCell<u64>; 2],
}

// SAFETY: each access to the cells is the model's claim that RCU orders it;
// loom checks every one and reports those that race, which is what the
// models test.
unsafe impl Sync for Object {}
// SAFETY: as for Sync: the cells hold plain integers.
unsafe impl Send for Object {}

loom::lazy_static! {
    static ref PLATFORM: ModelPlatform = ModelPlatform;
    static ref RCU: Rcu<'static> = Rcu::new(&*PLATFORM, RcuConfig::default()).unwrap();
    static ref OBJECT: Object = Object {
        published: AtomicU32::new(1),
        contents: UnsafeCell::new(LIVE),
        marks: [UnsafeCell::new(0), UnsafeCell::new(0)],
    };
    static ref HEADS: [RcuHead<'static>; 2] = [RcuHead::new(0), RcuHead::new(1)];
}

/// Builds the statics on the main thread, before any model thread runs.
fn init() {
    let _ = (&*RCU, &*OBJECT, &*HEADS);
}

/// Runs `f` on a new model thread reading as `cpu`.
fn on_cpu(cpu: Option<u32>, f: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        CPU.with(|c| c.set(cpu));
        f();
    })
}

/// One read section: if the object is still published, read its contents,
/// which must be live.
fn read_object() {
    let guard = RCU.read_lock();
    // Relaxed: the RCU fences order it against the unpublish (RCU.1, RCU.4).
    if OBJECT.published.load(Ordering::Relaxed) == 1 {
        // SAFETY: the model's claim: RCU keeps the object alive while this
        // section, which saw it published, is open; loom checks it.
        let seen = OBJECT.contents.with(|c| unsafe { *c });
        assert_eq!(seen, LIVE, "RCU violated: a reader saw a freed object");
    }
    drop(guard);
}

/// The updater's first step: nobody entering a section later finds it.
fn unpublish() {
    // Relaxed: the grace period orders it (RCU.3, RCU.4).
    OBJECT.published.store(0, Ordering::Relaxed);
}

/// Frees the object: overwrites its contents.
fn free_object() {
    // SAFETY: the model's claim: after the grace period no reader can
    // reach the contents; loom checks it.
    OBJECT.contents.with_mut(|c| unsafe { *c = FREED });
}

fn free_object_callback(_head: &RcuHead<'_>) {
    free_object();
}

/// A reader on CPU 0 against an updater on CPU 1 that unpublishes,
/// synchronizes and frees (RCU.1–RCU.5).
fn reader_races_synchronize(reader_cpu: Option<u32>) {
    init();
    let reader = on_cpu(reader_cpu, read_object);
    let updater = on_cpu(Some(1), || {
        unpublish();
        RCU.synchronize();
        free_object();
    });
    reader.join().unwrap();
    updater.join().unwrap();
}

fn cpu_reader_races_synchronize() {
    reader_races_synchronize(Some(0));
}

fn non_cpu_reader_races_synchronize() {
    reader_races_synchronize(None);
}

#[test]
fn rcu_cpu_reader_races_synchronize() {
    check_model(cpu_reader_races_synchronize);
}

#[test]
fn rcu_non_cpu_reader_races_synchronize() {
    check_model(non_cpu_reader_races_synchronize);
}

/// CPU 0 reads, reports a quiescent state, reads again; the updater may
/// end its GP on the report alone while the second section is open (RCU.6).
fn quiescent_report_races_synchronize() {
    init();
    let reader = on_cpu(Some(0), || {
        read_object();
        RCU.quiescent(CpuId(0));
        read_object();
    });
    let updater = on_cpu(Some(1), || {
        unpublish();
        RCU.synchronize();
        free_object();
    });
    reader.join().unwrap();
    updater.join().unwrap();
}

#[test]
fn rcu_quiescent_report_races_synchronize() {
    check_model(quiescent_report_races_synchronize);
}

/// CPU 0 reports a quiescent state and then enters a section; the
/// scanner may end the GP on the report while that section is open, so the
/// section must see the unpublish through the report (RCU.3, RCU.6).
fn section_after_report_races_synchronize() {
    init();
    let reader = on_cpu(Some(0), || {
        RCU.quiescent(CpuId(0));
        read_object();
    });
    let updater = on_cpu(Some(1), || {
        unpublish();
        RCU.synchronize();
        free_object();
    });
    reader.join().unwrap();
    updater.join().unwrap();
}

#[test]
fn rcu_section_after_report_races_synchronize() {
    check_model(section_after_report_races_synchronize);
}

/// The updater frees through `call_rcu` and waits with the barrier, then
/// reads the freed contents: the callback, run on whichever thread polls
/// after the GP, must have run and be ordered before (RCU.7–RCU.9).
fn reader_races_call_rcu() {
    init();
    let reader = on_cpu(Some(0), || {
        read_object();
        RCU.quiescent(CpuId(0));
    });
    let updater = on_cpu(Some(1), || {
        unpublish();
        RCU.call_rcu(&HEADS[0], &free_object_callback).unwrap();
        RCU.barrier();
        // SAFETY: the model's claim: the barrier orders the callback's
        // write before this read; loom checks it.
        let contents = OBJECT.contents.with(|c| unsafe { *c });
        assert_eq!(contents, FREED, "RCU violated: the barrier returned before the callback ran");
    });
    reader.join().unwrap();
    updater.join().unwrap();
}

#[test]
fn rcu_reader_races_call_rcu() {
    check_model(reader_races_call_rcu);
}

/// CPU 0 reports a quiescent state and then enters a section while CPU 1
/// frees through `call_rcu`. The scan may end the GP on the report while
/// the section is open, so the section must see the unpublish through the
/// report's load of `gp_seq` (RCU.3's Release, RCU.6). Unlike
/// `section_after_report_races_synchronize`, the GP's start (in a poll)
/// and its first scan (in a later poll) are apart, so loom can run the
/// report and the section between them, where a C11 execution places them
/// and loom's SC fences otherwise hide the stale read.
fn section_after_report_races_call_rcu() {
    init();
    let reader = on_cpu(Some(0), || {
        RCU.quiescent(CpuId(0));
        read_object();
    });
    let updater = on_cpu(Some(1), || {
        unpublish();
        RCU.call_rcu(&HEADS[0], &free_object_callback).unwrap();
        RCU.barrier();
    });
    reader.join().unwrap();
    updater.join().unwrap();
}

#[test]
fn rcu_section_after_report_races_call_rcu() {
    check_model(section_after_report_races_call_rcu);
}

fn mark(head: &RcuHead<'_>) {
    // SAFETY: the model's claim: the barrier orders this write before the
    // reads that follow it; loom checks it.
    OBJECT.marks[head.tag() as usize].with_mut(|m| unsafe { *m = 1 });
}

/// Reads a mark as the barrier's caller: the callback must have run, and
/// its write must happen before this read.
fn assert_marked(index: usize) {
    // SAFETY: as in `mark`.
    let marked = OBJECT.marks[index].with(|m| unsafe { *m });
    assert_eq!(marked, 1, "RCU violated: barrier returned before callback {index} ran");
}

/// A non-CPU thread queues a callback; CPU 0's quiescent report may run
/// it (CPU 0 polls the non-CPU queue) while CPU 1's barrier waits for it
/// and then reads what it wrote (RCU.8, RCU.9).
fn barrier_waits_for_callbacks() {
    init();
    RCU.call_rcu(&HEADS[0], &mark).unwrap();
    let poller = on_cpu(Some(0), || {
        drop(RCU.read_lock());
        RCU.quiescent(CpuId(0));
    });
    let waiter = on_cpu(Some(1), || {
        RCU.barrier();
        assert_marked(0);
    });
    poller.join().unwrap();
    waiter.join().unwrap();
}

#[test]
fn rcu_barrier_waits_for_callbacks() {
    check_model(barrier_waits_for_callbacks);
}

/// A head queued by a non-CPU thread and run by CPU 0's barrier is queued
/// again by CPU 1 as soon as it is free: the claim (RCU.7's Acquire CAS)
/// must see the previous run's read of the callback cell (RCU.8's Release
/// store of the link), or the two race on it.
fn head_requeued_by_another_cpu() {
    init();
    RCU.call_rcu(&HEADS[0], &mark).unwrap();
    let first = on_cpu(Some(0), || RCU.barrier());
    // The head is free once its run has begun (the callback owns it), so
    // the second run may overlap the first: it marks nothing.
    let second = on_cpu(Some(1), || {
        while RCU.call_rcu(&HEADS[0], &|_: &RcuHead<'_>| ()).is_err() {
            thread::yield_now();
        }
        RCU.barrier();
    });
    first.join().unwrap();
    second.join().unwrap();
    assert_marked(0);
}

#[test]
fn rcu_head_requeued_by_another_cpu() {
    check_model(head_requeued_by_another_cpu);
}

/// The reader's fence removed (RCU.1): store buffering lets the scan miss
/// the reader while the reader misses the unpublish.
#[cfg(memdesc_mutant = "rcu_reader_no_barrier")]
#[test]
fn mutant_rcu_reader_no_barrier_is_caught() {
    crate::testutil::assert_model_fails(cpu_reader_races_synchronize);
}

/// The scan takes a CPU with a section open for quiescent (RCU.5).
#[cfg(memdesc_mutant = "rcu_gp_ignores_readers")]
#[test]
fn mutant_rcu_gp_ignores_readers_is_caught() {
    crate::testutil::assert_model_fails(cpu_reader_races_synchronize);
}

/// Callbacks run without waiting for their grace period (RCU.8).
#[cfg(memdesc_mutant = "rcu_callback_before_gp")]
#[test]
fn mutant_rcu_callback_before_gp_is_caught() {
    crate::testutil::assert_model_fails(reader_races_call_rcu);
}

/// Frames of the node the frame model boots (the first hold its map).
const FRAME_MODEL_FRAMES: u64 = 16;

/// The frame model's shared state: the RCU, a frame's "contents" (a loom
/// cell standing in for the page-table entries a walker reads) and whether
/// a parent entry still links the frame.
struct FrameCtx<'a> {
    rcu: Rcu<'a>,
    linked: AtomicU32,
    contents: UnsafeCell<u64>,
}

// SAFETY: as for Object: each access to the cell is the model's claim that
// RCU orders it, and loom checks every one.
unsafe impl Sync for FrameCtx<'_> {}

/// The callback of the frame model: frees the frame (drops the folio) and
/// then writes its contents, as the frame's next owner would.
struct FreeAndReuse<'c> {
    ctx: &'c FrameCtx<'c>,
}

impl<'n> super::FrameCallback<'n> for FreeAndReuse<'_> {
    fn invoke(&self, folio: crate::buddy::FrozenFolio<'n>) {
        drop(folio);
        // SAFETY: the model's claim: after the grace period no walker can
        // still read the frame; loom checks it.
        self.ctx.contents.with_mut(|c| unsafe { *c = FREED });
    }
}

/// P5 with the head inside the frame (`call_rcu_frame`): a walker on CPU 0
/// reads a table frame inside its read section while CPU 1 unlinks the
/// frame and hands it, frozen, to `call_rcu_frame`; the callback frees it
/// and the next owner writes it. A frame handed back before the walker's
/// section ended is a race on the contents.
fn walker_races_frame_free() {
    let platform: &dyn Platform = &*PLATFORM;
    let config = crate::testutil::small_config(false);
    crate::testutil::with_node(FRAME_MODEL_FRAMES, &[], config, platform, |node| {
        let gfp = crate::buddy::Gfp::KERNEL.typed(crate::folio::PageType::PageTable);
        let frame = node.alloc_frozen(crate::folio::Order::ZERO, gfp).unwrap();
        let ctx = FrameCtx {
            rcu: Rcu::new(platform, RcuConfig::default()).unwrap(),
            linked: AtomicU32::new(1),
            contents: UnsafeCell::new(LIVE),
        };
        let to = super::FrameReturn::new(node, FreeAndReuse { ctx: &ctx });
        let addr = &ctx as *const FrameCtx<'_> as usize;
        let walker = on_cpu(Some(0), move || {
            // SAFETY: `ctx` lives until the join below.
            let ctx = unsafe { &*(addr as *const FrameCtx<'static>) };
            let guard = ctx.rcu.read_lock();
            // Relaxed: the RCU fences order it against the unlink.
            if ctx.linked.load(Ordering::Relaxed) == 1 {
                // SAFETY: the model's claim: RCU keeps the frame alive while
                // this section, which found it linked, is open.
                let seen = ctx.contents.with(|c| unsafe { *c });
                assert_eq!(seen, LIVE, "RCU violated: a walker read a freed table frame");
            }
            drop(guard);
            ctx.rcu.quiescent(CpuId(0));
        });
        CPU.with(|c| c.set(Some(1)));
        // Relaxed: the grace period orders it (RCU.3, RCU.4).
        ctx.linked.store(0, Ordering::Relaxed);
        ctx.rcu.call_rcu_frame(frame, &to).unwrap();
        ctx.rcu.barrier();
        walker.join().unwrap();
        // SAFETY: the barrier ordered the callback's write before this read.
        let contents = ctx.contents.with(|c| unsafe { *c });
        assert_eq!(contents, FREED, "RCU violated: the barrier returned before the frame came back");
        let audit = node.audit();
        assert_eq!((audit.allocated, audit.violations), (0, 0), "frame not freed cleanly: {:?}", audit.first_violation);
    });
}

#[test]
fn rcu_walker_races_frame_free() {
    check_model(walker_races_frame_free);
}

/// The frame handed back without a grace period (P5).
#[cfg(memdesc_mutant = "rcu_frame_free_without_gp")]
#[test]
fn mutant_rcu_frame_free_without_gp_is_caught() {
    crate::testutil::assert_model_fails(walker_races_frame_free);
}
