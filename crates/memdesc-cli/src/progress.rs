//! The progress bar: elapsed over total time and the current rate, on
//! stderr when it is a terminal, so piped or redirected runs (and `--json`
//! on stdout) stay clean.
//!
//! The bar stops [`MARGIN`] columns short of the terminal's edge. indicatif
//! pads its line to the full width, leaving the cursor at the edge, so the
//! terminal's `^C` echo would wrap onto a line of its own and the bar's
//! final clear would erase only that one, leaving a stale bar above the
//! report. With the margin the echo lands on the bar's line and is cleared
//! with it.

use console::Term;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use memdesc_sim::{Phase, Progress};
use std::io;
use std::time::Duration;

/// Columns left free at the right edge: room for the two characters of `^C`.
const MARGIN: u16 = 2;
/// Redraws per second at most.
const REFRESH_HZ: u8 = 20;

/// A progress bar over the run's duration, in milliseconds.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar for a run of `duration` (hidden unless stderr is a terminal).
    pub fn new(duration: Duration) -> Self {
        let term = Term::stderr();
        let target = if term.is_term() {
            ProgressDrawTarget::term_like_with_hz(Box::new(Narrower(term)), REFRESH_HZ)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(duration.as_millis() as u64), target);
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

/// The terminal, reported [`MARGIN`] columns narrower than it is.
#[derive(Debug)]
struct Narrower(Term);

impl TermLike for Narrower {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(MARGIN).max(1)
    }

    fn height(&self) -> u16 {
        self.0.size().0
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_up(n)
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_down(n)
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_right(n)
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_left(n)
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.0.write_line(s)
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.0.write_str(s)
    }

    fn clear_line(&self) -> io::Result<()> {
        self.0.clear_line()
    }

    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}
