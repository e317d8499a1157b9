//! Address spaces on real threads: a process writing and checking stamps
//! in a THP region while another CPU pins its pages with GUP-fast and
//! checks them, and a third splits, protects and unmaps under both. The
//! loom models check each step exhaustively on 8-entry tables; this runs
//! the production geometry (512-entry tables, 2 MiB folios) with its TLB
//! shootdowns, migration entries and fallbacks on three std threads.

use super::*;
use crate::buddy::{NodeConfig, PcpConfig};
use crate::gup::{get_user_pages_fast, GupFlags};
use crate::pgtable::{Mmu, HUGE_FRAMES, HUGE_SIZE};
use crate::rcu::{Rcu, RcuConfig};
use crate::sync::{AtomicU32, Ordering};
use crate::testutil::{set_thread_cpu, with_node, ThreadCpus};

static THREE_CPUS: ThreadCpus = ThreadCpus { nr: 3 };
const ROUNDS: u64 = if cfg!(miri) { 4 } else { 200 };

/// The stamp of page `i` in round `round`: its index in the low half, so a
/// reader that sees any round's stamp can tell it is this page's.
fn stamp(i: u64, round: u64) -> u64 {
    (round << 32) | i
}

#[test]
fn a_process_pinner_and_splitter_race_without_losing_a_byte() {
    let config = NodeConfig {
        movable_percent: 0,
        pcp: PcpConfig { enabled: true, batch: 4, high: 8 },
        min_free_frames: Some(0),
    };
    with_node(2048, &[], config, &THREE_CPUS, |node| {
        let tables = Mmu::table_return(node);
        let rcu = Rcu::new(&THREE_CPUS, RcuConfig::default()).unwrap();
        let mmu = Mmu::new(&rcu, &tables);
        {
            let aspace = AddressSpace::new(&mmu).unwrap();
            let va = aspace.mmap_anon(HUGE_SIZE, true, true).unwrap();
            // Stamped pages: the whole folio natively; a few under Miri, where
            // each first write through the MMU costs a fault and a walk.
            let pages = if cfg!(miri) { 16 } else { HUGE_FRAMES };
            for i in 0..pages {
                aspace.write(va + i * PAGE, &stamp(i, 0).to_le_bytes()).unwrap();
            }
            assert_eq!(mmu.event(MmEvent::ThpFaultAlloc), 1, "the region is one PMD-mapped folio");
            let done = AtomicU32::new(0);
            std::thread::scope(|s| {
                // CPU 0: the process rewrites and checks its stamps.
                s.spawn(|| {
                    set_thread_cpu(Some(0));
                    for round in 1..=ROUNDS {
                        let i = (round * 37) % pages;
                        let mut buf = [0u8; 8];
                        aspace.read(va + i * PAGE, &mut buf).unwrap();
                        let seen = u64::from_le_bytes(buf);
                        assert_eq!(seen & 0xffff_ffff, i, "page {i} holds another page's stamp");
                        aspace.write(va + i * PAGE, &stamp(i, round).to_le_bytes()).unwrap();
                        rcu.quiescent(crate::platform::CpuId(0));
                    }
                    // Relaxed: a stop flag; the scope's join orders the rest.
                    done.store(1, Ordering::Relaxed);
                    rcu.idle_enter(crate::platform::CpuId(0));
                });
                // CPU 1: a device pinning runs of pages and reading them.
                s.spawn(|| {
                    set_thread_cpu(Some(1));
                    let mut round = 0;
                    // Relaxed: a stop flag (see above).
                    while done.load(Ordering::Relaxed) == 0 || round < 2 {
                        round += 1;
                        let first = (round * 61) % (pages - 8);
                        let mut out: [Option<crate::gup::GupRun<'_, '_>>; 8] = Default::default();
                        let n = get_user_pages_fast(&aspace, va + first * PAGE, 8, GupFlags::PIN, &mut out).unwrap();
                        for run in out[..n].iter().flatten() {
                            let mut reader = run.reader();
                            for k in 0..u64::from(run.nr_pages()) {
                                reader.seek((k * PAGE) as usize);
                                let word = reader.read_u64().unwrap();
                                let page = (run.va() - va) / PAGE + k;
                                assert_eq!(word & 0xffff_ffff, page, "a pinned page holds another page's stamp");
                            }
                        }
                        drop(out);
                        rcu.quiescent(crate::platform::CpuId(1));
                    }
                    rcu.idle_enter(crate::platform::CpuId(1));
                });
                // CPU 2: splits around pages, protects and restores.
                s.spawn(|| {
                    set_thread_cpu(Some(2));
                    let mut busy = 0;
                    for round in 0..ROUNDS / 4 + 1 {
                        let i = (round * 97) % pages;
                        match split_folio(&aspace, va + i * PAGE, SplitMode::Around(Order::ZERO)) {
                            Ok(_) | Err(ThpSplitError::TooSmall { .. }) => {}
                            Err(ThpSplitError::Busy { .. }) => busy += 1,
                            Err(e) => panic!("split failed: {e}"),
                        }
                        aspace.mprotect(va + i * PAGE, PAGE, false).unwrap();
                        aspace.mprotect(va + i * PAGE, PAGE, true).unwrap();
                        rcu.quiescent(crate::platform::CpuId(2));
                    }
                    let _ = busy;
                    rcu.idle_enter(crate::platform::CpuId(2));
                });
            });
            assert_eq!(aspace.audit().violations, 0, "{:?}", aspace.audit());
            for i in 0..pages {
                let mut buf = [0u8; 8];
                aspace.read(va + i * PAGE, &mut buf).unwrap();
                assert_eq!(u64::from_le_bytes(buf) & 0xffff_ffff, i);
            }
            assert!(mmu.event(MmEvent::TlbShootdown) > 0);
        }
        mmu.barrier();
        assert_eq!(mmu.table_frames(), 0);
        node.drain_all();
        assert_eq!(node.audit().allocated, 0);
        assert_eq!(node.audit().violations, 0);
    });
}
