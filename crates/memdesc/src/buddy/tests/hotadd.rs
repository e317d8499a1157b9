//! Memory hot-add (HOTADD): sections made present at run time.

use super::*;
use crate::memmap::{MemMapError, PhysRange, PAGEBLOCK_ORDER, PAGE_SIZE};
use crate::testutil::{with_hotplug_node, TestMemory};

/// Sections of one pageblock (512 frames, 9 of them metadata).
const ORDER: u32 = PAGEBLOCK_ORDER;
const SECTION: u64 = 1 << ORDER;
/// RAM at boot: one section's worth; the rest of the memory is hot-pluggable.
const BOOT: u64 = SECTION;
/// Memory: the boot RAM and three sections.
const TOTAL: u64 = BOOT + 3 * SECTION;

fn bytes(pfn: u64) -> u64 {
    pfn * PAGE_SIZE as u64
}

/// The section `i` of the hot-pluggable span, as a physical range.
fn section(i: u64) -> PhysRange {
    PhysRange::new(bytes(BOOT + i * SECTION), bytes(BOOT + (i + 1) * SECTION))
}

fn hot_node(config: NodeConfig, f: impl FnOnce(&Node<'_>)) {
    with_hotplug_node(BOOT, TOTAL, ORDER, config, &SpinPlatform, f)
}

fn assert_clean(n: &Node<'_>) -> report::Audit {
    n.drain_all();
    let audit = n.audit();
    assert_eq!(audit.violations, 0, "{:?}", audit.first_violation);
    audit
}

#[test]
fn hot_add_frees_the_section_into_the_zone_and_audits_clean() {
    hot_node(small_config(true), |n| {
        let map = n.memmap();
        assert_eq!(map.hot_span(), (Pfn(BOOT), Pfn(TOTAL)));
        let before = assert_clean(n);
        let managed_before = n.vmstat().nr_managed;
        let added = n.hot_add(section(1), ZoneId::Normal).unwrap();
        let meta = map.section_meta_frames();
        assert_eq!(meta, 9, "512 descriptors of 64 bytes and one pageblock byte");
        assert_eq!(
            added,
            HotAdded {
                start: Pfn(BOOT + SECTION),
                end: Pfn(BOOT + 2 * SECTION),
                zone: ZoneId::Normal,
                sections: 1,
                metadata_frames: meta,
                managed: SECTION - meta,
            }
        );
        let after = assert_clean(n);
        assert_eq!(after.free, before.free + SECTION - meta);
        assert_eq!(after.unmanaged, before.unmanaged + meta);
        let stat = n.vmstat();
        assert_eq!(stat.nr_managed, managed_before + SECTION - meta);
        assert_eq!(stat.nr_hot_added, SECTION);
        let info = n.zone_info(ZoneId::Normal);
        assert_eq!(info.hot_added, SECTION);
        assert_eq!(info.managed, stat.nr_managed);
        assert_eq!(info.pageblocks[Migratetype::Movable.index()], 2, "the boot pageblock and the section's");
        assert_eq!(map.page(Pfn(BOOT + SECTION)).unwrap().page_type(), PageType::Metadata);
        assert_eq!(map.online_sections().collect::<Vec<_>>(), [(Pfn(BOOT + SECTION), ZoneId::Normal as u8)]);
    });
}

#[test]
fn absent_sections_look_out_of_range_until_added() {
    hot_node(small_config(false), |n| {
        let pfn = Pfn(BOOT + 100);
        assert!(n.memmap().page(pfn).is_none());
        assert_eq!(n.try_get(pfn).unwrap_err(), GetError::OutOfRange);
        n.hot_add(section(0), ZoneId::Normal).unwrap();
        assert_eq!(n.try_get(pfn).unwrap_err(), GetError::Free);
        assert!(n.memmap().page(Pfn(BOOT + SECTION)).is_none(), "the next section is still absent");
    });
}

#[test]
fn allocation_uses_the_new_section_until_exhausted() {
    // Larger blocks first, so exhaustion takes a few dozen allocations (one
    // frame at a time takes minutes under Miri, and so does retagging the
    // contents of an order-9 folio); movable requests out of movable
    // pageblocks never take the fallback path.
    fn exhaust<'n>(n: &'n Node<'n>, mut each: impl FnMut(FolioRef<'n>)) {
        let top = if cfg!(miri) { 3 } else { ORDER };
        for order in (0..=top).rev() {
            while let Ok(f) = n.alloc(Order::new(order).unwrap(), Gfp::USER) {
                each(f);
            }
        }
    }
    hot_node(small_config(true), |n| {
        let mut held = Vec::new();
        exhaust(n, |f| held.push(f));
        let boot_folios = held.len();
        let added = n.hot_add(section(2), ZoneId::Normal).unwrap();
        let mut section_frames = 0;
        exhaust(n, |f| {
            assert!(added.start <= f.pfn() && f.pfn() < added.end, "frame {} outside the section", f.pfn());
            // The frame's contents are reachable, and its descriptor maps
            // back to its pfn (FolioRef::drop relies on that). Under Miri,
            // which retags every byte of a contents view, a few folios.
            if !cfg!(miri) || held.len() < boot_folios + 4 {
                f.contents()[0].store(f.pfn().0, crate::sync::Ordering::Relaxed);
            }
            let again = n.try_get(f.pfn()).unwrap();
            assert_eq!(again.pfn(), f.pfn());
            section_frames += f.nr_pages();
            held.push(f);
        });
        assert_eq!(section_frames, added.managed);
        let audit = assert_clean(n);
        assert_eq!(audit.free, 0);
        assert_eq!(audit.folios as usize, held.len());
        for f in held[boot_folios..].iter().take(if cfg!(miri) { 4 } else { usize::MAX }) {
            assert_eq!(f.contents()[0].load(crate::sync::Ordering::Relaxed), f.pfn().0);
        }
        drop(held);
        let audit = assert_clean(n);
        assert_eq!(audit.allocated, 0);
        assert_eq!(audit.free, n.vmstat().nr_managed);
        // Freed frames merge back into the largest blocks: one order-8
        // block in the boot RAM, one in the section.
        let eight = Order::new(8).unwrap();
        let large = [n.alloc(eight, Gfp::USER).unwrap(), n.alloc(eight, Gfp::USER).unwrap()];
        assert!(large.iter().any(|f| f.pfn() >= added.start), "the section's order-8 block did not merge back");
    });
}

#[test]
fn hot_add_to_the_movable_zone_serves_movable_requests() {
    hot_node(small_config(false), |n| {
        assert!(n.alloc(Order::ZERO, Gfp::USER).unwrap().pfn() < Pfn(BOOT), "no movable zone yet");
        let added = n.hot_add(section(0), ZoneId::Movable).unwrap();
        let user = n.alloc(Order::ZERO, Gfp::USER).unwrap();
        assert!(added.start <= user.pfn() && user.pfn() < added.end);
        assert!(n.alloc(Order::ZERO, Gfp::KERNEL).unwrap().pfn() < Pfn(BOOT), "kernel memory stays Normal");
        assert_eq!(n.zone_info(ZoneId::Movable).managed, added.managed);
        drop(user);
        assert_eq!(assert_clean(n).free, n.vmstat().nr_managed);
    });
}

#[test]
fn hot_add_refuses_bad_ranges() {
    hot_node(small_config(true), |n| {
        let span = PhysRange::new(bytes(BOOT), bytes(TOTAL));
        let section_bytes = bytes(SECTION);
        assert_eq!(
            n.hot_add(PhysRange::new(bytes(BOOT), bytes(BOOT)), ZoneId::Normal),
            Err(HotAddError::Empty(PhysRange::new(bytes(BOOT), bytes(BOOT))))
        );
        let half = PhysRange::new(bytes(BOOT), bytes(BOOT + SECTION / 2));
        assert_eq!(n.hot_add(half, ZoneId::Normal), Err(HotAddError::Misaligned { range: half, section_bytes }));
        let boot = PhysRange::new(0, bytes(SECTION));
        assert_eq!(n.hot_add(boot, ZoneId::Normal), Err(HotAddError::OutsideSpan { range: boot, span }));
        let beyond = PhysRange::new(bytes(TOTAL), bytes(TOTAL + SECTION));
        assert_eq!(n.hot_add(beyond, ZoneId::Normal), Err(HotAddError::OutsideSpan { range: beyond, span }));
        n.hot_add(section(1), ZoneId::Normal).unwrap();
        let two = PhysRange::new(section(0).start.0, section(1).end.0);
        assert_eq!(n.hot_add(two, ZoneId::Normal), Err(HotAddError::Present { section: Pfn(BOOT + SECTION) }));
        assert!(n.memmap().page(Pfn(BOOT)).is_none(), "a refused range leaves its sections absent");
        let rest = PhysRange::new(section(0).start.0, section(0).end.0);
        assert_eq!(n.hot_add(rest, ZoneId::Normal).unwrap().sections, 1);
        assert!(std::format!("{}", HotAddError::Present { section: Pfn(3) }).contains("pfn 3"));
        assert_clean(n);
    });
}

#[test]
fn several_sections_in_one_hot_add() {
    hot_node(small_config(true), |n| {
        let all = PhysRange::new(bytes(BOOT), bytes(TOTAL));
        let added = n.hot_add(all, ZoneId::Normal).unwrap();
        assert_eq!((added.sections, added.managed), (3, 3 * (SECTION - n.memmap().section_meta_frames())));
        assert_eq!(n.memmap().online_sections().count(), 3);
        let audit = assert_clean(n);
        assert_eq!(audit.free, n.vmstat().nr_managed);
    });
}

#[test]
fn boot_refuses_a_bad_section_order() {
    let mut memory = TestMemory::new(bytes(TOTAL) as usize);
    let ram = [PhysRange::new(0, bytes(BOOT))];
    let layout = crate::memmap::MemoryLayout { ram: &ram, reserved: &[] };
    for order in [PAGEBLOCK_ORDER - 1, crate::memmap::MAX_SECTION_ORDER + 1] {
        let failed =
            Node::boot_with_sections(memory.bytes(), PhysAddr(0), &layout, small_config(true), order, &SpinPlatform)
                .unwrap_err();
        assert_eq!(failed.error, BootError::Layout(MemMapError::BadSectionOrder(order)));
    }
}

/// Allocators on two CPUs stamp, check and free frames and take speculative
/// references to random pfns of the whole span while a third CPU hot-adds
/// the sections one by one: every frame handed out is one whose section is
/// online (HOTADD.5 after .4), a section once seen online stays in range, no
/// frame is handed to two owners (stamps), and everything balances at the
/// end.
#[test]
fn hot_add_races_allocation_frees_and_speculative_gets() {
    use crate::testutil::{set_thread_cpu, ThreadCpus};
    static CPUS: ThreadCpus = ThreadCpus { nr: 3 };
    const ROUNDS: u64 = if cfg!(miri) { 4 } else { 2000 };
    const MAX_HELD: usize = if cfg!(miri) { 4 } else { 160 };
    let sections = if cfg!(miri) { 2 } else { 3 };
    with_hotplug_node(BOOT, BOOT + sections * SECTION, ORDER, small_config(true), &CPUS, |n| {
        // Relaxed for both: a flag and a count read after the threads join
        // (the scope's join orders them), or a loop condition rechecked.
        let done = std::sync::atomic::AtomicBool::new(false);
        let hot_allocations = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for cpu in 0..2u32 {
                let (done, hot_allocations) = (&done, &hot_allocations);
                scope.spawn(move || {
                    set_thread_cpu(Some(cpu));
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(cpu);
                    let mut next = move || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng
                    };
                    let mut held: Vec<(FolioRef<'_>, u64)> = Vec::new();
                    let mut round = 0;
                    // Relaxed: see `done`.
                    // Under Miri a fixed few rounds, racing whatever part of
                    // the hot-adds they meet.
                    while round < ROUNDS || (!cfg!(miri) && !done.load(std::sync::atomic::Ordering::Relaxed)) {
                        round += 1;
                        let order = Order::new((next() % 3) as u32).unwrap();
                        let gfp = if next() % 2 == 0 { Gfp::USER } else { Gfp::KERNEL };
                        if let Ok(folio) = n.alloc(order, gfp) {
                            let pfn = folio.pfn();
                            assert!(
                                n.memmap().page(pfn).is_some(),
                                "HOTADD violated: frame {pfn} allocated while its section is not online"
                            );
                            if pfn >= Pfn(BOOT) {
                                // Relaxed: see `done`.
                                hot_allocations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            let tag = (u64::from(cpu) << 48) | round;
                            for frame in folio.contents().chunks(PAGE_SIZE / 8) {
                                // Relaxed: the folio is ours alone; checked below.
                                frame[0].store(tag, crate::sync::Ordering::Relaxed);
                            }
                            held.push((folio, tag));
                        }
                        let pfn = Pfn(next() % (BOOT + sections * SECTION));
                        let online = n.memmap().page(pfn).is_some();
                        match n.try_get(pfn) {
                            Ok(folio) => assert!(folio.contains(pfn), "P1 violated: {} lacks {pfn}", folio.pfn()),
                            Err(GetError::OutOfRange) => assert!(!online, "HOTADD violated: {pfn} went offline"),
                            Err(_) => {}
                        }
                        // Up to 160 folios each, more than the boot RAM holds
                        // for both CPUs, so the hot-added frames get used.
                        if held.len() > MAX_HELD || next() % 3 == 0 {
                            if let Some((folio, tag)) = held.pop() {
                                for frame in folio.contents().chunks(PAGE_SIZE / 8) {
                                    // Relaxed: our own store above.
                                    let seen = frame[0].load(crate::sync::Ordering::Relaxed);
                                    assert_eq!(seen, tag, "frame of {} handed to two owners", folio.pfn());
                                }
                            }
                        }
                    }
                });
            }
            let done = &done;
            scope.spawn(move || {
                set_thread_cpu(Some(2));
                for i in 0..sections {
                    std::thread::yield_now();
                    let zone = if i % 2 == 0 { ZoneId::Normal } else { ZoneId::Movable };
                    n.hot_add(section(i), zone).unwrap();
                }
                // Relaxed: see `done`.
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            });
        });
        let audit = assert_clean(n);
        assert_eq!((audit.allocated, audit.quarantined), (0, 0));
        assert_eq!(audit.free, n.vmstat().nr_managed);
        assert_eq!(n.vmstat().nr_hot_added, sections * SECTION);
        assert_eq!(n.memmap().online_sections().count() as u64, sections);
        if !cfg!(miri) {
            // Relaxed: after the join.
            assert!(hot_allocations.load(std::sync::atomic::Ordering::Relaxed) > 0, "no hot-added frame was used");
        }
    });
}
