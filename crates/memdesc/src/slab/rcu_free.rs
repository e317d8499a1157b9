//! Frees after a grace period: TYPESAFE_BY_RCU slab frames and kfree_rcu
//! batches, both queued with [`Rcu::call_rcu_frame`](crate::rcu::Rcu::call_rcu_frame) (the RCU head in the
//! frame's owner words, overlapping the slab state: P7) and taken back by
//! [`SlabFreer`].
//!
//! A kfree_rcu batch is a frozen Kernel frame (order 0): word 0 the count,
//! then the pointers. One batch fills at a time per allocator, under a
//! lock; a full batch (or `kfree_rcu_flush`) is queued, and after the grace
//! period the freer kfree's every pointer through the allocator it is
//! attached to.

use super::{SlabAllocator, SlabCore, SlabError, SlabEvent};
use crate::buddy::{FrozenFolio, Gfp, Node};
use crate::folio::{Order, PageType};
use crate::rcu::{FrameCallback, FrameReturn};
use crate::sync::{AtomicPtr, Ordering, StatWord};
use core::ptr::NonNull;

/// Pointers per kfree_rcu batch frame (word 0 holds the count).
#[cfg(not(memdesc_loom))]
pub(crate) const BATCH_CAP: usize = crate::memmap::PAGE_SIZE / 8 - 1;
#[cfg(memdesc_loom)]
pub(crate) const BATCH_CAP: usize = 2;

/// The batch being filled.
pub(crate) struct Batch<'a> {
    folio: FrozenFolio<'a>,
    len: usize,
}

/// Where TYPESAFE_BY_RCU slab frames and kfree_rcu batches go after their
/// grace period: [`Rcu::call_rcu_frame`](crate::rcu::Rcu::call_rcu_frame)'s return address for them.
pub type SlabReturn<'n> = FrameReturn<'n, SlabFreer<'n>>;

/// Takes slab frames and kfree_rcu batches back after their grace period
/// (frees the frames; kfree's a batch's pointers first), counting them.
/// Created by the embedder ([`SlabAllocator::slab_return`]) before its
/// [`Rcu`](crate::rcu::Rcu), so it outlives every queued frame.
pub struct SlabFreer<'n> {
    rcu_freed: StatWord,
    batches_run: StatWord,
    /// The allocator core whose pointers batches hold, or null: attached by
    /// `SlabAllocator::new`, detached by its drop after its last batch ran.
    core: AtomicPtr<u8>,
    node: &'n Node<'n>,
    /// Under the model, one cell per frame standing in for the frame's
    /// contents: TYPESAFE_BY_RCU readers read a slab's cell inside their
    /// section, and the frame's next life writes it when the slab is given
    /// back, so a slab freed under a reader is a data race loom reports.
    #[cfg(memdesc_loom)]
    frames: std::boxed::Box<[crate::sync::UnsafeCell<u64>]>,
}

// SAFETY: under the model, the cells are the model's stand-in for frame
// contents: each access is the model's claim that its thread may make it,
// which loom checks. Outside the model the freer holds only atomics and a
// shared reference.
#[cfg(memdesc_loom)]
unsafe impl Sync for SlabFreer<'_> {}

impl core::fmt::Debug for SlabFreer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SlabFreer").field("rcu_freed", &self.rcu_freed()).finish_non_exhaustive()
    }
}

impl<'n> SlabFreer<'n> {
    /// A freer for `node`'s frames.
    pub fn new(node: &'n Node<'n>) -> Self {
        Self {
            rcu_freed: StatWord::new(0),
            batches_run: StatWord::new(0),
            core: AtomicPtr::new(core::ptr::null_mut()),
            node,
            #[cfg(memdesc_loom)]
            frames: (0..node.memmap().nr_pages()).map(|_| crate::sync::UnsafeCell::new(0)).collect(),
        }
    }

    /// Marks the start of frame `pfn`'s next life (it goes back to the
    /// buddy allocator): under the model, writes its contents cell.
    #[inline]
    pub(crate) fn retire(&self, pfn: crate::memmap::Pfn) {
        #[cfg(memdesc_loom)]
        // SAFETY: the model's claim that no reader still reads the frame;
        // loom checks it and reports a race if not.
        self.frames[(pfn.0 - self.node.memmap().base_pfn().0) as usize].with_mut(|cell| unsafe { *cell = pfn.0 });
        let _ = pfn;
    }

    /// A read of slab frame `pfn`'s contents, under the model (a
    /// TYPESAFE_BY_RCU reader's access to an object).
    #[cfg(all(test, memdesc_loom))]
    pub(crate) fn touch(&self, pfn: crate::memmap::Pfn) {
        // SAFETY: the model's claim that the frame is not reused under this
        // read; loom checks it.
        self.frames[(pfn.0 - self.node.memmap().base_pfn().0) as usize]
            .with(|cell| unsafe { core::ptr::read_volatile(cell) });
    }

    /// The node.
    pub fn node(&self) -> &'n Node<'n> {
        self.node
    }

    /// Slab frames freed after a grace period so far.
    pub fn rcu_freed(&self) -> u64 {
        // Relaxed: a statistic.
        self.rcu_freed.load(Ordering::Relaxed)
    }

    /// kfree_rcu batches run so far.
    pub fn batches_run(&self) -> u64 {
        // Relaxed: a statistic.
        self.batches_run.load(Ordering::Relaxed)
    }

    pub(crate) fn attach(&self, core: NonNull<u8>) {
        // Release: pairs with the Acquire load in invoke: a batch callback
        // that finds the core sees it initialised.
        self.core.store(core.as_ptr(), Ordering::Release);
    }

    pub(crate) fn detach(&self) {
        // Relaxed: the allocator's drop ran every batch (barrier) before;
        // a later batch cannot exist.
        self.core.store(core::ptr::null_mut(), Ordering::Relaxed);
    }
}

impl<'n> FrameCallback<'n> for SlabFreer<'n> {
    fn invoke(&self, folio: FrozenFolio<'n>) {
        if let PageType::Slab { .. } = folio.page_type() {
            // Relaxed: a statistic.
            self.rcu_freed.fetch_add(1, Ordering::Relaxed);
            self.retire(folio.pfn());
            drop(folio);
            return;
        }
        // Acquire: pairs with the Release store of attach.
        let core = self.core.load(Ordering::Acquire).cast::<SlabCore<'n>>();
        if !core.is_null() {
            // SAFETY: the attached core lives until the allocator's drop,
            // which runs every queued batch (rcu barrier) before detaching
            // and freeing it; a batch's frame was queued by that allocator.
            let core = unsafe { &*core };
            let bytes = folio.bytes();
            let word = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
                u64::from_ne_bytes(w) as usize
            };
            let len = word(0).min(BATCH_CAP);
            for i in 0..len {
                // A pointer checked when it was queued; an error here means
                // the caller freed it meanwhile, which the lookup reports.
                let _ = core.kfree_addr(word(i + 1));
            }
        }
        // Relaxed: a statistic.
        self.batches_run.fetch_add(1, Ordering::Relaxed);
        drop(folio);
    }
}

impl<'a> SlabCore<'a> {
    /// `kfree_rcu` of `addr` (see [`SlabAllocator::kfree_rcu`]).
    pub(crate) fn kfree_rcu(&self, addr: usize) -> Result<(), SlabError> {
        self.lookup(addr)?;
        self.count(SlabEvent::KfreeRcu, 1);
        let full = self.batch.lock().with(|slot| {
            if slot.is_none() {
                let folio = self.node.alloc_frozen(Order::ZERO, Gfp::KERNEL).ok()?;
                *slot = Some(Batch { folio, len: 0 });
            }
            let batch = slot.as_mut()?;
            let at = (batch.len + 1) * 8;
            batch.folio.bytes_mut()[at..at + 8].copy_from_slice(&(addr as u64).to_ne_bytes());
            batch.len += 1;
            Some(if batch.len == BATCH_CAP { slot.take() } else { None })
        });
        match full {
            None => {
                self.rcu.synchronize();
                self.kfree_addr(addr)
            }
            Some(Some(batch)) => {
                self.submit(batch);
                Ok(())
            }
            Some(None) => Ok(()),
        }
    }

    fn submit(&self, batch: Batch<'a>) {
        let Batch { mut folio, len } = batch;
        folio.bytes_mut()[..8].copy_from_slice(&(len as u64).to_ne_bytes());
        self.count(SlabEvent::KfreeRcuBatches, 1);
        // A batch frame is this node's (checked in `SlabAllocator::new`):
        // the only error cannot happen.
        let _ = self.rcu.call_rcu_frame(folio, self.ret);
    }
}

impl<'a> SlabAllocator<'a> {
    /// Frees `ptr` (as [`SlabAllocator::kfree`]) after a grace period:
    /// readers inside an RCU read section now may still read it. Pointers
    /// are batched in a frame; if no frame can be had, waits for a grace
    /// period here (so must not be called inside a read section then).
    ///
    /// # Errors
    /// As [`SlabAllocator::kfree`]'s lookup, checked now; nothing is queued.
    ///
    /// # Safety
    /// As [`SlabAllocator::kfree`]: the caller gives `ptr` up.
    pub unsafe fn kfree_rcu(&self, ptr: NonNull<u8>) -> Result<(), SlabError> {
        self.core().kfree_rcu(ptr.as_ptr() as usize)
    }

    /// Queues the batch being filled (its grace period starts now).
    pub fn kfree_rcu_flush(&self) {
        let core = self.core();
        if let Some(batch) = core.batch.lock().with(|slot| slot.take()) {
            core.submit(batch);
        }
    }

    /// Queues the batch being filled and waits until every kfree_rcu and
    /// every TYPESAFE_BY_RCU slab queued before has been freed. Must not be
    /// called inside a read section.
    pub fn rcu_barrier(&self) {
        self.kfree_rcu_flush();
        self.core().rcu.barrier();
    }
}
