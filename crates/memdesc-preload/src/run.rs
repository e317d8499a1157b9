//! Running a command with or without a preloaded allocator, with a time
//! limit, and capturing what it did.

use crate::build::{self, BuildError};
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A malloc library to preload, and how to see that it is active.
#[derive(Clone, Debug)]
pub struct Preload {
    /// A short name for reports (`memdesc`, `mimalloc`).
    pub name: &'static str,
    /// The shared library put in `LD_PRELOAD`.
    pub library: PathBuf,
    /// The environment variable that makes the library report itself on
    /// standard error, with its value.
    pub report_env: (&'static str, &'static str),
    /// How each line of that report starts.
    pub marker: &'static str,
}

impl Preload {
    /// Our `libmemdesc_malloc.so` ([`build::memdesc_malloc`]), which prints
    /// `memdesc:` lines under `MEMDESC_STATS=1`.
    ///
    /// # Errors
    /// When the library cannot be found or built.
    pub fn memdesc() -> Result<Preload, BuildError> {
        Ok(Preload {
            name: "memdesc",
            library: build::memdesc_malloc()?,
            report_env: ("MEMDESC_STATS", "1"),
            marker: "memdesc:",
        })
    }

    /// mimalloc's library ([`build::mimalloc`]), which prints `mimalloc:`
    /// lines under `MIMALLOC_VERBOSE=1`.
    ///
    /// # Errors
    /// When the library cannot be built.
    pub fn mimalloc(out_dir: &Path) -> Result<Preload, BuildError> {
        Ok(Preload {
            name: "mimalloc",
            library: build::mimalloc(out_dir)?,
            report_env: ("MIMALLOC_VERBOSE", "1"),
            marker: "mimalloc:",
        })
    }
}

/// What a command did.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error, without the preloaded library's report lines.
    pub stderr: String,
    /// The report lines the preloaded library printed (lines starting with
    /// its marker), or, without a preload, lines starting with `memdesc:`
    /// (there should be none).
    pub report: Vec<String>,
    /// Wall time from spawn to exit.
    pub wall: Duration,
}

/// Why a command could not be run to its end.
#[derive(Debug)]
pub enum RunError {
    /// It could not be started.
    Spawn {
        /// The command.
        what: String,
        /// The error from the operating system.
        error: io::Error,
    },
    /// It ran past its time limit and was killed.
    Timeout {
        /// The command.
        what: String,
        /// The limit.
        limit: Duration,
        /// What it had printed on standard error by then.
        stderr: String,
    },
    /// Waiting for it failed.
    Wait(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spawn { what, error } => write!(f, "could not start `{what}`: {error}"),
            RunError::Timeout { what, limit, stderr } => {
                write!(f, "`{what}` still running after {limit:?}, killed; its stderr:\n{stderr}")
            }
            RunError::Wait(error) => write!(f, "waiting for a child: {error}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Reads a child's pipe to the end on a thread of its own, so neither pipe
/// fills while the other is read.
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Waits for `child` until `limit`; kills it past the limit.
fn wait_until(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>, RunError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(RunError::Wait)? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` to its end, under `preload` if given (its report switched on),
/// with no standard input, killing it after `limit`.
///
/// `LD_PRELOAD` is removed from the environment without a preload, so the
/// baseline never inherits one.
///
/// # Errors
/// [`RunError::Spawn`] if it cannot start, [`RunError::Timeout`] if it
/// outlives `limit`.
pub fn command(mut cmd: Command, preload: Option<&Preload>, limit: Duration) -> Result<Outcome, RunError> {
    match preload {
        Some(p) => {
            cmd.env("LD_PRELOAD", &p.library).env(p.report_env.0, p.report_env.1);
        }
        None => {
            cmd.env_remove("LD_PRELOAD");
        }
    }
    let marker = preload.map_or("memdesc:", |p| p.marker);
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|error| RunError::Spawn { what: what.clone(), error })?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_until(&mut child, limit)?;
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr_all = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    let Some(status) = status else {
        return Err(RunError::Timeout { what, limit, stderr: stderr_all });
    };
    let (report, rest): (Vec<&str>, Vec<&str>) = stderr_all.lines().partition(|l| l.starts_with(marker));
    let mut stderr = rest.join("\n");
    if !rest.is_empty() {
        stderr.push('\n');
    }
    Ok(Outcome { status, stdout, stderr, report: report.into_iter().map(str::to_owned).collect(), wall })
}
