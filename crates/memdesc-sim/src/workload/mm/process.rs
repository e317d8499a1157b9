//! A process: one address space, regions mapped, stamped, read back,
//! protected, dropped, split and re-mapped (see the parent module).
//!
//! The process knows what every page must hold: the generation it last
//! stamped there, or zero (never written, or dropped by `MADV_DONTNEED`).
//! Splits, protection changes and pins must not change a byte; only its
//! own writes and drops do.

use super::{vstamp, MmContext, MmResult, MmStats, Region};
use crate::rng::Rng;
use crate::violations::Violations;
use memdesc::pgtable::{AddressSpace, Fault, MmError, HUGE_FRAMES};
use memdesc::thp::{split_folio, SplitMode, ThpSplitError};
use memdesc::{Order, PAGE_SIZE};

const PAGE: u64 = PAGE_SIZE as u64;
/// The byte offset of a page's last stamp word.
const LAST_WORD: u64 = PAGE - 8;
/// A page whose contents are not known (a write half done when memory ran
/// out): checked only for being some valid stamp.
const UNKNOWN: u32 = u32::MAX;
/// Regions one process keeps mapped at most.
const MAX_REGIONS: usize = 6;
/// The pause between batches of operations.
const PAUSE: std::time::Duration = std::time::Duration::from_micros(50);
/// The most pages one write, read, protect or drop covers.
const MAX_SPAN: u64 = 64;

// Chances per step, per mille, in this order; the rest reads back.
const MAP_PER_MILLE: u64 = 40;
const WRITE_PER_MILLE: u64 = 300;
const PROTECT_PER_MILLE: u64 = 80;
const DONTNEED_PER_MILLE: u64 = 80;
const SPLIT_PER_MILLE: u64 = 60;
const REMAP_PER_MILLE: u64 = 40;
const AUDIT_PER_MILLE: u64 = 15;

/// A region and what its pages hold.
struct Mapped {
    region: Region,
    /// Per page: 0 (zero), a generation, or [`UNKNOWN`].
    gens: Vec<u32>,
    /// The read-only sub-range (first page, pages), if one is.
    read_only: Option<(u64, u64)>,
    /// The generation the next write stamps.
    next_gen: u32,
}

impl Mapped {
    fn pages(&self) -> u64 {
        self.region.len / PAGE
    }

    fn va(&self, page: u64) -> u64 {
        self.region.start + page * PAGE
    }

    fn is_read_only(&self, page: u64) -> bool {
        self.read_only.is_some_and(|(first, n)| (first..first + n).contains(&page))
    }
}

/// Runs process `index` (its address space is `ctx.aspaces[index]`) until
/// the deadline, then unmaps everything.
pub(crate) fn run(ctx: &MmContext<'_, '_, '_>, index: usize, budget_pages: u64) -> MmResult {
    let aspace = &ctx.aspaces[index];
    let mut p = Process {
        ctx,
        aspace,
        index,
        asid: aspace.asid(),
        budget_pages: budget_pages.max(HUGE_FRAMES),
        rng: Rng::stream(ctx.seed, 0x9000 + u64::from(ctx.cpu)),
        mapped: Vec::new(),
        interrupted_after: None,
        stats: MmStats::default(),
        violations: Violations::default(),
    };
    let who = format!("process {index} (cpu{})", ctx.cpu);
    let mut violations = Violations::default();
    super::guarded(&who, &mut violations, || {
        while !p.ctx.should_stop(&mut p.interrupted_after) {
            for _ in 0..8 {
                p.step();
                ctx.quiescent();
            }
            let tables = aspace.mmu().table_frames();
            p.stats.peak_table_frames = p.stats.peak_table_frames.max(tables);
            ctx.publish(&p.stats);
            // A pause between batches, as a process computes between
            // system calls: its address-space lock is a spin lock, and on an
            // oversubscribed host a process that takes it back to back
            // starves the pinners and the splitter spinning on it.
            std::thread::sleep(PAUSE);
        }
        p.unmap_all();
    });
    p.violations.merge(violations);
    MmResult { stats: p.stats, violations: p.violations, interrupted_after: p.interrupted_after }
}

struct Process<'c, 'r, 'm, 'a> {
    ctx: &'c MmContext<'r, 'm, 'a>,
    aspace: &'r AddressSpace<'m, 'a>,
    index: usize,
    asid: u32,
    /// Pages all regions may cover together.
    budget_pages: u64,
    rng: Rng,
    mapped: Vec<Mapped>,
    interrupted_after: Option<std::time::Duration>,
    stats: MmStats,
    violations: Violations,
}

impl Process<'_, '_, '_, '_> {
    fn who(&self) -> String {
        format!("process {} (asid {}, cpu{})", self.index, self.asid, self.ctx.cpu)
    }

    fn step(&mut self) {
        let mapped_pages: u64 = self.mapped.iter().map(Mapped::pages).sum();
        if self.mapped.is_empty()
            || (self.mapped.len() < MAX_REGIONS
                && mapped_pages < self.budget_pages
                && self.rng.per_mille(MAP_PER_MILLE))
        {
            self.map_one();
            return;
        }
        let i = self.rng.below(self.mapped.len() as u64) as usize;
        let mut r = self.rng.below(1000);
        for (chance, op) in [
            (WRITE_PER_MILLE, Self::write_span as fn(&mut Self, usize)),
            (PROTECT_PER_MILLE, Self::toggle_protection),
            (DONTNEED_PER_MILLE, Self::dontneed_span),
            (SPLIT_PER_MILLE, Self::split_one),
            (REMAP_PER_MILLE, Self::remap),
            (AUDIT_PER_MILLE, |p: &mut Self, _| p.audit()),
        ] {
            if r < chance {
                return op(self, i);
            }
            r -= chance;
        }
        self.verify_span(i);
    }

    /// A random span of region `i`: (first page, pages).
    fn span(&mut self, i: usize) -> (u64, u64) {
        let pages = self.mapped[i].pages();
        let first = self.rng.below(pages);
        let n = 1 + self.rng.below((pages - first).min(MAX_SPAN));
        (first, n)
    }

    /// Maps a region: THP-able (2–8 MiB, not always a whole number of huge
    /// pages) or small (a few pages); stamps all of it half the time.
    fn map_one(&mut self) {
        let thp = self.rng.per_mille(600);
        let pages = if thp { HUGE_FRAMES + self.rng.below(3 * HUGE_FRAMES + 1) } else { 1 + self.rng.below(16) };
        let pages = pages.min(self.budget_pages);
        match self.aspace.mmap_anon(pages * PAGE, true, thp) {
            Ok(start) => {
                let region = Region { process: self.index, start, len: pages * PAGE, thp };
                self.stats.maps += 1;
                self.stats.thp_maps += u64::from(thp);
                self.mapped.push(Mapped { region, gens: vec![0; pages as usize], read_only: None, next_gen: 1 });
                self.ctx.registry.publish(region);
                if self.rng.per_mille(500) {
                    let i = self.mapped.len() - 1;
                    self.write(i, 0, pages);
                }
            }
            Err(MmError::NoMemory(_)) => self.stats.out_of_memory += 1,
            Err(e) => {
                let who = self.who();
                self.violations.record(|| format!("{who}: mmap of {pages} pages refused: {e}"));
            }
        }
    }

    fn write_span(&mut self, i: usize) {
        let (first, n) = self.span(i);
        self.write(i, first, n);
    }

    /// Stamps pages `first..first + n` of region `i` with a new generation;
    /// read-only pages must refuse the write.
    fn write(&mut self, i: usize, first: u64, n: u64) {
        let gen = self.mapped[i].next_gen;
        self.mapped[i].next_gen = vstamp::next_gen(gen);
        let mut tried_read_only = false;
        for page in first..first + n {
            let va = self.mapped[i].va(page);
            if self.mapped[i].is_read_only(page) {
                if !tried_read_only {
                    tried_read_only = true;
                    self.write_read_only(i, page);
                }
                continue;
            }
            let words = [
                (va, vstamp::stamp(self.ctx.seed, self.asid, va, gen)),
                (va + LAST_WORD, vstamp::stamp(self.ctx.seed, self.asid, va + LAST_WORD, gen)),
            ];
            let mut written = 0;
            for (at, word) in words {
                match self.aspace.write(at, &word.to_ne_bytes()) {
                    Ok(()) => written += 1,
                    Err(Fault::NoMemory(_)) => {
                        self.stats.out_of_memory += 1;
                        break;
                    }
                    Err(fault) => {
                        let who = self.who();
                        self.violations.record(|| format!("{who}: write at {at:#x} faulted: {fault}"));
                        break;
                    }
                }
            }
            self.mapped[i].gens[page as usize] = match written {
                0 => self.mapped[i].gens[page as usize],
                2 => gen,
                _ => UNKNOWN,
            };
            self.stats.pages_written += u64::from(written == 2);
        }
    }

    /// Writes what page `page` of region `i` already holds (so nothing
    /// changes if the write wrongly succeeds) and expects a protection
    /// fault.
    fn write_read_only(&mut self, i: usize, page: u64) {
        let gen = self.mapped[i].gens[page as usize];
        if gen == UNKNOWN {
            return;
        }
        let va = self.mapped[i].va(page);
        let word = if gen == 0 { 0 } else { vstamp::stamp(self.ctx.seed, self.asid, va, gen) };
        match self.aspace.write(va, &word.to_ne_bytes()) {
            Err(Fault::Protection(at)) if at == va => self.stats.protection_faults += 1,
            other => {
                let who = self.who();
                self.violations.record(|| format!("{who}: write to read-only {va:#x} gave {other:?}"));
            }
        }
    }

    /// Reads pages of region `i` back and compares them with what they must
    /// hold.
    fn verify_span(&mut self, i: usize) {
        let (first, n) = self.span(i);
        for page in first..first + n {
            let va = self.mapped[i].va(page);
            let gen = self.mapped[i].gens[page as usize];
            for at in [va, va + LAST_WORD] {
                let mut buf = [0u8; 8];
                match self.aspace.read(at, &mut buf) {
                    Ok(()) => {}
                    Err(Fault::NoMemory(_)) => {
                        self.stats.out_of_memory += 1;
                        return;
                    }
                    Err(fault) => {
                        let who = self.who();
                        self.violations.record(|| format!("{who}: read at {at:#x} faulted: {fault}"));
                        return;
                    }
                }
                let found = u64::from_ne_bytes(buf);
                let ok = match gen {
                    UNKNOWN => vstamp::is_valid(self.ctx.seed, self.asid, at, found),
                    0 => found == 0,
                    gen => found == vstamp::stamp(self.ctx.seed, self.asid, at, gen),
                };
                if !ok {
                    let who = self.who();
                    let valid = vstamp::is_valid(self.ctx.seed, self.asid, at, found);
                    self.violations.record(|| {
                        format!(
                            "{who}: {at:#x} holds {found:#x} (a stamp for this address: {valid}), expected \
                             generation {gen}"
                        )
                    });
                }
                self.stats.bytes_verified += 8;
            }
            self.stats.zero_pages_verified += u64::from(gen == 0);
        }
    }

    /// Makes a span of region `i` read-only (splitting a PMD mapping it
    /// cuts) and checks a write is refused, or makes it writable again.
    fn toggle_protection(&mut self, i: usize) {
        let start = self.mapped[i].region.start;
        if let Some((first, n)) = self.mapped[i].read_only {
            match self.aspace.mprotect(start + first * PAGE, n * PAGE, true) {
                Ok(()) => self.mapped[i].read_only = None,
                Err(MmError::NoMemory(_)) => self.stats.out_of_memory += 1,
                Err(e) => {
                    let who = self.who();
                    self.violations.record(|| format!("{who}: mprotect back to writable refused: {e}"));
                }
            }
            return;
        }
        let (first, n) = self.span(i);
        match self.aspace.mprotect(start + first * PAGE, n * PAGE, false) {
            Ok(()) => {
                self.stats.mprotects += 1;
                self.mapped[i].read_only = Some((first, n));
                let page = first + self.rng.below(n);
                self.write_read_only(i, page);
            }
            Err(MmError::NoMemory(_)) => self.stats.out_of_memory += 1,
            Err(e) => {
                let who = self.who();
                self.violations.record(|| format!("{who}: mprotect read-only refused: {e}"));
            }
        }
    }

    /// Drops a span of region `i`: its pages read zero afterwards.
    fn dontneed_span(&mut self, i: usize) {
        let (first, n) = self.span(i);
        let start = self.mapped[i].va(first);
        match self.aspace.madvise_dontneed(start, n * PAGE) {
            Ok(()) => {
                self.stats.dontneeds += 1;
                self.mapped[i].gens[first as usize..(first + n) as usize].fill(0);
            }
            Err(MmError::NoMemory(_)) => self.stats.out_of_memory += 1,
            Err(e) => {
                let who = self.who();
                self.violations.record(|| format!("{who}: MADV_DONTNEED refused: {e}"));
            }
        }
    }

    /// Splits the folio mapping a random page of region `i`.
    fn split_one(&mut self, i: usize) {
        let page = self.rng.below(self.mapped[i].pages());
        let va = self.mapped[i].va(page);
        let mode = split_mode(&mut self.rng);
        count_split(&mut self.stats, split_folio(self.aspace, va, mode));
    }

    /// Unmaps region `i` and maps a new one.
    fn remap(&mut self, i: usize) {
        let region = self.mapped[i].region;
        self.ctx.registry.withdraw(region);
        match self.aspace.munmap(region.start, region.len) {
            Ok(()) => {
                self.stats.munmaps += 1;
                self.mapped.swap_remove(i);
                self.map_one();
            }
            Err(MmError::NoMemory(_)) => {
                self.stats.out_of_memory += 1;
                self.ctx.registry.publish(region);
            }
            Err(e) => {
                let who = self.who();
                self.violations
                    .record(|| format!("{who}: munmap of {:#x}+{:#x} refused: {e}", region.start, region.len));
                self.ctx.registry.publish(region);
            }
        }
    }

    /// Audits the address space: tables, mapcounts, references.
    fn audit(&mut self) {
        let audit = self.aspace.audit();
        self.stats.audits += 1;
        if audit.violations > 0 {
            let who = self.who();
            self.violations.record(|| format!("{who}: audit found {audit:?}"));
        }
    }

    /// Unmaps every region (teardown) and checks nothing stays mapped.
    fn unmap_all(&mut self) {
        // A munmap refused for lack of a table frame (splitting a PMD at
        // the edge) leaves the region: the allocator CPUs are freeing
        // everything now, so a few retries find one.
        for _ in 0..100 {
            let Some(m) = self.mapped.pop() else { break };
            self.ctx.registry.withdraw(m.region);
            match self.aspace.munmap(m.region.start, m.region.len) {
                Ok(()) => self.stats.munmaps += 1,
                Err(MmError::NoMemory(_)) => {
                    self.stats.out_of_memory += 1;
                    self.mapped.insert(0, m);
                    std::thread::yield_now();
                }
                Err(e) => {
                    let who = self.who();
                    self.violations.record(|| format!("{who}: teardown munmap refused: {e}"));
                }
            }
            self.ctx.quiescent();
        }
        let audit = self.aspace.audit();
        if !self.mapped.is_empty() || audit.violations > 0 || audit.pte_mappings + audit.pmd_mappings > 0 {
            let who = self.who();
            let left = self.mapped.len();
            self.violations.record(|| format!("{who}: after teardown {left} regions left, audit {audit:?}"));
        }
    }
}

/// A split mode: around one page to order 0 (Linux's `folio_split`) half
/// the time, else around or uniformly to a random lower order.
pub(crate) fn split_mode(rng: &mut Rng) -> SplitMode {
    let order = Order::new(rng.below(memdesc::pgtable::TABLE_BITS as u64) as u32).unwrap_or(Order::ZERO);
    match rng.below(4) {
        0 | 1 => SplitMode::Around(Order::ZERO),
        2 => SplitMode::Around(order),
        _ => SplitMode::Uniform(order),
    }
}

/// Counts a split's outcome. Every error is one a split may meet: a pin or
/// reference (busy), nothing mapped there (never touched, dropped,
/// unmapped), a folio already small, no table frame.
pub(crate) fn count_split(stats: &mut MmStats, result: Result<memdesc::thp::SplitDone, ThpSplitError>) {
    stats.split_requests += 1;
    match result {
        Ok(_) => stats.splits += 1,
        Err(ThpSplitError::Busy { .. }) => stats.splits_busy += 1,
        Err(ThpSplitError::TooSmall { .. } | ThpSplitError::NotMapped(_)) => stats.splits_skipped += 1,
        Err(ThpSplitError::NoMemory) => stats.out_of_memory += 1,
    }
}
