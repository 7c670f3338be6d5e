//! `baton-sim`: run the simulator from the command line.
//! `--seed N` replays one seed; `--seeds COUNT [--from N]` runs seeds `N..N+COUNT`;
//! `--canary NAME` runs with a deliberate bug (to see which seed catches it);
//! `--steps N` sets the steps before the drain.

use baton_sim::mem::Canary;
use baton_sim::{SimOptions, simulate, simulate_many};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let value = |flag: &str| text(flag).and_then(|v| v.parse::<u64>().ok());
    let canary = match text("--canary") {
        None => Canary::None,
        Some(name) => match Canary::parse(name) {
            Some(c) => c,
            None => {
                let names: Vec<&str> = Canary::ALL.iter().map(|(n, _)| *n).collect();
                eprintln!("unknown canary `{name}`; one of {}", names.join(", "));
                return ExitCode::from(2);
            }
        },
    };
    let steps = value("--steps").unwrap_or(300) as usize;
    if let Some(seed) = value("--seed") {
        return match simulate(SimOptions {
            seed,
            steps_max: steps,
            canary,
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
    match simulate_many(from, count, steps, canary) {
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
