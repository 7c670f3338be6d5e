//! The completion document per (gate, partition) and the orchestrator step.
//!
//! [`step`] is a pure function `(document, message, now) -> (document', outcome, effects)`.
//! The adapter runs it inside its transaction, writes the effects (a trigger's outbox row,
//! a dead letter) in the same transaction, and acks the message only after commit.
//!
//! Invariant: `completed_count` is derived from the entries on every step, never
//! incremented. Invariant: the trigger is decided on every path (first message, duplicate,
//! stale, reconcile), and at most once per (gate, partition, generation).
//! Invariant: an entry's summary (status, run, record count) is chosen from the set of
//! distinct runs seen, independently of the order they arrived in.

use crate::gate::{Gate, Verdict};
use crate::message::CompletionMessage;
use crate::model::{CompletionStatus, GateId, Partition, ProcessorName, RunId};
use crate::quality::CheckResult;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How many distinct runs an entry remembers; older runs are forgotten first.
pub const RUNS_REMEMBERED_MAX: usize = 64;

/// One distinct run a processor reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSeen {
    /// The run.
    pub run_id: RunId,
    /// Its status.
    pub status: CompletionStatus,
    /// Rows it wrote.
    pub record_count: u64,
    /// When it was produced.
    pub produced_at: Timestamp,
    /// Whether it asked for a new trigger generation.
    #[serde(default)]
    pub force_reprocess: bool,
    /// The digest of the rows it wrote (absent in messages that do not carry one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// A `no_data` completion on a date its processor has work for (its calendar has rows):
    /// recorded and visible, never counted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_counted: bool,
}

impl RunSeen {
    /// Whether this run completes its processor for the date.
    pub fn completes(&self) -> bool {
        self.status.completes() && !self.not_counted
    }
}

/// What the consumer measured about a date just before applying a batch, beside its quality
/// checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepFacts {
    /// Processors with a rerun requested or running: the gate waits for them.
    pub in_flight: BTreeSet<ProcessorName>,
    /// Processors with work on the date (their calendar table has rows): a `no_data`
    /// completion from one of them is not counted.
    pub has_work: BTreeSet<ProcessorName>,
}

/// A processor's entry in a completion document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Status of the best run: the latest completing run, or the latest failed one.
    pub status: CompletionStatus,
    /// That run.
    pub run_id: RunId,
    /// That run's record count.
    pub record_count: u64,
    /// The earliest completing run's production time.
    pub first_completed_at: Option<Timestamp>,
    /// The latest production time of any run.
    pub last_completed_at: Timestamp,
    /// Messages received for this processor, duplicates included (metadata only).
    pub messages_seen: u64,
    /// When the last message arrived (metadata only).
    pub last_seen_at: Timestamp,
    /// Distinct runs seen, oldest first.
    pub runs: Vec<RunSeen>,
    /// Whether the best run is a `no_data` on a date with work (then it does not count).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_counted: bool,
}

/// What an entry's best run wrote, to tell a rerun that changed the output from one that did
/// not (G9).
fn best_output(entry: &Entry) -> Option<(&RunId, Option<&String>)> {
    if !entry.is_complete() {
        return None;
    }
    let best = entry.runs.iter().find(|r| r.run_id == entry.run_id)?;
    Some((&best.run_id, best.digest.as_ref()))
}

/// Whether a processor the gate counted when it triggered now has a different best run that
/// wrote different rows: only then does the date need the next phase again. Runs without a
/// digest (the original pipeline's messages) never count as changed: baton cannot tell.
fn output_changed(before: Option<&Entry>, after: Option<&Entry>) -> bool {
    match (before.and_then(best_output), after.and_then(best_output)) {
        (Some((old_run, Some(old))), Some((new_run, Some(new)))) => {
            old_run != new_run && old != new
        }
        _ => false,
    }
}

impl Entry {
    fn from_runs(runs: Vec<RunSeen>, messages_seen: u64, last_seen_at: Timestamp) -> Option<Self> {
        // The best run is independent of arrival order: completing beats failed, then the
        // latest production time, then the greatest run id.
        let best = runs.iter().max_by(|a, b| {
            (a.completes(), a.produced_at, &a.run_id).cmp(&(
                b.completes(),
                b.produced_at,
                &b.run_id,
            ))
        })?;
        Some(Self {
            status: best.status,
            run_id: best.run_id.clone(),
            record_count: best.record_count,
            first_completed_at: runs
                .iter()
                .filter(|r| r.completes())
                .map(|r| r.produced_at)
                .min(),
            last_completed_at: runs
                .iter()
                .map(|r| r.produced_at)
                .max()
                .unwrap_or(best.produced_at),
            messages_seen,
            last_seen_at,
            not_counted: best.not_counted,
            runs,
        })
    }
    /// Whether this processor is complete for the partition.
    pub fn is_complete(&self) -> bool {
        self.status.completes() && !self.not_counted
    }
}

/// The completion document for one (gate, partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// The gate.
    pub gate: GateId,
    /// The partition.
    pub partition: Partition,
    /// One entry per processor that reported.
    pub entries: BTreeMap<ProcessorName, Entry>,
    /// The number of complete entries; rewritten from the entries on every step.
    pub completed_count: usize,
    /// The current trigger generation (starts at 1; a forced re-trigger adds one).
    pub generation: u32,
    /// Whether the current generation has triggered.
    pub triggered: bool,
    /// When it triggered.
    pub triggered_at: Option<Timestamp>,
    /// The generation of the latest trigger (0: never triggered).
    pub trigger_generation: u32,
    /// Why it triggered (the rule's name).
    pub trigger_reason: Option<String>,
    /// Why the policy is satisfied but the gate has not triggered: a failing quality check.
    #[serde(default)]
    pub blocked: Option<Blocked>,
    /// Quality checks that passed with a warning when the trigger was last judged: the
    /// trigger went out (or is waiting for another reason), and this says why to look.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warned>,
    /// Optimistic-concurrency version, incremented by the store on every write.
    pub version: u64,
}

/// A quality check that blocked the trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    /// The check.
    pub check: String,
    /// What was measured against what.
    pub evidence: String,
    /// When it was judged.
    pub at: Timestamp,
}

/// A quality check that passed with a warning (above its minimum, below its warning
/// threshold): it did not block the trigger. The same shape as [`Blocked`].
pub type Warned = Blocked;

impl Document {
    /// An empty document, before any message.
    pub fn new(gate: GateId, partition: Partition) -> Self {
        Self {
            gate,
            partition,
            entries: BTreeMap::new(),
            completed_count: 0,
            generation: 1,
            triggered: false,
            triggered_at: None,
            trigger_generation: 0,
            trigger_reason: None,
            blocked: None,
            warnings: Vec::new(),
            version: 0,
        }
    }
    /// The processors that are complete.
    pub fn completed(&self) -> BTreeSet<ProcessorName> {
        self.entries
            .iter()
            .filter(|(_, e)| e.is_complete())
            .map(|(p, _)| p.clone())
            .collect()
    }
    /// The count derived from the entries (what `completed_count` must equal).
    pub fn derived_count(&self) -> usize {
        self.entries.values().filter(|e| e.is_complete()).count()
    }
}

/// A trigger of the next phase for a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Deterministic per (gate, partition, generation), so replays are dropped.
    pub message_id: String,
    /// The gate.
    pub gate: GateId,
    /// The partition.
    pub partition: Partition,
    /// The generation this trigger belongs to.
    pub generation: u32,
    /// The rule that was satisfied (or why it was forced).
    pub reason: String,
    /// The topic to publish on.
    pub topic: String,
    /// The phase it starts.
    pub next_phase: u32,
    /// When it was decided.
    pub triggered_at: Timestamp,
    /// The processors complete when it fired.
    pub completed: Vec<ProcessorName>,
}

impl Trigger {
    /// The deterministic message id of a trigger.
    pub fn message_id_for(gate: &GateId, partition: Partition, generation: u32) -> String {
        format!("trigger/{gate}/{partition}/g{generation}")
    }
}

/// What applying a message did, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A new run was recorded.
    Applied,
    /// The same run was seen before with the same content; only metadata changed.
    Duplicate,
    /// The same run was seen before with different content; the first is kept.
    ConflictingDuplicate {
        /// The field that differs.
        field: String,
    },
    /// A failed run older than the entry's completing run; recorded, changes nothing.
    Stale,
    /// The message does not belong to this gate; it goes to the dead-letter queue.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// What the adapter must do after (and in the same transaction as) the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write the trigger to the outbox.
    PublishTrigger(Trigger),
    /// Write the message to the dead-letter queue with this reason.
    DeadLetter {
        /// Why it cannot be applied.
        reason: String,
    },
}

/// The step's result.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// The document to write (unchanged for a rejection).
    pub document: Document,
    /// What the message did.
    pub outcome: Outcome,
    /// What to write with it.
    pub effects: Vec<Effect>,
}

/// The orchestrator step: applies one completion message to the document of its gate and
/// partition, then decides the trigger.
///
/// `quality` holds the gate's quality checks measured for the partition just before the
/// step (empty when the gate has none); a failing one blocks the trigger.
pub fn step(
    document: Option<Document>,
    message: &CompletionMessage,
    gate: &Gate,
    now: Timestamp,
    quality: &[CheckResult],
) -> StepOutput {
    step_settling(document, message, gate, now, quality, &StepFacts::default())
}

/// [`step`], knowing which of the date's processors have a rerun requested or running
/// (`in_flight`): while a counted one does, the gate waits for it rather than trigger on
/// output about to change (one trigger per settled change, not one per rerun).
pub fn step_settling(
    document: Option<Document>,
    message: &CompletionMessage,
    gate: &Gate,
    now: Timestamp,
    quality: &[CheckResult],
    facts: &StepFacts,
) -> StepOutput {
    let mut doc = document.unwrap_or_else(|| Document::new(gate.id.clone(), message.partition));
    if !gate.watches(&message.processor) {
        let reason = format!(
            "processor `{}` is not expected by gate `{}`",
            message.processor, gate.id
        );
        return StepOutput {
            document: doc,
            outcome: Outcome::Rejected {
                reason: reason.clone(),
            },
            effects: vec![Effect::DeadLetter { reason }],
        };
    }
    let incoming = RunSeen {
        run_id: message.run_id.clone(),
        status: message.status,
        record_count: message.record_count,
        produced_at: message.produced_at,
        force_reprocess: message.force_reprocess,
        digest: message.digest.clone(),
        // `no_data` means no work: on a date with work it is recorded, not counted.
        not_counted: message.status == CompletionStatus::NoData
            && facts.has_work.contains(&message.processor),
    };
    let before = doc.entries.remove(&message.processor);
    let (mut runs, seen, was_complete, best_at) = match &before {
        Some(e) => (
            e.runs.clone(),
            e.messages_seen,
            e.is_complete(),
            Some(e.last_completed_at),
        ),
        None => (Vec::new(), 0, false, None),
    };
    let outcome = record_run(&mut runs, &incoming, was_complete, best_at);
    if let Some(entry) = Entry::from_runs(runs, seen.saturating_add(1), now) {
        doc.entries.insert(message.processor.clone(), entry);
    }
    // Changed data re-triggers, once (G9): a processor the date's mode expects has a new
    // best run that wrote other rows than the one the trigger saw, so the next phase must
    // run again on them. (A processor the mode does not count never moves the gate.)
    let (_, policy) = gate.policy_for(doc.partition, now);
    let counted = policy.expected.contains(&message.processor);
    if doc.triggered
        && counted
        && output_changed(before.as_ref(), doc.entries.get(&message.processor))
    {
        doc.generation += 1;
        doc.triggered = false;
    }
    // A new run asking for reprocessing opens a new generation once the current one fired.
    if outcome == Outcome::Applied
        && incoming.force_reprocess
        && incoming.status.completes()
        && doc.triggered
    {
        doc.generation += 1;
        doc.triggered = false;
    }
    doc.completed_count = doc.derived_count();
    let effects = decide_trigger_settling(&mut doc, gate, now, quality, &facts.in_flight)
        .map(Effect::PublishTrigger)
        .into_iter()
        .collect();
    StepOutput {
        document: doc,
        outcome,
        effects,
    }
}

/// Adds a run to a processor's remembered runs, unless it is already known, and says what
/// it did: a known run is a duplicate (conflicting when it reports otherwise); a new run
/// that does not complete, produced no later than the completion already recorded, is
/// stale.
fn record_run(
    runs: &mut Vec<RunSeen>,
    incoming: &RunSeen,
    was_complete: bool,
    best_at: Option<Timestamp>,
) -> Outcome {
    match runs.iter().find(|r| r.run_id == incoming.run_id) {
        Some(known) if known.status != incoming.status => Outcome::ConflictingDuplicate {
            field: "status".into(),
        },
        Some(known) if known.record_count != incoming.record_count => {
            Outcome::ConflictingDuplicate {
                field: "record_count".into(),
            }
        }
        Some(_) => Outcome::Duplicate,
        None => {
            let stale = was_complete
                && !incoming.status.completes()
                && best_at.is_some_and(|at| incoming.produced_at <= at);
            runs.push(incoming.clone());
            runs.sort_by(|a, b| (a.produced_at, &a.run_id).cmp(&(b.produced_at, &b.run_id)));
            forget_oldest(runs);
            if stale {
                Outcome::Stale
            } else {
                Outcome::Applied
            }
        }
    }
}

/// Keeps at most [`RUNS_REMEMBERED_MAX`] runs by forgetting the oldest ones, but never the
/// latest completing run: a late failure never undoes a success, however many follow.
fn forget_oldest(runs: &mut Vec<RunSeen>) {
    while runs.len() > RUNS_REMEMBERED_MAX {
        let keep = runs
            .iter()
            .rposition(|r| r.completes())
            .unwrap_or(usize::MAX);
        let victim = if keep == 0 { 1 } else { 0 };
        runs.remove(victim);
    }
}

/// Triggers the current generation if the policy is satisfied, every quality check passed,
/// and it has not triggered. Reconcile calls this too, so every path that finds a document
/// satisfied triggers it. A failing check is recorded in `blocked` instead; checks that
/// passed with a warning are recorded in `warnings` either way (they never block).
pub fn decide_trigger(
    doc: &mut Document,
    gate: &Gate,
    now: Timestamp,
    quality: &[CheckResult],
) -> Option<Trigger> {
    decide_trigger_settling(doc, gate, now, quality, &BTreeSet::new())
}

/// [`decide_trigger`], waiting while a counted processor has a rerun requested or running
/// (see [`step_settling`]). Nothing is recorded: the rerun's completion decides again.
pub fn decide_trigger_settling(
    doc: &mut Document,
    gate: &Gate,
    now: Timestamp,
    quality: &[CheckResult],
    in_flight: &BTreeSet<ProcessorName>,
) -> Option<Trigger> {
    if doc.triggered {
        return None;
    }
    let (_, policy) = gate.policy_for(doc.partition, now);
    if policy.expected.iter().any(|p| in_flight.contains(p)) {
        return None;
    }
    let completed = doc.completed();
    let Verdict::Satisfied { reason } = gate.evaluate(doc.partition, now, &completed) else {
        return None;
    };
    let judged = |r: &CheckResult| Blocked {
        check: r.check.clone(),
        evidence: r.evidence.clone(),
        at: now,
    };
    doc.warnings = quality.iter().filter(|r| r.warned()).map(judged).collect();
    if let Some(failed) = quality.iter().find(|r| !r.passed()) {
        doc.blocked = Some(judged(failed));
        return None;
    }
    doc.blocked = None;
    Some(fire(doc, gate, now, reason))
}

/// Forces a new generation and triggers it now, whatever the policy says (an operator's
/// explicit re-trigger).
pub fn force_trigger(doc: &mut Document, gate: &Gate, now: Timestamp, reason: &str) -> Trigger {
    if doc.triggered || doc.trigger_generation >= doc.generation {
        doc.generation += 1;
    }
    doc.triggered = false;
    fire(doc, gate, now, reason.to_owned())
}

fn fire(doc: &mut Document, gate: &Gate, now: Timestamp, reason: String) -> Trigger {
    doc.triggered = true;
    doc.triggered_at = Some(now);
    doc.trigger_generation = doc.generation;
    doc.trigger_reason = Some(reason.clone());
    Trigger {
        message_id: Trigger::message_id_for(&gate.id, doc.partition, doc.generation),
        gate: gate.id.clone(),
        partition: doc.partition,
        generation: doc.generation,
        reason,
        topic: gate.trigger_topic.clone(),
        next_phase: gate.next_phase,
        triggered_at: now,
        completed: doc.completed().into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    //! Data-driven: a script of messages and clock moves, and the expected trace.
    use super::*;
    use crate::config::Pipeline;
    use crate::quality::Outcome as CheckOutcome;
    use jiff::SignedDuration;
    use std::fmt::Write;

    /// Runs a script against one document and returns a trace of outcomes and triggers.
    ///
    /// Lines: `msg PROCESSOR run=R [status] [rc=N] [at=+MINS] [force]`, `tick +MINS`.
    /// Processor short names: pgs tog tdg upgc utgc.
    fn run_script(script: &str) -> (String, Document) {
        let pipeline = Pipeline::reference().unwrap();
        let gate = &pipeline.gates[0];
        let partition = Partition::parse("2024-03-01").unwrap();
        let mut now: Timestamp = "2024-03-02T12:00:00Z".parse().unwrap();
        let mut doc: Option<Document> = None;
        let mut trace = String::new();
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[0] {
                "tick" => {
                    let mins: i64 = words[1]
                        .trim_start_matches('+')
                        .trim_end_matches('m')
                        .parse()
                        .unwrap();
                    now = now.checked_add(SignedDuration::from_mins(mins)).unwrap();
                }
                "msg" => {
                    let processor = ProcessorName::from(match words[1] {
                        "pgs" => "player_game_summary",
                        "tog" => "team_offense_game_summary",
                        "tdg" => "team_defense_game_summary",
                        "upgc" => "upcoming_player_game_context",
                        "utgc" => "upcoming_team_game_context",
                        other => other,
                    });
                    let mut run = "r1";
                    let mut status = CompletionStatus::Success;
                    let mut rc = 10;
                    let mut at = 0;
                    let mut force = false;
                    let mut digest = None;
                    for w in &words[2..] {
                        if let Some(r) = w.strip_prefix("run=") {
                            run = r;
                        } else if let Some(d) = w.strip_prefix("digest=") {
                            digest = Some(d.to_owned());
                        } else if let Some(n) = w.strip_prefix("rc=") {
                            rc = n.parse().unwrap();
                        } else if let Some(m) = w.strip_prefix("at=") {
                            at = m.trim_start_matches('+').parse().unwrap();
                        } else if *w == "force" {
                            force = true;
                        } else {
                            status = CompletionStatus::parse(w).unwrap();
                        }
                    }
                    let produced_at = "2024-03-02T06:00:00Z"
                        .parse::<Timestamp>()
                        .unwrap()
                        .checked_add(SignedDuration::from_mins(at))
                        .unwrap();
                    let msg = CompletionMessage::new(
                        processor,
                        partition,
                        RunId::from(run),
                        status,
                        rc,
                        produced_at,
                    )
                    .forcing(force)
                    .with_digest(digest);
                    let out = step(doc.take(), &msg, gate, now, &[]);
                    write!(
                        trace,
                        "{line:<40} -> {:?} count={}",
                        out.outcome, out.document.completed_count
                    )
                    .unwrap();
                    for e in &out.effects {
                        match e {
                            Effect::PublishTrigger(t) => {
                                write!(trace, " TRIGGER g{} {}", t.generation, t.reason).unwrap()
                            }
                            Effect::DeadLetter { reason } => {
                                write!(trace, " DEAD-LETTER {reason}").unwrap()
                            }
                        }
                    }
                    trace.push('\n');
                    doc = Some(out.document);
                }
                other => panic!("unknown script word {other}"),
            }
        }
        (trace, doc.unwrap())
    }

    fn check(script: &str, expected: &str) {
        let (trace, doc) = run_script(script);
        assert_eq!(doc.completed_count, doc.derived_count());
        let norm = |s: &str| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            norm(&trace),
            norm(expected),
            "\n--- actual trace ---\n{trace}"
        );
    }

    #[test]
    fn all_five_trigger_once() {
        check(
            "msg tog\nmsg tdg\nmsg utgc\nmsg pgs\nmsg upgc\nmsg upgc",
            "
            msg tog                                  -> Applied count=1
            msg tdg                                  -> Applied count=2
            msg utgc                                 -> Applied count=3
            msg pgs                                  -> Applied count=4
            msg upgc                                 -> Applied count=5 TRIGGER g1 all_complete
            msg upgc                                 -> Duplicate count=5
            ",
        );
    }

    #[test]
    fn duplicates_never_count_twice() {
        // The incident: naive counters reach 5 after five messages from two processors.
        check(
            "msg tog\nmsg tog\nmsg tog\nmsg tdg\nmsg tdg",
            "
            msg tog                                  -> Applied count=1
            msg tog                                  -> Duplicate count=1
            msg tog                                  -> Duplicate count=1
            msg tdg                                  -> Applied count=2
            msg tdg                                  -> Duplicate count=2
            ",
        );
    }

    #[test]
    fn critical_plus_majority_triggers_at_three() {
        check(
            "msg pgs\nmsg upgc\nmsg tdg\nmsg tog",
            "
            msg pgs                                  -> Applied count=1
            msg upgc                                 -> Applied count=2
            msg tdg                                  -> Applied count=3 TRIGGER g1 critical_plus_majority_60pct
            msg tog                                  -> Applied count=4
            ",
        );
    }

    #[test]
    fn failed_does_not_complete_and_a_late_failure_does_not_undo_success() {
        check(
            "msg tog run=a failed\nmsg tog run=b at=+5\nmsg tog run=a failed\nmsg tog run=c failed at=+1",
            "
            msg tog run=a failed                     -> Applied count=0
            msg tog run=b at=+5                      -> Applied count=1
            msg tog run=a failed                     -> Duplicate count=1
            msg tog run=c failed at=+1               -> Stale count=1
            ",
        );
    }

    #[test]
    fn a_conflicting_duplicate_keeps_the_first() {
        check(
            "msg tog rc=10\nmsg tog rc=11",
            "
            msg tog rc=10                            -> Applied count=1
            msg tog rc=11                            -> ConflictingDuplicate { field: \"record_count\" } count=1
            ",
        );
    }

    #[test]
    fn a_forced_trigger_never_skips_a_generation() {
        // Generations are the number of times the next phase was asked to run: forcing a
        // date that never triggered fires generation 1, and forcing one whose changed output
        // already opened generation 2 fires that generation, not a third.
        let pipeline = Pipeline::reference().unwrap();
        let gate = &pipeline.gates[0];
        let now: Timestamp = "2024-03-02T13:00:00Z".parse().unwrap();
        let (_, mut waiting) = run_script("msg tog");
        assert_eq!(
            force_trigger(&mut waiting, gate, now, "operator").generation,
            1
        );
        // Phase 3 triggered; tog reran with other rows while tdg has a rerun in flight:
        // generation 2 is open and waits.
        let (_, doc) = run_script("msg tog digest=a\nmsg tdg\nmsg utgc\nmsg pgs\nmsg upgc");
        let facts = StepFacts {
            in_flight: BTreeSet::from([ProcessorName::from("team_defense_game_summary")]),
            has_work: BTreeSet::new(),
        };
        let rerun = CompletionMessage::new(
            ProcessorName::from("team_offense_game_summary"),
            doc.partition,
            RunId::from("r2"),
            CompletionStatus::Success,
            10,
            now,
        )
        .with_digest(Some("b".into()));
        let mut opened = step_settling(Some(doc), &rerun, gate, now, &[], &facts).document;
        assert_eq!((opened.generation, opened.triggered), (2, false));
        assert_eq!(
            force_trigger(&mut opened, gate, now, "operator").generation,
            2
        );
    }

    #[test]
    fn a_run_resent_with_another_status_is_a_conflicting_duplicate_and_the_first_is_kept() {
        // A run cannot both succeed and fail: the second report is flagged for an operator
        // and changes nothing, so a replayed failure never takes back a completion.
        check(
            "msg tog\nmsg tog failed",
            "
            msg tog                                  -> Applied count=1
            msg tog failed                           -> ConflictingDuplicate { field: \"status\" } count=1
            ",
        );
    }

    #[test]
    fn no_data_completes_a_processor_only_on_a_date_it_has_no_work_for() {
        // `no_data` means "nothing to do": it counts where the processor's calendar has no
        // rows, and is recorded but not counted where it has (the run missed its input).
        let pipeline = Pipeline::reference().unwrap();
        let gate = &pipeline.gates[0];
        let partition = Partition::parse("2024-03-01").unwrap();
        let now: Timestamp = "2024-03-02T12:00:00Z".parse().unwrap();
        let tog = ProcessorName::from("team_offense_game_summary");
        let with_work = StepFacts {
            in_flight: BTreeSet::new(),
            has_work: BTreeSet::from([tog.clone()]),
        };
        let msg = |run: &str, status| {
            CompletionMessage::new(tog.clone(), partition, RunId::from(run), status, 0, now)
        };
        let no_data = msg("a", CompletionStatus::NoData);
        let idle = step_settling(None, &no_data, gate, now, &[], &StepFacts::default());
        assert_eq!(
            idle.document.completed_count, 1,
            "no work: no_data completes"
        );
        let busy = step_settling(None, &no_data, gate, now, &[], &with_work);
        assert_eq!(busy.outcome, Outcome::Applied);
        assert_eq!(busy.document.completed_count, 0, "work to do: not counted");
        assert!(busy.document.entries[&tog].not_counted);
        let success = msg("b", CompletionStatus::Success);
        let done = step_settling(Some(busy.document), &success, gate, now, &[], &with_work);
        assert_eq!(done.document.completed_count, 1, "a success on it counts");
    }

    #[test]
    fn force_reprocess_starts_exactly_one_new_generation() {
        check(
            "msg tog\nmsg tdg\nmsg utgc\nmsg pgs\nmsg upgc\nmsg pgs run=r2 force\nmsg pgs run=r2 force\nmsg pgs run=r3",
            "
            msg tog                                  -> Applied count=1
            msg tdg                                  -> Applied count=2
            msg utgc                                 -> Applied count=3
            msg pgs                                  -> Applied count=4
            msg upgc                                 -> Applied count=5 TRIGGER g1 all_complete
            msg pgs run=r2 force                     -> Applied count=5 TRIGGER g2 all_complete
            msg pgs run=r2 force                     -> Duplicate count=5
            msg pgs run=r3                           -> Applied count=5
            ",
        );
    }

    #[test]
    fn each_generation_and_date_has_its_own_trigger_id_so_only_replays_are_dropped() {
        // The outbox and the bus drop a message whose id they have seen: a replayed trigger
        // keeps its id, and another generation or date must not reuse it, or its trigger
        // would be dropped as a replay and the next phase would never run.
        let pipeline = Pipeline::reference().unwrap();
        let gate = &pipeline.gates[0];
        let (_, mut doc) = run_script("msg tog\nmsg tdg\nmsg utgc\nmsg pgs\nmsg upgc");
        let now: Timestamp = "2024-03-02T13:00:00Z".parse().unwrap();
        let g2 = force_trigger(&mut doc, gate, now, "operator");
        let g3 = force_trigger(&mut doc, gate, now, "operator");
        assert_eq!((g2.generation, g3.generation), (2, 3));
        assert_ne!(g2.message_id, g3.message_id);
        assert_eq!(
            g3.message_id,
            Trigger::message_id_for(&gate.id, doc.partition, 3),
            "a replay of generation 3 carries the same id"
        );
        let next_day = Partition::parse("2024-03-02").unwrap();
        assert_ne!(
            Trigger::message_id_for(&gate.id, next_day, 3),
            g3.message_id
        );
    }

    #[test]
    fn changed_output_after_the_trigger_triggers_once_more_and_identical_output_never() {
        // Issue 9, situation 2: Phase 3 ran on batch 1 (2 games) and triggered; batch 2
        // lands, player_game_summary reruns on 10 games (another digest): generation 2,
        // once. A rerun that writes the same rows, or a replay, triggers nothing.
        check(
            "msg tog digest=a\nmsg tdg digest=b\nmsg utgc digest=c\nmsg pgs digest=d\nmsg upgc digest=e
             msg pgs run=r2 at=15 digest=d2\nmsg pgs run=r2 at=15 digest=d2
             msg pgs run=r3 at=30 digest=d2\nmsg tog run=r2 at=20 digest=a
             msg tog run=r3 at=25 digest=a3",
            "
            msg tog digest=a                         -> Applied count=1
            msg tdg digest=b                         -> Applied count=2
            msg utgc digest=c                        -> Applied count=3
            msg pgs digest=d                         -> Applied count=4
            msg upgc digest=e                        -> Applied count=5 TRIGGER g1 all_complete
            msg pgs run=r2 at=15 digest=d2           -> Applied count=5 TRIGGER g2 all_complete
            msg pgs run=r2 at=15 digest=d2           -> Duplicate count=5
            msg pgs run=r3 at=30 digest=d2           -> Applied count=5
            msg tog run=r2 at=20 digest=a            -> Applied count=5
            msg tog run=r3 at=25 digest=a3           -> Applied count=5 TRIGGER g3 all_complete
            ",
        );
    }

    #[test]
    fn an_older_run_arriving_late_or_a_failed_rerun_does_not_retrigger() {
        check(
            "msg tog digest=a\nmsg tdg digest=b\nmsg utgc digest=c\nmsg pgs at=10 digest=d\nmsg upgc digest=e
             msg pgs run=r0 at=5 digest=old\nmsg pgs run=r9 at=20 failed",
            "
            msg tog digest=a                         -> Applied count=1
            msg tdg digest=b                         -> Applied count=2
            msg utgc digest=c                        -> Applied count=3
            msg pgs at=10 digest=d                   -> Applied count=4
            msg upgc digest=e                        -> Applied count=5 TRIGGER g1 all_complete
            msg pgs run=r0 at=5 digest=old           -> Applied count=5
            msg pgs run=r9 at=20 failed              -> Applied count=5
            ",
        );
    }

    #[test]
    fn a_success_is_remembered_however_many_failures_follow() {
        // Issue 10: after 64 newer failed runs the success used to be forgotten.
        let mut script = String::from("msg upgc run=ok\n");
        for i in 1..=100 {
            script.push_str(&format!("msg upgc run=f{i} at={i} failed\n"));
        }
        let (_, doc) = run_script(&script);
        let entry = &doc.entries[&ProcessorName::from("upcoming_player_game_context")];
        assert!(entry.is_complete(), "{entry:?}");
        assert_eq!(entry.run_id.as_str(), "ok");
        assert_eq!(entry.runs.len(), RUNS_REMEMBERED_MAX);
        assert_eq!(doc.completed_count, 1);
    }

    #[test]
    fn a_duplicate_finding_the_set_complete_still_triggers() {
        // The original evaluated the trigger only on the first-message path. Here a document
        // is complete but untriggered (written by another tool): a duplicate must trigger.
        let pipeline = Pipeline::reference().unwrap();
        let gate = &pipeline.gates[0];
        let (_, mut doc) = run_script("msg tog\nmsg tdg\nmsg utgc\nmsg pgs\nmsg upgc");
        doc.triggered = false;
        doc.trigger_generation = 0;
        let (_, reference) = run_script("msg upgc");
        let entry = reference.entries.values().next().unwrap();
        let msg = CompletionMessage {
            message_id: "dup".into(),
            gate: None,
            processor: ProcessorName::from("upcoming_player_game_context"),
            partition: doc.partition,
            run_id: entry.run_id.clone(),
            status: entry.status,
            record_count: entry.record_count,
            produced_at: entry.last_completed_at,
            force_reprocess: false,
            digest: None,
        };
        let out = step(
            Some(doc),
            &msg,
            gate,
            "2024-03-02T12:00:00Z".parse().unwrap(),
            &[],
        );
        assert_eq!(out.outcome, Outcome::Duplicate);
        assert!(matches!(
            out.effects.as_slice(),
            [Effect::PublishTrigger(_)]
        ));
    }

    #[test]
    fn order_does_not_change_the_state() {
        let a = "msg tog run=x failed at=1\nmsg tog run=y at=2\nmsg tdg\nmsg pgs partial\nmsg tog run=z at=3 rc=4";
        let b = "msg tog run=z at=3 rc=4\nmsg pgs partial\nmsg tdg\nmsg tog run=y at=2\nmsg tog run=x failed at=1";
        let (_, da) = run_script(a);
        let (_, db) = run_script(b);
        let strip = |d: &Document| {
            d.entries
                .iter()
                .map(|(p, e)| {
                    (
                        p.clone(),
                        e.status,
                        e.run_id.clone(),
                        e.record_count,
                        e.runs.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&da), strip(&db));
        assert_eq!(da.completed_count, db.completed_count);
    }

    #[test]
    fn a_processor_outside_the_gate_is_dead_lettered() {
        check(
            "msg player_daily_cache",
            "msg player_daily_cache                   -> Rejected { reason: \"processor `player_daily_cache` is not expected by gate `phase3_to_phase4`\" } count=0 DEAD-LETTER processor `player_daily_cache` is not expected by gate `phase3_to_phase4`",
        );
    }

    #[test]
    fn a_failing_quality_check_blocks_the_trigger_until_it_passes() {
        let pipeline = Pipeline::reference().unwrap();
        let gate = &pipeline.gates[0];
        let (_, mut doc) = run_script("msg tog\nmsg tdg\nmsg utgc\nmsg pgs\nmsg upgc");
        doc.triggered = false;
        let now = "2024-03-02T13:00:00Z".parse().unwrap();
        let failing = [CheckResult {
            check: "minutes".into(),
            outcome: CheckOutcome::Fail,
            evidence: "70%".into(),
        }];
        assert!(decide_trigger(&mut doc, gate, now, &failing).is_none());
        assert!(!doc.triggered);
        assert_eq!(
            doc.blocked.as_ref().map(|b| b.check.as_str()),
            Some("minutes")
        );
        let passing = [CheckResult {
            check: "minutes".into(),
            outcome: CheckOutcome::Pass,
            evidence: "95%".into(),
        }];
        assert!(decide_trigger(&mut doc, gate, now, &passing).is_some());
        assert!(doc.triggered && doc.blocked.is_none());
    }

    #[test]
    fn a_warning_triggers_and_is_recorded() {
        let pipeline = Pipeline::reference().unwrap();
        let gate = &pipeline.gates[0];
        let (_, mut doc) = run_script("msg tog\nmsg tdg\nmsg utgc\nmsg pgs\nmsg upgc");
        doc.triggered = false;
        let now: Timestamp = "2024-03-02T13:00:00Z".parse().unwrap();
        let quality = [
            CheckResult {
                check: "rows".into(),
                outcome: CheckOutcome::Pass,
                evidence: "250 rows".into(),
            },
            CheckResult {
                check: "game_coverage".into(),
                outcome: CheckOutcome::Warn,
                evidence: "82%".into(),
            },
        ];
        assert!(decide_trigger(&mut doc, gate, now, &quality).is_some());
        assert!(doc.triggered && doc.blocked.is_none());
        assert_eq!(
            doc.warnings,
            vec![Warned {
                check: "game_coverage".into(),
                evidence: "82%".into(),
                at: now
            }]
        );
        // A document stored before warnings existed still reads, without any.
        let mut json = serde_json::to_value(&doc).unwrap();
        json.as_object_mut().unwrap().remove("warnings");
        let old: Document = serde_json::from_value(json).unwrap();
        assert!(old.warnings.is_empty());
    }

    #[test]
    fn force_trigger_opens_a_new_generation() {
        let pipeline = Pipeline::reference().unwrap();
        let gate = &pipeline.gates[0];
        let (_, mut doc) = run_script("msg tog\nmsg tdg\nmsg utgc\nmsg pgs\nmsg upgc");
        let t = force_trigger(
            &mut doc,
            gate,
            "2024-03-02T13:00:00Z".parse().unwrap(),
            "forced",
        );
        assert_eq!(t.generation, 2);
        assert!(
            decide_trigger(&mut doc, gate, "2024-03-02T13:00:00Z".parse().unwrap(), &[]).is_none()
        );
    }
}
