//! Reconcile: the stored completion document of a (gate, date) against the truth (runs in
//! run history and rows in the warehouse), as findings with stable codes, and the repair
//! that `reconcile --fix` applies in one transaction per date.
//!
//! Invariant: a repair only adds what the truth shows (entries of processors that ran and
//! wrote), re-derives the count, and triggers through the same rule as the orchestrator
//! step, so it never triggers a generation twice. It never removes an entry or undoes a
//! trigger: a premature trigger is reported for a person.

use crate::completion::{self, Document, Trigger};
use crate::freshness::{self, InputFacts};
use crate::gate::{Gate, ModePolicy, Verdict, evaluate};
use crate::message::CompletionMessage;
use crate::model::{CompletionStatus, Partition, ProcessorName, RunId};
use crate::quality::CheckResult;
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The latest successful run of a processor for a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFact {
    /// The run.
    pub run_id: RunId,
    /// How it ended (success, partial or no_data).
    pub status: CompletionStatus,
    /// Rows it wrote.
    pub rows_written: u64,
    /// When it started (its inputs are the ones recorded before this).
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Timestamp,
}

/// What is true for one processor and date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessorTruth {
    /// Its latest successful run, if any.
    pub run: Option<RunFact>,
    /// Rows in its table for the date.
    pub rows: u64,
    /// What its output depends on.
    pub inputs: InputFacts,
    /// Whether it has work on the date (its calendar table has rows): then `no_data` does
    /// not complete it.
    pub has_work: bool,
}

impl ProcessorTruth {
    /// Complete: a successful run, and rows unless the run found no data on a date without
    /// work.
    pub fn is_complete(&self) -> bool {
        self.run.as_ref().is_some_and(|r| {
            (r.status == CompletionStatus::NoData && !self.has_work) || self.rows > 0
        })
    }
}

/// The truth for one date of one gate: every processor the gate watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truth {
    /// The partition.
    pub partition: Partition,
    /// By processor.
    pub processors: BTreeMap<ProcessorName, ProcessorTruth>,
    /// The latest generation the next phase ran for (`None`: never).
    pub next_phase_generation: Option<u32>,
    /// Whether the date has begun: something ran for it. A date that has not is never called
    /// short.
    pub begun: bool,
    /// Processors with a rerun requested or running: the gate waits for them, so a missing
    /// trigger is not reported (nor repaired) while one is.
    pub in_flight: BTreeSet<ProcessorName>,
}

impl Truth {
    /// What the orchestrator step is told about the date when reconcile replays a run.
    pub fn step_facts(&self) -> completion::StepFacts {
        completion::StepFacts {
            in_flight: self.in_flight.clone(),
            has_work: self
                .processors
                .iter()
                .filter(|(_, t)| t.has_work)
                .map(|(p, _)| p.clone())
                .collect(),
        }
    }
    /// The processors that are complete in truth.
    pub fn complete(&self) -> BTreeSet<ProcessorName> {
        self.processors
            .iter()
            .filter(|(_, t)| t.is_complete())
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// One mismatch, with its stable code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `BATON-R00n`; see docs/runbook.md.
    pub code: &'static str,
    /// A short name.
    pub kind: &'static str,
    /// The processor concerned, if one.
    pub processor: Option<ProcessorName>,
    /// What was found.
    pub detail: String,
    /// Whether `--fix` repairs it (otherwise a person must look).
    pub fixable: bool,
}

/// The per-date report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DateReport {
    /// The partition.
    pub date: Partition,
    /// Expected processors recorded complete.
    pub stored: usize,
    /// Expected processors complete in truth.
    pub actual: usize,
    /// Expected processors.
    pub expected: usize,
    /// The document's completion count as stored (`None`: no document); it may disagree
    /// with its entries (BATON-R005), and is then what an operator must be shown.
    pub stored_count: Option<usize>,
    /// The count its entries give (what `stored_count` must equal).
    pub entries_count: usize,
    /// Whether the stored document says the next phase was triggered.
    pub triggered: bool,
    /// Mismatches.
    pub findings: Vec<Finding>,
}

impl DateReport {
    /// What is stored, as health and reconcile print it: the count out of the expected
    /// processors (the stored count field beside the entries' when they disagree), and
    /// whether the document says it triggered. Never the truth in place of the store.
    pub fn stored_text(&self) -> String {
        let Some(count) = self.stored_count else {
            return format!("no document (0/{})", self.expected);
        };
        let counted = if count == self.entries_count {
            format!("{}/{}", self.stored, self.expected)
        } else {
            format!(
                "count {count}/{} (entries {}/{})",
                self.expected, self.stored, self.expected
            )
        };
        let trigger = if self.triggered {
            "triggered"
        } else {
            "not triggered"
        };
        format!("{counted}, {trigger}")
    }
}

fn finding(
    code: &'static str,
    kind: &'static str,
    processor: Option<&ProcessorName>,
    detail: String,
    fixable: bool,
) -> Finding {
    Finding {
        code,
        kind,
        processor: processor.cloned(),
        detail,
        fixable,
    }
}

/// Compares a stored document with the truth.
pub fn check(gate: &Gate, doc: Option<&Document>, truth: &Truth, now: Timestamp) -> DateReport {
    let (_, policy) = gate.policy_for(truth.partition, now);
    let actual = truth.complete();
    let mut findings = Vec::new();
    let empty = Document::new(gate.id.clone(), truth.partition);
    let stored_doc = doc.unwrap_or(&empty);
    let recorded = stored_doc.completed();
    if doc.is_none() && !actual.is_empty() {
        findings.push(finding(
            "BATON-R001",
            "missing_document",
            None,
            format!(
                "{} processors ran but no completion document exists",
                actual.len()
            ),
            true,
        ));
    }
    // Findings are reported in the order of their codes.
    findings.extend(completed_not_recorded(truth, &actual, &recorded));
    findings.extend(recorded_not_complete(truth, &actual, &recorded));
    findings.extend(count_out_of_step(stored_doc));
    let waiting = policy.expected.iter().any(|p| truth.in_flight.contains(p));
    findings.extend(trigger_findings(stored_doc, policy, &actual, waiting));
    findings.extend(input_findings(gate, doc, truth, policy, now));
    DateReport {
        date: truth.partition,
        stored: policy
            .expected
            .iter()
            .filter(|p| recorded.contains(*p))
            .count(),
        actual: policy
            .expected
            .iter()
            .filter(|p| actual.contains(*p))
            .count(),
        expected: policy.expected.len(),
        stored_count: doc.map(|d| d.completed_count),
        entries_count: stored_doc.derived_count(),
        triggered: stored_doc.triggered,
        findings,
    }
}

/// BATON-R002: processors complete in truth that the document does not record.
fn completed_not_recorded(
    truth: &Truth,
    actual: &BTreeSet<ProcessorName>,
    recorded: &BTreeSet<ProcessorName>,
) -> Vec<Finding> {
    actual
        .difference(recorded)
        .map(|p| {
            let run = truth.processors.get(p).and_then(|t| t.run.as_ref());
            let detail = match run {
                Some(r) => format!(
                    "{p} completed (run {}, {}, {} rows) but is not recorded",
                    r.run_id, r.status, r.rows_written
                ),
                None => format!("{p} completed but is not recorded"),
            };
            finding(
                "BATON-R002",
                "completed_not_recorded",
                Some(p),
                detail,
                true,
            )
        })
        .collect()
}

/// BATON-R003 and BATON-R004: processors recorded complete that are not, in truth (no
/// successful run, or a run without rows).
fn recorded_not_complete(
    truth: &Truth,
    actual: &BTreeSet<ProcessorName>,
    recorded: &BTreeSet<ProcessorName>,
) -> Vec<Finding> {
    recorded
        .difference(actual)
        .map(|p| {
            let t = truth.processors.get(p).cloned().unwrap_or_default();
            match t.run {
                None => finding(
                    "BATON-R003",
                    "recorded_without_run",
                    Some(p),
                    format!("{p} is recorded complete but has no successful run"),
                    false,
                ),
                Some(_) => finding(
                    "BATON-R004",
                    "recorded_without_rows",
                    Some(p),
                    format!("{p} is recorded complete but its table has no rows for the date"),
                    false,
                ),
            }
        })
        .collect()
}

/// BATON-R005: a stored count that disagrees with the document's own entries.
fn count_out_of_step(stored_doc: &Document) -> Option<Finding> {
    (stored_doc.completed_count != stored_doc.derived_count()).then(|| {
        finding(
            "BATON-R005",
            "count_out_of_step",
            None,
            format!(
                "completed_count is {} but {} entries are complete",
                stored_doc.completed_count,
                stored_doc.derived_count()
            ),
            true,
        )
    })
}

/// BATON-R006 and BATON-R007: a trigger missing where the truth satisfies the policy, or
/// fired where it does not.
fn trigger_findings(
    stored_doc: &Document,
    policy: &ModePolicy,
    actual: &BTreeSet<ProcessorName>,
    waiting_for_reruns: bool,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let truth_satisfied = matches!(evaluate(policy, actual), Verdict::Satisfied { .. });
    if truth_satisfied && !stored_doc.triggered && !waiting_for_reruns {
        let detail = match &stored_doc.blocked {
            Some(b) => format!(
                "complete but blocked by quality check `{}`: {}",
                b.check, b.evidence
            ),
            None => "complete but never triggered".to_owned(),
        };
        findings.push(finding("BATON-R006", "missing_trigger", None, detail, true));
    }
    if stored_doc.triggered && !truth_satisfied {
        findings.push(finding(
            "BATON-R007",
            "premature_trigger",
            None,
            format!(
                "triggered (generation {}) while only {}/{} processors are complete in truth",
                stored_doc.trigger_generation,
                actual.len(),
                policy.expected.len()
            ),
            false,
        ));
    }
    findings
}

/// BATON-R008, R009 and R010: output stale against its inputs, a date short while nothing is
/// on its way, and a next phase that ran for an older generation than the latest (G9).
fn input_findings(
    gate: &Gate,
    doc: Option<&Document>,
    truth: &Truth,
    policy: &ModePolicy,
    now: Timestamp,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (p, t) in truth.processors.iter().filter(|(p, _)| gate.watches(p)) {
        let Some(run) = t.run.as_ref().filter(|_| t.is_complete()) else {
            continue;
        };
        if let Some(why) = freshness::stale_because(&t.inputs, run.started_at) {
            let detail = format!("{p} is stale: {why}");
            findings.push(finding("BATON-R008", "stale_output", Some(p), detail, true));
        }
    }
    if truth.begun && gate.today(now) > truth.partition {
        let complete = truth.complete();
        let short = freshness::short_and_silent(policy, &complete, |p| {
            truth.processors.get(p).map(|t| &t.inputs)
        });
        for (p, why, runnable) in short {
            let detail = format!("{p} is not complete: {why}");
            findings.push(finding(
                "BATON-R009",
                "short_and_silent",
                Some(p),
                detail,
                runnable,
            ));
        }
    }
    if let Some(why) =
        doc.and_then(|d| freshness::next_phase_behind(d, truth.next_phase_generation, now))
    {
        findings.push(finding("BATON-R010", "next_phase_behind", None, why, true));
    }
    findings
}

/// The repair of one date.
#[derive(Debug, Clone, PartialEq)]
pub struct Repair {
    /// The document to write.
    pub document: Document,
    /// Triggers to write to the outbox with it.
    pub triggers: Vec<Trigger>,
    /// What changed, for a person.
    pub changes: Vec<String>,
    /// Runs to request, with why: stale output and short dates (the runner runs them through
    /// the lease path; `serve` does it on its next round).
    pub requests: Vec<(ProcessorName, String)>,
}

/// Plans the repair of one date; `None` when there is nothing to repair.
pub fn repair(
    gate: &Gate,
    doc: Option<Document>,
    truth: &Truth,
    now: Timestamp,
    quality: &[CheckResult],
) -> Option<Repair> {
    let (_, policy) = gate.policy_for(truth.partition, now);
    let (mut doc, mut triggers, mut changes) = repair_document(gate, doc, truth, now, quality);
    if freshness::next_phase_behind(&doc, truth.next_phase_generation, now).is_some() {
        let reason = "reconcile: the next phase did not run for the latest generation";
        let t = completion::force_trigger(&mut doc, gate, now, reason);
        changes.push(format!("triggered generation {} ({reason})", t.generation));
        triggers.push(t);
    }
    let requests: Vec<(ProcessorName, String)> = input_findings(gate, None, truth, policy, now)
        .into_iter()
        .filter(|f| f.fixable)
        .filter_map(|f| Some((f.processor?, f.detail)))
        .collect();
    for (p, why) in &requests {
        changes.push(format!("requested a run of {p} ({why})"));
    }
    // A document created only to say nothing changed is not written.
    if changes.is_empty() {
        return None;
    }
    Some(Repair {
        document: doc,
        triggers,
        changes,
        requests,
    })
}

/// Records in the document what the truth shows (R001, R002, R005) and triggers what should
/// have triggered (R006), through the orchestrator step.
fn repair_document(
    gate: &Gate,
    doc: Option<Document>,
    truth: &Truth,
    now: Timestamp,
    quality: &[CheckResult],
) -> (Document, Vec<Trigger>, Vec<String>) {
    let mut changes = Vec::new();
    let mut triggers = Vec::new();
    let mut doc = doc.unwrap_or_else(|| Document::new(gate.id.clone(), truth.partition));
    let recorded = doc.completed();
    for (p, t) in &truth.processors {
        if !t.is_complete() || recorded.contains(p) || !gate.watches(p) {
            continue;
        }
        let Some(run) = &t.run else { continue };
        let message = CompletionMessage::new(
            p.clone(),
            truth.partition,
            run.run_id.clone(),
            run.status,
            run.rows_written,
            run.finished_at,
        )
        .for_gate(Some(gate.id.clone()));
        let out =
            completion::step_settling(Some(doc), &message, gate, now, quality, &truth.step_facts());
        doc = out.document;
        changes.push(format!(
            "recorded {p} from run {} ({}, {} rows)",
            run.run_id, run.status, run.rows_written
        ));
        for e in out.effects {
            if let completion::Effect::PublishTrigger(t) = e {
                changes.push(format!(
                    "triggered generation {} ({})",
                    t.generation, t.reason
                ));
                triggers.push(t);
            }
        }
    }
    if doc.completed_count != doc.derived_count() {
        changes.push(format!(
            "completed_count {} -> {}",
            doc.completed_count,
            doc.derived_count()
        ));
        doc.completed_count = doc.derived_count();
    }
    let was_blocked = doc.blocked.clone();
    if let Some(t) =
        completion::decide_trigger_settling(&mut doc, gate, now, quality, &truth.in_flight)
    {
        changes.push(format!(
            "triggered generation {} ({})",
            t.generation, t.reason
        ));
        triggers.push(t);
    } else if let Some(b) = doc
        .blocked
        .as_ref()
        .filter(|b| Some(*b) != was_blocked.as_ref())
    {
        changes.push(format!(
            "trigger blocked by quality check `{}`: {}",
            b.check, b.evidence
        ));
    }
    (doc, triggers, changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pipeline;

    const ALL: [&str; 5] = [
        "team_offense_game_summary",
        "team_defense_game_summary",
        "upcoming_team_game_context",
        "player_game_summary",
        "upcoming_player_game_context",
    ];

    fn now() -> Timestamp {
        "2024-03-10T12:00:00Z".parse().unwrap()
    }

    fn truth(complete: &[&str]) -> Truth {
        Truth {
            partition: Partition::parse("2024-03-05").unwrap(),
            processors: ALL
                .iter()
                .map(|p| {
                    let t = if complete.contains(p) {
                        ProcessorTruth {
                            run: Some(RunFact {
                                run_id: RunId::from(format!("run-{p}").as_str()),
                                status: CompletionStatus::Success,
                                rows_written: 20,
                                started_at: now(),
                                finished_at: now(),
                            }),
                            rows: 20,
                            inputs: InputFacts::default(),
                            has_work: false,
                        }
                    } else {
                        ProcessorTruth::default()
                    };
                    (ProcessorName::from(*p), t)
                })
                .collect(),
            next_phase_generation: None,
            begun: !complete.is_empty(),
            in_flight: BTreeSet::new(),
        }
    }

    fn codes(r: &DateReport) -> Vec<&'static str> {
        r.findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn the_incident_1_of_5_document_is_found_and_repaired_once() {
        let p = Pipeline::reference().unwrap();
        let gate = &p.gates[0];
        let t = truth(&ALL);
        // The tracker recorded one processor, and its stored count says three.
        let partial = repair(gate, None, &truth(&ALL[..1]), now(), &[])
            .unwrap()
            .document;
        let mut stored = partial.clone();
        stored.completed_count = 3;
        let report = check(gate, Some(&stored), &t, now());
        assert_eq!((report.stored, report.actual), (1, 5));
        // What is printed is what is stored: the count field beside the entries.
        assert_eq!(
            report.stored_text(),
            "count 3/5 (entries 1/5), not triggered"
        );
        assert_eq!(
            codes(&report),
            vec!["BATON-R002"; 4]
                .into_iter()
                .chain(["BATON-R005", "BATON-R006"])
                .collect::<Vec<_>>()
        );
        let fixed = repair(gate, Some(stored), &t, now(), &[]).unwrap();
        assert_eq!(fixed.triggers.len(), 1, "{:?}", fixed.changes);
        assert_eq!(fixed.document.completed_count, 5);
        assert!(
            check(gate, Some(&fixed.document), &t, now())
                .findings
                .is_empty()
        );
        assert!(
            repair(gate, Some(fixed.document), &t, now(), &[]).is_none(),
            "a second fix changes nothing"
        );
    }

    #[test]
    fn a_premature_trigger_and_phantom_entries_are_reported_not_undone() {
        let p = Pipeline::reference().unwrap();
        let gate = &p.gates[0];
        let stored = repair(gate, None, &truth(&ALL), now(), &[])
            .unwrap()
            .document;
        let t = truth(&ALL[..2]);
        let report = check(gate, Some(&stored), &t, now());
        assert!(codes(&report).contains(&"BATON-R007"));
        assert!(codes(&report).contains(&"BATON-R003"));
        assert!(
            report
                .findings
                .iter()
                .filter(|f| f.code == "BATON-R007")
                .all(|f| !f.fixable)
        );
        // Nothing is removed or untriggered; the processors short in truth are asked to run.
        let fix = repair(gate, Some(stored.clone()), &t, now(), &[]).unwrap();
        assert_eq!(fix.document, stored);
        assert!(fix.triggers.is_empty());
        let requested: Vec<&str> = fix.requests.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            requested,
            [
                "player_game_summary",
                "upcoming_player_game_context",
                "upcoming_team_game_context"
            ]
        );
    }

    #[test]
    fn stale_output_short_dates_and_a_next_phase_behind_are_found_and_repaired() {
        let p = Pipeline::reference().unwrap();
        let gate = &p.gates[0];
        let mut t = truth(&ALL);
        let stored = repair(gate, None, &t, now(), &[]).unwrap().document;
        assert!(check(gate, Some(&stored), &t, now()).findings.is_empty());
        // Batch 2 of the gamebook lands after every run started: the readers are stale.
        let later = now()
            .checked_add(jiff::SignedDuration::from_mins(5))
            .unwrap();
        let pgs = ProcessorName::from("player_game_summary");
        t.processors.get_mut(&pgs).unwrap().inputs.latest_landing =
            Some(("nbac_gamebook_scraper".into(), later));
        let report = check(gate, Some(&stored), &t, later);
        assert_eq!(codes(&report), ["BATON-R008"]);
        let fix = repair(gate, Some(stored.clone()), &t, later, &[]).unwrap();
        assert_eq!(fix.requests.len(), 1);
        assert_eq!(fix.requests[0].0, pgs);
        // The next phase never ran for the trigger: after the grace, a new generation.
        t.processors.get_mut(&pgs).unwrap().inputs = InputFacts::default();
        let an_hour = now()
            .checked_add(jiff::SignedDuration::from_hours(1))
            .unwrap();
        assert_eq!(
            codes(&check(gate, Some(&stored), &t, an_hour)),
            ["BATON-R010"]
        );
        let fix = repair(gate, Some(stored.clone()), &t, an_hour, &[]).unwrap();
        assert_eq!(fix.triggers.len(), 1);
        assert_eq!(fix.triggers[0].generation, stored.trigger_generation + 1);
        t.next_phase_generation = Some(stored.trigger_generation);
        assert!(check(gate, Some(&stored), &t, an_hour).findings.is_empty());
        // A short date with something owed is waiting, not silent.
        let mut short = truth(&ALL[..4]);
        let missing = ProcessorName::from(ALL[4]);
        assert_eq!(
            codes(&check(gate, None, &short, now()))[..],
            [
                "BATON-R001",
                "BATON-R002",
                "BATON-R002",
                "BATON-R002",
                "BATON-R002",
                "BATON-R009"
            ]
        );
        short.processors.get_mut(&missing).unwrap().inputs.owed = true;
        assert!(!codes(&check(gate, None, &short, now())).contains(&"BATON-R009"));
    }

    #[test]
    fn rows_missing_for_a_recorded_processor_is_its_own_finding() {
        let p = Pipeline::reference().unwrap();
        let gate = &p.gates[0];
        let stored = repair(gate, None, &truth(&ALL), now(), &[])
            .unwrap()
            .document;
        let mut t = truth(&ALL);
        t.processors
            .get_mut(&ProcessorName::from(ALL[0]))
            .unwrap()
            .rows = 0;
        assert!(codes(&check(gate, Some(&stored), &t, now())).contains(&"BATON-R004"));
    }

    #[test]
    fn a_missing_document_is_created() {
        let p = Pipeline::reference().unwrap();
        let gate = &p.gates[0];
        let t = truth(&ALL);
        assert_eq!(codes(&check(gate, None, &t, now()))[0], "BATON-R001");
        let fixed = repair(gate, None, &t, now(), &[]).unwrap();
        assert!(fixed.document.triggered);
        assert!(
            check(gate, None, &truth(&[]), now()).findings.is_empty(),
            "nothing ran, nothing to say"
        );
    }

    #[test]
    fn no_data_is_complete_in_truth_only_on_a_date_without_work_and_a_success_needs_rows() {
        let t = |status, rows, has_work| ProcessorTruth {
            run: Some(RunFact {
                run_id: RunId::from("r1"),
                status,
                rows_written: rows,
                started_at: now(),
                finished_at: now(),
            }),
            rows,
            inputs: InputFacts::default(),
            has_work,
        };
        assert!(t(CompletionStatus::NoData, 0, false).is_complete());
        assert!(!t(CompletionStatus::NoData, 0, true).is_complete());
        assert!(t(CompletionStatus::NoData, 3, true).is_complete());
        assert!(!t(CompletionStatus::Success, 0, false).is_complete());
        assert!(t(CompletionStatus::Success, 1, true).is_complete());
        let no_run = ProcessorTruth {
            rows: 5,
            ..ProcessorTruth::default()
        };
        assert!(!no_run.is_complete(), "rows without a successful run");
        // A run that left no rows is not recorded by a repair either.
        let p = Pipeline::reference().unwrap();
        let gate = &p.gates[0];
        let mut empty = truth(&ALL);
        let first = ProcessorName::from(ALL[0]);
        empty.processors.get_mut(&first).unwrap().rows = 0;
        let fix = repair(gate, None, &empty, now(), &[]).unwrap();
        assert!(
            !fix.document.entries.contains_key(&first),
            "{:?}",
            fix.changes
        );
        assert_eq!(fix.document.completed_count, 4);
    }

    #[test]
    fn a_repair_waits_for_a_rerun_in_flight_and_reports_a_block_once() {
        let p = Pipeline::reference().unwrap();
        let gate = &p.gates[0];
        let mut t = truth(&ALL);
        t.in_flight.insert(ProcessorName::from(ALL[4]));
        // A rerun of an expected processor is on its way: nothing is missing a trigger yet.
        assert_eq!(
            codes(&check(gate, None, &t, now())),
            ["BATON-R001"; 1]
                .into_iter()
                .chain(["BATON-R002"; 5])
                .collect::<Vec<_>>()
        );
        let fix = repair(gate, None, &t, now(), &[]).unwrap();
        assert_eq!(fix.document.completed_count, 5);
        assert!(fix.triggers.is_empty(), "{:?}", fix.changes);
        assert!(!fix.document.triggered);
        // The rerun done, a failing check holds the trigger back: said once, and repairing
        // again says nothing.
        let t = truth(&ALL);
        let failing = [CheckResult {
            check: "game_coverage".into(),
            outcome: crate::quality::Outcome::Fail,
            evidence: "2 of 3 games".into(),
        }];
        let held = repair(gate, Some(fix.document), &t, now(), &failing).unwrap();
        assert!(held.triggers.is_empty());
        assert_eq!(
            held.changes,
            ["trigger blocked by quality check `game_coverage`: 2 of 3 games"]
        );
        assert!(repair(gate, Some(held.document), &t, now(), &failing).is_none());
    }

    #[test]
    fn a_date_is_short_only_once_it_is_past_in_the_pipeline_time_zone() {
        let p = Pipeline::reference().unwrap();
        let gate = &p.gates[0];
        let mut t = truth(&ALL[..4]);
        // 2024-03-05 is today at 12:00 UTC (07:00 in New York): not short, whatever is missing.
        let today: Timestamp = "2024-03-05T12:00:00Z".parse().unwrap();
        assert!(!codes(&check(gate, None, &t, today)).contains(&"BATON-R009"));
        let tomorrow: Timestamp = "2024-03-06T12:00:00Z".parse().unwrap();
        assert!(codes(&check(gate, None, &t, tomorrow)).contains(&"BATON-R009"));
        // A date nothing ran for is never short.
        t.begun = false;
        assert!(!codes(&check(gate, None, &t, tomorrow)).contains(&"BATON-R009"));
    }
}
