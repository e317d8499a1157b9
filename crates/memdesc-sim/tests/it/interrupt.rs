//! Interrupting a run: the workload stops early, and the teardown, audit
//! and accounting still run, so the report is a real one.

use memdesc_sim::{Report, SimConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Far longer than the test waits: only the interrupt can end the run in
/// time.
const LONG: Duration = Duration::from_secs(600);
/// How long the test waits for the interrupted run to end.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `config`, setting the interrupt after `after`.
fn run_interrupted(config: SimConfig, after: Duration) -> Report {
    let interrupt = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = Arc::clone(&interrupt);
    std::thread::spawn(move || {
        let _ = tx.send(memdesc_sim::run_interruptible(&config, &flag, |_| {}));
    });
    std::thread::sleep(after);
    // Relaxed: the run only needs to see the flag eventually.
    interrupt.store(true, Ordering::Relaxed);
    match rx.recv_timeout(LIMIT) {
        Ok(result) => result.expect("the simulation did not run"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the interrupt did not stop the run within {LIMIT:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the simulation panicked (see above)"),
    }
}

#[test]
fn interrupt_stops_the_workload_and_the_report_is_complete() {
    let report = run_interrupted(SimConfig::new(64 << 20, 2, LONG, 11), Duration::from_millis(500));
    assert!(report.interrupted);
    let after = report.interrupted_after_s.expect("interrupted runs say when");
    assert!((0.4..LIMIT.as_secs_f64()).contains(&after), "interrupted after {after} s");
    assert!(report.duration_s < LIMIT.as_secs_f64(), "{} s", report.duration_s);
    assert_eq!(report.violations, 0, "violations: {:#?}", report.first_violations);
    assert_eq!(report.leaked_frames, 0);
    assert!(report.passed());
    let w = &report.workload;
    assert!(w.allocs > 0 && w.frees == w.allocs - w.splits + w.split_pieces, "every folio freed once: {w:#?}");
    let vm = |name: &str| *report.vmstat.get(name).unwrap_or_else(|| panic!("no {name} in vmstat"));
    assert_eq!(vm("nr_free_pages"), vm("nr_managed"));

    let text = report.to_string();
    assert!(text.contains("\nINTERRUPTED after "), "{text}");
    assert!(text.ends_with("in what ran\n"), "{text}");
    let json = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(json["interrupted"], true);
    assert!(json["interrupted_after_s"].is_f64());
}

#[test]
fn interrupt_before_the_first_batch_still_boots_and_audits() {
    let interrupt = AtomicBool::new(true);
    let config = SimConfig::new(64 << 20, 1, LONG, 12);
    let report = memdesc_sim::run_interruptible(&config, &interrupt, |_| {}).expect("runs");
    assert!(report.interrupted && report.passed(), "{report}");
    assert!(report.audit.free_frames > 0);
}

#[test]
fn interrupting_the_gup_profile_unmaps_everything_and_returns_every_table() {
    let config = SimConfig::new(128 << 20, 2, LONG, 13).with_workload(memdesc_sim::Workload::Gup);
    let report = run_interrupted(config, Duration::from_millis(500));
    assert!(report.interrupted && report.interrupted_after_s.is_some(), "{report}");
    assert_eq!(report.violations, 0, "violations: {:#?}", report.first_violations);
    assert!(report.passed(), "{report}");
    let p = &report.page_tables;
    assert!(p.activity.maps > 0 && p.activity.gup_calls > 0, "{:#?}", p.activity);
    assert_eq!(p.activity.maps, p.activity.munmaps, "every region unmapped at teardown: {:#?}", p.activity);
    assert_eq!(p.table_frames_at_end, 0);
    assert!(report.to_string().ends_with("in what ran\n"));
}
