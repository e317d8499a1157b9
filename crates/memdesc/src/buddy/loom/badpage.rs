//! The bad-page log (Z.4): two CPUs quarantining at once.

use super::{audit_clean, config, on_two_cpus, with_node};
use crate::buddy::{Gfp, Node};
use crate::folio::{BadPageReason, Order, PageType};
use crate::memmap::Pfn;
use crate::sync::Ordering;

/// Drops the last reference to a fresh folio of `order` that its holder
/// left mapped: the free path quarantines it with a report. Returns its pfn.
fn free_mapped(node: &Node<'_>, order: Order) -> Pfn {
    let folio = node.alloc(order, Gfp::USER).unwrap();
    // Relaxed: the holder's own mapping count (a missed unmap); the free
    // path reads it after the last put's Acquire (R.3).
    folio.head().mapcount.store(1, Ordering::Relaxed);
    folio.pfn()
}

/// Both CPUs free a mapped folio (orders 0 and 1) at once: both frames are
/// quarantined, and the log counts two reports, three frames, and holds
/// both.
fn two_cpus_quarantine() {
    with_node(config(false, 2, 2), |node| {
        on_two_cpus(
            node,
            |node| {
                free_mapped(node, Order::ZERO);
            },
            |node| {
                free_mapped(node, Order::new(1).unwrap());
            },
        );
        let (count, frames, reports) = node.bad_pages();
        assert_eq!((count, frames), (2, 3), "Z.4 violated: {count} reports of {frames} frames logged");
        let logged = reports.iter().flatten().filter(|r| r.reason == BadPageReason::FreedWhileMapped).count();
        assert_eq!(logged, 2, "Z.4 violated: a report was lost: {reports:?}");
        let audit = audit_clean(node);
        assert_eq!(audit.quarantined, 3, "Z.4 violated: quarantined frames miscounted");
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
