//! Callback heads: the intrusive [`RcuHead`], its claim and queue link, and
//! heads placed in a frozen frame's own descriptor ([`Rcu::call_rcu_frame`],
//! P5's way of freeing page-table frames without a heap).
//!
//! This is the one file of `rcu` with `unsafe`: the link is a raw pointer
//! between heads, the callback a plain cell, and a frame's head is written
//! into its descriptor's owner words and the frozen folio restored from it.
//!
//! A head is 32 bytes in production (the four owner words): the tag, the
//! link and the callback (a `&dyn`, two words). The link doubles as the
//! claim, so no per-head lock is needed:
//!
//! | `next` | meaning |
//! |---|---|
//! | null | not queued: free to claim |
//! | the head itself | claimed; the last of its segment (or not pushed yet) |
//! | another head | claimed; that head follows it in its segment |

use super::{Rcu, RcuError};
use crate::buddy::{FrozenFolio, Node};
use crate::memmap::{Pfn, RCU_HEAD_ALIGN, RCU_HEAD_BYTES};
use crate::sync::{AtomicPtr, AtomicU64, Ordering, UnsafeCell};
use core::ptr;

/// What runs after a grace period: it receives the head, and with it the
/// ownership of the object the head is embedded in. `&self` is the
/// callback's context (where to put the object back, a counter); a plain
/// `fn(&RcuHead)` or a closure is one too.
pub trait RcuCallback<'a>: Sync {
    /// Runs the deferred work for `head`, once, after its grace period.
    fn invoke(&self, head: &'a RcuHead<'a>);
}

impl<'a, F: Fn(&'a RcuHead<'a>) + Sync> RcuCallback<'a> for F {
    fn invoke(&self, head: &'a RcuHead<'a>) {
        self(head);
    }
}

/// The intrusive head of a deferred callback: embed one in each object to
/// be freed after a grace period; no allocation happens on `call_rcu`.
///
/// A head is queued at most once at a time (a second `call_rcu` before its
/// callback ran is refused); the callback may queue it again. Every field
/// is interior-mutable, so a head may live in memory that its callback's
/// work overwrites (a frame's owner words, reused by the free lists).
pub struct RcuHead<'a> {
    /// The caller's word (a pfn for a frame head). An atomic only so that
    /// every byte of the head is interior-mutable (see above).
    tag: AtomicU64,
    /// The claim and queue link: see the module's table. Written by the
    /// claimer (null to self), under the queue lock (self to the next
    /// head), and by the one poller that detached the segment (to null).
    next: AtomicPtr<RcuHead<'a>>,
    /// The callback: written by the claimer after its claim, read by the
    /// poller that detached the head's segment before it unclaims.
    func: UnsafeCell<Option<&'a dyn RcuCallback<'a>>>,
}

// The bar of P5: a head fits in a descriptor's owner words, so a frame can
// carry its own.
#[cfg(not(memdesc_loom))]
const _: () = assert!(core::mem::size_of::<RcuHead<'static>>() <= 32);
// Under the model the head lives in a side storage: it must fit there too.
const _: () = assert!(core::mem::size_of::<RcuHead<'static>>() <= RCU_HEAD_BYTES);
const _: () = assert!(core::mem::align_of::<RcuHead<'static>>() <= RCU_HEAD_ALIGN);

// SAFETY: `tag` and `next` are atomics. `func` is a plain cell, written only
// by the thread whose claim (the CAS of `next` from null) succeeded, before
// it queues the head under the queue lock, and read only by the one poller
// that detached the head's segment under that lock (or by the claimer
// itself, RCU.10), before the Release store of null that ends the claim;
// the next claimer's Acquire CAS orders its write after that read. So no
// two threads access `func` concurrently. The callback itself is `Sync`.
unsafe impl Sync for RcuHead<'_> {}

impl core::fmt::Debug for RcuHead<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RcuHead").field("tag", &self.tag()).finish()
    }
}

impl<'a> RcuHead<'a> {
    /// Creates an unqueued head carrying `tag`, a word for the callback
    /// (a pfn, an index into the caller's table).
    pub fn new(tag: u64) -> Self {
        Self { tag: AtomicU64::new(tag), next: AtomicPtr::new(ptr::null_mut()), func: UnsafeCell::new(None) }
    }

    /// The word given to [`RcuHead::new`].
    pub fn tag(&self) -> u64 {
        // Relaxed: written at construction, before the head was shared.
        self.tag.load(Ordering::Relaxed)
    }

    /// This head as a link value.
    fn as_link(&'a self) -> *mut RcuHead<'a> {
        ptr::from_ref(self).cast_mut()
    }

    /// Claims the head for `func` (RCU.7); `false` if it is queued already.
    pub(super) fn claim(&'a self, func: &'a dyn RcuCallback<'a>) -> bool {
        // RCU.7. Acquire: pairs with the Release store of `release`: the
        // previous run's read of `func` happens before the write below.
        // Relaxed: on failure nothing is touched.
        let claimed = self.next.compare_exchange(ptr::null_mut(), self.as_link(), Ordering::Acquire, Ordering::Relaxed);
        if claimed.is_err() {
            return false;
        }
        // SAFETY: the claim makes this thread the only one touching `func`
        // until the head is queued under the queue lock (see the Sync impl).
        self.func.with_mut(|f| unsafe { *f = Some(func) });
        true
    }

    /// Links `next` after this head, the last of its segment.
    ///
    /// Called under the lock of the queue holding both.
    pub(super) fn link(&self, next: &'a RcuHead<'a>) {
        // Relaxed: written and later read (by the poller that detaches the
        // segment) under the queue lock, which orders them.
        self.next.store(next.as_link(), Ordering::Relaxed);
    }

    /// Ends the claim, returning the callback and the head that followed
    /// this one in its segment (`None` for the last).
    ///
    /// Called by the one thread that may run the head: the poller that
    /// detached its segment under the queue lock, or the claimer that could
    /// not queue it (RCU.10). Nothing of the head is read after it.
    pub(super) fn release(&'a self) -> (Option<&'a dyn RcuCallback<'a>>, Option<&'a RcuHead<'a>>) {
        // Relaxed: written under the queue lock before the segment was
        // detached under it (or by this thread, RCU.10).
        let next = self.next.load(Ordering::Relaxed);
        // SAFETY: this thread is the one allowed to run the head (the
        // caller's duty above), and the claim still holds, so no other
        // thread accesses `func` (see the Sync impl).
        let func = self.func.with_mut(|f| unsafe { (*f).take() });
        // RCU.8. Release: pairs with the Acquire CAS of the next `claim`:
        // the reads above happen before a new claimer writes the head.
        self.next.store(ptr::null_mut(), Ordering::Release);
        let next = if ptr::eq(next, self.as_link()) || next.is_null() {
            None
        } else {
            // SAFETY: every link other than null and the head itself was
            // stored by `link` from a `&'a RcuHead<'a>`, so it points to a
            // head that lives for `'a`.
            Some(unsafe { &*next })
        };
        (func, next)
    }
}

/// A callback for [`Rcu::call_rcu_frame`]: receives the frozen folio back
/// after the grace period, and with it exclusive ownership (dropping it
/// frees the frames). A closure `Fn(FrozenFolio)` is one.
pub trait FrameCallback<'n>: Sync {
    /// Runs once, after the grace period, with the folio back. Its head
    /// descriptor's owner words hold unspecified values (the spent head).
    fn invoke(&self, folio: FrozenFolio<'n>);
}

impl<'n, F: Fn(FrozenFolio<'n>) + Sync> FrameCallback<'n> for F {
    fn invoke(&self, folio: FrozenFolio<'n>) {
        self(folio);
    }
}

/// Where [`Rcu::call_rcu_frame`] returns frames after their grace period:
/// the node that owns them and the callback that receives them. Lives as
/// long as any frame queued with it (a field of the address space, a
/// static).
///
/// # Examples
/// Free a page-table frame once no lockless walker can still read it (P5).
///
/// ```
/// use memdesc::{FrameReturn, FrozenFolio, Gfp, MemoryLayout, Node, NodeConfig, Order, PageType};
/// use memdesc::{PhysAddr, PhysRange, Rcu, RcuConfig, SpinPlatform, PAGE_SIZE};
///
/// #[repr(C, align(4096))]
/// struct Frame([u8; PAGE_SIZE]);
/// let mut frames: Vec<Frame> = (0..256).map(|_| Frame([0; PAGE_SIZE])).collect();
/// // SAFETY: one live, exclusively borrowed allocation of 256 frames.
/// let memory = unsafe { std::slice::from_raw_parts_mut(frames.as_mut_ptr().cast::<u8>(), 256 * PAGE_SIZE) };
/// let ram = [PhysRange::new(0, 256 * PAGE_SIZE as u64)];
/// let layout = MemoryLayout { ram: &ram, reserved: &[] };
/// let node = Node::boot(memory, PhysAddr(0), &layout, NodeConfig::default(), &SpinPlatform)
///     .map_err(memdesc::BootFailed::into_error)?;
///
/// // The callback owns the frame again: dropping it frees it.
/// let free = |table: FrozenFolio<'_>| drop(table);
/// let tables = FrameReturn::new(node, &free);
/// let rcu = Rcu::new(&SpinPlatform, RcuConfig::default())?;
///
/// let table = node.alloc_frozen(Order::ZERO, Gfp::KERNEL.zeroed().typed(PageType::PageTable))?;
/// let walker = rcu.read_lock(); // a lockless walk that may still read the table
/// // ... the table is unlinked from its parent entry ...
/// rcu.call_rcu_frame(table, &tables).map_err(|(_, e)| e)?;
/// rcu.poll();
/// assert_eq!(node.audit().allocated, 1, "freed under the walker");
/// drop(walker);
/// rcu.barrier();
/// assert_eq!(node.audit().allocated, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FrameReturn<'n, C: FrameCallback<'n>> {
    /// Private, so that only `call_rcu_frame` can queue a head with it: its
    /// `invoke` trusts the head to name a frozen folio of `node`.
    invoker: FrameInvoker<'n, C>,
}

struct FrameInvoker<'n, C> {
    node: &'n Node<'n>,
    callback: C,
}

impl<'n, C: FrameCallback<'n>> core::fmt::Debug for FrameReturn<'n, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameReturn").field("node", &ptr::from_ref(self.invoker.node)).finish_non_exhaustive()
    }
}

impl<'n, C: FrameCallback<'n>> FrameReturn<'n, C> {
    /// Frames of `node` go to `callback` after their grace period (a
    /// closure, a reference to one, or a type of the caller's that counts
    /// what it frees).
    pub const fn new(node: &'n Node<'n>, callback: C) -> Self {
        Self { invoker: FrameInvoker { node, callback } }
    }

    /// The node whose frames this takes.
    pub fn node(&self) -> &'n Node<'n> {
        self.invoker.node
    }

    /// The callback.
    pub fn callback(&self) -> &C {
        &self.invoker.callback
    }
}

impl<'a, 'n: 'a, C: FrameCallback<'n>> RcuCallback<'a> for FrameInvoker<'n, C> {
    fn invoke(&self, head: &'a RcuHead<'a>) {
        let page = self.node.memmap().page_of(Pfn(head.tag()));
        // Only `call_rcu_frame` queues a head with this invoker (the field
        // is private), after giving up the handle of the frozen folio of
        // `self.node` (checked there) headed at the pfn it wrote as the tag;
        // the head runs once per queueing (the claim).
        // SAFETY: duty 1 of from_owned: so the handle is restored once.
        let folio = unsafe { crate::folio::FrozenFolio::from_owned(self.node, page) };
        self.callback.invoke(folio);
    }
}

impl<'a> Rcu<'a> {
    /// Hands `folio` to `to`'s callback after a grace period (P5: a
    /// page-table frame unlinked from its parent entry is freed only once
    /// no lockless walker can still be reading it). The RCU head is written
    /// into the folio's own head descriptor (its owner words, which a frozen
    /// folio's owner has to itself), so nothing is allocated; the owner
    /// words' previous values are lost.
    ///
    /// Runs the callback as [`Rcu::call_rcu`] does: on whichever thread
    /// polls the queue after the grace period, or at once after waiting for
    /// a grace period here if the queue is full (RCU.10).
    ///
    /// # Errors
    /// [`RcuError::ForeignFolio`], with the folio back untouched, if it does
    /// not belong to `to`'s node.
    pub fn call_rcu_frame<'n: 'a, C: FrameCallback<'n>>(
        &self,
        folio: FrozenFolio<'n>,
        to: &'a FrameReturn<'n, C>,
    ) -> Result<(), (FrozenFolio<'n>, RcuError)> {
        if !ptr::eq(folio.owner(), to.invoker.node) {
            return Err((folio, RcuError::ForeignFolio));
        }
        let storage = folio.head().rcu_head_storage().cast::<RcuHead<'a>>();
        let pfn = folio.into_raw();
        // Duties of rcu_head_storage: (1) the folio is frozen and its handle
        // given up above, restored only by the invoker after the head has
        // run (or never, which leaks the frame but touches nothing), so this
        // head is the only user of the storage; (2) the head fits
        // (compile-time checks above) and is all atomics and cells; (3) it
        // is written before the reference is made. The storage is aligned
        // for it (checked above) and lives as long as the memory map.
        // SAFETY: (1)-(3) above; `'n: 'a`.
        let head: &'a RcuHead<'a> = unsafe {
            storage.write(RcuHead::new(pfn.0));
            &*storage
        };
        // Mutant (P5): the frame handed back at once, without a grace
        // period, so a walker still in its read section reads a frame that
        // its next owner writes.
        if cfg!(memdesc_mutant = "rcu_frame_free_without_gp") {
            RcuCallback::invoke(&to.invoker, head);
            return Ok(());
        }
        let claimed = head.claim(&to.invoker);
        // A head just written is not queued: the claim cannot fail.
        debug_assert!(claimed, "a fresh frame head was already claimed");
        self.enqueue(head, &to.invoker);
        Ok(())
    }
}
