//! Builds a date's explanation from the ports: for each gate, the facts
//! [`baton_core::explain`] judges (the document, what runs, what is owed, what has not
//! landed, the checks measured by [`crate::checks::measure`]), the date's owed runs and
//! landings, when each `[[schedules]]` entry fires next, and the [`crate::timeline`].
//! `baton explain`, `GET /api/v1/dates/{date}/explain` and the dashboard's date page all
//! call [`explain`], so they agree.

use crate::Error;
use crate::status::JobLandings;
use crate::timeline::{self, Timeline};
use baton_core::config::Pipeline;
use baton_core::explain::{self as core, Facts, GateExplanation, ProcessorFacts};
use baton_core::gate::Gate;
use baton_core::model::{Partition, ProcessorName};
use baton_ports::{Landing, PendingRequest, RunRecord, RunStatus, StateStore, Warehouse};
use jiff::Timestamp;
use serde::Serialize;

/// When a schedule fires next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextRun {
    /// The schedule's name.
    pub schedule: String,
    /// Its cron expression.
    pub cron: String,
    /// When it fires next (UTC).
    pub at: Timestamp,
    /// The date that fire requests runs for.
    pub for_date: Partition,
    /// The processors it requests.
    pub processors: Vec<ProcessorName>,
}

/// Why a date stands where it does, and what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The date.
    pub date: Partition,
    /// The pipeline's time zone.
    pub timezone: String,
    /// When it was judged.
    pub now: Timestamp,
    /// One per gate asked for.
    pub gates: Vec<GateExplanation>,
    /// The runs owed for the date.
    pub owed_runs: Vec<PendingRequest>,
    /// Each upstream job's landings for the date.
    pub landings: Vec<JobLandings>,
    /// When each schedule fires next.
    pub next_runs: Vec<NextRun>,
    /// The date's events.
    pub timeline: Timeline,
}

/// Explains `date` for `gates` at `now`.
pub fn explain(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    gates: &[&Gate],
    date: Partition,
    now: Timestamp,
) -> Result<Explanation, Error> {
    let runs = store.runs(date)?;
    let landed = store.landings(date)?;
    let pending = store.pending_requests()?;
    let owed: Vec<PendingRequest> = pending
        .iter()
        .filter(|r| r.partition == date)
        .cloned()
        .collect();
    let mut out = Vec::new();
    for gate in gates {
        let facts = Facts {
            document: store.document(&gate.id, date)?,
            processors: processor_facts(pipeline, gate, &runs, &landed, &owed),
            checks: crate::checks::measure(pipeline, warehouse, gate, date, now)?,
            in_flight: crate::checks::in_flight(&owed, date),
            next_phase_generation: crate::checks::next_phase_generation(store, gate, date)?,
        };
        out.push(core::explain(gate, date, &facts, now));
    }
    Ok(Explanation {
        date,
        timezone: pipeline.timezone_name.clone(),
        now,
        gates: out,
        owed_runs: owed,
        landings: crate::status::job_landings(pipeline, &landed),
        next_runs: next_runs(pipeline, now),
        timeline: timeline::build(pipeline, store, date)?,
    })
}

/// What the store says of each processor the gate watches.
fn processor_facts(
    pipeline: &Pipeline,
    gate: &Gate,
    runs: &[RunRecord],
    landed: &[Landing],
    owed: &[PendingRequest],
) -> std::collections::BTreeMap<ProcessorName, ProcessorFacts> {
    pipeline
        .processors
        .iter()
        .filter(|p| gate.watches(&p.name))
        .map(|p| {
            let mine = || runs.iter().filter(|r| r.processor == p.name);
            let latest = mine().max_by_key(|r| r.started_at);
            let facts = ProcessorFacts {
                running: mine().any(|r| r.status == RunStatus::Running),
                owed: owed
                    .iter()
                    .find(|r| r.processor == p.name)
                    .map(|r| format!("{}: {}", r.kind, r.reason)),
                waiting_on: p
                    .upstream
                    .iter()
                    .filter(|j| !landed.iter().any(|l| &l.job == *j))
                    .cloned()
                    .collect(),
                last_error: latest
                    .filter(|r| r.status == RunStatus::Failed)
                    .map(|r| r.error.clone().unwrap_or_else(|| "failed".into())),
            };
            (p.name.clone(), facts)
        })
        .collect()
}

/// When each schedule fires next after `now`, and for which date.
pub fn next_runs(pipeline: &Pipeline, now: Timestamp) -> Vec<NextRun> {
    pipeline
        .schedules
        .iter()
        .filter_map(|s| {
            let at = s.cron.next_after(now, &pipeline.timezone)?;
            Some(NextRun {
                schedule: s.name.clone(),
                cron: s.cron.as_str().to_owned(),
                at,
                for_date: s.date.partition(at, &pipeline.timezone),
                processors: s.processors.clone(),
            })
        })
        .collect()
}
