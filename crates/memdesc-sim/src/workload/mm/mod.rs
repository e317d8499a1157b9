//! Processes, pinners and splitters: the page-table, GUP and THP layers
//! under load (issue 6's simulator).
//!
//! - A **process** ([`process`]) owns one [`AddressSpace`] and loops: maps
//!   anonymous regions (THP-able ones of 2–8 MiB, small ones of a few
//!   pages), writes stamps ([`vstamp`]) through virtual addresses and
//!   reads them back, unmaps and re-maps, protects sub-ranges read-only and
//!   back (splitting PMD mappings), drops sub-ranges with `MADV_DONTNEED`
//!   (the next read must see zeroes), and splits its own huge folios.
//! - A **pinner** ([`pinner`]) is a device doing direct I/O: it picks a
//!   region some process published in the [`Registry`], pins a range of it
//!   with GUP-fast, checks every pinned page's stamps through the pin,
//!   holds the pins a while (so splits meet them), checks again, unpins.
//! - A **splitter** ([`splitter`]) splits the huge folios of published
//!   regions, preferring the ranges pinners hold, so some splits are
//!   refused (`thp_split_page_failed`), then reads the pages there through
//!   the address space as another thread of the process, so TLB
//!   shootdowns have translations to drop.
//!
//! Every actor reports an RCU quiescent state between its operations. A
//! mismatch, a wrong error, a pinned page that does not say it may be
//! pinned: each is a violation.

pub(crate) mod pinner;
pub(crate) mod process;
pub(crate) mod splitter;
pub(crate) mod vstamp;

use crate::rng::Rng;
use crate::violations::Violations;
use memdesc::pgtable::AddressSpace;
use memdesc::{CpuId, Rcu};
use serde::Serialize;
use std::ops::AddAssign;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What processes, pinners and splitters did, summed over them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MmStats {
    /// Regions mapped (THP-able and small).
    pub maps: u64,
    /// Of them, THP-able regions (2–8 MiB).
    pub thp_maps: u64,
    /// Whole regions unmapped (to be re-mapped).
    pub munmaps: u64,
    /// Pages stamped through virtual addresses.
    pub pages_written: u64,
    /// Bytes read back through virtual addresses and compared.
    pub bytes_verified: u64,
    /// Pages read back as zero after `MADV_DONTNEED` (or never written).
    pub zero_pages_verified: u64,
    /// Sub-ranges made read-only (and later writable again).
    pub mprotects: u64,
    /// Writes to read-only pages refused with a protection fault, as they
    /// must be.
    pub protection_faults: u64,
    /// `MADV_DONTNEED` calls.
    pub dontneeds: u64,
    /// Operations refused for lack of memory (faults, table frames):
    /// expected under the allocator's pressure phases, not a violation.
    pub out_of_memory: u64,
    /// Address-space audits run (each must find nothing).
    pub audits: u64,
    /// The most page-table frames in use at once, over every address space,
    /// as the processes sampled it.
    pub peak_table_frames: u64,
    /// Words the splitters read through processes' address spaces (as
    /// another thread of the process), each checked.
    pub thread_reads: u64,
    /// Folio splits asked for (processes and splitters).
    pub split_requests: u64,
    /// Splits done.
    pub splits: u64,
    /// Splits refused because the folio was pinned or referenced (EAGAIN),
    /// asked for or deferred.
    pub splits_busy: u64,
    /// Folios split from the deferred-split queues (left partly mapped by
    /// an unmap or `MADV_DONTNEED`).
    pub deferred_splits: u64,
    /// Splits with nothing to do: no folio there, or one already small.
    pub splits_skipped: u64,
    /// GUP-fast calls the pinners made.
    pub gup_calls: u64,
    /// Pages pinned by them.
    pub pages_pinned: u64,
    /// Pinned pages' stamp words checked through the pin.
    pub stamps_checked: u64,
    /// GUP calls refused with a typed error because the range was unmapped
    /// (or made read-only, for a write pin) under the pinner.
    pub gup_refused: u64,
}

impl AddAssign<&MmStats> for MmStats {
    fn add_assign(&mut self, o: &MmStats) {
        self.maps += o.maps;
        self.thp_maps += o.thp_maps;
        self.munmaps += o.munmaps;
        self.pages_written += o.pages_written;
        self.bytes_verified += o.bytes_verified;
        self.zero_pages_verified += o.zero_pages_verified;
        self.mprotects += o.mprotects;
        self.protection_faults += o.protection_faults;
        self.dontneeds += o.dontneeds;
        self.out_of_memory += o.out_of_memory;
        self.audits += o.audits;
        self.peak_table_frames = self.peak_table_frames.max(o.peak_table_frames);
        self.thread_reads += o.thread_reads;
        self.split_requests += o.split_requests;
        self.splits += o.splits;
        self.splits_busy += o.splits_busy;
        self.deferred_splits += o.deferred_splits;
        self.splits_skipped += o.splits_skipped;
        self.gup_calls += o.gup_calls;
        self.pages_pinned += o.pages_pinned;
        self.stamps_checked += o.stamps_checked;
        self.gup_refused += o.gup_refused;
    }
}

impl MmStats {
    /// The operations the progress bar counts.
    pub(crate) fn ops(&self) -> u64 {
        self.maps + self.pages_written + self.gup_calls + self.split_requests + self.mprotects + self.dontneeds
    }
}

/// A region a process has mapped, as it publishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    /// The process (index into the address spaces).
    pub(crate) process: usize,
    /// First byte.
    pub(crate) start: u64,
    /// Length in bytes.
    pub(crate) len: u64,
    /// Whether faults may map it with 2 MiB folios.
    pub(crate) thp: bool,
}

/// How many ranges pinners advertise as held, for splitters to aim at.
const HOT_SLOTS: usize = 16;

/// The regions processes have mapped, and the ranges pinners hold, behind
/// one lock: a snapshot, never a promise (a region may be unmapped right
/// after it is read, which is the race pinners and splitters are for).
#[derive(Default)]
pub(crate) struct Registry {
    regions: Mutex<Vec<Region>>,
    hot: Mutex<Vec<(usize, u64)>>,
}

impl Registry {
    /// Publishes `region`.
    pub(crate) fn publish(&self, region: Region) {
        self.regions.lock().unwrap_or_else(|e| e.into_inner()).push(region);
    }

    /// Withdraws `region`.
    pub(crate) fn withdraw(&self, region: Region) {
        self.regions.lock().unwrap_or_else(|e| e.into_inner()).retain(|r| *r != region);
    }

    /// A random published region; THP-able ones `thp_per_mille` of the time
    /// when there are any.
    pub(crate) fn pick(&self, rng: &mut Rng, thp_per_mille: u64) -> Option<Region> {
        let regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        let want_thp = rng.per_mille(thp_per_mille);
        let n = regions.iter().filter(|r| r.thp == want_thp).count();
        if n == 0 {
            return (!regions.is_empty()).then(|| regions[rng.below(regions.len() as u64) as usize]);
        }
        regions.iter().filter(|r| r.thp == want_thp).nth(rng.below(n as u64) as usize).copied()
    }

    /// Advertises that a pinner holds pages at `va` of `process`.
    pub(crate) fn pinned(&self, process: usize, va: u64) {
        let mut hot = self.hot.lock().unwrap_or_else(|e| e.into_inner());
        if hot.len() == HOT_SLOTS {
            hot.remove(0);
        }
        hot.push((process, va));
    }

    /// A recently pinned address, if any.
    pub(crate) fn pick_hot(&self, rng: &mut Rng) -> Option<(usize, u64)> {
        let hot = self.hot.lock().unwrap_or_else(|e| e.into_inner());
        (!hot.is_empty()).then(|| hot[rng.below(hot.len() as u64) as usize])
    }
}

/// What a process, pinner or splitter is given.
pub(crate) struct MmContext<'r, 'm, 'a> {
    /// Every process's address space, by process index.
    pub(crate) aspaces: &'r [AddressSpace<'m, 'a>],
    /// Where processes publish their regions.
    pub(crate) registry: &'r Registry,
    /// The machine's RCU, told of this CPU's quiescent states.
    pub(crate) rcu: &'a Rcu<'a>,
    /// This CPU (the thread is already bound to it).
    pub(crate) cpu: u32,
    /// The run's seed.
    pub(crate) seed: u64,
    /// When the run started.
    pub(crate) start: Instant,
    /// When to stop and tear down.
    pub(crate) deadline: Instant,
    /// Where to publish the operations done so far, for progress reports.
    pub(crate) ops: &'r AtomicU64,
    /// Set to stop before the deadline (Ctrl-C in the CLI).
    pub(crate) interrupt: &'r AtomicBool,
}

impl MmContext<'_, '_, '_> {
    /// Whether to stop: the deadline passed or the interrupt came (then
    /// `interrupted_after` says how long this CPU ran, if that was before
    /// the deadline).
    pub(crate) fn should_stop(&self, interrupted_after: &mut Option<Duration>) -> bool {
        let now = Instant::now();
        // Relaxed: a stop flag; nothing is published through it.
        if self.interrupt.load(Ordering::Relaxed) {
            *interrupted_after = (now < self.deadline).then(|| now - self.start);
            return true;
        }
        now >= self.deadline
    }

    /// Reports a quiescent state for this CPU (between operations: no
    /// read section is open), which also runs its ready RCU callbacks.
    /// Also answers a pending drain of this CPU's page lists.
    pub(crate) fn quiescent(&self) {
        self.rcu.quiescent(CpuId(self.cpu));
        if let Some(aspace) = self.aspaces.first() {
            aspace.mmu().node().answer_drain();
        }
    }

    /// Publishes progress.
    pub(crate) fn publish(&self, stats: &MmStats) {
        // Relaxed: a progress statistic, read racily by the machine.
        self.ops.store(stats.ops(), Ordering::Relaxed);
    }
}

/// What one process, pinner or splitter hands back.
pub(crate) struct MmResult {
    /// Its counts.
    pub(crate) stats: MmStats,
    /// What it saw go wrong.
    pub(crate) violations: Violations,
    /// How long it ran, if the interrupt stopped it before the deadline.
    pub(crate) interrupted_after: Option<Duration>,
}

/// Runs `f`, catching a panic (a core bug) as a violation of `who`.
pub(crate) fn guarded(who: &str, violations: &mut Violations, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        violations.record(|| format!("{who} panicked: {}", crate::machine::panic_message(&*panic)));
    }
}
