//! `baton reconcile` and `baton health`: ranges of dates judged against the truth, printed
//! as tables (or JSON), with the exit codes operators script against.

use crate::{
    Cli, EXIT_FAILED, EXIT_USAGE, Exit, Outcome, load_pipeline, open_existing,
    open_existing_read_only, parse_date,
};
use anyhow::anyhow;
use baton_core::clock::{Clock, SystemClock};
use baton_core::config::Pipeline;
use baton_core::gate::Gate;
use baton_core::health::Level;
use baton_core::model::Partition;
use baton_serve::checks;
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;

/// Which dates: one, the N ending today (in the pipeline's time zone), or a range.
#[derive(Args, Debug, Clone)]
pub struct DateRange {
    /// One date.
    #[arg(long, value_parser = parse_date, conflicts_with_all = ["days", "from", "to"])]
    date: Option<Partition>,
    /// The N dates ending today in the pipeline's time zone.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3660), conflicts_with_all = ["from", "to"])]
    days: Option<u32>,
    /// First date of a range (with --to).
    #[arg(long, value_parser = parse_date, requires = "to")]
    from: Option<Partition>,
    /// Last date of a range (with --from).
    #[arg(long, value_parser = parse_date, requires = "from")]
    to: Option<Partition>,
}

impl DateRange {
    /// The dates, oldest first; `default_days` when nothing was given.
    pub fn dates(
        &self,
        pipeline: &Pipeline,
        now: Timestamp,
        default_days: u32,
    ) -> Result<Vec<Partition>, Exit> {
        let today = Partition::new(now.to_zoned(pipeline.timezone.clone()).date());
        if let Some(d) = self.date {
            return Ok(vec![d]);
        }
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from > to {
                return Err(Exit::usage(anyhow!("--from {from} is after --to {to}")));
            }
            return Ok(from.through(to));
        }
        let days = self.days.unwrap_or(default_days);
        Ok(today.offset(1 - days as i32).through(today))
    }
}

/// `baton reconcile`.
#[derive(Args, Debug)]
pub struct ReconcileArgs {
    #[command(flatten)]
    range: DateRange,
    /// Only this gate.
    #[arg(long)]
    gate: Option<String>,
    /// Repair each date in its own transaction, then check again.
    #[arg(long)]
    fix: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `baton health`.
#[derive(Args, Debug)]
pub struct HealthArgs {
    /// One date (instead of a range).
    #[arg(value_parser = parse_date, conflicts_with_all = ["date", "days", "from", "to"])]
    day: Option<Partition>,
    #[command(flatten)]
    range: DateRange,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn progress(len: usize) -> ProgressBar {
    // Only long ranges on a terminal get a bar (indicatif hides it when stderr is not one).
    if len < 60 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// `baton reconcile`: checks (and with `--fix` repairs) each date of each gate against the
/// truth; exit 1 while findings remain.
pub fn reconcile(cli: &Cli, args: &ReconcileArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    let now = SystemClock.now();
    let dates = args.range.dates(&pipeline, now, 7)?;
    let gates = select_gates(&pipeline, args.gate.as_deref())?;
    // Without --fix nothing is written: a user who may only read the database can check.
    let b = if args.fix {
        open_existing(cli, &pipeline)?
    } else {
        open_existing_read_only(cli, &pipeline)?
    };
    let results = reconcile_dates(&pipeline, &b, &gates, &dates, now, args.fix)?;
    let found: Vec<_> = results
        .iter()
        .filter(|r| !r.before.findings.is_empty())
        .collect();
    let remaining: usize = results.iter().map(|r| r.after.findings.len()).sum();
    let code = crate::out::verdict(if remaining == 0 { 0 } else { EXIT_FAILED });
    if args.json {
        print_reconcile_json(&found, dates.len(), args.fix)?;
    } else if found.is_empty() {
        crate::outln!(
            "No issues found - all dates are consistent ({} dates, {} gates)",
            dates.len(),
            gates.len()
        );
    } else {
        crate::outln!("{}", findings_table(&found, args.fix));
        if args.fix {
            let changed = results.iter().filter(|r| !r.changes.is_empty()).count();
            if remaining == 0 {
                crate::outln!("Repaired {changed} dates; re-checked: all dates are consistent.");
            } else {
                crate::outln!(
                    "Repaired {changed} dates; {remaining} findings remain that need a person (see docs/runbook.md)."
                );
            }
        } else {
            crate::outln!(
                "{} of {} dates have issues; `baton reconcile --fix` repairs the fixable ones (see docs/runbook.md).",
                found.len(),
                dates.len() * gates.len()
            );
        }
    }
    Ok(code)
}

/// The gate `--gate` names, or every gate.
pub(crate) fn select_gates<'p>(
    pipeline: &'p Pipeline,
    gate: Option<&str>,
) -> Result<Vec<&'p Gate>, Exit> {
    Ok(match gate {
        Some(g) => vec![pipeline.gate(g).ok_or_else(|| {
            let known: Vec<&str> = pipeline.gates.iter().map(|g| g.id.as_str()).collect();
            Exit::usage(anyhow!("unknown gate `{g}` (known: {})", known.join(", ")))
        })?],
        None => pipeline.gates.iter().collect(),
    })
}

/// Reconciles every date of every gate (each date in its own transaction with `fix`),
/// under a progress bar for long ranges.
fn reconcile_dates(
    pipeline: &Pipeline,
    b: &crate::Backends,
    gates: &[&Gate],
    dates: &[Partition],
    now: Timestamp,
    fix: bool,
) -> Result<Vec<checks::Reconciled>, Exit> {
    if fix {
        for run in b.store.abandon_runs()? {
            tracing::warn!(processor = %run.processor, date = %run.partition, run_id = %run.run_id, holder = %run.holder, "marked a run abandoned: its process died before finishing it");
        }
    }
    let bar = progress(dates.len() * gates.len());
    bar.set_message(if fix { "reconcile --fix" } else { "reconcile" });
    let mut results = Vec::new();
    for gate in gates {
        // Each gate's range is read at once; with --fix, each date is repaired in its own
        // transaction and its repair recorded as it is made.
        let mode = if fix {
            checks::Mode::Fix { by: "cli" }
        } else {
            checks::Mode::Report
        };
        results.extend(checks::reconcile_dates(
            pipeline,
            b.store.as_ref(),
            b.warehouse.as_ref(),
            gate,
            dates,
            now,
            mode,
        )?);
        bar.inc(dates.len() as u64);
    }
    bar.finish_and_clear();
    Ok(results)
}

/// The dates with findings, as JSON.
fn print_reconcile_json(
    found: &[&checks::Reconciled],
    dates_checked: usize,
    fix: bool,
) -> Result<(), Exit> {
    let json: Vec<_> = found
        .iter()
        .map(|r| serde_json::json!({"gate": r.gate, "date": r.before.date.to_string(), "stored": r.before.stored, "stored_count": r.before.stored_count, "triggered": r.before.triggered, "actual": r.before.actual, "expected": r.before.expected, "findings": r.before.findings, "changes": r.changes, "remaining": r.after.findings}))
        .collect();
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({"dates_checked": dates_checked, "mismatched_dates": json, "fix": fix})
        )?
    );
    Ok(())
}

/// The dates with findings: completions stored and actual, the findings, and what `--fix`
/// changed (or how many findings it can fix).
fn findings_table(found: &[&checks::Reconciled], fix: bool) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "gate",
        "date",
        "stored",
        "actual",
        "findings",
        if fix { "changes" } else { "fixable" },
    ]);
    for r in found {
        let findings: Vec<String> = r
            .before
            .findings
            .iter()
            .map(|f| format!("{} {}", f.code, f.detail))
            .collect();
        let last = if fix {
            if r.changes.is_empty() {
                "-".to_owned()
            } else {
                r.changes.join("\n")
            }
        } else {
            let fixable = r.before.findings.iter().filter(|f| f.fixable).count();
            format!("{fixable} of {} by --fix", r.before.findings.len())
        };
        t.add_row(vec![
            r.gate.clone(),
            r.before.date.to_string(),
            r.before.stored_text(),
            format!("{}/{}", r.before.actual, r.before.expected),
            findings.join("\n"),
            last,
        ]);
    }
    t
}

pub fn health(cli: &Cli, args: &HealthArgs) -> Outcome {
    // For health, everything that prevents checking is exit 2 ("could not check").
    let could_not_check = |e: Exit| Exit {
        code: EXIT_USAGE,
        ..e
    };
    let pipeline = load_pipeline(cli).map_err(could_not_check)?;
    let now = SystemClock.now();
    let dates = match args.day {
        Some(d) => vec![d],
        None => args
            .range
            .dates(&pipeline, now, 7)
            .map_err(could_not_check)?,
    };
    let b = open_existing_read_only(cli, &pipeline).map_err(could_not_check)?;
    let report = checks::health(
        &pipeline,
        b.store.as_ref(),
        b.warehouse.as_ref(),
        b.bus.as_ref(),
        &dates,
        now,
    )
    .map_err(|e| Exit::usage(anyhow!("could not check: {e}")))?;
    crate::out::verdict(report.exit_code());
    if args.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "from": dates.first().map(|d| d.to_string()),
                "to": dates.last().map(|d| d.to_string()),
                "checks": report.checks,
                "failures": report.failures,
                "warnings": report.warnings,
                "passed": report.failures == 0,
            }))?
        );
    } else {
        crate::outln!(
            "health of {} dates, {} .. {}",
            dates.len(),
            dates[0],
            dates[dates.len() - 1]
        );
        for c in &report.checks {
            let level = match c.level {
                Level::Pass => "PASS",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
                // Not judged: a dependency did not answer (the evidence names it).
                Level::Unchecked => "SKIP",
            };
            crate::outln!("{level}  {:<10} {:<26} {}", c.code, c.name, c.evidence);
            if cli.verbose > 0 || c.level == Level::Fail {
                for d in &c.details {
                    crate::outln!("      {d}");
                }
            }
        }
        if report.failures == 0 && report.unchecked > 0 {
            crate::outln!(
                "{} checks could not be judged (a dependency did not answer); the others passed",
                report.unchecked
            );
        } else if report.failures == 0 {
            crate::outln!(
                "All checks passed{}",
                if report.warnings > 0 {
                    format!(" ({} warnings)", report.warnings)
                } else {
                    String::new()
                }
            );
        } else {
            crate::outln!(
                "{} checks failed (see docs/runbook.md for each code and its fix)",
                report.failures
            );
        }
    }
    Ok(report.exit_code())
}
