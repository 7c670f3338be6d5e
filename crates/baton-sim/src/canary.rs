//! Wrong rules on purpose, wrapped around the orchestrator step the consumer passes to
//! `StateStore::apply`: each makes the product's decision what a broken rule in baton-core
//! would make it, so the simulator can prove its reference model catches it.
//!
//! They live here (switched by [`Canary`] in the in-memory backend) rather than as switches
//! in baton-core, so no production code path carries them. Each bends the real step's
//! output: the wrapped step runs first, then the canary rewrites what a wrong rule would
//! have decided differently.

use crate::mem::Canary;
use baton_core::completion::{self, Document, Effect, Entry, StepOutput, Trigger};
use baton_core::gate::{Gate, Rule};
use baton_core::message::CompletionMessage;
use baton_core::model::{GateId, ProcessorName, Row};
use baton_ports::engine::StepFn;
use baton_ports::{PendingRequest, RequestKind};
use jiff::Timestamp;
use std::collections::BTreeSet;

/// What a canary needs to bend one step.
pub(crate) struct Bend<'a> {
    /// Which bug.
    pub canary: Canary,
    /// The gate of the step.
    pub gate: &'a Gate,
    /// Runs owed when the batch was read (the gate waits for them).
    pub owed: &'a [PendingRequest],
    /// The store's time of the transaction.
    pub now: Timestamp,
}

impl Bend<'_> {
    /// Runs `step`, bent by the canary.
    pub(crate) fn step(
        &self,
        doc: Option<Document>,
        gate: &GateId,
        message: &CompletionMessage,
        step: &mut StepFn<'_>,
    ) -> StepOutput {
        match self.canary {
            Canary::DigestStripped => {
                // The bug: the orchestrator drops the digest, so it cannot tell changed
                // output from a rerun of the same.
                step(doc, gate, &message.clone().with_digest(None))
            }
            Canary::BestRunPrefersFailed => {
                let mut out = step(doc, gate, message);
                prefer_failed(&mut out.document, &message.processor);
                out
            }
            Canary::CriticalIgnored | Canary::AllButOneIsAll => {
                let mut out = step(doc, gate, message);
                self.fire_by_wrong_rule(&mut out);
                out
            }
            _ => step(doc, gate, message),
        }
    }

    /// Fires the current generation when the wrong rule says so and the right one did not.
    fn fire_by_wrong_rule(&self, out: &mut StepOutput) {
        if let Some(trigger) = self.wrong_trigger(&mut out.document) {
            out.effects.push(Effect::PublishTrigger(trigger));
        }
    }

    /// A reconcile repair bent as the step is: the wrong rule is baton-core's, so the
    /// repair, which decides the trigger through the same rule, fires by it too.
    pub(crate) fn repair(&self, document: &mut Document, triggers: &mut Vec<Trigger>) {
        if matches!(
            self.canary,
            Canary::CriticalIgnored | Canary::AllButOneIsAll
        ) {
            triggers.extend(self.wrong_trigger(document));
        }
    }

    /// The trigger the wrong rule fires on `doc`, if it fires one.
    fn wrong_trigger(&self, doc: &mut Document) -> Option<Trigger> {
        if doc.triggered {
            return None;
        }
        let (_, policy) = self.gate.policy_for(doc.partition, self.now);
        let waiting = self.owed.iter().any(|r| {
            r.partition == doc.partition
                && matches!(r.kind, RequestKind::Requested | RequestKind::Coalesced)
                && policy.expected.contains(&r.processor)
        });
        let complete: BTreeSet<ProcessorName> = doc.completed();
        let done = policy
            .expected
            .iter()
            .filter(|p| complete.contains(*p))
            .count();
        let wrong = policy.rules.iter().any(|rule| match (self.canary, rule) {
            (Canary::AllButOneIsAll, Rule::AllComplete) => done + 1 >= policy.expected.len(),
            (Canary::CriticalIgnored, Rule::CriticalPlusMajority { percent }) => {
                done as u64 * 100 >= u64::from(*percent) * policy.expected.len() as u64
            }
            _ => false,
        });
        (wrong && !waiting).then(|| completion::force_trigger(doc, self.gate, self.now, "canary"))
    }
}

/// The worker's pre-write dedup (the product's, `baton_core::dedup`), bent by the
/// duplicate-key canary to keep every row of a repeated key.
pub(crate) fn dedup(
    canary: Canary,
    rows: Vec<Row>,
    primary_key: &[String],
) -> Result<Vec<Row>, baton_core::dedup::Error> {
    if canary == Canary::DuplicateKeyKept {
        return Ok(rows);
    }
    Ok(baton_core::dedup::dedup(rows, primary_key)?.rows)
}

/// The bug of the best-run canary: an entry shows its latest failed run whenever it has one,
/// even beside a success.
fn prefer_failed(doc: &mut Document, processor: &ProcessorName) {
    let Some(entry) = doc.entries.get_mut(processor) else {
        return;
    };
    let failed = entry
        .runs
        .iter()
        .filter(|r| !r.status.completes())
        .max_by(|a, b| (a.produced_at, &a.run_id).cmp(&(b.produced_at, &b.run_id)))
        .cloned();
    if let Some(run) = failed {
        *entry = Entry {
            status: run.status,
            run_id: run.run_id,
            record_count: run.record_count,
            ..entry.clone()
        };
    }
    doc.completed_count = doc.derived_count();
}
