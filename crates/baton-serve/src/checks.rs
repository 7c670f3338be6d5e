//! Gathering facts from the ports for the pure verdicts of baton-core: quality-check
//! measurements, the truth reconcile compares with, and the facts health judges. Shared by
//! the consumer, `reconcile`, `health` and (later) the HTTP API, so they agree.

use crate::Error;
use crate::range::{Extent, RangeFacts};
use baton_core::completion::{self, Document};
use baton_core::config::{Pipeline, Processor, TableSpec};
use baton_core::freshness::InputFacts;
use baton_core::gate::Gate;
use baton_core::health::{self, DateFacts, SystemFacts};
use baton_core::model::{GateId, Partition, ProcessorName};
use baton_core::quality::{self, CheckKind, CheckResult, Coverage, Measurement, QualityCheck};
use baton_core::reconcile::{self, DateReport, ProcessorTruth, Repair, RunFact, Truth};
use baton_core::schedule;
use baton_ports::{
    Bus, Landing, PendingRequest, RequestKind, RunRecord, RunStatus, StateStore, Warehouse,
};
use baton_runner::calendar_has_rows;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

/// Measures the gate's checks that apply to `partition` at `now`.
pub fn measure(
    pipeline: &Pipeline,
    warehouse: &dyn Warehouse,
    gate: &Gate,
    partition: Partition,
    now: Timestamp,
) -> Result<Vec<CheckResult>, Error> {
    let mut out = Vec::new();
    // Checks gated on the same table (the calendar, usually every one of a gate's) share
    // one count of it: a read per table, not per check.
    let mut gating: BTreeMap<&str, u64> = BTreeMap::new();
    for check in pipeline.checks_for(gate, partition, now) {
        let Some(table) = pipeline.table(&check.table) else {
            continue;
        };
        let gating_rows = match check.only_when_rows_in.as_deref() {
            Some(t) => match (gating.get(t), pipeline.table(t)) {
                (Some(n), _) => Some(*n),
                (None, Some(spec)) => {
                    let n = warehouse.row_count(spec, partition)?;
                    gating.insert(t, n);
                    Some(n)
                }
                (None, None) => None,
            },
            None => None,
        };
        let measurement = if gating_rows == Some(0) {
            // Not judged: nothing more to read.
            Measurement {
                gating_rows,
                ..Default::default()
            }
        } else {
            let (rows, non_null) = warehouse.measure(table, partition, check.column())?;
            Measurement {
                rows,
                non_null,
                gating_rows,
                coverage: coverage(pipeline, warehouse, check, table, partition)?,
            }
        };
        out.push(quality::judge(check, &measurement));
    }
    Ok(out)
}

/// For a coverage check, the reference table's distinct values for the date compared with
/// the output's.
fn coverage(
    pipeline: &Pipeline,
    warehouse: &dyn Warehouse,
    check: &QualityCheck,
    table: &TableSpec,
    partition: Partition,
) -> Result<Option<Coverage>, Error> {
    let CheckKind::Coverage {
        column,
        reference_table,
        reference_column,
        ..
    } = &check.kind
    else {
        return Ok(None);
    };
    let Some(reference) = pipeline.table(reference_table) else {
        return Ok(None);
    };
    let output = warehouse.distinct_values(table, partition, column)?;
    let expected = warehouse.distinct_values(reference, partition, reference_column)?;
    Ok(Some(Coverage::of(&output, &expected)))
}

/// The truth for one date of one gate: the latest successful run of every watched
/// processor, its table's rows, what its output depends on (landings, dependencies, owed
/// runs), and the generation the next phase last ran for.
pub fn truth(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    gate: &Gate,
    partition: Partition,
) -> Result<Truth, Error> {
    let facts = RangeFacts::read(
        pipeline,
        store,
        warehouse,
        &[gate],
        &[partition],
        Extent::Truth,
    )?;
    Ok(truth_of(pipeline, &facts, gate, partition))
}

/// [`truth`] judged from the facts of a range read.
pub fn truth_of(
    pipeline: &Pipeline,
    facts: &RangeFacts,
    gate: &Gate,
    partition: Partition,
) -> Truth {
    let runs = facts.runs(partition);
    let landings = facts.landings(partition);
    let owed: BTreeSet<ProcessorName> = facts
        .pending()
        .iter()
        .filter(|r| r.partition == partition)
        .map(|r| r.processor.clone())
        .collect();
    let Ok(with) = with_work(pipeline, gate, |calendar| {
        Ok::<_, Infallible>(
            facts.calendar_has_rows(pipeline, Some(calendar), partition) == Some(true),
        )
    });
    let mut processors = BTreeMap::new();
    for p in pipeline.processors.iter().filter(|p| gate.watches(&p.name)) {
        let truth = ProcessorTruth {
            run: latest_success(runs, &p.name),
            rows: facts.rows(&p.table.name, partition),
            inputs: input_facts(p, runs, landings, owed.contains(&p.name)),
            has_work: with.contains(&p.name),
        };
        processors.insert(p.name.clone(), truth);
    }
    Truth {
        partition,
        processors,
        next_phase_generation: facts.next_phase_generation(&gate.id, partition),
        // A date is judged short once something ran for it: landings recorded without
        // requesting runs (history backfilled by `generate` or the demo) do not make a date
        // one baton was asked to complete.
        begun: !runs.is_empty(),
        in_flight: in_flight(facts.pending(), partition),
    }
}

/// The processors the gate watches that have work on the date by their calendar (then
/// `no_data` does not complete them; without a calendar it always does), `has_rows` saying
/// whether a calendar table has rows on the date. Each calendar table is asked once,
/// however many processors share it.
fn with_work<E>(
    pipeline: &Pipeline,
    gate: &Gate,
    mut has_rows: impl FnMut(&str) -> Result<bool, E>,
) -> Result<BTreeSet<ProcessorName>, E> {
    let mut counted: BTreeMap<&str, bool> = BTreeMap::new();
    let mut with = BTreeSet::new();
    for p in pipeline.processors.iter().filter(|p| gate.watches(&p.name)) {
        let Some(calendar) = p.calendar.as_deref() else {
            continue;
        };
        let has = match counted.get(calendar) {
            Some(h) => *h,
            None => {
                let h = has_rows(calendar)?;
                counted.insert(calendar, h);
                h
            }
        };
        if has {
            with.insert(p.name.clone());
        }
    }
    Ok(with)
}

/// What the consumer tells the step about a date: processors with a rerun requested or
/// running, and those with work on the date.
pub fn step_facts(
    pipeline: &Pipeline,
    warehouse: &dyn Warehouse,
    owed: &[PendingRequest],
    gate: &Gate,
    partition: Partition,
) -> Result<completion::StepFacts, Error> {
    let has_work = with_work(pipeline, gate, |calendar| {
        Ok::<_, Error>(
            calendar_has_rows(pipeline, warehouse, Some(calendar), partition)? == Some(true),
        )
    })?;
    Ok(completion::StepFacts {
        in_flight: in_flight(owed, partition),
        has_work,
    })
}

/// The latest successful run of `processor` among `runs`.
fn latest_success(runs: &[RunRecord], processor: &ProcessorName) -> Option<RunFact> {
    runs.iter()
        .filter(|r| &r.processor == processor)
        .filter_map(|r| {
            let status = r.status.completion().filter(|s| s.completes())?;
            Some(RunFact {
                run_id: r.run_id.clone(),
                status,
                rows_written: r.rows_written,
                started_at: r.started_at,
                finished_at: r.finished_at.unwrap_or(r.started_at),
            })
        })
        .max_by_key(|r| r.finished_at)
}

/// What a processor's output for the date depends on.
fn input_facts(p: &Processor, runs: &[RunRecord], landings: &[Landing], owed: bool) -> InputFacts {
    let landed = |job: &String| landings.iter().find(|l| &l.job == job);
    InputFacts {
        missing_upstream: p
            .upstream
            .iter()
            .filter(|j| landed(j).is_none())
            .cloned()
            .collect(),
        latest_landing: p
            .upstream
            .iter()
            .filter_map(landed)
            .max_by_key(|l| l.latest_at)
            .map(|l| (l.job.clone(), l.latest_at)),
        newest_dependency: p
            .depends_on
            .iter()
            .filter_map(|d| latest_success(runs, d).map(|r| (d.clone(), r.finished_at)))
            .max_by_key(|(_, at)| *at),
        owed,
    }
}

/// The processors of `partition` with a rerun requested by baton or coalesced into a
/// holder: output about to change, which a gate waits for before it triggers.
pub fn in_flight(owed: &[PendingRequest], partition: Partition) -> BTreeSet<ProcessorName> {
    owed.iter()
        .filter(|r| r.partition == partition)
        .filter(|r| matches!(r.kind, RequestKind::Requested | RequestKind::Coalesced))
        .map(|r| r.processor.clone())
        .collect()
}

/// The operational record under which the next phase's last handled generation of a gate
/// and date is kept.
pub fn next_phase_key(gate: &GateId, partition: Partition) -> String {
    format!("next_phase/{gate}/{partition}")
}

/// The latest generation the next phase ran for, for a gate and date (`None`: never).
pub fn next_phase_generation(
    store: &dyn StateStore,
    gate: &Gate,
    partition: Partition,
) -> Result<Option<u32>, Error> {
    Ok(store
        .ops_record(&next_phase_key(&gate.id, partition))?
        .and_then(|r| serde_json::from_str::<NextPhaseRecord>(&r.body).ok())
        .map(|r| r.generation))
}

/// What is recorded when the next phase has run for a generation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NextPhaseRecord {
    /// The generation it ran for.
    pub generation: u32,
    /// When it finished.
    pub at: Timestamp,
}

/// Records that the next phase ran for `generation` (compare-and-set: a newer generation
/// already recorded is kept).
pub fn record_next_phase(
    store: &dyn StateStore,
    gate: &GateId,
    partition: Partition,
    generation: u32,
    at: Timestamp,
) -> Result<(), Error> {
    let key = next_phase_key(gate, partition);
    let body = serde_json::to_string(&NextPhaseRecord { generation, at })
        .map_err(|e| baton_ports::Error::Permanent(e.to_string()))?;
    // A few tries: another serve writing the same record moves the version.
    for _ in 0..8 {
        let current = store.ops_record(&key)?;
        let stored = current
            .as_ref()
            .and_then(|r| serde_json::from_str::<NextPhaseRecord>(&r.body).ok());
        if stored.is_some_and(|r| r.generation >= generation) {
            return Ok(());
        }
        if store.put_ops_record(&key, &body, current.map(|r| r.version))? {
            return Ok(());
        }
    }
    Err(baton_ports::Error::Retryable(format!("{key} kept changing")).into())
}

/// One date's reconcile result: the report before, and what a fix changed.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// The gate.
    pub gate: String,
    /// The findings before any fix.
    pub before: DateReport,
    /// What the fix changed (empty in report mode or when nothing was fixable).
    pub changes: Vec<String>,
    /// The findings after the fix (equal to `before` in report mode).
    pub after: DateReport,
}

/// What a reconcile over a range does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    /// Reports what it finds and changes nothing.
    Report,
    /// Repairs each date with a fixable finding in its own transaction, and records the
    /// repair (`repair/<date>/...`, made `by` the CLI, the API or a `serve`) as soon as it
    /// is made, so a run stopped half-way keeps the record of every date it repaired.
    Fix {
        /// Who repairs: `cli`, `api`, or a `serve`'s holder name.
        by: &'a str,
    },
}

/// Reconciles `dates` of one gate, reading the range once; with [`Mode::Fix`], each date
/// with a fixable finding is repaired by [`reconcile_date`] (which reads that date again,
/// just before its transaction, so the repair plans on what is stored now) and its repair
/// recorded before the next date.
pub fn reconcile_dates(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    gate: &Gate,
    dates: &[Partition],
    now: Timestamp,
    mode: Mode<'_>,
) -> Result<Vec<Reconciled>, Error> {
    let facts = RangeFacts::read(pipeline, store, warehouse, &[gate], dates, Extent::Truth)?;
    let mut out = Vec::with_capacity(dates.len());
    for &d in dates {
        let truth = truth_of(pipeline, &facts, gate, d);
        let before = reconcile::check(gate, facts.document(&gate.id, d), &truth, now);
        match mode {
            Mode::Fix { by } if before.findings.iter().any(|f| f.fixable) => {
                let r = reconcile_date(pipeline, store, warehouse, gate, d, now, true)?;
                crate::timeline::record_repair(
                    store,
                    &crate::timeline::RepairRecord {
                        at: now,
                        gate: r.gate.clone(),
                        date: d,
                        changes: r.changes.clone(),
                        by: by.to_owned(),
                    },
                )?;
                out.push(r);
            }
            _ => out.push(Reconciled {
                gate: gate.id.to_string(),
                after: before.clone(),
                before,
                changes: Vec::new(),
            }),
        }
    }
    Ok(out)
}

/// Reconciles one date of one gate; with `fix`, repairs it in one transaction and re-checks.
pub fn reconcile_date(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    gate: &Gate,
    partition: Partition,
    now: Timestamp,
    fix: bool,
) -> Result<Reconciled, Error> {
    let truth = truth(pipeline, store, warehouse, gate, partition)?;
    let doc = store.document(&gate.id, partition)?;
    let before = reconcile::check(gate, doc.as_ref(), &truth, now);
    if !fix || before.findings.iter().all(|f| !f.fixable) {
        return Ok(Reconciled {
            gate: gate.id.to_string(),
            after: before.clone(),
            before,
            changes: Vec::new(),
        });
    }
    let quality = measure(pipeline, warehouse, gate, partition, now)?;
    let mut changes = Vec::new();
    let mut requests = Vec::new();
    let written = store.edit_document(&gate.id, partition, &mut |stored: Option<Document>| {
        // Re-planned inside the transaction, on the document as it is now.
        let Repair {
            document,
            triggers,
            changes: c,
            requests: r,
        } = reconcile::repair(gate, stored.clone(), &truth, now, &quality)?;
        changes = c;
        requests = r;
        // Only runs to request: the document stays as it is.
        (stored.as_ref() != Some(&document) || !triggers.is_empty()).then_some((document, triggers))
    })?;
    for (processor, reason) in requests {
        store.record_request(&PendingRequest {
            processor,
            partition,
            kind: RequestKind::Requested,
            reason: format!("reconcile: {reason}"),
            since: now,
        })?;
    }
    let truth = self::truth(pipeline, store, warehouse, gate, partition)?;
    let after = reconcile::check(gate, written.as_ref(), &truth, now);
    Ok(Reconciled {
        gate: gate.id.to_string(),
        before,
        changes,
        after,
    })
}

/// Gathers what health judges for a range of dates: the range is read once
/// ([`RangeFacts`]), then each date is judged from it.
pub fn health_facts(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    bus: &dyn Bus,
    dates: &[Partition],
    now: Timestamp,
) -> Result<(Vec<DateFacts>, SystemFacts), Error> {
    let gates: Vec<&Gate> = pipeline.gates.iter().collect();
    let facts = RangeFacts::read(pipeline, store, warehouse, &gates, dates, Extent::Health)?;
    let leases = store.leases()?;
    let mut out = Vec::with_capacity(dates.len());
    for &d in dates {
        let mut date = date_facts(pipeline, &facts, d, now);
        date.abandoned = abandoned_runs(facts.runs(d), &leases, now);
        out.push(date);
    }
    Ok((out, system_facts(pipeline, store, bus, &leases, now)?))
}

/// The runs of a date whose process died before finishing them (marked, or `running` with
/// no live lease), each with whether a later run of its processor started since.
fn abandoned_runs(
    runs: &[RunRecord],
    leases: &[baton_core::lease::Lease],
    now: Timestamp,
) -> Vec<health::AbandonedRun> {
    runs.iter()
        .filter(|r| r.status_at(leases, now) == RunStatus::Abandoned)
        .map(|r| health::AbandonedRun {
            processor: r.processor.to_string(),
            run_id: r.run_id.to_string(),
            holder: r.holder.clone(),
            started_at: r.started_at,
            rerun: runs
                .iter()
                .any(|later| later.processor == r.processor && later.started_at > r.started_at),
        })
        .collect()
}

/// One date's facts: its landings, duplicate rows per table, and every gate's completions.
fn date_facts(pipeline: &Pipeline, facts: &RangeFacts, d: Partition, now: Timestamp) -> DateFacts {
    let landed = facts.landings(d);
    let mut landings = Vec::new();
    for job in &pipeline.upstream {
        let at = landed
            .iter()
            .find(|l| l.job == job.name)
            .map(|l| l.landed_at);
        // A job that does not run on a date without work (no games) is not late or missing.
        let expected = facts.calendar_has_rows(pipeline, job.calendar.as_deref(), d);
        if at.is_none() && expected == Some(false) {
            continue;
        }
        landings.push(schedule::judge(
            job,
            d,
            at,
            &pipeline.timezone,
            &pipeline.timezone_name,
            now,
        ));
    }
    let duplicate_rows = pipeline
        .processors
        .iter()
        .map(|p| (p.table.name.clone(), facts.duplicate_rows(&p.table.name, d)))
        .collect();
    let mut date = DateFacts {
        date: d.to_string(),
        landings,
        duplicate_rows,
        ..Default::default()
    };
    for gate in &pipeline.gates {
        add_gate_completions(pipeline, facts, gate, d, now, &mut date);
    }
    date
}

/// Adds one gate's completion counts for a date (stored, actual, expected), whether its
/// document disagrees with the truth, and why it is blocked.
fn add_gate_completions(
    pipeline: &Pipeline,
    facts: &RangeFacts,
    gate: &Gate,
    d: Partition,
    now: Timestamp,
    date: &mut DateFacts,
) {
    let truth = truth_of(pipeline, facts, gate, d);
    let doc = facts.document(&gate.id, d);
    let report = reconcile::check(gate, doc, &truth, now);
    date.stored += report.stored;
    let text = if pipeline.gates.len() > 1 {
        format!("{} {}", gate.id, report.stored_text())
    } else {
        report.stored_text()
    };
    if !date.stored_text.is_empty() {
        date.stored_text.push_str("; ");
    }
    date.stored_text.push_str(&text);
    date.actual += report.actual;
    date.expected += report.expected;
    let (inputs, stored): (Vec<_>, Vec<_>) = report
        .findings
        .iter()
        .partition(|f| matches!(f.code, "BATON-R008" | "BATON-R009" | "BATON-R010"));
    // A missing trigger (BATON-R006) with a recorded block reason is reported as blocked,
    // not as a mismatch.
    date.mismatched |= stored
        .iter()
        .any(|f| f.code != "BATON-R006" || doc.is_none_or(|d| d.blocked.is_none()));
    // Stale output, a short and silent date, a next phase behind: judged by BATON-H012.
    date.inputs
        .extend(inputs.iter().map(|f| format!("{} {}", f.code, f.detail)));
    if let Some(b) = doc.filter(|d| !d.triggered).and_then(|d| d.blocked.clone()) {
        date.blocked = Some(b);
    }
    if let Some(d) = doc {
        date.warnings.extend(d.warnings.iter().cloned());
    }
}

/// The system-wide facts: stale leases, dead letters, the last hour's messages and runs,
/// the outbox backlog and the live `serve` instances.
fn system_facts(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    bus: &dyn Bus,
    leases: &[baton_core::lease::Lease],
    now: Timestamp,
) -> Result<SystemFacts, Error> {
    let hour_ago = now
        .checked_sub(SignedDuration::from_hours(1))
        .unwrap_or(now);
    let stale_leases = leases
        .iter()
        .filter(|l| !l.released && l.expires_at <= now)
        .map(|l| {
            (
                l.processor.to_string(),
                l.partition.to_string(),
                l.holder.clone(),
                l.expires_at,
            )
        })
        .collect();
    // BATON-H006 counts open letters: a replayed or retired one needs nothing more.
    let all_letters = store.dead_letters()?;
    let recent_letters = all_letters
        .iter()
        .filter(|l| l.recorded_at >= hour_ago)
        .count();
    let letters: Vec<_> = all_letters
        .iter()
        .filter(|l| l.state == baton_core::dead_letter::LetterState::Open)
        .collect();
    // Only this count needs the bus: a bus that does not answer (NATS down) leaves its
    // check unjudged, and every other check is judged from the store.
    let (messages_last_hour, bus_unreachable) = match messages_since(pipeline, bus, hour_ago) {
        Ok(n) => (n, None),
        Err(e) => (0, Some(e.to_string())),
    };
    let runs = store.runs_finished_since(hour_ago)?;
    let failed = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .count();
    let backlog = store.backlog()?;
    Ok(SystemFacts {
        stale_leases,
        dead_letters: (letters.len(), recent_letters),
        messages_last_hour,
        bus_unreachable,
        runs_last_hour: (runs.len(), failed),
        outbox: (backlog.pending, backlog.oldest),
        serves: serve_facts(store, now, hour_ago)?,
    })
}

/// Completion messages published on the gates' topics since `since`.
fn messages_since(
    pipeline: &Pipeline,
    bus: &dyn Bus,
    since: Timestamp,
) -> Result<usize, baton_ports::Error> {
    let mut n = 0;
    for gate in &pipeline.gates {
        n += bus.published_since(&gate.completion_topic, since)? as usize;
    }
    Ok(n)
}

/// The `serve` instances whose heartbeat is not gone, with their last hour's backend
/// errors (a heartbeat that does not parse is skipped).
fn serve_facts(
    store: &dyn StateStore,
    now: Timestamp,
    hour_ago: Timestamp,
) -> Result<Vec<health::ServeFact>, Error> {
    let mut serves = Vec::new();
    for r in store.ops_records("instance/serve/")? {
        let Ok(beat) = serde_json::from_str::<crate::status::Heartbeat>(&r.body) else {
            continue;
        };
        // A `serve` stopped on request is not silent; one gone for a day was replaced.
        if beat.stopped_at.is_some() || baton_core::heartbeat::is_gone(r.updated_at, now) {
            continue;
        }
        serves.push(health::ServeFact {
            instance: r.key.trim_start_matches("instance/").to_owned(),
            last_seen: r.updated_at,
            backend_errors_last_hour: beat
                .backend_errors
                .iter()
                .filter(|t| **t >= hour_ago)
                .count(),
            last_error: beat.last_error,
        });
    }
    Ok(serves)
}

/// Health of a range of dates.
pub fn health(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    bus: &dyn Bus,
    dates: &[Partition],
    now: Timestamp,
) -> Result<health::Report, Error> {
    let (dates, system) = health_facts(pipeline, store, warehouse, bus, dates, now)?;
    Ok(health::evaluate(
        &dates,
        &system,
        now,
        health::Limits::default(),
    ))
}

/// Recorded and actual completions of `gate` over `dates` (recorded counts only what ran):
/// accuracy is their ratio, 1 when nothing ran.
pub fn accuracy(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    gate: &Gate,
    dates: &[Partition],
    now: Timestamp,
) -> Result<(usize, usize), Error> {
    let (mut stored, mut actual) = (0, 0);
    for r in reconcile_dates(pipeline, store, warehouse, gate, dates, now, Mode::Report)? {
        stored += r.before.stored.min(r.before.actual);
        actual += r.before.actual;
    }
    Ok((stored, actual))
}

/// Each upstream job's landing for the newest date on which it is already due (jobs with
/// nothing due in the last three dates are left out).
pub fn latest_landings(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    now: Timestamp,
) -> Result<Vec<schedule::LandingVerdict>, Error> {
    let today = Partition::new(now.to_zoned(pipeline.timezone.clone()).date());
    let mut out = Vec::new();
    for job in &pipeline.upstream {
        let due = [today, today.offset(-1), today.offset(-2)]
            .into_iter()
            .find(|&d| schedule::expected_at(job, d, &pipeline.timezone) <= now);
        let Some(d) = due else { continue };
        let landed = store
            .landings(d)?
            .into_iter()
            .find(|l| l.job == job.name)
            .map(|l| l.landed_at);
        out.push(schedule::judge(
            job,
            d,
            landed,
            &pipeline.timezone,
            &pipeline.timezone_name,
            now,
        ));
    }
    Ok(out)
}
