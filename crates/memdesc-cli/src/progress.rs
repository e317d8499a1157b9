//! The progress bar: elapsed over total time and the current rate, on
//! stderr. indicatif draws nothing when stderr is not a terminal, so piped
//! or redirected runs (and `--json` on stdout) stay clean.

use indicatif::{ProgressBar, ProgressStyle};
use memdesc_sim::{Phase, Progress};
use std::time::Duration;

/// A progress bar over the run's duration, in milliseconds.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar for a run of `duration` (hidden unless stderr is a terminal).
    pub fn new(duration: Duration) -> Self {
        let bar = ProgressBar::new(duration.as_millis() as u64);
        let style = ProgressStyle::with_template("{spinner} [{bar:40}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        Self { bar }
    }

    /// Shows `p`.
    pub fn update(&self, p: &Progress) {
        self.bar.set_position(p.elapsed.as_millis() as u64);
        let time = format!("{:.1}/{:.1} s", p.elapsed.as_secs_f64(), p.duration.as_secs_f64());
        let msg = match p.phase {
            Phase::Running => format!("{time}  {:.0} k ops/s", p.ops_per_s / 1e3),
            Phase::Teardown => format!("{time}  freeing everything"),
            Phase::Audit => format!("{time}  auditing"),
        };
        self.bar.set_message(msg);
    }

    /// Removes the bar, so the report starts on a clean line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
