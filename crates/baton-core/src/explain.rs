//! Why a date of a gate stands where it does: the mode, what each expected processor is
//! (done, failed, running, owed, waiting on a landing, missing), each rule met or not and
//! by how much, the checks that block or warn, and one verdict. Pure: the adapters gather
//! the facts (`baton_serve::explain`), and the policy is the gate's own
//! ([`crate::gate::evaluate`] per rule), never restated here.

use crate::completion::Document;
use crate::gate::{self, Gate, Mode, ModePolicy, Rule, Verdict};
use crate::model::{CompletionStatus, Partition, ProcessorName, RunId};
use crate::quality::{CheckResult, Outcome};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What the store says about one processor of the date, beside the document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessorFacts {
    /// A run of it is recorded as running.
    pub running: bool,
    /// Why a run of it is owed, if one is.
    pub owed: Option<String>,
    /// Upstream jobs it reads that have not landed for the date.
    pub waiting_on: Vec<String>,
    /// The error of its latest failed run, if its latest run failed.
    pub last_error: Option<String>,
}

/// Everything [`explain`] judges, for one gate and date.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The completion document (`None`: no completion arrived yet).
    pub document: Option<Document>,
    /// Per processor the gate watches.
    pub processors: BTreeMap<ProcessorName, ProcessorFacts>,
    /// The gate's checks measured now.
    pub checks: Vec<CheckResult>,
    /// Processors with a rerun requested or running (the gate waits for them).
    pub in_flight: BTreeSet<ProcessorName>,
    /// The latest generation the next phase ran for.
    pub next_phase_generation: Option<u32>,
}

/// Where one expected processor stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ProcessorState {
    /// Complete for the date.
    Done {
        /// Its best run's status.
        status: CompletionStatus,
        /// That run.
        run_id: RunId,
        /// Rows it wrote.
        record_count: u64,
    },
    /// A run is in progress.
    Running,
    /// A run is owed (deferred, partial to redo, requested).
    Owed {
        /// Why.
        reason: String,
    },
    /// Waiting for upstream jobs to land.
    WaitingOnLanding {
        /// The jobs not landed.
        jobs: Vec<String>,
    },
    /// Its latest run failed.
    Failed {
        /// The error, when recorded.
        error: Option<String>,
    },
    /// It reported `no_data` on a date its calendar has rows for: recorded, not counted.
    NotCounted,
    /// Nothing received and nothing on its way.
    Missing,
}

impl ProcessorState {
    /// One word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Done { .. } => "done",
            Self::Running => "running",
            Self::Owed { .. } => "owed",
            Self::WaitingOnLanding { .. } => "waiting",
            Self::Failed { .. } => "failed",
            Self::NotCounted => "not counted",
            Self::Missing => "missing",
        }
    }
}

/// One expected processor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessorLine {
    /// The processor.
    pub processor: ProcessorName,
    /// Whether the mode's policy names it critical.
    pub critical: bool,
    /// Where it stands.
    #[serde(flatten)]
    pub state: ProcessorState,
}

/// One rule of the mode's policy, met or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleLine {
    /// The rule's name (`all_complete`, `critical_plus_majority_60pct`).
    pub rule: String,
    /// Whether the completed set satisfies it.
    pub met: bool,
    /// What it counts, in words: "4 of 5 expected complete; 80% needed".
    pub measured: String,
}

/// The date's standing for the gate, in precedence order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Standing {
    /// The current generation triggered.
    Triggered {
        /// The generation.
        generation: u32,
        /// The rule (or the forced reason).
        reason: String,
        /// When.
        at: Option<Timestamp>,
    },
    /// A rule is met but a check fails.
    Blocked {
        /// The failing check.
        check: String,
        /// Its measured value against its threshold.
        evidence: String,
    },
    /// A rule is met but reruns of expected processors are in flight.
    Settling {
        /// Those processors.
        in_flight: Vec<ProcessorName>,
    },
    /// A rule is met and nothing holds it: the next completion or reconcile triggers it.
    Ready {
        /// The rule met.
        rule: String,
    },
    /// No rule is met yet.
    Waiting {
        /// The expected processors not complete.
        missing: Vec<ProcessorName>,
    },
}

/// Why one gate's date stands where it does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateExplanation {
    /// The gate.
    pub gate: String,
    /// The mode at `now`.
    pub mode: Mode,
    /// The current generation (a forced re-trigger or changed output adds one).
    pub generation: u32,
    /// The latest generation the next phase ran for.
    pub next_phase_generation: Option<u32>,
    /// The expected processors, in the policy's order.
    pub processors: Vec<ProcessorLine>,
    /// Each rule of the mode's policy.
    pub rules: Vec<RuleLine>,
    /// Checks that block (fail) or warn.
    pub checks: Vec<CheckResult>,
    /// The verdict.
    pub standing: Standing,
    /// The verdict in one sentence.
    pub summary: String,
}

/// Explains one gate's date at `now`.
pub fn explain(
    gate: &Gate,
    partition: Partition,
    facts: &Facts,
    now: Timestamp,
) -> GateExplanation {
    let (mode, policy) = gate.policy_for(partition, now);
    let completed = facts
        .document
        .as_ref()
        .map(Document::completed)
        .unwrap_or_default();
    let processors = policy
        .expected
        .iter()
        .map(|p| ProcessorLine {
            processor: p.clone(),
            critical: policy.critical.contains(p),
            state: state_of(p, facts),
        })
        .collect();
    let rules = policy
        .rules
        .iter()
        .map(|r| rule_line(policy, *r, &completed))
        .collect();
    let standing = standing(gate, partition, facts, &completed, now);
    let checks: Vec<CheckResult> = facts
        .checks
        .iter()
        .filter(|c| c.outcome != Outcome::Pass)
        .cloned()
        .collect();
    let summary = summary(&standing, policy, &completed);
    GateExplanation {
        gate: gate.id.to_string(),
        mode,
        generation: facts.document.as_ref().map_or(1, |d| d.generation),
        next_phase_generation: facts.next_phase_generation,
        processors,
        rules,
        checks,
        standing,
        summary,
    }
}

/// Where `p` stands: done beats everything; then what is on its way (running, owed,
/// waiting on a landing); then what went wrong.
fn state_of(p: &ProcessorName, facts: &Facts) -> ProcessorState {
    let entry = facts.document.as_ref().and_then(|d| d.entries.get(p));
    let f = facts.processors.get(p).cloned().unwrap_or_default();
    match entry {
        Some(e) if e.is_complete() => {
            return ProcessorState::Done {
                status: e.status,
                run_id: e.run_id.clone(),
                record_count: e.record_count,
            };
        }
        _ => {}
    }
    if f.running {
        ProcessorState::Running
    } else if !f.waiting_on.is_empty() {
        ProcessorState::WaitingOnLanding { jobs: f.waiting_on }
    } else if let Some(reason) = f.owed {
        ProcessorState::Owed { reason }
    } else if entry.is_some_and(|e| e.not_counted) {
        ProcessorState::NotCounted
    } else if entry.is_some_and(|e| e.status == CompletionStatus::Failed) || f.last_error.is_some()
    {
        ProcessorState::Failed {
            error: f.last_error,
        }
    } else {
        ProcessorState::Missing
    }
}

/// One rule judged alone by the gate's own policy function.
fn rule_line(policy: &ModePolicy, rule: Rule, completed: &BTreeSet<ProcessorName>) -> RuleLine {
    let alone = ModePolicy {
        rules: vec![rule],
        ..policy.clone()
    };
    let met = matches!(gate::evaluate(&alone, completed), Verdict::Satisfied { .. });
    let n = policy.expected.len();
    let done = policy
        .expected
        .iter()
        .filter(|p| completed.contains(*p))
        .count();
    let measured = match rule {
        Rule::AllComplete => format!("{done} of {n} expected complete; all needed"),
        Rule::CriticalPlusMajority { percent } => {
            let critical_done = policy
                .critical
                .iter()
                .filter(|p| completed.contains(*p))
                .count();
            let share = (done * 100).checked_div(n).unwrap_or(100);
            format!(
                "{critical_done} of {} critical complete (all needed); {done} of {n} expected = {share}% ({percent}% needed)",
                policy.critical.len()
            )
        }
    };
    RuleLine {
        rule: rule.name(),
        met,
        measured,
    }
}

fn standing(
    gate: &Gate,
    partition: Partition,
    facts: &Facts,
    completed: &BTreeSet<ProcessorName>,
    now: Timestamp,
) -> Standing {
    if let Some(d) = facts.document.as_ref().filter(|d| d.triggered) {
        return Standing::Triggered {
            generation: d.trigger_generation,
            reason: d.trigger_reason.clone().unwrap_or_default(),
            at: d.triggered_at,
        };
    }
    match gate.evaluate(partition, now, completed) {
        Verdict::Waiting { missing } => Standing::Waiting { missing },
        Verdict::Satisfied { reason } => {
            if let Some(failed) = facts.checks.iter().find(|c| !c.passed()) {
                return Standing::Blocked {
                    check: failed.check.clone(),
                    evidence: failed.evidence.clone(),
                };
            }
            let (_, policy) = gate.policy_for(partition, now);
            let in_flight: Vec<ProcessorName> = policy
                .expected
                .iter()
                .filter(|p| facts.in_flight.contains(*p))
                .cloned()
                .collect();
            if in_flight.is_empty() {
                Standing::Ready { rule: reason }
            } else {
                Standing::Settling { in_flight }
            }
        }
    }
}

fn names(list: &[ProcessorName]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn summary(
    standing: &Standing,
    policy: &ModePolicy,
    completed: &BTreeSet<ProcessorName>,
) -> String {
    match standing {
        Standing::Triggered {
            generation, reason, ..
        } => format!("triggered generation {generation} by {reason}"),
        Standing::Blocked { check, evidence } => {
            format!("a rule is met but check {check} blocks the trigger: {evidence}")
        }
        Standing::Settling { in_flight } => format!(
            "a rule is met; waiting for the reruns in flight of {}",
            names(in_flight)
        ),
        Standing::Ready { rule } => format!(
            "{rule} is met and nothing blocks it: the next completion or reconcile triggers it"
        ),
        Standing::Waiting { missing } => {
            let critical: Vec<ProcessorName> = policy
                .critical
                .iter()
                .filter(|p| !completed.contains(*p))
                .cloned()
                .collect();
            let mut s = format!("not triggered: no rule met; missing {}", names(missing));
            if !critical.is_empty() {
                s.push_str(&format!(" (critical: {})", names(&critical)));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::{self, StepFacts};
    use crate::config::Pipeline;
    use crate::message::CompletionMessage;

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    /// The reference gate's document with the critical processor and two more complete:
    /// the critical-plus-majority rule is met.
    fn three_done(gate: &Gate, date: Partition, now: Timestamp) -> Document {
        let done = [
            "player_game_summary",
            "upcoming_player_game_context",
            "team_defense_game_summary",
        ];
        document(gate, date, &done, now)
    }

    /// A document of the reference gate with these processors complete, applied through
    /// the real step.
    fn document(gate: &Gate, date: Partition, done: &[&str], now: Timestamp) -> Document {
        let mut doc = Document::new(gate.id.clone(), date);
        for (i, p) in done.iter().enumerate() {
            let msg = CompletionMessage::new(
                ProcessorName::from(*p),
                date,
                RunId::from(format!("run-{i}").as_str()),
                CompletionStatus::Success,
                10,
                now,
            );
            let out = completion::step_settling(
                Some(doc.clone()),
                &msg,
                gate,
                now,
                &[],
                &StepFacts::default(),
            );
            doc = out.document;
        }
        doc
    }

    #[test]
    fn a_missing_critical_processor_is_named_with_the_rule_not_met() {
        let p = Pipeline::reference().unwrap();
        let g = &p.gates[0];
        let now = at("2024-03-05T12:00:00Z");
        let date = Partition::parse("2024-03-04").unwrap();
        let doc = document(
            g,
            date,
            &[
                "player_game_summary",
                "team_offense_game_summary",
                "team_defense_game_summary",
            ],
            now,
        );
        let mut facts = Facts {
            document: Some(doc),
            ..Default::default()
        };
        facts.processors.insert(
            ProcessorName::from("upcoming_player_game_context"),
            ProcessorFacts {
                waiting_on: vec!["odds_api_props".into()],
                ..Default::default()
            },
        );
        let e = explain(g, date, &facts, now);
        assert_eq!(e.mode, Mode::Overnight);
        assert!(matches!(e.standing, Standing::Waiting { .. }), "{e:?}");
        let upcoming = e
            .processors
            .iter()
            .find(|l| l.processor.as_str() == "upcoming_player_game_context")
            .unwrap();
        assert!(upcoming.critical);
        assert_eq!(
            upcoming.state,
            ProcessorState::WaitingOnLanding {
                jobs: vec!["odds_api_props".into()]
            }
        );
        assert!(e.rules.iter().all(|r| !r.met), "{:?}", e.rules);
        assert!(
            e.summary.contains("critical: upcoming_player_game_context"),
            "{}",
            e.summary
        );
    }

    #[test]
    fn a_met_rule_with_a_failing_check_is_blocked_and_the_check_is_listed() {
        let p = Pipeline::reference().unwrap();
        let g = &p.gates[0];
        let now = at("2024-03-05T12:00:00Z");
        let date = Partition::parse("2024-03-04").unwrap();
        let mut doc = three_done(g, date, now);
        // As if a check had blocked it: not triggered.
        doc.triggered = false;
        let facts = Facts {
            document: Some(doc),
            checks: vec![
                CheckResult {
                    check: "min_rows".into(),
                    outcome: Outcome::Fail,
                    evidence: "3 rows in t (minimum 10)".into(),
                },
                CheckResult {
                    check: "ok".into(),
                    outcome: Outcome::Pass,
                    evidence: "fine".into(),
                },
            ],
            ..Default::default()
        };
        let e = explain(g, date, &facts, now);
        assert_eq!(
            e.standing,
            Standing::Blocked {
                check: "min_rows".into(),
                evidence: "3 rows in t (minimum 10)".into()
            }
        );
        assert_eq!(e.checks.len(), 1, "passing checks are left out");
        let cpm = e
            .rules
            .iter()
            .find(|r| r.rule.starts_with("critical"))
            .unwrap();
        assert!(cpm.met, "{cpm:?}");
        assert!(
            !e.rules
                .iter()
                .find(|r| r.rule == "all_complete")
                .unwrap()
                .met
        );
    }

    #[test]
    fn a_triggered_date_names_its_generation_and_rule() {
        let p = Pipeline::reference().unwrap();
        let g = &p.gates[0];
        let now = at("2024-03-05T12:00:00Z");
        let date = Partition::parse("2024-03-04").unwrap();
        let doc = document(
            g,
            date,
            &[
                "player_game_summary",
                "upcoming_player_game_context",
                "team_defense_game_summary",
                "team_offense_game_summary",
                "upcoming_team_game_context",
            ],
            now,
        );
        let facts = Facts {
            document: Some(doc),
            ..Default::default()
        };
        let e = explain(g, date, &facts, now);
        assert!(
            matches!(&e.standing, Standing::Triggered { generation: 1, reason, .. } if reason.starts_with("critical_plus_majority")),
            "{:?}",
            e.standing
        );
        assert!(e.processors.iter().all(|l| l.state.word() == "done"));
    }

    #[test]
    fn reruns_in_flight_hold_a_met_rule_and_failed_runs_are_named() {
        let p = Pipeline::reference().unwrap();
        let g = &p.gates[0];
        let now = at("2024-03-05T12:00:00Z");
        let date = Partition::parse("2024-03-04").unwrap();
        let mut doc = three_done(g, date, now);
        doc.triggered = false;
        let mut facts = Facts {
            document: Some(doc),
            in_flight: [ProcessorName::from("player_game_summary")].into(),
            ..Default::default()
        };
        facts.processors.insert(
            ProcessorName::from("team_offense_game_summary"),
            ProcessorFacts {
                last_error: Some("boom".into()),
                ..Default::default()
            },
        );
        let e = explain(g, date, &facts, now);
        assert!(matches!(e.standing, Standing::Settling { .. }), "{e:?}");
        let off = e
            .processors
            .iter()
            .find(|l| l.processor.as_str() == "team_offense_game_summary")
            .unwrap();
        assert_eq!(
            off.state,
            ProcessorState::Failed {
                error: Some("boom".into())
            }
        );
    }
}
