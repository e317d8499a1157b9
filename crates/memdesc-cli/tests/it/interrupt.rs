//! Ctrl-C during a run: the report of what ran, marked interrupted, and
//! exit status 130.

use crate::{memdesc, run_with, Finished};
use std::process::{Child, Command};
use std::thread;
use std::time::Duration;

/// Far longer than the test waits: only the interrupt ends the run in time.
const LONG_RUN: [&str; 8] = ["--mem", "64M", "--cpus", "1", "--duration", "600s", "--seed", "5"];
/// Exit status of a run stopped by Ctrl-C with nothing wrong in what ran.
const EXIT_INTERRUPTED: i32 = 130;

/// Lets the run start, then sends it SIGINT as a terminal's Ctrl-C would.
fn interrupt_after_a_moment(child: &mut Child) {
    thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().ok().flatten().is_none(), "the run ended before the interrupt");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill -INT failed");
}

fn interrupted_run(extra: &[&str]) -> Finished {
    let args: Vec<&str> = LONG_RUN.iter().chain(extra).copied().collect();
    let out = run_with(memdesc(&args), interrupt_after_a_moment);
    assert_eq!(out.status.code(), Some(EXIT_INTERRUPTED), "status {:?}; stderr: {}", out.status, out.stderr);
    out
}

#[test]
fn ctrl_c_prints_the_report_of_what_ran_and_exits_130() {
    let out = interrupted_run(&[]);
    let text = &out.stdout;
    assert!(text.starts_with("memdesc simulation: mixed workload"), "{text}");
    assert!(text.contains("\nrepeat with: memdesc run --mem 64M --cpus 1 --duration 10m --seed 5\n"), "{text}");
    assert!(text.contains("\nINTERRUPTED after "), "{text}");
    assert!(text.contains("\nbuddyinfo\n") && text.contains("\nviolations: 0   leaked frames: 0   bad pages: 0\n"));
    let verdict = text.lines().last().unwrap_or_default();
    assert!(verdict.starts_with("INTERRUPTED after ") && verdict.ends_with("in what ran"), "{verdict}");
}

#[test]
fn ctrl_c_with_json_reports_interrupted_and_when() {
    let out = interrupted_run(&["--json"]);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("the report is JSON");
    assert_eq!(report["interrupted"], true, "{report:#}");
    assert_eq!(report["repeat"], "memdesc run --mem 64M --cpus 1 --duration 10m --seed 5");
    let after = report["interrupted_after_s"].as_f64().expect("interrupted_after_s is a number");
    assert!((1.0..60.0).contains(&after), "interrupted after {after} s");
    assert_eq!(report["passed"], true);
    assert_eq!(report["leaked_frames"], 0);
    assert_eq!(report["vmstat"]["nr_free_pages"], report["vmstat"]["nr_managed"]);
}
