//! The isolate step, one refusal per step, the putback, and the scanner's
//! counts over a node holding every kind of frame.

use super::*;
use crate::buddy::{FrozenFolio, Gfp};
use crate::folio::Order;
use crate::platform::SpinPlatform;
use crate::rcu::{FrameReturn, Rcu, RcuConfig};
use crate::testutil::{small_config, with_node};
use std::string::ToString;

const FRAMES: u64 = 64;
const OPS: u16 = 1;

fn movable<'n>(node: &'n Node<'n>, order: Order) -> FolioRef<'n> {
    node.alloc(order, Gfp::KERNEL.typed(PageType::Movable { ops: OPS })).expect("alloc")
}

fn registry(ops: &CountingOps) -> MovableOpsRegistry<'_> {
    let mut registry = MovableOpsRegistry::new();
    registry.register(OPS, ops).expect("register");
    registry
}

/// A driver that never gives its pages up.
struct Stubborn;

impl MovableOps for Stubborn {
    fn name(&self) -> &'static str {
        "stubborn"
    }
    fn isolate(&self, _folio: &FolioRef<'_>) -> bool {
        false
    }
    fn putback(&self, _folio: &FolioRef<'_>) {
        panic!("putback of a page never isolated");
    }
}

#[test]
fn isolates_a_movable_page_once_and_puts_it_back_on_drop() {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let ops = CountingOps::new(OPS);
        let registry = registry(&ops);
        let page = movable(node, Order::ONE);
        // A tail's pfn isolates the whole folio.
        let isolated = isolate_movable_page(node, &registry, page.pfn().add(1)).expect("isolated");
        assert_eq!(isolated.folio().pfn(), page.pfn());
        assert_eq!(isolated.ops_name(), "counting");
        assert!(page.head().flags().contains(PageFlags::ISOLATED));
        assert_eq!(page.ref_count(), 2, "the isolated page holds its reference");
        // ISO.4: a second scanner is refused.
        let again = isolate_movable_page(node, &registry, page.pfn()).map(|_| ());
        assert_eq!(again, Err(IsolateError::AlreadyIsolated));
        drop(isolated);
        assert_eq!((ops.isolated(), ops.put_back(), ops.misuses()), (1, 1, 0));
        assert!(!page.head().flags().intersects(PageFlags(PageFlags::ISOLATED.0 | PageFlags::LOCKED.0)));
        assert_eq!(page.ref_count(), 1);
        // Put back, it may be isolated again.
        drop(isolate_movable_page(node, &registry, page.pfn()).expect("isolated again"));
        drop(page);
        assert_eq!(node.audit().allocated, 0);
    });
}

#[test]
fn each_step_refuses_with_its_reason_and_leaves_nothing_behind() {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let ops = CountingOps::new(OPS);
        let mut registry = registry(&ops);
        registry.register(2, &Stubborn).unwrap();
        let iso = |pfn: Pfn| isolate_movable_page(node, &registry, pfn).map(|_| ());

        // ISO.1: frozen slab and page-table frames, a free frame.
        let slab = node.alloc_frozen(Order::ZERO, Gfp::KERNEL.typed(PageType::Slab { cache: 3 })).unwrap();
        let table = node.alloc_frozen(Order::ZERO, Gfp::KERNEL.typed(PageType::PageTable)).unwrap();
        assert_eq!(iso(slab.pfn()), Err(IsolateError::Get(GetError::Frozen)));
        assert_eq!(iso(table.pfn()), Err(IsolateError::Get(GetError::Frozen)));
        assert_eq!(iso(Pfn(FRAMES + 10)), Err(IsolateError::Get(GetError::OutOfRange)));
        // ISO.2: counted but not movable; movable with no ops.
        let anon = node.alloc(Order::ZERO, Gfp::USER).unwrap();
        assert_eq!(iso(anon.pfn()), Err(IsolateError::NotMovable(PageType::Anon)));
        let orphan = node.alloc(Order::ZERO, Gfp::KERNEL.typed(PageType::Movable { ops: 5 })).unwrap();
        assert_eq!(iso(orphan.pfn()), Err(IsolateError::NoOps(5)));
        // ISO.3: locked by someone.
        let page = movable(node, Order::ZERO);
        let locked = page.try_lock().unwrap();
        assert_eq!(iso(page.pfn()), Err(IsolateError::Busy));
        drop(locked);
        // ISO.5: the driver refuses.
        let stubborn = node.alloc(Order::ZERO, Gfp::KERNEL.typed(PageType::Movable { ops: 2 })).unwrap();
        assert_eq!(iso(stubborn.pfn()), Err(IsolateError::Refused));

        for folio in [&anon, &orphan, &page, &stubborn] {
            assert_eq!(folio.ref_count(), 1, "a refusal left a reference on {}", folio.pfn());
            assert!(!folio.head().flags().intersects(PageFlags(PageFlags::ISOLATED.0 | PageFlags::LOCKED.0)));
        }
        assert_eq!(ops.isolated(), 0);
        assert_eq!((slab.head().ref_count(), table.head().ref_count()), (0, 0));
        drop((slab, table, anon, orphan, page, stubborn));
        let audit = node.audit();
        assert_eq!((audit.allocated, audit.violations), (0, 0));
    });
}

#[test]
fn registry_refuses_ids_out_of_range_and_taken() {
    let ops = CountingOps::new(0);
    let mut registry = MovableOpsRegistry::new();
    assert_eq!(registry.register(MOVABLE_OPS_MAX as u16, &ops), Err(RegisterError::OutOfRange(MOVABLE_OPS_MAX as u16)));
    registry.register(0, &ops).unwrap();
    assert_eq!(registry.register(0, &ops), Err(RegisterError::Taken(0)));
    assert!(registry.get(0).is_some() && registry.get(1).is_none() && registry.get(999).is_none());
}

#[test]
fn ops_report_a_call_on_a_slab_frame() {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let ops = CountingOps::new(OPS);
        let kernel = node.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
        let misuse = ops.check(&kernel).unwrap_err();
        assert_eq!(misuse.found, PageType::Kernel);
        assert!(misuse.to_string().contains("not movable"), "{misuse}");
        assert_eq!((ops.misuses(), ops.slab_misuses()), (1, 0));
        let good = movable(node, Order::ZERO);
        assert_eq!(ops.check(&good), Ok(()));
        let text = OpsMisuse { pfn: Pfn(7), found: PageType::Slab { cache: 1 } }.to_string();
        assert!(text.starts_with("movable ops called on a slab frame"), "{text}");
    });
}

#[test]
fn scanner_counts_every_kind_of_frame_and_never_holds_a_slab() {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let ops = CountingOps::new(OPS);
        let registry = registry(&ops);
        let slabs: std::vec::Vec<FrozenFolio<'_>> = (0..3)
            .map(|c| node.alloc_frozen(Order::ONE, Gfp::KERNEL.typed(PageType::Slab { cache: c })).unwrap())
            .collect();
        let table = node.alloc_frozen(Order::ZERO, Gfp::KERNEL.typed(PageType::PageTable)).unwrap();
        let anon = node.alloc(Order::TWO, Gfp::USER).unwrap();
        let movables = [movable(node, Order::ZERO), movable(node, Order::TWO)];
        let busy = movable(node, Order::ZERO);
        let lock = busy.try_lock().unwrap();

        let mut kept = std::vec::Vec::new();
        let stats = scan_isolate(node, &registry, Pfn(0)..Pfn(FRAMES), |page| kept.push(page));
        drop(lock);
        // Two frames per slab (its tail refuses the same way), one table.
        assert_eq!(stats.frozen_slab, 6, "{stats:?}");
        assert_eq!(stats.frozen_page_table, 1, "{stats:?}");
        assert_eq!(stats.isolated, 2, "{stats:?}");
        assert_eq!(stats.busy, 1, "{stats:?}");
        // A refused folio is not skipped (its order was known only under the
        // reference dropped with the refusal): each of the anon folio's four
        // pfns counts.
        assert_eq!(stats.not_movable, 4, "{stats:?}");
        assert!(stats.free > 0 && stats.other > 0, "{stats:?}");
        let sum = stats.free
            + stats.frozen_slab
            + stats.frozen_page_table
            + stats.frozen_other
            + stats.other
            + stats.not_movable
            + stats.isolated
            + stats.busy;
        assert_eq!(sum, stats.scanned);
        // The isolated order-2 folio counted once for its four pfns.
        assert_eq!(stats.scanned, FRAMES - 3);
        assert_eq!((ops.isolated(), ops.misuses()), (2, 0));
        for slab in &slabs {
            assert_eq!(slab.head().ref_count(), 0, "the scanner counted a slab");
        }
        drop(kept);
        assert_eq!(ops.put_back(), 2);
        drop((slabs, table, anon, movables, busy));
        let audit = node.audit();
        assert_eq!((audit.allocated, audit.violations), (0, 0));
    });
}

#[test]
fn a_slab_frame_waiting_for_its_grace_period_stays_refused() {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let ops = CountingOps::new(OPS);
        let registry = registry(&ops);
        let free = |slab: FrozenFolio<'_>| drop(slab);
        let slabs = FrameReturn::new(node, &free);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
        let mut slab = node.alloc_frozen(Order::ZERO, Gfp::KERNEL.typed(PageType::Slab { cache: 1 })).unwrap();
        let pfn = slab.pfn();
        // Slab state with the historical "movable" bit set, then the RCU
        // head over the same words: the type tag decides, not the words.
        for word in 0..4 {
            slab.set_owner_word(word, 0xffff_ffff_8113_03aa);
        }
        let reader = rcu.read_lock();
        rcu.call_rcu_frame(slab, &slabs).map_err(|(_, e)| e).unwrap();
        rcu.poll();
        let stats = scan_isolate(node, &registry, pfn..pfn.add(1), |_| panic!("isolated a slab frame"));
        assert_eq!(stats.frozen_slab, 1, "{stats:?}");
        drop(reader);
        rcu.barrier();
        assert_eq!(node.audit().allocated, 0);
        assert_eq!(ops.isolated(), 0);
    });
}
