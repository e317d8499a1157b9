//! `memdesc`: boots a simulated machine on the memdesc core and runs a
//! workload on it, then prints what happened.
//!
//! `memdesc` with no arguments is `memdesc run` with the defaults: 4 GiB of
//! RAM, one CPU per host core, 10 seconds, a fresh seed (printed, so the run
//! can be repeated). The report goes to stdout, as text or (`--json`) as
//! JSON; a progress bar goes to stderr when it is a terminal. The exit code
//! (module `exit`) is 0 when the run passed (no violations, no leaked
//! frames, no bad pages), 1 when it did not, 2 when it could not run, 130
//! when Ctrl-C stopped it early with nothing wrong in what ran (the report
//! of what ran is printed, marked interrupted).
//!
//! `memdesc race list` names the seeds' races (000 and 004); `memdesc race NAME
//! [--variant historical|fixed] [--json]` replays one step by step (module
//! `race`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod args;
mod exit;
mod host;
mod interrupt;
mod progress;
mod race;
mod watchdog;

use args::{Command, RunArgs};
use memdesc_sim::SimConfig;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use watchdog::Watchdog;

fn main() -> ExitCode {
    let cli = args::parse();
    match cli.command {
        Some(Command::Run(args)) => run(&args),
        Some(Command::Race(args)) => race::run(&args),
        None => run(&cli.run),
    }
}

/// Runs one simulation and prints its report.
fn run(args: &RunArgs) -> ExitCode {
    let interrupt = Arc::new(AtomicBool::new(false));
    if let Err(e) = interrupt::catch_sigint(&interrupt) {
        eprintln!("memdesc: cannot catch Ctrl-C ({e}); it will end the run without a report");
    }
    let cpus = args.cpus.unwrap_or_else(args::default_cpus);
    let seed = args.seed.unwrap_or_else(args::fresh_seed);
    let config =
        SimConfig::new(args.mem, cpus, args.duration, seed).with_workload(args.profile).with_hot_add(args.hot_add);
    if let Some(warning) = host::available_bytes().and_then(|free| host::warning(config.ram_bytes, free)) {
        eprintln!("memdesc: {warning}");
    }
    let bar = progress::Bar::new(config.duration);
    let watchdog = Watchdog::start(config.duration + grace(config.ram_bytes));
    let result = memdesc_sim::run_interruptible(&config, &interrupt, |p| {
        bar.update(p);
        watchdog.heard(p);
    });
    bar.finish();
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("memdesc: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("memdesc: cannot serialise the report: {e}");
                return ExitCode::from(exit::USAGE);
            }
        }
    } else {
        print!("{report}");
    }
    ExitCode::from(if !report.passed() {
        exit::FAILED
    } else if report.interrupted {
        exit::INTERRUPTED
    } else {
        exit::PASSED
    })
}

/// How long a run may last past its deadline: far more than freeing
/// everything and auditing every descriptor need (well under a second per
/// GiB).
fn grace(ram_bytes: u64) -> Duration {
    Duration::from_secs(30 + 5 * (ram_bytes >> 30))
}
