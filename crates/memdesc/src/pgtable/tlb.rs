//! Per-CPU software TLBs and their shootdown.
//!
//! Each CPU caches a few translations. A CPU holds its own TLB lock across
//! a lookup, the walk that fills a miss, and the access it then makes, so a
//! shootdown (which takes that lock, through
//! [`Platform::tlb_shootdown`](crate::platform::Platform::tlb_shootdown))
//! never lands between a translation and its use, as an interrupt cannot
//! land inside one instruction on real hardware. The lock is per CPU and
//! only a shootdown takes another CPU's, so it is uncontended otherwise.

use crate::buddy::MAX_CPUS;
use crate::memmap::Pfn;
use crate::platform::{CpuId, Platform};
use crate::sync::{SpinGuard, SpinLock};

/// Translations per CPU.
pub const TLB_ENTRIES: usize = 16;

/// One cached translation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TlbEntry {
    /// Address-space id; 0 marks an empty slot.
    pub(crate) asid: u32,
    /// A huge (PMD) translation.
    pub(crate) huge: bool,
    /// Writable.
    pub(crate) write: bool,
    /// The virtual page (or huge page) number: `va >> shift`.
    pub(crate) vpn: u64,
    /// The frame of that page (the huge page's head for a huge one).
    pub(crate) pfn: Pfn,
}

impl TlbEntry {
    fn shift(&self) -> u32 {
        if self.huge {
            super::Level::Pmd.shift()
        } else {
            super::Level::Pte.shift()
        }
    }

    fn covers(&self, asid: u32, va: u64) -> bool {
        self.asid == asid && va >> self.shift() == self.vpn
    }

    fn overlaps(&self, asid: u32, start: u64, end: u64) -> bool {
        let base = self.vpn << self.shift();
        self.asid == asid && base < end && start < base + (1 << self.shift())
    }

    /// The frame holding `va`.
    pub(crate) fn frame_of(&self, va: u64) -> Pfn {
        Pfn(self.pfn.0 + ((va >> super::Level::Pte.shift()) & ((1 << (self.shift() - 12)) - 1)))
    }
}

/// One CPU's TLB.
#[derive(Debug, Default)]
pub(crate) struct Tlb {
    entries: [TlbEntry; TLB_ENTRIES],
    /// The next slot to replace (round robin).
    next: usize,
}

impl Tlb {
    pub(crate) fn lookup(&self, asid: u32, va: u64) -> Option<TlbEntry> {
        self.entries.iter().find(|e| e.covers(asid, va)).copied()
    }

    pub(crate) fn insert(&mut self, entry: TlbEntry) {
        let base = entry.vpn << entry.shift();
        self.flush_range(entry.asid, base, base + (1 << entry.shift()));
        self.entries[self.next] = entry;
        self.next = (self.next + 1) % TLB_ENTRIES;
    }

    /// Drops every translation of `asid` overlapping `start..end`; returns
    /// how many.
    pub(crate) fn flush_range(&mut self, asid: u32, start: u64, end: u64) -> u64 {
        let mut flushed = 0;
        for e in &mut self.entries {
            if e.overlaps(asid, start, end) {
                *e = TlbEntry::default();
                flushed += 1;
            }
        }
        flushed
    }
}

/// The TLBs of every CPU.
pub(crate) struct Tlbs {
    cpus: [SpinLock<Tlb>; MAX_CPUS],
}

impl Tlbs {
    pub(crate) fn new() -> Self {
        Self { cpus: core::array::from_fn(|_| SpinLock::new(Tlb::default())) }
    }

    /// Locks `cpu`'s TLB, for a translation and the access that uses it.
    pub(crate) fn lock(&self, cpu: CpuId) -> SpinGuard<'_, Tlb> {
        self.cpus[cpu.index() % MAX_CPUS].lock()
    }

    /// Flushes `start..end` of `asid` from every CPU's TLB: the caller's
    /// directly, the others' by shootdown. Returns (remote CPUs shot down,
    /// translations dropped).
    pub(crate) fn flush(&self, platform: &dyn Platform, asid: u32, start: u64, end: u64) -> (u64, u64) {
        let me = platform.current_cpu();
        let flushed = core::cell::Cell::new(self.lock(me).with(|tlb| tlb.flush_range(asid, start, end)));
        let mut shootdowns = 0;
        for cpu in (0..platform.nr_cpus().min(MAX_CPUS as u32)).map(CpuId) {
            if cpu == me {
                continue;
            }
            platform.tlb_shootdown(cpu, &|| {
                let n = self.lock(cpu).with(|tlb| tlb.flush_range(asid, start, end));
                flushed.set(flushed.get() + n);
            });
            shootdowns += 1;
        }
        (shootdowns, flushed.get())
    }
}
