//! Reconcile as a simulator step: the periodic `reconcile --fix` of `serve` over the
//! simulated dates, run among the faults (and once more when the drain has quiesced), with
//! the reference model's own account of what it must repair.
//!
//! The product's reconcile reads the truth of a date from run history and the warehouse,
//! records the processors that ran and wrote but that the document misses, re-decides the
//! trigger, re-triggers a generation the next phase never ran, and requests runs of stale
//! or short processors. The model says the same from what it saw happen (the simulated
//! workers' runs as they recorded them, the landings, the rows it knows), written here
//! without `baton_core::reconcile`, `baton_core::freshness` or the gate's rules: which
//! processors wrote and are complete in that truth but have no counted run in the model (a
//! completion still on its way: reconcile applies it early, and the real message arrives
//! later as a duplicate of the same run), which runs stale output or a short past date make
//! owed, and whether the next phase is behind. The step checks that the repair recorded
//! exactly the processors the model says were missing; the checks after every step then
//! compare the document, its trigger rows and the owed runs with the model (no double
//! trigger, no lost completion).
//!
//! Shared with the product: the generation the next phase last ran for is read from the
//! store's record of it (what the real trigger consumer did: an observation, not a
//! decision), and [`NEXT_PHASE_GRACE`] (a value of the design, not a rule).

use crate::World;
use crate::model::Model;
use baton_core::clock::Clock;
use baton_core::config::Pipeline;
use baton_core::freshness::NEXT_PHASE_GRACE;
use baton_core::gate::Gate;
use baton_core::message::CompletionMessage;
use baton_core::model::{CompletionStatus, Partition, ProcessorName, RunId};
use baton_ports::StateStore;
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// The newest accepted write of a processor for a date, as its run recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenRun {
    /// The run.
    pub run_id: RunId,
    /// How it ended (success or `no_data`: a failed run writes nothing).
    pub status: CompletionStatus,
    /// Rows it wrote (its completion's count).
    pub rows: u64,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished (its write).
    pub finished_at: Timestamp,
}

/// What reconcile's truth is read from, as the model saw it happen.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The newest accepted write per (processor, date).
    written: BTreeMap<(ProcessorName, Partition), WrittenRun>,
    /// The latest batch per (upstream job, date).
    landings: BTreeMap<(String, Partition), Timestamp>,
    /// Dates some run started for.
    begun: BTreeSet<Partition>,
    /// Config values: per processor, its upstream jobs, what it depends on, its table.
    upstream: BTreeMap<ProcessorName, Vec<String>>,
    depends_on: BTreeMap<ProcessorName, Vec<ProcessorName>>,
    table: BTreeMap<ProcessorName, String>,
    /// The processors the gate expects in either mode, in name order.
    watched: BTreeSet<ProcessorName>,
}

impl History {
    /// Empty, with the config values of `pipeline` and `gate`.
    pub fn new(pipeline: &Pipeline, gate: &Gate) -> Self {
        let mut watched: BTreeSet<ProcessorName> =
            gate.overnight.expected.iter().cloned().collect();
        if let Some(same_day) = &gate.same_day {
            watched.extend(same_day.expected.iter().cloned());
        }
        let ps = || pipeline.processors.iter();
        Self {
            upstream: ps().map(|p| (p.name.clone(), p.upstream.clone())).collect(),
            depends_on: ps()
                .map(|p| (p.name.clone(), p.depends_on.clone()))
                .collect(),
            table: ps()
                .map(|p| (p.name.clone(), p.table.name.clone()))
                .collect(),
            watched,
            ..Self::default()
        }
    }
}

/// What the model says reconcile must do for a date, judged before the repair.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Whether any finding is one `--fix` repairs (otherwise nothing is written).
    fixable: bool,
    /// The completions it records, in the order it records them (processor name).
    record: Vec<CompletionMessage>,
    /// Runs it requests: stale output, and processors short on a past date.
    requests: BTreeSet<ProcessorName>,
}

impl Plan {
    /// The processors the repair records.
    pub fn recorded(&self) -> BTreeSet<ProcessorName> {
        self.record.iter().map(|m| m.processor.clone()).collect()
    }
}

impl Model {
    /// A run started for `date` (the date has begun).
    pub fn run_started(&mut self, date: Partition) {
        self.history.begun.insert(date);
    }

    /// A run's write was accepted.
    pub fn run_written(&mut self, processor: &ProcessorName, date: Partition, run: WrittenRun) {
        self.history.written.insert((processor.clone(), date), run);
    }

    /// A batch of `job` for `date` was recorded at `at`.
    pub fn landed_batch(&mut self, job: &str, date: Partition, at: Timestamp) {
        self.history.landings.insert((job.to_owned(), date), at);
    }

    /// Complete in run history and the warehouse: its newest write ended well and left
    /// rows, or found no data on a date it has no work for.
    fn truth_complete(&self, p: &ProcessorName, date: Partition) -> bool {
        let Some(run) = self.history.written.get(&(p.clone(), date)) else {
            return false;
        };
        let rows = self
            .history
            .table
            .get(p)
            .is_some_and(|t| !self.rows(t, date).is_empty());
        rows || (run.status == CompletionStatus::NoData && !self.has_work(p, date))
    }

    /// Output older than its inputs: its newest write started before one of its upstream
    /// jobs landed again, or before a processor it depends on wrote again.
    fn stale(&self, p: &ProcessorName, date: Partition) -> bool {
        let Some(run) = self.history.written.get(&(p.clone(), date)) else {
            return false;
        };
        let h = &self.history;
        let landed_since = h.upstream.get(p).into_iter().flatten().any(|job| {
            h.landings
                .get(&(job.clone(), date))
                .is_some_and(|at| *at > run.started_at)
        });
        let dependency_since = h.depends_on.get(p).into_iter().flatten().any(|d| {
            h.written
                .get(&(d.clone(), date))
                .is_some_and(|w| w.finished_at > run.started_at)
        });
        self.truth_complete(p, date) && (landed_since || dependency_since)
    }

    /// Short and silent, runnable: on a past date that has begun, an expected processor is
    /// not complete, no run of it is owed, and every upstream job it waits for has landed.
    fn short(&self, p: &ProcessorName, date: Partition, now: Timestamp) -> bool {
        let today = now.to_zoned(self.timezone.clone()).date();
        let landed = self
            .history
            .upstream
            .get(p)
            .into_iter()
            .flatten()
            .all(|job| self.history.landings.contains_key(&(job.clone(), date)));
        self.history.begun.contains(&date)
            && date.date() < today
            && self.policy(date, now).expected.contains(p)
            && !self.truth_complete(p, date)
            && !self.requests.contains_key(&(p.clone(), date))
            && landed
    }

    /// The next phase is behind: the current generation triggered at least the grace ago and
    /// the next phase has not run for it (`handled`: the generation it last ran for).
    fn behind(&self, date: Partition, handled: Option<u32>, now: Timestamp) -> bool {
        self.dates.get(&date).is_some_and(|m| {
            m.triggered
                && handled.is_none_or(|h| h < m.generation)
                && m.triggered_at
                    .and_then(|at| at.checked_add(NEXT_PHASE_GRACE).ok())
                    .is_some_and(|due| due <= now)
        })
    }

    /// What reconcile must do for `date` at `now`.
    pub fn reconcile_plan(&self, date: Partition, now: Timestamp, handled: Option<u32>) -> Plan {
        let complete = self
            .dates
            .get(&date)
            .map(|m| m.complete())
            .unwrap_or_default();
        let truth: BTreeSet<ProcessorName> = (self.history.watched.iter())
            .filter(|p| self.truth_complete(p, date))
            .cloned()
            .collect();
        let record: Vec<CompletionMessage> = truth
            .difference(&complete)
            .filter_map(|p| {
                let run = self.history.written.get(&(p.clone(), date))?;
                Some(CompletionMessage::new(
                    p.clone(),
                    date,
                    run.run_id.clone(),
                    run.status,
                    run.rows,
                    run.finished_at,
                ))
            })
            .collect();
        let mut requests: BTreeSet<ProcessorName> = (self.history.watched.iter())
            .filter(|p| self.stale(p, date))
            .cloned()
            .collect();
        requests.extend(
            (self.policy(date, now).expected.iter())
                .filter(|p| self.short(p, date, now))
                .cloned(),
        );
        let triggered = self.dates.get(&date).is_some_and(|m| m.triggered);
        let missing_trigger =
            !triggered && !self.settling(date, now) && self.policy(date, now).satisfied(&truth);
        let fixable = !record.is_empty()
            || missing_trigger
            || !requests.is_empty()
            || self.behind(date, handled, now);
        Plan {
            fixable,
            record,
            requests,
        }
    }

    /// Applies what reconcile did for `date` (by `plan`): the completions it recorded, the
    /// trigger decision, a re-trigger for a next phase that is behind, the runs it requested.
    pub fn reconciled(
        &mut self,
        date: Partition,
        now: Timestamp,
        plan: &Plan,
        handled: Option<u32>,
    ) {
        if !plan.fixable {
            return;
        }
        for message in &plan.record {
            self.apply(message, now);
        }
        self.decide(date, now);
        if self.behind(date, handled, now) {
            // A new generation, triggered now whatever the policy says.
            let m = self.dates.entry(date).or_default();
            m.generation += 1;
            m.fire(now);
        }
        for p in &plan.requests {
            self.request(p, date, now);
        }
    }
}

impl World {
    /// The periodic `reconcile --fix` of `serve` over every simulated date: runs whose
    /// process died are marked first, as the service does, then each date is repaired, and
    /// the model applies its own account of the repair.
    pub(crate) fn reconcile(&mut self) -> Result<(), crate::Violation> {
        let backend = self.backend.clone();
        backend.abandon_runs().map_err(|e| self.backend_error(e))?;
        let gate = self.pipeline.gates[0].clone();
        let now = self.clock.now();
        self.event("reconcile passes");
        for date in self.dates.clone() {
            let handled = baton_serve::checks::next_phase_generation(backend.as_ref(), &gate, date)
                .map_err(|e| self.backend_error(e))?;
            let plan = self.model.reconcile_plan(date, now, handled);
            let completed = |w: &World| -> Result<BTreeSet<ProcessorName>, crate::Violation> {
                let doc = backend
                    .document(&gate.id, date)
                    .map_err(|e| w.backend_error(e))?;
                Ok(doc.map(|d| d.completed()).unwrap_or_default())
            };
            let before = completed(self)?;
            let pipeline = self.pipeline.clone();
            let reconciled = baton_serve::checks::reconcile_date(
                &pipeline,
                backend.as_ref(),
                backend.as_ref(),
                &gate,
                date,
                now,
                true,
            )
            .map_err(|e| self.backend_error(e))?;
            let recorded: BTreeSet<ProcessorName> =
                completed(self)?.difference(&before).cloned().collect();
            self.model.reconciled(date, now, &plan, handled);
            if recorded != plan.recorded() {
                return Err(self.violation(
                    "G1",
                    format!(
                        "{date}: reconcile recorded {recorded:?}; the model says {:?} wrote and were missing",
                        plan.recorded()
                    ),
                ));
            }
            if !reconciled.changes.is_empty() {
                self.event("dates reconcile repaired");
            }
            if !plan.recorded().is_empty() {
                self.event("completions reconcile recorded before their message");
            }
        }
        Ok(())
    }
}
