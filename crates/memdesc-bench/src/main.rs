//! memdesc-bench: memdesc's performance goals, each measured as a ratio to a
//! peer run in the same process.
//!
//! # The problem
//! Absolute nanoseconds on a shared 2-vCPU VM drift by ±15% from run to run,
//! so a goal is a ratio to something measured alongside it: a raw atomic, or
//! `buddy_system_allocator` doing the same pattern (goals of the performance
//! reference, §4).
//!
//! # The mechanism
//! Each goal ([`goals::GOALS`]) boots a fresh simulated node ([`ours`]) and
//! hands its workloads and the peer's ([`peers`]) to the harness
//! ([`harness::measure`]): calibrated repetitions, interleaved, medians. The
//! report ([`output`]) goes to stdout, to `--json` and to `--markdown`.
//! The address-space goals (G1, G2, T1, F1, F2) run on an MMU ([`mm`]); F1
//! and F2 compare with the host kernel's own faults ([`host`]).
//!
//! # Usage
//! `cargo xtask bench`, or
//! `cargo run --release -p memdesc-bench -- [--json PATH] [--markdown PATH]
//! [--quick] [--filter ID[,ID…]] [--iters N]`.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod goals;
mod harness;
mod host;
#[allow(unsafe_code)]
mod mallocs;
mod mm;
mod ours;
mod output;
#[allow(unsafe_code)]
mod peers;
mod s4;
#[allow(unsafe_code)]
mod slab;
mod slabgoals;

use harness::Settings;
use output::{Row, RunInfo};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: memdesc-bench [--json PATH] [--markdown PATH] [--quick] [--filter ID[,ID...]] [--iters N]

  --json PATH      write the results as a JSON list (one object per goal and probe)
  --markdown PATH  write the report (BENCHMARKS.md)
  --quick          3 short repetitions: a smoke test, not numbers to quote
  --filter IDS     run only these goals (P1 P1f P2 P3 P4 P5 R1 G1 G2 T1 F1 F2 S1 S1k S2 S2g S3 S4;
                   repeatable, comma-separated; S4 also selects S4-cfrac, S4-espresso, ...)
  --iters N        run N iterations per repetition, uncalibrated: every workload
                   then runs N x (reps + 1) iterations, for instruction counts
                   under `valgrind --tool=callgrind`
";

/// The command line.
#[derive(Debug, Default)]
struct Args {
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
    quick: bool,
    filter: Vec<String>,
    iters: Option<u64>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--json" => parsed.json = Some(value("--json")?.into()),
            "--markdown" => parsed.markdown = Some(value("--markdown")?.into()),
            "--quick" => parsed.quick = true,
            "--filter" => {
                let ids = value("--filter")?;
                parsed.filter.extend(ids.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
            }
            "--iters" => {
                let n = value("--iters")?;
                let n = n.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("--iters: bad count `{n}`"))?;
                parsed.iters = Some(n);
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    for id in &parsed.filter {
        if !goals::GOALS.iter().any(|g| selects(id, g.id)) {
            let known: Vec<&str> = goals::GOALS.iter().map(|g| g.id).collect();
            return Err(format!("no goal `{id}`; known: {}", known.join(", ")));
        }
    }
    Ok(Some(parsed))
}

/// Whether `--filter` id `id` selects goal `goal`: the goal itself, or a
/// member of its family (`S4` selects `S4-cfrac`).
fn selects(id: &str, goal: &str) -> bool {
    goal.eq_ignore_ascii_case(id)
        || goal.get(..id.len()).is_some_and(|head| head.eq_ignore_ascii_case(id)) && goal[id.len()..].starts_with('-')
}

fn write(path: &Path, text: &str) -> Result<(), Box<dyn Error>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()).into())
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let base = if args.quick { Settings::QUICK } else { Settings::DEFAULT };
    let settings = Settings { fixed_iters: args.iters, ..base };
    let info = RunInfo::collect(settings, args.quick);
    let mut rows = Vec::new();
    let selected =
        goals::GOALS.iter().filter(|g| args.filter.is_empty() || args.filter.iter().any(|id| selects(id, g.id)));
    for goal in selected {
        eprintln!("memdesc-bench: {} ({})…", goal.id, goal.description);
        let started = std::time::Instant::now();
        let measured = (goal.run)(&settings)?;
        eprintln!("memdesc-bench: {} took {:.1} s", goal.id, started.elapsed().as_secs_f64());
        rows.push(Row::goal(goal, &measured));
        rows.extend(measured.probes.iter().map(|p| Row::probe(goal, p)));
    }
    let s4_table = s4::table();
    println!("{}", output::tables(&rows));
    if let Some(table) = &s4_table {
        println!("{table}");
    }
    if let Some(path) = &args.json {
        write(path, &output::json(&rows))?;
    }
    if let Some(path) = &args.markdown {
        write(path, &output::markdown(&info, &rows, s4_table.as_deref()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("memdesc-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memdesc-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_id_selects_its_members_only() {
        assert!(selects("S4", "S4"));
        assert!(selects("s4", "S4-cfrac"));
        assert!(selects("S4-cfrac", "S4-cfrac"));
        assert!(!selects("S4", "S1"));
        assert!(!selects("S1", "S1k"));
        assert!(!selects("S4-cfrac", "S4"));
        assert!(!selects("S4-c", "S4-cfrac"));
    }
}
