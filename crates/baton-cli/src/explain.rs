//! `baton explain DATE`: why a date stands where it does (built by
//! `baton_serve::explain`, judged by `baton_core::explain`), as tables in the pipeline's
//! time zone or as JSON (UTC), with the date's timeline (`baton_serve::timeline`), which
//! the demo also prints.

use crate::{Cli, Outcome, load_pipeline, open_existing_read_only, parse_date};
use baton_core::clock::{Clock, SystemClock};
use baton_core::config::Pipeline;
use baton_core::explain::{GateExplanation, ProcessorState};
use baton_core::model::Partition;
use baton_ports::StateStore;
use baton_serve::explain::Explanation;
use baton_serve::timeline::Timeline;
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jiff::Timestamp;

/// `baton explain`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  baton explain 2024-03-04 --gate phase3_to_phase4")]
pub struct ExplainArgs {
    /// The date (YYYY-MM-DD).
    #[arg(value_parser = parse_date)]
    date: Partition,
    /// Only this gate (every gate when absent).
    #[arg(long)]
    gate: Option<String>,
    /// Print JSON (times in UTC) instead of tables.
    #[arg(long)]
    json: bool,
}

/// Runs `baton explain`; exit 0 whatever the verdict (an explanation is not a check).
pub fn run(cli: &Cli, args: &ExplainArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    let gates = crate::check::select_gates(&pipeline, args.gate.as_deref())?;
    let b = open_existing_read_only(cli, &pipeline)?;
    let e = baton_serve::explain::explain(
        &pipeline,
        b.store.as_ref(),
        b.warehouse.as_ref(),
        &gates,
        args.date,
        SystemClock.now(),
    )?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print(&pipeline, &e);
    }
    Ok(0)
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

/// A time on the pipeline's wall clock.
pub fn local(pipeline: &Pipeline, at: Timestamp) -> String {
    at.to_zoned(pipeline.timezone.clone())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn print(pipeline: &Pipeline, e: &Explanation) {
    crate::outln!(
        "{} ({}), judged at {}",
        e.date,
        e.timezone,
        local(pipeline, e.now)
    );
    for g in &e.gates {
        print_gate(g);
    }
    if !e.owed_runs.is_empty() {
        let mut t = table(&["processor", "kind", "since", "reason"]);
        for r in &e.owed_runs {
            t.add_row(vec![
                r.processor.to_string(),
                r.kind.to_string(),
                local(pipeline, r.since),
                r.reason.clone(),
            ]);
        }
        crate::outln!("owed runs:\n{t}");
    }
    let mut t = table(&["upstream job", "first landed", "latest batch", "batches"]);
    for l in &e.landings {
        let at = |x: Option<Timestamp>| x.map_or("-".into(), |x| local(pipeline, x));
        t.add_row(vec![
            l.job.clone(),
            at(l.landed_at),
            at(l.latest_at),
            l.batches.to_string(),
        ]);
    }
    crate::outln!("landings:\n{t}");
    if e.next_runs.is_empty() {
        crate::outln!("next scheduled run: none ([[schedules]] is empty)");
    }
    for n in &e.next_runs {
        crate::outln!(
            "next scheduled run: {} ({}) at {}, for {}{}",
            n.schedule,
            n.cron,
            local(pipeline, n.at),
            n.for_date,
            if n.for_date == e.date {
                " (this date)"
            } else {
                ""
            }
        );
    }
    print_timeline(pipeline, &e.timeline);
}

fn print_gate(g: &GateExplanation) {
    let mode = match g.mode {
        baton_core::gate::Mode::Overnight => "overnight",
        baton_core::gate::Mode::SameDay => "same day",
    };
    crate::outln!(
        "\ngate {}: {mode} mode, generation {}{}\n  {}",
        g.gate,
        g.generation,
        g.next_phase_generation
            .map(|n| format!(" (next phase ran for generation {n})"))
            .unwrap_or_default(),
        g.summary
    );
    let mut t = table(&["expected processor", "critical", "state", "detail"]);
    for p in &g.processors {
        let detail = match &p.state {
            ProcessorState::Done {
                status,
                run_id,
                record_count,
            } => format!("{status}, run {run_id}, {record_count} rows"),
            ProcessorState::Owed { reason } => reason.clone(),
            ProcessorState::WaitingOnLanding { jobs } => format!("on {}", jobs.join(", ")),
            ProcessorState::Failed { error } => error.clone().unwrap_or_default(),
            _ => String::new(),
        };
        t.add_row(vec![
            p.processor.to_string(),
            if p.critical { "yes" } else { "" }.to_owned(),
            p.state.word().to_owned(),
            detail,
        ]);
    }
    crate::outln!("{t}");
    let mut t = table(&["rule", "met", "measured"]);
    for r in &g.rules {
        t.add_row(vec![
            r.rule.clone(),
            if r.met { "yes" } else { "no" }.to_owned(),
            r.measured.clone(),
        ]);
    }
    crate::outln!("{t}");
    if g.checks.is_empty() {
        crate::outln!("checks: none blocks or warns");
    } else {
        let mut t = table(&["check", "outcome", "measured against threshold"]);
        for c in &g.checks {
            t.add_row(vec![
                c.check.clone(),
                format!("{:?}", c.outcome).to_lowercase(),
                c.evidence.clone(),
            ]);
        }
        crate::outln!("{t}");
    }
}

/// Prints a timeline as a table in the pipeline's time zone, then what it cannot show.
pub fn print_timeline(pipeline: &Pipeline, timeline: &Timeline) {
    let mut t = table(&[
        &format!("{} ({})", timeline.date, pipeline.timezone_name),
        "event",
        "subject",
        "detail",
    ]);
    for e in &timeline.events {
        t.add_row(vec![
            local(pipeline, e.at),
            serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            e.subject.clone(),
            e.detail.clone(),
        ]);
    }
    crate::outln!("\ntimeline of {}:\n{t}", timeline.date);
    for n in &timeline.notes {
        crate::outln!("note: {n}");
    }
}

/// Prints the timeline of `date` (the demo's, for the date a late job landed on).
pub fn print_date_timeline(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    date: Partition,
) -> Result<(), crate::Exit> {
    print_timeline(
        pipeline,
        &baton_serve::timeline::build(pipeline, store, date)?,
    );
    Ok(())
}
