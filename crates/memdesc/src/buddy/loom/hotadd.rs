//! HOTADD: a section hot-added while a speculative getter, a pfn walker and
//! an allocator run on the other CPU.
//!
//! The section's descriptors are loom atomics and cells created by
//! HOTADD.1 on the hot-adding CPU, so a reader not ordered after them by
//! HOTADD.4/.6 (or .2/.7) is a causality violation loom reports.

use super::{audit_clean, config, on_two_cpus, PLATFORM};
use crate::buddy::{Gfp, Node, ZoneId};
use crate::folio::{GetError, Order, PageType};
use crate::memmap::{Pfn, PhysRange, PAGE_SIZE};
use std::vec::Vec;

/// RAM at boot: the boot metadata (two frames) and a few frames to manage.
const BOOT: u64 = 4;

/// Branches per execution: booting, exhausting and auditing the node come
/// near loom's default of 1000.
const BRANCHES: usize = 4000;

/// Boots a node of [`BOOT`] frames of RAM followed by one hot-pluggable
/// section, and runs `f` with the section's physical range.
fn with_hotplug_node(f: impl FnOnce(&Node<'_>, PhysRange)) {
    let section = 1u64 << crate::memmap::DEFAULT_SECTION_ORDER;
    let base = BOOT.next_multiple_of(section);
    let range = PhysRange::new(base * PAGE_SIZE as u64, (base + section) * PAGE_SIZE as u64);
    crate::testutil::with_hotplug_node(
        BOOT,
        base + section,
        crate::memmap::DEFAULT_SECTION_ORDER,
        config(false, 2, 2),
        &PLATFORM,
        |node| f(node, range),
    );
}

/// HOTADD.4/.6: one CPU hot-adds the section while the other gets a
/// managed frame of it speculatively (P1) and, like a pfn walker, reads the
/// type of each frame the map says is present. Whatever it sees must be a
/// typed, initialised descriptor, or nothing.
fn getter_races_hot_add() {
    with_hotplug_node(|node, range| {
        let target = Pfn(range.start.pfn().0 + node.memmap().section_meta_frames());
        // The reader is the spawned thread: loom's DPOR remembers only the
        // last access to the section's state byte, and the hot-add's own
        // check of it would hide a reader that ran first.
        on_two_cpus(
            node,
            move |node| {
                match node.try_get(target) {
                    Err(GetError::OutOfRange | GetError::Free) => {}
                    Ok(folio) => panic!("HOTADD violated: got a reference to free frame {}", folio.pfn()),
                    Err(e) => panic!("HOTADD violated: unexpected error {e}"),
                }
                for (section, _) in node.memmap().online_sections() {
                    let page = node.memmap().page(section).expect("an online section's frame is in range");
                    let ty = page.page_type();
                    assert_eq!(ty, PageType::Metadata, "HOTADD violated: walker read type {ty} at {section}");
                }
            },
            move |node| {
                let added = node.hot_add(range, ZoneId::Normal).unwrap();
                assert_eq!(added.start, range.start.pfn());
            },
        );
        audit_clean(node);
    });
}

/// HOTADD.5 after .4: with the boot RAM exhausted, one CPU hot-adds the
/// section while the other allocates; a frame it gets must be one every
/// lockless reader can see.
fn allocator_races_hot_add() {
    with_hotplug_node(|node, range| {
        let mut boot = Vec::new();
        while let Ok(folio) = node.alloc(Order::ZERO, Gfp::KERNEL) {
            boot.push(folio.into_raw());
        }
        on_two_cpus(
            node,
            |node| {
                if let Ok(folio) = node.alloc(Order::ZERO, Gfp::KERNEL) {
                    let pfn = folio.pfn();
                    assert!(
                        node.memmap().page(pfn).is_some(),
                        "HOTADD violated: frame {pfn} allocated while its section is not online"
                    );
                    assert!(node.try_get(pfn).is_ok(), "HOTADD violated: allocated frame {pfn} cannot be got");
                }
            },
            move |node| {
                node.hot_add(range, ZoneId::Normal).unwrap();
            },
        );
        for pfn in boot {
            // SAFETY: duty 1: each is the reference into_raw gave up above.
            unsafe { node.put_pfn(pfn) }.unwrap();
        }
        audit_clean(node);
    });
}

#[test]
fn hotadd_getter_and_walker_race_publication() {
    crate::testutil::check_model_with_branches(BRANCHES, getter_races_hot_add);
}

#[test]
fn hotadd_allocator_races_publication() {
    crate::testutil::check_model_with_branches(BRANCHES, allocator_races_hot_add);
}

/// The section goes online without Release (HOTADD.4).
#[cfg(memdesc_mutant = "hotadd_relaxed_online")]
#[test]
fn mutant_hotadd_relaxed_online_is_caught() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, getter_races_hot_add);
}

/// The lookup reads the section state without Acquire (HOTADD.6).
#[cfg(memdesc_mutant = "hotadd_relaxed_lookup")]
#[test]
fn mutant_hotadd_relaxed_lookup_is_caught() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, getter_races_hot_add);
}

/// The frames reach the free lists before the section is online (HOTADD.5
/// before .4).
#[cfg(memdesc_mutant = "hotadd_free_before_online")]
#[test]
fn mutant_hotadd_free_before_online_is_caught() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, allocator_races_hot_add);
}
