//! The free path and the raw entry points trust nothing: every misuse a
//! check can see gets a typed error or a quarantine with a bad-page report,
//! never a counted block on a free list or a panic inside the memory map.

use super::super::*;
use crate::folio::GetError;
use crate::memmap::{PhysRange, PAGE_SIZE};
use crate::platform::SpinPlatform;
use crate::testutil::{small_config, with_node, with_node_on_cpu0, TestMemory};

const ONE: NonZeroU32 = NonZeroU32::MIN;

fn node(f: impl FnOnce(&Node<'_>)) {
    with_node(1024, &[PhysRange::new(0, 4 * PAGE_SIZE as u64)], small_config(true), &SpinPlatform, f)
}

/// The one bad-page reason logged so far.
fn only_report(n: &Node<'_>) -> BadPageReport {
    let (count, _, reports) = n.bad_pages();
    assert_eq!(count, 1, "expected exactly one bad-page report: {reports:?}");
    reports[0].unwrap()
}

/// vmstat's quarantined frames and the audit's agree, and every managed
/// frame is free, quarantined or allocated.
fn assert_accounts(n: &Node<'_>) {
    let (vm, audit) = (n.vmstat(), n.audit());
    assert_eq!(vm.nr_quarantined, audit.quarantined, "vmstat and audit disagree on quarantined frames");
    assert_eq!(vm.nr_free_pages + vm.nr_quarantined + audit.allocated, vm.nr_managed);
}

#[test]
fn freeing_a_frozen_folio_that_was_counted_quarantines_it() {
    node(|n| {
        let frozen = n.alloc_frozen(Order::ONE, Gfp::KERNEL).unwrap();
        let pfn = frozen.pfn();
        // SAFETY: deliberately wrong (the misuse under test): the frozen
        // handle still lives. The unfreeze acts on a valid frozen folio.
        unsafe { n.unfreeze_pfn(pfn, ONE) }.unwrap();
        drop(frozen);
        let report = only_report(n);
        assert_eq!((report.pfn, report.reason), (pfn, BadPageReason::NonzeroRefcount));
        assert_eq!(n.memmap().page(pfn).unwrap().page_type(), PageType::Quarantined);
        // The counted reference can no longer be put onto a free list, and
        // the frames are never handed out again.
        // SAFETY: the raw reference made by the unfreeze above.
        assert_eq!(unsafe { n.put_pfn(pfn) }, Err(RawError::Unmanaged(pfn, PageType::Quarantined)));
        let mut held = std::vec::Vec::new();
        while let Ok(f) = n.alloc(Order::ZERO, Gfp::KERNEL) {
            assert!(f.pfn() != pfn && f.pfn() != pfn.add(1), "a quarantined frame was handed out");
            held.push(f);
        }
        drop(held);
        assert_eq!(n.audit().violations, 0);
        assert_accounts(n);
    });
}

#[test]
fn a_folio_quarantined_with_a_live_reference_is_reported_once() {
    node(|n| {
        let frozen = n.alloc_frozen(Order::ZERO, Gfp::KERNEL).unwrap();
        let pfn = frozen.pfn();
        // SAFETY: deliberately wrong (the misuse under test): the frozen
        // handle still lives when the folio is counted and a handle made
        // for that count.
        let counted = unsafe {
            n.unfreeze_pfn(pfn, ONE).unwrap();
            FolioRef::from_raw(n, pfn).unwrap()
        };
        drop(frozen);
        assert_eq!(only_report(n).reason, BadPageReason::NonzeroRefcount);
        // The last reference goes: the frame stays quarantined, counted and
        // reported once.
        drop(counted);
        assert_eq!(only_report(n).reason, BadPageReason::NonzeroRefcount);
        assert_eq!(n.memmap().page(pfn).unwrap().page_type(), PageType::Quarantined);
        assert_accounts(n);
    });
}

#[test]
fn a_counted_folio_quarantined_at_free_stays_out_when_its_holder_lets_go() {
    node(|n| {
        let counted = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        let pfn = counted.pfn();
        let keep = counted.clone();
        // SAFETY: deliberately wrong: a frozen handle over a counted folio
        // is refused by the check, so nothing is made.
        let err = unsafe { crate::folio::FrozenFolio::from_raw(n, pfn) }.unwrap_err();
        assert_eq!(err, RawError::NotFrozen { pfn, refcount: 2 });
        drop(counted);
        drop(keep);
        assert_eq!(n.bad_pages().0, 0);
        assert_accounts(n);
    });
}

#[test]
fn raw_constructors_check_what_they_can_see() {
    node(|n| {
        let end = n.memmap().end_pfn();
        let folio = n.alloc(Order::TWO, Gfp::USER).unwrap();
        let (head, tail) = (folio.pfn(), folio.pfn().add(1));
        let frozen = n.alloc_frozen(Order::ZERO, Gfp::KERNEL).unwrap();
        // The misuses under test; every one is refused before a handle
        // exists, so no reference is claimed.
        // SAFETY: duty 1 of each from_raw is deliberately broken, and the
        // checks refuse every call below before any handle is made.
        unsafe {
            assert_eq!(FolioRef::from_raw(n, end).unwrap_err(), RawError::OutOfRange(end));
            assert_eq!(FolioRef::from_raw(n, Pfn(u64::MAX)).unwrap_err(), RawError::OutOfRange(Pfn(u64::MAX)));
            assert_eq!(FolioRef::from_raw(n, tail).unwrap_err(), RawError::Tail(tail));
            assert_eq!(FolioRef::from_raw(n, Pfn(1)).unwrap_err(), RawError::Unmanaged(Pfn(1), PageType::Reserved));
            assert_eq!(FolioRef::from_raw(n, frozen.pfn()).unwrap_err(), RawError::ZeroRefcount(frozen.pfn()));
            assert_eq!(FrozenFolio::from_raw(n, end).unwrap_err(), RawError::OutOfRange(end));
            assert_eq!(FrozenFolio::from_raw(n, tail).unwrap_err(), RawError::Tail(tail));
            assert_eq!(FrozenFolio::from_raw(n, Pfn(2)).unwrap_err(), RawError::Unmanaged(Pfn(2), PageType::Reserved));
            assert_eq!(FrozenFolio::from_raw(n, head).unwrap_err(), RawError::NotFrozen { pfn: head, refcount: 1 });
        }
        let free = {
            let f = n.alloc(Order::ZERO, Gfp::KERNEL).unwrap();
            f.pfn()
        };
        // SAFETY: as above: refused.
        assert_eq!(unsafe { FrozenFolio::from_raw(n, free) }.unwrap_err(), RawError::Free(free));
        let raw = frozen.into_raw();
        // SAFETY: `raw` came from into_raw just above; restored once.
        let frozen = unsafe { FrozenFolio::from_raw(n, raw) }.unwrap();
        drop((frozen, folio));
        assert_eq!(n.bad_pages().0, 0);
        assert_eq!(n.audit().allocated, 0);
    });
}

#[test]
fn a_quarantined_tail_keeps_the_counters_in_agreement() {
    node(|n| {
        let folio = n.alloc(Order::TWO, Gfp::USER).unwrap();
        let head = folio.pfn();
        // A bad handle's report on a tail (as a put on a tail would file).
        n.quarantine(head.add(2), BadPageReason::RefcountUnderflow);
        assert_eq!(n.vmstat().nr_quarantined, 1);
        drop(folio);
        // The free path saw the quarantined tail and kept the whole folio
        // out of service, counting each frame once.
        let (count, frames, reports) = n.bad_pages();
        assert_eq!((count, frames), (2, 4), "{reports:?}");
        assert_eq!(reports[1].unwrap().reason, BadPageReason::BadTailType);
        assert_eq!(n.audit().quarantined, 4);
        assert_accounts(n);
    });
}

#[test]
fn the_free_path_checks_tails() {
    for (reason, corrupt) in [
        (BadPageReason::NonzeroRefcount, 0usize),
        (BadPageReason::FreedWhilePinned, 1),
        (BadPageReason::FreedWithBadFlags, 2),
        (BadPageReason::FreedWhileMapped, 3),
    ] {
        node(|n| {
            let folio = n.alloc(Order::ONE, Gfp::USER).unwrap();
            let tail = n.memmap().page(folio.pfn().add(1)).unwrap();
            // Test setup corrupting a tail of a folio only we hold, before
            // the free path checks it; the stores are Relaxed (same thread).
            let relaxed = Ordering::Relaxed;
            match corrupt {
                0 => tail.refcount.store(1, relaxed),
                1 => tail.pincount.store(1, relaxed),
                2 => tail.flags.store(PageFlags::DIRTY.0, relaxed),
                _ => tail.mapcount.store(1, relaxed),
            }
            let pfn = folio.pfn();
            drop(folio);
            assert_eq!(only_report(n).reason, reason);
            assert_eq!(n.try_get(pfn).map(|f| f.page_type()).unwrap_err(), GetError::Unmanaged(PageType::Quarantined));
            assert_accounts(n);
        });
    }
}

#[test]
fn boot_refuses_a_layout_with_nothing_left_to_manage() {
    let mut memory = TestMemory::new(256 * PAGE_SIZE);
    let mut saw_no_usable = false;
    for frames in 1..=256u64 {
        let ram = [PhysRange::new(0, frames * PAGE_SIZE as u64)];
        let layout = MemoryLayout { ram: &ram, reserved: &[] };
        match Node::boot(memory.bytes(), PhysAddr(0), &layout, small_config(false), &SpinPlatform) {
            Err(failed) => match failed.error {
                BootError::Layout(MemMapError::NoRoomForMetadata { .. }) => assert!(!saw_no_usable),
                BootError::Layout(MemMapError::NoUsableFrames { metadata_frames }) => {
                    assert_eq!(metadata_frames, frames, "only the metadata fits");
                    saw_no_usable = true;
                }
                e => panic!("unexpected {e}"),
            },
            Ok(node) => {
                assert!(saw_no_usable, "the first layout that holds the metadata has no frame left");
                assert!(node.vmstat().nr_managed > 0);
                return;
            }
        }
    }
    panic!("no layout booted");
}

#[test]
fn a_failed_boot_gives_the_memory_back_for_another_layout() {
    let mut memory = TestMemory::new(1024 * PAGE_SIZE);
    let bytes = memory.bytes();
    let bad = [PhysRange::new(0, 2048 * PAGE_SIZE as u64)];
    let good = [PhysRange::new(0, 1024 * PAGE_SIZE as u64)];
    let failed =
        Node::boot(bytes, PhysAddr(0), &MemoryLayout { ram: &bad, reserved: &[] }, small_config(false), &SpinPlatform)
            .unwrap_err();
    assert_eq!(failed.error, BootError::Layout(MemMapError::OutsideMemory(bad[0])));
    let (_, bytes) = failed.into_parts();
    let node =
        Node::boot(bytes, PhysAddr(0), &MemoryLayout { ram: &good, reserved: &[] }, small_config(false), &SpinPlatform)
            .unwrap();
    assert!(node.vmstat().nr_managed > 0);
}

#[test]
fn a_misaligned_buffer_is_named_by_its_address() {
    let mut memory = TestMemory::new(1024 * PAGE_SIZE);
    let bytes = &mut memory.bytes()[8..];
    let addr = bytes.as_ptr() as usize;
    let ram = [PhysRange::new(0, 512 * PAGE_SIZE as u64)];
    let failed =
        Node::boot(bytes, PhysAddr(0), &MemoryLayout { ram: &ram, reserved: &[] }, small_config(false), &SpinPlatform)
            .unwrap_err();
    assert_eq!(failed.error, BootError::Layout(MemMapError::MisalignedMemory { addr }));
    assert!(std::format!("{failed}").contains(&std::format!("{addr:#x}")));
}

/// `drain_all` empties every zone's per-CPU lists, the movable zone's too
/// (no loom model runs a movable zone).
#[test]
fn drain_all_empties_the_movable_zone_too() {
    let config = NodeConfig { movable_percent: 50, ..small_config(true) };
    with_node_on_cpu0(4096, &[], config, |n| {
        let held: std::vec::Vec<_> = (0..6).map(|_| n.alloc(Order::ZERO, Gfp::USER).unwrap()).collect();
        assert!(
            held.iter().all(|f| n.zone_of(f.pfn()).id == ZoneId::Movable),
            "movable requests fill the movable zone"
        );
        let kernel: std::vec::Vec<_> = (0..6).map(|_| n.alloc(Order::ZERO, Gfp::KERNEL).unwrap()).collect();
        drop((held, kernel));
        assert!(n.zone_info(ZoneId::Movable).pcp > 0 && n.zone_info(ZoneId::Normal).pcp > 0);
        let drained = n.drain_all();
        assert_eq!(n.vmstat().nr_free_pcp, 0, "a zone's per-CPU list was not drained");
        assert!(drained.frames > 0);
        assert_eq!(n.audit().violations, 0);
    });
}
