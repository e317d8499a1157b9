//! `MEMDESC_STATS=1`: the summary printed at exit.

use memdesc_malloc::{free, malloc};
use std::process::Command;

#[test]
fn memdesc_stats_prints_a_summary_at_exit() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "stats::child_allocates"])
        .env("MEMDESC_STATS", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let summary =
        err.lines().find(|l| l.starts_with("memdesc: allocs ")).unwrap_or_else(|| panic!("no summary:\n{err}"));
    let allocs: u64 = summary.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(allocs >= 1000, "{summary}");
    assert!(summary.contains("peak-rss") && summary.contains("hot-adds"), "{summary}");
    assert!(err.lines().any(|l| l.starts_with("memdesc: malloc-48 ")), "no slabinfo line of the 48-byte class:\n{err}");
}

#[test]
fn the_summary_survives_a_program_that_closes_its_stderr() {
    // coreutils close fd 2 in an exit handler, before the summary.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "stats::child_closes_stderr"])
        .env("MEMDESC_STATS", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().any(|l| l.starts_with("memdesc: allocs ")), "no summary after close(2):\n{err}");
}

#[test]
#[ignore = "run by the_summary_survives_a_program_that_closes_its_stderr"]
fn child_closes_stderr() {
    let p = malloc(40);
    // SAFETY: live, freed once.
    unsafe { free(p) };
    // The harness prints its result on stdout; stderr is no longer used.
    // SAFETY: closing fd 2 of this process; nothing else here writes to it.
    assert_eq!(unsafe { libc::close(2) }, 0);
}

#[test]
fn without_memdesc_stats_nothing_is_printed() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "stats::child_allocates"])
        .env_remove("MEMDESC_STATS")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("memdesc:"));
}

#[test]
#[ignore = "run by memdesc_stats_prints_a_summary_at_exit"]
fn child_allocates() {
    let blocks: Vec<_> = (0..1000).map(|_| malloc(40)).collect();
    for p in blocks.into_iter().step_by(2) {
        // SAFETY: live, freed once; the rest stay live at exit.
        unsafe { free(p) };
    }
}
