//! Steps and the runner that prints, times and records them.
//!
//! A [`Step`] is one cargo invocation with its environment. The [`Runner`]
//! echoes it as a shell line (`==> RUSTFLAGS="--cfg memdesc_loom" cargo test
//! ...`), runs it in the workspace root, and keeps its timing for the summary
//! printed when the command ends, successful or not.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One cargo invocation: a short name for the summary, the toolchain if not
/// the one running xtask, arguments, environment.
pub struct Step {
    name: String,
    toolchain: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Step {
    /// Creates a step running `cargo <args>`, listed as `name` in the summary.
    pub fn cargo(name: &str, args: &[&str]) -> Step {
        Step {
            name: name.to_owned(),
            toolchain: None,
            args: args.iter().map(|&a| a.to_owned()).collect(),
            env: Vec::new(),
        }
    }

    /// Creates a step running `cargo +<toolchain> <args>` through rustup's
    /// `cargo` proxy on `PATH` (for tools only another toolchain has, such
    /// as Miri on nightly).
    pub fn cargo_on(toolchain: &str, name: &str, args: &[&str]) -> Step {
        Step { toolchain: Some(toolchain.to_owned()), ..Step::cargo(name, args) }
    }

    /// Sets `key=value` in the step's environment.
    pub fn env(mut self, key: &str, value: &str) -> Step {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets `key=default` unless the caller's environment already sets `key`,
    /// in which case that value is kept (and echoed).
    pub fn env_default(self, key: &str, default: &str) -> Step {
        match std::env::var(key) {
            Ok(value) => self.env(key, &value),
            Err(_) => self.env(key, default),
        }
    }

    /// Returns the shell line echoed before the step runs.
    pub fn display(&self) -> String {
        let mut line = String::new();
        for (key, value) in &self.env {
            let _ = write!(line, "{key}={} ", shell_quote(value));
        }
        line.push_str("cargo");
        if let Some(toolchain) = &self.toolchain {
            let _ = write!(line, " +{toolchain}");
        }
        for arg in &self.args {
            let _ = write!(line, " {}", shell_quote(arg));
        }
        line
    }
}

/// Quotes `word` for display if a shell would split it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The outcome of a step whose output was captured.
pub struct Captured {
    /// Whether the process exited successfully.
    pub success: bool,
    /// Its standard output, lossily decoded.
    pub stdout: String,
    /// Its standard error, lossily decoded.
    pub stderr: String,
    /// Wall-clock time the step took.
    pub elapsed: Duration,
}

/// One line of the closing summary.
struct Record {
    name: String,
    elapsed: Duration,
    outcome: &'static str,
}

/// Runs steps in the workspace root and records their timings.
pub struct Runner {
    root: PathBuf,
    cargo: OsString,
    records: Vec<Record>,
}

impl Runner {
    /// Creates a runner for the workspace at `root`.
    pub fn new(root: PathBuf) -> Runner {
        // `cargo xtask` runs under cargo, which names itself in $CARGO; use the
        // same toolchain for every step.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        Runner { root, cargo, records: Vec::new() }
    }

    /// Returns the workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `step` with inherited output; fails if it fails.
    pub fn run(&mut self, step: &Step) -> Result<(), String> {
        println!("==> {}", step.display());
        let start = Instant::now();
        let status = self.command(step).status();
        let elapsed = start.elapsed();
        let result = match status {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("`{}` failed ({status})", step.display())),
            Err(e) => Err(format!("could not start `{}`: {e}", step.display())),
        };
        self.record(&step.name, elapsed, if result.is_ok() { "ok" } else { "FAILED" });
        result
    }

    /// Runs `step` with its output captured rather than shown. The caller
    /// judges the outcome and records it with [`Runner::record`].
    pub fn run_captured(&mut self, step: &Step) -> Result<Captured, String> {
        println!("==> {}", step.display());
        let start = Instant::now();
        let output = self.command(step).output().map_err(|e| format!("could not start `{}`: {e}", step.display()))?;
        Ok(Captured {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed: start.elapsed(),
        })
    }

    /// Runs `step` with its standard output shown as it comes and also
    /// returned (standard error is inherited); records it as `ok` or
    /// `FAILED`. For long steps whose output the caller must check.
    pub fn run_tee(&mut self, step: &Step) -> Result<String, String> {
        println!("==> {}", step.display());
        let start = Instant::now();
        let result = self.tee(step);
        let elapsed = start.elapsed();
        self.record(&step.name, elapsed, if result.is_ok() { "ok" } else { "FAILED" });
        result
    }

    fn tee(&self, step: &Step) -> Result<String, String> {
        let mut child = self
            .command(step)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start `{}`: {e}", step.display()))?;
        let mut stdout = String::new();
        if let Some(pipe) = child.stdout.take() {
            for line in BufReader::new(pipe).lines() {
                let line = line.map_err(|e| format!("reading the output of `{}`: {e}", step.display()))?;
                println!("{line}");
                stdout.push_str(&line);
                stdout.push('\n');
            }
        }
        let status = child.wait().map_err(|e| format!("waiting for `{}`: {e}", step.display()))?;
        if status.success() {
            Ok(stdout)
        } else {
            Err(format!("`{}` failed ({status})", step.display()))
        }
    }

    /// Runs `steps` on `workers` threads, each taking the next step not yet
    /// started, with every output captured; returns the outcomes in the
    /// order of `steps` once all have ended. The caller judges and records
    /// them (as after [`Runner::run_captured`]).
    pub fn run_pool_captured(&mut self, steps: &[Step], workers: usize) -> Result<Vec<Captured>, String> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Mutex;
        let next = AtomicUsize::new(0);
        let outcomes: Mutex<Vec<Option<Result<Captured, String>>>> = Mutex::new(steps.iter().map(|_| None).collect());
        let this = &*self;
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| loop {
                    // Relaxed: a ticket counter; the outcomes are handed
                    // back through the mutex and the scope's join.
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(step) = steps.get(i) else { break };
                    println!("==> [{}/{}] {}", i + 1, steps.len(), step.name);
                    let start = Instant::now();
                    let outcome = this
                        .command(step)
                        .output()
                        .map(|output| Captured {
                            success: output.status.success(),
                            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                            elapsed: start.elapsed(),
                        })
                        .map_err(|e| format!("could not start `{}`: {e}", step.display()));
                    outcomes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[i] = Some(outcome);
                });
            }
        });
        let outcomes = outcomes.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        outcomes.into_iter().map(|o| o.unwrap_or_else(|| Err("a step never ran".to_owned()))).collect()
    }

    /// Runs an in-process step named `name` and records its timing.
    pub fn run_in_process(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        println!("==> {name}");
        let start = Instant::now();
        let result = f();
        let outcome = if result.is_ok() { "ok" } else { "FAILED" };
        self.record(name, start.elapsed(), outcome);
        result
    }

    /// Adds a line to the closing summary.
    pub fn record(&mut self, name: &str, elapsed: Duration, outcome: &'static str) {
        self.records.push(Record { name: name.to_owned(), elapsed, outcome });
    }

    /// Prints the timing of every step run so far, and the total.
    pub fn print_summary(&self) {
        if self.records.is_empty() {
            return;
        }
        println!("==> summary");
        let width = self.records.iter().map(|r| r.name.len()).fold("total".len(), usize::max);
        let mut total = Duration::ZERO;
        for r in &self.records {
            total += r.elapsed;
            println!("    {:<width$}  {:>8}  {}", r.name, seconds(r.elapsed), r.outcome);
        }
        println!("    {:<width$}  {:>8}", "total", seconds(total));
    }

    fn command(&self, step: &Step) -> Command {
        let mut command = match &step.toolchain {
            // rustup's proxy picks the toolchain from `+name`.
            Some(toolchain) => {
                let mut command = Command::new("cargo");
                command.arg(format!("+{toolchain}"));
                command
            }
            None => Command::new(&self.cargo),
        };
        command.args(&step.args).current_dir(&self.root);
        for (key, value) in &step.env {
            command.env(key, value);
        }
        command
    }
}

/// Formats a duration as seconds with one decimal: `12.3 s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
