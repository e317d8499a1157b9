//! The free path's checks (P3.5) and the bad-page log (Z.4): two CPUs
//! quarantining at once.

use super::{audit_clean, config, on_two_cpus, with_node};
use crate::buddy::{Gfp, Node};
use crate::folio::{BadPageReason, Order, PageFlags, PageType};
use crate::sync::Ordering;

/// What a holder left wrong on the folio it drops.
#[derive(Clone, Copy)]
enum Misuse {
    /// The head still mapped.
    Mapped,
    /// The head on an LRU list.
    OnLru,
    /// The (large) folio still pinned.
    Pinned,
    /// A tail still mapped.
    TailMapped,
}

/// Drops the last reference to a fresh folio of `order` that its holder
/// left in a state the free path must refuse: it quarantines the folio and
/// logs a report.
fn free_bad(node: &Node<'_>, order: Order, misuse: Misuse) {
    let folio = node.alloc(order, Gfp::USER).unwrap();
    let head = folio.head();
    // Relaxed (all four): the holder's own state, left behind by mistake;
    // the free path reads it after the last put's Acquire (R.3).
    match misuse {
        Misuse::Mapped => head.mapcount.store(1, Ordering::Relaxed),
        Misuse::OnLru => drop(head.flags.fetch_or(PageFlags::LRU.0, Ordering::Relaxed)),
        Misuse::Pinned => head.pincount.store(1, Ordering::Relaxed),
        Misuse::TailMapped => node.memmap().page_of(folio.pfn().add(1)).mapcount.store(1, Ordering::Relaxed),
    }
}

/// Both CPUs free two bad folios each (single frames on one, order-1 folios
/// on the other) at once: every folio is quarantined whole, and the log
/// counts four reports of six frames and holds each one.
fn two_cpus_quarantine() {
    with_node(config(false, 2, 2), |node| {
        on_two_cpus(
            node,
            |node| {
                free_bad(node, Order::ZERO, Misuse::Mapped);
                free_bad(node, Order::ZERO, Misuse::OnLru);
            },
            |node| {
                free_bad(node, Order::new(1).unwrap(), Misuse::Pinned);
                free_bad(node, Order::new(1).unwrap(), Misuse::TailMapped);
            },
        );
        let (count, frames, reports) = node.bad_pages();
        assert_eq!((count, frames), (4, 6), "Z.4 violated: {count} reports of {frames} frames logged");
        let mut reasons: std::vec::Vec<_> = reports.iter().flatten().map(|r| r.reason as u8).collect();
        reasons.sort_unstable();
        let mut expected = [
            BadPageReason::FreedWhileMapped as u8,
            BadPageReason::FreedWhileMapped as u8,
            BadPageReason::FreedWithBadFlags as u8,
            BadPageReason::FreedWhilePinned as u8,
        ];
        expected.sort_unstable();
        assert_eq!(reasons, expected, "Z.4 violated: reports lost or wrong: {reports:?}");
        let audit = audit_clean(node);
        assert_eq!(audit.quarantined, 6, "Z.4 violated: quarantined frames miscounted");
        for report in reports.iter().flatten() {
            assert_eq!(node.memmap().page_of(report.pfn).page_type(), PageType::Quarantined);
        }
    });
}

#[test]
fn bad_page_log_two_cpus_quarantine() {
    crate::testutil::check_model(two_cpus_quarantine);
}

/// The log's slot read and written in two holds of its lock.
#[cfg(memdesc_mutant = "bad_page_log_split_update")]
#[test]
fn mutant_bad_page_log_split_update_is_caught() {
    crate::testutil::assert_model_fails(two_cpus_quarantine);
}
