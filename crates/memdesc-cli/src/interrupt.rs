//! Ctrl-C: the first SIGINT asks the run to stop, so it tears down, audits
//! and prints the report of what ran; a second one ends the process at
//! once, in case the teardown is what hangs.

use crate::exit;
use signal_hook::consts::SIGINT;
use signal_hook::flag;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Sets `interrupt` on the first SIGINT, and exits with
/// [`exit::INTERRUPTED`] on the next.
///
/// # Errors
/// The host refused to install the handler.
pub fn catch_sigint(interrupt: &Arc<AtomicBool>) -> io::Result<()> {
    // The shutdown goes first: on the first signal it finds the flag clear
    // and does nothing, then the flag is set; on the second it exits.
    flag::register_conditional_shutdown(SIGINT, exit::INTERRUPTED.into(), Arc::clone(interrupt))?;
    flag::register(SIGINT, Arc::clone(interrupt))?;
    Ok(())
}
