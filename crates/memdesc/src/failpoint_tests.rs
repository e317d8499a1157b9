//! The failpoints fire where docs/PROTOCOLS.md says, in order, and `Skip`
//! runs the historical path at checks only (feature `failpoints`): seed
//! 000's rechecks, and seed 004's type check (`migrate::historical`).

use crate::buddy::Gfp;
use crate::folio::{try_get, GetError, Order};
use crate::platform::failpoints::{FailAction, Failpoint};
use crate::platform::{CpuId, Platform, WaitKey};
use crate::testutil::{small_config, with_node};
use std::sync::Mutex;
use std::vec::Vec;

/// Records every failpoint and answers Skip at those in `skip`.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Failpoint>>,
    skip: Vec<Failpoint>,
}

impl Recorder {
    fn take(&self) -> Vec<Failpoint> {
        core::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Platform for Recorder {
    fn current_cpu(&self) -> CpuId {
        CpuId(0)
    }
    fn nr_cpus(&self) -> u32 {
        1
    }
    fn wait(&self, _: WaitKey, _: &dyn Fn() -> bool) {}
    fn wake_all(&self, _: WaitKey) {}
    fn failpoint(&self, at: Failpoint) -> FailAction {
        self.seen.lock().unwrap().push(at);
        if self.skip.contains(&at) {
            FailAction::Skip
        } else {
            FailAction::Continue
        }
    }
}

#[test]
fn failpoints_fire_at_their_steps_in_protocol_order() {
    let recorder = Recorder::default();
    with_node(64, &[], small_config(false), &recorder, |node| {
        let folio = node.alloc(Order::TWO, Gfp::KERNEL).unwrap();
        assert_eq!(recorder.take(), [Failpoint::AllocPublish]);
        let got = try_get(node, folio.pfn().add(1), |_| true).unwrap();
        use Failpoint::*;
        assert_eq!(recorder.take(), [P1ReadHead, P1Increment, P1HeadRecheck, P1SourceRecheck]);
        drop(got);
        let pieces = folio.try_freeze().unwrap().split(Order::ZERO).unwrap();
        assert_eq!(recorder.take(), [SplitFrozen]);
        let mut n = 0;
        for piece in pieces {
            n += 1;
            let expected = if n == 4 { SplitUnfreezeHead } else { SplitPiece };
            assert_eq!(recorder.take(), [expected], "each new piece, then the head last, once");
            drop(piece);
            assert_eq!(recorder.take(), [FreeFolio]);
        }
        assert_eq!(recorder.take(), [], "no failpoint after the last piece");
    });
}

#[test]
fn skip_runs_the_historical_path_at_checks_only() {
    let recorder =
        Recorder { skip: std::vec![Failpoint::P1SourceRecheck, Failpoint::P1Increment], ..Recorder::default() };
    with_node(64, &[], small_config(false), &recorder, |node| {
        let folio = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
        // The source recheck says "moved", but the historical path skips it.
        let got = try_get(node, folio.pfn(), |_| false).expect("the check was skipped");
        drop(got);
        // Skip at P1.3, not a check, changes nothing: a free frame is refused.
        let pfn = folio.pfn();
        drop(folio);
        assert_eq!(try_get(node, pfn, |_| true).unwrap_err(), GetError::Free);
    });
}

#[test]
fn gup_fast_fires_walk_get_and_recheck_then_the_slow_path_when_it_gives_up() {
    use crate::gup::{get_user_pages_fast, GupFlags};
    use crate::pgtable::{AddressSpace, Mmu};
    use crate::rcu::{Rcu, RcuConfig};
    use Failpoint::*;
    let recorder = Recorder::default();
    with_node(256, &[], small_config(false), &recorder, |node| {
        let tables = Mmu::table_return(node);
        let rcu = Rcu::new(&recorder, RcuConfig::default()).unwrap();
        let mmu = Mmu::new(&rcu, &tables);
        let aspace = AddressSpace::new(&mmu).unwrap();
        let va = aspace.mmap_anon(crate::memmap::PAGE_SIZE as u64, true, false).unwrap();
        aspace.write(va, &[1]).unwrap();
        recorder.take();
        let mut out = [None];
        get_user_pages_fast(&aspace, va, 1, GupFlags::GET, &mut out).unwrap();
        assert_eq!(recorder.take(), [GupWalk, P1ReadHead, P1Increment, P1HeadRecheck, P1SourceRecheck, GupRecheck]);
        out[0] = None;
        // An address never faulted in: the walk finds nothing, the slow path
        // faults it in (an allocation, published) and takes it.
        let va = aspace.mmap_anon(crate::memmap::PAGE_SIZE as u64, true, false).unwrap();
        get_user_pages_fast(&aspace, va, 1, GupFlags::GET, &mut out).unwrap();
        let seen = recorder.take();
        assert_eq!(seen[..2], [GupWalk, GupSlowPath], "{seen:?}");
        drop((out, aspace));
        mmu.barrier();
    });
}

#[test]
fn isolate_fires_its_steps_and_skip_at_the_type_check_runs_seed_004s_design() {
    use crate::migrate::historical::{CountedSlab, RCU_FREE_SLAB_OPS, RCU_FREE_SLAB_WORD};
    use crate::migrate::{isolate_movable_page, CountingOps, IsolateError, MovableOpsRegistry};
    use crate::PageType;
    use Failpoint::*;
    const GET: [Failpoint; 4] = [P1ReadHead, P1Increment, P1HeadRecheck, P1SourceRecheck];
    let ops = CountingOps::new(RCU_FREE_SLAB_OPS);
    let mut registry = MovableOpsRegistry::new();
    registry.register(RCU_FREE_SLAB_OPS, &ops).unwrap();

    // The fixed design: ISO.1 to ISO.5 on a movable page.
    let recorder = Recorder::default();
    with_node(64, &[], small_config(false), &recorder, |node| {
        let gfp = Gfp::KERNEL.typed(PageType::Movable { ops: RCU_FREE_SLAB_OPS });
        let page = node.alloc(Order::ZERO, gfp).unwrap();
        recorder.take();
        drop(isolate_movable_page(node, &registry, page.pfn()).unwrap());
        assert_eq!(recorder.take(), [GET.as_slice(), &[IsoTypeCheck, IsoTrylock, IsoOps]].concat());
        assert_eq!(ops.misuses(), 0);
    });

    // Skip at the type check and both slab tests: Hugh Dickins' kernel,
    // "movable" from `mapping`, calls the ops on a counted slab frame.
    let skip = std::vec![IsoTypeCheck, IsoSlabTest, IsoSlabRecheck];
    let recorder = Recorder { skip, ..Recorder::default() };
    with_node(64, &[], small_config(false), &recorder, |node| {
        let slab = CountedSlab::alloc(node, 1, 0x40).unwrap();
        // The slab's own state does not look movable.
        let refused = isolate_movable_page(node, &registry, slab.pfn()).map(|_| ());
        assert_eq!(refused, Err(IsolateError::NotMovable(PageType::Slab { cache: 1 })));
        slab.rcu_head();
        const _: () = assert!(crate::migrate::historical::is_movable_word(RCU_FREE_SLAB_WORD));
        recorder.take();
        let isolated = isolate_movable_page(node, &registry, slab.pfn()).expect("the historical design isolates it");
        assert_eq!(
            recorder.take(),
            [GET.as_slice(), &[IsoTypeCheck, IsoSlabTest, IsoMovableTest, IsoSlabRecheck, IsoTrylock, IsoOps]].concat()
        );
        assert_eq!((ops.misuses(), ops.slab_misuses()), (1, 1), "the ops' check reports the slab frame");
        drop(isolated);
        slab.free();
        assert_eq!(recorder.take(), [HistoricalSlabFree, FreeFolio]);
        assert_eq!(node.audit().allocated, 0);
    });
}
