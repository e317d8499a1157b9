//! Lockless readers of the TYPESAFE_BY_RCU identity cache, as its users in
//! a kernel: inside an RCU read section, pick a published slot, get the
//! object's words from the allocator (`typesafe_words`), take the object's
//! own reference and revalidate its identity against the slot's
//! (`typesafe_get`; see [`super::identity`]): the object may have been
//! freed and reused meanwhile, a miss, expected. A revalidated object whose
//! payload is not its identity's is a violation.
//!
//! The allocator promises that an object found through a slot inside a
//! read section stays an object of its cache until the section ends (its
//! slab goes back to the buddy allocator only after a grace period); when
//! it cannot hand out the words, the slab must be on its way back through
//! RCU, still typed `Slab { SLAB_UNLISTED }`. Anything else is a violation.

use super::identity;
use super::slots::Slots;
use super::SlabStats;
use crate::rng::Rng;
use crate::violations::Violations;
use memdesc::rcu::RcuReadGuard;
use memdesc::slab::{typesafe_get, SlabAllocator, SLAB_UNLISTED};
use memdesc::{CpuId, Node, PageType, Pfn, Rcu, PAGE_SIZE};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Lookups per read section.
const PER_SECTION: usize = 8;
/// Read sections between progress updates and quiescent states.
const SECTIONS: usize = 16;
/// The pause after those: readers look up often, but leave the host's
/// cores to the CPUs that change things (a reader spinning flat out would
/// take one of this machine's few cores from the allocator CPUs).
const PAUSE: Duration = Duration::from_micros(50);
/// Chance per lookup, per mille, that the reader is "preempted" between
/// reading the slot and taking the object's reference (it yields its
/// core), which widens the window in which the object is freed and reused,
/// or its slab emptied and discarded, under it.
const PREEMPT_PER_MILLE: u64 = 20;
/// Frames a lookup walks back from a tail to its head (slabs are at most
/// order 3).
const MAX_TAIL_WALK: u64 = 1u64 << memdesc::slab::MAX_SLAB_ORDER;

/// What a reader is given.
pub(crate) struct ReaderContext<'c, 'a> {
    pub(crate) slab: &'c SlabAllocator<'a>,
    pub(crate) slots: &'c Slots,
    pub(crate) rcu: &'c Rcu<'a>,
    /// The host address of physical address 0.
    pub(crate) base_addr: usize,
    pub(crate) cpu: u32,
    pub(crate) seed: u64,
    pub(crate) deadline: Instant,
    pub(crate) interrupt: &'c AtomicBool,
}

/// The type of the folio `pfn` is in, read from the descriptors without a
/// reference (the tag is atomic): the pfn's own type, or for a tail that of
/// its head within [`MAX_TAIL_WALK`] frames.
pub(crate) fn folio_type(node: &Node<'_>, pfn: Pfn) -> Option<PageType> {
    let map = node.memmap();
    (0..MAX_TAIL_WALK).filter_map(|back| pfn.0.checked_sub(back)).find_map(|p| {
        let ty = map.page(Pfn(p))?.page_type();
        (ty != PageType::Tail).then_some(ty)
    })
}

/// The pfn of host address `addr` in a machine whose physical address 0
/// is at `base_addr`.
pub(crate) fn pfn_of(base_addr: usize, addr: usize) -> Pfn {
    Pfn((addr.wrapping_sub(base_addr) / PAGE_SIZE) as u64)
}

/// Reads until the deadline or the interrupt; returns its counts.
pub(crate) fn run(ctx: &ReaderContext<'_, '_>) -> (SlabStats, Violations) {
    let mut rng = Rng::stream(ctx.seed ^ 0x2EAD, u64::from(ctx.cpu));
    let (mut stats, mut v) = (SlabStats::default(), Violations::default());
    loop {
        for _ in 0..SECTIONS {
            let section = ctx.rcu.read_lock();
            for _ in 0..PER_SECTION {
                lookup(ctx, &section, &mut rng, &mut stats, &mut v);
            }
            drop(section);
        }
        ctx.rcu.quiescent(CpuId(ctx.cpu));
        std::thread::sleep(PAUSE);
        // Relaxed: a stop flag.
        if Instant::now() >= ctx.deadline || ctx.interrupt.load(Ordering::Relaxed) {
            break;
        }
    }
    ctx.rcu.idle_enter(CpuId(ctx.cpu));
    (stats, v)
}

/// One lookup of slot `i`, inside `section`.
fn lookup(
    ctx: &ReaderContext<'_, '_>,
    section: &RcuReadGuard<'_, '_>,
    rng: &mut Rng,
    stats: &mut SlabStats,
    v: &mut Violations,
) {
    let Some(seen) = ctx.slots.read(rng.below(ctx.slots.len() as u64) as usize) else { return };
    stats.reader_lookups += 1;
    if rng.per_mille(PREEMPT_PER_MILLE) {
        std::thread::yield_now();
    }
    let Some(words) = ctx.slab.typesafe_words(section, seen.addr) else {
        match folio_type(ctx.slab.node(), pfn_of(ctx.base_addr, seen.addr)) {
            Some(PageType::Slab { cache: SLAB_UNLISTED }) => stats.reader_unlisted += 1,
            other => v.record(|| {
                format!(
                    "slab reader: the identity object at {:#x} is no TYPESAFE_BY_RCU object inside a read section \
                     (its frame: {other:?})",
                    seen.addr
                )
            }),
        }
        return;
    };
    let got =
        typesafe_get(section, || identity::get(words), || identity::is(words, seen.identity), || identity::put(words));
    if !got {
        stats.reader_misses += 1;
        return;
    }
    stats.reader_hits += 1;
    if let Some((word, expected, found)) = identity::first_wrong(words, seen.identity) {
        v.record(|| {
            format!(
                "slab reader: revalidated object {:#x} at {:#x}: word {word} holds {found:#x}, not {expected:#x}",
                seen.identity, seen.addr
            )
        });
    }
    identity::put(words);
}
