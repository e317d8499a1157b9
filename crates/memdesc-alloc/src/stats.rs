//! Counters and the `MEMDESC_STATS=1` summary.
//!
//! Each CPU slot counts its own allocations and frees (a load and a store
//! by the slot's thread, no locked instruction); threads without a slot
//! count in shared atomics. Bytes in use come from the slab's own books at
//! report time, peak memory from the kernel (`VmHWM`).

use crate::platform::{self, Binding, NR_SLOTS};
use core::sync::atomic::{AtomicU64, Ordering};

#[repr(align(64))]
struct Counters {
    allocs: AtomicU64,
    frees: AtomicU64,
}

impl Counters {
    const fn new() -> Self {
        Self { allocs: AtomicU64::new(0), frees: AtomicU64::new(0) }
    }
}

static PER_SLOT: [Counters; NR_SLOTS as usize] = [const { Counters::new() }; NR_SLOTS as usize];
static SHARED: Counters = Counters::new();

/// Adds one to `counter`, which only this thread writes (its slot's).
#[inline(always)]
fn bump_own(counter: &AtomicU64) {
    // Relaxed: a statistic written by one thread (the slot's owner); a
    // plain load and store, no read-modify-write.
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

fn counters(binding: Binding) -> Option<&'static Counters> {
    match binding {
        Binding::Slot(slot) => PER_SLOT.get(slot as usize),
        _ => None,
    }
}

/// Counts an allocation by the holder of `slot`; returns the slot's count
/// so far (the caller's period for answering drain requests).
#[inline(always)]
pub(crate) fn count_alloc_on(slot: u32) -> u64 {
    match PER_SLOT.get(slot as usize) {
        Some(c) => {
            // Relaxed: as in bump_own.
            let n = c.allocs.load(Ordering::Relaxed) + 1;
            // Relaxed: as in bump_own.
            c.allocs.store(n, Ordering::Relaxed);
            n
        }
        None => {
            count_alloc(Binding::NoSlot);
            1
        }
    }
}

#[inline(always)]
pub(crate) fn count_alloc(binding: Binding) {
    match counters(binding) {
        Some(c) => bump_own(&c.allocs),
        // Relaxed: a statistic.
        None => drop(SHARED.allocs.fetch_add(1, Ordering::Relaxed)),
    }
}

#[inline(always)]
pub(crate) fn count_free(binding: Binding) {
    match counters(binding) {
        Some(c) => bump_own(&c.frees),
        // Relaxed: a statistic.
        None => drop(SHARED.frees.fetch_add(1, Ordering::Relaxed)),
    }
}

/// The allocator's counters (a racy snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Allocations so far (every entry point).
    pub allocs: u64,
    /// Frees so far.
    pub frees: u64,
    /// Bytes in slab objects handed out (class sizes), large folios and
    /// direct maps.
    pub bytes_in_use: u64,
    /// Hot-adds after boot.
    pub hot_adds: u64,
    /// Sections they added.
    pub sections_added: u64,
    /// Bytes of the span present in the node.
    pub present_bytes: u64,
    /// Live direct maps.
    pub direct_maps: u64,
    /// CPU slots held by threads now.
    pub slots_taken: u32,
    /// CPU slots a forked child inherited from threads it does not have
    /// (held, with their caches, for the child's life).
    pub slots_orphaned_by_fork: u32,
    /// The process's peak resident set (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
}

/// The counters now.
pub fn snapshot() -> Stats {
    let sum = |f: fn(&Counters) -> &AtomicU64| {
        // Relaxed: statistics.
        PER_SLOT.iter().map(|c| f(c).load(Ordering::Relaxed)).sum::<u64>() + f(&SHARED).load(Ordering::Relaxed)
    };
    let (maps, map_bytes) = crate::large::usage();
    let growth = crate::span::growth();
    let mut slab_bytes = 0;
    if let Some(engine) = crate::engine::ready() {
        slab_bytes = engine.slab.slabinfo().map(|i| i.active_objs * i.obj_size as u64).sum::<u64>();
        slab_bytes += engine.slab.audit().large_frames * memdesc::PAGE_SIZE as u64;
    }
    Stats {
        allocs: sum(|c| &c.allocs),
        frees: sum(|c| &c.frees),
        bytes_in_use: slab_bytes + map_bytes as u64,
        hot_adds: growth.hot_adds,
        sections_added: growth.sections,
        present_bytes: growth.present,
        direct_maps: maps as u64,
        slots_taken: platform::slots_taken(),
        // Relaxed: a statistic.
        slots_orphaned_by_fork: crate::thread::ORPHANED_SLOTS.load(Ordering::Relaxed),
        peak_rss_kib: peak_rss_kib(),
    }
}

/// `VmHWM` from /proc/self/status, read with plain syscalls into a stack
/// buffer (no allocation); 0 if unavailable.
fn peak_rss_kib() -> u64 {
    let mut buf = [0u8; 4096];
    // SAFETY: a NUL-terminated path; open/read/close with our own buffer.
    let len = unsafe {
        let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let text = &buf[..len.max(0) as usize];
    let Some(at) = text.windows(6).position(|w| w == b"VmHWM:") else { return 0 };
    text[at + 6..]
        .iter()
        .skip_while(|b| !b.is_ascii_digit())
        .take_while(|b| b.is_ascii_digit())
        .fold(0, |n, &b| n * 10 + u64::from(b - b'0'))
}

/// Prints the summary on stderr: one `memdesc:` line of totals, then a
/// slabinfo-style line per class in use.
pub fn print_summary() {
    let s = snapshot();
    crate::report::line(format_args!(
        "allocs {} frees {} in-use {} KiB peak-rss {} KiB hot-adds {} ({} sections) present {} MiB direct-maps {} cpu-slots {}/{}",
        s.allocs,
        s.frees,
        s.bytes_in_use / 1024,
        s.peak_rss_kib,
        s.hot_adds,
        s.sections_added,
        s.present_bytes >> 20,
        s.direct_maps,
        s.slots_taken,
        platform::platform().slots().nr_cpus()
    ));
    if s.slots_orphaned_by_fork > 0 {
        crate::report::line(format_args!(
            "{} cpu slots orphaned by fork (held by the parent's other threads, with their caches)",
            s.slots_orphaned_by_fork
        ));
    }
    let Some(engine) = crate::engine::ready() else { return };
    if engine.debug {
        crate::report::line(format_args!("debug caches on (MEMDESC_DEBUG=1): red zones, poison, state words"));
    }
    crate::report::line(format_args!(
        "{:<16} {:>8} {:>8} {:>6} {:>4} {:>2} {:>6}",
        "# name", "active", "total", "size", "objs", "pg", "cached"
    ));
    for info in engine.slab.slabinfo().filter(|i| i.slabs > 0) {
        crate::report::line(format_args!("{info} {:>6}", info.cached_objs));
    }
}
