//! The reserved span: one large virtual range, mapped once, lazily backed;
//! physical address `p` of the node is byte `p` of the span.
//!
//! The node boots with a first present section; [`grow`] adds sections as
//! demand grows (serialised; a failed allocation calls it and retries).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use memdesc::memmap::{MemoryLayout, PhysAddr, PhysRange};
use memdesc::{Node, NodeConfig, Platform, ZoneId, MAX_ORDER, PAGE_SIZE};
use std::sync::Mutex;

/// Virtual bytes reserved (halved until the kernel accepts the mapping).
const RESERVE: usize = 64 << 30;
/// The smallest reservation tried.
const MIN_RESERVE: usize = 1 << 30;
/// Sections of 2^12 frames (16 MiB): each keeps its descriptors (256 KiB)
/// in its first frames, so three of its four largest (4 MiB) blocks stay
/// whole for folios; a 4 MiB section would lose its only one.
const SECTION_ORDER: u32 = 12;
/// Bytes of a section.
const SECTION_BYTES: u64 = (PAGE_SIZE as u64) << SECTION_ORDER;
/// Bytes present at boot: two sections (the node, the slab allocator and
/// the class caches take about 2 MiB of it).
pub(crate) const FIRST_SECTION: u64 = 2 * SECTION_BYTES;
/// The span's base is aligned to the largest folio, so every buddy folio
/// is naturally aligned in virtual memory too.
const SPAN_ALIGN: usize = PAGE_SIZE << MAX_ORDER;

/// Where the span is (0 before boot).
static BASE: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
/// Bytes of the span present in the node.
static PRESENT: AtomicU64 = AtomicU64::new(0);
/// Hot-adds after boot, and the sections they added.
static HOT_ADDS: AtomicU64 = AtomicU64::new(0);
static SECTIONS: AtomicU64 = AtomicU64::new(0);
/// Serialises growth.
static GROW: Mutex<()> = Mutex::new(());

/// Whether `addr` lies in the span.
#[inline(always)]
pub(crate) fn contains(addr: usize) -> bool {
    // Relaxed: set once at boot, before any pointer into the span exists
    // (the engine's OnceLock publishes it to other threads).
    let base = BASE.load(Ordering::Relaxed);
    // Relaxed: as above.
    addr.wrapping_sub(base) < LEN.load(Ordering::Relaxed)
}

/// What growth did so far (statistics).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Growth {
    /// Hot-adds after boot.
    pub(crate) hot_adds: u64,
    /// Sections they added.
    pub(crate) sections: u64,
    /// Bytes of the span present in the node.
    pub(crate) present: u64,
}

/// What growth did so far.
pub(crate) fn growth() -> Growth {
    // Relaxed: statistics.
    let (hot_adds, sections) = (HOT_ADDS.load(Ordering::Relaxed), SECTIONS.load(Ordering::Relaxed));
    Growth { hot_adds, sections, present: present() }
}

/// Bytes of the span present now: read before an allocation, handed to
/// [`grow`] if it fails.
#[inline(always)]
pub(crate) fn present() -> u64 {
    // Relaxed: only compared with itself under the growth lock (a stale
    // value makes `grow` report progress and the caller retry).
    PRESENT.load(Ordering::Relaxed)
}

/// Why the span could not be set up.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SpanError {
    /// mmap refused every size down to [`MIN_RESERVE`].
    Map,
    /// The node refused the layout.
    Boot(memdesc::BootError),
}

impl core::fmt::Display for SpanError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map => write!(f, "mmap refused every span size down to {} MiB", MIN_RESERVE >> 20),
            Self::Boot(e) => write!(f, "the node did not boot: {e}"),
        }
    }
}

/// Reserves the span and boots a node over it with the first section
/// present.
pub(crate) fn boot(platform: &'static dyn Platform) -> Result<&'static Node<'static>, SpanError> {
    let mut want = RESERVE;
    let (base, len) = loop {
        // SAFETY: a fresh anonymous private mapping at an address the
        // kernel chooses: no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                want + SPAN_ALIGN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            break (p as usize, want + SPAN_ALIGN);
        }
        want /= 2;
        if want < MIN_RESERVE {
            return Err(SpanError::Map);
        }
    };
    // Trim the mapping to an aligned span of `want` bytes.
    let start = base.next_multiple_of(SPAN_ALIGN);
    let end = start + want;
    // SAFETY: both ranges are parts of the mapping made above that nothing
    // uses (outside the aligned span); munmap of a page-aligned subrange.
    unsafe {
        if start > base {
            libc::munmap(base as *mut libc::c_void, start - base);
        }
        if base + len > end {
            libc::munmap(end as *mut libc::c_void, base + len - end);
        }
    }
    let present = FIRST_SECTION;
    // SAFETY: the span is mapped read-write for `want` bytes, never
    // unmapped, and handed to the node alone for the process's life.
    let memory: &'static mut [u8] = unsafe { core::slice::from_raw_parts_mut(start as *mut u8, want) };
    let ram = [PhysRange::new(0, present)];
    let layout = MemoryLayout { ram: &ram, reserved: &[] };
    // Every allocation is Unmovable kernel memory: no movable zone; a small
    // reserve, since running low means growing, not reclaiming.
    let config = NodeConfig { movable_percent: 0, min_free_frames: Some(64), ..NodeConfig::default() };
    let node = Node::boot_with_sections(memory, PhysAddr(0), &layout, config, SECTION_ORDER, platform)
        .map_err(|f| SpanError::Boot(f.error))?;
    // Relaxed: published to other threads by the engine's OnceLock.
    BASE.store(start, Ordering::Relaxed);
    // Relaxed: as above.
    LEN.store(want, Ordering::Relaxed);
    // Relaxed: a statistic.
    PRESENT.store(present, Ordering::Relaxed);
    Ok(node)
}

/// Makes more of the span present after an allocation failed that had
/// read [`present`] as `seen`: `true` if memory was added (by this call, or
/// by another thread since `seen`), so the caller retries; `false` when
/// the span is used up or the node refused.
///
/// Serialised; each hot-add adds a quarter of what is present (at least a
/// section), so a growing heap takes a logarithmic number of them.
pub(crate) fn grow(node: &Node<'_>, seen: u64) -> bool {
    let _serial = GROW.lock().unwrap_or_else(|e| e.into_inner());
    let now = present();
    if now != seen {
        return true;
    }
    // Relaxed: set once at boot (see `contains`).
    let len = LEN.load(Ordering::Relaxed) as u64 / SECTION_BYTES * SECTION_BYTES;
    let step = (now / 4).next_multiple_of(SECTION_BYTES).max(SECTION_BYTES);
    let end = now.saturating_add(step).min(len);
    if end <= now {
        return false;
    }
    match node.hot_add(PhysRange::new(now, end), ZoneId::Normal) {
        Ok(added) => {
            // Relaxed: statistics.
            HOT_ADDS.fetch_add(1, Ordering::Relaxed);
            // Relaxed: statistics.
            SECTIONS.fetch_add(added.sections, Ordering::Relaxed);
            // Relaxed: read under this lock, or as a hint (see `present`);
            // the frames themselves are published by hot_add (HOTADD.4–.5).
            PRESENT.store(end, Ordering::Relaxed);
            true
        }
        Err(e) => {
            crate::report::line(format_args!("hot-add of {now:#x}..{end:#x} refused: {e}"));
            false
        }
    }
}
