//! Loom models of entry publication against a lockless walker (P4) and of
//! table freeing against a walker inside its read section (P5), and the
//! mutants loom must catch.
//!
//! Tables have 8 entries under the model, so a "huge" mapping is an
//! order-3 folio and an address space needs a node of a few dozen frames.
//! Each table frame has a loom cell standing in for its contents (see
//! `TableStore`): walkers read it with every entry, and a table frame's
//! next life writes it, so a walker reading a table that is not yet
//! published, or already freed, is a data race loom reports.

use super::{AddressSpace, Entry, Leaf, Mmu, HUGE_FRAMES, HUGE_SIZE};
use crate::buddy::Node;
use crate::memmap::PAGE_SIZE;
use crate::rcu::{Rcu, RcuConfig};
use crate::sync::Ordering;
use crate::testutil::{check_model_with_branches, set_current_cpu, small_config, with_node, BlockingPlatform};
use loom::thread;

pub(crate) const PAGE: u64 = PAGE_SIZE as u64;
/// Frames: metadata, four tables, an order-3 folio and a few pages.
const FRAMES: u64 = 48;
/// Scheduling points per execution: booting, walking and auditing the node
/// and the tables take a few thousand.
const BRANCHES: usize = 20_000;

/// The shared state of one execution, leaked for the model's threads.
pub(crate) struct World {
    pub(crate) node: &'static Node<'static>,
    pub(crate) mmu: &'static Mmu<'static>,
    pub(crate) aspace: &'static AddressSpace<'static, 'static>,
}

/// Boots a two-CPU node with an RCU, an MMU and one address space, runs
/// `setup` then `f`, tears the address space down and checks that every
/// frame came back.
pub(crate) fn with_world(setup: impl FnOnce(&World) -> u64, f: impl FnOnce(World, u64)) {
    let platform: &'static BlockingPlatform = std::boxed::Box::leak(std::boxed::Box::new(BlockingPlatform::new(2)));
    with_node(FRAMES, &[], small_config(false), platform, |node| {
        // SAFETY: the node lives until `with_node` returns, and every model
        // joins its threads and drops what borrows it before that.
        let node: &'static Node<'static> = unsafe { &*(node as *const Node<'_>).cast::<Node<'static>>() };
        let tables: &'static super::TableReturn<'static> =
            std::boxed::Box::leak(std::boxed::Box::new(Mmu::table_return(node)));
        let rcu: &'static Rcu<'static> =
            std::boxed::Box::leak(std::boxed::Box::new(Rcu::new(platform, RcuConfig::default()).unwrap()));
        let mmu: &'static Mmu<'static> = std::boxed::Box::leak(std::boxed::Box::new(Mmu::new(rcu, tables)));
        // Dropped by hand on success only: a failed execution unwinds
        // through here, and the teardown would touch loom objects again.
        let aspace = core::mem::ManuallyDrop::new(std::boxed::Box::new(AddressSpace::new(mmu).unwrap()));
        let aspace_ref: &'static AddressSpace<'static, 'static> =
            // SAFETY: the box is dropped below, after every thread joined.
            unsafe { &*(&**aspace as *const AddressSpace<'_, '_>).cast::<AddressSpace<'static, 'static>>() };
        let world = World { node, mmu, aspace: aspace_ref };
        let va = setup(&world);
        f(world, va);
        assert_eq!(aspace.audit().violations, 0, "P4 violated: the tables disagree with the descriptors");
        drop(core::mem::ManuallyDrop::into_inner(aspace));
        mmu.barrier();
        assert_eq!(mmu.table_frames(), 0, "P5 violated: a table frame was not freed");
        let audit = node.audit();
        assert_eq!(audit.violations, 0, "allocator invariants violated: {:?}", audit.first_violation);
        assert_eq!(audit.allocated, 0, "P5 violated: {} frames still allocated", audit.allocated);
    });
}

/// The walker's side: one lockless walk of `va` inside a read section, as
/// the MMU and GUP-fast do. Returns the frame mapping `va`, if any.
///
/// It yields first: loom's DPOR remembers only the last access to each
/// atomic, so a walker that ran to the end before the writer started would
/// have its loads shadowed by the writer's own loads of the same entries,
/// and the reordering would never be explored. Letting the writer run first
/// makes every walker load a backtracking point against the writer's
/// stores.
fn walk_frame(world: &World, va: u64) -> Option<u64> {
    thread::yield_now();
    let section = world.mmu.rcu().read_lock();
    match world.aspace.walk(&section, va) {
        Some(Leaf { entry: Entry::Page { pfn, huge, .. }, .. }) => {
            let offset = if huge { (va / PAGE) % HUGE_FRAMES } else { 0 };
            Some(pfn.0 + offset)
        }
        _ => None,
    }
}

/// P4: a PMD mapping split into a PTE table (filled, then published with
/// Release) under a walker. The address stays mapped throughout, so the
/// walker must find it, at the same frame, whichever entry it reads: the
/// huge leaf, or the new table and its filled PTE.
fn p4_walker_vs_pmd_split() {
    with_world(
        |world| {
            let va = world.aspace.mmap_anon(HUGE_SIZE, true, true).unwrap();
            world.aspace.write(va, b"x").unwrap();
            va
        },
        |world, va| {
            let frame = walk_frame(&world, va + 3 * PAGE).expect("mapped");
            let aspace = world.aspace;
            let splitter = thread::spawn(move || {
                set_current_cpu(0);
                // Cuts the huge mapping: P4.1 fill, P4.2 publish.
                aspace.mprotect(va + PAGE, PAGE, false).unwrap();
            });
            set_current_cpu(1);
            let seen = walk_frame(&world, va + 3 * PAGE);
            assert_eq!(seen, Some(frame), "P4 violated: a walker found no mapping during a PMD split");
            splitter.join().unwrap();
        },
    );
}

#[test]
fn p4_walker_vs_pmd_split_holds() {
    check_model_with_branches(BRANCHES, p4_walker_vs_pmd_split);
}

/// P4: a fault publishes a zeroed, counted page with one entry store; a
/// walker that sees the entry must see the page as the fault left it
/// (mapcount 1) and the PTE table's frame as allocated.
fn p4_walker_vs_fault() {
    with_world(
        |world| world.aspace.mmap_anon(2 * PAGE, true, false).unwrap(),
        |world, va| {
            let aspace = world.aspace;
            let faulter = thread::spawn(move || {
                set_current_cpu(0);
                aspace.fault(va, true).unwrap();
            });
            set_current_cpu(1);
            if let Some(frame) = walk_frame(&world, va) {
                let page = world.node.memmap().page(crate::memmap::Pfn(frame)).unwrap();
                // Relaxed: the walker's Acquire of the entry is what
                // must make the fault's mapcount update visible.
                let mapped = page.mapcount.load(Ordering::Relaxed);
                assert_eq!(mapped, 1, "P4 violated: a walker saw an entry before the page it maps");
            }
            faulter.join().unwrap();
        },
    );
}

#[test]
fn p4_walker_vs_fault_holds() {
    check_model_with_branches(BRANCHES, p4_walker_vs_fault);
}

/// P5: the last page of a PTE table is unmapped and its tables are freed
/// (P5.4 after a grace period) while a walker that started before the
/// unlink is still reading them. The walker's reads of the table frames
/// race the frames' next life unless the grace period separates them.
fn p5_walker_vs_table_free() {
    with_world(
        |world| {
            let va = world.aspace.mmap_anon(PAGE, true, false).unwrap();
            world.aspace.write(va, b"x").unwrap();
            va
        },
        |world, va| {
            let aspace = world.aspace;
            let unmapper = thread::spawn(move || {
                set_current_cpu(0);
                aspace.munmap(va, PAGE).unwrap();
            });
            set_current_cpu(1);
            let _ = walk_frame(&world, va);
            unmapper.join().unwrap();
        },
    );
}

#[test]
fn p5_walker_vs_table_free_holds() {
    check_model_with_branches(BRANCHES, p5_walker_vs_table_free);
}

/// The PTE stored without Release (seed 000).
#[cfg(memdesc_mutant = "relaxed_entry_publish")]
#[test]
fn mutant_relaxed_entry_publish_is_caught() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, p4_walker_vs_pmd_split);
}

/// The walker's entry load without Acquire.
#[cfg(memdesc_mutant = "relaxed_entry_load")]
#[test]
fn mutant_relaxed_entry_load_is_caught() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, p4_walker_vs_pmd_split);
}

/// Table frames freed without waiting for a grace period.
#[cfg(memdesc_mutant = "table_free_without_gp")]
#[test]
fn mutant_table_free_without_gp_is_caught() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, p5_walker_vs_table_free);
}

/// Setup of the TLB models: a page written ("x") by CPU 1, so CPU 1's TLB
/// holds its translation, beside a neighbour that keeps the tables in use
/// (so an unmap of the page frees only the page). Returns its address.
fn page_in_cpu1_tlb(world: &World) -> u64 {
    let va = world.aspace.mmap_anon(2 * PAGE, true, false).unwrap();
    world.aspace.write(va + PAGE, b"n").unwrap();
    set_current_cpu(1);
    world.aspace.write(va, b"x").unwrap();
    set_current_cpu(0);
    va
}

/// P5.2 before P5.3: CPU 1 holds a TLB entry for a page that CPU 0
/// unmaps. CPU 1 then allocates a page, writes it, and reads the unmapped
/// address. If the unmap freed the page before shooting CPU 1's TLB down,
/// CPU 1 may get that very frame and read its own new bytes through the
/// stale translation (a use after free through the TLB). With the flush
/// first, the read either sees the old bytes (before the unmap) or faults.
fn p5_tlb_vs_unmap() {
    with_world(page_in_cpu1_tlb, |world, va| {
        let aspace = world.aspace;
        let unmapper = thread::spawn(move || {
            set_current_cpu(0);
            aspace.munmap(va, PAGE).unwrap();
        });
        set_current_cpu(1);
        thread::yield_now();
        let mine = world.node.alloc(crate::folio::Order::ZERO, crate::buddy::Gfp::USER).unwrap();
        mine.writer().write(b"N");
        let mut buf = [0u8; 1];
        match aspace.read(va, &mut buf) {
            Ok(()) => assert_eq!(&buf, b"x", "P5 violated: a stale translation reached a freed, reused page"),
            Err(super::Fault::NotMapped(_)) => {}
            Err(e) => panic!("unexpected fault {e}"),
        }
        drop(mine);
        unmapper.join().unwrap();
    });
}

#[test]
fn p5_tlb_vs_unmap_holds() {
    check_model_with_branches(BRANCHES, p5_tlb_vs_unmap);
}

/// The gathered references dropped before the TLB flush.
#[cfg(memdesc_mutant = "unmap_put_before_flush")]
#[test]
fn mutant_unmap_put_before_flush_is_caught() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, p5_tlb_vs_unmap);
}

/// P5.5: CPU 1 reads a page through its TLB while CPU 0 unmaps it and then,
/// as the frame's next owner, allocates and writes it. The shootdown waits
/// for CPU 1's TLB lock, which CPU 1 holds from the lookup to the end of
/// the access, so the access happens before the free; an access made after
/// dropping the lock races the next owner's write.
fn p5_access_vs_reuse() {
    with_world(page_in_cpu1_tlb, |world, va| {
        let (aspace, node, mmu) = (world.aspace, world.node, world.mmu);
        let unmapper = thread::spawn(move || {
            set_current_cpu(0);
            aspace.munmap(va, PAGE).unwrap();
            // The frame's next owner writes it (every free frame is
            // taken, so this is the unmapped page's).
            let next = node.alloc(crate::folio::Order::ZERO, crate::buddy::Gfp::USER).unwrap();
            mmu.store.retire(next.pfn());
        });
        set_current_cpu(1);
        thread::yield_now();
        let mut buf = [0u8; 1];
        let _ = aspace.read(va, &mut buf);
        unmapper.join().unwrap();
    });
}

#[test]
fn p5_access_vs_reuse_holds() {
    check_model_with_branches(BRANCHES, p5_access_vs_reuse);
}

/// The access made after dropping the TLB lock.
#[cfg(memdesc_mutant = "access_outside_tlb_lock")]
#[test]
fn mutant_access_outside_tlb_lock_is_caught() {
    crate::testutil::assert_model_fails_with_branches(BRANCHES, p5_access_vs_reuse);
}
