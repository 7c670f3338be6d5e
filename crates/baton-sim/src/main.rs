//! `baton-sim`: run the simulator from the command line.
//! `--seed N` replays one seed; `--seeds COUNT [--from N]` runs many.

use baton_sim::mem::Canary;
use baton_sim::{SimOptions, simulate, simulate_many};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let steps = value("--steps").unwrap_or(300) as usize;
    if let Some(seed) = value("--seed") {
        return match simulate(SimOptions {
            seed,
            steps_max: steps,
            canary: Canary::None,
        }) {
            Ok(report) => {
                println!(
                    "seed {seed}: ok after {} steps; events {:?}",
                    report.steps, report.events
                );
                ExitCode::SUCCESS
            }
            Err(v) => {
                eprintln!("{v}");
                ExitCode::FAILURE
            }
        };
    }
    let count = value("--seeds").unwrap_or(2000);
    let from = value("--from").unwrap_or(0);
    match simulate_many(from, count, steps, Canary::None) {
        Ok(n) => {
            println!("{n} seeds from {from}: no violation");
            ExitCode::SUCCESS
        }
        Err(v) => {
            eprintln!("{v}");
            ExitCode::FAILURE
        }
    }
}
