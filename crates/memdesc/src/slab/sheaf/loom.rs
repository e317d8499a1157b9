//! Loom models of the sheaves (SHEAF.1–SHEAF.9), and the mutant loom must
//! catch.
//!
//! The source is a pool of objects `1..=OBJECTS` behind a `SpinLock`; every
//! object has a loom cell that its current owner writes (the thread that
//! allocated it, or the source once it is back). Handing one object to two
//! owners without a happens-before edge between them is a data race loom
//! reports; the source asserts that no object comes back twice or is lost.
//! Sheaves hold one object and the barn one sheaf, so a handful of
//! operations runs every path: the spare swap, the barn in both directions,
//! refills and give-backs.

use super::{ObjectSource, PerCpuSheaves};
use crate::sync::{SpinLock, UnsafeCell};
use crate::testutil::{check_model, set_current_cpu, BlockingPlatform};
use loom::sync::Arc;
use loom::thread;
use std::vec::Vec;

/// Objects in the source; addresses `1..=OBJECTS`.
const OBJECTS: usize = 6;

/// Who writes an object's cell: its source, or a model thread.
const SOURCE: usize = 100;

struct ModelSource {
    /// Free objects, and per object whether it is out of the source.
    pool: SpinLock<(Vec<usize>, [bool; OBJECTS + 1])>,
    /// Per object, written by its current owner.
    cells: Vec<UnsafeCell<usize>>,
}

// SAFETY: each access to a cell is the model's claim that the sheaves hand
// the object to one owner at a time; loom checks every one and reports
// those that race, which is what the models test.
unsafe impl Sync for ModelSource {}
// SAFETY: as for Sync: the cells hold plain integers.
unsafe impl Send for ModelSource {}

impl ModelSource {
    fn new() -> Self {
        Self {
            pool: SpinLock::new(((1..=OBJECTS).collect(), [false; OBJECTS + 1])),
            cells: (0..=OBJECTS).map(|_| UnsafeCell::new(SOURCE)).collect(),
        }
    }

    /// The caller now owns `obj`: it writes the object.
    fn own(&self, obj: usize, who: usize) {
        // SAFETY: the model's claim that `who` is the object's only owner;
        // loom reports a concurrent owner as a data race.
        self.cells[obj].with_mut(|c| unsafe { *c = who });
    }

    /// After every thread: all objects are back.
    fn assert_all_back(&self) {
        let back = self.pool.lock().with_ref(|(free, _)| free.len());
        assert_eq!(back, OBJECTS, "sheaf protocol violated: objects lost");
    }
}

impl ObjectSource for ModelSource {
    fn refill(&self, out: &mut [usize]) -> usize {
        let mut pool = self.pool.lock();
        pool.with(|(free, outstanding)| {
            let n = out.len().min(free.len());
            for slot in &mut out[..n] {
                let obj = free.pop().unwrap();
                assert!(!outstanding[obj], "sheaf protocol violated: object {obj} handed out twice");
                outstanding[obj] = true;
                *slot = obj;
            }
            n
        })
    }

    fn give_back(&self, objs: &[usize]) {
        let mut pool = self.pool.lock();
        pool.with(|(free, outstanding)| {
            for &obj in objs {
                assert!(outstanding[obj], "sheaf protocol violated: object {obj} given back twice");
                outstanding[obj] = false;
                free.push(obj);
                // The source owns it again, under its lock.
                self.own(obj, SOURCE);
            }
        });
    }
}

struct Model {
    platform: BlockingPlatform,
    sheaves: super::OwnedSheaves,
    src: ModelSource,
}

fn model() -> Arc<Model> {
    Arc::new(Model { platform: BlockingPlatform::new(2), sheaves: PerCpuSheaves::owned(1), src: ModelSource::new() })
}

impl Model {
    fn alloc(&self, who: usize) -> usize {
        let obj = self.sheaves.alloc(&self.platform, &self.src).expect("the pool is large enough");
        self.src.own(obj, who);
        obj
    }

    fn free(&self, obj: usize, who: usize) {
        self.src.own(obj, who);
        self.sheaves.free(&self.platform, obj, &self.src);
    }

    /// After every thread joined: flush everything, check every object.
    fn finish(model: Arc<Model>) {
        let Ok(mut model) = Arc::try_unwrap(model) else { panic!("the model threads hold no reference") };
        model.sheaves.flush_all(&model.src);
        assert_eq!(model.sheaves.cached(), 0, "sheaf protocol violated: flush_all left objects");
        model.src.assert_all_back();
    }
}

/// CPU 0 frees three objects (main, spare, then the barn: SHEAF.6) while
/// CPU 1 allocates (the barn or a refill: SHEAF.5): objects move between
/// CPUs through the barn, whose lock orders the two owners.
fn objects_migrate_through_the_barn() {
    let m = model();
    set_current_cpu(0);
    let objs = [m.alloc(0), m.alloc(0), m.alloc(0)];
    let cpu0 = {
        let m = m.clone();
        thread::spawn(move || {
            set_current_cpu(0);
            for obj in objs {
                m.free(obj, 0);
            }
        })
    };
    let cpu1 = {
        let m = m.clone();
        thread::spawn(move || {
            set_current_cpu(1);
            let obj = m.alloc(1);
            m.free(obj, 1);
        })
    };
    cpu0.join().unwrap();
    cpu1.join().unwrap();
    Model::finish(m);
}

/// An object allocated on CPU 0 is freed on CPU 1 (a remote free, SHEAF.3
/// there) while CPU 0 allocates again and flushes (SHEAF.7: its own
/// sheaves, the barn, a request to CPU 1, which CPU 1's slow path may
/// honour: SHEAF.5).
fn remote_free_races_flush() {
    let m = model();
    set_current_cpu(0);
    let (a, b) = (m.alloc(0), m.alloc(0));
    let cpu0 = {
        let m = m.clone();
        thread::spawn(move || {
            set_current_cpu(0);
            m.free(b, 0);
            let c = m.alloc(0);
            m.free(c, 0);
            m.sheaves.flush_local(&m.platform, &m.src);
        })
    };
    let cpu1 = {
        let m = m.clone();
        thread::spawn(move || {
            set_current_cpu(1);
            m.free(a, 1);
            // The first from main (a itself), the second from the slow path,
            // which honours CPU 0's flush request if it has seen it.
            let (d, e) = (m.alloc(1), m.alloc(1));
            m.free(d, 1);
            m.free(e, 1);
        })
    };
    cpu0.join().unwrap();
    cpu1.join().unwrap();
    Model::finish(m);
}

/// A thread with no CPU allocates and frees through the source (SHEAF.8)
/// and flushes the barn (SHEAF.7) while CPU 0 fills its sheaves and the
/// barn and empties them again (SHEAF.5, SHEAF.6).
fn fallback_races_the_barn() {
    let m = model();
    set_current_cpu(0);
    let objs = [m.alloc(0), m.alloc(0), m.alloc(0)];
    let cpu0 = {
        let m = m.clone();
        thread::spawn(move || {
            set_current_cpu(0);
            for obj in objs {
                m.free(obj, 0);
            }
            let again = [m.alloc(0), m.alloc(0), m.alloc(0)];
            for obj in again {
                m.free(obj, 0);
            }
        })
    };
    let host = {
        let m = m.clone();
        thread::spawn(move || {
            let obj = m.alloc(2);
            m.free(obj, 2);
            m.sheaves.flush_local(&m.platform, &m.src);
        })
    };
    cpu0.join().unwrap();
    host.join().unwrap();
    Model::finish(m);
}

#[test]
fn sheaf_objects_migrate_through_the_barn() {
    check_model(objects_migrate_through_the_barn);
}

#[test]
fn sheaf_remote_free_races_flush() {
    check_model(remote_free_races_flush);
}

#[test]
fn sheaf_fallback_races_the_barn() {
    check_model(fallback_races_the_barn);
}

/// SHEAF.5's barn trade without the barn lock: CPU 0's put and CPU 1's
/// take race on the barn.
#[cfg(memdesc_mutant = "barn_unlocked_exchange")]
#[test]
fn mutant_barn_unlocked_exchange_is_caught() {
    crate::testutil::assert_model_fails(objects_migrate_through_the_barn);
}
