//! A splitter: splits the huge folios of regions processes published
//! (Linux's `split_huge_page` from outside the process: compaction,
//! deferred splitting), aiming most of the time at ranges pinners hold, so
//! that some splits meet a pin and are refused.

use super::process::{count_split, split_mode};
use super::{MmContext, MmResult, MmStats};
use crate::rng::Rng;
use crate::violations::Violations;
use memdesc::thp::split_folio;
use memdesc::PAGE_SIZE;
use std::time::Duration;

const PAGE: u64 = PAGE_SIZE as u64;
/// Chance, per mille, of aiming at a range a pinner holds (or held lately).
const HOT_PER_MILLE: u64 = 600;
/// The pause between splits, so processes and pinners get the address
/// spaces' locks.
const PAUSE: Duration = Duration::from_micros(100);

/// Runs splitter number `index` until the deadline.
pub(crate) fn run(ctx: &MmContext<'_, '_, '_>, index: usize) -> MmResult {
    let mut rng = Rng::stream(ctx.seed, 0xb000 + u64::from(ctx.cpu));
    let mut stats = MmStats::default();
    let mut interrupted_after = None;
    let mut violations = Violations::default();
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
            count_split(&mut stats, split_folio(&ctx.aspaces[process], va, split_mode(&mut rng)));
            ctx.quiescent();
            ctx.publish(&stats);
            std::thread::sleep(PAUSE);
        }
    });
    MmResult { stats, violations, interrupted_after }
}
