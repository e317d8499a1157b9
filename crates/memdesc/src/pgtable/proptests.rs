//! The page-table layer against a reference model: a map from virtual page
//! to the byte last written there and the area's permission, through random
//! mmap, fault (read and write), munmap, madvise(DONTNEED), mprotect and
//! THP split sequences. After every step the address space's audit is
//! clean; at the end every frame and table comes back.

use super::*;
use crate::folio::Order;
use crate::platform::SpinPlatform;
use crate::rcu::{Rcu, RcuConfig};
use crate::testutil::{small_config, with_node};
use crate::thp::{split_folio, SplitMode};
use crate::PAGE_SIZE;
use proptest::prelude::*;
use proptest::test_runner::RngAlgorithm;
use std::collections::BTreeMap;

const PAGE: u64 = PAGE_SIZE as u64;
/// The arena the operations aim at: two huge pages from `USER_START`.
const SPAN_PAGES: u64 = 2 * HUGE_FRAMES;
/// Frames: room for THP natively; under Miri (no THP there) a small node,
/// whose boot and audits dominate each case.
const FRAMES: u64 = if cfg!(miri) { 256 } else { 4096 };
const MAX_OPS: usize = if cfg!(miri) { 12 } else { 48 };
const RNG: RngAlgorithm = if cfg!(miri) { RngAlgorithm::XorShift } else { RngAlgorithm::ChaCha };

#[derive(Clone, Debug)]
enum Op {
    /// Map `pages` at page `at` (if free), writable or not, THP or not.
    Map {
        at: u64,
        pages: u64,
        write: bool,
        thp: bool,
    },
    Write {
        page: u64,
        byte: u8,
    },
    Read {
        page: u64,
    },
    Unmap {
        at: u64,
        pages: u64,
    },
    DontNeed {
        at: u64,
        pages: u64,
    },
    Protect {
        at: u64,
        pages: u64,
        write: bool,
    },
    Split {
        page: u64,
        around: bool,
    },
}

/// A page, mostly among a few dozen (at the start and around the boundary
/// of the two huge pages), so operations meet each other's pages.
fn page() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0..24u64, 2 => HUGE_FRAMES - 8..HUGE_FRAMES + 8, 1 => 0..SPAN_PAGES]
}

fn run_len() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 1..8u64, 1 => Just(HUGE_FRAMES), 1 => 1..2 * HUGE_FRAMES]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (page(), run_len(), any::<bool>(), any::<bool>())
            // No THP under Miri, where one 2 MiB fault and its audits take
            // most of a minute; the THP unit tests run there instead.
            .prop_map(|(at, pages, write, thp)| {
                let thp = thp && !cfg!(miri);
                Op::Map { at: if thp { at & !(HUGE_FRAMES - 1) } else { at }, pages, write, thp }
            }),
        6 => (page(), any::<u8>()).prop_map(|(page, byte)| Op::Write { page, byte }),
        4 => page().prop_map(|page| Op::Read { page }),
        2 => (page(), run_len()).prop_map(|(at, pages)| Op::Unmap { at, pages }),
        1 => (page(), run_len()).prop_map(|(at, pages)| Op::DontNeed { at, pages }),
        2 => (page(), run_len(), any::<bool>()).prop_map(|(at, pages, write)| Op::Protect { at, pages, write }),
        1 => (page(), any::<bool>()).prop_map(|(page, around)| Op::Split { page, around }),
    ]
}

/// The model: areas (page -> writable) and contents (page -> last byte).
#[derive(Default)]
struct Model {
    areas: BTreeMap<u64, bool>,
    bytes: BTreeMap<u64, u8>,
}

fn va(page: u64) -> u64 {
    USER_START + page * PAGE
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_algorithm: RNG, ..ProptestConfig::default() })]

    #[test]
    fn address_space_matches_reference_model(ops in proptest::collection::vec(op(), 1..MAX_OPS)) {
        with_node(FRAMES, &[], small_config(false), &SpinPlatform, |node| {
            let tables = Mmu::table_return(node);
            let rcu = Rcu::new(&SpinPlatform, RcuConfig::default()).unwrap();
            let mmu = Mmu::new(&rcu, &tables);
            {
                let aspace = AddressSpace::new(&mmu).unwrap();
                let mut model = Model::default();
                for op in &ops {
                    match *op {
                        Op::Map { at, pages, write, thp } => {
                            let pages = pages.min(SPAN_PAGES - at);
                            let free = (at..at + pages).all(|p| !model.areas.contains_key(&p));
                            let got = aspace.mmap_anon_at(va(at), pages * PAGE, write, thp);
                            if free {
                                prop_assert_eq!(got, Ok(()));
                                model.areas.extend((at..at + pages).map(|p| (p, write)));
                            } else {
                                prop_assert_eq!(got, Err(MmError::NoSpace(pages * PAGE)));
                            }
                        }
                        Op::Write { page, byte } => {
                            let got = aspace.write(va(page) + 17, &[byte]);
                            match model.areas.get(&page) {
                                None => prop_assert_eq!(got, Err(Fault::NotMapped(va(page) + 17))),
                                Some(false) => prop_assert_eq!(got, Err(Fault::Protection(va(page) + 17))),
                                Some(true) => {
                                    prop_assert_eq!(got, Ok(()));
                                    model.bytes.insert(page, byte);
                                }
                            }
                        }
                        Op::Read { page } => {
                            let mut buf = [0xaa];
                            let got = aspace.read(va(page) + 17, &mut buf);
                            if model.areas.contains_key(&page) {
                                prop_assert_eq!(got, Ok(()));
                                prop_assert_eq!(buf[0], model.bytes.get(&page).copied().unwrap_or(0));
                            } else {
                                prop_assert_eq!(got, Err(Fault::NotMapped(va(page) + 17)));
                            }
                        }
                        Op::Unmap { at, pages } | Op::DontNeed { at, pages } => {
                            let pages = pages.min(SPAN_PAGES - at);
                            let any = (at..at + pages).any(|p| model.areas.contains_key(&p));
                            let remove = matches!(op, Op::Unmap { .. });
                            let got = if remove {
                                aspace.munmap(va(at), pages * PAGE)
                            } else {
                                aspace.madvise_dontneed(va(at), pages * PAGE)
                            };
                            if any {
                                prop_assert_eq!(got, Ok(()));
                                for p in at..at + pages {
                                    model.bytes.remove(&p);
                                    if remove {
                                        model.areas.remove(&p);
                                    }
                                }
                            } else {
                                prop_assert_eq!(got, Err(MmError::NotMapped { start: va(at), end: va(at + pages) }));
                            }
                        }
                        Op::Protect { at, pages, write } => {
                            let pages = pages.min(SPAN_PAGES - at);
                            let any = (at..at + pages).any(|p| model.areas.contains_key(&p));
                            let got = aspace.mprotect(va(at), pages * PAGE, write);
                            if any {
                                prop_assert_eq!(got, Ok(()));
                                for p in at..at + pages {
                                    if let Some(w) = model.areas.get_mut(&p) {
                                        *w = write;
                                    }
                                }
                            } else {
                                prop_assert_eq!(got, Err(MmError::NotMapped { start: va(at), end: va(at + pages) }));
                            }
                        }
                        Op::Split { page, around } => {
                            let mode = if around { SplitMode::Around(Order::ZERO) } else { SplitMode::Uniform(Order::ZERO) };
                            // Splits change no content: either outcome is fine.
                            let _ = split_folio(&aspace, va(page), mode);
                        }
                    }
                    let audit = aspace.audit();
                    prop_assert_eq!(audit.violations, 0, "after {:?}: {:?}", op, audit);
                }
                // Every byte the model knows is still there.
                for (&page, &byte) in &model.bytes {
                    let mut buf = [0];
                    aspace.read(va(page) + 17, &mut buf).unwrap();
                    prop_assert_eq!(buf[0], byte);
                }
            }
            mmu.barrier();
            prop_assert_eq!(mmu.table_frames(), 0);
            prop_assert_eq!(node.audit().allocated, 0);
            Ok(())
        })?;
    }
}
