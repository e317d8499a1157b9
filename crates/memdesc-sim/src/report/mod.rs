//! The report of a run: what the machine was, what the CPUs and the scanner
//! did, what the audit found, and the allocator's state at the end in Linux's
//! vocabulary (vmstat, buddyinfo, pagetypeinfo).
//!
//! [`Report`] serialises to JSON (the CLI's `--json`) and prints as text
//! through its `Display` (module `text`). Its verdict: [`Report::passed`] when
//! there were no violations, no leaked frames and no bad pages.

mod build;
mod ordered;
mod text;

pub(crate) use build::{build, RunOutcome, SlabRun};
pub use ordered::OrderedMap;

use crate::config::SimConfig;
use crate::scanner::ScannerStats;
use crate::workload::mm::MmStats;
use crate::workload::slab::SlabStats;
use crate::workload::WorkloadStats;
use memdesc::buddy::NR_ORDERS;
use serde::Serialize;

/// Everything a run found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was asked for (repeat a run with the same values).
    pub config: SimConfig,
    /// The command line that runs the same configuration again, exactly
    /// (the text report's `repeat with:` line).
    pub repeat: String,
    /// The simulated machine.
    pub machine: Machine,
    /// The memory map's cost.
    pub memmap: MemmapSummary,
    /// Wall-clock seconds from start to the end of teardown.
    pub duration_s: f64,
    /// Whether an interrupt (Ctrl-C in the CLI) stopped the workload before
    /// its duration. Teardown, audit and accounting still ran in full, so
    /// the counts and the verdict are real, for what ran.
    pub interrupted: bool,
    /// Seconds the workload ran before the interrupt stopped it; `None`
    /// (JSON `null`) when it ran its full duration.
    pub interrupted_after_s: Option<f64>,
    /// What the workload CPUs did.
    pub workload: WorkloadStats,
    /// Allocations plus frees per second before teardown.
    pub throughput: Throughput,
    /// What the scanner did.
    pub scanner: ScannerStats,
    /// The slab layer: slabinfo, its counters, what the slab CPUs and
    /// readers did; `None` (JSON `null`) when no slab CPU ran.
    pub slab: Option<SlabReport>,
    /// What the processes, pinners and splitters did, and the page-table
    /// layer's counters.
    pub page_tables: PageTables,
    /// What the machine's RCU did.
    pub rcu: RcuSummary,
    /// Promises the core broke, seen by the workload, the scanner, the audit
    /// or the final accounting. Must be 0.
    pub violations: u64,
    /// The first violations, described.
    pub first_violations: Vec<String>,
    /// Frames still allocated after every CPU freed everything. Must be 0.
    pub leaked_frames: u64,
    /// What a `--hot-add` run added while the CPUs ran; `None` (JSON
    /// `null`) otherwise.
    pub hot_add: Option<HotAddRun>,
    /// Bad-page reports (frames quarantined). Expected 0 in this workload.
    pub bad_pages: u64,
    /// The most recent bad-page reports, described.
    pub bad_page_reports: Vec<String>,
    /// The final descriptor walk.
    pub audit: AuditSummary,
    /// Event counters and gauges, in `/proc/vmstat` order.
    pub vmstat: OrderedMap<u64>,
    /// Free blocks per order, per zone (`/proc/buddyinfo`).
    pub buddyinfo: OrderedMap<[u64; NR_ORDERS]>,
    /// Free blocks per migratetype and order, and pageblocks per
    /// migratetype, per zone (`/proc/pagetypeinfo`).
    pub pagetypeinfo: OrderedMap<PageTypeInfo>,
    /// The zones at the end of the run.
    pub zones: Vec<ZoneSummary>,
    /// No violations, no leaked frames, no bad pages (in what ran, when
    /// [`interrupted`](Self::interrupted)).
    pub passed: bool,
}

impl Report {
    /// Whether the run passed: no violations, no leaked frames, no bad pages.
    pub fn passed(&self) -> bool {
        self.passed
    }
}

/// A physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Range {
    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// The simulated machine.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// RAM, holes excluded (the requested size rounded down to
    /// [`RAM_GRANULE`](crate::arena::RAM_GRANULE)).
    pub ram_bytes: u64,
    /// The RAM ranges.
    pub ram: Vec<Range>,
    /// The ranges of the physical span that are not RAM.
    pub holes: Vec<Range>,
    /// RAM reserved for the "kernel image", never managed.
    pub reserved: Vec<Range>,
    /// CPUs running the allocator workload (`0..workload_cpus`; none in
    /// the `gup` profile).
    pub workload_cpus: u32,
    /// The CPU running the scanner.
    pub scanner_cpu: u32,
    /// The CPUs running processes, one address space each.
    pub process_cpus: Vec<u32>,
    /// The CPUs running pinners.
    pub pinner_cpus: Vec<u32>,
    /// The CPUs running splitters.
    pub splitter_cpus: Vec<u32>,
    /// The CPUs running slab churn.
    pub slab_cpus: Vec<u32>,
    /// The CPUs running lockless readers of the TYPESAFE_BY_RCU cache.
    pub slab_reader_cpus: Vec<u32>,
}

/// The slab layer in the run.
#[derive(Clone, Debug, Serialize)]
pub struct SlabReport {
    /// One line per cache as the run ended, before teardown (the
    /// simulator's caches, then the kmalloc ones), as `/proc/slabinfo`.
    pub slabinfo: Vec<SlabInfoLine>,
    /// Every [`memdesc::slab::SlabEvent`] counter by its vmstat-style name
    /// (`slabs_rcu_freed`, `kfree_rcu_batches`, `slab_debug_reports`, …),
    /// after teardown.
    pub events: OrderedMap<u64>,
    /// What the slab CPUs and readers did.
    pub activity: SlabStats,
}

/// One cache's `/proc/slabinfo` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlabInfoLine {
    /// The cache's name.
    pub name: String,
    /// Objects in use (not cached in per-CPU sheaves).
    pub active_objs: u64,
    /// Objects in the cache's slabs.
    pub total_objs: u64,
    /// Object size in bytes.
    pub obj_size: u64,
    /// Objects per slab.
    pub objs_per_slab: u64,
    /// Frames per slab.
    pub pages_per_slab: u64,
    /// Slabs.
    pub slabs: u64,
}

/// The page-table, GUP and THP layers in the run.
#[derive(Clone, Debug, Serialize)]
pub struct PageTables {
    /// Every [`memdesc::pgtable::MmEvent`] counter, by its vmstat name
    /// (`thp_fault_alloc`, `gup_fast_fallback`, `nr_tlb_remote_flush`, …).
    pub events: OrderedMap<u64>,
    /// Page-table frames still allocated once every address space was
    /// dropped. Must be 0.
    pub table_frames_at_end: u64,
    /// What the processes, pinners and splitters did.
    pub activity: MmStats,
}

/// What the hot-add thread of a `--hot-add` run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HotAddRun {
    /// Sections added.
    pub sections: u64,
    /// Frames added, the sections' own metadata included.
    pub frames: u64,
    /// Frames the additions freed into the zones.
    pub managed: u64,
    /// Hot-adds refused (each also a violation).
    pub errors: Vec<String>,
}

/// What the memory map costs.
#[derive(Clone, Debug, Serialize)]
pub struct MemmapSummary {
    /// Descriptors: one per frame of the span, holes included.
    pub frames: u64,
    /// Frames holding the descriptors, pageblock bytes and the node.
    pub metadata_frames: u64,
    /// Bytes per descriptor.
    pub descriptor_bytes: u64,
    /// Metadata as a percentage of RAM.
    pub overhead_percent: f64,
}

/// The machine's RCU counters ([`memdesc::RcuReport`]), after the final
/// barrier.
#[derive(Clone, Debug, Serialize)]
pub struct RcuSummary {
    /// Grace periods completed (the highest completed GP number).
    pub grace_periods: u64,
    /// Grace periods started.
    pub grace_periods_started: u64,
    /// Callbacks queued (`call_rcu`, `call_rcu_frame`).
    pub callbacks_queued: u64,
    /// Callbacks run.
    pub callbacks_invoked: u64,
    /// `call_rcu` calls that found their queue full and waited themselves.
    pub callbacks_synchronous: u64,
    /// Stall reports: a CPU found inside a read section by too many scans.
    pub stalls: u64,
    /// The CPU of the last stall report.
    pub last_stalled_cpu: Option<u32>,
}

/// Allocations plus frees per second, before teardown.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    /// Over all CPUs.
    pub ops_per_s: f64,
    /// Per workload CPU.
    pub per_cpu_ops_per_s: Vec<f64>,
}

/// What the final descriptor walk ([`memdesc::Node::audit`]) counted.
#[derive(Clone, Debug, Serialize)]
pub struct AuditSummary {
    /// Free frames (buddy and per-CPU lists).
    pub free_frames: u64,
    /// Frames in allocated folios.
    pub allocated_frames: u64,
    /// Allocated folios.
    pub folios: u64,
    /// Frames in holes, reserved or holding metadata.
    pub unmanaged_frames: u64,
    /// Frames quarantined.
    pub quarantined_frames: u64,
    /// Descriptor invariants broken.
    pub violations: u64,
    /// The first one, described.
    pub first_violation: Option<String>,
}

/// One zone's `/proc/pagetypeinfo` entries.
#[derive(Clone, Debug, Serialize)]
pub struct PageTypeInfo {
    /// Free blocks per order, per migratetype.
    pub free: OrderedMap<[u64; NR_ORDERS]>,
    /// Pageblocks per migratetype.
    pub pageblocks: OrderedMap<u64>,
}

/// One zone at the end of the run.
#[derive(Clone, Debug, Serialize)]
pub struct ZoneSummary {
    /// The zone's name.
    pub name: String,
    /// First frame.
    pub start_pfn: u64,
    /// One past the last frame.
    pub end_pfn: u64,
    /// Frames given to the zone at boot.
    pub managed: u64,
    /// Free frames on the buddy lists.
    pub free: u64,
    /// Free frames on per-CPU lists.
    pub pcp: u64,
    /// The min watermark, in frames.
    pub min: u64,
    /// The low watermark, in frames.
    pub low: u64,
    /// The high watermark, in frames.
    pub high: u64,
}
