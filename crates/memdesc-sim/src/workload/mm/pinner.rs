//! A pinner: a device doing direct I/O into processes' memory. It pins a
//! range some process published with GUP-fast, checks through the pins
//! that every page holds stamps that belong at its address (any
//! generation, or zero), holds the pins a while so splits and unmaps meet
//! them, checks again (pinned pages stay in place, even unmapped), and
//! unpins.

use super::{vstamp, MmContext, MmResult, MmStats, Region};
use crate::rng::Rng;
use crate::violations::Violations;
use memdesc::gup::{get_user_pages_fast, GupError, GupFlags, GupRun};
use memdesc::pgtable::{Fault, HUGE_FRAMES};
use memdesc::PAGE_SIZE;
use std::time::Duration;

const PAGE: u64 = PAGE_SIZE as u64;
/// The most pages one pin covers (and so the most runs it can need).
const MAX_PAGES: u64 = HUGE_FRAMES;
/// How long pins are held, in microseconds (a range: a short I/O to a slow
/// one).
const HOLD_US: (u64, u64) = (100, 2000);

/// Runs pinner number `index` until the deadline.
pub(crate) fn run(ctx: &MmContext<'_, '_, '_>, index: usize) -> MmResult {
    let mut pinner = Pinner {
        ctx,
        rng: Rng::stream(ctx.seed, 0xa000 + u64::from(ctx.cpu)),
        interrupted_after: None,
        stats: MmStats::default(),
        violations: Violations::default(),
        who: format!("pinner {index} (cpu{})", ctx.cpu),
    };
    let who = pinner.who.clone();
    let mut violations = Violations::default();
    super::guarded(&who, &mut violations, || {
        let mut out: Vec<Option<GupRun<'_, '_>>> = (0..MAX_PAGES).map(|_| None).collect();
        while !pinner.ctx.should_stop(&mut pinner.interrupted_after) {
            pinner.pin_once(&mut out);
            ctx.quiescent();
            ctx.publish(&pinner.stats);
        }
    });
    pinner.violations.merge(violations);
    MmResult { stats: pinner.stats, violations: pinner.violations, interrupted_after: pinner.interrupted_after }
}

struct Pinner<'c, 'r, 'm, 'a> {
    ctx: &'c MmContext<'r, 'm, 'a>,
    rng: Rng,
    interrupted_after: Option<std::time::Duration>,
    stats: MmStats,
    violations: Violations,
    who: String,
}

impl<'r, 'm, 'a> Pinner<'_, 'r, 'm, 'a> {
    /// One I/O: pick, pin, check, hold, check, unpin.
    fn pin_once(&mut self, out: &mut [Option<GupRun<'m, 'a>>]) {
        let Some(region) = self.ctx.registry.pick(&mut self.rng, 850) else {
            std::thread::sleep(Duration::from_micros(200));
            return;
        };
        let aspace = &self.ctx.aspaces[region.process];
        let (va, nr_pages) = self.range(region);
        let flags = match self.rng.below(20) {
            0 | 1 => GupFlags::PIN_WRITE,
            2 => GupFlags::GET,
            _ => GupFlags::PIN,
        };
        // Now and then a buffer too small for a range that may span
        // several folios: a typed error, nothing held.
        let slots = if nr_pages > 1 && self.rng.per_mille(20) { 1 } else { out.len() };
        self.stats.gup_calls += 1;
        let n = match get_user_pages_fast(aspace, va, nr_pages, flags, &mut out[..slots]) {
            Ok(n) => n,
            Err(GupError::Fault(Fault::NotMapped(_))) => {
                // Unmapped under us (or never mapped there): refused, as it
                // must be.
                self.stats.gup_refused += 1;
                return;
            }
            Err(GupError::Fault(Fault::Protection(_))) if flags.write => {
                self.stats.gup_refused += 1;
                return;
            }
            Err(GupError::Fault(Fault::NoMemory(_))) => {
                self.stats.out_of_memory += 1;
                return;
            }
            Err(GupError::BufferTooSmall { .. }) if slots < out.len() => {
                self.stats.gup_refused += 1;
                return;
            }
            Err(e) => {
                let who = &self.who;
                self.violations.record(|| format!("{who}: GUP of {nr_pages} pages at {va:#x} ({flags:?}) failed: {e}"));
                return;
            }
        };
        if out[..slots].iter().skip(n).any(Option::is_some) {
            let who = &self.who;
            self.violations.record(|| format!("{who}: GUP filled slots past the {n} it returned"));
        }
        let runs = &out[..n];
        self.check_runs(region, va, nr_pages, flags, runs);
        self.stats.pages_pinned += if flags.pin { nr_pages } else { 0 };
        self.ctx.registry.pinned(region.process, va);
        let hold = self.rng.in_range(HOLD_US.0 as u32..=HOLD_US.1 as u32);
        std::thread::sleep(Duration::from_micros(u64::from(hold)));
        // Held pages stay where they were, with what they held (or what
        // the process wrote since, through the same mapping), and pinned,
        // whatever was split, protected or unmapped meanwhile.
        self.check_stamps(region, runs);
        if let Some(run) = runs.iter().flatten().find(|run| flags.pin && !run.maybe_dma_pinned()) {
            let who = &self.who;
            self.violations.record(|| format!("{who}: {run:?} no longer says it may be pinned after the hold"));
        }
        for slot in &mut out[..n] {
            *slot = None;
        }
    }

    /// A range of `region` to pin: a few pages, or up to a huge page's worth
    /// in a THP region.
    fn range(&mut self, region: Region) -> (u64, u64) {
        let pages = region.len / PAGE;
        let max = if region.thp && self.rng.per_mille(500) { MAX_PAGES } else { 16 };
        let first = self.rng.below(pages);
        let n = 1 + self.rng.below((pages - first).min(max));
        (region.start + first * PAGE, n)
    }

    /// The runs cover the range in order, each as pinned as asked, and hold
    /// valid stamps.
    fn check_runs(&mut self, region: Region, va: u64, nr_pages: u64, flags: GupFlags, runs: &[Option<GupRun<'_, '_>>]) {
        let mut next = va;
        for run in runs {
            let Some(run) = run else {
                let who = &self.who;
                self.violations.record(|| format!("{who}: GUP returned an empty slot"));
                return;
            };
            let pinned_ok = run.is_pinned() == flags.pin && (!flags.pin || run.maybe_dma_pinned());
            let folio = run.folio_pfn();
            let inside = run.first_pfn().0 >= folio.0;
            if run.va() != next || !pinned_ok || !inside || run.nr_pages() == 0 {
                let who = &self.who;
                self.violations.record(|| {
                    format!(
                        "{who}: run {run:?} (folio {folio}, maybe_dma_pinned {}) at {next:#x} for {flags:?}",
                        run.maybe_dma_pinned()
                    )
                });
            }
            next = run.va() + u64::from(run.nr_pages()) * PAGE;
        }
        if next != va + nr_pages * PAGE {
            let who = &self.who;
            self.violations.record(|| format!("{who}: runs end at {next:#x}, asked {nr_pages} pages from {va:#x}"));
        }
        self.check_stamps(region, runs);
    }

    /// Every held page's first and last word is zero or a stamp for its
    /// own address in its process's address space.
    fn check_stamps(&mut self, region: Region, runs: &[Option<GupRun<'_, '_>>]) {
        let asid = self.ctx.aspaces[region.process].asid();
        for run in runs.iter().flatten() {
            let mut reader = run.reader();
            for k in 0..u64::from(run.nr_pages()) {
                let page_va = run.va() + k * PAGE;
                for offset in [0, PAGE - 8] {
                    reader.seek((k * PAGE + offset) as usize);
                    let word = reader.read_u64().unwrap_or(u64::MAX);
                    self.stats.stamps_checked += 1;
                    if !vstamp::is_valid(self.ctx.seed, asid, page_va + offset, word) {
                        let (who, pfn) = (&self.who, run.first_pfn().add(k));
                        self.violations.record(|| {
                            format!(
                                "{who}: pinned page {pfn} at {:#x} (asid {asid}) holds {word:#x}, no stamp of that \
                                 address",
                                page_va + offset
                            )
                        });
                    }
                }
            }
        }
    }
}
