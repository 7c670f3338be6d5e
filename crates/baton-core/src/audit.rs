//! The per-date exactness verdict: given the facts about one (gate, partition) (its stored
//! document, the processors with a successful run, the trigger rows written, duplicate
//! rows, whether the next phase ran), say whether the date is exact and, if not, why.
//! The demo prints it; `status` shows it.

use crate::completion::Document;
use crate::gate::{Gate, Verdict};
use crate::model::{Partition, ProcessorName};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeSet;

/// What is known about one date.
#[derive(Debug, Clone)]
pub struct DateFacts {
    /// The partition.
    pub partition: Partition,
    /// The stored completion document.
    pub document: Option<Document>,
    /// Processors of the gate with a successful run (success, partial, no_data).
    pub succeeded: BTreeSet<ProcessorName>,
    /// The generation of every trigger row written for the date.
    pub trigger_generations: Vec<u32>,
    /// Rows beyond the first per primary key, over the gate's and the next phase's tables.
    pub duplicate_rows: u64,
    /// Dead letters that name the date.
    pub dead_letters: usize,
    /// Whether every next-phase processor has a successful run.
    pub next_phase_ran: bool,
}

/// The verdict for one date.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DateVerdict {
    /// The partition.
    pub date: Partition,
    /// Expected processors recorded complete.
    pub done: usize,
    /// Expected processors.
    pub expected: usize,
    /// The stored count.
    pub completed_count: usize,
    /// Whether the current generation triggered.
    pub triggered: bool,
    /// Trigger rows written.
    pub triggers: usize,
    /// Duplicate rows.
    pub duplicate_rows: u64,
    /// Dead letters naming the date.
    pub dead_letters: usize,
    /// Whether the next phase ran.
    pub next_phase_ran: bool,
    /// Everything that is not exact; empty when the date is exact.
    pub problems: Vec<String>,
}

impl DateVerdict {
    /// Whether the date is exact.
    pub fn is_exact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Judges one date against the gate's policy at `now`.
pub fn audit(gate: &Gate, facts: &DateFacts, now: Timestamp) -> DateVerdict {
    let (_, policy) = gate.policy_for(facts.partition, now);
    let mut problems = Vec::new();
    let empty = Document::new(gate.id.clone(), facts.partition);
    let doc = facts.document.as_ref().unwrap_or(&empty);
    if facts.document.is_none() {
        problems.push("no completion document".to_owned());
    }
    let recorded = doc.completed();
    let done = policy
        .expected
        .iter()
        .filter(|p| recorded.contains(*p))
        .count();
    if doc.completed_count != doc.derived_count() {
        problems.push(format!(
            "completed_count {} but {} entries complete",
            doc.completed_count,
            doc.derived_count()
        ));
    }
    for p in facts.succeeded.difference(&recorded) {
        problems.push(format!("{p} ran successfully but is not recorded"));
    }
    for p in recorded.difference(&facts.succeeded) {
        problems.push(format!("{p} is recorded but has no successful run"));
    }
    if done < policy.expected.len() {
        problems.push(format!(
            "{done}/{} expected processors complete",
            policy.expected.len()
        ));
    }
    let should = matches!(
        crate::gate::evaluate(policy, &recorded),
        Verdict::Satisfied { .. }
    );
    if should && !doc.triggered {
        problems.push("policy satisfied but never triggered".to_owned());
    }
    for g in 1..=doc.trigger_generation {
        let n = facts
            .trigger_generations
            .iter()
            .filter(|x| **x == g)
            .count();
        if n != 1 {
            problems.push(format!("generation {g} triggered {n} times"));
        }
    }
    if facts
        .trigger_generations
        .iter()
        .any(|g| *g > doc.trigger_generation)
    {
        problems
            .push("a trigger row exists for a generation the document does not record".to_owned());
    }
    if facts.duplicate_rows > 0 {
        problems.push(format!("{} duplicate rows", facts.duplicate_rows));
    }
    if doc.triggered && !facts.next_phase_ran {
        problems.push(format!(
            "triggered but phase {} did not run",
            gate.next_phase
        ));
    }
    DateVerdict {
        date: facts.partition,
        done,
        expected: policy.expected.len(),
        completed_count: doc.completed_count,
        triggered: doc.triggered,
        triggers: facts.trigger_generations.len(),
        duplicate_rows: facts.duplicate_rows,
        dead_letters: facts.dead_letters,
        next_phase_ran: facts.next_phase_ran,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::step;
    use crate::config::Pipeline;
    use crate::message::CompletionMessage;
    use crate::model::{CompletionStatus, RunId};

    fn facts_for(processors: &[&str], gate: &Gate, now: Timestamp) -> DateFacts {
        let partition = Partition::parse("2024-03-01").unwrap();
        let mut doc = None;
        let mut generations = Vec::new();
        for p in processors {
            let processor = ProcessorName::from(*p);
            let run_id = RunId::from("r");
            let m = CompletionMessage::new(
                processor,
                partition,
                run_id,
                CompletionStatus::Success,
                1,
                now,
            );
            let out = step(doc.take(), &m, gate, now, &[]);
            generations.extend(out.effects.iter().filter_map(|e| match e {
                crate::completion::Effect::PublishTrigger(t) => Some(t.generation),
                _ => None,
            }));
            doc = Some(out.document);
        }
        DateFacts {
            partition,
            document: doc,
            succeeded: processors.iter().map(|p| ProcessorName::from(*p)).collect(),
            trigger_generations: generations,
            duplicate_rows: 0,
            dead_letters: 0,
            next_phase_ran: true,
        }
    }

    const ALL: [&str; 5] = [
        "team_offense_game_summary",
        "team_defense_game_summary",
        "upcoming_team_game_context",
        "player_game_summary",
        "upcoming_player_game_context",
    ];

    #[test]
    fn a_complete_triggered_date_is_exact() {
        let p = Pipeline::reference().unwrap();
        let now: Timestamp = "2024-03-05T12:00:00Z".parse().unwrap();
        let v = audit(&p.gates[0], &facts_for(&ALL, &p.gates[0], now), now);
        assert!(v.is_exact(), "{:?}", v.problems);
        assert_eq!((v.done, v.expected, v.triggers), (5, 5, 1));
    }

    #[test]
    fn the_incident_undercount_is_found() {
        // All five ran; the tracker recorded one.
        let p = Pipeline::reference().unwrap();
        let now: Timestamp = "2024-03-05T12:00:00Z".parse().unwrap();
        let mut facts = facts_for(&ALL[..1], &p.gates[0], now);
        facts.succeeded = ALL.iter().map(|p| ProcessorName::from(*p)).collect();
        let v = audit(&p.gates[0], &facts, now);
        assert!(!v.is_exact());
        assert!(
            v.problems
                .iter()
                .any(|x| x.contains("ran successfully but is not recorded")),
            "{:?}",
            v.problems
        );
        assert!(
            v.problems
                .iter()
                .any(|x| x == "1/5 expected processors complete")
        );
    }

    #[test]
    fn a_double_trigger_and_duplicates_are_found() {
        let p = Pipeline::reference().unwrap();
        let now: Timestamp = "2024-03-05T12:00:00Z".parse().unwrap();
        let mut facts = facts_for(&ALL, &p.gates[0], now);
        facts.trigger_generations.push(1);
        facts.duplicate_rows = 72;
        let v = audit(&p.gates[0], &facts, now);
        assert!(
            v.problems
                .contains(&"generation 1 triggered 2 times".to_owned())
        );
        assert!(v.problems.contains(&"72 duplicate rows".to_owned()));
    }
}
