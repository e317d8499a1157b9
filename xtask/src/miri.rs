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
//!    casts, which the core must never need. 3.5 to 4.5 minutes.
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

/// Scheduling seeds for the Tree Borrows run (`-Zmiri-many-seeds`).
const TREE_BORROWS_SEEDS: &str = "0..2";

/// Runs the core's unit tests under Miri; see the module docs.
pub fn run(runner: &mut Runner) -> Result<(), String> {
    check_installed(runner)?;
    let cases = std::env::var("MIRI_PROPTEST_CASES").unwrap_or_else(|_| PROPTEST_CASES.to_owned());

    let stacked = Step::cargo_on(TOOLCHAIN, "miri", &["miri", "test", "-p", "memdesc", "--lib"])
        .env("MIRIFLAGS", &format!("{COMMON_FLAGS} -Zmiri-strict-provenance"))
        .env("PROPTEST_CASES", &cases);
    expect_passed(runner, &stacked)?;

    let tree = Step::cargo_on(
        TOOLCHAIN,
        "miri tree borrows",
        &["miri", "test", "-p", "memdesc", "--lib", "--", TREE_BORROWS_FILTERS[0], TREE_BORROWS_FILTERS[1]],
    )
    .env("MIRIFLAGS", &format!("{COMMON_FLAGS} -Zmiri-tree-borrows -Zmiri-many-seeds={TREE_BORROWS_SEEDS}"))
    .env("PROPTEST_CASES", &cases);
    expect_passed(runner, &tree)
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
