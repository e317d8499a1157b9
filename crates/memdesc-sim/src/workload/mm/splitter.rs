//! A splitter: splits the huge folios of regions processes published
//! (Linux's `split_huge_page` from outside the process: compaction), aiming
//! most of the time at ranges pinners hold, so that some splits meet a pin
//! and are refused; and now and then drains a process's deferred-split
//! queue (the folios an unmap left partly mapped), as Linux's deferred
//! split shrinker does.
//!
//! After each split it reads the pages around the address through the
//! process's address space, as another thread of that process would: its
//! CPU then holds translations of that address space in its TLB, so the
//! process's unmaps, drops and protection changes must shoot them down
//! for real, and a page freed before its shootdown would be read here
//! (each word read must be zero or a stamp of its own address).

use super::process::{count_split, split_mode};
use super::{vstamp, MmContext, MmResult, MmStats};
use crate::rng::Rng;
use crate::violations::Violations;
use memdesc::pgtable::{AddressSpace, Fault};
use memdesc::thp::{split_deferred, split_folio};
use memdesc::PAGE_SIZE;
use std::time::Duration;

const PAGE: u64 = PAGE_SIZE as u64;
/// Chance, per mille, of aiming at a range a pinner holds (or held lately).
const HOT_PER_MILLE: u64 = 600;
/// Chance per split, per mille, of draining a deferred-split queue first.
const DEFERRED_PER_MILLE: u64 = 100;
/// Pages read through the address space after each split.
const READ_PAGES: u64 = 8;
/// The pause between splits, so processes and pinners get the address
/// spaces' locks.
const PAUSE: Duration = Duration::from_micros(100);

/// Runs splitter number `index` until the deadline.
pub(crate) fn run(ctx: &MmContext<'_, '_, '_>, index: usize) -> MmResult {
    let mut rng = Rng::stream(ctx.seed, 0xb000 + u64::from(ctx.cpu));
    let mut stats = MmStats::default();
    let mut interrupted_after = None;
    let mut violations = Violations::default();
    let mut seen = Violations::default();
    let who = format!("splitter {index} (cpu{})", ctx.cpu);
    super::guarded(&who, &mut violations, || {
        while !ctx.should_stop(&mut interrupted_after) {
            let target = if rng.per_mille(HOT_PER_MILLE) { ctx.registry.pick_hot(&mut rng) } else { None };
            let target = target.or_else(|| {
                let region = ctx.registry.pick(&mut rng, 1000)?;
                Some((region.process, region.start + rng.below(region.len / PAGE) * PAGE))
            });
            let Some((process, va)) = target else {
                std::thread::sleep(PAUSE);
                continue;
            };
            let aspace = &ctx.aspaces[process];
            if rng.per_mille(DEFERRED_PER_MILLE) {
                let done = split_deferred(aspace);
                stats.deferred_splits += u64::from(done.split);
                stats.splits_busy += u64::from(done.busy);
            }
            count_split(&mut stats, split_folio(aspace, va, split_mode(&mut rng)));
            read_around(ctx, aspace, va, &who, &mut stats, &mut seen);
            ctx.quiescent();
            ctx.publish(&stats);
            std::thread::sleep(PAUSE);
        }
    });
    seen.merge(violations);
    MmResult { stats, violations: seen, interrupted_after }
}

/// Reads the first word of [`READ_PAGES`] pages from `va` through
/// `aspace` (this CPU's TLB, else a walk, else a fault) and checks each is
/// zero or a stamp of its address; stops at the first page not mapped.
fn read_around(
    ctx: &MmContext<'_, '_, '_>,
    aspace: &AddressSpace<'_, '_>,
    va: u64,
    who: &str,
    stats: &mut MmStats,
    v: &mut Violations,
) {
    for at in (0..READ_PAGES).map(|i| va + i * PAGE) {
        let mut buf = [0u8; 8];
        match aspace.read(at, &mut buf) {
            Ok(()) => {}
            Err(Fault::NotMapped(_)) => return,
            Err(Fault::NoMemory(_)) => {
                stats.out_of_memory += 1;
                return;
            }
            Err(fault) => {
                v.record(|| format!("{who}: read at {at:#x} faulted: {fault}"));
                return;
            }
        }
        let word = u64::from_ne_bytes(buf);
        stats.thread_reads += 1;
        if !vstamp::is_valid(ctx.seed, aspace.asid(), at, word) {
            v.record(|| format!("{who}: {at:#x} (asid {}) read {word:#x}, no stamp of that address", aspace.asid()));
        }
    }
}
