//! THP splits on one CPU: uniform and around a page, refused by a pin and
//! retried, with holes, and the refusals.

use super::*;
use crate::buddy::Node;
use crate::gup::{get_user_pages_fast, GupFlags};
use crate::pgtable::{Mmu, HUGE_FRAMES, HUGE_SIZE};
use crate::platform::SpinPlatform;
use crate::rcu::{Rcu, RcuConfig};
use crate::testutil::{small_config, with_node};

const FRAMES: u64 = 2048;

/// A THP area of one PMD-mapped folio with a stamp on every 8th page.
fn with_thp(f: impl FnOnce(&Node<'_>, &AddressSpace<'_, '_>, u64)) {
    with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
        let tables = Mmu::table_return(node);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).expect("rcu");
        let mmu = Mmu::new(&rcu, &tables);
        {
            let aspace = AddressSpace::new(&mmu).unwrap();
            let va = aspace.mmap_anon(HUGE_SIZE, true, true).unwrap();
            for i in (0..HUGE_FRAMES).step_by(8) {
                aspace.write(va + i * PAGE, &i.to_le_bytes()).unwrap();
            }
            assert_eq!(mmu.event(MmEvent::ThpFaultAlloc), 1);
            f(node, &aspace, va);
            assert_eq!(aspace.audit().violations, 0, "{:?}", aspace.audit());
        }
        mmu.barrier();
        assert_eq!(node.audit().allocated, 0);
        assert_eq!(node.audit().violations, 0);
    });
}

fn stamps_intact(aspace: &AddressSpace<'_, '_>, va: u64, skip: Option<u64>) {
    for i in (0..HUGE_FRAMES).step_by(8).filter(|&i| Some(i) != skip) {
        let mut buf = [0u8; 8];
        aspace.read(va + i * PAGE, &mut buf).unwrap();
        assert_eq!(u64::from_le_bytes(buf), i, "page {i} keeps its bytes across the split");
    }
}

#[test]
fn a_uniform_split_to_order_0_remaps_every_page_with_its_bytes() {
    with_thp(|_, aspace, va| {
        let done = split_folio(aspace, va + 3 * PAGE, SplitMode::Uniform(Order::ZERO)).unwrap();
        assert_eq!(done, SplitDone { folios: HUGE_FRAMES as u32, remapped: HUGE_FRAMES as u32, freed: 0 });
        let mmu = aspace.mmu();
        assert_eq!((mmu.event(MmEvent::ThpSplitPmd), mmu.event(MmEvent::ThpSplitPage)), (1, 1));
        let audit = aspace.audit();
        assert_eq!((audit.pte_mappings, audit.pmd_mappings, audit.violations), (HUGE_FRAMES, 0, 0));
        stamps_intact(aspace, va, None);
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a 2 MiB folio per test: minutes under Miri; the same unsafe paths run under Miri in the other THP tests"
)]
fn a_split_around_a_page_keeps_the_rest_in_large_pieces() {
    with_thp(|_, aspace, va| {
        let done = split_folio(aspace, va + 37 * PAGE, SplitMode::Around(Order::ZERO)).unwrap();
        assert_eq!(done.folios, 1 + crate::pgtable::TABLE_BITS, "order 9 around one page: 10 folios");
        assert_eq!(done.remapped as u64, HUGE_FRAMES);
        stamps_intact(aspace, va, None);
        // The pieces are real folios: the one around page 37 is order 0 and
        // can be split no further; its neighbour of order 1 can.
        assert_eq!(
            split_folio(aspace, va + 37 * PAGE, SplitMode::Uniform(Order::ZERO)),
            Err(ThpSplitError::TooSmall { order: Order::ZERO })
        );
        assert!(split_folio(aspace, va + 38 * PAGE, SplitMode::Uniform(Order::ZERO)).is_ok());
    });
}

#[test]
fn a_pin_refuses_the_split_and_leaves_everything_in_place() {
    with_thp(|node, aspace, va| {
        let mut out = [None];
        get_user_pages_fast(aspace, va + 5 * PAGE, 1, GupFlags::PIN, &mut out).unwrap();
        let head = out[0].as_ref().unwrap().folio_pfn();
        let before = node.memmap().page(head).unwrap().ref_count();
        let err = split_folio(aspace, va, SplitMode::Uniform(Order::ZERO)).unwrap_err();
        assert!(matches!(err, ThpSplitError::Busy { .. }), "{err:?}");
        assert_eq!(aspace.mmu().event(MmEvent::ThpSplitPageFailed), 1);
        // The PMD was split into PTEs (same mappings), the folio is whole.
        assert_eq!(node.memmap().page(head).unwrap().ref_count(), before - 1 + HUGE_FRAMES as u32);
        assert_eq!(aspace.audit().violations, 0);
        stamps_intact(aspace, va, None);
        drop(out);
        let done = split_folio(aspace, va, SplitMode::Uniform(Order::ZERO)).unwrap();
        assert_eq!(done.folios as u64, HUGE_FRAMES);
        stamps_intact(aspace, va, None);
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a 2 MiB folio per test: minutes under Miri; the same unsafe paths run under Miri in the other THP tests"
)]
fn pieces_nothing_maps_are_freed() {
    with_thp(|node, aspace, va| {
        aspace.munmap(va + 8 * PAGE, PAGE).unwrap();
        let allocated = node.audit().allocated;
        let done = split_folio(aspace, va, SplitMode::Uniform(Order::ZERO)).unwrap();
        assert_eq!(done.freed, 1);
        assert_eq!(done.remapped as u64, HUGE_FRAMES - 1);
        assert_eq!(node.audit().allocated, allocated - 1, "the unmapped page went back to the allocator");
        stamps_intact(aspace, va, Some(8));
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a 2 MiB folio per test: minutes under Miri; the same unsafe paths run under Miri in the other THP tests"
)]
fn refusals() {
    with_thp(|_, aspace, va| {
        let hole = va + HUGE_SIZE;
        assert_eq!(split_folio(aspace, hole, SplitMode::Uniform(Order::ZERO)), Err(ThpSplitError::NotMapped(hole)));
        let order9 = Order::try_from(crate::pgtable::TABLE_BITS).unwrap();
        assert_eq!(split_folio(aspace, va, SplitMode::Uniform(order9)), Err(ThpSplitError::TooSmall { order: order9 }));
        assert_eq!(aspace.mmu().event(MmEvent::ThpSplitPage), 0);
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a 2 MiB folio per test: minutes under Miri; the same unsafe paths run under Miri in the other THP tests"
)]
fn a_partial_unmap_queues_the_folio_and_the_deferred_split_frees_the_rest() {
    with_thp(|node, aspace, va| {
        aspace.munmap(va + 8 * PAGE, 4 * PAGE).unwrap();
        assert_eq!(aspace.mmu().event(MmEvent::ThpDeferredSplit), 1, "queued once, not per page");
        let allocated = node.audit().allocated;
        let done = split_deferred(aspace);
        assert_eq!(done, DeferredOutcome { split: 1, busy: 0, gone: 0 });
        assert_eq!(node.audit().allocated, allocated - 4, "the four unmapped pages went back");
        stamps_intact(aspace, va, Some(8));
        assert_eq!(split_deferred(aspace), DeferredOutcome::default(), "the queue is drained");
    });
}
