//! Deferred callbacks: `call_rcu`, the per-CPU queues, polling and the
//! barrier (RCU.7–RCU.10).
//!
//! A queue is a FIFO of intrusive [`RcuHead`]s in two segments: `next`
//! (queued, no grace period yet) and `wait` (waiting for GP `wait_gp`).
//! Polling runs `wait` once its GP is over and then moves `next` into
//! `wait` under a new GP. One poller at a time runs a queue's callbacks
//! (`invoking`), and counts them only after the whole segment has run, so
//! "`invoked` reached the `queued` count seen earlier" means every callback
//! queued before has run: what the barrier waits for.

use super::{Rcu, RcuCallback, RcuError, RcuHead};
use crate::buddy::MAX_CPUS;
use crate::sync::{AtomicU64, Ordering, SpinLock};

/// A FIFO run of queued heads.
#[derive(Default)]
struct Segment<'a> {
    first: Option<&'a RcuHead<'a>>,
    last: Option<&'a RcuHead<'a>>,
    len: u64,
}

impl<'a> Segment<'a> {
    fn push(&mut self, head: &'a RcuHead<'a>) {
        match self.last {
            Some(last) => last.link(head),
            None => self.first = Some(head),
        }
        self.last = Some(head);
        self.len += 1;
    }
}

#[derive(Default)]
struct QueueState<'a> {
    next: Segment<'a>,
    wait: Segment<'a>,
    wait_gp: u64,
    /// A poller is running a detached segment; others leave the queue's
    /// callbacks alone until it has counted them.
    invoking: bool,
}

/// One CPU's callbacks (or the non-CPU threads').
///
/// The counts are read without the lock: by the
/// barrier, and by pollers that skip a queue with nothing to do (the
/// common case of [`Rcu::quiescent`]) without taking its lock.
pub(super) struct CallbackQueue<'a> {
    state: SpinLock<QueueState<'a>>,
    /// Callbacks queued so far; written under the lock.
    queued: AtomicU64,
    /// Callbacks run so far, counted a whole segment at a time once it has
    /// run, by the one poller running it (`invoking`).
    invoked: AtomicU64,
}

impl CallbackQueue<'_> {
    pub(super) fn new() -> Self {
        Self { state: SpinLock::new(QueueState::default()), queued: AtomicU64::new(0), invoked: AtomicU64::new(0) }
    }

    /// Callbacks queued and invoked so far. A caller that queued a callback
    /// (or saw it queued) before sees it counted, by coherence; the invoked
    /// callbacks' effects happen before the caller's next step.
    pub(super) fn counts(&self) -> (u64, u64) {
        // Relaxed: what the caller needs is coherence (a queueing that
        // happened before this load is seen); nothing is read through it.
        let queued = self.queued.load(Ordering::Relaxed);
        // RCU.9. Acquire: pairs with the Release store of poll_queue after a
        // segment ran, so its callbacks' effects happen before the caller's
        // next step (the barrier's return).
        let invoked = self.invoked.load(Ordering::Acquire);
        (queued, invoked)
    }
}

impl<'a> Rcu<'a> {
    /// The queue of this thread: its CPU's, or the non-CPU threads'.
    fn queue_index(&self) -> usize {
        self.this_cpu().map_or(MAX_CPUS, |cpu| cpu.cpu().index())
    }

    /// The queues in use: one per CPU, then the non-CPU threads'.
    fn queue_indices(&self) -> impl Iterator<Item = usize> {
        (0..self.nr_cpus).chain(core::iter::once(MAX_CPUS))
    }

    /// Runs `func(head)` after a grace period: after every read section
    /// open now has ended (RCU.7). The caller unpublishes the object first.
    ///
    /// The callback runs on whichever thread polls this queue once the GP is
    /// over: [`Rcu::quiescent`] on this CPU, [`Rcu::poll`] or
    /// [`Rcu::barrier`]. If the queue already holds `max_pending`
    /// callbacks, this call waits for a grace period itself
    /// ([`Rcu::synchronize`]) and runs `func` before returning (RCU.10), so
    /// it must then not be inside a read section.
    ///
    /// # Errors
    /// [`RcuError::AlreadyQueued`] if `head` is queued and its callback has
    /// not run; nothing changes.
    pub fn call_rcu(&self, head: &'a RcuHead<'a>, func: &'a dyn RcuCallback<'a>) -> Result<(), RcuError> {
        if !head.claim(func) {
            return Err(RcuError::AlreadyQueued);
        }
        self.enqueue(head, func);
        Ok(())
    }

    /// Queues a claimed head on this thread's queue (RCU.7), or runs it
    /// after a grace period here if the queue is full (RCU.10).
    pub(super) fn enqueue(&self, head: &'a RcuHead<'a>, func: &'a dyn RcuCallback<'a>) {
        let queue = &self.queues[self.queue_index()];
        // RCU.7: queued under the queue lock (L.4), which the poller that
        // starts this segment's GP (RCU.3) takes after: the caller's
        // unpublish happens before that GP starts.
        let queued = queue.state.lock().with(|q| {
            // Relaxed: `queued` is written only under this lock; `invoked`
            // may lag (a segment still being counted), which only makes the
            // bound stricter.
            let (queued, invoked) = (queue.queued.load(Ordering::Relaxed), queue.invoked.load(Ordering::Relaxed));
            if queued - invoked >= self.config.max_pending {
                return false;
            }
            q.next.push(head);
            // Relaxed: written under the lock; lock-free readers need only
            // coherence (see counts).
            queue.queued.store(queued + 1, Ordering::Relaxed);
            true
        });
        if !queued {
            // RCU.10: the queue is full; wait here instead of growing it.
            let _ = head.release();
            // Relaxed: a statistic.
            self.synchronous.fetch_add(1, Ordering::Relaxed);
            self.synchronize();
            func.invoke(head);
        }
    }

    /// Advances every queue: runs the callbacks whose grace period is over
    /// and starts one for those queued since. For hosts with no CPU that
    /// reports quiescent states (or a timer on one that does).
    pub fn poll(&self) {
        for index in self.queue_indices() {
            self.poll_queue(index);
        }
    }

    /// Waits until every callback queued (on any CPU) before the call has
    /// run (RCU.9), polling the queues meanwhile. Returns at once if none is
    /// pending. Must not be called inside a read section or a callback.
    pub fn barrier(&self) {
        let mut targets = [0; MAX_CPUS + 1];
        for index in self.queue_indices() {
            targets[index] = self.queues[index].counts().0;
        }
        loop {
            let mut done = true;
            for index in self.queue_indices() {
                self.poll_queue(index);
                if self.queues[index].counts().1 < targets[index] {
                    done = false;
                }
            }
            if done {
                return;
            }
            self.platform.relax();
        }
    }

    /// One step of queue `index` (RCU.8): if its `wait` segment's GP is
    /// over, detach and run it; if `wait` is then empty, move `next` into it
    /// under a new GP.
    pub(super) fn poll_queue(&self, index: usize) {
        let queue = &self.queues[index];
        let (queued, invoked) = queue.counts();
        if queued == invoked {
            // Nothing queued, as far as this thread has seen: a callback
            // queued concurrently waits for the next poll.
            return;
        }
        let ready = queue.state.lock().with(|q| {
            let mut ready = None;
            // Mutant: the callbacks run without waiting for their GP.
            let before_gp = cfg!(memdesc_mutant = "rcu_callback_before_gp");
            if !q.invoking && q.wait.len > 0 && (before_gp || self.gp_done(q.wait_gp)) {
                ready = Some(core::mem::take(&mut q.wait));
                q.invoking = true;
            }
            if q.wait.len == 0 && q.next.len > 0 {
                q.wait = core::mem::take(&mut q.next);
                q.wait_gp = self.start_gp();
            }
            ready
        });
        let Some(segment) = ready else { return };
        let mut cursor = segment.first;
        while let Some(head) = cursor {
            // End the claim before the call: the callback owns the head and
            // may queue it again (or free the memory it lives in).
            let (func, next) = head.release();
            cursor = next;
            if let Some(func) = func {
                func.invoke(head);
            }
        }
        // Relaxed: only the invoker (one at a time: `invoking`, set and
        // cleared under the lock, orders successive invokers) writes it.
        let invoked = queue.invoked.load(Ordering::Relaxed);
        // RCU.9. Release: pairs with the Acquire load in counts (the
        // barrier): the segment's callbacks ran before. Stored before the
        // lock is taken again, so a barrier waiting on this count never
        // waits for this queue's lock.
        queue.invoked.store(invoked + segment.len, Ordering::Release);
        queue.state.lock().with(|q| q.invoking = false);
    }
}
