//! Building the report from the threads' results and the node's final state,
//! and the final accounting checks.

use super::{
    AuditSummary, HotAddRun, Machine, MemmapSummary, PageTables, PageTypeInfo, Range, RcuSummary, Report, SlabInfoLine,
    SlabReport, Throughput, ZoneSummary,
};
use crate::arena::Arena;
use crate::config::{Layout, SimConfig};
use crate::scanner::ScannerStats;
use crate::violations::Violations;
use crate::workload::mm::MmStats;
use crate::workload::slab::SlabStats;
use crate::workload::WorkloadStats;
use memdesc::buddy::report::{Audit, VmStat};
use memdesc::buddy::{VmEvent, ZoneId};
use memdesc::memmap::DESCRIPTOR_SIZE;
use memdesc::pgtable::{MmEvent, Mmu, HUGE_FRAMES};
use memdesc::{Migratetype, Node, RcuReport, PAGE_SIZE};
use std::time::Duration;

/// What the threads handed back.
#[derive(Default)]
pub(crate) struct RunOutcome {
    /// From start until every thread ended.
    pub(crate) elapsed: Duration,
    /// The workload CPUs' counts, summed.
    pub(crate) stats: WorkloadStats,
    /// (ops before teardown, time before teardown) per workload CPU.
    pub(crate) per_cpu: Vec<(u64, Duration)>,
    /// The scanner's counts.
    pub(crate) scanner: ScannerStats,
    /// The processes', pinners' and splitters' counts, summed.
    pub(crate) mm: MmStats,
    /// Everything the threads saw go wrong.
    pub(crate) violations: Violations,
    /// When the interrupt stopped the workload (the longest a CPU ran
    /// before it saw it), if it did before the deadline.
    pub(crate) interrupted_after: Option<Duration>,
    /// The slab CPUs' and readers' counts, summed.
    pub(crate) slab_stats: SlabStats,
    /// The slabinfo lines as the run ended (slab CPU 0's snapshot).
    pub(crate) slabinfo: Vec<memdesc::slab::SlabInfo>,
    /// The slab layer at teardown, when slab CPUs ran.
    pub(crate) slab: Option<SlabRun>,
    /// What the hot-add thread added, when the run hot-adds.
    pub(crate) hot_add: Option<HotAddRun>,
}

/// The slab layer at the end of a run.
pub(crate) struct SlabRun {
    pub(crate) activity: SlabStats,
    pub(crate) slabinfo: Vec<memdesc::slab::SlabInfo>,
    pub(crate) events: Vec<(&'static str, u64)>,
    /// RCU callbacks the slab layer queued (TYPESAFE_BY_RCU slabs and
    /// kfree_rcu batches), all run by the end.
    pub(crate) rcu_callbacks: u64,
    /// Frozen allocations of slab type (slabs and large kmalloc folios).
    pub(crate) frozen_allocs: u64,
}

impl Machine {
    /// The machine `arena` simulates, with its CPUs laid out as `layout`.
    pub(crate) fn of(arena: &Arena, layout: &Layout) -> Machine {
        let (ram, reserved) = arena.ranges();
        let range = |r: &memdesc::PhysRange| Range { start: r.start.0, end: r.end.0 };
        let mut holes = Vec::new();
        let mut cursor = 0;
        for r in &ram {
            if r.start.0 > cursor {
                holes.push(Range { start: cursor, end: r.start.0 });
            }
            cursor = r.end.0;
        }
        Machine {
            ram_bytes: arena.ram_bytes(),
            ram: ram.iter().map(range).collect(),
            holes,
            reserved: reserved.iter().map(range).collect(),
            workload_cpus: layout.allocators,
            scanner_cpu: layout.scanner,
            process_cpus: (layout.first_process()..layout.first_pinner()).collect(),
            pinner_cpus: (layout.first_pinner()..layout.first_splitter()).collect(),
            splitter_cpus: (layout.first_splitter()..layout.first_slab_cpu()).collect(),
            slab_cpus: (layout.first_slab_cpu()..layout.first_slab_reader()).collect(),
            slab_reader_cpus: (layout.first_slab_reader()..layout.nr_cpus()).collect(),
        }
    }
}

/// Builds the report of a run whose threads all ended and whose per-CPU
/// lists were drained.
pub(crate) fn build(
    config: &SimConfig,
    machine: Machine,
    node: &Node<'_>,
    outcome: RunOutcome,
    rcu: RcuReport,
    mmu: &Mmu<'_>,
) -> Report {
    let RunOutcome { elapsed, stats, per_cpu, scanner, mm, mut violations, interrupted_after, slab, hot_add, .. } =
        outcome;
    check_scanner(config, &scanner, slab.as_ref(), interrupted_after.is_some(), &mut violations);
    let audit = node.audit();
    let vm = node.vmstat();
    let (bad_pages, _, bad_log) = node.bad_pages();
    if audit.violations > 0 {
        let first = audit.first_violation.map(|(pfn, what)| format!("{what} at pfn {pfn}"));
        violations.record_many(audit.violations, || {
            format!("audit: {} violations, the first: {}", audit.violations, first.unwrap_or_default())
        });
    }
    check_accounting(&stats, mmu, slab.as_ref(), &audit, &vm, bad_pages, &mut violations);
    let table_frames_at_end = mmu.table_frames();
    if table_frames_at_end != 0 {
        violations.record(|| format!("page tables: {table_frames_at_end} table frames left after every address space"));
    }
    check_rcu(&stats, mmu, slab.as_ref().map_or(0, |s| s.rcu_callbacks), &rcu, &mut violations);
    let map = node.memmap();
    let memmap = MemmapSummary {
        frames: map.nr_pages(),
        metadata_frames: map.metadata_frames(),
        descriptor_bytes: DESCRIPTOR_SIZE as u64,
        overhead_percent: (map.metadata_frames() * PAGE_SIZE as u64) as f64 * 100.0 / machine.ram_bytes as f64,
    };
    let leaked_frames = audit.allocated;
    let violation_count = violations.count();
    Report {
        config: config.clone(),
        repeat: config.repeat_command(),
        machine,
        memmap,
        duration_s: elapsed.as_secs_f64(),
        interrupted: interrupted_after.is_some(),
        interrupted_after_s: interrupted_after.map(|d| d.as_secs_f64()),
        throughput: throughput(&per_cpu),
        workload: stats,
        scanner,
        slab: slab.map(slab_report),
        page_tables: PageTables {
            events: mmu.events().into_iter().map(|(event, n)| (event.name(), n)).collect(),
            table_frames_at_end,
            activity: mm,
        },
        rcu: RcuSummary {
            grace_periods: rcu.gp_completed,
            grace_periods_started: rcu.gp_started,
            callbacks_queued: rcu.callbacks_queued,
            callbacks_invoked: rcu.callbacks_invoked,
            callbacks_synchronous: rcu.callbacks_synchronous,
            stalls: rcu.stalls,
            last_stalled_cpu: rcu.last_stalled_cpu.map(|cpu| cpu.0),
        },
        violations: violation_count,
        first_violations: violations.into_first(),
        leaked_frames,
        bad_pages,
        bad_page_reports: bad_log.iter().flatten().map(|r| format!("pfn {}: {}", r.pfn, r.reason)).collect(),
        audit: AuditSummary {
            free_frames: audit.free,
            allocated_frames: audit.allocated,
            folios: audit.folios,
            unmanaged_frames: audit.unmanaged,
            quarantined_frames: audit.quarantined,
            violations: audit.violations,
            first_violation: audit.first_violation.map(|(pfn, what)| format!("{what} at pfn {pfn}")),
        },
        vmstat: vm.iter().collect(),
        buddyinfo: ZoneId::ALL.iter().map(|&z| (z.name(), node.zone_info(z).free_blocks)).collect(),
        pagetypeinfo: ZoneId::ALL.iter().map(|&z| (z.name(), page_type_info(node, z))).collect(),
        zones: ZoneId::ALL.iter().map(|&z| zone_summary(node, z)).collect(),
        passed: violation_count == 0 && leaked_frames == 0 && bad_pages == 0,
        hot_add,
    }
}

/// Checks that every managed frame is accounted for, and that the
/// allocator's counters agree with what the CPUs did. Each mismatch is a
/// violation.
///
/// The page-table layer allocates too (table frames, frozen; pages and
/// 2 MiB folios at faults, always zeroed) and counts only some of it, so
/// the allocator's counters are checked against the workload CPUs' counts
/// plus what the page-table layer must have taken: every frame it
/// allocated was zeroed (the same count in `pgalloc_*` and `pgzero`), its
/// frozen allocations are exactly its table frames, and it allocated at
/// least its tables and its THP faults' folios.
fn check_accounting(
    stats: &WorkloadStats,
    mmu: &Mmu<'_>,
    slab: Option<&SlabRun>,
    audit: &Audit,
    vm: &VmStat,
    bad_pages: u64,
    v: &mut Violations,
) {
    // Every managed frame is free, quarantined or (leaked, reported apart)
    // allocated; the counters and the walk agree on the free ones.
    let accounted = vm.nr_free_pages + vm.nr_quarantined + audit.allocated;
    if accounted != vm.nr_managed {
        v.record(|| {
            format!(
                "accounting: free {} + quarantined {} + allocated {} = {accounted}, managed {}",
                vm.nr_free_pages, vm.nr_quarantined, audit.allocated, vm.nr_managed
            )
        });
    }
    if audit.free != vm.nr_free_pages {
        v.record(|| {
            format!("accounting: the walk found {} free frames, the counters {}", audit.free, vm.nr_free_pages)
        });
    }
    if vm.nr_free_pcp != 0 {
        v.record(|| format!("accounting: {} frames still on per-CPU lists after draining", vm.nr_free_pcp));
    }
    let allocated = vm.event(VmEvent::PgallocNormal) + vm.event(VmEvent::PgallocMovable);
    let tables = mmu.event(MmEvent::PgtableAlloc);
    // Beside the CPUs, the page tables allocate zeroed frames only and the
    // slab layer unzeroed ones (slabs, its cache structs), at least one per
    // slab.
    let others = allocated.wrapping_sub(stats.frames_allocated);
    let mm_frames = vm.event(VmEvent::Pgzero).wrapping_sub(stats.frames_zeroed);
    let slab_frames = others.wrapping_sub(mm_frames);
    let slab_frozen = slab.map_or(0, |s| s.frozen_allocs);
    let slab_ok = match slab {
        Some(_) => slab_frames <= others && slab_frames >= slab_frozen,
        None => slab_frames == 0,
    };
    let mm_least = tables + mmu.event(MmEvent::ThpFaultAlloc) * HUGE_FRAMES;
    if allocated < stats.frames_allocated || !slab_ok || mm_frames < mm_least {
        v.record(|| {
            format!(
                "accounting: vmstat allocated {allocated} frames and zeroed {}; the CPUs counted {} and {}, so the \
                 page tables took {mm_frames} (their tables and THP faults alone need {mm_least}) and the slab \
                 layer {slab_frames} for {slab_frozen} slabs",
                vm.event(VmEvent::Pgzero),
                stats.frames_allocated,
                stats.frames_zeroed
            )
        });
    }
    let frozen = vm.event(VmEvent::PgallocFrozen);
    if frozen != stats.always_frozen_allocs + tables + slab_frozen {
        v.record(|| {
            format!(
                "accounting: slab and page-table allocations (pgalloc_frozen): the CPUs counted {}, the page \
                 tables {tables}, the slab layer {slab_frozen}, vmstat {frozen}",
                stats.always_frozen_allocs
            )
        });
    }
    // Faults that found no memory fail allocations the CPUs do not count.
    let failed = vm.event(VmEvent::PgallocFail);
    if failed < stats.alloc_failures + mmu.event(MmEvent::ThpFaultFallback) {
        v.record(|| {
            format!(
                "accounting: failed allocations (pgalloc_fail): the CPUs counted {}, THP fault fallbacks {}, \
                 vmstat {failed}",
                stats.alloc_failures,
                mmu.event(MmEvent::ThpFaultFallback)
            )
        });
    }
    if bad_pages == 0 && audit.allocated == 0 && allocated != vm.event(VmEvent::Pgfree) {
        v.record(|| format!("accounting: {allocated} frames allocated but {} freed", vm.event(VmEvent::Pgfree)));
    }
}

/// Checks that RCU ran every callback queued (the machine's barrier ran
/// before the report) and that the CPUs' deferred frees and the page-table
/// layer's table frees are those callbacks (or, with a full queue,
/// synchronous ones).
fn check_rcu(stats: &WorkloadStats, mmu: &Mmu<'_>, slab_callbacks: u64, rcu: &RcuReport, v: &mut Violations) {
    if rcu.callbacks_invoked != rcu.callbacks_queued {
        v.record(|| {
            format!(
                "rcu: {} callbacks queued but {} invoked after the barrier",
                rcu.callbacks_queued, rcu.callbacks_invoked
            )
        });
    }
    let tables_freed = mmu.event(MmEvent::PgtableFree);
    if rcu.callbacks_queued + rcu.callbacks_synchronous != stats.table_frees_deferred + tables_freed + slab_callbacks {
        v.record(|| {
            format!(
                "rcu: {} callbacks queued and {} run synchronously, the CPUs deferred {} page-table frees, the \
                 page tables freed {tables_freed} table frames and the slab layer {slab_callbacks} frames",
                rcu.callbacks_queued, rcu.callbacks_synchronous, stats.table_frees_deferred
            )
        });
    }
}

/// Checks what the scanner's isolate step saw: never a reference to a slab
/// frame, and (with slab CPUs, in a run not cut short) slab frames met.
fn check_scanner(
    config: &SimConfig,
    scanner: &ScannerStats,
    slab: Option<&SlabRun>,
    interrupted: bool,
    v: &mut Violations,
) {
    if scanner.slab_references > 0 {
        v.record(|| format!("scanner: {} references to slab frames (P3, P7)", scanner.slab_references));
    }
    let i = &scanner.isolate;
    if i.ops_misuses > 0 {
        v.record(|| {
            format!(
                "isolate: movable ops called {} times on a page not theirs, {} on a slab frame (seed 004)",
                i.ops_misuses, i.ops_slab_misuses
            )
        });
    }
    if i.isolated != i.put_back {
        v.record(|| format!("isolate: {} pages isolated but {} put back", i.isolated, i.put_back));
    }
    let published = slab.is_some_and(|s| s.activity.published > 0);
    if published && !interrupted && scanner.slab_starts > 0 && scanner.slab_frames_met == 0 {
        let profile = config.workload.name();
        v.record(|| format!("scanner: no slab frame met in the {profile} profile"));
    }
}

/// The report's slab section.
fn slab_report(slab: SlabRun) -> SlabReport {
    let line = |i: &memdesc::slab::SlabInfo| SlabInfoLine {
        name: i.name.to_owned(),
        active_objs: i.active_objs,
        total_objs: i.total_objs,
        obj_size: i.obj_size as u64,
        objs_per_slab: u64::from(i.objs_per_slab),
        pages_per_slab: i.pages_per_slab,
        slabs: i.slabs,
    };
    SlabReport {
        slabinfo: slab.slabinfo.iter().map(line).collect(),
        events: slab.events.into_iter().collect(),
        activity: slab.activity,
    }
}

fn throughput(per_cpu: &[(u64, Duration)]) -> Throughput {
    let rate = |(ops, time): &(u64, Duration)| if time.is_zero() { 0.0 } else { *ops as f64 / time.as_secs_f64() };
    let per_cpu_ops_per_s: Vec<f64> = per_cpu.iter().map(rate).collect();
    Throughput { ops_per_s: per_cpu_ops_per_s.iter().sum(), per_cpu_ops_per_s }
}

fn page_type_info(node: &Node<'_>, zone: ZoneId) -> PageTypeInfo {
    let info = node.zone_info(zone);
    PageTypeInfo {
        free: Migratetype::ALL.iter().map(|&mt| (mt.name(), info.free_by_type[mt.index()])).collect(),
        pageblocks: Migratetype::ALL.iter().map(|&mt| (mt.name(), info.pageblocks[mt.index()])).collect(),
    }
}

fn zone_summary(node: &Node<'_>, zone: ZoneId) -> ZoneSummary {
    let info = node.zone_info(zone);
    ZoneSummary {
        name: zone.name().to_owned(),
        start_pfn: info.start.0,
        end_pfn: info.end.0,
        managed: info.managed,
        free: info.free,
        pcp: info.pcp,
        min: info.watermarks.min,
        low: info.watermarks.low,
        high: info.watermarks.high,
    }
}
