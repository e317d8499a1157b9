//! The reserved span: one large virtual range, mapped once, lazily backed;
//! physical address `p` of the node is byte `p` of the span.
//!
//! The node boots with a first present section; [`grow`] adds sections as
//! demand grows (serialised; a failed allocation calls it and retries).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use memdesc::memmap::{MemoryLayout, PhysAddr, PhysRange};
use memdesc::{Node, NodeConfig, Platform, MAX_ORDER, PAGE_SIZE};
use std::sync::Mutex;

/// Virtual bytes reserved (halved until the kernel accepts the mapping).
const RESERVE: usize = 64 << 30;
/// The smallest reservation tried.
const MIN_RESERVE: usize = 1 << 30;
/// Bytes present at boot. Interim: without hot-add the first section is
/// the whole node.
pub(crate) const FIRST_SECTION: u64 = 128 << 20;
/// The span's base is aligned to the largest folio, so every buddy folio
/// is naturally aligned in virtual memory too.
const SPAN_ALIGN: usize = PAGE_SIZE << MAX_ORDER;

/// Where the span is (0 before boot).
static BASE: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
/// Bytes of the span present in the node.
static PRESENT: AtomicU64 = AtomicU64::new(0);
/// Sections added after boot.
static HOT_ADDS: AtomicU64 = AtomicU64::new(0);
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

/// Sections added after boot, and bytes present (statistics).
pub(crate) fn growth() -> (u64, u64) {
    // Relaxed: statistics.
    (HOT_ADDS.load(Ordering::Relaxed), PRESENT.load(Ordering::Relaxed))
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
    let present = FIRST_SECTION.min(want as u64);
    // SAFETY: the span is mapped read-write for `want` bytes, never
    // unmapped, and handed to the node alone for the process's life.
    let memory: &'static mut [u8] = unsafe { core::slice::from_raw_parts_mut(start as *mut u8, want) };
    let ram = [PhysRange::new(0, present)];
    let layout = MemoryLayout { ram: &ram, reserved: &[] };
    // Every allocation is Unmovable kernel memory: no movable zone; a small
    // reserve, since running low means growing, not reclaiming.
    let config = NodeConfig { movable_percent: 0, min_free_frames: Some(64), ..NodeConfig::default() };
    let node = Node::boot(memory, PhysAddr(0), &layout, config, platform).map_err(|f| SpanError::Boot(f.error))?;
    // Relaxed: published to other threads by the engine's OnceLock.
    BASE.store(start, Ordering::Relaxed);
    // Relaxed: as above.
    LEN.store(want, Ordering::Relaxed);
    // Relaxed: a statistic.
    PRESENT.store(present, Ordering::Relaxed);
    Ok(node)
}

/// Adds a section to the node after an allocation failed; `false` when the
/// span is full (or, until `Node::hot_add` lands, always).
pub(crate) fn grow(_node: &Node<'_>) -> bool {
    let _serial = GROW.lock().unwrap_or_else(|e| e.into_inner());
    false
}
