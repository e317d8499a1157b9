//! memdesc's address-space side of goals G1, G2, T1, F1 and F2: an MMU
//! over a fresh node ([`with_mmu`]) and the timed loops run on one address
//! space of it.
//!
//! Setup and teardown that are not the operation measured (faulting the
//! pages a GUP pins, faulting the THP a split splits, unmapping) run
//! outside the clock: the loops that need them time each operation alone
//! with [`Instant`] (about 25 ns per pair of reads, under 1% of a split or
//! a fault) and return the sum.

use crate::ours;
use memdesc::{
    get_user_pages_fast, split_folio, AddressSpace, CpuId, GupFlags, GupRun, MmEvent, Mmu, NodeConfig, Rcu, RcuConfig,
    SplitMode, HUGE_SIZE, PAGE_SIZE,
};
use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A 4 KiB page, as an address-space length.
pub const PAGE: u64 = PAGE_SIZE as u64;
/// Pages per 2 MiB folio.
pub const HUGE_PAGES: u64 = HUGE_SIZE / PAGE;

/// Boots a fresh node ([`ours::with_node`]), builds an MMU over it, and
/// runs `f` on the MMU. Afterwards waits for the table frames queued for
/// freeing ([`Mmu::barrier`]) and checks the node is clean.
///
/// # Errors
/// As [`ours::with_node`]; the RCU could not be built; or, after `f`, a
/// table frame or any other frame is still allocated (the workloads would
/// then have leaked, and their figures would time a broken path).
pub fn with_mmu<R>(f: impl for<'m, 'a> FnOnce(&'m Mmu<'a>) -> R) -> Result<R, Box<dyn Error>> {
    with_mmu_config(NodeConfig::default(), f)
}

/// [`with_mmu`] over a node booted with `config`.
///
/// # Errors
/// As [`with_mmu`].
pub fn with_mmu_config<R>(
    config: NodeConfig,
    f: impl for<'m, 'a> FnOnce(&'m Mmu<'a>) -> R,
) -> Result<R, Box<dyn Error>> {
    ours::with_node(config, |node, platform| {
        // The frame return before the RCU: the RCU's queued frames must not
        // outlive it.
        let tables = Mmu::table_return(node);
        let rcu = Rcu::new(platform, RcuConfig::default())?;
        let mmu = Mmu::new(&rcu, &tables);
        let result = f(&mmu);
        mmu.barrier();
        let (tables_left, allocated) = (mmu.table_frames(), node.audit().allocated);
        if tables_left != 0 || allocated != 0 {
            return Err(
                format!("the benchmark left {tables_left} table frames and {allocated} frames allocated").into()
            );
        }
        Ok(result)
    })?
}

/// Lets the RCU run the callbacks that free unlinked table frames: the
/// calling thread is CPU 0 and outside any read section (what the
/// simulator does between operations).
fn quiescent(mmu: &Mmu<'_>) {
    mmu.rcu().quiescent(CpuId(0));
}

/// Writes one byte to each of the `pages` pages from `va` (their first
/// touch faults them in).
///
/// # Panics
/// If a write faults with an error: the bench maps what it writes.
pub fn touch(aspace: &AddressSpace<'_, '_>, va: u64, pages: u64) {
    for i in 0..pages {
        aspace.write(va + i * PAGE, &[1]).expect("the bench writes only what it mapped writable");
    }
}

/// Maps and faults in `pages` pages of order-0 folios (no THP).
///
/// # Errors
/// The address space had no room.
pub fn small_pages(aspace: &AddressSpace<'_, '_>, pages: u64) -> Result<u64, Box<dyn Error>> {
    let va = aspace.mmap_anon(pages * PAGE, true, false)?;
    touch(aspace, va, pages);
    Ok(va)
}

/// Maps and faults in one PMD-mapped 2 MiB folio.
///
/// # Errors
/// The address space had no room, or the fault fell back to 4 KiB pages.
pub fn pmd_thp(aspace: &AddressSpace<'_, '_>) -> Result<u64, Box<dyn Error>> {
    let mmu = aspace.mmu();
    let before = mmu.event(MmEvent::ThpFaultAlloc);
    let va = aspace.mmap_anon(HUGE_SIZE, true, true)?;
    aspace.write(va, &[1])?;
    if mmu.event(MmEvent::ThpFaultAlloc) != before + 1 {
        return Err("the THP fault fell back to 4 KiB pages".into());
    }
    Ok(va)
}

/// Splits the PMD mapping of the 2 MiB folio at `va` into a PTE table
/// (write-protecting one page and back, as `mprotect` does), leaving the
/// folio whole and mapped by 512 writable PTEs.
///
/// # Errors
/// The `mprotect` failed.
pub fn split_pmd(aspace: &AddressSpace<'_, '_>, va: u64) -> Result<(), Box<dyn Error>> {
    aspace.mprotect(va, PAGE, false)?;
    aspace.mprotect(va, PAGE, true)?;
    Ok(())
}

/// GUP-fast pins of the `nr` pages from `va`, then their unpin (dropping
/// the runs): one batch per iteration.
#[inline(never)]
pub fn pin_loop<'m, 'a>(
    aspace: &AddressSpace<'m, 'a>,
    va: u64,
    nr: u64,
    out: &mut [Option<GupRun<'m, 'a>>],
    iters: u64,
) -> Duration {
    let (va, nr) = black_box((va, nr));
    crate::harness::time_loop(iters, || {
        let runs = get_user_pages_fast(aspace, va, nr, GupFlags::PIN, out).expect("the pages are mapped");
        for slot in &mut out[..runs] {
            *slot = None;
        }
    })
}

/// Where the split of [`split_loop`] starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitFrom {
    /// A freshly faulted PMD-mapped folio: the split includes the PMD split.
    Pmd,
    /// The same folio with its PMD split beforehand (outside the clock): the
    /// folio split and remap alone.
    Ptes,
}

/// Per iteration: faults in a 2 MiB THP (outside the clock), times
/// `split_folio(mode)` of it, then unmaps it (outside the clock).
///
/// # Panics
/// If the THP fault falls back or the split fails: the node has room and
/// nothing pins the folio.
#[inline(never)]
pub fn split_loop(aspace: &AddressSpace<'_, '_>, mode: SplitMode, from: SplitFrom, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let va = pmd_thp(aspace).expect("a fresh 1 GiB node has 2 MiB blocks");
        if from == SplitFrom::Ptes {
            split_pmd(aspace, va).expect("the folio is mapped");
        }
        // The page the split is around (the first written one).
        let at = black_box(va);
        let start = Instant::now();
        let done = split_folio(aspace, at, mode);
        total += start.elapsed();
        done.expect("nothing pins the folio");
        aspace.munmap(va, HUGE_SIZE).expect("mapped above");
        quiescent(aspace.mmu());
    }
    total
}

/// Per iteration: maps `pages` pages (a THP area if `thp`), times the first
/// write of one byte to each of the first `touched` of them, and unmaps
/// them (the map and unmap outside the clock).
///
/// # Panics
/// If a write faults with an error.
#[inline(never)]
pub fn first_touch_loop(aspace: &AddressSpace<'_, '_>, pages: u64, touched: u64, thp: bool, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let va = aspace.mmap_anon(pages * PAGE, true, thp).expect("the address space has room");
        let start = Instant::now();
        touch(aspace, black_box(va), touched);
        total += start.elapsed();
        aspace.munmap(va, pages * PAGE).expect("mapped above");
        quiescent(aspace.mmu());
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use memdesc::Order;

    fn slots<'m, 'a>(n: u64) -> Vec<Option<GupRun<'m, 'a>>> {
        (0..n).map(|_| None).collect()
    }

    #[test]
    fn pins_of_small_pages_are_one_run_each_and_all_unpinned() {
        let fast = with_mmu(|mmu| {
            let aspace = AddressSpace::new(mmu).unwrap();
            let va = small_pages(&aspace, 8).unwrap();
            let mut out = slots(8);
            pin_loop(&aspace, va, 8, &mut out, 3);
            assert!(out.iter().all(Option::is_none), "every run was dropped");
            assert_eq!(mmu.event(MmEvent::Pins), 24);
            assert_eq!(mmu.event(MmEvent::Unpins), 24);
            mmu.event(MmEvent::GupFast)
        })
        .unwrap();
        assert_eq!(fast, 3, "every call took the fast path");
    }

    #[test]
    fn a_split_pmd_leaves_one_folio_under_512_ptes() {
        with_mmu(|mmu| {
            let aspace = AddressSpace::new(mmu).unwrap();
            let va = pmd_thp(&aspace).unwrap();
            assert_eq!(aspace.audit().pmd_mappings, 1);
            split_pmd(&aspace, va).unwrap();
            let audit = aspace.audit();
            assert_eq!((audit.pmd_mappings, audit.pte_mappings, audit.violations), (0, HUGE_PAGES, 0));
            let mut out = slots(1);
            pin_loop(&aspace, va, HUGE_PAGES, &mut out, 2);
            assert_eq!(mmu.event(MmEvent::Unpins), 2 * HUGE_PAGES, "one run of 512 pins per call");
        })
        .unwrap();
    }

    #[test]
    fn splits_and_faults_leave_the_node_clean() {
        with_mmu(|mmu| {
            let aspace = AddressSpace::new(mmu).unwrap();
            split_loop(&aspace, SplitMode::Uniform(Order::ZERO), SplitFrom::Pmd, 2);
            split_loop(&aspace, SplitMode::Around(Order::ZERO), SplitFrom::Ptes, 2);
            assert_eq!(mmu.event(MmEvent::ThpSplitPage), 4);
            first_touch_loop(&aspace, 16, 16, false, 2);
            first_touch_loop(&aspace, HUGE_PAGES, 1, true, 2);
            assert_eq!(mmu.event(MmEvent::ThpFaultAlloc), 6);
            assert_eq!(aspace.table_frames(), 1, "only the root is left");
        })
        .unwrap();
    }

    #[test]
    fn a_leaked_frame_is_an_error() {
        let leaked = with_mmu(|mmu| {
            let aspace = AddressSpace::new(mmu).unwrap();
            let _ = small_pages(&aspace, 1).unwrap();
            std::mem::forget(aspace);
        });
        assert!(leaked.is_err(), "a forgotten address space leaves its page and tables allocated");
    }
}
