//! One slab cache: its layout, its lists of slabs (behind one lock), the
//! per-CPU sheaves above them, and the slow paths the sheaves call
//! ([`ObjectSource`]).

use super::debug::{Debug, STATE_ALLOCATED, STATE_FREE, STATE_QUARANTINED};
use super::layout::Layout;
use super::raw::{self, Arena, ListKind, ListLock, SlabCounts, SlabView, NIL};
use super::sheaf::{ObjectSource, PerCpuSheaves};
use super::{BadObject, CacheConfig, SlabCore, SlabError, SlabEvent, SlabFlags, SLAB_UNLISTED};
use crate::buddy::{FrozenFolio, Gfp};
use crate::folio::PageType;
use crate::memmap::{Page, Pfn};
use crate::platform::LocalCpu;
use crate::sync::{fence, Ordering, SpinLock};

/// Objects per sheaf of a cache of `size`-byte objects (the per-CPU
/// layer's capacity): larger for small objects, as Linux sizes a cache's
/// `sheaf_capacity`, so a CPU caches a similar number of bytes whatever
/// the size. One under the model, whose few objects must reach every path.
fn sheaf_capacity(size: usize) -> usize {
    if cfg!(memdesc_loom) {
        return 1;
    }
    match size {
        0..=256 => super::sheaf::SHEAF_CAPACITY,
        257..=1024 => 32,
        _ => 16,
    }
}
/// Slabs a cache keeps on its partial list before giving empty ones back
/// (Linux's `min_partial`): half the log2 of the object size, within
/// `5..=10` as Linux's `set_min_partial`, so a busy cache does not send
/// slabs to the buddy allocator that its next refill takes back. None under
/// the model, whose small nodes must see slabs go back.
fn min_partial(size: usize) -> u64 {
    if cfg!(memdesc_loom) {
        return 0;
    }
    u64::from(size.max(1).ilog2() / 2).clamp(5, 10)
}
/// Slabs one `give_back` may discard while it holds the lock; more stay on
/// the empty list for the next shrink.
const DISCARD_BATCH: usize = 8;

/// A list of slabs: the first head's pfn and the length.
#[derive(Debug)]
struct ListHead {
    first: u64,
    len: u64,
}

impl ListHead {
    const fn new() -> Self {
        Self { first: NIL, len: 0 }
    }
}

/// Everything behind a cache's list lock.
pub(crate) struct Lists {
    lock: ListLock,
    /// Slabs with a free object, empty ones included (as SLUB keeps them).
    partial: ListHead,
    full: ListHead,
    /// Slabs on the lists.
    pub(crate) slabs: u64,
    /// Objects handed out of slabs (to users or sheaves), quarantined
    /// included.
    pub(crate) inuse: u64,
    /// Objects quarantined by debug checks.
    pub(crate) quarantined: u64,
    /// Objects taken from slabs / given back, so far (statistics kept
    /// under the lock: no atomic on these paths).
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
}

/// A slab cache: its slabs and the per-CPU sheaves above them (separate
/// fields, so the sheaves can be flushed `&mut` into the slabs). Lives in
/// frozen Kernel frames the allocator placed it in.
pub(crate) struct Cache<'a> {
    pub(crate) slabs: Slabs<'a>,
    pub(crate) sheaves: PerCpuSheaves<'a>,
    /// The head pfn of the frozen frames holding the sheaves' storage,
    /// given back after the cache struct is dropped.
    pub(crate) sheaf_home: u64,
}

impl<'a> core::ops::Deref for Cache<'a> {
    type Target = Slabs<'a>;
    fn deref(&self) -> &Slabs<'a> {
        &self.slabs
    }
}

impl<'a> Cache<'a> {
    /// A cache `id` of `config` (checked by `layout`) whose sheaves live in
    /// `storage`, frames given up with `into_raw` at `sheaf_home`.
    ///
    /// # Safety
    /// 1. As [`PerCpuSheaves::in_storage`]'s duty 1 for `nr_cpus`, for `'a`
    ///    or until the cache is dropped, whichever comes first.
    pub(crate) unsafe fn new(
        id: u16,
        config: CacheConfig,
        layout: Layout,
        core: &SlabCore<'a>,
        home: u64,
        (storage, sheaf_home, nr_cpus): (core::ptr::NonNull<u8>, u64, usize),
    ) -> Self {
        let capacity = sheaf_capacity(config.size);
        Self {
            slabs: Slabs::new(id, config, layout, core, home),
            // SAFETY: duty 1, passed on.
            sheaves: unsafe { PerCpuSheaves::in_storage(capacity, nr_cpus, storage) },
            sheaf_home,
        }
    }

    /// Allocates one object: sheaves, then partial list, then a new slab.
    #[inline(always)]
    pub(crate) fn alloc(&self) -> Result<usize, SlabError> {
        let obj = if self.slabs.is_debug() {
            self.slabs.alloc_unsheaved()
        } else {
            self.sheaves.alloc(self.slabs.core().node.platform(), &self.slabs)
        };
        obj.ok_or_else(|| self.slabs.out_of_memory())
    }

    /// [`Cache::alloc`] inside the caller's local section: `cpu` is a token
    /// of the platform of this cache's node. `None`: out of memory.
    #[inline(always)]
    pub(crate) fn alloc_on(&self, cpu: &LocalCpu) -> Option<usize> {
        if self.slabs.is_debug() {
            return self.slabs.alloc_unsheaved();
        }
        self.sheaves.alloc_on(cpu, &self.slabs)
    }

    /// Frees `obj`, which the caller checked is an object boundary of a slab
    /// of this cache (`SlabCore::lookup`).
    #[inline(always)]
    pub(crate) fn free(&self, obj: usize) -> Result<(), SlabError> {
        if self.slabs.is_debug() {
            return self.slabs.free_debug(obj);
        }
        if self.sheaves.free(self.slabs.core().node.platform(), obj, &self.slabs) {
            Ok(())
        } else {
            Err(self.slabs.double_free(obj))
        }
    }

    /// [`Cache::free`] inside the caller's local section, with `cpu` as in
    /// [`Cache::alloc_on`].
    #[inline(always)]
    pub(crate) fn free_on(&self, cpu: &LocalCpu, obj: usize) -> Result<(), SlabError> {
        if self.slabs.is_debug() {
            return self.slabs.free_debug(obj);
        }
        if self.sheaves.free_on(cpu, obj, &self.slabs) {
            Ok(())
        } else {
            Err(self.slabs.double_free(obj))
        }
    }

    /// Whether `addr` is an object boundary of a slab of this cache, by its
    /// descriptor (`SlabCore::slab_of`): the check of every free through a
    /// cache handle, loads and compares only.
    #[inline(always)]
    pub(crate) fn owns(&self, addr: usize) -> bool {
        match self.slabs.core().slab_of(addr) {
            Some((cache, offset)) => cache == self.slabs.id && self.slabs.layout.index_of(offset).is_some(),
            None => false,
        }
    }
}

/// A cache's slabs: layout, lists and the slow paths.
pub(crate) struct Slabs<'a> {
    pub(crate) id: u16,
    pub(crate) config: CacheConfig,
    pub(crate) layout: Layout,
    core: core::ptr::NonNull<SlabCore<'a>>,
    arena: Arena,
    pub(crate) lists: SpinLock<Lists>,
    /// Where the cache struct lives (its own folio's head pfn).
    pub(crate) home: u64,
    /// Partial slabs kept before empty ones go back ([`min_partial`]).
    pub(crate) min_partial: u64,
}

impl<'a> Slabs<'a> {
    fn new(id: u16, config: CacheConfig, layout: Layout, core: &SlabCore<'a>, home: u64) -> Self {
        let lists = Lists {
            lock: ListLock::new(id),
            partial: ListHead::new(),
            full: ListHead::new(),
            slabs: 0,
            inuse: 0,
            quarantined: 0,
            allocs: 0,
            frees: 0,
        };
        Self {
            id,
            config,
            layout,
            arena: core.arena,
            core: core::ptr::NonNull::from(core),
            lists: SpinLock::new(lists),
            home,
            min_partial: min_partial(config.size),
        }
    }

    /// The allocator core.
    #[inline(always)]
    pub(crate) fn core(&self) -> &SlabCore<'a> {
        // SAFETY: the core is placed before any cache and freed by the
        // allocator's drop after every cache.
        unsafe { self.core.as_ref() }
    }

    fn debug(&self) -> Option<Debug<'_>> {
        let flags = self.config.flags;
        flags.contains(SlabFlags::DEBUG).then(|| Debug {
            arena: &self.arena,
            layout: &self.layout,
            poison: self.config.ctor.is_none() && !flags.contains(SlabFlags::TYPESAFE_BY_RCU),
        })
    }

    /// Whether allocations bypass the sheaves (debug caches check every
    /// object under the lock).
    #[inline(always)]
    pub(crate) fn is_debug(&self) -> bool {
        self.config.flags.contains(SlabFlags::DEBUG)
    }

    /// One object straight from the slabs (a debug cache's allocation).
    #[cold]
    #[inline(never)]
    fn alloc_unsheaved(&self) -> Option<usize> {
        let mut out = [0];
        (self.refill(&mut out) == 1).then_some(out[0])
    }

    /// The error of an allocation that found no object.
    #[cold]
    #[inline(never)]
    pub(crate) fn out_of_memory(&self) -> SlabError {
        SlabError::OutOfMemory(crate::buddy::AllocError::OutOfMemory { order: self.layout.order })
    }

    fn page(&self, pfn: u64) -> &'a Page {
        self.core().node.memmap().page_of(Pfn(pfn))
    }

    /// The address of frame `pfn`'s first byte.
    /// The error for a double free of `obj` (an object of this cache).
    #[cold]
    fn double_free(&self, obj: usize) -> SlabError {
        self.core().count(SlabEvent::DebugReports, 1);
        let map = self.core().node.memmap();
        let base = map
            .pfn_of_addr(obj)
            .and_then(|pfn| map.compound_head(pfn))
            .map_or(obj, |(head, _)| self.frame_addr(head.0));
        SlabError::DoubleFree { cache: self.id, offset: obj - base }
    }

    pub(crate) fn frame_addr(&self, pfn: u64) -> usize {
        self.core().node.memmap().frame_ptr(Pfn(pfn)).map_or(0, |p| p.as_ptr() as usize)
    }

    /// Takes a new slab from the buddy allocator and builds its freelist,
    /// outside the lock (the frozen handle makes it ours). Typed
    /// `Slab { UNLISTED }` until it joins the lists.
    fn new_slab(&self) -> Result<FrozenFolio<'a>, SlabError> {
        let gfp = Gfp::KERNEL.typed(PageType::Slab { cache: SLAB_UNLISTED });
        let mut folio = self.core().node.alloc_frozen(self.layout.order, gfp)?;
        // Mutant (seed 004's precondition, P7.1): the slab frame counted,
        // refcount 1 as `alloc_pages` gave it in 2022, so a pfn walker's
        // speculative get succeeds on it. Release: publishes the type tag
        // with the count, as a counted allocation would (P3.3).
        #[cfg(memdesc_mutant = "slab_frame_counted")]
        folio.head().refcount.fetch_add(1, crate::sync::Ordering::Release);
        let base = self.frame_addr(folio.pfn().0);
        let objects = usize::from(self.layout.objects);
        let debug = self.debug();
        for index in 0..objects {
            let obj = self.layout.object(base, index);
            let next = if index + 1 < objects { self.layout.object(base, index + 1) } else { 0 };
            if let Some(ctor) = self.config.ctor {
                // SAFETY: duty 1 of bytes_mut: the slab is frozen and ours;
                // the object is nobody else's yet.
                ctor(unsafe { self.arena.bytes_mut(obj, self.layout.size) });
            }
            if let Some(debug) = &debug {
                debug.init(obj);
            }
            // SAFETY: duty 1 of write_word: as above; free pointers are
            // 8-aligned (layout).
            unsafe { self.arena.write_word(self.layout.free_ptr(obj), next) };
        }
        let mut view = SlabView::frozen(&mut folio);
        view.set_counts(SlabCounts {
            objects: self.layout.objects,
            inuse: 0,
            quarantined: 0,
            list: ListKind::None,
            cache: self.id,
        });
        view.set_freelist(self.layout.object(base, 0));
        view.set_next(NIL);
        view.set_prev(NIL);
        self.core().count(SlabEvent::SlabsAllocated, 1);
        Ok(folio)
    }

    /// Puts a new slab on the partial list (under the lock): retypes it to
    /// this cache, then gives its handle up to the lists.
    fn add_slab(&self, lists: &mut Lists, mut folio: FrozenFolio<'a>) {
        // Release: pairs with the Acquire fence of typesafe_words, which
        // reads the tag written next without the lock: the constructor's
        // plain writes happen before a lockless reader's atomic reads.
        fence(Ordering::Release);
        folio.set_type(PageType::Slab { cache: self.id });
        let pfn = folio.into_raw().0;
        lists.slabs += 1;
        self.link(lists, ListKind::Partial, pfn);
    }

    fn head_of(lists: &mut Lists, kind: ListKind) -> &mut ListHead {
        match kind {
            ListKind::Full => &mut lists.full,
            ListKind::Partial | ListKind::None => &mut lists.partial,
        }
    }

    /// Pushes slab `pfn` on list `kind`.
    fn link(&self, lists: &mut Lists, kind: ListKind, pfn: u64) {
        let first = Self::head_of(lists, kind).first;
        if first != NIL {
            if let Some(mut next) = SlabView::locked(&mut lists.lock, self.page(first)) {
                next.set_prev(pfn);
            }
        }
        if let Some(mut view) = SlabView::locked(&mut lists.lock, self.page(pfn)) {
            view.set_next(first);
            view.set_prev(NIL);
            let counts = view.counts();
            view.set_counts(SlabCounts { list: kind, ..counts });
        }
        let head = Self::head_of(lists, kind);
        head.first = pfn;
        head.len += 1;
    }

    /// Takes slab `pfn` off its list.
    fn unlink(&self, lists: &mut Lists, pfn: u64) {
        let Some(mut view) = SlabView::locked(&mut lists.lock, self.page(pfn)) else { return };
        let (next, prev) = view.links();
        let counts = view.counts();
        view.set_counts(SlabCounts { list: ListKind::None, ..counts });
        view.set_next(NIL);
        view.set_prev(NIL);
        if next != NIL {
            if let Some(mut v) = SlabView::locked(&mut lists.lock, self.page(next)) {
                v.set_prev(prev);
            }
        }
        if prev != NIL {
            if let Some(mut v) = SlabView::locked(&mut lists.lock, self.page(prev)) {
                v.set_next(next);
            }
        }
        let head = Self::head_of(lists, counts.list);
        if head.first == pfn {
            head.first = next;
        }
        head.len -= 1;
    }

    /// Moves slab `pfn` to the list its counts call for.
    fn relist(&self, lists: &mut Lists, pfn: u64, counts: SlabCounts) {
        let want = if counts.inuse == counts.objects { ListKind::Full } else { ListKind::Partial };
        if want != counts.list {
            self.unlink(lists, pfn);
            self.link(lists, want, pfn);
        }
    }

    /// Pops free objects of the slabs into `out` (under the lock): partial
    /// slabs first, then empty ones. Returns how many.
    fn take_objects(&self, lists: &mut Lists, out: &mut [usize]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let pfn = lists.partial.first;
            if pfn == NIL {
                break;
            }
            let page = self.page(pfn);
            let Some(mut view) = SlabView::locked(&mut lists.lock, page) else { break };
            let mut counts = view.counts();
            let mut free = view.freelist();
            let base = self.frame_addr(pfn);
            while n < out.len() && free != 0 {
                let obj = free;
                // SAFETY: duty 1 of read_word: a free object of a listed
                // slab, under its cache's list lock.
                free = unsafe { self.arena.read_word(self.layout.free_ptr(obj)) };
                counts.inuse += 1;
                if let Some(debug) = self.debug() {
                    let next_ok =
                        free == 0 || free.checked_sub(base).and_then(|offset| self.layout.index_of(offset)).is_some();
                    if !next_ok {
                        // A corrupted free pointer: never followed. The
                        // objects on the rest of the chain are lost, counted
                        // as quarantined with this one's report.
                        let lost = counts.objects - counts.inuse;
                        counts.inuse = counts.objects;
                        counts.quarantined += lost;
                        lists.inuse += u64::from(lost);
                        lists.quarantined += u64::from(lost);
                        let at = self.layout.free_ptr(obj);
                        self.report_bad(pfn, obj, at, super::BadObjectKind::FreePointerCorrupted);
                        free = 0;
                    }
                    if let Err((kind, at)) = debug.check_free_object(obj) {
                        debug.set_state(obj, STATE_QUARANTINED);
                        counts.quarantined += 1;
                        lists.quarantined += 1;
                        lists.inuse += 1;
                        self.report_bad(pfn, obj, at, kind);
                        continue;
                    }
                    debug.set_state(obj, STATE_ALLOCATED);
                }
                out[n] = obj;
                n += 1;
                lists.inuse += 1;
            }
            view.set_freelist(free);
            view.set_counts(counts);
            self.relist(lists, pfn, counts);
        }
        lists.allocs += n as u64;
        n
    }

    fn report_bad(&self, slab: u64, obj: usize, at: usize, kind: super::BadObjectKind) -> BadObject {
        let base = self.frame_addr(slab);
        let report =
            BadObject { cache: self.config.name, cache_id: self.id, slab, offset: obj - base, at: at - base, kind };
        self.core().record_bad(report);
        report
    }

    /// Returns `obj` to its slab under the lock. Returns a slab to discard
    /// if the partial list grew past `min_partial`.
    fn put_object(&self, lists: &mut Lists, obj: usize) -> Option<FrozenFolio<'a>> {
        let head = self.slab_head(obj)?;
        self.put_run(lists, head, &[obj])
    }

    /// The head pfn of the slab `obj` lies in.
    fn slab_head(&self, obj: usize) -> Option<u64> {
        let map = self.core().node.memmap();
        let pfn = map.pfn_of_addr(obj)?;
        Some(map.compound_head(pfn)?.0 .0)
    }

    /// Returns `run`, objects of the slab headed by `head`, to it under the
    /// lock: chained in order onto its freelist with one update of its
    /// counts and one relist (SLUB's detached freelist). Returns the slab to
    /// discard if it emptied while the partial list is past `min_partial`.
    fn put_run(&self, lists: &mut Lists, head: u64, run: &[usize]) -> Option<FrozenFolio<'a>> {
        let Some(mut view) = SlabView::locked(&mut lists.lock, self.page(head)) else {
            debug_assert!(false, "objects {run:x?} of a slab not on the lists");
            return None;
        };
        let mut counts = view.counts();
        let mut next = view.freelist();
        for &obj in run.iter().rev() {
            // SAFETY: duty 1 of write_word: the object was handed out and is
            // given back to us (the caller gave up its pointer), under the lock.
            unsafe { self.arena.write_word(self.layout.free_ptr(obj), next) };
            next = obj;
        }
        view.set_freelist(next);
        // A run is at most a sheaf, and every object of it was in use.
        let n = run.len() as u16;
        debug_assert!(n <= counts.inuse, "more objects given back than in use");
        counts.inuse -= n;
        view.set_counts(counts);
        lists.inuse -= u64::from(n);
        self.relist(lists, head, counts);
        if counts.inuse == 0 && lists.partial.len > self.min_partial {
            return self.unlist_empty(lists, head);
        }
        None
    }

    /// Takes empty slab `pfn` off the lists and back as a frozen folio,
    /// retyped `Slab { UNLISTED }` (under the lock).
    fn unlist_empty(&self, lists: &mut Lists, pfn: u64) -> Option<FrozenFolio<'a>> {
        self.unlink(lists, pfn);
        lists.slabs -= 1;
        // SAFETY: duty 1 of take_folio: the slab was given up by add_slab
        // and is restored once, here, as it leaves the lists under the lock.
        let mut folio = unsafe { raw::take_folio(self.core().node, pfn) }?;
        folio.set_type(PageType::Slab { cache: SLAB_UNLISTED });
        Some(folio)
    }

    /// Gives a slab back to the buddy allocator: after a grace period for a
    /// TYPESAFE_BY_RCU cache (its objects may still be read by lockless
    /// readers), at once otherwise. Never under the list lock.
    pub(crate) fn discard(&self, folio: FrozenFolio<'a>) {
        self.core().count(SlabEvent::SlabsFreed, 1);
        // Mutant `slab_frame_counted`: the allocation's reference dropped
        // (AcqRel: a put). A walker that got a reference meanwhile still
        // holds one, which the real design makes impossible.
        #[cfg(memdesc_mutant = "slab_frame_counted")]
        folio.head().refcount.fetch_sub(1, crate::sync::Ordering::AcqRel);
        let rcu_free = self.config.flags.contains(SlabFlags::TYPESAFE_BY_RCU);
        // Mutant (seed 004's other half): a TYPESAFE_BY_RCU slab returned to
        // the buddy allocator at once, under readers still in their section.
        if rcu_free && !cfg!(memdesc_mutant = "slab_free_without_gp") {
            if let Err((folio, _)) = self.core().rcu.call_rcu_frame(folio, self.core().ret) {
                // Another node's frame cannot be here; wait for the readers
                // ourselves rather than free under them.
                self.core().rcu.synchronize();
                drop(folio);
            }
            return;
        }
        self.core().ret.callback().retire(folio.pfn());
        drop(folio);
    }

    /// Frees an object of a debug cache: state, red zones, poison, checked
    /// under the lock.
    pub(crate) fn free_debug(&self, obj: usize) -> Result<(), SlabError> {
        let Some(debug) = self.debug() else { return Err(SlabError::NotSlabObject(obj)) };
        let map = self.core().node.memmap();
        let (head, _) =
            map.pfn_of_addr(obj).and_then(|pfn| map.compound_head(pfn)).ok_or(SlabError::NotSlabObject(obj))?;
        let base = self.frame_addr(head.0);
        let discard = self.lists.lock().with(|lists| {
            if SlabView::locked(&mut lists.lock, self.page(head.0)).is_none() {
                return Err(SlabError::NotSlabObject(obj));
            }
            let problem = match debug.state(obj) {
                STATE_ALLOCATED => debug.check_red_zones(obj).err(),
                STATE_FREE | STATE_QUARANTINED => {
                    self.core().count(SlabEvent::DebugReports, 1);
                    return Err(SlabError::DoubleFree { cache: self.id, offset: obj - base });
                }
                _ => Some((super::BadObjectKind::StateCorrupted, obj - self.layout.obj_off + self.layout.fp_off + 8)),
            };
            if let Some((kind, at)) = problem {
                // Quarantined: it stays counted in use and is never reused.
                debug.set_state(obj, STATE_QUARANTINED);
                if let Some(mut view) = SlabView::locked(&mut lists.lock, self.page(head.0)) {
                    let counts = view.counts();
                    view.set_counts(SlabCounts { quarantined: counts.quarantined + 1, ..counts });
                }
                lists.quarantined += 1;
                return Err(SlabError::BadObject(self.report_bad(head.0, obj, at, kind)));
            }
            debug.poison_object(obj);
            debug.set_state(obj, STATE_FREE);
            lists.frees += 1;
            Ok(self.put_object(lists, obj))
        })?;
        if let Some(folio) = discard {
            self.discard(folio);
        }
        Ok(())
    }

    /// Takes every empty slab off the lists (under the lock) and discards
    /// them; with `all`, also slabs holding only quarantined objects.
    /// Returns how many slabs were discarded.
    pub(crate) fn release_empty(&self, all: bool) -> u64 {
        let mut released = 0;
        loop {
            let mut batch: [Option<FrozenFolio<'a>>; DISCARD_BATCH] = [const { None }; DISCARD_BATCH];
            let mut n = 0;
            self.lists.lock().with(|lists| {
                for kind in [ListKind::Partial, ListKind::Full] {
                    let mut pfn = Self::head_of(lists, kind).first;
                    while pfn != NIL && n < DISCARD_BATCH {
                        let Some(view) = SlabView::locked(&mut lists.lock, self.page(pfn)) else { break };
                        let (counts, (next, _)) = (view.counts(), view.links());
                        let releasable = if all { counts.inuse == counts.quarantined } else { counts.inuse == 0 };
                        if releasable {
                            let q = u64::from(counts.quarantined);
                            lists.quarantined -= q;
                            lists.inuse -= q;
                            batch[n] = self.unlist_empty(lists, pfn);
                            n += 1;
                        }
                        pfn = next;
                    }
                }
            });
            for folio in batch.into_iter().flatten() {
                self.discard(folio);
                released += 1;
            }
            if n < DISCARD_BATCH {
                return released;
            }
        }
    }

    /// Walks every slab (under the lock) and checks its counts against its
    /// freelist and type tag; returns (slabs, frames, violations).
    pub(crate) fn audit(&self) -> (u64, u64, u64) {
        let order_pages = self.layout.order.nr_pages();
        self.lists.lock().with(|lists| {
            let (mut slabs, mut violations, mut inuse) = (0u64, 0u64, 0u64);
            for kind in [ListKind::Partial, ListKind::Full] {
                let (mut pfn, mut len) = (Self::head_of(lists, kind).first, 0);
                while pfn != NIL {
                    let Some(view) = SlabView::locked(&mut lists.lock, self.page(pfn)) else {
                        violations += 1;
                        break;
                    };
                    let counts = view.counts();
                    let mut free = 0usize;
                    let mut obj = view.freelist();
                    let base = self.frame_addr(pfn);
                    while obj != 0 && free <= usize::from(counts.objects) {
                        if obj.checked_sub(base).and_then(|offset| self.layout.index_of(offset)).is_none() {
                            // Never followed: a corrupted free pointer.
                            violations += 1;
                            break;
                        }
                        free += 1;
                        // SAFETY: duty 1 of read_word: a free object of a
                        // listed slab, under the list lock.
                        obj = unsafe { self.arena.read_word(self.layout.free_ptr(obj)) };
                    }
                    let expect_inuse = usize::from(counts.objects) - free.min(usize::from(counts.objects));
                    if counts.list != kind
                        || counts.cache != self.id
                        || usize::from(counts.inuse) != expect_inuse
                        || counts.objects != self.layout.objects
                    {
                        violations += 1;
                    }
                    inuse += u64::from(counts.inuse);
                    len += 1;
                    slabs += 1;
                    pfn = view.links().0;
                }
                if len != Self::head_of(lists, kind).len {
                    violations += 1;
                }
            }
            if slabs != lists.slabs || inuse != lists.inuse {
                violations += 1;
            }
            (slabs, slabs * order_pages, violations)
        })
    }
}

impl ObjectSource for Slabs<'_> {
    fn refill(&self, out: &mut [usize]) -> usize {
        let mut n = 0;
        loop {
            n += self.lists.lock().with(|lists| self.take_objects(lists, &mut out[n..]));
            if n == out.len() {
                return n;
            }
            let Ok(folio) = self.new_slab() else { return n };
            self.lists.lock().with(|lists| self.add_slab(lists, folio));
        }
    }

    fn give_back(&self, objs: &[usize]) {
        let slab_bytes = self.layout.order.nr_pages() as usize * crate::memmap::PAGE_SIZE;
        let mut rest = objs;
        while !rest.is_empty() {
            // One lock hold until a slab must go back (rare: the partial
            // list is past min_partial), which is done after unlocking.
            let discard = self.lists.lock().with(|lists| {
                while let Some(&first) = rest.first() {
                    // The run of objects of `first`'s slab: a slab is one
                    // folio, contiguous in the memory from its head's frame.
                    let Some(head) = self.slab_head(first) else {
                        debug_assert!(false, "object {first:#x} outside the memory");
                        rest = &rest[1..];
                        continue;
                    };
                    let base = self.frame_addr(head);
                    // `first` always, so the loop moves on whatever the rest is.
                    let n = 1 + rest[1..].iter().take_while(|&&obj| obj.wrapping_sub(base) < slab_bytes).count();
                    let (run, tail) = rest.split_at(n);
                    rest = tail;
                    lists.frees += n as u64;
                    if let Some(folio) = self.put_run(lists, head, run) {
                        return Some(folio);
                    }
                }
                None
            });
            if let Some(folio) = discard {
                self.discard(folio);
            }
        }
    }
}
