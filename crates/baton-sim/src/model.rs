//! The reference model: what the product's state should be, computed apart from baton-core's
//! rules, so that a wrong rule in the product is caught rather than confirmed.
//!
//! The simulator feeds it what happened, never what the product decided: the runs the
//! simulated workers finished, the requests it recorded and cleared, and the completion
//! messages in the order the consumer's transactions applied them (with the store's time).
//! From those alone it derives, per (gate, date): each processor's best run, which
//! processors are complete, the trigger policy of the date's mode at that time, the current
//! generation and which generations must have triggered.
//!
//! The rules are written out plainly from the design (`DESIGN.md` G1, G2, G9) and the config
//! values, without calling `baton_core::gate::evaluate`, `Document::completed` or the step.
//! What it shares with the product: the parsed `Pipeline` (config parsing is not a rule under
//! test, and parsing TOML twice would only add a second parser to trust), the value types
//! (`Partition`, `ProcessorName`, `CompletionMessage`: data, not decisions) and jiff for the
//! time zone (a calendar library, not baton's code).
//!
//! Not modelled: quality checks (the simulator lands no calendar rows, so every check of the
//! reference gate is skipped: `only_when_rows_in`), and reconcile (the simulator runs none).

use baton_core::config::Pipeline;
use baton_core::gate::{Gate, Rule};
use baton_core::message::CompletionMessage;
use baton_core::model::{CompletionStatus, Partition, ProcessorName};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::collections::{BTreeMap, BTreeSet};

/// One mode's policy as plain sets, copied from the config values.
#[derive(Debug, Clone)]
pub struct PlainPolicy {
    /// Processors the mode expects.
    pub expected: BTreeSet<ProcessorName>,
    /// The critical ones.
    pub critical: BTreeSet<ProcessorName>,
    /// The rules, any of which triggers. `Rule` is the parsed config value (its text,
    /// `all_complete` or `critical_plus_majority_<N>pct`); its meaning is written below.
    pub rules: Vec<Rule>,
}

impl PlainPolicy {
    /// Whether the complete processors satisfy one of the rules.
    pub fn satisfied(&self, complete: &BTreeSet<ProcessorName>) -> bool {
        let mut expected_done = 0u64;
        for p in &self.expected {
            if complete.contains(p) {
                expected_done += 1;
            }
        }
        let expected_total = self.expected.len() as u64;
        let mut every_critical_done = true;
        for p in &self.critical {
            if !complete.contains(p) {
                every_critical_done = false;
            }
        }
        for rule in &self.rules {
            let ok = match *rule {
                Rule::AllComplete => expected_done == expected_total,
                Rule::CriticalPlusMajority { percent } => {
                    // "at least N%": done / total >= N / 100, in integers.
                    every_critical_done
                        && expected_done * 100 >= u64::from(percent) * expected_total
                }
            };
            if ok {
                return true;
            }
        }
        false
    }
}

/// A run as the model remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRun {
    /// The run id.
    pub run_id: String,
    /// Whether it completes the processor (success, partial, no_data).
    pub succeeded: bool,
    /// When it was produced.
    pub produced_at: Timestamp,
    /// The digest of what it wrote.
    pub digest: Option<String>,
}

/// What the model holds for one (gate, date).
#[derive(Debug, Clone)]
pub struct DateModel {
    /// Distinct runs applied, per processor.
    pub runs: BTreeMap<ProcessorName, BTreeMap<String, ModelRun>>,
    /// The current generation (1 before anything).
    pub generation: u32,
    /// Whether the current generation has triggered.
    pub triggered: bool,
    /// Every generation that must have triggered.
    pub fired: BTreeSet<u32>,
    /// Generations opened because a counted processor's output changed after the trigger.
    pub changes: u32,
    /// New best runs after the trigger that wrote the same rows (nothing to do).
    pub identical: u32,
}

/// The best run of a processor: the latest successful run (by production time, then run
/// id); only when none succeeded, the latest failed one. A failure never hides a success.
pub fn best_run(runs: &BTreeMap<String, ModelRun>) -> Option<&ModelRun> {
    fn latest(candidates: Vec<&ModelRun>) -> Option<&ModelRun> {
        let mut best: Option<&ModelRun> = None;
        for r in candidates {
            let later = match best {
                None => true,
                Some(b) => (r.produced_at, r.run_id.as_str()) > (b.produced_at, b.run_id.as_str()),
            };
            if later {
                best = Some(r);
            }
        }
        best
    }
    let successes: Vec<&ModelRun> = runs.values().filter(|r| r.succeeded).collect();
    if successes.is_empty() {
        latest(runs.values().collect())
    } else {
        latest(successes)
    }
}

impl Default for DateModel {
    /// Before any completion: generation 1, nothing triggered.
    fn default() -> Self {
        Self {
            runs: BTreeMap::new(),
            generation: 1,
            triggered: false,
            fired: BTreeSet::new(),
            changes: 0,
            identical: 0,
        }
    }
}

impl DateModel {
    /// The processors whose best run succeeded.
    pub fn complete(&self) -> BTreeSet<ProcessorName> {
        self.runs
            .iter()
            .filter(|(_, runs)| best_run(runs).is_some_and(|r| r.succeeded))
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// The reference model of one gate over the simulated dates.
pub struct Model {
    gate_id: String,
    overnight: PlainPolicy,
    same_day: Option<PlainPolicy>,
    timezone: TimeZone,
    /// Per date.
    pub dates: BTreeMap<Partition, DateModel>,
    /// Runs owed (processor, date) -> when requested (the latest request).
    pub requests: BTreeMap<(ProcessorName, Partition), Timestamp>,
}

fn plain(policy: &baton_core::gate::ModePolicy) -> PlainPolicy {
    PlainPolicy {
        expected: policy.expected.iter().cloned().collect(),
        critical: policy.critical.iter().cloned().collect(),
        rules: policy.rules.clone(),
    }
}

impl Model {
    /// The model of the pipeline's first gate (the reference pipeline has one).
    pub fn new(pipeline: &Pipeline) -> Self {
        let gate: &Gate = &pipeline.gates[0];
        Self {
            gate_id: gate.id.to_string(),
            overnight: plain(&gate.overnight),
            same_day: gate.same_day.as_ref().map(plain),
            timezone: gate.timezone.clone(),
            dates: BTreeMap::new(),
            requests: BTreeMap::new(),
        }
    }

    /// The gate's name.
    pub fn gate_id(&self) -> &str {
        &self.gate_id
    }

    /// The policy for `date` at `now`: same-day for the pipeline's today and later (when the
    /// gate has a same-day policy), overnight for earlier dates.
    pub fn policy(&self, date: Partition, now: Timestamp) -> &PlainPolicy {
        let today = now.to_zoned(self.timezone.clone()).date();
        match &self.same_day {
            Some(p) if date.date() >= today => p,
            _ => &self.overnight,
        }
    }

    /// A run of `processor` for `date` was requested at `at`.
    pub fn request(&mut self, processor: &ProcessorName, date: Partition, at: Timestamp) {
        let since = self.requests.entry((processor.clone(), date)).or_insert(at);
        *since = (*since).max(at);
    }

    /// A run that started at `started_at` wrote its output: it does every request made no
    /// later than its start; a request made during the run is still owed.
    pub fn run_wrote(&mut self, processor: &ProcessorName, date: Partition, started_at: Timestamp) {
        let key = (processor.clone(), date);
        if self
            .requests
            .get(&key)
            .is_some_and(|since| *since <= started_at)
        {
            self.requests.remove(&key);
        }
    }

    /// The consumer applied `message` at `now`.
    pub fn apply(&mut self, message: &CompletionMessage, now: Timestamp) {
        let date = message.partition;
        let in_flight: BTreeSet<ProcessorName> = self
            .requests
            .keys()
            .filter(|(_, d)| *d == date)
            .map(|(p, _)| p.clone())
            .collect();
        let policy = self.policy(date, now).clone();
        let model = self.dates.entry(date).or_default();
        let runs = model.runs.entry(message.processor.clone()).or_default();
        let before = best_run(runs).cloned();
        let is_new = !runs.contains_key(message.run_id.as_str());
        if is_new {
            runs.insert(
                message.run_id.to_string(),
                ModelRun {
                    run_id: message.run_id.to_string(),
                    succeeded: message.status != CompletionStatus::Failed,
                    produced_at: message.produced_at,
                    digest: message.digest.clone(),
                },
            );
        }
        let after = best_run(runs).cloned();
        // G9: after the trigger, a new best run with other rows than the one before opens a
        // new generation. Without digests baton cannot tell, so nothing changes.
        let changed = match (&before, &after) {
            (Some(b), Some(a)) => {
                b.succeeded
                    && a.succeeded
                    && b.run_id != a.run_id
                    && b.digest.is_some()
                    && a.digest.is_some()
                    && b.digest != a.digest
            }
            _ => false,
        };
        let identical = matches!((&before, &after), (Some(b), Some(a))
            if b.succeeded && a.succeeded && b.run_id != a.run_id && b.digest.is_some() && b.digest == a.digest);
        if model.triggered && identical {
            model.identical += 1;
        }
        // Only a processor the date's mode expects counts (DESIGN.md, G9).
        if model.triggered && changed && policy.expected.contains(&message.processor) {
            model.generation += 1;
            model.triggered = false;
            model.changes += 1;
        }
        // G2: a new successful run asking for reprocessing opens a generation once the
        // current one has triggered.
        let succeeded = message.status != CompletionStatus::Failed;
        if model.triggered && is_new && message.force_reprocess && succeeded {
            model.generation += 1;
            model.triggered = false;
        }
        // The gate waits while an expected processor has a run owed (one trigger per
        // settled change).
        let settling = policy.expected.iter().any(|p| in_flight.contains(p));
        if !model.triggered && !settling && policy.satisfied(&model.complete()) {
            model.triggered = true;
            model.fired.insert(model.generation);
        }
    }
}
