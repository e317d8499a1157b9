//! Race replay: seed 000's races run by the real code in one forced
//! interleaving, printed as a step table with one column per CPU.
//!
//! A [`Scenario`] boots a small node on a [`ReplayPlatform`], sets the
//! frames up, and runs two or three threads, each bound as a CPU, through a
//! schedule of protocol steps (core failpoints, feature `failpoints`, and
//! the scenario's own actions). The driver grants one step at a time, and
//! after each describes what it did from the frames' state: a row of the
//! [`RaceReport`]. At the end the scenario validates what the getter holds
//! and gives a verdict.
//!
//! Each scenario runs in two [`Variant`]s: `fixed`, the code as it is, where
//! a recheck must refuse the reference; and `historical`, where the replay
//! answers Skip at the checks the pre-fix code lacked, and validation must
//! catch the getter holding a page that is not the one mapped — a reported
//! finding, never a crash. docs/RACES.md maps each row to the seed thread.

mod getter;
mod replay;
mod scenarios;
mod text;

pub use replay::{Act, ReplayError, ReplayPlatform, StepAt};

use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// How long a replay waits for a step before it gives up: generous, for a
/// loaded machine; a step normally takes microseconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which code the getter runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// The code before the fix: the replay skips the rechecks it lacked.
    Historical,
    /// The code as it is.
    Fixed,
}

impl Variant {
    /// Both, historical first.
    pub const ALL: [Variant; 2] = [Variant::Historical, Variant::Fixed];

    /// The variant's name on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Historical => "historical",
            Self::Fixed => "fixed",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A named race.
pub struct Scenario {
    /// Its name (`memdesc race NAME`).
    pub name: &'static str,
    /// One line: who races whom.
    pub summary: &'static str,
    run: fn(Variant, Duration) -> Result<RaceReport, RaceError>,
}

impl Scenario {
    /// Replays the race in `variant`.
    ///
    /// # Errors
    /// [`RaceError`] if the machine could not be set up or the schedule was
    /// not followed; a historical bug is not an error but the report's
    /// finding.
    pub fn run(&self, variant: Variant) -> Result<RaceReport, RaceError> {
        (self.run)(variant, DEFAULT_TIMEOUT)
    }

    /// As [`Scenario::run`], waiting at most `timeout` for each step.
    ///
    /// # Errors
    /// As [`Scenario::run`].
    pub fn run_with_timeout(&self, variant: Variant, timeout: Duration) -> Result<RaceReport, RaceError> {
        (self.run)(variant, timeout)
    }
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Every scenario, in the order `memdesc race list` prints them.
pub fn scenarios() -> &'static [Scenario] {
    scenarios::ALL
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    scenarios().iter().find(|s| s.name == name)
}

/// One replayed race: the step table and the outcome.
#[derive(Clone, Debug, Serialize)]
pub struct RaceReport {
    /// The scenario's name.
    pub scenario: &'static str,
    /// The variant replayed.
    pub variant: Variant,
    /// The scenario's one-line summary.
    pub summary: &'static str,
    /// Who the getter is, for the outcome lines (`GUP-fast`, `the
    /// scanner's isolate step`).
    pub actor: &'static str,
    /// One column per CPU: what each thread plays.
    pub cpus: Vec<CpuRole>,
    /// The steps in the order they ran (time runs down).
    pub rows: Vec<Row>,
    /// What the getter ended up with, and the verdict.
    pub outcome: Outcome,
}

impl RaceReport {
    /// Whether the variant behaved as it should: the fixed code refused the
    /// reference, or the historical code showed the bug and validation
    /// caught it, with nothing leaked either way.
    pub fn as_expected(&self) -> bool {
        self.outcome.as_expected
    }
}

/// A CPU's column.
#[derive(Clone, Debug, Serialize)]
pub struct CpuRole {
    /// The CPU.
    pub cpu: u32,
    /// What its thread plays (GUP-fast getter, splitter, ...).
    pub role: &'static str,
}

/// One step of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// 1-based position in time.
    pub index: usize,
    /// The CPU that ran it.
    pub cpu: u32,
    /// The docs/PROTOCOLS.md step (`P1.2`, `P2.1`, ...).
    pub protocol_step: &'static str,
    /// The failpoint or action that started it.
    pub at: String,
    /// What it did, read from the frames after it ran.
    pub text: String,
    /// The replay answered Skip here: the historical code's missing check.
    pub skipped: bool,
}

/// What GUP returned at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GetterResult {
    /// It holds a reference for `page`, on the folio headed at `folio`.
    Held {
        /// The page GUP says it holds (the run's first pfn).
        page: u64,
        /// The head of the folio the reference is on.
        folio: u64,
        /// That folio's order.
        order: u8,
    },
    /// It holds nothing (the slow path found no mapping).
    Failed {
        /// GUP's error.
        reason: String,
    },
}

/// What GUP-fast's own path did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FastPath {
    /// It gave up on the page and handed it to the slow path.
    pub fell_back: bool,
    /// The check that made it give up (`P1.4 head recheck`, ...), if one did.
    pub refused_by: Option<&'static str>,
}

/// The end of a replay.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The pfn the entry mapped when the getter read it.
    pub target_pfn: u64,
    /// What GUP returned.
    pub getter: GetterResult,
    /// How GUP-fast's lockless path ended.
    pub fast_path: FastPath,
    /// What validation found wrong with it (the historical bug), if anything.
    pub bug: Option<String>,
    /// Frames still allocated after every reference was dropped.
    pub leaked_frames: u64,
    /// Descriptor invariants the final audit found broken.
    pub violations: u64,
    /// Whether the variant behaved as it should.
    pub as_expected: bool,
    /// One line: what happened and whether that was expected.
    pub verdict: String,
}

/// Why a replay could not produce a report.
#[derive(Debug)]
pub enum RaceError {
    /// The arena could not be mapped.
    Map(std::io::Error),
    /// The node did not boot.
    Boot(memdesc::BootError),
    /// The frames could not be arranged as the scenario needs.
    Setup(String),
    /// The threads did not follow the schedule (or one panicked).
    Replay(ReplayError),
}

impl fmt::Display for RaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Map(e) => write!(f, "mapping the arena: {e}"),
            Self::Boot(e) => write!(f, "booting the node: {e}"),
            Self::Setup(e) => write!(f, "setting the race up: {e}"),
            Self::Replay(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RaceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Map(e) => Some(e),
            Self::Boot(e) => Some(e),
            Self::Setup(_) => None,
            Self::Replay(e) => Some(e),
        }
    }
}

impl From<ReplayError> for RaceError {
    fn from(e: ReplayError) -> Self {
        Self::Replay(e)
    }
}

#[cfg(test)]
mod tests;
