//! The per-date facts and verdicts that `status`, `demo`, the HTTP API and the dashboard
//! show: gathered from the ports, judged by `baton_core::audit`.

use baton_core::audit::{self, DateFacts, DateVerdict};
use baton_core::completion::Trigger;
use baton_core::config::Pipeline;
use baton_core::gate::Gate;
use baton_core::model::{Partition, ProcessorName};
use baton_ports::{DeadLetter, OutboxKind, StateStore, Warehouse};
use jiff::Timestamp;

/// The date a dead letter's payload names, if it names one.
pub fn dead_letter_date(letter: &DeadLetter) -> Option<Partition> {
    let v: serde_json::Value = serde_json::from_slice(&letter.letter.payload).ok()?;
    let text = v.get("date").or_else(|| v.get("game_date"))?.as_str()?;
    Partition::parse(text).ok()
}

/// Gathers the facts about one date of one gate.
pub fn gather(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    gate: &Gate,
    partition: Partition,
    letters: &[DeadLetter],
) -> Result<DateFacts, baton_ports::Error> {
    let document = store.document(&gate.id, partition)?;
    let runs = store.runs(partition)?;
    let ok = |p: &ProcessorName| {
        runs.iter()
            .any(|r| &r.processor == p && r.status.completes())
    };
    let succeeded = pipeline
        .processors
        .iter()
        .map(|p| p.name.clone())
        .filter(|p| gate.watches(p) && ok(p))
        .collect();
    let mut trigger_generations = Vec::new();
    for row in store.outbox_for(OutboxKind::Trigger, partition)? {
        if let Ok(t) = serde_json::from_str::<Trigger>(&row.row.payload)
            && t.gate == gate.id
        {
            trigger_generations.push(t.generation);
        }
    }
    let mut duplicate_rows = 0;
    for p in pipeline
        .processors
        .iter()
        .filter(|p| gate.watches(&p.name) || p.phase == gate.next_phase)
    {
        duplicate_rows += warehouse.duplicate_rows(&p.table, partition)?;
    }
    let next_phase_ran = pipeline.phase(gate.next_phase).all(|p| ok(&p.name));
    Ok(DateFacts {
        partition,
        document,
        succeeded,
        trigger_generations,
        duplicate_rows,
        dead_letters: letters
            .iter()
            .filter(|l| l.state == baton_core::dead_letter::LetterState::Open)
            .filter(|l| dead_letter_date(l) == Some(partition))
            .count(),
        next_phase_ran,
    })
}

/// The verdicts of a range of dates for every gate.
pub fn verdicts(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    dates: &[Partition],
    now: Timestamp,
) -> Result<Vec<(String, DateVerdict)>, baton_ports::Error> {
    let letters = store.dead_letters()?;
    let mut out = Vec::new();
    for gate in &pipeline.gates {
        for &d in dates {
            let facts = gather(pipeline, store, warehouse, gate, d, &letters)?;
            out.push((gate.id.to_string(), audit::audit(gate, &facts, now)));
        }
    }
    Ok(out)
}

/// One upstream job's landings for a date, as `status`, the API and the dashboard show
/// them: the first landing (lateness is judged by it), the latest batch and how many.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobLandings {
    /// The upstream job.
    pub job: String,
    /// When its first batch landed; `None` when nothing has.
    pub landed_at: Option<Timestamp>,
    /// When its latest batch was recorded; `None` when nothing has landed.
    pub latest_at: Option<Timestamp>,
    /// How many batches have landed (0: none).
    pub batches: u32,
}

/// Every upstream job of the pipeline, in config order, with what `landed` (a date's
/// [`StateStore::landings`]) says of it; a job that has not landed is listed with none.
pub fn job_landings(pipeline: &Pipeline, landed: &[baton_ports::Landing]) -> Vec<JobLandings> {
    pipeline
        .upstream
        .iter()
        .map(|job| {
            let l = landed.iter().find(|l| l.job == job.name);
            JobLandings {
                job: job.name.clone(),
                landed_at: l.map(|l| l.landed_at),
                latest_at: l.map(|l| l.latest_at),
                batches: l.map_or(0, |l| l.batches),
            }
        })
        .collect()
}

/// A date's landings per upstream job (see [`job_landings`]).
pub fn landings(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    partition: Partition,
) -> Result<Vec<JobLandings>, baton_ports::Error> {
    Ok(job_landings(pipeline, &store.landings(partition)?))
}

/// What a `serve` or worker writes as its heartbeat (an operational record under
/// `instance/<role>/<host>[/<pid>]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Heartbeat {
    /// `serve` or `worker`.
    pub role: String,
    /// The host.
    pub host: String,
    /// The process.
    pub pid: u32,
    /// The build's version.
    pub version: String,
    /// The build's commit.
    pub commit: String,
    /// When the process started.
    pub started_at: Timestamp,
    /// Backend errors it retried through in the last hour.
    #[serde(default)]
    pub backend_errors: Vec<Timestamp>,
    /// The last of them (URLs in it are already redacted by the adapters).
    #[serde(default)]
    pub last_error: Option<String>,
    /// When it stopped on request (SIGTERM, Ctrl-C): a stopped `serve` is not a silent one,
    /// so neither `health` (BATON-H011) nor `baton drift` reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
}

/// Every upstream job's landing for each of `dates`, judged at `now` by
/// [`baton_core::schedule::judge`] (expected time from the job's schedule, actual from the
/// landings table): the dashboard's lateness view and the report read it. The landings of
/// the whole span are read at once ([`StateStore::landings_between`]), not date by date.
pub fn lateness(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    dates: &[Partition],
    now: Timestamp,
) -> Result<Vec<baton_core::schedule::LandingVerdict>, baton_ports::Error> {
    let (Some(&from), Some(&to)) = (dates.iter().min(), dates.iter().max()) else {
        return Ok(Vec::new());
    };
    let landed: std::collections::BTreeMap<(Partition, String), Timestamp> = (store
        .landings_between(from, to)?)
    .into_iter()
    .map(|l| ((l.partition, l.job), l.landed_at))
    .collect();
    let mut out = Vec::new();
    for &date in dates {
        for job in &pipeline.upstream {
            let at = landed.get(&(date, job.name.clone())).copied();
            out.push(baton_core::schedule::judge(
                job,
                date,
                at,
                &pipeline.timezone,
                &pipeline.timezone_name,
                now,
            ));
        }
    }
    Ok(out)
}
