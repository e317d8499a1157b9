//! Slab churn: slab CPUs allocate objects of several caches and kmalloc
//! allocations of 8 B to 8 KiB, stamp every object (CPU, sequence) and
//! check the stamp before every free, free some locally, some after a
//! grace period (`kfree_rcu`) and hand some to another slab CPU to free
//! (remote frees, through a channel), shrink caches now and then, and
//! publish objects of the TYPESAFE_BY_RCU identity cache ([`identity`])
//! into a table of [`Slots`] that lockless readers ([`reader`]) look up
//! inside RCU read sections.
//!
//! Every CPU reports an RCU quiescent state between batches (as the
//! allocator CPUs do) and goes idle when it stops. At the deadline each
//! CPU frees what it holds, then frees what the others still send it until
//! every sender is gone.

pub(crate) mod caches;
mod identity;
pub(crate) mod reader;
mod slots;

pub(crate) use slots::Slots;

use crate::rng::Rng;
use crate::violations::Violations;
use caches::{
    Caches, Kind, Object, CACHES, IDENTITY, KMALLOC, KMALLOC_LARGE_PER_MILLE, KMALLOC_LARGE_SIZES, KMALLOC_SIZES,
    WEIGHTS,
};
use memdesc::slab::SlabInfo;
use memdesc::{CpuId, Rcu};
use serde::Serialize;
use std::ops::AddAssign;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// Operations per batch, between quiescent states.
const BATCH: usize = 64;
/// Objects a slab CPU keeps live, on average.
const LIVE_TARGET: usize = 2048;
// Chances per free, per mille.
const REMOTE_PER_MILLE: u64 = 300;
const KFREE_RCU_PER_MILLE: u64 = 50;
// Chances per batch, per mille.
const SHRINK_PER_MILLE: u64 = 10;
const SHRINK_IDENTITY_PER_MILLE: u64 = 30;
const RETIRE_ALL_PER_MILLE: u64 = 10;
/// Identity objects retired and published again per batch.
const REPUBLISH: usize = 2;

/// What the slab CPUs and readers did, summed over them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SlabStats {
    /// Objects allocated (kmalloc included).
    pub allocs: u64,
    /// Of them, kmalloc allocations.
    pub kmallocs: u64,
    /// Allocations refused for lack of memory (expected beside the
    /// allocator CPUs' pressure phases, not a violation).
    pub alloc_failures: u64,
    /// Objects freed by the CPU that allocated them.
    pub local_frees: u64,
    /// Objects freed after a grace period (`kfree_rcu`), counted in the
    /// local or remote frees too.
    pub kfree_rcu: u64,
    /// Objects handed to another slab CPU to free.
    pub remote_frees_sent: u64,
    /// Objects freed for another slab CPU (each checked first).
    pub remote_frees: u64,
    /// Stamps checked before a free.
    pub stamps_checked: u64,
    /// Constructor-cache objects checked for their constructed pattern at
    /// allocation.
    pub ctor_checked: u64,
    /// `shrink` calls, and the slabs they gave back.
    pub shrinks: u64,
    /// Slabs the shrinks gave back.
    pub slabs_shrunk: u64,
    /// Identity objects published to the readers.
    pub published: u64,
    /// Times a retiring owner found readers holding references to its
    /// object and waited.
    pub retire_waits: u64,
    /// Reader lookups of a published slot (inside a read section).
    pub reader_lookups: u64,
    /// Lookups that took the object's reference and revalidated its
    /// identity (then checked its payload).
    pub reader_hits: u64,
    /// Lookups whose object was retired, or freed and reused, meanwhile:
    /// no reference, or the wrong identity (expected).
    pub reader_misses: u64,
    /// Lookups that found the object's slab already off its cache's lists,
    /// on its way back through RCU (still a slab frame, as it must be).
    pub reader_unlisted: u64,
    /// The most objects one slab CPU held at once.
    pub peak_live: u64,
}

impl SlabStats {
    /// Allocations plus frees (progress reports).
    pub fn ops(&self) -> u64 {
        self.allocs + self.local_frees + self.remote_frees
    }
}

impl AddAssign<&SlabStats> for SlabStats {
    fn add_assign(&mut self, o: &SlabStats) {
        self.allocs += o.allocs;
        self.kmallocs += o.kmallocs;
        self.kfree_rcu += o.kfree_rcu;
        self.retire_waits += o.retire_waits;
        self.alloc_failures += o.alloc_failures;
        self.local_frees += o.local_frees;
        self.remote_frees_sent += o.remote_frees_sent;
        self.remote_frees += o.remote_frees;
        self.stamps_checked += o.stamps_checked;
        self.ctor_checked += o.ctor_checked;
        self.shrinks += o.shrinks;
        self.slabs_shrunk += o.slabs_shrunk;
        self.published += o.published;
        self.reader_lookups += o.reader_lookups;
        self.reader_hits += o.reader_hits;
        self.reader_misses += o.reader_misses;
        self.reader_unlisted += o.reader_unlisted;
        self.peak_live = self.peak_live.max(o.peak_live);
    }
}

/// An object in flight to the CPU that frees it.
pub(crate) struct Remote<'c, 'a>(Live<'c, 'a>);

/// What a slab CPU is given.
pub(crate) struct SlabContext<'c, 'a> {
    /// The caches.
    pub(crate) caches: &'c Caches<'c, 'a>,
    /// The published identity objects.
    pub(crate) slots: &'c Slots,
    /// The machine's RCU.
    pub(crate) rcu: &'c Rcu<'a>,
    /// This CPU (the thread is bound to it).
    pub(crate) cpu: u32,
    /// This CPU's index among the slab CPUs (its slots are those `i` with
    /// `i % nr_slab_cpus == index`).
    pub(crate) index: usize,
    /// Slab CPUs in all.
    pub(crate) nr_slab_cpus: usize,
    /// The run's seed.
    pub(crate) seed: u64,
    /// When to stop.
    pub(crate) deadline: Instant,
    /// Set to stop early.
    pub(crate) interrupt: &'c AtomicBool,
    /// Where to publish the ops so far.
    pub(crate) ops: &'c AtomicU64,
    /// Senders to the other slab CPUs (none to itself).
    pub(crate) peers: Vec<Sender<Remote<'c, 'a>>>,
    /// This CPU's inbox.
    pub(crate) inbox: Receiver<Remote<'c, 'a>>,
}

/// What a slab CPU hands back.
pub(crate) struct SlabResult {
    pub(crate) stats: SlabStats,
    pub(crate) violations: Violations,
    /// The slabinfo lines as the run ended, before teardown (slab CPU 0
    /// takes them).
    pub(crate) slabinfo: Option<Vec<SlabInfo>>,
}

/// A live object: its handle, where it came from (a cache index or
/// [`KMALLOC`]) and its stamp.
struct Live<'c, 'a> {
    obj: Object<'c, 'a>,
    source: usize,
    stamp: u64,
}

impl Live<'_, '_> {
    fn name(&self) -> &'static str {
        CACHES.get(self.source).map_or("kmalloc", |c| c.0)
    }
}

struct SlabCpu<'c, 'a> {
    ctx: SlabContext<'c, 'a>,
    rng: Rng,
    seq: u64,
    live: Vec<Live<'c, 'a>>,
    /// The identity objects this CPU published, by slot.
    published: Vec<Option<Live<'c, 'a>>>,
    stats: SlabStats,
    violations: Violations,
}

/// Runs a slab CPU until the deadline or the interrupt, then frees
/// everything it holds and everything sent to it.
pub(crate) fn run<'c, 'a>(ctx: SlabContext<'c, 'a>) -> SlabResult {
    let rng = Rng::stream(ctx.seed ^ 0x51AB, u64::from(ctx.cpu));
    let published = (0..ctx.slots.len()).map(|_| None).collect();
    let mut cpu = SlabCpu {
        ctx,
        rng,
        seq: 0,
        live: Vec::new(),
        published,
        stats: SlabStats::default(),
        violations: Violations::default(),
    };
    let mut panicked = cpu.guarded(SlabCpu::run_until_deadline);
    let slabinfo = (cpu.ctx.index == 0 && !panicked).then(|| cpu.ctx.caches.slab.slabinfo().collect());
    if !panicked {
        panicked = cpu.guarded(SlabCpu::teardown);
    }
    if panicked {
        // The allocator may be corrupt: hand nothing more back to it. The
        // caches' destroy reports these objects live; their frames leak.
        std::mem::forget(std::mem::take(&mut cpu.live));
        std::mem::forget(std::mem::take(&mut cpu.published));
        cpu.ctx.peers.clear();
        while let Ok(remote) = cpu.ctx.inbox.try_recv() {
            std::mem::forget(remote);
        }
    }
    let SlabCpu { ctx, stats, violations, .. } = cpu;
    ctx.rcu.idle_enter(CpuId(ctx.cpu));
    SlabResult { stats, violations, slabinfo }
}

impl<'c, 'a> SlabCpu<'c, 'a> {
    /// Runs `f`, catching a panic (a core bug) as a violation, so that
    /// unwinding does not free the live objects into a possibly corrupt
    /// allocator. Returns whether `f` panicked.
    fn guarded(&mut self, f: impl FnOnce(&mut Self)) -> bool {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        let Err(panic) = result else { return false };
        let cpu = self.ctx.cpu;
        self.violations.record(|| format!("slab cpu{cpu} panicked: {}", crate::machine::panic_message(&*panic)));
        true
    }

    fn run_until_deadline(&mut self) {
        loop {
            for _ in 0..BATCH {
                self.step();
            }
            self.receive();
            for _ in 0..REPUBLISH {
                self.republish();
            }
            if self.rng.per_mille(SHRINK_PER_MILLE) {
                let cache = self.rng.below(CACHES.len() as u64) as usize;
                self.shrink(cache);
            }
            // Now and then every object this CPU published is retired at
            // once, which empties identity slabs; their shrink sends them
            // back through RCU while readers may hold pointers into them.
            if self.rng.per_mille(RETIRE_ALL_PER_MILLE) {
                for slot in 0..self.published.len() {
                    self.retire(slot);
                }
                self.shrink(IDENTITY);
            } else if self.rng.per_mille(SHRINK_IDENTITY_PER_MILLE) {
                self.shrink(IDENTITY);
            }
            // Relaxed: a progress statistic, read racily by the machine.
            self.ctx.ops.store(self.stats.ops(), Ordering::Relaxed);
            // Between batches: outside any read section; a pending drain
            // of this CPU's page lists answered too.
            self.ctx.rcu.quiescent(CpuId(self.ctx.cpu));
            self.ctx.caches.slab.node().answer_drain();
            // Relaxed: a stop flag; nothing is published through it.
            if Instant::now() >= self.ctx.deadline || self.ctx.interrupt.load(Ordering::Relaxed) {
                break;
            }
        }
    }

    fn shrink(&mut self, cache: usize) {
        self.stats.shrinks += 1;
        self.stats.slabs_shrunk += self.ctx.caches.slab.shrink(&self.ctx.caches.caches[cache]);
    }

    fn step(&mut self) {
        let target = LIVE_TARGET as u64;
        let live = self.live.len() as u64;
        // Allocate more often below the target, free more often above it.
        if self.live.is_empty() || self.rng.below(2 * target) >= live {
            self.alloc_one();
        } else {
            self.free_one();
        }
    }

    fn alloc_one(&mut self) {
        let source = self.rng.weighted(&WEIGHTS);
        let obj = if source == KMALLOC {
            let sizes: &[usize] =
                if self.rng.per_mille(KMALLOC_LARGE_PER_MILLE) { &KMALLOC_LARGE_SIZES } else { &KMALLOC_SIZES };
            let size = sizes[self.rng.below(sizes.len() as u64) as usize];
            self.ctx.caches.slab.kmalloc_object(size, 8).map(Object::Kmalloc)
        } else {
            self.ctx.caches.caches[source].alloc().map(Object::Cache)
        };
        let Ok(mut obj) = obj else {
            self.stats.alloc_failures += 1;
            return;
        };
        self.stats.allocs += 1;
        self.stats.kmallocs += u64::from(source == KMALLOC);
        if let (Object::Cache(o), Some((_, _, Kind::Ctor))) = (&obj, CACHES.get(source)) {
            self.stats.ctor_checked += 1;
            if let Some(at) = caches::unconstructed(o) {
                let name = CACHES[source].0;
                self.violations.record(|| format!("slab: a new {name} object is not constructed at byte {at}"));
            }
        }
        self.seq += 1;
        let stamp = caches::stamp_of(self.ctx.seed, self.ctx.cpu, self.seq, source);
        obj.write_stamp(stamp);
        self.live.push(Live { obj, source, stamp });
        self.stats.peak_live = self.stats.peak_live.max(self.live.len() as u64);
    }

    fn free_one(&mut self) {
        let at = self.rng.below(self.live.len() as u64) as usize;
        let live = self.live.swap_remove(at);
        if !self.ctx.peers.is_empty() && self.rng.per_mille(REMOTE_PER_MILLE) {
            let peer = self.rng.below(self.ctx.peers.len() as u64) as usize;
            match self.ctx.peers[peer].send(Remote(live)) {
                Ok(()) => self.stats.remote_frees_sent += 1,
                // The peer stopped: free it here.
                Err(e) => {
                    self.check_and_free(e.0 .0, "local");
                    self.stats.local_frees += 1;
                }
            }
            return;
        }
        self.check_and_free(live, "local");
        self.stats.local_frees += 1;
    }

    /// Checks an object's stamp, puts a constructed object back to its
    /// constructed state, then frees it: at once, or sometimes after a
    /// grace period.
    fn check_and_free(&mut self, live: Live<'c, 'a>, how: &str) {
        self.stats.stamps_checked += 1;
        if let Some((expected, found)) = live.obj.stamp_mismatch(live.stamp) {
            let (name, cpu, addr) = (live.name(), self.ctx.cpu, live.obj.addr());
            self.violations.record(|| {
                format!(
                    "slab: cpu{cpu} {how} free of a {name} object at {addr:#x}: stamp {expected:#x}, found {found:#x}"
                )
            });
        }
        if let (Object::Cache(o), Some(&(_, _, kind))) = (&live.obj, CACHES.get(live.source)) {
            caches::reconstruct(o, kind);
        }
        // Identity objects go straight back (as a TYPESAFE_BY_RCU user's
        // do), so their slabs go empty and through RCU under the readers.
        let rcu = live.source != IDENTITY && self.rng.per_mille(KFREE_RCU_PER_MILLE);
        self.stats.kfree_rcu += u64::from(rcu);
        live.obj.free(rcu);
    }

    /// Frees what other CPUs sent, checking each stamp.
    fn receive(&mut self) {
        while let Ok(Remote(live)) = self.ctx.inbox.try_recv() {
            self.check_and_free(live, "remote");
            self.stats.remote_frees += 1;
        }
    }

    /// Retires one of this CPU's published identity objects (if its slot
    /// is taken) and publishes a new one there.
    fn republish(&mut self) {
        let nr = self.ctx.nr_slab_cpus;
        let mine = self.ctx.slots.len().div_ceil(nr).max(1);
        let slot = self.ctx.index + nr * self.rng.below(mine as u64) as usize;
        if slot >= self.ctx.slots.len() {
            return;
        }
        self.retire(slot);
        let Ok(obj) = self.ctx.caches.caches[IDENTITY].alloc() else {
            self.stats.alloc_failures += 1;
            return;
        };
        self.stats.allocs += 1;
        self.seq += 1;
        let stamp = caches::stamp_of(self.ctx.seed, self.ctx.cpu, self.seq, IDENTITY);
        // The stamp is the identity: word 0 holds it and the last word its
        // complement, as every stamped object.
        identity::init(obj.words(), stamp);
        self.ctx.slots.publish(slot, obj.as_ptr().as_ptr() as usize, stamp);
        self.stats.published += 1;
        self.published[slot] = Some(Live { obj: Object::Cache(obj), source: IDENTITY, stamp });
    }

    /// Unpublishes slot `slot` and frees its object, if it has one, once
    /// no reader holds a reference to it.
    fn retire(&mut self, slot: usize) {
        if let Some(live) = self.published[slot].take() {
            self.ctx.slots.unpublish(slot);
            if let Object::Cache(o) = &live.obj {
                self.stats.retire_waits += identity::kill(o.words());
            }
            self.check_and_free(live, "retired");
            self.stats.local_frees += 1;
        }
    }

    /// Frees everything: published objects, live ones, then what the other
    /// CPUs send until they have all stopped.
    fn teardown(&mut self) {
        for slot in 0..self.published.len() {
            self.retire(slot);
        }
        while let Some(live) = self.live.pop() {
            self.check_and_free(live, "local");
            self.stats.local_frees += 1;
        }
        // No more remote frees from here: the others' inboxes close once
        // every sender is gone.
        self.ctx.peers.clear();
        loop {
            match self.ctx.inbox.recv_timeout(Duration::from_millis(5)) {
                Ok(Remote(live)) => {
                    self.check_and_free(live, "remote");
                    self.stats.remote_frees += 1;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Waiting for the others: not in a read section.
            self.ctx.rcu.quiescent(CpuId(self.ctx.cpu));
            self.ctx.caches.slab.node().answer_drain();
        }
    }
}
