//! What the tests share: a temporary directory, and running a command with
//! and without the preload to compare them.

use memdesc_preload::{run, Preload};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long one command may run before the test fails (a hang under the
/// preload, a deadlock at fork, must fail rather than stall CI).
pub const LIMIT: Duration = Duration::from_secs(180);

/// The preload library under test: ours. Panics (failing the test) when it
/// cannot be found or built.
pub fn preload_library() -> Preload {
    match Preload::memdesc() {
        Ok(p) => p,
        Err(e) => panic!("libmemdesc_malloc.so is needed by these tests and could not be had: {e}"),
    }
}

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `test` (and a number, unique in
    /// this process: tests run in parallel).
    pub fn new(test: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Relaxed: a counter that only has to hand out distinct numbers.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("memdesc-preload-{test}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a test shows that the preloaded library served the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// The library's own report on standard error (`MEMDESC_STATS=1`),
    /// printed at exit.
    Report,
    /// The dynamic linker's log of symbol bindings (`LD_DEBUG=bindings`,
    /// written to files): `malloc` bound to the library. For programs that
    /// close standard error before the library's exit report (coreutils'
    /// `close_stdout` closes both streams in an atexit handler).
    Bindings,
}

/// Runs `cmd` (built fresh by `make` for each run) without the library and
/// then under it, and asserts the same status and output, a successful exit,
/// and `proof` that the library served it. Returns the standard output.
pub fn same_under_preload(what: &str, proof: Proof, make: impl Fn() -> Command) -> String {
    let preload = preload_library();
    let plain = run::command(make(), None, LIMIT).unwrap_or_else(|e| panic!("{what} without the preload: {e}"));
    assert!(plain.status.success(), "{what} fails even without the preload ({}):\n{}", plain.status, plain.stderr);
    assert!(plain.report.is_empty(), "{what}: a memdesc report without the preload: {:?}", plain.report);
    let log = TempDir::new("ld-debug");
    let mut cmd = make();
    if proof == Proof::Bindings {
        cmd.env("LD_DEBUG", "bindings").env("LD_DEBUG_OUTPUT", log.path().join("ld"));
    }
    let ours = run::command(cmd, Some(&preload), LIMIT).unwrap_or_else(|e| panic!("{what} under the preload: {e}"));
    check_same(what, &plain, &ours, &preload, proof == Proof::Report);
    if proof == Proof::Bindings {
        check_bound(what, log.path(), &preload);
    }
    ours.stdout
}

/// Asserts that `ours` (run under `preload`) did what `plain` did and, if
/// `report`, that the library reported itself.
pub fn check_same(what: &str, plain: &run::Outcome, ours: &run::Outcome, preload: &Preload, report: bool) {
    assert_eq!(
        ours.status, plain.status,
        "{what}: exit status under {} differs; its stderr:\n{}",
        preload.name, ours.stderr
    );
    assert!(
        !report || !ours.report.is_empty(),
        "{what}: no `{}` line on stderr under {}={}: the library {} was not loaded or not active",
        preload.marker,
        preload.report_env.0,
        preload.report_env.1,
        preload.library.display()
    );
    assert!(
        ours.stdout == plain.stdout,
        "{what}: stdout differs under {}:\n--- without\n{}\n--- with\n{}",
        preload.name,
        tail(&plain.stdout),
        tail(&ours.stdout)
    );
    assert!(
        ours.stderr == plain.stderr,
        "{what}: stderr differs under {}:\n--- without\n{}\n--- with\n{}",
        preload.name,
        tail(&plain.stderr),
        tail(&ours.stderr)
    );
}

/// Asserts that the dynamic linker's binding log in `dir` (files `ld.<pid>`)
/// shows `malloc` bound to `preload`'s library.
fn check_bound(what: &str, dir: &Path, preload: &Preload) {
    let library = format!("to {} [", preload.library.display());
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{what}: reading the LD_DEBUG log: {e}"));
    let bound = entries.filter_map(Result::ok).any(|entry| {
        let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
        log.lines().any(|line| line.contains(&library) && line.contains("symbol `malloc'"))
    });
    assert!(bound, "{what}: the dynamic linker did not bind malloc to {}", preload.library.display());
}

/// The last 40 lines of `text`, for failure messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
