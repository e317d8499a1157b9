//! The engine: the node over the span, the slab allocator and its size
//! classes, initialised once without allocating through `malloc`.

use crate::classes::{self, CLASS_NAMES, CLASS_SIZES, NR_CLASSES};
use crate::platform::{self, Binding};
use crate::report::{self, Misuse};
use crate::{bootstrap, large, span};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use memdesc::slab::{CacheConfig, CacheRef, SlabAllocator, SlabError, SlabFlags, SlabReturn};
use memdesc::{CpuId, LocalCpu, Node, Rcu, RcuConfig, MAX_ORDER, PAGE_SIZE};
use std::sync::OnceLock;

/// The largest request served by a buddy folio (large kmalloc).
pub(crate) const MAX_FOLIO_BYTES: usize = PAGE_SIZE << MAX_ORDER;

static RET: OnceLock<SlabReturn<'static>> = OnceLock::new();
static RCU: OnceLock<Rcu<'static>> = OnceLock::new();
static SLAB: OnceLock<SlabAllocator<'static>> = OnceLock::new();
static ENGINE: OnceLock<Engine> = OnceLock::new();

/// Initialisation state: nobody started, running, done, failed.
static INIT: AtomicU32 = AtomicU32::new(UNINIT);
const UNINIT: u32 = 0;
const RUNNING: u32 = 1;
const DONE: u32 = 2;
const FAILED: u32 = 3;

/// The allocator's state, built once.
pub(crate) struct Engine {
    pub(crate) node: &'static Node<'static>,
    pub(crate) slab: &'static SlabAllocator<'static>,
    classes: [CacheRef<'static, 'static>; NR_CLASSES],
    /// `MEMDESC_DEBUG=1`: debug caches (red zones, poison, state words).
    pub(crate) debug: bool,
    /// `MEMDESC_STATS=1`: print the summary at exit.
    pub(crate) stats: bool,
}

/// The engine if it is up (never initialises).
#[inline(always)]
pub(crate) fn ready() -> Option<&'static Engine> {
    ENGINE.get()
}

/// The engine, initialising it on first use; `None` if that failed. Called
/// inside the allocator (the caller holds a guard), so libc calls made here
/// that allocate are served by the bootstrap arena.
#[inline(always)]
pub(crate) fn get() -> Option<&'static Engine> {
    match ENGINE.get() {
        Some(engine) => Some(engine),
        None => init(),
    }
}

#[cold]
fn init() -> Option<&'static Engine> {
    // Acquire: pairs with the Release stores of the state below. Relaxed on
    // failure: we reread it in the wait loop.
    match INIT.compare_exchange(UNINIT, RUNNING, Ordering::Acquire, Ordering::Relaxed) {
        Ok(_) => {
            let built = build();
            let ok = built.is_some_and(|engine| ENGINE.set(engine).is_ok());
            if ok {
                crate::thread::init_hooks();
            }
            // Release: pairs with the Acquire loads of waiting threads.
            INIT.store(if ok { DONE } else { FAILED }, Ordering::Release);
            ENGINE.get()
        }
        Err(_) => {
            // Acquire: pairs with the Release store above.
            while INIT.load(Ordering::Acquire) == RUNNING {
                std::thread::yield_now();
            }
            ENGINE.get()
        }
    }
}

/// Whether the environment variable `name` (NUL-terminated) is "1".
pub(crate) fn env_flag(name: &[u8]) -> bool {
    // SAFETY: `name` is NUL-terminated; getenv does not allocate and the
    // result, if not null, is a NUL-terminated string we only read.
    let value = unsafe { libc::getenv(name.as_ptr().cast()) };
    // SAFETY: as above: a C string, read up to its NUL.
    !value.is_null() && unsafe { core::ffi::CStr::from_ptr(value) }.to_bytes() == b"1"
}

fn build() -> Option<Engine> {
    let debug = env_flag(b"MEMDESC_DEBUG\0");
    let stats = env_flag(b"MEMDESC_STATS\0");
    if stats {
        report::keep_stderr();
    }
    platform::choose();
    let node = match span::boot(platform::platform()) {
        Ok(node) => node,
        Err(e) => {
            report::line(format_args!("cannot set up the memory span: {e}"));
            return None;
        }
    };
    let _ = RET.set(SlabAllocator::slab_return(node));
    let _ = RCU.set(Rcu::new(platform::platform(), RcuConfig::default()).ok()?);
    let slab = SlabAllocator::new(node, RCU.get()?, RET.get()?).ok()?;
    let _ = SLAB.set(slab);
    let slab = SLAB.get()?;
    let flags = if debug { SlabFlags::DEBUG } else { SlabFlags::NONE };
    let mut classes: [Option<CacheRef<'static, 'static>>; NR_CLASSES] = [const { None }; NR_CLASSES];
    for (index, class) in classes.iter_mut().enumerate() {
        let config = CacheConfig {
            name: CLASS_NAMES[index],
            size: CLASS_SIZES[index],
            align: classes::class_align(index),
            ctor: None,
            flags,
        };
        *class = Some(slab.create_cache(config).ok()?);
    }
    if classes.iter().any(Option::is_none) {
        return None;
    }
    let classes = classes.map(|c| c.expect("checked above: every class was created"));
    Some(Engine { node, slab, classes, debug, stats })
}

/// What a checked pointer turned out to be.
pub(crate) enum Block {
    /// A slab object or a folio in the span: its usable size.
    Span(usize),
    /// A bootstrap block of this size.
    Bootstrap(usize),
    /// A direct map of this length.
    Map(usize),
}

impl Engine {
    /// Allocates `size` bytes (at least 1) aligned to `align` (a power of
    /// two); `(pointer, fresh)` where `fresh` says the memory is a new map
    /// (already zero). Null when memory is exhausted.
    ///
    /// # Safety
    /// 1. `binding` is the calling thread's, read inside the allocator
    ///    (under a [`Guard`](crate::thread::Guard)): see [`local_cpu`].
    #[inline(always)]
    pub(crate) unsafe fn alloc(&self, binding: Binding, size: usize, align: usize) -> (*mut u8, bool) {
        if let (Some(index), Binding::Slot(slot)) = (classes::class_for(size, align), binding) {
            // SAFETY: duty 1 of local_cpu is our duty 1.
            let cpu = unsafe { local_cpu(slot) };
            // SAFETY: duty 1 of alloc_on: `cpu` is this thread's slot of
            // the platform the node booted with (local_cpu).
            if let Some(ptr) = unsafe { self.classes[index].alloc_on(&cpu) } {
                return (ptr.as_ptr(), false);
            }
        }
        self.alloc_slow(size, align)
    }

    /// [`Engine::alloc`] past the per-CPU fast path: slot-less threads,
    /// folios, direct maps, and growth when the node runs out.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, size: usize, align: usize) -> (*mut u8, bool) {
        loop {
            let seen = span::present();
            let result = if let Some(index) = classes::class_for(size, align) {
                self.classes[index].alloc_raw()
            } else if size.max(align) <= MAX_FOLIO_BYTES {
                self.slab.kmalloc(size, align)
            } else {
                return (large::alloc(size, align), true);
            };
            match result {
                Ok(ptr) => return (ptr.as_ptr(), false),
                Err(SlabError::OutOfMemory(_)) if span::grow(self.node, seen) => {}
                Err(_) => return (core::ptr::null_mut(), false),
            }
        }
    }

    /// What `ptr` (not null) is, checked through its descriptor; reports
    /// misuse by `op` and aborts.
    pub(crate) fn check(&self, op: &str, ptr: NonNull<u8>) -> Block {
        let addr = ptr.as_ptr() as usize;
        if span::contains(addr) {
            match self.slab.ksize(ptr) {
                Ok(size) => Block::Span(size),
                Err(e) => misuse_of(op, addr, e),
            }
        } else if bootstrap::contains(addr) {
            // SAFETY: duty 1 of size_of: a pointer into the arena the
            // program got from us is a block's start (a wild one reads
            // arena bytes: still in bounds).
            Block::Bootstrap(unsafe { bootstrap::size_of(ptr.as_ptr()) })
        } else if let Some(len) = large::len_of(addr) {
            Block::Map(len)
        } else {
            not_ours(op, addr)
        }
    }

    /// Frees `ptr` (not null), checked; misuse aborts.
    ///
    /// # Safety
    /// 1. If `ptr` is a live allocation, the caller gives it up.
    /// 2. As [`Engine::alloc`]'s duty 1.
    #[inline]
    pub(crate) unsafe fn free(&self, binding: Binding, op: &str, ptr: NonNull<u8>) {
        let addr = ptr.as_ptr() as usize;
        if span::contains(addr) {
            if addr % RETURN_BYTES == 0 {
                self.return_frames(op, ptr);
            }
            let freed = match binding {
                Binding::Slot(slot) => {
                    // SAFETY: duty 1 of local_cpu is our duty 2.
                    let cpu = unsafe { local_cpu(slot) };
                    // SAFETY: duty 1 of kfree_on is ours (duty 1; the
                    // descriptor check inside refuses what is not an
                    // allocation); duty 2: `cpu` is this thread's slot of
                    // the platform the node booted with (local_cpu).
                    unsafe { self.slab.kfree_on(&cpu, ptr) }
                }
                // SAFETY: duty 1 of kfree_locked is our duty 1.
                _ => unsafe { self.kfree_locked(ptr) },
            };
            if let Err(e) = freed {
                misuse_of(op, addr, e);
            }
        } else if bootstrap::contains(addr) {
            // Bootstrap blocks are never reused.
        } else if !large::free(addr) {
            not_ours(op, addr);
        }
    }
}

impl Engine {
    /// [`Engine::free`]'s path for a thread without a CPU slot (the
    /// core's locked lists), out of line.
    ///
    /// # Safety
    /// 1. As [`SlabAllocator::kfree`]'s duty 1.
    #[cold]
    #[inline(never)]
    unsafe fn kfree_locked(&self, ptr: NonNull<u8>) -> Result<(), SlabError> {
        // SAFETY: duty 1 of kfree is our duty 1.
        unsafe { self.slab.kfree(ptr) }
    }

    /// Gives the frames of a large folio about to be freed back to the
    /// kernel (`MADV_DONTNEED`), so a process's resident memory falls when
    /// it frees big buffers; the span stays mapped and the frames come back
    /// zeroed on their next use. Blocks below [`RETURN_BYTES`] keep their
    /// frames (reuse is likely and faults cost more than they save).
    #[cold]
    fn return_frames(&self, op: &str, ptr: NonNull<u8>) {
        let Block::Span(size) = self.check(op, ptr) else { return };
        if size >= RETURN_BYTES {
            // SAFETY: the block is a live folio of `size` bytes in the span
            // that the caller is freeing (its contents are dead); the
            // mapping stays, only its backing is dropped.
            unsafe { libc::madvise(ptr.as_ptr().cast(), size, libc::MADV_DONTNEED) };
        }
    }
}

/// The token of CPU `slot` for a thread that holds that slot, made from
/// our own thread state: no call to the host platform's `enter_local`,
/// whose binding table is a second thread-local (a second
/// `__tls_get_addr` per call in the preloaded library). The host's section
/// count guards against the slot's release inside a section; here the
/// entry gate does: a slot is released only by the thread's exit hook,
/// which runs outside every `malloc`/`free` call of its thread (a call made
/// while inside is re-entrant and never reaches the engine's fast paths).
///
/// # Safety
/// 1. `slot` is the calling thread's binding, read inside the allocator
///    (under a guard) after the engine was built: the thread claimed it
///    from [`platform::platform`] (chosen before the node booted, so the
///    node's platform) and holds it until its exit hook, which does not
///    run while the token lives.
#[inline(always)]
unsafe fn local_cpu(slot: u32) -> LocalCpu {
    // SAFETY: duty 1: this thread holds `slot` (claimed by the host's
    // Acquire CAS, released only by its exit hook), so no other thread
    // uses that CPU's per-CPU state until the token is dropped, and the
    // thread "stays" on the CPU it holds.
    unsafe { LocalCpu::new_unchecked(CpuId(slot)) }
}

/// Folios this large (and so this aligned) give their frames back to the
/// kernel when freed.
const RETURN_BYTES: usize = 1 << 20;

/// Reports a pointer outside the span that starts no direct map, and
/// aborts.
#[cold]
fn not_ours(op: &str, addr: usize) -> ! {
    match large::containing(addr) {
        Some(map) => report::misuse(op, addr, Misuse::Interior, &format_args!("inside the direct map at {map:#x}")),
        None => report::misuse(op, addr, Misuse::Foreign, &"outside the memdesc span and every direct map"),
    }
}

/// Reports a pointer the slab refused and aborts.
#[cold]
fn misuse_of(op: &str, addr: usize, e: SlabError) -> ! {
    let kind = match e {
        SlabError::Misaligned { .. } => Misuse::Interior,
        SlabError::DoubleFree { .. } => Misuse::DoubleFree,
        SlabError::BadObject(_) => Misuse::Corrupted,
        // In the span but not an allocated block: free frames (a large
        // block freed already) or the allocator's own metadata.
        _ => Misuse::NotAllocated,
    };
    let class = match e {
        SlabError::Misaligned { cache, .. } | SlabError::DoubleFree { cache, .. } => class_name(cache),
        SlabError::BadObject(b) => b.cache,
        _ => "none",
    };
    report::misuse(op, addr, kind, &format_args!("{e} (class {class})"))
}

/// The name of cache `id` (the classes are created after kmalloc's).
fn class_name(id: u16) -> &'static str {
    let kmalloc = memdesc::slab::KMALLOC_SIZES.len();
    CLASS_NAMES.get(usize::from(id).wrapping_sub(kmalloc)).copied().unwrap_or("kmalloc")
}
