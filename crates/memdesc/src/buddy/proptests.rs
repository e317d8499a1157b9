//! The buddy allocator against a reference model: a set of allocated
//! (pfn, order) intervals.

use super::*;
use crate::memmap::{PhysRange, PAGE_SIZE};
use crate::platform::SpinPlatform;
use crate::testutil::with_node;
use proptest::prelude::*;
use proptest::test_runner::RngAlgorithm;
use std::collections::BTreeMap;
use std::vec::Vec;

#[derive(Clone, Debug)]
enum Op {
    Alloc { order: u32, kind: u8, frozen: bool },
    Free { index: usize },
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop_oneof![8 => 0u32..=3, 2 => 4u32..=10], 0u8..3, any::<bool>())
            .prop_map(|(order, kind, frozen)| Op::Alloc { order, kind, frozen }),
        5 => any::<usize>().prop_map(|index| Op::Free { index }),
        1 => Just(Op::Drain),
    ]
}

enum Held<'a> {
    Counted(FolioRef<'a>),
    Frozen(FrozenFolio<'a>),
}

impl Held<'_> {
    fn pfn(&self) -> Pfn {
        match self {
            Held::Counted(f) => f.pfn(),
            Held::Frozen(f) => f.pfn(),
        }
    }
}

/// Frames of the node: 16 MiB natively; 8 MiB under Miri, where booting
/// and auditing every frame dominate a case (still two zones of 4 MiB, so
/// order-10 requests can succeed and fail).
const FRAMES: u64 = if cfg!(miri) { 2048 } else { 4096 };

/// Most operations per case (fewer under Miri, which interprets each).
const MAX_OPS: usize = if cfg!(miri) { 64 } else { 160 };

/// The case generator: ChaCha natively; XorShift under Miri, where seeding
/// ChaCha took a quarter of each case's interpretation.
const RNG: RngAlgorithm = if cfg!(miri) { RngAlgorithm::XorShift } else { RngAlgorithm::ChaCha };

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_algorithm: RNG, ..ProptestConfig::default() })]

    #[test]
    fn buddy_matches_reference_model(ops in proptest::collection::vec(op(), 1..MAX_OPS), pcp in any::<bool>()) {
        // A reserved hole, two zones, tiny pcp lists.
        let frames = FRAMES;
        let reserved = [PhysRange::new(1000 * PAGE_SIZE as u64, 1100 * PAGE_SIZE as u64)];
        let config = NodeConfig {
            movable_percent: 50,
            pcp: PcpConfig { enabled: pcp, batch: 4, high: 12 },
            min_free_frames: Some(0),
        };
        with_node(frames, &reserved, config, &SpinPlatform, |n| {
            let boot_blocks = [n.zone_info(ZoneId::Normal).free_blocks, n.zone_info(ZoneId::Movable).free_blocks];
            let managed = n.vmstat().nr_managed;
            let mut model: BTreeMap<u64, u64> = BTreeMap::new(); // pfn -> frames
            let mut held: Vec<Held<'_>> = Vec::new();
            for op in ops {
                match op {
                    Op::Alloc { order, kind, frozen } => {
                        let gfp = [Gfp::KERNEL, Gfp::USER, Gfp::RECLAIMABLE][kind as usize];
                        let order = Order::new(order).unwrap();
                        let got = if frozen {
                            n.alloc_frozen(order, gfp).map(Held::Frozen)
                        } else {
                            n.alloc(order, gfp).map(Held::Counted)
                        };
                        let Ok(h) = got else {
                            // The node drained every pcp list before failing,
                            // so with full coalescing no aligned block of
                            // usable, unallocated frames may exist in a zone
                            // the request may use.
                            let zones: &[ZoneId] = if gfp.migratetype == Migratetype::Movable {
                                &[ZoneId::Movable, ZoneId::Normal]
                            } else {
                                &[ZoneId::Normal]
                            };
                            for &z in zones {
                                let info = n.zone_info(z);
                                let mut start = info.start.0.next_multiple_of(order.nr_pages());
                                while start + order.nr_pages() <= info.end.0 {
                                    let fits = (start..start + order.nr_pages()).all(|p| {
                                        n.memmap().page(Pfn(p)).is_some_and(|pg| !pg.page_type().is_unmanaged())
                                            && model.range(..=p).next_back().is_none_or(|(&a, &len)| a + len <= p)
                                    });
                                    prop_assert!(!fits, "order-{} block at {start} was free in {z}", order);
                                    start += order.nr_pages();
                                }
                            }
                            continue;
                        };
                        let pfn = h.pfn();
                        let nr = order.nr_pages();
                        prop_assert!(pfn.is_aligned(order.get()));
                        prop_assert!(!(1000..1100).contains(&pfn.0) && !(1000..1100).contains(&(pfn.0 + nr - 1)));
                        if let Some((&p, &len)) = model.range(..pfn.0 + nr).next_back() {
                            prop_assert!(p + len <= pfn.0, "overlap with {p}+{len}");
                        }
                        if gfp.migratetype != Migratetype::Movable {
                            prop_assert!(n.zone_info(ZoneId::Normal).end > pfn);
                        }
                        model.insert(pfn.0, nr);
                        held.push(h);
                    }
                    Op::Free { index } => {
                        if !held.is_empty() {
                            let h = held.swap_remove(index % held.len());
                            model.remove(&h.pfn().0);
                        }
                    }
                    Op::Drain => {
                        n.drain_all();
                    }
                }
                let allocated: u64 = model.values().sum();
                prop_assert_eq!(n.vmstat().nr_free_pages, managed - allocated);
            }
            drop(held);
            n.drain_all();
            let audit = n.audit();
            prop_assert_eq!(audit.violations, 0, "{:?}", audit.first_violation);
            prop_assert_eq!(audit.free, managed);
            let after = [n.zone_info(ZoneId::Normal).free_blocks, n.zone_info(ZoneId::Movable).free_blocks];
            prop_assert_eq!(after, boot_blocks, "full coalescing");
            let stat = n.vmstat();
            let allocated = stat.event(VmEvent::PgallocNormal) + stat.event(VmEvent::PgallocMovable);
            prop_assert_eq!(allocated, stat.event(VmEvent::Pgfree));
            Ok(())
        })?;
    }
}

/// Operations of the hot-add model: allocations, frees and hot-adds of one
/// section into a zone.
#[derive(Clone, Debug)]
enum HotOp {
    Alloc { order: u32, movable: bool },
    Free { index: usize },
    HotAdd { section: u64, movable: bool },
}

fn hot_op() -> impl Strategy<Value = HotOp> {
    prop_oneof![
        6 => (prop_oneof![8 => 0u32..=3, 1 => 8u32..=9], any::<bool>())
            .prop_map(|(order, movable)| HotOp::Alloc { order, movable }),
        4 => any::<usize>().prop_map(|index| HotOp::Free { index }),
        1 => (0..HOT_SECTIONS, any::<bool>()).prop_map(|(section, movable)| HotOp::HotAdd { section, movable }),
    ]
}

/// Sections of 512 frames, one pageblock each.
const HOT_ORDER: u32 = crate::memmap::PAGEBLOCK_ORDER;
/// RAM at boot (one section's worth), and the hot-pluggable sections after.
const HOT_BOOT: u64 = 1 << HOT_ORDER;
const HOT_SECTIONS: u64 = if cfg!(miri) { 1 } else { 4 };

proptest! {
    // Under Miri one small case: each step's audit walks every frame.
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 1 } else { 48 }, rng_algorithm: RNG, ..ProptestConfig::default() })]

    /// Random allocations, frees and hot-adds against a model of present
    /// sections and allocated intervals; the audit after every step.
    #[test]
    fn hot_add_matches_reference_model(ops in proptest::collection::vec(hot_op(), 1..if cfg!(miri) { 8 } else { 96 })) {
        let section_frames = 1u64 << HOT_ORDER;
        let total = HOT_BOOT + HOT_SECTIONS * section_frames;
        crate::testutil::with_hotplug_node(HOT_BOOT, total, HOT_ORDER, crate::testutil::small_config(true), &SpinPlatform, |n| {
            let meta = n.memmap().section_meta_frames();
            let mut managed = n.vmstat().nr_managed;
            let mut present: BTreeMap<u64, ZoneId> = BTreeMap::new(); // section index -> zone
            let mut model: BTreeMap<u64, u64> = BTreeMap::new(); // pfn -> frames
            let mut held: Vec<FolioRef<'_>> = Vec::new();
            let section_of = |pfn: u64| (pfn >= HOT_BOOT).then(|| (pfn - HOT_BOOT) / section_frames);
            for op in ops {
                match op {
                    HotOp::Alloc { order, movable } => {
                        let gfp = if movable { Gfp::USER } else { Gfp::KERNEL };
                        let order = Order::new(order).unwrap();
                        let nr = order.nr_pages();
                        match n.alloc(order, gfp) {
                            Ok(f) => {
                                let pfn = f.pfn().0;
                                prop_assert!(f.pfn().is_aligned(order.get()));
                                if let Some(s) = section_of(pfn) {
                                    let zone = present.get(&s).copied();
                                    prop_assert!(zone.is_some(), "frame {pfn} from an absent section");
                                    prop_assert!(movable || zone == Some(ZoneId::Normal), "kernel frame {pfn} from Movable");
                                    prop_assert!(pfn - HOT_BOOT - s * section_frames >= meta, "frame {pfn} is metadata");
                                    prop_assert_eq!(section_of(pfn + nr - 1), Some(s));
                                }
                                if let Some((&p, &len)) = model.range(..pfn + nr).next_back() {
                                    prop_assert!(p + len <= pfn, "overlap with {p}+{len}");
                                }
                                model.insert(pfn, nr);
                                held.push(f);
                            }
                            Err(_) => {
                                // Every pcp list was drained before failing:
                                // no aligned block of free frames may exist
                                // in a hot-added section the request may use.
                                for (&s, &zone) in &present {
                                    if !movable && zone == ZoneId::Movable {
                                        continue;
                                    }
                                    let start = HOT_BOOT + s * section_frames;
                                    let mut block = start + meta.next_multiple_of(nr);
                                    while block + nr <= start + section_frames {
                                        let taken = model.range(..block + nr).next_back().is_some_and(|(&a, &len)| a + len > block);
                                        prop_assert!(taken, "order-{} block at {block} was free", order);
                                        block += nr;
                                    }
                                }
                            }
                        }
                    }
                    HotOp::Free { index } => {
                        if !held.is_empty() {
                            let f = held.swap_remove(index % held.len());
                            model.remove(&f.pfn().0);
                        }
                    }
                    HotOp::HotAdd { section, movable } => {
                        let zone = if movable { ZoneId::Movable } else { ZoneId::Normal };
                        let start = (HOT_BOOT + section * section_frames) * PAGE_SIZE as u64;
                        let range = PhysRange::new(start, start + section_frames * PAGE_SIZE as u64);
                        match n.hot_add(range, zone) {
                            Ok(added) => {
                                prop_assert!(present.insert(section, zone).is_none(), "section {section} added twice");
                                prop_assert_eq!(added.managed, section_frames - meta);
                                managed += added.managed;
                            }
                            Err(e) => {
                                prop_assert!(present.contains_key(&section), "refused: {e}");
                                prop_assert_eq!(e, HotAddError::Present { section: Pfn(HOT_BOOT + section * section_frames) });
                            }
                        }
                    }
                }
                let allocated: u64 = model.values().sum();
                let stat = n.vmstat();
                prop_assert_eq!(stat.nr_managed, managed);
                prop_assert_eq!(stat.nr_free_pages, managed - allocated);
                let audit = n.audit();
                prop_assert_eq!(audit.violations, 0, "{:?}", audit.first_violation);
                prop_assert_eq!(audit.allocated, allocated);
                prop_assert_eq!(audit.free, managed - allocated);
                prop_assert_eq!(stat.nr_hot_added, present.len() as u64 * section_frames);
            }
            drop(held);
            n.drain_all();
            prop_assert_eq!(n.audit().free, managed);
            Ok(())
        })?;
    }
}
