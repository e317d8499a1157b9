//! Integration tests of the simulator: short runs of the whole machine.

mod config;
mod gup;
mod interrupt;
mod mixed;
mod slab;

use memdesc_sim::{Report, SimConfig};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `config` on a thread of its own and returns its report, failing the
/// test if it takes far longer than asked (a hung audit or CPU).
fn run(config: SimConfig) -> Report {
    let limit = config.duration + Duration::from_secs(60);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(memdesc_sim::run(&config, |_| {}));
    });
    match rx.recv_timeout(limit) {
        Ok(result) => result.expect("the simulation did not run"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the simulation did not finish within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the simulation panicked (see above)"),
    }
}
