//! `memdesc race`: list the races, or replay one and print its step table.

use crate::args::RaceArgs;
use crate::exit;
use memdesc_sim::race::{self, RaceError, RaceReport, Variant};
use std::process::ExitCode;

/// Runs `memdesc race` with `args`.
pub fn run(args: &RaceArgs) -> ExitCode {
    if args.name == "list" {
        return list(args.json);
    }
    // The parser admits only known names.
    let Some(scenario) = race::find(&args.name) else {
        eprintln!("memdesc: no race called {:?}; `memdesc race list` names them", args.name);
        return ExitCode::from(exit::USAGE);
    };
    let variants: Vec<Variant> = match args.variant {
        Some(v) => vec![v.into()],
        None => Variant::ALL.to_vec(),
    };
    let mut reports: Vec<RaceReport> = Vec::new();
    for variant in variants {
        match scenario.run(variant) {
            Ok(report) => reports.push(report),
            Err(e) => {
                eprintln!("memdesc: race {} ({variant}): {e}", scenario.name);
                return ExitCode::from(match e {
                    RaceError::Map(_) | RaceError::Boot(_) => exit::USAGE,
                    RaceError::Setup(_) | RaceError::Replay(_) => exit::FAILED,
                });
            }
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&reports) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("memdesc: cannot serialise the reports: {e}");
                return ExitCode::from(exit::USAGE);
            }
        }
    } else {
        let text: Vec<String> = reports.iter().map(RaceReport::to_string).collect();
        print!("{}", text.join("\n"));
    }
    ExitCode::from(if reports.iter().all(RaceReport::as_expected) { exit::PASSED } else { exit::FAILED })
}

/// Prints every race's name and summary.
fn list(json: bool) -> ExitCode {
    let scenarios = race::scenarios();
    if json {
        let list: Vec<_> =
            scenarios.iter().map(|s| serde_json::json!({ "name": s.name, "summary": s.summary })).collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        let width = scenarios.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in scenarios {
            println!("{:<width$}  {}", s.name, s.summary);
        }
    }
    ExitCode::from(exit::PASSED)
}
