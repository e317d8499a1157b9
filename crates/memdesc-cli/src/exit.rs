//! The exit status of `memdesc`, as `--help` and the README state it.

/// The run passed: no violations, no leaked frames, no bad pages.
pub const PASSED: u8 = 0;
/// The run failed: violations, leaked frames or bad pages (interrupted or
/// not), or it hung and the watchdog ended it.
pub const FAILED: u8 = 1;
/// Bad usage (clap's own code for it), or the machine could not start.
pub const USAGE: u8 = 2;
/// Ctrl-C (SIGINT) stopped the run early and nothing was wrong in what ran;
/// 128 + SIGINT, as shells report a process that SIGINT killed.
pub const INTERRUPTED: u8 = 130;
