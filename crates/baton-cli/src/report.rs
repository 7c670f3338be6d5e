//! `baton report [--days N] [--json]`: the reconcile and health summary over a window
//! (built by `baton_serve::report`).

use crate::{Cli, Outcome, load_pipeline, open_existing_read_only};
use baton_core::clock::{Clock, SystemClock};
use clap::Args;

/// `baton report`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  baton report --days 30")]
pub struct ReportArgs {
    /// How many dates, ending today in the pipeline's time zone (1..=366).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=366))]
    days: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `baton report`; exit 0 (a summary, not a check: `health` is the check).
pub fn run(cli: &Cli, args: &ReportArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    let b = open_existing_read_only(cli, &pipeline)?;
    let r = baton_serve::report::build(
        &pipeline,
        b.store.as_ref(),
        b.warehouse.as_ref(),
        args.days,
        SystemClock.now(),
    )?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    crate::outln!(
        "report {} to {} ({} gate-dates checked)",
        r.from,
        r.to,
        r.dates_checked
    );
    if r.findings.is_empty() {
        crate::outln!("reconcile findings: none");
    }
    for (code, n) in &r.findings {
        crate::outln!("reconcile finding {code}: {n} date(s)");
    }
    crate::outln!("repairs recorded: {}", r.repairs.len());
    for rep in &r.repairs {
        crate::outln!(
            "  {} {} by {} at {}: {}",
            rep.date,
            rep.gate,
            rep.by,
            rep.at,
            rep.changes.join("; ")
        );
    }
    for (job, l) in &r.lateness {
        crate::outln!(
            "lateness {job}: {} on time, {} late, {} missing, {} not due",
            l.on_time,
            l.late,
            l.missing,
            l.not_due
        );
    }
    crate::outln!(
        "dead letters: {} in all, {} naming a date in the window",
        r.dead_letters,
        r.dead_letters_in_window
    );
    Ok(0)
}
