//! `memdesc`: boots a simulated machine on the memdesc core and runs a
//! workload on it, then prints what happened.
//!
//! `memdesc` with no arguments is `memdesc run` with the defaults: 4 GiB of
//! RAM, one CPU per host core, 10 seconds, a fresh seed (printed, so the run
//! can be repeated). The report goes to stdout, as text or (`--json`) as
//! JSON; a progress bar goes to stderr when it is a terminal. The exit code
//! is 0 when the run passed (no violations, no leaked frames, no bad pages),
//! 1 when it did not, 2 when it could not run.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod args;
mod progress;
mod watchdog;

use args::{Cli, Command, RunArgs};
use clap::Parser;
use memdesc_sim::SimConfig;
use std::process::ExitCode;
use std::time::Duration;
use watchdog::Watchdog;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Run(args)) => run(&args),
        None => run(&cli.run),
    }
}

/// Runs one simulation and prints its report.
fn run(args: &RunArgs) -> ExitCode {
    let cpus = args.cpus.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let seed = args.seed.unwrap_or_else(args::fresh_seed);
    let config = SimConfig::new(args.mem, cpus, args.duration, seed);
    let bar = progress::Bar::new(config.duration);
    let watchdog = Watchdog::start(config.duration + grace(config.ram_bytes));
    let result = memdesc_sim::run(&config, |p| {
        bar.update(p);
        watchdog.heard(p);
    });
    bar.finish();
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("memdesc: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("memdesc: cannot serialise the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{report}");
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// How long a run may last past its deadline: far more than freeing
/// everything and auditing every descriptor need (well under a second per
/// GiB).
fn grace(ram_bytes: u64) -> Duration {
    Duration::from_secs(30 + 5 * (ram_bytes >> 30))
}
