//! Reconcile: the stored completion document of a (gate, date) against the truth (runs in
//! run history and rows in the warehouse), as findings with stable codes, and the repair
//! that `reconcile --fix` applies in one transaction per date.
//!
//! Invariant: a repair only adds what the truth shows (entries of processors that ran and
//! wrote), re-derives the count, and triggers through the same rule as the orchestrator
//! step, so it never triggers a generation twice. It never removes an entry or undoes a
//! trigger: a premature trigger is reported for a person.

use crate::completion::{self, Document, Trigger};
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
}

impl ProcessorTruth {
    /// Complete: a successful run, and rows unless the run found no data.
    pub fn is_complete(&self) -> bool {
        self.run
            .as_ref()
            .is_some_and(|r| r.status == CompletionStatus::NoData || self.rows > 0)
    }
}

/// The truth for one date of one gate: every processor the gate watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truth {
    /// The partition.
    pub partition: Partition,
    /// By processor.
    pub processors: BTreeMap<ProcessorName, ProcessorTruth>,
}

impl Truth {
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
    /// Mismatches.
    pub findings: Vec<Finding>,
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
    findings.extend(trigger_findings(stored_doc, policy, &actual));
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
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let truth_satisfied = matches!(evaluate(policy, actual), Verdict::Satisfied { .. });
    if truth_satisfied && !stored_doc.triggered {
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

/// The repair of one date.
#[derive(Debug, Clone, PartialEq)]
pub struct Repair {
    /// The document to write.
    pub document: Document,
    /// Triggers to write to the outbox with it.
    pub triggers: Vec<Trigger>,
    /// What changed, for a person.
    pub changes: Vec<String>,
}

/// Plans the repair of one date; `None` when there is nothing to repair.
pub fn repair(
    gate: &Gate,
    doc: Option<Document>,
    truth: &Truth,
    now: Timestamp,
    quality: &[CheckResult],
) -> Option<Repair> {
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
        let out = completion::step(Some(doc), &message, gate, now, quality);
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
    if let Some(t) = completion::decide_trigger(&mut doc, gate, now, quality) {
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
    // A document created only to say nothing changed is not written.
    if changes.is_empty() {
        return None;
    }
    Some(Repair {
        document: doc,
        triggers,
        changes,
    })
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
                                finished_at: now(),
                            }),
                            rows: 20,
                        }
                    } else {
                        ProcessorTruth::default()
                    };
                    (ProcessorName::from(*p), t)
                })
                .collect(),
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
        assert!(
            repair(gate, Some(stored.clone()), &t, now(), &[]).is_none(),
            "nothing is removed or untriggered"
        );
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
}
