//! The simulator's judges: after every step the product's state is compared with the
//! reference model (`model.rs`) and with what the simulated workers did; after the drain,
//! the end state must be exactly the model's.
//!
//! Each finding names the guarantee it breaks: G1 (the document's entries and count are not
//! what the applied runs say), G2 (a trigger written twice for one generation, or a
//! generation triggered that the policy did not allow, or not triggered when it did), G3
//! (a written completion missing from the outbox), G4/G5 (rows not those of the newest
//! accepted write, as the model dedups it), G9 (a generation opened that no change asked
//! for, or missed; owed runs not the requests made), G10 (the next phase ran more often
//! for a date than generations fired, or, after the drain, less).

use crate::World;
use crate::model::{DateModel, best_run};
use baton_core::clock::Clock;
use baton_core::completion::Document;
use baton_core::model::Row;
use baton_core::model::{Partition, ProcessorName};
use baton_ports::{OutboxKind, RequestKind, StateStore, Warehouse};
use std::collections::{BTreeMap, BTreeSet};

type Checked = Result<(), crate::Violation>;

impl World {
    /// Every check, after a step.
    pub(crate) fn check(&self) -> Checked {
        let every_table = self.rows_changed.get();
        let wrote_to = std::mem::take(&mut *self.wrote_to.borrow_mut());
        for &d in &self.dates {
            let doc = self
                .backend
                .document(&self.pipeline.gates[0].id, d)
                .map_err(|e| self.backend_error(e))?;
            let written = self.check_triggers(d)?;
            self.check_document(d, doc.as_ref(), &written)?;
            // The next phase runs only in a trigger consumer's step.
            if self.next_phase_ran.get() {
                self.check_next_phase(d, false)?;
            }
            // Rows change only by a write, and only the writer's table for its date: read
            // those after a write (and every table at the start and the end).
            for (i, p) in self.phase3.iter().enumerate() {
                if every_table || wrote_to.contains(&(i, d)) {
                    self.check_rows(i, p, d)?;
                }
            }
        }
        self.rows_changed.set(false);
        self.next_phase_ran.set(false);
        self.check_requests()?;
        if every_table || !wrote_to.is_empty() {
            self.check_outbox()?;
        }
        Ok(())
    }

    /// G1, G2, G9: the document and its trigger rows (`written`: the generations with one)
    /// are the model's, and only processors that wrote are complete.
    ///
    /// The order names the first wrong decision: entries (G1), then the triggers of the
    /// generations both know (G2: a trigger the policy did not allow, or a missing one),
    /// then the generation (G9: a change that did not open one, or one nothing changed).
    fn check_document(
        &self,
        d: Partition,
        doc: Option<&Document>,
        written: &BTreeSet<u32>,
    ) -> Checked {
        let empty = DateModel::default();
        let model = self.model.dates.get(&d).unwrap_or(&empty);
        let Some(doc) = doc else {
            if !model.runs.is_empty() || !written.is_empty() {
                return Err(self.violation(
                    "G1",
                    format!("{d}: no document after completions (triggers {written:?})"),
                ));
            }
            return Ok(());
        };
        if doc.completed_count != doc.derived_count() {
            return Err(self.violation(
                "G1",
                format!(
                    "{d}: stored completed_count {} but {} entries complete",
                    doc.completed_count,
                    doc.derived_count()
                ),
            ));
        }
        self.check_entries(d, doc, model)?;
        let known = doc.generation.min(model.generation);
        let product_fired: BTreeSet<u32> = written.range(..=known).copied().collect();
        let model_fired: BTreeSet<u32> = model.fired.range(..=known).copied().collect();
        if product_fired != model_fired {
            return Err(self.violation(
                "G2",
                format!(
                    "{d}: triggers written for generations {product_fired:?}, the model fired {model_fired:?} (complete: {:?})",
                    model.complete()
                ),
            ));
        }
        if doc.generation != model.generation {
            return Err(self.violation(
                "G9",
                format!(
                    "{d}: the document is at generation {}, the model at {} ({} changed output)",
                    doc.generation, model.generation, model.changes
                ),
            ));
        }
        if doc.triggered != model.triggered {
            return Err(self.violation(
                "G2",
                format!(
                    "{d}: generation {} triggered={} but the policy of its mode says {} (complete: {:?})",
                    doc.generation,
                    doc.triggered,
                    model.triggered,
                    model.complete()
                ),
            ));
        }
        if *written != model.fired {
            return Err(self.violation(
                "G2",
                format!(
                    "{d}: triggers written for generations {written:?}, the model fired {:?}",
                    model.fired
                ),
            ));
        }
        Ok(())
    }

    /// G1: each entry shows the model's best run, and is complete exactly when that run
    /// counts (a `no_data` on a date with work does not) and the processor wrote.
    fn check_entries(&self, d: Partition, doc: &Document, model: &DateModel) -> Checked {
        let in_doc: BTreeSet<&ProcessorName> = doc.entries.keys().collect();
        let in_model: BTreeSet<&ProcessorName> = model.runs.keys().collect();
        if in_doc != in_model {
            return Err(self.violation(
                "G1",
                format!("{d}: entries for {in_doc:?}, runs applied for {in_model:?}"),
            ));
        }
        let complete = model.complete();
        if doc.completed_count != complete.len() {
            return Err(self.violation(
                "G1",
                format!(
                    "{d}: completed_count {} but {} processors have a successful run",
                    doc.completed_count,
                    complete.len()
                ),
            ));
        }
        for (p, entry) in &doc.entries {
            let best = model.runs.get(p).and_then(best_run);
            let (run, succeeded) = best.map_or(("", false), |b| (b.run_id.as_str(), b.counted));
            if entry.run_id.as_str() != run || entry.is_complete() != succeeded {
                return Err(self.violation(
                    "G1",
                    format!(
                        "{d}: {p} shows run {} ({:?}), the best run is {run} (succeeded: {succeeded})",
                        entry.run_id, entry.status
                    ),
                ));
            }
            let wrote = self
                .phase3
                .iter()
                .position(|q| &q.name == p)
                .is_some_and(|i| self.written_tokens.contains_key(&(i, d)));
            if entry.is_complete() && !wrote {
                return Err(self.violation("G1", format!("{d}: {p} complete without a write")));
            }
        }
        Ok(())
    }

    /// G2: one trigger row per generation; returns the generations with a trigger row.
    fn check_triggers(&self, d: Partition) -> Result<BTreeSet<u32>, crate::Violation> {
        let rows = self
            .backend
            .outbox_for(OutboxKind::Trigger, d)
            .map_err(|e| self.backend_error(e))?;
        let mut per_generation: BTreeMap<u32, usize> = BTreeMap::new();
        for row in &rows {
            // The id is deterministic per generation (`Trigger::message_id_for`); reading the
            // generation from it spares parsing every payload on every step.
            let generation = row
                .row
                .message_id
                .rsplit_once("/g")
                .and_then(|(_, g)| g.parse::<u32>().ok())
                .ok_or_else(|| {
                    self.violation("G2", format!("{d}: trigger id {}", row.row.message_id))
                })?;
            *per_generation.entry(generation).or_default() += 1;
        }
        if let Some((g, n)) = per_generation.iter().find(|(_, n)| **n > 1) {
            return Err(self.violation("G2", format!("{d}: generation {g} triggered {n} times")));
        }
        let written: BTreeSet<u32> = per_generation.into_keys().collect();
        Ok(written)
    }

    /// G4, G5: processor `i`'s table holds, for the date, exactly the rows of the newest
    /// accepted write.
    fn check_rows(&self, i: usize, p: &baton_core::config::Processor, d: Partition) -> Checked {
        {
            let tokens: BTreeSet<u64> = self
                .backend
                .row_tokens(&p.table.name, d)
                .into_iter()
                .collect();
            if tokens.len() > 1 {
                return Err(self.violation(
                    "G5",
                    format!("{d}: {} holds rows of runs with tokens {tokens:?}", p.name),
                ));
            }
            if let Some(t) = tokens.first()
                && Some(t) != self.written_tokens.get(&(i, d))
            {
                return Err(self.violation(
                    "G4",
                    format!(
                        "{d}: {} holds rows of token {t}, newest accepted write was {:?}",
                        p.name,
                        self.written_tokens.get(&(i, d))
                    ),
                ));
            }
            let rows = self
                .backend
                .read(&p.table, d, d)
                .map_err(|e| self.backend_error(e))?;
            let expected = self
                .model
                .tables
                .get(&(p.table.name.clone(), d))
                .map_or(&[][..], Vec::as_slice);
            if !same_rows(&rows, expected) {
                return Err(self.violation(
                    "G5",
                    format!(
                        "{d}: {} holds {} rows, the newest accepted write left {}",
                        p.name,
                        rows.len(),
                        expected.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// G10: the next phase ran (a run of each of its processors that ended well, in the run
    /// history the real runner keeps) once per generation that fired: never more, and after
    /// the drain (`done`), exactly.
    fn check_next_phase(&self, d: Partition, done: bool) -> Checked {
        let gate = &self.pipeline.gates[0];
        let next: Vec<&ProcessorName> = self
            .pipeline
            .phase(gate.next_phase)
            .map(|p| &p.name)
            .collect();
        let runs = self
            .backend
            .runs(d)
            .map_err(|e| self.backend_error(e))?
            .into_iter()
            .filter(|r| next.contains(&&r.processor) && r.status.completes())
            .count();
        let fired = self.model.dates.get(&d).map_or(0, |m| m.fired.len());
        let expected = fired * next.len();
        if runs > expected || (done && runs != expected) {
            return Err(self.violation(
                "G10",
                format!(
                    "{d}: the next phase ran {runs} times, the model fired {fired} generations for {} processors",
                    next.len()
                ),
            ));
        }
        Ok(())
    }

    /// G9: the runs owed are exactly the requests not yet done by a run started after them.
    fn check_requests(&self) -> Checked {
        let stored: BTreeMap<(ProcessorName, Partition), jiff::Timestamp> = self
            .backend
            .pending_requests()
            .map_err(|e| self.backend_error(e))?
            .into_iter()
            .filter(|r| r.kind == RequestKind::Requested)
            .map(|r| ((r.processor, r.partition), r.since))
            .collect();
        if stored != self.model.requests {
            // The first pair that differs, with when each side says it was requested.
            let differs = stored
                .keys()
                .chain(self.model.requests.keys())
                .find(|k| stored.get(*k) != self.model.requests.get(*k));
            let detail = differs.map(|k| {
                format!(
                    "; {} {}: owed since {:?}, requested since {:?}",
                    k.0,
                    k.1,
                    stored.get(k),
                    self.model.requests.get(k)
                )
            });
            return Err(self.violation(
                "G9",
                format!(
                    "runs owed {:?}, requested and not yet done {:?}{}",
                    stored.keys().collect::<Vec<_>>(),
                    self.model.requests.keys().collect::<Vec<_>>(),
                    detail.unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    /// G3: every accepted write's completion is in the outbox.
    fn check_outbox(&self) -> Checked {
        let mut outbox = BTreeSet::new();
        for d in &self.dates {
            let rows = self
                .backend
                .outbox_for(OutboxKind::Completion, *d)
                .map_err(|e| self.backend_error(e))?;
            outbox.extend(rows.into_iter().map(|r| r.row.message_id));
        }
        if let Some(missing) = self
            .written_completions
            .iter()
            .find(|m| !outbox.contains(*m))
        {
            return Err(self.violation(
                "G3",
                format!("completion {missing} was written with data but is not in the outbox"),
            ));
        }
        Ok(())
    }

    /// After the drain: every completion produced was applied (or dead-lettered, G8), no run
    /// is owed, every generation but an unsatisfied last one triggered, and a date whose
    /// policy is satisfied now has triggered; then the step checks once more.
    pub(crate) fn final_check(&self) -> Checked {
        let dead: BTreeSet<String> = self
            .backend
            .dead_letters()
            .map_err(|e| self.backend_error(e))?
            .into_iter()
            .filter_map(|l| l.letter.message_id)
            .collect();
        for (id, (p, d)) in &self.produced {
            let run = id.rsplit('/').next().unwrap_or_default();
            let seen = self
                .model
                .dates
                .get(d)
                .and_then(|m| m.runs.get(p))
                .is_some_and(|runs| runs.contains_key(run));
            if !seen && !dead.contains(id) {
                return Err(self.violation(
                    "G1",
                    format!("{d}: completion {id} was never applied after the drain"),
                ));
            }
        }
        if !self.model.requests.is_empty() {
            return Err(self.violation(
                "liveness",
                format!("runs still owed after the drain: {:?}", self.model.requests),
            ));
        }
        let now = self.clock.now();
        for (d, m) in &self.model.dates {
            let want: BTreeSet<u32> = (1..=m.generation)
                .filter(|g| *g < m.generation || m.triggered)
                .collect();
            if m.fired != want {
                return Err(self.violation(
                    "G2",
                    format!("{d}: generations {:?} fired, expected {want:?}", m.fired),
                ));
            }
            if !m.triggered
                && self.model.policy(*d, now).satisfied(&m.complete())
                && self.model.checks_pass(*d, now)
            {
                return Err(self.violation(
                    "G2",
                    format!(
                        "{d}: the policy is satisfied but generation {} never triggered",
                        m.generation
                    ),
                ));
            }
        }
        for d in &self.dates {
            self.check_next_phase(*d, true)?;
        }
        self.rows_changed.set(true);
        self.check()
    }
}

/// Whether two sets of rows are the same, order aside; the lengths must match, so a row
/// stored twice is caught. Rows are few per date; comparing them pairwise is cheaper than serializing.
fn same_rows(a: &[Row], b: &[Row]) -> bool {
    a.len() == b.len() && a.iter().all(|r| b.contains(r)) && b.iter().all(|r| a.contains(r))
}
