//! A date's timeline: every event the store keeps about it, oldest first, built once for
//! `baton explain`, the demo, the API and the dashboard's date page. Landings (the first
//! batch and the latest), runs (holder, token, status, rows, dedup, duration), owed runs,
//! completions published and applied (with the duplicates and stale runs the document
//! counted), triggers with their generations, the next phase, dead letters naming the
//! date, and reconcile repairs (operational records under `repair/<date>/`).
//!
//! What the store does not keep is said in [`Timeline::notes`], not invented: a landing
//! keeps its first and latest batch and a count, not every batch; a document counts a
//! processor's messages and keeps the last arrival, not each duplicate's time.

use crate::Error;
use baton_core::completion::{Document, Trigger};
use baton_core::config::Pipeline;
use baton_core::model::{CompletionStatus, Partition};
use baton_ports::{OutboxKind, RunRecord, StateStore};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An upstream job's first batch for the date.
    Landing,
    /// Its latest batch, when more than one landed.
    LandingBatch,
    /// A run of a processor (at its start; its duration in the detail).
    Run,
    /// A run owed for the date (since when).
    OwedRun,
    /// A completion written to the outbox (at its creation; published time in the data).
    CompletionPublished,
    /// A distinct run the completion document applied (at its production time).
    CompletionApplied,
    /// Messages the document counted as duplicates of runs already seen.
    Duplicates,
    /// A trigger of the next phase, with its generation.
    Trigger,
    /// The next phase ran for a generation.
    NextPhase,
    /// A dead letter whose payload names the date.
    DeadLetter,
    /// A reconcile repair.
    Repair,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// When (UTC).
    pub at: Timestamp,
    /// What kind.
    pub kind: EventKind,
    /// What it is about (a job, a processor, a gate).
    pub subject: String,
    /// In words.
    pub detail: String,
    /// The record behind it, as stored.
    pub data: serde_json::Value,
}

/// A date's events and what the store does not keep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// The date.
    pub date: Partition,
    /// Oldest first.
    pub events: Vec<Event>,
    /// What the timeline cannot show, because the store does not keep it.
    pub notes: Vec<String>,
}

/// The operational record of one reconcile repair (`repair/<date>/<gate>/<micros>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRecord {
    /// When it was made.
    pub at: Timestamp,
    /// The gate.
    pub gate: String,
    /// The date.
    pub date: Partition,
    /// What it changed.
    pub changes: Vec<String>,
    /// Who made it (`serve-<pid>`, `cli`, `api`).
    pub by: String,
}

/// The key a repair of `date` by `gate` at `at` is recorded under.
pub fn repair_key(date: Partition, gate: &str, at: Timestamp) -> String {
    format!("repair/{date}/{gate}/{}", at.as_microsecond())
}

/// Records a repair (nothing when it changed nothing). A record already under the key (the
/// same gate, date and microsecond) is kept.
pub fn record_repair(store: &dyn StateStore, repair: &RepairRecord) -> Result<(), Error> {
    if repair.changes.is_empty() {
        return Ok(());
    }
    let body =
        serde_json::to_string(repair).map_err(|e| baton_ports::Error::Permanent(e.to_string()))?;
    store.put_ops_record(
        &repair_key(repair.date, &repair.gate, repair.at),
        &body,
        None,
    )?;
    Ok(())
}

/// Every repair recorded (any date), oldest first.
pub fn repairs(store: &dyn StateStore, prefix: &str) -> Result<Vec<RepairRecord>, Error> {
    let mut out: Vec<RepairRecord> = store
        .ops_records(prefix)?
        .iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect();
    out.sort_by_key(|r| r.at);
    Ok(out)
}

fn data(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Builds the timeline of `date`.
pub fn build(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    date: Partition,
) -> Result<Timeline, Error> {
    let mut events = Vec::new();
    let mut notes = Vec::new();
    landings(store, date, &mut events, &mut notes)?;
    for r in store.runs(date)? {
        events.push(run_event(&r));
    }
    for r in store
        .pending_requests()?
        .into_iter()
        .filter(|r| r.partition == date)
    {
        events.push(Event {
            at: r.since,
            kind: EventKind::OwedRun,
            subject: r.processor.to_string(),
            detail: format!("run owed ({}): {}", r.kind, r.reason),
            data: data(&r),
        });
    }
    for row in store.outbox_for(OutboxKind::Completion, date)? {
        let published = row
            .published_at
            .map_or("not yet published".to_owned(), |t| {
                let local = t.to_zoned(pipeline.timezone.clone());
                format!("published {}", local.strftime("%Y-%m-%d %H:%M:%S"))
            });
        events.push(Event {
            at: row.created_at,
            kind: EventKind::CompletionPublished,
            subject: row.row.message_id.clone(),
            detail: format!(
                "completion written to the outbox for {}; {published}",
                row.row.topic
            ),
            data: data(&row),
        });
    }
    for gate in &pipeline.gates {
        if let Some(doc) = store.document(&gate.id, date)? {
            applied(&doc, &mut events, &mut notes);
        }
        next_phase(store, gate, date, &mut events)?;
    }
    triggers(store, date, &mut events)?;
    for l in store.dead_letters()? {
        if crate::status::dead_letter_date(&l) == Some(date) {
            events.push(Event {
                at: l.recorded_at,
                kind: EventKind::DeadLetter,
                subject: if l.letter.topic.is_empty() {
                    "completion".into()
                } else {
                    l.letter.topic.clone()
                },
                detail: format!("dead letter #{}: {}", l.id, l.letter.reason),
                data: data(&l),
            });
        }
    }
    for r in repairs(store, &format!("repair/{date}/"))? {
        events.push(Event {
            at: r.at,
            kind: EventKind::Repair,
            subject: r.gate.clone(),
            detail: format!("reconcile repair by {}: {}", r.by, r.changes.join("; ")),
            data: data(&r),
        });
    }
    events.sort_by_key(|e| (e.at, e.kind));
    Ok(Timeline {
        date,
        events,
        notes,
    })
}

fn landings(
    store: &dyn StateStore,
    date: Partition,
    events: &mut Vec<Event>,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    for l in store.landings(date)? {
        events.push(Event {
            at: l.landed_at,
            kind: EventKind::Landing,
            subject: l.job.clone(),
            detail: format!("first batch landed ({} batch(es) in all)", l.batches),
            data: data(&l),
        });
        if l.batches > 1 {
            events.push(Event {
                at: l.latest_at,
                kind: EventKind::LandingBatch,
                subject: l.job.clone(),
                detail: format!("batch {} recorded (the latest)", l.batches),
                data: data(&l),
            });
            notes.push(format!(
                "{}: {} batches landed; the store keeps the first and the latest, not the times of the {} between",
                l.job,
                l.batches,
                l.batches - 2
            ));
        }
    }
    Ok(())
}

fn run_event(r: &RunRecord) -> Event {
    let duration = r
        .finished_at
        .map(|f| {
            format!(
                "{:.1}s",
                (f - r.started_at).total(jiff::Unit::Second).unwrap_or(0.0)
            )
        })
        .unwrap_or_else(|| "not finished".into());
    Event {
        at: r.started_at,
        kind: EventKind::Run,
        subject: r.processor.to_string(),
        detail: format!(
            "{} by {} (token {}), {duration}: {} rows written, {} dropped by dedup{}",
            r.status,
            r.holder,
            r.token,
            r.rows_written,
            r.duplicates_dropped,
            r.error
                .as_ref()
                .map(|e| format!("; {e}"))
                .unwrap_or_default()
        ),
        data: data(r),
    }
}

/// The distinct runs a document applied, and the duplicates it counted.
fn applied(doc: &Document, events: &mut Vec<Event>, notes: &mut Vec<String>) {
    for (p, entry) in &doc.entries {
        for run in &entry.runs {
            // A failed run older than the entry's first completing run.
            let stale = run.status == CompletionStatus::Failed
                && entry
                    .first_completed_at
                    .is_some_and(|t| run.produced_at < t);
            let how = if run.not_counted {
                " (no_data on a date with work: not counted)"
            } else if stale {
                // Arrival order is not kept: whether it came before the success (applied)
                // or after it (answered stale) cannot be told; either way it counts for nothing.
                " (failed; superseded by a later success, counts for nothing)"
            } else {
                ""
            };
            events.push(Event {
                at: run.produced_at,
                kind: EventKind::CompletionApplied,
                subject: p.to_string(),
                detail: format!(
                    "completion of run {} applied to gate {}: {}, {} rows{how}",
                    run.run_id, doc.gate, run.status, run.record_count
                ),
                data: data(run),
            });
        }
        let dups = entry.messages_seen.saturating_sub(entry.runs.len() as u64);
        if dups > 0 {
            events.push(Event {
                at: entry.last_seen_at,
                kind: EventKind::Duplicates,
                subject: p.to_string(),
                detail: format!(
                    "{dups} duplicate message(s) of runs already seen, of {} received; the last arrived now",
                    entry.messages_seen
                ),
                data: serde_json::json!({"gate": doc.gate, "messages_seen": entry.messages_seen, "distinct_runs": entry.runs.len(), "last_seen_at": entry.last_seen_at}),
            });
            notes.push(format!(
                "{p}: the document counts duplicates ({dups}) and keeps the last arrival; the time of each duplicate is not kept"
            ));
        }
    }
}

fn triggers(store: &dyn StateStore, date: Partition, events: &mut Vec<Event>) -> Result<(), Error> {
    for row in store.outbox_for(OutboxKind::Trigger, date)? {
        if let Ok(t) = serde_json::from_str::<Trigger>(&row.row.payload) {
            events.push(Event {
                at: t.triggered_at,
                kind: EventKind::Trigger,
                subject: t.gate.to_string(),
                detail: format!(
                    "trigger generation {} of phase {} ({}), {} processors complete",
                    t.generation,
                    t.next_phase,
                    t.reason,
                    t.completed.len()
                ),
                data: data(&t),
            });
        }
    }
    Ok(())
}

fn next_phase(
    store: &dyn StateStore,
    gate: &baton_core::gate::Gate,
    date: Partition,
    events: &mut Vec<Event>,
) -> Result<(), Error> {
    let key = crate::checks::next_phase_key(&gate.id, date);
    if let Some(r) = store
        .ops_record(&key)?
        .and_then(|r| serde_json::from_str::<crate::checks::NextPhaseRecord>(&r.body).ok())
    {
        events.push(Event {
            at: r.at,
            kind: EventKind::NextPhase,
            subject: gate.id.to_string(),
            detail: format!(
                "phase {} finished for generation {} (the latest it ran for)",
                gate.next_phase, r.generation
            ),
            data: data(&r),
        });
    }
    Ok(())
}
