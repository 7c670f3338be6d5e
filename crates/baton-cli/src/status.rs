//! `baton status`: the per-date verdicts (gathered by `baton_serve::status`) as tables.

use crate::{Cli, Outcome, load_pipeline, open_existing_read_only, parse_date};
use baton_core::audit::DateVerdict;
use baton_core::clock::{Clock, SystemClock};
use baton_core::completion::Document;
use baton_core::config::Pipeline;
use baton_core::gate::Gate;
use baton_core::lease::Lease;
use baton_core::model::Partition;
use baton_ports::{RunRecord, StateStore};
use baton_serve::status::JobLandings;
pub use baton_serve::status::verdicts;
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jiff::Timestamp;

/// `baton status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// One date in detail: entries, runs, leases.
    #[arg(long, value_parser = parse_date, conflicts_with_all = ["from", "to"])]
    date: Option<Partition>,
    /// First date of a range.
    #[arg(long, value_parser = parse_date)]
    from: Option<Partition>,
    /// Last date of a range.
    #[arg(long, value_parser = parse_date)]
    to: Option<Partition>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// The per-date table of verdicts.
pub fn verdict_table(rows: &[(String, DateVerdict)]) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "gate",
        "date",
        "done",
        "completed_count",
        "triggered",
        "triggers",
        "dup rows",
        "dead letters",
        "next phase",
        "exact",
    ]);
    for (gate, v) in rows {
        table.add_row(vec![
            gate.clone(),
            v.date.to_string(),
            format!("{}/{}", v.done, v.expected),
            v.completed_count.to_string(),
            if v.triggered { "yes" } else { "no" }.to_owned(),
            v.triggers.to_string(),
            v.duplicate_rows.to_string(),
            v.dead_letters.to_string(),
            if v.next_phase_ran { "ran" } else { "-" }.to_owned(),
            if v.is_exact() {
                "yes".to_owned()
            } else {
                format!("NO: {}", v.problems.join("; "))
            },
        ]);
    }
    table
}

pub fn run(cli: &Cli, args: &StatusArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    let b = open_existing_read_only(cli, &pipeline)?;
    let backend = b.store.as_ref();
    let now = SystemClock.now();
    if let Some(date) = args.date {
        return detail(&pipeline, backend, date, args.json, now);
    }
    // The stored dates of every gate, narrowed to the range asked for.
    let from = args
        .from
        .unwrap_or(Partition::new(jiff::civil::date(1900, 1, 1)));
    let to = args
        .to
        .unwrap_or(Partition::new(jiff::civil::date(2999, 12, 31)));
    if from > to {
        return Err(crate::Exit::usage(anyhow::anyhow!(
            "--from {from} is after --to {to}"
        )));
    }
    let mut dates: Vec<Partition> = Vec::new();
    for gate in &pipeline.gates {
        dates.extend(
            backend
                .documents(&gate.id, from, to)?
                .iter()
                .map(|d| d.partition),
        );
    }
    dates.sort();
    dates.dedup();
    let rows = verdicts(&pipeline, backend, b.warehouse.as_ref(), &dates, now)?;
    if args.json {
        let json: Vec<_> = rows
            .iter()
            .map(|(g, v)| serde_json::json!({"gate": g, "verdict": v, "exact": v.is_exact()}))
            .collect();
        crate::outln!("{}", serde_json::to_string_pretty(&json)?);
    } else if rows.is_empty() {
        crate::outln!("no completion documents in {from}..{to}");
    } else {
        crate::outln!("{}", verdict_table(&rows));
    }
    if !args.json {
        // Letters whose payload names no date appear in no row above: count them here.
        let c = baton_serve::dead_letters::counts(&backend.dead_letters()?);
        if c.open + c.replayed + c.retired > 0 {
            crate::outln!(
                "dead letters: {} open ({} naming no date), {} replayed, {} retired; see `baton dead-letters list`",
                c.open,
                c.open_undated,
                c.replayed,
                c.retired
            );
        }
    }
    Ok(0)
}

/// One date in detail: each gate's completion document with its entries, then the date's
/// upstream landings, runs and leases (as tables, or all as JSON).
fn detail(
    pipeline: &Pipeline,
    backend: &dyn StateStore,
    date: Partition,
    json: bool,
    now: Timestamp,
) -> Outcome {
    let leases: Vec<_> = backend
        .leases()?
        .into_iter()
        .filter(|l| l.partition == date)
        .collect();
    let runs = as_seen(backend.runs(date)?, &leases, now);
    let docs: Vec<_> = pipeline
        .gates
        .iter()
        .map(|g| backend.document(&g.id, date).map(|d| (g, d)))
        .collect::<Result<_, _>>()?;
    let landings = baton_serve::status::landings(pipeline, backend, date)?;
    let owed: Vec<_> = backend
        .pending_requests()?
        .into_iter()
        .filter(|r| r.partition == date)
        .collect();
    if json {
        let out = serde_json::json!({
            "date": date.to_string(),
            "documents": docs.iter().map(|(g, d)| serde_json::json!({"gate": g.id, "document": d})).collect::<Vec<_>>(),
            "landings": landings,
            "owed_runs": owed,
            "runs": runs,
            "leases": leases,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    for (gate, doc) in &docs {
        print_document(gate, doc.as_ref(), date, now);
    }
    crate::outln!("landings:\n{}", landings_table(&landings));
    if !owed.is_empty() {
        crate::outln!("owed runs:");
        for r in &owed {
            crate::outln!(
                "  {} {} since {}: {}",
                r.processor,
                r.kind,
                r.since,
                r.reason
            );
        }
    }
    crate::outln!("runs:\n{}", runs_table(&runs));
    crate::outln!("leases:\n{}", leases_table(&leases, now));
    Ok(0)
}

/// A gate's completion document for a date: its summary line and its entries.
fn print_document(gate: &Gate, doc: Option<&Document>, date: Partition, now: Timestamp) {
    crate::outln!("gate {} on {date}:", gate.id);
    let Some(doc) = doc else {
        crate::outln!("  no completion document");
        return;
    };
    crate::outln!(
        "  completed_count {} | triggered {} | generation {} | reason {} | version {}",
        doc.completed_count,
        if doc.triggered {
            doc.triggered_at.map(|t| t.to_string()).unwrap_or_default()
        } else {
            "no".into()
        },
        doc.generation,
        doc.trigger_reason.clone().unwrap_or_else(|| "-".into()),
        doc.version
    );
    if let Some(b) = doc.blocked.as_ref().filter(|_| !doc.triggered) {
        crate::outln!("  BLOCKED by quality check `{}`: {}", b.check, b.evidence);
    }
    for w in &doc.warnings {
        crate::outln!("  WARN quality check `{}`: {}", w.check, w.evidence);
    }
    crate::outln!("{}", entries_table(gate, doc, date, now));
}

/// One row per processor the gate's policy expects on the date, `missing` where the
/// document has no entry for it.
fn entries_table(gate: &Gate, doc: &Document, date: Partition, now: Timestamp) -> Table {
    let (_, policy) = gate.policy_for(date, now);
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "processor",
        "status",
        "run",
        "records",
        "first completed",
        "messages seen",
    ]);
    for p in &policy.expected {
        match doc.entries.get(p) {
            Some(e) => t.add_row(vec![
                p.to_string(),
                e.status.to_string(),
                e.run_id.to_string(),
                e.record_count.to_string(),
                e.first_completed_at
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.messages_seen.to_string(),
            ]),
            None => t.add_row(vec![
                p.to_string(),
                "missing".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "0".into(),
            ]),
        };
    }
    t
}

/// Each upstream job's landings for the date: the first (lateness is judged by it), the
/// latest batch, and how many batches.
fn landings_table(landings: &[JobLandings]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "upstream job",
        "first landed",
        "latest batch",
        "batches",
    ]);
    let time = |t: Option<Timestamp>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
    for l in landings {
        t.add_row(vec![
            l.job.clone(),
            time(l.landed_at),
            time(l.latest_at),
            l.batches.to_string(),
        ]);
    }
    t
}

/// The runs as they stand at `now`: one still recorded `running` that its lease no longer
/// covers is shown `abandoned` before a pass marks it (status never writes).
fn as_seen(runs: Vec<RunRecord>, leases: &[Lease], now: Timestamp) -> Vec<RunRecord> {
    runs.into_iter()
        .map(|mut r| {
            let seen = r.status_at(leases, now);
            if seen != r.status {
                r.status = seen;
                r.error = Some(
                    "abandoned: no live lease covers it, its process died (not yet marked; the next run or `serve` marks it)"
                        .to_owned(),
                );
            }
            r
        })
        .collect()
}

/// The date's runs: who ran under which fence token, and how it ended.
fn runs_table(runs: &[RunRecord]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "run",
        "processor",
        "holder",
        "token",
        "status",
        "rows",
        "dups dropped",
        "error",
    ]);
    for r in runs {
        t.add_row(vec![
            r.run_id.to_string(),
            r.processor.to_string(),
            r.holder.clone(),
            r.token.to_string(),
            r.status.to_string(),
            r.rows_written.to_string(),
            r.duplicates_dropped.to_string(),
            r.error.clone().unwrap_or_default(),
        ]);
    }
    t
}

/// The date's leases: holder, fence token, expiry, and whether released, live or expired.
fn leases_table(leases: &[Lease], now: Timestamp) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "processor",
        "holder",
        "token",
        "expires",
        "state",
    ]);
    for l in leases {
        let state = if l.released {
            "released"
        } else if l.is_live(now) {
            "live"
        } else {
            "expired"
        };
        t.add_row(vec![
            l.processor.to_string(),
            l.holder.clone(),
            l.token.to_string(),
            l.expires_at.to_string(),
            state.to_owned(),
        ]);
    }
    t
}
