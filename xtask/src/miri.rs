//! `cargo xtask miri`: the core crate's unit tests under Miri.
//!
//! Miri interprets the tests and reports undefined behaviour the native
//! build cannot show: aliasing violations of the raw descriptor and frame
//! accesses, pointers used past their provenance, and data races and
//! weak-memory outcomes in the multi-threaded tests (`mt_tests`), which run
//! two or three CPUs as real threads.
//!
//! Two runs:
//!
//! 1. **Every unit test under Stacked Borrows with strict provenance.**
//!    Stacked Borrows is the stricter model for the patterns this crate
//!    has (references made from raw pointers into memory a `&mut [u8]`
//!    handed over, shared references to `UnsafeCell`-bearing descriptors),
//!    and it is the cheaper one here: the three-CPU allocation test takes
//!    about half as long as under Tree Borrows (16 s against 30 s or more).
//!    Strict provenance costs nothing extra and rejects integer-to-pointer
//!    casts, which the core must never need. The test binary is built
//!    once and its tests run in small chunks by exact name on two Miri
//!    processes at a time (Miri interprets a binary on one thread); each
//!    listed test must pass in exactly one chunk.
//! 2. **The multi-threaded tests under Tree Borrows**, with several
//!    scheduling seeds. Tree Borrows accepts some patterns Stacked Borrows
//!    rejects and rejects a few it accepts, so code that passes both is
//!    sound under either model; the threads are where those models matter
//!    most (shared descriptors reached from several CPUs), and a second
//!    seed lets Miri's scheduler and weak-memory emulation try other
//!    interleavings. Miri runs the seeds in parallel: two seeds take about
//!    a minute on two cores, four took three and a half. RCU's frame-head
//!    tests run here too (about 25 s): a head lives in a descriptor's
//!    owner words, which the free lists overwrite while the callback's
//!    reference to the head is live.
//!
//! Tests size themselves down under `cfg(miri)` (fewer rounds, proptest
//! ops); the proptest's case count comes from [`PROPTEST_CASES`] through
//! `-Zmiri-env-forward` (Miri hides the host environment), and proptest
//! needs `-Zmiri-isolation-error=warn-nobacktrace` because it calls
//! `getcwd` for its failure-persistence file. The whole step took 4 to 6
//! minutes on a busy two-core machine (66 tests: 195-266 s, then 55-111 s).
//!
//! Miri is a nightly-only component. The step first checks that
//! `cargo +nightly miri` runs and fails with the command that installs it
//! otherwise (`bash .ci/run` installs it on a fresh machine): a Miri step
//! that cannot run never passes silently. Each run must report at least one
//! passed test.

use crate::mutants::passed_tests;
use crate::steps::{Runner, Step};

/// The toolchain that has Miri.
const TOOLCHAIN: &str = "nightly";

/// Flags shared by both runs: proptest calls `getcwd` (a warning, not an
/// error, under isolation) and reads `PROPTEST_CASES`.
const COMMON_FLAGS: &str = "-Zmiri-isolation-error=warn-nobacktrace -Zmiri-env-forward=PROPTEST_CASES";

/// Proptest cases under Miri unless `MIRI_PROPTEST_CASES` is set (each case
/// boots a node and runs a few dozen operations under the interpreter).
const PROPTEST_CASES: &str = "4";

/// The tests run again under Tree Borrows, as libtest filters: the
/// multi-threaded tests, and RCU's frame heads (a head written into a
/// descriptor's owner words and overwritten by the free lists while a
/// reference to it is live).
const TREE_BORROWS_FILTERS: [&str; 2] = ["mt_tests::", "rcu::tests::frame"];

/// How many Miri processes run the Stacked Borrows chunks at a time (one
/// per core of the CI machine: Miri interprets a test binary on one
/// thread). `MIRI_WORKERS` overrides it.
const WORKERS: usize = 2;

/// Tests per chunk of the Stacked Borrows run: small enough that the
/// workers stay busy to the end (a few expensive tests take minutes), large
/// enough that Miri's start-up (about 3 s a process) stays a small share.
const CHUNK: usize = 6;

/// Scheduling seeds for the Tree Borrows run (`-Zmiri-many-seeds`).
const TREE_BORROWS_SEEDS: &str = "0..2";

/// Runs the core's unit tests under Miri; see the module docs.
pub fn run(runner: &mut Runner) -> Result<(), String> {
    check_installed(runner)?;
    let cases = std::env::var("MIRI_PROPTEST_CASES").unwrap_or_else(|_| PROPTEST_CASES.to_owned());

    stacked_sharded(runner, &cases)?;

    let tree = Step::cargo_on(
        TOOLCHAIN,
        "miri tree borrows",
        &["miri", "test", "-p", "memdesc", "--lib", "--", TREE_BORROWS_FILTERS[0], TREE_BORROWS_FILTERS[1]],
    )
    .env("MIRIFLAGS", &format!("{COMMON_FLAGS} -Zmiri-tree-borrows -Zmiri-many-seeds={TREE_BORROWS_SEEDS}"))
    .env("PROPTEST_CASES", &cases);
    expect_passed(runner, &tree)
}

/// The Stacked Borrows run of every unit test, on [`WORKERS`] Miri
/// processes at a time: the test binary is built once, its tests listed
/// and cut into chunks of [`CHUNK`] (strided, so each chunk mixes modules
/// and the expensive tests spread out), and each worker runs the next
/// chunk by exact name. Every listed test must pass (or be ignored) in
/// exactly one chunk, so the split can neither drop nor repeat a test.
fn stacked_sharded(runner: &mut Runner, cases: &str) -> Result<(), String> {
    let flags = format!("{COMMON_FLAGS} -Zmiri-strict-provenance");
    let miri_test = |name: &str, extra: &[&str]| {
        let mut args = vec!["miri", "test", "-p", "memdesc", "--lib"];
        args.extend_from_slice(extra);
        Step::cargo_on(TOOLCHAIN, name, &args).env("MIRIFLAGS", &flags).env("PROPTEST_CASES", cases)
    };
    runner.run(&miri_test("miri build", &["--no-run"]))?;
    let listed = runner.run_captured(&miri_test("miri list", &["--", "--list"]))?;
    runner.record("miri list", listed.elapsed, if listed.success { "ok" } else { "FAILED" });
    if !listed.success {
        eprint!("{}", listed.stderr);
        return Err("listing the tests under Miri failed".to_owned());
    }
    let tests = listed_tests(&listed.stdout);
    if tests.is_empty() {
        return Err("Miri listed no test".to_owned());
    }
    let workers = std::env::var("MIRI_WORKERS").ok().and_then(|n| n.parse().ok()).unwrap_or(WORKERS).max(1);
    let chunks = split(&tests, tests.len().div_ceil(CHUNK));
    let steps: Vec<Step> = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut extra = vec!["--", "--exact"];
            extra.extend(chunk.iter().map(String::as_str));
            miri_test(&format!("miri stacked chunk {}/{}: {}", i + 1, chunks.len(), chunk.join(" ")), &extra)
        })
        .collect();
    let start = std::time::Instant::now();
    let outcomes = runner.run_pool_captured(&steps, workers)?;
    let mut failed = Vec::new();
    let (mut passed_all, mut ignored_all) = (0, 0);
    for (i, (out, chunk)) in outcomes.into_iter().zip(&chunks).enumerate() {
        let passed = passed_tests(&out.stdout) + failed_run_passes(&out.stdout);
        let ignored = ignored_tests(&out.stdout);
        (passed_all, ignored_all) = (passed_all + passed, ignored_all + ignored);
        if !(out.success && passed + ignored == chunk.len()) {
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            failed.push(format!("chunk {} ({passed} passed, {ignored} ignored of {})", i + 1, chunk.len()));
        }
    }
    println!(
        "--- miri stacked: {passed_all} passed, {ignored_all} ignored of {} tests in {} chunks on {workers} workers",
        tests.len(),
        chunks.len()
    );
    runner.record("miri stacked", start.elapsed(), if failed.is_empty() { "ok" } else { "FAILED" });
    match failed.is_empty() {
        true => Ok(()),
        false => Err(format!("under Miri: {}", failed.join(", "))),
    }
}

/// How many tests a failed libtest run says passed (`test result:
/// FAILED. N passed`), for the failure message.
fn failed_run_passes(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("test result: FAILED. "))
        .filter_map(|rest| rest.split_once(" passed"))
        .filter_map(|(n, _)| n.trim().parse::<usize>().ok())
        .sum()
}

/// How many tests a libtest output says it ignored (those marked
/// `cfg_attr(miri, ignore)`).
fn ignored_tests(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("test result: "))
        .filter_map(|rest| rest.split("; ").find_map(|field| field.strip_suffix(" ignored")))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .sum()
}

/// The test names of a libtest `--list` output (`name: test` lines).
fn listed_tests(stdout: &str) -> Vec<String> {
    stdout.lines().filter_map(|line| line.strip_suffix(": test")).map(str::to_owned).collect()
}

/// Splits `tests` into `n` chunks, round robin over the sorted names, so
/// each chunk mixes modules and a module's expensive tests spread out.
fn split(tests: &[String], n: usize) -> Vec<Vec<String>> {
    let mut sorted = tests.to_vec();
    sorted.sort();
    let mut parts = vec![Vec::new(); n.min(sorted.len())];
    let len = parts.len();
    for (i, test) in sorted.into_iter().enumerate() {
        parts[i % len].push(test);
    }
    parts
}

/// Fails, saying how to install Miri, unless `cargo +nightly miri` runs.
fn check_installed(runner: &mut Runner) -> Result<(), String> {
    let step = Step::cargo_on(TOOLCHAIN, "miri installed", &["miri", "--version"]);
    let out = runner.run_captured(&step)?;
    if out.success {
        print!("{}", out.stdout);
        runner.record("miri installed", out.elapsed, "ok");
        return Ok(());
    }
    runner.record("miri installed", out.elapsed, "FAILED");
    eprint!("{}", out.stderr);
    Err(format!(
        "Miri cannot run on the {TOOLCHAIN} toolchain; install it with `rustup toolchain install {TOOLCHAIN} \
         --profile minimal && rustup component add --toolchain {TOOLCHAIN} miri rust-src` (bash .ci/run does)"
    ))
}

/// Runs `step` and fails unless it passed at least one test, so a filter
/// that matches nothing cannot pass silently.
fn expect_passed(runner: &mut Runner, step: &Step) -> Result<(), String> {
    let stdout = runner.run_tee(step)?;
    match passed_tests(&stdout) {
        0 => Err(format!("`{}` ran no test", step.display())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::{ignored_tests, listed_tests, split};

    #[test]
    fn ignored_tests_are_counted() {
        let out = "test result: ok. 3 passed; 0 failed; 2 ignored; 0 measured; 9 filtered out; finished in 1.0s\n";
        assert_eq!(ignored_tests(out), 2);
    }

    #[test]
    fn shards_cover_every_test_once() {
        let out = "buddy::a: test\nbuddy::b: test\nfolio::c: test\n\n3 tests, 0 benchmarks\n";
        let tests = listed_tests(out);
        assert_eq!(tests, ["buddy::a", "buddy::b", "folio::c"]);
        let parts = split(&tests, 2);
        assert_eq!(parts, [vec!["buddy::a".to_owned(), "folio::c".to_owned()], vec!["buddy::b".to_owned()]]);
        let mut all: Vec<String> = parts.concat();
        all.sort();
        assert_eq!(all, tests);
        assert_eq!(split(&tests, 8).len(), 3, "no empty shard");
    }
}
