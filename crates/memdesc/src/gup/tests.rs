//! GUP on one CPU: fast and slow paths, GET and PIN, batching per folio,
//! pins outliving munmap, and every refusal.

use super::*;
use crate::buddy::Node;
use crate::folio::GUP_PIN_COUNTING_BIAS;
use crate::pgtable::HUGE_SIZE;
use crate::platform::SpinPlatform;
use crate::rcu::{Rcu, RcuConfig};
use crate::testutil::{small_config, with_node};

/// Frames for tests that need one 2 MiB folio.
const FRAMES: u64 = 2048;

fn with_aspace(frames: u64, f: impl FnOnce(&Node<'_>, &AddressSpace<'_, '_>)) {
    with_node(frames, &[], small_config(false), &SpinPlatform, |node| {
        let tables = Mmu::table_return(node);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).expect("rcu");
        let mmu = Mmu::new(&rcu, &tables);
        {
            let aspace = AddressSpace::new(&mmu).unwrap();
            f(node, &aspace);
            assert_eq!(aspace.audit().violations, 0);
        }
        mmu.barrier();
        assert_eq!(node.audit().allocated, 0, "every frame is back");
    });
}

fn slots<'m, 'a>(n: usize) -> std::vec::Vec<Option<GupRun<'m, 'a>>> {
    (0..n).map(|_| None).collect()
}

fn refcount(node: &Node<'_>, pfn: Pfn) -> u32 {
    node.memmap().page(pfn).unwrap().ref_count()
}

#[test]
fn get_on_small_pages_takes_one_reference_each_and_drop_puts_them() {
    with_aspace(256, |node, aspace| {
        let va = aspace.mmap_anon(4 * PAGE, true, false).unwrap();
        for i in 0..4 {
            aspace.write(va + i * PAGE, &[i as u8 + 1]).unwrap();
        }
        let mut out = slots(4);
        let n = get_user_pages_fast(aspace, va, 4, GupFlags::GET, &mut out).unwrap();
        assert_eq!(n, 4, "four small folios, four runs");
        let mmu = aspace.mmu();
        assert_eq!((mmu.event(MmEvent::GupFast), mmu.event(MmEvent::GupFastFallback)), (1, 0));
        for (i, run) in out.iter().flatten().enumerate() {
            assert_eq!(run.va(), va + i as u64 * PAGE);
            assert_eq!(refcount(node, run.first_pfn()), 2, "the mapping's reference and ours");
            assert!(!run.is_pinned() && !run.maybe_dma_pinned());
            let mut byte = [0u8];
            run.reader().read(&mut byte);
            assert_eq!(byte[0], i as u8 + 1, "the run reads the page the address maps");
        }
        let pfn = out[0].as_ref().unwrap().first_pfn();
        out.clear();
        assert_eq!(refcount(node, pfn), 1);
    });
}

#[test]
fn pins_on_a_small_folio_are_a_bias_and_unpin_removes_it() {
    with_aspace(256, |node, aspace| {
        let va = aspace.mmap_anon(PAGE, true, false).unwrap();
        aspace.write(va, b"dma").unwrap();
        let mut out = slots(1);
        get_user_pages_fast(aspace, va, 1, GupFlags::PIN, &mut out).unwrap();
        let run = out[0].take().unwrap();
        assert!(run.is_pinned() && run.maybe_dma_pinned());
        assert_eq!(refcount(node, run.first_pfn()), 1 + GUP_PIN_COUNTING_BIAS);
        let pfn = run.first_pfn();
        drop(run);
        assert_eq!(refcount(node, pfn), 1);
        assert_eq!(aspace.mmu().event(MmEvent::Unpins), 1);
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a 2 MiB folio per test: minutes under Miri; the same unsafe paths run under Miri in the other THP tests"
)]
fn a_pmd_mapped_folio_is_pinned_with_one_add_for_all_its_pages() {
    with_aspace(FRAMES, |node, aspace| {
        let va = aspace.mmap_anon(HUGE_SIZE, true, true).unwrap();
        aspace.write(va, b"x").unwrap();
        let mut out = slots(1);
        assert_eq!(get_user_pages_fast(aspace, va, HUGE_FRAMES, GupFlags::PIN_WRITE, &mut out).unwrap(), 1);
        let run = out[0].as_ref().unwrap();
        assert_eq!(run.nr_pages() as u64, HUGE_FRAMES);
        let head = node.memmap().page(run.folio_pfn()).unwrap();
        assert_eq!(head.ref_count() as u64, 1 + HUGE_FRAMES);
        assert_eq!(u64::from(head.pincount.load(crate::sync::Ordering::Relaxed)), HUGE_FRAMES);
        assert!(run.maybe_dma_pinned());
        out.clear();
        assert_eq!(head.ref_count(), 1);
        assert_eq!(head.pincount.load(crate::sync::Ordering::Relaxed), 0, "unpinned in one batch");
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a 2 MiB folio per test: minutes under Miri; the same unsafe paths run under Miri in the other THP tests"
)]
fn a_pte_mapped_large_folio_is_taken_in_runs_around_the_hole() {
    with_aspace(FRAMES, |node, aspace| {
        let va = aspace.mmap_anon(HUGE_SIZE, true, true).unwrap();
        aspace.write(va, b"x").unwrap();
        aspace.munmap(va + 7 * PAGE, PAGE).unwrap();
        let mut out = slots(4);
        // Pages 0..16 without 7: the fast path takes 0..7, stops at the
        // hole, and the slow path reports it unmapped.
        let err = get_user_pages_fast(aspace, va, 16, GupFlags::GET, &mut out).unwrap_err();
        assert_eq!(err, GupError::Fault(Fault::NotMapped(va + 7 * PAGE)));
        assert!(out.iter().all(Option::is_none), "nothing is held on error");
        let n = get_user_pages_fast(aspace, va + 8 * PAGE, 8, GupFlags::GET, &mut out).unwrap();
        assert_eq!(n, 1, "eight PTEs of one folio, one run, one add");
        let run = out[0].as_ref().unwrap();
        let head = node.memmap().page(run.folio_pfn()).unwrap();
        assert_eq!(head.ref_count() as u64, HUGE_FRAMES - 1 + 8);
        out.clear();
    });
}

#[test]
fn unfaulted_pages_fall_back_to_the_slow_path() {
    with_aspace(256, |_, aspace| {
        let va = aspace.mmap_anon(3 * PAGE, true, false).unwrap();
        let mut out = slots(3);
        assert_eq!(get_user_pages_fast(aspace, va, 3, GupFlags::PIN, &mut out).unwrap(), 3);
        let mmu = aspace.mmu();
        assert_eq!((mmu.event(MmEvent::GupFastFallback), mmu.event(MmEvent::GupSlow)), (1, 1));
        assert_eq!(mmu.event(MmEvent::Pins), 3);
        out.clear();
        assert_eq!(mmu.event(MmEvent::Unpins), 3);
    });
}

#[test]
fn a_write_gup_on_a_read_only_mapping_fails_and_holds_nothing() {
    with_aspace(256, |node, aspace| {
        let va = aspace.mmap_anon(2 * PAGE, false, false).unwrap();
        let mut buf = [0u8; 1];
        aspace.read(va, &mut buf).unwrap();
        let mut out = slots(2);
        let err = get_user_pages_fast(aspace, va, 2, GupFlags::PIN_WRITE, &mut out).unwrap_err();
        assert_eq!(err, GupError::Fault(Fault::Protection(va)));
        assert!(out.iter().all(Option::is_none));
        let before = node.audit();
        assert_eq!(get_user_pages_fast(aspace, va, 2, GupFlags::PIN, &mut out).unwrap(), 2, "reading is allowed");
        out.clear();
        assert_eq!(node.audit().allocated, before.allocated + 1, "the second page was faulted in");
    });
}

#[test]
fn bad_requests_are_typed_errors() {
    with_aspace(256, |_, aspace| {
        let va = aspace.mmap_anon(4 * PAGE, true, false).unwrap();
        let mut out = slots(2);
        assert_eq!(
            get_user_pages_fast(aspace, va + 1, 1, GupFlags::GET, &mut out).unwrap_err(),
            GupError::Unaligned(va + 1)
        );
        assert_eq!(get_user_pages_fast(aspace, va, 0, GupFlags::GET, &mut out).unwrap_err(), GupError::Empty);
        assert!(matches!(
            get_user_pages_fast(aspace, USER_END - PAGE, 2, GupFlags::GET, &mut out),
            Err(GupError::OutOfRange { .. })
        ));
        assert_eq!(
            get_user_pages_fast(aspace, va, 4, GupFlags::GET, &mut out).unwrap_err(),
            GupError::BufferTooSmall { slots: 2 }
        );
        assert!(out.iter().all(Option::is_none), "nothing is held after a refusal");
        let mmu = aspace.mmu();
        assert!(get_user_pages_fast(aspace, va, 4, GupFlags::PIN, &mut out).is_err());
        assert_eq!(mmu.event(MmEvent::Pins), mmu.event(MmEvent::Unpins), "a refused pin is counted both ways");
        let hole = va + 8 * PAGE;
        assert_eq!(
            get_user_pages(aspace, hole, 1, GupFlags::GET, &mut out).unwrap_err(),
            GupError::Fault(Fault::NotMapped(hole))
        );
    });
}

#[test]
fn pinned_pages_outlive_munmap_in_place_until_unpinned() {
    with_aspace(256, |node, aspace| {
        let va = aspace.mmap_anon(PAGE, true, false).unwrap();
        aspace.write(va, b"still here").unwrap();
        let allocated = node.audit().allocated;
        let mut out = slots(1);
        get_user_pages_fast(aspace, va, 1, GupFlags::PIN, &mut out).unwrap();
        aspace.munmap(va, PAGE).unwrap();
        let run = out[0].take().unwrap();
        let mut buf = [0u8; 10];
        run.reader().read(&mut buf);
        assert_eq!(&buf, b"still here", "the pinned page keeps its bytes after munmap");
        assert_eq!(refcount(node, run.first_pfn()), GUP_PIN_COUNTING_BIAS, "only the pin holds it");
        aspace.mmu().barrier();
        assert!(node.audit().allocated < allocated, "the tables went, the page did not");
        drop(run);
    });
}
