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
//! (`Partition`, `ProcessorName`, `CompletionMessage`, `Row`: data, not decisions), the
//! parsed quality checks (`QualityCheck`: config values; what they mean is written here, not
//! taken from `baton_core::quality::judge`) and jiff for the time zone (a calendar library,
//! not baton's code).
//!
//! It also knows the rows: what each accepted write should have left (its own first-wins
//! dedup of the rows the run computed, not `baton_core::dedup`), and the calendar rows the
//! simulated scraper landed. From those it judges the gate's quality checks (their meaning
//! written out below from `DESIGN.md` and the config values) and which `no_data` runs count
//! (none on a date the processor's calendar says has work).
//!
//! The next phase: it must run exactly once per generation that fired (G10); the simulator
//! counts its runs in the run history and compares them with `fired` (`check.rs`).

use baton_core::config::Pipeline;
use baton_core::gate::{Gate, Rule};
use baton_core::message::CompletionMessage;
use baton_core::model::{CompletionStatus, Partition, ProcessorName, Row};
use baton_core::quality::{CheckKind, QualityCheck};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;
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
    /// Whether it ended well (success, partial, no_data).
    pub succeeded: bool,
    /// Whether it completes the processor: it ended well, and is not a `no_data` on a date
    /// its calendar says has work (judged when it was applied).
    pub counted: bool,
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
    /// Times the policy was satisfied but a quality check held the trigger back.
    pub blocked: u32,
    /// Whether the last decision was held back by a check (to count those that pass later).
    pub held: bool,
    /// Generations that fired after a check had held them back.
    pub passed_after_block: u32,
    /// Holds where one check alone failed, by its kind (`check_kind`): the workload must
    /// make each check the deciding one sometimes, or a wrong check hides behind another.
    pub held_alone: BTreeMap<&'static str, u32>,
    /// When the current generation triggered (what reconcile's next-phase check reads).
    pub triggered_at: Option<Timestamp>,
}

/// The best run of a processor: the latest counted run (by production time, then run id);
/// only when none counts, the latest of the others. A failure never hides a success.
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
    let successes: Vec<&ModelRun> = runs.values().filter(|r| r.counted).collect();
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
            blocked: 0,
            held: false,
            passed_after_block: 0,
            held_alone: BTreeMap::new(),
            triggered_at: None,
        }
    }
}

impl DateModel {
    /// The current generation triggers at `now`.
    pub fn fire(&mut self, now: Timestamp) {
        self.triggered = true;
        self.triggered_at = Some(now);
        self.fired.insert(self.generation);
    }

    /// The processors whose best run succeeded.
    pub fn complete(&self) -> BTreeSet<ProcessorName> {
        self.runs
            .iter()
            .filter(|(_, runs)| best_run(runs).is_some_and(|r| r.counted))
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// The reference model of one gate over the simulated dates.
pub struct Model {
    gate_id: String,
    overnight: PlainPolicy,
    same_day: Option<PlainPolicy>,
    pub(crate) timezone: TimeZone,
    /// Per date.
    pub dates: BTreeMap<Partition, DateModel>,
    /// Runs owed (processor, date) -> when requested (the latest request).
    pub requests: BTreeMap<(ProcessorName, Partition), Timestamp>,
    /// The rows each table should hold per date: landed raw rows, and what the newest
    /// accepted write of a processor left.
    pub tables: BTreeMap<(String, Partition), Vec<Row>>,
    /// The gate's checks (config values; their meaning is in `check_passes`).
    checks: Vec<QualityCheck>,
    /// Per processor: its calendar table, if any.
    calendars: BTreeMap<ProcessorName, String>,
    /// Per table: the processor that writes it.
    pub(crate) writers: BTreeMap<String, ProcessorName>,
    /// What reconcile's truth is read from: run history, landings, config (`reconcile.rs`).
    pub(crate) history: crate::reconcile::History,
}

/// What a write of `rows` leaves in a table keyed on `primary_key`: the first row of each
/// key, in order (DESIGN.md G5), written here without `baton_core::dedup`.
pub fn rows_left(rows: &[Row], primary_key: &[String]) -> Vec<Row> {
    let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut kept = Vec::new();
    for row in rows {
        let key: Vec<String> = primary_key
            .iter()
            .map(|c| row.get(c).map(Value::to_string).unwrap_or_default())
            .collect();
        if seen.insert(key) {
            kept.push(row.clone());
        }
    }
    kept
}

/// A value as a coverage check compares it: text as it is, anything else as JSON; null is
/// no value.
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A check's kind as the simulator's events name it.
pub fn check_kind(kind: &CheckKind) -> &'static str {
    match kind {
        CheckKind::MinRows { .. } => "min_rows",
        CheckKind::NonNullCoverage { .. } => "non_null_coverage",
        CheckKind::Coverage { .. } => "coverage",
    }
}

/// `part` of `whole` is at least `min_percent`% (an empty whole is covered).
fn at_least(part: usize, whole: usize, min_percent: f64) -> bool {
    whole == 0 || 100.0 * part as f64 + 1e-6 >= min_percent * whole as f64
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
            tables: BTreeMap::new(),
            checks: gate.checks.clone(),
            calendars: pipeline
                .processors
                .iter()
                .filter_map(|p| Some((p.name.clone(), p.calendar.clone()?)))
                .collect(),
            writers: pipeline
                .processors
                .iter()
                .map(|p| (p.table.name.clone(), p.name.clone()))
                .collect(),
            history: crate::reconcile::History::new(pipeline, gate),
        }
    }

    /// The rows of `table` for `date` as the model knows them.
    pub(crate) fn rows(&self, table: &str, date: Partition) -> &[Row] {
        self.tables
            .get(&(table.to_owned(), date))
            .map_or(&[], Vec::as_slice)
    }

    /// Rows landed in a raw table for `date` (an upsert: a key landed again replaces its row).
    pub fn landed(&mut self, table: &str, primary_key: &[String], date: Partition, rows: &[Row]) {
        let mut all = rows.to_vec();
        all.extend(self.rows(table, date).iter().cloned());
        self.tables
            .insert((table.to_owned(), date), rows_left(&all, primary_key));
    }

    /// An accepted write of `rows` (as computed, before dedup) to `table` for `date`: they
    /// replace the date's rows. Returns what it left.
    pub fn wrote_rows(
        &mut self,
        table: &str,
        primary_key: &[String],
        date: Partition,
        rows: &[Row],
    ) -> Vec<Row> {
        let left = rows_left(rows, primary_key);
        self.tables.insert((table.to_owned(), date), left.clone());
        left
    }

    /// Whether `processor` has work on `date`: its calendar table has rows for it.
    pub fn has_work(&self, processor: &ProcessorName, date: Partition) -> bool {
        self.calendars
            .get(processor)
            .is_some_and(|t| !self.rows(t, date).is_empty())
    }

    /// Whether every check that applies to `date` at `now` passes: a check applies when the
    /// mode expects the processor writing its table, and (with `only_when_rows_in`) when
    /// that table has rows for the date. A warning passes.
    pub fn checks_pass(&self, date: Partition, now: Timestamp) -> bool {
        self.failing_checks(date, now).is_empty()
    }

    /// The checks that apply to `date` at `now` and fail (see `checks_pass`).
    fn failing_checks(&self, date: Partition, now: Timestamp) -> Vec<&QualityCheck> {
        let expected = &self.policy(date, now).expected;
        self.checks
            .iter()
            .filter(|check| {
                let applies = self
                    .writers
                    .get(&check.table)
                    .is_none_or(|p| expected.contains(p))
                    && check
                        .only_when_rows_in
                        .as_deref()
                        .is_none_or(|t| !self.rows(t, date).is_empty());
                applies && !self.check_passes(check, date)
            })
            .collect()
    }

    /// The tables the gate's checks read that a processor writes (whose inputs landing
    /// again can make a failing check pass).
    pub fn checked_tables(&self) -> BTreeSet<&ProcessorName> {
        self.checks
            .iter()
            .filter_map(|c| self.writers.get(&c.table))
            .collect()
    }

    /// One check on the rows the model knows.
    fn check_passes(&self, check: &QualityCheck, date: Partition) -> bool {
        let rows = self.rows(&check.table, date);
        match &check.kind {
            CheckKind::MinRows { min } => rows.len() as u64 >= *min,
            CheckKind::NonNullCoverage {
                column,
                min_percent,
                ..
            } => {
                let filled = rows
                    .iter()
                    .filter(|r| r.get(column).is_some_and(|v| !v.is_null()))
                    .count();
                !rows.is_empty() && at_least(filled, rows.len(), *min_percent)
            }
            CheckKind::Coverage {
                column,
                reference_table,
                reference_column,
                min_percent,
                ..
            } => {
                let values = |rows: &[Row], c: &str| -> BTreeSet<String> {
                    rows.iter()
                        .filter_map(|r| r.get(c).and_then(value_text))
                        .collect()
                };
                let have = values(rows, column);
                let want = values(self.rows(reference_table, date), reference_column);
                let covered = want.intersection(&have).count();
                at_least(covered, want.len(), *min_percent)
            }
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
        let policy = self.policy(date, now).clone();
        let succeeded = message.status != CompletionStatus::Failed;
        let counted = succeeded
            && !(message.status == CompletionStatus::NoData
                && self.has_work(&message.processor, date));
        let model = self.dates.entry(date).or_default();
        let runs = model.runs.entry(message.processor.clone()).or_default();
        let before = best_run(runs).cloned();
        let is_new = !runs.contains_key(message.run_id.as_str());
        if is_new {
            runs.insert(
                message.run_id.to_string(),
                ModelRun {
                    run_id: message.run_id.to_string(),
                    succeeded,
                    counted,
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
                b.counted
                    && a.counted
                    && b.run_id != a.run_id
                    && b.digest.is_some()
                    && a.digest.is_some()
                    && b.digest != a.digest
            }
            _ => false,
        };
        let identical = matches!((&before, &after), (Some(b), Some(a))
            if b.counted && a.counted && b.run_id != a.run_id && b.digest.is_some() && b.digest == a.digest);
        if model.triggered && identical {
            model.identical += 1;
        }
        // Only a processor the date's mode expects counts (DESIGN.md, G9).
        if model.triggered && changed && policy.expected.contains(&message.processor) {
            model.generation += 1;
            model.triggered = false;
            model.changes += 1;
        }
        // G2: a new run that ended well asking for reprocessing opens a generation once the
        // current one has triggered (a `no_data` on a date with work too: it asked).
        if model.triggered && is_new && message.force_reprocess && succeeded {
            model.generation += 1;
            model.triggered = false;
        }
        self.decide(date, now);
    }

    /// Whether an expected processor of `date` has a run owed at `now`: the gate waits for
    /// it (one trigger per settled change).
    pub fn settling(&self, date: Partition, now: Timestamp) -> bool {
        let policy = self.policy(date, now);
        self.requests
            .keys()
            .any(|(p, d)| *d == date && policy.expected.contains(p))
    }

    /// The trigger decision for `date` at `now`, after a completion (or a reconcile repair):
    /// the current generation triggers once its mode's policy is satisfied, nothing is owed,
    /// and the checks pass.
    pub fn decide(&mut self, date: Partition, now: Timestamp) {
        let settling = self.settling(date, now);
        let failing: Vec<&'static str> = self
            .failing_checks(date, now)
            .into_iter()
            .map(|c| check_kind(&c.kind))
            .collect();
        let policy = self.policy(date, now).clone();
        let model = self.dates.entry(date).or_default();
        if !model.triggered && !settling && policy.satisfied(&model.complete()) {
            // A failing check holds the trigger back until a later decision finds it passing.
            if !failing.is_empty() {
                model.blocked += 1;
                model.held = true;
                if let [alone] = failing[..] {
                    *model.held_alone.entry(alone).or_default() += 1;
                }
                return;
            }
            if std::mem::take(&mut model.held) {
                model.passed_after_block += 1;
            }
            model.fire(now);
        }
    }
}
