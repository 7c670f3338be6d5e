//! `baton prune [--dry-run] [--json]`: removes the history the config's `[retention]`
//! policy lets go (runs beyond the newest per (processor, date) and older than the window,
//! relayed completion rows, consumed bus messages), as `serve` does periodically; the rules
//! are `baton_core::retention`'s, the batches `baton_ports::retention::prune`'s.
//!
//! Exit codes: 0 done (also when nothing was old enough); 2 bad usage or config; 3 backend
//! error.

use crate::{Cli, Exit, Outcome, load_pipeline, open_existing, open_existing_read_only};
use baton_core::clock::{Clock, SystemClock};
use baton_core::retention::{MIN_OLDER_THAN_DAYS, RetentionPolicy};
use baton_ports::retention::{self, Mode};
use clap::Args;
use jiff::SignedDuration;

/// `baton prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Count what would be removed; remove nothing (opens SQLite read-only).
    #[arg(long)]
    dry_run: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Runs kept per (processor, date), overriding `[retention] keep_runs`.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    keep_runs: Option<u32>,
    /// The window in days (at least 7, the longest alert window), overriding
    /// `[retention] older_than_days`.
    #[arg(long, value_parser = clap::value_parser!(i64).range(MIN_OLDER_THAN_DAYS..=3_650))]
    older_than_days: Option<i64>,
}

/// Runs `baton prune`.
pub fn run(cli: &Cli, args: &PruneArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    let mut policy: RetentionPolicy = pipeline.retention.policy;
    if let Some(k) = args.keep_runs {
        policy.keep_runs = k;
    }
    if let Some(d) = args.older_than_days {
        policy.older_than = SignedDuration::from_hours(24 * d);
    }
    let (b, mode) = if args.dry_run {
        (open_existing_read_only(cli, &pipeline)?, Mode::DryRun)
    } else {
        (open_existing(cli, &pipeline)?, Mode::Delete)
    };
    let now = SystemClock.now();
    let report = retention::prune(b.store.as_ref(), b.bus.as_ref(), &policy, now, mode)
        .map_err(Exit::backend)?;
    if args.json {
        let body = serde_json::json!({
            "dry_run": report.dry_run,
            "cutoff": policy.cutoff(now).to_string(),
            "keep_runs": policy.keep_runs,
            "removed": report,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(0);
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    crate::outln!(
        "retention: keep {} runs per (processor, date); older than {}",
        policy.keep_runs,
        policy.cutoff(now)
    );
    crate::outln!("{:<14} {:>10}", "table", verb);
    crate::outln!("{:<14} {:>10}", "runs", report.runs);
    crate::outln!("{:<14} {:>10}", "outbox", report.outbox);
    match report.bus_messages {
        Some(n) => crate::outln!("{:<14} {:>10}", "bus_messages", n),
        None => crate::outln!("{:<14} {:>10}", "bus_messages", "n/a (NATS keeps its own)"),
    }
    Ok(0)
}
