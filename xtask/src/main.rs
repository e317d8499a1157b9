//! Project automation for memdesc, run as `cargo xtask <command>`.
//!
//! CI runs only `cargo xtask ci`, so green locally means green in CI. Every
//! command prints each step before running it (`==> cargo clippy ...`), stops
//! at the first failing step, and ends with a table of step timings.
//!
//! The workspace root is this crate's parent directory; all steps run there.

#![forbid(unsafe_code)]

mod miri;
mod mutants;
mod steps;
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

use steps::{Runner, Step};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  ci              everything CI checks: tidy, fmt, clippy, doc, test, example, count-rmw, loom, mutants,
                  miri
                  (and the core alone without its failpoints feature: clippy, doc tests)
  tidy            static checks: layering, atomics, unsafe allowlist, SAFETY and ordering comments
  loom            loom models of the core crate and of memdesc-alloc's fork gate
                  (release, RUSTFLAGS=\"--cfg memdesc_loom\")
  miri            the core crate's unit tests under Miri (needs `rustup component add
                  --toolchain nightly miri rust-src`; fails if Miri cannot run)
  mutants [NAME]  check that the loom models catch each mutant (all, or only the named ones)
  bench [ARGS]    run memdesc-bench, write BENCHMARKS.md and target/bench/results.json;
                  ARGS are forwarded to the bench binary
  help            print this message
";

/// Target directory shared by `loom` and `mutants`, so loom compiles once.
const LOOM_TARGET_DIR: &str = "target/loom";

/// Preemption bound for `loom` unless `LOOM_MAX_PREEMPTIONS` is already set.
const LOOM_MAX_PREEMPTIONS: &str = "3";

/// Proptest case count for `ci`'s test step unless `PROPTEST_CASES` is set.
const PROPTEST_CASES: &str = "256";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let command = command.as_str();
    let mut runner = Runner::new(workspace_root());
    let result = match (command, rest) {
        ("ci", []) => ci(&mut runner),
        ("tidy", []) => tidy(&mut runner),
        ("loom", []) => loom(&mut runner),
        ("miri", []) => miri::run(&mut runner),
        ("mutants", names) => mutants::run(&mut runner, names),
        ("bench", extra) => bench(&mut runner, extra),
        ("help" | "-h" | "--help", []) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("xtask: unknown command or arguments: {}", args.join(" "));
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    runner.print_summary();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {command}: FAILED: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Returns the workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match manifest_dir.parent() {
        Some(root) => root.to_path_buf(),
        None => manifest_dir,
    }
}

/// Runs every check CI runs, in order, stopping at the first failure.
fn ci(runner: &mut Runner) -> Result<(), String> {
    tidy(runner)?;
    runner.run(&Step::cargo("fmt", &["fmt", "--all", "--", "--check"]))?;
    runner.run(&Step::cargo("clippy", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    // The workspace build has the core's `failpoints` feature (memdesc-sim
    // enables it); check the core as an embedder builds it, without.
    runner.run(&Step::cargo("clippy-core", &["clippy", "-p", "memdesc", "--all-targets", "--", "-D", "warnings"]))?;
    runner.run(&Step::cargo("doc", &["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings"))?;
    runner.run(&Step::cargo("test", &["test", "--workspace"]).env_default("PROPTEST_CASES", PROPTEST_CASES))?;
    // Without the feature: the doc test in platform::failpoints that must
    // not compile (no failpoint hook in a production core).
    runner.run(&Step::cargo("doctest-core", &["test", "-p", "memdesc", "--doc"]))?;
    // The embedder's tour asserts as it goes: running it is its test.
    runner.run(&Step::cargo("example", &["run", "-p", "memdesc", "--example", "tour"]))?;
    count_rmw(runner)?;
    loom(runner)?;
    mutants::run(runner, &[])?;
    miri::run(runner)
}

/// Target directory of the `count-rmw` step (its RUSTFLAGS rebuild the
/// core's test dependencies once, kept apart from the normal build).
const COUNT_RMW_TARGET_DIR: &str = "target/count-rmw";

/// Runs the tests that count locked instructions on the per-CPU fast paths
/// (the slab's sheaves, the page allocator's order-0 pairs): the core's lib
/// tests under `--cfg memdesc_count_rmw`, filtered to them.
fn count_rmw(runner: &mut Runner) -> Result<(), String> {
    runner.run(
        &Step::cargo(
            "count-rmw",
            &["test", "-p", "memdesc", "--lib", "--", "no_locked_instruction", "one_locked_instruction"],
        )
        .env("RUSTFLAGS", "--cfg memdesc_count_rmw")
        .env("CARGO_TARGET_DIR", COUNT_RMW_TARGET_DIR),
    )
}

/// Runs the static checks of [`mod@tidy`] as one step.
fn tidy(runner: &mut Runner) -> Result<(), String> {
    let root = runner.root().to_path_buf();
    runner.run_in_process("tidy", || tidy::run(&root))
}

/// Runs the core crate's loom models, then memdesc-alloc's (the fork gate;
/// same target directory and flags, so the core is not rebuilt).
fn loom(runner: &mut Runner) -> Result<(), String> {
    runner.run(
        &loom_env(Step::cargo(
            "loom",
            &["test", "-p", "memdesc", "--release", "--lib", "loom", "--", "--test-threads=2"],
        ))
        .env_default("LOOM_MAX_PREEMPTIONS", LOOM_MAX_PREEMPTIONS),
    )?;
    runner.run(
        &loom_env(Step::cargo(
            "loom-alloc",
            &["test", "-p", "memdesc-alloc", "--release", "--lib", "loom", "--", "--test-threads=2"],
        ))
        .env_default("LOOM_MAX_PREEMPTIONS", LOOM_MAX_PREEMPTIONS),
    )
}

/// Adds the environment every loom build shares (`loom` and `mutants`).
fn loom_env(step: Step) -> Step {
    step.env("RUSTFLAGS", "--cfg memdesc_loom").env("CARGO_TARGET_DIR", LOOM_TARGET_DIR)
}

/// Runs the benchmark binary, forwarding `extra` arguments to it.
fn bench(runner: &mut Runner, extra: &[String]) -> Result<(), String> {
    let dir = runner.root().join("target").join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut args = vec![
        "run",
        "--release",
        "-p",
        "memdesc-bench",
        "--",
        "--json",
        "target/bench/results.json",
        "--markdown",
        "BENCHMARKS.md",
    ];
    args.extend(extra.iter().map(String::as_str));
    runner.run(&Step::cargo("bench", &args))
}
