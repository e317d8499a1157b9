//! The human-readable report: short sections, then the allocator's state in
//! the exact formats of Linux's `/proc/vmstat`, `/proc/buddyinfo` and
//! `/proc/pagetypeinfo`, then the verdict.

use super::{Range, Report};
use memdesc::memmap::{PAGEBLOCK_FRAMES, PAGEBLOCK_ORDER};
use memdesc::PAGE_SIZE;
use std::fmt::{self, Display, Formatter, Write as _};

impl Display for Report {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.fmt_header(f)?;
        self.fmt_machine(f)?;
        self.fmt_workload(f)?;
        self.fmt_scanner(f)?;
        self.fmt_page_tables(f)?;
        self.fmt_slab(f)?;
        self.fmt_rcu(f)?;
        self.fmt_problems(f)?;
        self.fmt_vmstat(f)?;
        self.fmt_buddyinfo(f)?;
        self.fmt_pagetypeinfo(f)?;
        writeln!(
            f,
            "violations: {}   leaked frames: {}   bad pages: {}",
            self.violations, self.leaked_frames, self.bad_pages
        )?;
        self.fmt_verdict(f)
    }
}

impl Report {
    /// The last line: `PASS` or `FAIL`, or, for an interrupted run, what
    /// that covers.
    fn fmt_verdict(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let of = Secs(self.config.duration.as_secs_f64());
        match (self.interrupted_after_s, self.passed) {
            (None, true) => writeln!(f, "PASS"),
            (None, false) => writeln!(f, "FAIL"),
            (Some(after), true) => {
                writeln!(f, "INTERRUPTED after {} of {of}: no violations, leaks or bad pages in what ran", Secs(after))
            }
            (Some(after), false) => writeln!(f, "FAIL (interrupted after {} of {of})", Secs(after)),
        }
    }

    fn fmt_header(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "memdesc simulation: {} workload, {} CPU{}, {} RAM, {:?}, seed {}",
            c.workload.name(),
            c.cpus,
            if c.cpus == 1 { "" } else { "s" },
            Bytes(self.machine.ram_bytes),
            c.duration,
            c.seed
        )?;
        writeln!(f, "repeat with: {}", self.repeat)?;
        if let Some(after) = self.interrupted_after_s {
            writeln!(
                f,
                "INTERRUPTED after {} of {}: the workload stopped early; teardown, drain, audit and accounting ran in \
                 full",
                Secs(after),
                Secs(c.duration.as_secs_f64())
            )?;
        }
        writeln!(f)
    }

    fn fmt_machine(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let m = &self.machine;
        let total = |rs: &[Range]| rs.iter().map(Range::len).sum::<u64>();
        writeln!(f, "Machine")?;
        writeln!(f, "  RAM             {} in {} ranges: {}", Bytes(m.ram_bytes), m.ram.len(), Ranges(&m.ram))?;
        writeln!(f, "  holes           {}: {}", Bytes(total(&m.holes)), Ranges(&m.holes))?;
        writeln!(f, "  reserved        {}: {}", Bytes(total(&m.reserved)), Ranges(&m.reserved))?;
        let mm = &self.memmap;
        writeln!(
            f,
            "  memory map      {} descriptors x {} B in {} frames = {} ({:.2} % of RAM)",
            Count(mm.frames),
            mm.descriptor_bytes,
            Count(mm.metadata_frames),
            Bytes(mm.metadata_frames * PAGE_SIZE as u64),
            mm.overhead_percent
        )?;
        if let Some(hot) = &self.hot_add {
            writeln!(
                f,
                "  hot-add         {} sections ({}) added during the run, {} of them managed",
                Count(hot.sections),
                Bytes(hot.frames * PAGE_SIZE as u64),
                Bytes(hot.managed * PAGE_SIZE as u64)
            )?;
        }
        for (i, z) in self.zones.iter().enumerate() {
            writeln!(
                f,
                "  {:<15} {:<8} pfn {:#x}-{:#x}, {} managed, watermarks min {} low {} high {} frames",
                if i == 0 { "zones" } else { "" },
                z.name,
                z.start_pfn,
                z.end_pfn,
                Bytes(z.managed * PAGE_SIZE as u64),
                Count(z.min),
                Count(z.low),
                Count(z.high)
            )?;
        }
        writeln!(
            f,
            "  CPUs            {} allocator + 1 scanner (cpu{}) + {} processes {} + {} pinners {} + {} splitters {}",
            m.workload_cpus,
            m.scanner_cpu,
            m.process_cpus.len(),
            Cpus(&m.process_cpus),
            m.pinner_cpus.len(),
            Cpus(&m.pinner_cpus),
            m.splitter_cpus.len(),
            Cpus(&m.splitter_cpus)
        )?;
        if m.slab_cpus.is_empty() {
            return writeln!(f);
        }
        writeln!(
            f,
            "  slab CPUs       {} slab {} + {} readers {}\n",
            m.slab_cpus.len(),
            Cpus(&m.slab_cpus),
            m.slab_reader_cpus.len(),
            Cpus(&m.slab_reader_cpus)
        )
    }

    /// The slab CPUs and readers, `/proc/slabinfo` lines as the run ended,
    /// then every slab counter.
    fn fmt_slab(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let Some(slab) = &self.slab else { return Ok(()) };
        let a = &slab.activity;
        writeln!(f, "Slab")?;
        writeln!(
            f,
            "  objects         {} allocated ({} by kmalloc; {} refused), {} freed locally, {} remote ({} sent), {} after a grace period (kfree_rcu)",
            Count(a.allocs),
            Count(a.kmallocs),
            Count(a.alloc_failures),
            Count(a.local_frees),
            Count(a.remote_frees),
            Count(a.remote_frees_sent),
            Count(a.kfree_rcu)
        )?;
        writeln!(
            f,
            "  checks          {} stamps checked before a free, {} new objects checked constructed",
            Count(a.stamps_checked),
            Count(a.ctor_checked)
        )?;
        writeln!(
            f,
            "  shrinks         {} ({} slabs given back); peak {} live objects on a CPU",
            Count(a.shrinks),
            Count(a.slabs_shrunk),
            Count(a.peak_live)
        )?;
        writeln!(
            f,
            "  readers         {} published ({} retirements waited for readers), {} lookups: {} revalidated, {} missed (retired or reused), {} in a slab on its way through RCU",
            Count(a.published),
            Count(a.retire_waits),
            Count(a.reader_lookups),
            Count(a.reader_hits),
            Count(a.reader_misses),
            Count(a.reader_unlisted)
        )?;
        writeln!(f, "\nslabinfo (as the run ended)")?;
        writeln!(f, "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>")?;
        for l in &slab.slabinfo {
            writeln!(
                f,
                "{:<17} {:>13} {:>10} {:>9} {:>12} {:>14}",
                l.name, l.active_objs, l.total_objs, l.obj_size, l.objs_per_slab, l.pages_per_slab
            )?;
        }
        writeln!(f, "\nslab events")?;
        for (name, value) in slab.events.iter() {
            writeln!(f, "{name} {value}")?;
        }
        writeln!(f)
    }

    /// The processes, pinners and splitters, then every page-table event
    /// counter as `/proc/vmstat` would print it.
    fn fmt_page_tables(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let p = &self.page_tables;
        let a = &p.activity;
        writeln!(f, "Page tables, GUP and THP")?;
        writeln!(
            f,
            "  processes       {} regions mapped ({} THP-able), {} unmapped; {} pages stamped, {} verified \
             ({} read back as zero)",
            Count(a.maps),
            Count(a.thp_maps),
            Count(a.munmaps),
            Count(a.pages_written),
            Bytes(a.bytes_verified),
            Count(a.zero_pages_verified)
        )?;
        writeln!(
            f,
            "                  {} mprotects ({} writes refused), {} MADV_DONTNEED, {} audits, {} out of memory",
            Count(a.mprotects),
            Count(a.protection_faults),
            Count(a.dontneeds),
            Count(a.audits),
            Count(a.out_of_memory)
        )?;
        writeln!(
            f,
            "  pinners         {} GUP-fast calls, {} pages pinned, {} stamps checked through pins, {} refused \
             (unmapped or read-only under them)",
            Count(a.gup_calls),
            Count(a.pages_pinned),
            Count(a.stamps_checked),
            Count(a.gup_refused)
        )?;
        writeln!(
            f,
            "  splits          {} asked, {} done, {} deferred done, {} refused busy (a pin or reference), {} with \
             nothing to split; {} words read back by the splitter's CPU",
            Count(a.split_requests),
            Count(a.splits),
            Count(a.deferred_splits),
            Count(a.splits_busy),
            Count(a.splits_skipped),
            Count(a.thread_reads)
        )?;
        writeln!(
            f,
            "  table frames    {} in use at most; {} left after every address space was dropped",
            Count(a.peak_table_frames),
            p.table_frames_at_end
        )?;
        for (name, n) in p.events.iter() {
            writeln!(f, "  {name} {n}")?;
        }
        writeln!(f)
    }

    fn fmt_workload(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let w = &self.workload;
        writeln!(f, "Workload ({}, {} wall clock incl. teardown)", self.config.workload.name(), Secs(self.duration_s))?;
        if self.machine.workload_cpus == 0 {
            return writeln!(f, "  no allocator CPUs in this profile\n");
        }
        writeln!(
            f,
            "  allocations     {}  (frozen {}, zeroed {}; {} failed: out of memory)",
            Count(w.allocs),
            Count(w.frozen_allocs),
            Count(w.zeroed_allocs),
            Count(w.alloc_failures)
        )?;
        let mut by_order = String::new();
        for (order, n) in w.allocs_by_order.iter().enumerate() {
            let _ = write!(by_order, "{}{order}: {}", if order == 0 { "" } else { "  " }, Count(*n));
        }
        writeln!(f, "  by order        {by_order}")?;
        writeln!(f, "  frees           {}", Count(w.frees))?;
        writeln!(
            f,
            "  splits          {} into {} folios; freeze EAGAIN {}",
            Count(w.splits),
            Count(w.split_pieces),
            Count(w.freeze_eagain)
        )?;
        writeln!(
            f,
            "  folio locks     {} (busy {}); clones {}",
            Count(w.lock_ops),
            Count(w.lock_busy),
            Count(w.clones)
        )?;
        writeln!(
            f,
            "  pressure        {} phases; most frames held by one CPU {}",
            w.pressure_phases,
            Count(w.peak_live_frames)
        )?;
        let per_cpu: Vec<String> = self
            .throughput
            .per_cpu_ops_per_s
            .iter()
            .enumerate()
            .map(|(cpu, r)| format!("cpu{cpu} {}", Rate(*r)))
            .collect();
        writeln!(f, "  throughput      {} allocs+frees/s ({})\n", Rate(self.throughput.ops_per_s), per_cpu.join(", "))
    }

    fn fmt_scanner(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = &self.scanner;
        let pct = if s.attempts == 0 { 0.0 } else { s.successes as f64 * 100.0 / s.attempts as f64 };
        writeln!(f, "Scanner (cpu{})", self.machine.scanner_cpu)?;
        writeln!(f, "  speculative gets {}, got a reference {} ({pct:.1} %)", Count(s.attempts), Count(s.successes))?;
        let o = &s.failures;
        writeln!(
            f,
            "  refused         free {}, frozen {}, moved {}, unmanaged {}, out of range {}, source changed {}, overflow {}",
            Count(o.free),
            Count(o.frozen),
            Count(o.moved),
            Count(o.unmanaged),
            Count(o.out_of_range),
            Count(o.source_changed),
            Count(o.overflow)
        )?;
        let i = &s.isolate;
        writeln!(
            f,
            "  isolate step    {} pfns: {} isolated and put back, {} busy, {} not movable, {} free; frozen {} slab, {} page table, {} other; {} unmanaged or raced",
            Count(i.scanned),
            Count(i.isolated),
            Count(i.busy),
            Count(i.not_movable),
            Count(i.free),
            Count(i.frozen_slab),
            Count(i.frozen_page_table),
            Count(i.frozen_other),
            Count(i.other)
        )?;
        writeln!(
            f,
            "  slab frames     {} met and left alone, {} references to one; {} runs from a published slab object; movable ops misused {} times ({} on a slab)",
            Count(s.slab_frames_met),
            s.slab_references,
            Count(s.slab_starts),
            i.ops_misuses,
            i.ops_slab_misuses
        )?;
        writeln!(f, "  then            {} folio locks, {} clones\n", Count(s.locks), Count(s.clones))
    }

    fn fmt_rcu(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let r = &self.rcu;
        writeln!(f, "RCU")?;
        writeln!(
            f,
            "  grace periods   {} completed of {} started",
            Count(r.grace_periods),
            Count(r.grace_periods_started)
        )?;
        writeln!(
            f,
            "  callbacks       {} queued, {} invoked, {} synchronous (queue full); {} page-table frames freed after a grace period",
            Count(r.callbacks_queued),
            Count(r.callbacks_invoked),
            Count(r.callbacks_synchronous),
            Count(self.workload.table_frees_deferred + self.page_tables.events.get("pgtable_free").copied().unwrap_or(0))
        )?;
        match r.last_stalled_cpu {
            Some(cpu) => writeln!(f, "  stalls          {} (last on cpu{cpu})\n", Count(r.stalls)),
            None => writeln!(f, "  stalls          {}\n", Count(r.stalls)),
        }
    }

    fn fmt_problems(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let a = &self.audit;
        writeln!(f, "Audit")?;
        writeln!(
            f,
            "  frames          free {}, allocated {} in {} folios, unmanaged {}, quarantined {}; {} violations\n",
            Count(a.free_frames),
            Count(a.allocated_frames),
            Count(a.folios),
            Count(a.unmanaged_frames),
            Count(a.quarantined_frames),
            a.violations
        )?;
        if !self.first_violations.is_empty() {
            writeln!(f, "Violations (first {} of {})", self.first_violations.len(), self.violations)?;
            for v in &self.first_violations {
                writeln!(f, "  {v}")?;
            }
            writeln!(f)?;
        }
        if !self.bad_page_reports.is_empty() {
            writeln!(f, "Bad pages (latest {} of {})", self.bad_page_reports.len(), self.bad_pages)?;
            for r in &self.bad_page_reports {
                writeln!(f, "  {r}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }

    fn fmt_vmstat(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "vmstat")?;
        for (name, value) in self.vmstat.iter() {
            writeln!(f, "{name} {value}")?;
        }
        writeln!(f)
    }

    /// `/proc/buddyinfo`: `Node %d, zone %8s ` then `%6lu ` per order.
    fn fmt_buddyinfo(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "buddyinfo")?;
        for (zone, blocks) in self.buddyinfo.iter() {
            write!(f, "Node 0, zone {zone:>8} ")?;
            for n in blocks {
                write!(f, "{n:>6} ")?;
            }
            writeln!(f)?;
        }
        writeln!(f)
    }

    /// `/proc/pagetypeinfo`, in Linux's column layout.
    fn fmt_pagetypeinfo(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "pagetypeinfo")?;
        writeln!(f, "Page block order: {PAGEBLOCK_ORDER}")?;
        writeln!(f, "Pages per block:  {PAGEBLOCK_FRAMES}\n")?;
        write!(f, "{:<43} ", "Free pages count per migrate type at order")?;
        for order in 0..memdesc::buddy::NR_ORDERS {
            write!(f, "{order:>6} ")?;
        }
        writeln!(f)?;
        for (zone, info) in self.pagetypeinfo.iter() {
            for (mt, blocks) in info.free.iter() {
                write!(f, "Node {:>4}, zone {zone:>8}, type {mt:>12} ", 0)?;
                for n in blocks {
                    write!(f, "{n:>6} ")?;
                }
                writeln!(f)?;
            }
        }
        write!(f, "\n{:<23}", "Number of blocks type ")?;
        if let Some((_, info)) = self.pagetypeinfo.iter().next() {
            for (mt, _) in info.pageblocks.iter() {
                write!(f, "{mt:>12} ")?;
            }
        }
        writeln!(f)?;
        for (zone, info) in self.pagetypeinfo.iter() {
            write!(f, "Node 0, zone {zone:>8} ")?;
            for (_, n) in info.pageblocks.iter() {
                write!(f, "{n:>12} ")?;
            }
            writeln!(f)?;
        }
        writeln!(f)
    }
}

/// A count with thousands separators.
struct Count(u64);

impl Display for Count {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        f.pad(&out)
    }
}

/// A size in binary units.
struct Bytes(u64);

impl Display for Bytes {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.2} {}", UNITS[unit])
        }
    }
}

/// A rate with a metric prefix.
struct Rate(f64);

impl Display for Rate {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            r if r >= 1e9 => write!(f, "{:.2} G", r / 1e9),
            r if r >= 1e6 => write!(f, "{:.2} M", r / 1e6),
            r if r >= 1e3 => write!(f, "{:.1} k", r / 1e3),
            r => write!(f, "{r:.0}"),
        }
    }
}

/// Seconds, to the millisecond.
struct Secs(f64);

impl Display for Secs {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2} s", self.0)
    }
}

/// Physical ranges as `[start, end)` in hex.
/// CPU numbers, as `(cpu3, cpu4)`; nothing for none.
struct Cpus<'a>(&'a [u32]);

impl Display for Cpus<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = self.0.iter().map(|c| format!("cpu{c}")).collect();
        write!(f, "({})", names.join(", "))
    }
}

struct Ranges<'a>(&'a [Range]);

impl Display for Ranges<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            write!(f, "{}[{:#x}, {:#x})", if i == 0 { "" } else { " " }, r.start, r.end)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
