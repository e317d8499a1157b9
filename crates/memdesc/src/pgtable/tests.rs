//! Address-space tests on one CPU: faults, THP, splits, unmapping,
//! protection, errors, and that every frame comes back.

use super::*;
use crate::buddy::Node;
use crate::platform::SpinPlatform;
use crate::rcu::{Rcu, RcuConfig};
use crate::testutil::{small_config, with_node};
use crate::PAGE_SIZE;

const PAGE: u64 = PAGE_SIZE as u64;

/// Frames for tests that need one 2 MiB folio and some change.
const FRAMES: u64 = 2048;

fn with_mmu(frames: u64, f: impl FnOnce(&Node<'_>, &Mmu<'_>)) {
    with_node(frames, &[], small_config(false), &SpinPlatform, |node| {
        let tables = Mmu::table_return(node);
        let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).expect("rcu");
        let mmu = Mmu::new(&rcu, &tables);
        f(node, &mmu);
        mmu.barrier();
        assert_eq!(mmu.table_frames(), 0, "every table frame is freed");
        assert_eq!(node.audit().allocated, 0, "every frame is back");
        assert_eq!(node.audit().violations, 0);
    });
}

fn clean(aspace: &AddressSpace<'_, '_>) -> AsAudit {
    let audit = aspace.audit();
    assert_eq!(audit.violations, 0, "audit: {audit:?}");
    audit
}

#[test]
fn first_touch_maps_zeroed_pages_and_bytes_round_trip() {
    with_mmu(256, |_, mmu| {
        let aspace = AddressSpace::new(mmu).unwrap();
        let va = aspace.mmap_anon(3 * PAGE, true, false).unwrap();
        let mut buf = [0xffu8; 16];
        aspace.read(va + PAGE + 100, &mut buf).unwrap();
        assert_eq!(buf, [0; 16], "first touch reads zeroes");
        // A write straddling two pages.
        let data: std::vec::Vec<u8> = (0..200).collect();
        aspace.write(va + PAGE - 100, &data).unwrap();
        let mut back = [0u8; 200];
        aspace.read(va + PAGE - 100, &mut back).unwrap();
        assert_eq!(&back[..], &data[..]);
        let audit = clean(&aspace);
        assert_eq!((audit.pte_mappings, audit.pmd_mappings), (2, 0));
        // Root, PUD, PMD and one PTE table.
        assert_eq!(audit.tables, 4);
        assert_eq!(mmu.event(MmEvent::ThpFaultAlloc), 0);
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a 2 MiB folio per test: minutes under Miri; the same unsafe paths run under Miri in the other THP tests"
)]
fn a_thp_area_faults_one_pmd_and_a_partial_unmap_splits_it() {
    with_mmu(FRAMES, |node, mmu| {
        let aspace = AddressSpace::new(mmu).unwrap();
        let va = aspace.mmap_anon(HUGE_SIZE, true, true).unwrap();
        assert_eq!(va % HUGE_SIZE, 0, "a THP area is 2 MiB-aligned");
        aspace.write(va + 5 * PAGE, b"stamp").unwrap();
        assert_eq!(mmu.event(MmEvent::ThpFaultAlloc), 1);
        let audit = clean(&aspace);
        assert_eq!((audit.pte_mappings, audit.pmd_mappings), (0, 1));
        let free_before = node.audit().free;

        // Unmapping one page in the middle splits the PMD mapping (P4).
        aspace.munmap(va + 7 * PAGE, PAGE).unwrap();
        assert_eq!(mmu.event(MmEvent::ThpSplitPmd), 1);
        let audit = clean(&aspace);
        assert_eq!((audit.pte_mappings, audit.pmd_mappings), (HUGE_FRAMES - 1, 0));
        let mut buf = [0u8; 5];
        aspace.read(va + 5 * PAGE, &mut buf).unwrap();
        assert_eq!(&buf, b"stamp", "the split keeps every byte");
        assert_eq!(aspace.read(va + 7 * PAGE, &mut buf), Err(Fault::NotMapped(va + 7 * PAGE)));
        // The folio stays whole (the page is unmapped, not freed) and one
        // frame went to the new PTE table.
        assert_eq!(node.audit().free, free_before - 1);
    });
}

#[test]
fn thp_falls_back_to_small_pages_without_an_order_9_block() {
    with_mmu(256, |_, mmu| {
        let aspace = AddressSpace::new(mmu).unwrap();
        let va = aspace.mmap_anon(HUGE_SIZE, true, true).unwrap();
        aspace.write(va, b"x").unwrap();
        assert_eq!(mmu.event(MmEvent::ThpFaultFallback), 1);
        assert_eq!(clean(&aspace).pte_mappings, 1);
    });
}

#[test]
fn mprotect_makes_writes_fault_and_keeps_reads() {
    with_mmu(256, |_, mmu| {
        let aspace = AddressSpace::new(mmu).unwrap();
        let va = aspace.mmap_anon(4 * PAGE, true, false).unwrap();
        aspace.write(va + PAGE, b"before").unwrap();
        aspace.mprotect(va + PAGE, 2 * PAGE, false).unwrap();
        assert_eq!(aspace.write(va + PAGE, b"after"), Err(Fault::Protection(va + PAGE)));
        let mut buf = [0u8; 6];
        aspace.read(va + PAGE, &mut buf).unwrap();
        assert_eq!(&buf, b"before");
        aspace.write(va, b"ok").unwrap();
        aspace.write(va + 3 * PAGE, b"ok").unwrap();
        let mut vmas = [Vma::default(); 4];
        assert_eq!(aspace.vmas(&mut vmas), 3, "the area is cut in three");
        aspace.mprotect(va + PAGE, 2 * PAGE, true).unwrap();
        assert_eq!(aspace.vmas(&mut vmas), 1, "equal neighbours merge again");
        aspace.write(va + PAGE, b"after").unwrap();
        clean(&aspace);
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a 2 MiB folio per test: minutes under Miri; the same unsafe paths run under Miri in the other THP tests"
)]
fn mprotect_inside_a_huge_mapping_splits_it() {
    with_mmu(FRAMES, |_, mmu| {
        let aspace = AddressSpace::new(mmu).unwrap();
        let va = aspace.mmap_anon(HUGE_SIZE, true, true).unwrap();
        aspace.write(va, b"x").unwrap();
        aspace.mprotect(va + 16 * PAGE, PAGE, false).unwrap();
        assert_eq!(mmu.event(MmEvent::ThpSplitPmd), 1);
        assert_eq!(aspace.write(va + 16 * PAGE, b"y"), Err(Fault::Protection(va + 16 * PAGE)));
        aspace.write(va + 17 * PAGE, b"y").unwrap();
        assert_eq!(clean(&aspace).pte_mappings, HUGE_FRAMES);
    });
}

#[test]
fn dontneed_drops_pages_and_the_next_touch_reads_zeroes() {
    with_mmu(256, |node, mmu| {
        let aspace = AddressSpace::new(mmu).unwrap();
        let va = aspace.mmap_anon(2 * PAGE, true, false).unwrap();
        aspace.write(va, b"data").unwrap();
        let allocated = node.audit().allocated;
        aspace.madvise_dontneed(va, 2 * PAGE).unwrap();
        assert_eq!(node.audit().allocated, allocated - 1, "the page is freed, the tables stay");
        let mut buf = [1u8; 4];
        aspace.read(va, &mut buf).unwrap();
        assert_eq!(buf, [0; 4]);
        clean(&aspace);
    });
}

#[test]
fn munmap_frees_pages_and_emptied_tables() {
    with_mmu(256, |node, mmu| {
        let aspace = AddressSpace::new(mmu).unwrap();
        let allocated = node.audit().allocated;
        let va = aspace.mmap_anon(8 * PAGE, true, false).unwrap();
        for i in 0..8 {
            aspace.write(va + i * PAGE, &[i as u8]).unwrap();
        }
        aspace.munmap(va, 8 * PAGE).unwrap();
        mmu.barrier();
        assert_eq!(node.audit().allocated, allocated, "pages and the PUD, PMD and PTE tables are freed");
        assert_eq!(clean(&aspace).tables, 1);
        assert!(mmu.event(MmEvent::PgtableFree) >= 3);
    });
}

#[test]
fn bad_ranges_are_typed_errors_and_change_nothing() {
    with_mmu(256, |_, mmu| {
        let aspace = AddressSpace::new(mmu).unwrap();
        let va = aspace.mmap_anon(2 * PAGE, true, false).unwrap();
        assert_eq!(aspace.munmap(va + 1, PAGE), Err(MmError::Unaligned(va + 1)));
        assert_eq!(aspace.munmap(va, 0), Err(MmError::EmptyRange));
        assert_eq!(aspace.mmap_anon(0, true, false), Err(MmError::EmptyRange));
        assert_eq!(aspace.munmap(0, PAGE), Err(MmError::OutOfRange { start: 0, len: PAGE }));
        assert!(matches!(aspace.munmap(USER_END - PAGE, 2 * PAGE), Err(MmError::OutOfRange { .. })));
        let hole = va + 16 * PAGE;
        assert_eq!(aspace.munmap(hole, PAGE), Err(MmError::NotMapped { start: hole, end: hole + PAGE }));
        assert_eq!(aspace.mmap_anon_at(va, PAGE, true, false), Err(MmError::NoSpace(PAGE)));
        let mut buf = [0u8; 1];
        assert_eq!(aspace.read(hole, &mut buf), Err(Fault::NotMapped(hole)));
        assert_eq!(aspace.read(0, &mut buf), Err(Fault::NotMapped(0)));
        aspace.write(va, b"still fine").unwrap();
        clean(&aspace);
    });
}

#[test]
fn the_area_table_refuses_when_full() {
    with_mmu(64, |_, mmu| {
        let aspace = AddressSpace::new(mmu).unwrap();
        // Alternate write permissions so neighbours never merge.
        for i in 0..MAX_VMAS as u64 {
            aspace.mmap_anon_at(USER_START + i * PAGE, PAGE, i % 2 == 0, false).unwrap();
        }
        assert_eq!(aspace.mmap_anon(PAGE, true, false), Err(MmError::TooManyMappings));
        clean(&aspace);
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a 2 MiB folio per test: minutes under Miri; the same unsafe paths run under Miri in the other THP tests"
)]
fn dropping_an_address_space_returns_everything() {
    with_mmu(FRAMES, |_, mmu| {
        let aspace = AddressSpace::new(mmu).unwrap();
        let big = aspace.mmap_anon(HUGE_SIZE, true, true).unwrap();
        let small = aspace.mmap_anon(5 * PAGE, true, false).unwrap();
        aspace.write(big, b"x").unwrap();
        aspace.munmap(big + PAGE, PAGE).unwrap();
        for i in 0..5 {
            aspace.write(small + i * PAGE, b"y").unwrap();
        }
        clean(&aspace);
    });
}
