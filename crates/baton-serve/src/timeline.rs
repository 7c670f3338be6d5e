//! A date's timeline: every event the store keeps about it, oldest first, built once for
//! `baton explain`, the demo, the API and the dashboard's date page. Landings (each batch),
//! runs (holder, token, status, rows, dedup, duration), owed runs, completions published
//! and each one received (with the step's verdict: applied, duplicate, conflicting
//! duplicate, stale, not counted), triggers with their generations, the next phase, dead
//! letters naming the date, and reconcile repairs (operational records under
//! `repair/<date>/`).
//!
//! The store's histories are bounded ([`baton_ports::engine::LANDING_BATCHES_KEPT`] batches
//! per job and date, [`baton_ports::engine::RECEIPTS_KEPT`] receipts per gate and date):
//! what they no longer keep is counted from the landing's and the document's own counts
//! and said in [`Timeline::notes`], not invented.

use crate::Error;
use baton_core::completion::{Document, Outcome, Trigger};
use baton_core::config::Pipeline;
use baton_core::model::{CompletionStatus, Partition};
use baton_ports::engine::{LANDING_BATCHES_KEPT, RECEIPTS_KEPT};
use baton_ports::{CompletionReceipt, LandingBatch, OutboxKind, RunRecord, StateStore};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An upstream job's first batch for the date.
    Landing,
    /// A later batch of it.
    LandingBatch,
    /// A run of a processor (at its start; its duration in the detail).
    Run,
    /// A run owed for the date (since when).
    OwedRun,
    /// A completion written to the outbox (at its creation; published time in the data).
    CompletionPublished,
    /// A completion received that recorded a new run (counted, or a `no_data` on a date with
    /// work: recorded, not counted); for a date from before receipts were kept, a run the
    /// document recorded (at its production time).
    CompletionApplied,
    /// A completion of a run the document already had: a duplicate, or a conflicting one
    /// (the first report is kept).
    CompletionDuplicate,
    /// A failed run older than the processor's completing run: recorded, changes nothing.
    CompletionStale,
    /// A trigger of the next phase, with its generation.
    Trigger,
    /// The next phase ran for a generation.
    NextPhase,
    /// A dead letter whose payload names the date.
    DeadLetter,
    /// A reconcile repair.
    Repair,
}

impl EventKind {
    /// Where events of one instant go: by kind, except that the completions received keep
    /// the order they were applied in, whatever their verdict.
    fn order(self) -> Self {
        match self {
            Self::CompletionDuplicate | Self::CompletionStale => Self::CompletionApplied,
            kind => kind,
        }
    }
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

/// A date's events and what the store no longer keeps of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// The date.
    pub date: Partition,
    /// Oldest first.
    pub events: Vec<Event>,
    /// What the timeline cannot show, because the store's bounded histories no longer keep
    /// it (or never kept it, for dates from before them).
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
    landings(pipeline, store, date, &mut events, &mut notes)?;
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
                format!("published {}", local(pipeline, t))
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
    let receipts = store.receipts(date)?;
    for gate in &pipeline.gates {
        let doc = store.document(&gate.id, date)?;
        let kept: Vec<&CompletionReceipt> = receipts.iter().filter(|r| r.gate == gate.id).collect();
        received(pipeline, doc.as_ref(), &kept, &mut events, &mut notes);
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
    events.sort_by_key(|e| (e.at, e.kind.order()));
    Ok(Timeline {
        date,
        events,
        notes,
    })
}

/// The date's local time of `t`, as the timeline's details say it.
fn local(pipeline: &Pipeline, t: Timestamp) -> String {
    t.to_zoned(pipeline.timezone.clone())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Each landing batch kept; the first batch's time and the latest's come from the landing
/// itself when its history no longer has them (or a landing from before it was kept).
fn landings(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    date: Partition,
    events: &mut Vec<Event>,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    let history = store.landing_batches(date)?;
    for l in store.landings(date)? {
        let kept: Vec<&LandingBatch> = history.iter().filter(|b| b.job == l.job).collect();
        let mut from_landing = vec![(1, l.landed_at)];
        if kept.is_empty() && l.batches > 1 {
            from_landing.push((l.batches, l.latest_at));
        }
        from_landing.retain(|(n, _)| !kept.iter().any(|b| b.batch == *n));
        for (n, at) in &from_landing {
            let mut record = data(&l);
            record["batch"] = (*n).into();
            events.push(Event {
                at: *at,
                kind: batch_kind(*n),
                subject: l.job.clone(),
                detail: format!(
                    "batch {n} of {} landed (from the landing's record)",
                    l.batches
                ),
                data: record,
            });
        }
        for b in &kept {
            events.push(Event {
                at: b.landed_at,
                kind: batch_kind(b.batch),
                subject: l.job.clone(),
                detail: format!(
                    "batch {} of {} landed; recorded {}",
                    b.batch,
                    l.batches,
                    local(pipeline, b.recorded_at)
                ),
                data: data(b),
            });
        }
        let missing = (l.batches as usize).saturating_sub(kept.len() + from_landing.len());
        if missing > 0 {
            notes.push(format!(
                "{}: {missing} of its {} batches not kept (the store keeps the newest {LANDING_BATCHES_KEPT} per date, and the first's time)",
                l.job, l.batches
            ));
        }
    }
    Ok(())
}

fn batch_kind(batch: u32) -> EventKind {
    if batch == 1 {
        EventKind::Landing
    } else {
        EventKind::LandingBatch
    }
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

/// The completions one gate's document received: each receipt kept, and how many its
/// history no longer keeps (from the document's message counts). A document written before
/// receipts were kept shows the distinct runs it recorded instead.
fn received(
    pipeline: &Pipeline,
    doc: Option<&Document>,
    kept: &[&CompletionReceipt],
    events: &mut Vec<Event>,
    notes: &mut Vec<String>,
) {
    events.extend(kept.iter().map(|r| receipt_event(pipeline, r)));
    let Some(doc) = doc else {
        return;
    };
    let seen: u64 = doc.entries.values().map(|e| e.messages_seen).sum();
    let missing = seen.saturating_sub(kept.len() as u64);
    if missing == 0 {
        return;
    }
    if kept.is_empty() {
        recorded_runs(doc, events);
        notes.push(format!(
            "gate {}: the {missing} completion(s) it received came before baton kept receipts; the distinct runs its document recorded are shown",
            doc.gate
        ));
    } else {
        notes.push(format!(
            "gate {}: {missing} earlier completion receipt(s) not kept (the store keeps the newest {RECEIPTS_KEPT} per date)",
            doc.gate
        ));
    }
}

/// One completion received, with the step's verdict on it.
fn receipt_event(pipeline: &Pipeline, r: &CompletionReceipt) -> Event {
    let (kind, verdict) = match &r.verdict {
        Outcome::Applied if r.not_counted => (
            EventKind::CompletionApplied,
            "applied, a new run, not counted: no_data on a date its processor has work for".into(),
        ),
        Outcome::Applied => (EventKind::CompletionApplied, "applied, a new run".into()),
        Outcome::Duplicate => (
            EventKind::CompletionDuplicate,
            "a duplicate of a run already recorded, changes nothing".into(),
        ),
        Outcome::ConflictingDuplicate { field } => (
            EventKind::CompletionDuplicate,
            format!(
                "a conflicting duplicate: its {field} differs from the run already recorded, which is kept"
            ),
        ),
        Outcome::Stale => (
            EventKind::CompletionStale,
            "stale: a failed run older than the processor's completing run, changes nothing".into(),
        ),
        // Not stored (a rejected message is a dead letter); said as it is if it ever were.
        Outcome::Rejected { reason } => (EventKind::DeadLetter, format!("rejected: {reason}")),
    };
    Event {
        at: r.applied_at,
        kind,
        subject: r.processor.to_string(),
        detail: format!(
            "run {} ({}, {} rows, produced {}) received by gate {}: {verdict}",
            r.run_id,
            r.status,
            r.record_count,
            local(pipeline, r.produced_at),
            r.gate
        ),
        data: data(r),
    }
}

/// The distinct runs a document recorded (for a date from before receipts were kept).
fn recorded_runs(doc: &Document, events: &mut Vec<Event>) {
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
                " (failed; superseded by a later success, counts for nothing)"
            } else {
                ""
            };
            events.push(Event {
                at: run.produced_at,
                kind: EventKind::CompletionApplied,
                subject: p.to_string(),
                detail: format!(
                    "run {} recorded by gate {}: {}, {} rows{how}",
                    run.run_id, doc.gate, run.status, run.record_count
                ),
                data: data(run),
            });
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
