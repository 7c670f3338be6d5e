//! The engine: every rule that runs inside a store transaction, written once.
//!
//! A backend opens a transaction its own way (SQLite `BEGIN IMMEDIATE`, PostgreSQL READ
//! COMMITTED with row locks and retries, the in-memory store under its lock) and hands it to
//! these functions as a [`Transaction`]: a few primitive reads and writes. What happens in
//! the transaction — carrying out a step's effects, the pair assertion on the derived count,
//! the fence check, the completion's outbox row, replacing a run's rows, the receipt and
//! landing-batch histories and their bound — is decided here, so no backend can drift from
//! another.
//!
//! Invariant: an engine function either returns `Ok` with every write done, or an error after
//! which the backend rolls the transaction back; it never commits.
//!
//! What this module does not do: open, commit or retry transactions, or choose locks: that is
//! what differs between databases, and it stays in the adapters.

use crate::{
    CompletionReceipt, Error, FencedWrite, LandingBatch, NewDeadLetter, NewOutboxRow,
    PendingRequest, Result, RunEnd, RunRecord, RunStatus, Work, WriteOutcome,
};
use baton_core::completion::{Document, Effect, Outcome, StepOutput, Trigger};
use baton_core::config::TableSpec;
use baton_core::lease::{self, Lease, Refusal};
use baton_core::message::CompletionMessage;
use baton_core::model::{FenceToken, GateId, Partition, ProcessorName, Row, RunId};
use jiff::Timestamp;
use std::collections::BTreeMap;

/// How many batches the landing-batch history keeps per (job, partition): a date landed
/// again and again keeps its newest batches, and the landing's count says how many more
/// there were (nothing grows without bound for a date rerun many times).
pub const LANDING_BATCHES_KEPT: u32 = 200;

/// How many completion receipts the receipt history keeps per (gate, partition), newest
/// first; the document's message counts say how many more there were.
pub const RECEIPTS_KEPT: u32 = 200;

/// The orchestrator step as the engine calls it (`baton_core::completion::step` with the
/// pipeline and quality measurements bound by the caller). A step that rejects a message
/// returns the document it was given unchanged (a new empty one for `None`).
pub type StepFn<'a> = dyn FnMut(Option<Document>, &GateId, &CompletionMessage) -> StepOutput + 'a;

/// An edit of one document for reconcile and forced re-triggers: the stored document in, the
/// new one and the triggers to write out (or `None` to leave it).
pub type EditFn<'a> = dyn FnMut(Option<Document>) -> Option<(Document, Vec<Trigger>)> + 'a;

/// A backend that can open a transaction for the engine: the one thing each backend writes
/// for the rules in this module (`StateStore` and `Warehouse` carry them out as default
/// methods through it).
pub trait Transact {
    /// Runs `work` in one transaction and commits if it returns `Ok` (rolls back
    /// otherwise). A backend that retries conflicts may call `work` more than once, each time
    /// on a fresh transaction.
    fn transact(&self, work: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()>;
}

/// Runs an engine function through [`Transact::transact`] and returns its result.
pub fn run<T>(
    backend: &(impl Transact + ?Sized),
    mut f: impl FnMut(&mut dyn Transaction) -> Result<T>,
) -> Result<T> {
    let mut out = None;
    backend.transact(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| Error::Permanent("invariant: a committed transaction ran its work".into()))
}

/// What an open transaction of a backend offers the engine. Each method is one statement (or
/// its in-memory equivalent); none decides anything.
pub trait Transaction {
    /// The store's time for this transaction (the store's clock, never a worker's).
    fn now(&self) -> Timestamp;
    /// Reads a document that this transaction may rewrite (locked where the database locks
    /// rows). The engine reads a batch's documents in key order, so two transactions over
    /// overlapping batches lock in the same order and cannot deadlock.
    fn document_for_update(
        &mut self,
        gate: &GateId,
        partition: Partition,
    ) -> Result<Option<Document>>;
    /// Writes `doc` (its version already the next one) with its JSON `body`, if the stored
    /// version is still `expected` (`None`: no document yet); false when it moved.
    fn write_document(&mut self, doc: &Document, body: &str, expected: Option<u64>)
    -> Result<bool>;
    /// Adds a row to the outbox.
    fn insert_outbox(&mut self, row: &NewOutboxRow) -> Result<()>;
    /// Adds a dead letter.
    fn insert_dead_letter(&mut self, letter: &NewDeadLetter) -> Result<()>;
    /// The lease of a (processor, partition), read so that a takeover cannot commit between
    /// the fence check and the write (PostgreSQL: `FOR SHARE`).
    fn lease_for_write(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Option<Lease>>;
    /// The newest token the warehouse has seen for a (processor, partition), locked.
    fn newest_fence(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Option<FenceToken>>;
    /// Records `token` as the newest seen for a (processor, partition).
    fn set_fence(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
        token: FenceToken,
    ) -> Result<()>;
    /// Upserts rows on the table's primary key, stamped with `token`; returns how many keys
    /// were new.
    fn upsert_rows(&mut self, table: &TableSpec, rows: &[Row], token: FenceToken) -> Result<u64>;
    /// Records a batch of `job`'s landing for `partition`: `at` is when it landed (kept from
    /// the first batch, for lateness), `recorded_at` when baton recorded it (kept from the
    /// latest, for staleness); batches are counted. Returns the batch's sequence number.
    fn land(
        &mut self,
        job: &str,
        partition: Partition,
        at: Timestamp,
        recorded_at: Timestamp,
    ) -> Result<u32>;
    /// Adds a batch to the landing-batch history, then forgets the batches of its (job,
    /// partition) numbered `keep` or more below it.
    fn add_landing_batch(&mut self, batch: &LandingBatch, keep: u32) -> Result<()>;
    /// Adds receipts of one (gate, partition) to the receipt history in their order, then
    /// forgets all but the newest `keep` of that (gate, partition).
    fn add_receipts(&mut self, receipts: &[CompletionReceipt], keep: u32) -> Result<()>;
    /// Records the run owed for a (processor, date), as `StateStore::record_request` says.
    fn owe_run(&mut self, request: &PendingRequest) -> Result<()>;
    /// Removes the partition's rows stamped with a token older than `token` (rows an earlier
    /// run wrote that this run did not); returns how many.
    fn remove_rows_before(
        &mut self,
        table: &TableSpec,
        partition: Partition,
        token: FenceToken,
    ) -> Result<u64>;
    /// Every run still recorded as `running`, in start order.
    fn running_runs(&mut self) -> Result<Vec<RunRecord>>;
    /// The runs of one (processor, partition) still recorded as `running`, in start order.
    fn running_runs_of(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Vec<RunRecord>>;
    /// Ends a run that is still `running` as `end` says, at `finished_at`; false when it
    /// had already ended (its own process finished it first).
    fn end_running_run(
        &mut self,
        run_id: &RunId,
        end: &RunEnd,
        finished_at: Timestamp,
    ) -> Result<bool>;
}

/// A document of an `apply` batch: its state so far, the version it was read at, whether
/// a step changed it, and the receipts of the messages applied to it.
struct Slot {
    document: Option<Document>,
    read_version: Option<u64>,
    dirty: bool,
    receipts: Vec<CompletionReceipt>,
}

/// Applies a batch: reads each document once (in key order), steps it through every message
/// for it in batch order, carries out each step's effects, and writes each changed document
/// once at the end (group commit: the version moves on once per batch) with the receipts of
/// its messages. Returns one outcome per item.
pub fn apply(
    tx: &mut dyn Transaction,
    batch: &[Work],
    step: &mut StepFn<'_>,
) -> Result<Vec<Outcome>> {
    let mut slots = read_batch_documents(tx, batch)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for work in batch {
        match work {
            Work::DeadLetter(letter) => {
                tx.insert_dead_letter(letter)?;
                outcomes.push(Outcome::Rejected {
                    reason: letter.reason.clone(),
                });
            }
            Work::Completion { gate, message } => {
                let slot = slots
                    .get_mut(&(gate.clone(), message.partition))
                    .ok_or_else(|| Error::Permanent("invariant: batch document read".into()))?;
                // The document is moved through the step, not cloned per message: a step
                // that rejects a message hands back the document it was given, and one that
                // applies it records the message (its `messages_seen`), so it changed.
                let had = slot.document.is_some();
                let out = step(slot.document.take(), gate, message);
                slot.receipts.extend(receipt(
                    &out.document,
                    &out.outcome,
                    gate,
                    message,
                    tx.now(),
                ));
                let rejected = matches!(out.outcome, Outcome::Rejected { .. });
                slot.dirty |= !rejected;
                if had || !rejected {
                    slot.document = Some(out.document);
                }
                carry_out(tx, &out.effects, message)?;
                outcomes.push(out.outcome);
            }
        }
    }
    for slot in slots.into_values() {
        if let Some(doc) = slot.document.filter(|_| slot.dirty) {
            store_document(tx, doc, slot.read_version)?;
        }
        if !slot.receipts.is_empty() {
            tx.add_receipts(&slot.receipts, RECEIPTS_KEPT)?;
        }
    }
    Ok(outcomes)
}

/// The receipt of `message` as the step judged it (`document` is the step's result); none
/// for a rejected message, which is a dead letter instead.
fn receipt(
    document: &Document,
    outcome: &Outcome,
    gate: &GateId,
    message: &CompletionMessage,
    applied_at: Timestamp,
) -> Option<CompletionReceipt> {
    if matches!(outcome, Outcome::Rejected { .. }) {
        return None;
    }
    let run = document
        .entries
        .get(&message.processor)
        .and_then(|e| e.runs.iter().find(|r| r.run_id == message.run_id));
    Some(CompletionReceipt {
        gate: gate.clone(),
        partition: message.partition,
        message_id: message.message_id.clone(),
        processor: message.processor.clone(),
        run_id: message.run_id.clone(),
        status: message.status,
        record_count: message.record_count,
        produced_at: message.produced_at,
        verdict: outcome.clone(),
        not_counted: run.is_some_and(|r| r.not_counted),
        applied_at,
    })
}

fn read_batch_documents(
    tx: &mut dyn Transaction,
    batch: &[Work],
) -> Result<BTreeMap<(GateId, Partition), Slot>> {
    let mut keys: Vec<(GateId, Partition)> = batch
        .iter()
        .filter_map(|w| match w {
            Work::Completion { gate, message } => Some((gate.clone(), message.partition)),
            Work::DeadLetter(_) => None,
        })
        .collect();
    keys.sort();
    keys.dedup();
    let mut slots = BTreeMap::new();
    for (gate, partition) in keys {
        let document = tx.document_for_update(&gate, partition)?;
        let read_version = document.as_ref().map(|d| d.version);
        let slot = Slot {
            document,
            read_version,
            dirty: false,
            receipts: Vec::new(),
        };
        slots.insert((gate, partition), slot);
    }
    Ok(slots)
}

/// Carries out a step's effects for `message`: trigger outbox rows and dead letters.
fn carry_out(
    tx: &mut dyn Transaction,
    effects: &[Effect],
    message: &CompletionMessage,
) -> Result<()> {
    for effect in effects {
        match effect {
            Effect::PublishTrigger(t) => tx.insert_outbox(&NewOutboxRow::for_trigger(t))?,
            Effect::DeadLetter { reason } => {
                tx.insert_dead_letter(&NewDeadLetter::for_rejected(message, reason))?
            }
        }
    }
    Ok(())
}

/// Rewrites one document with `edit` and writes the triggers it returns; returns the
/// document as stored afterwards.
pub fn edit_document(
    tx: &mut dyn Transaction,
    gate: &GateId,
    partition: Partition,
    edit: &mut EditFn<'_>,
) -> Result<Option<Document>> {
    let stored = tx.document_for_update(gate, partition)?;
    let version = stored.as_ref().map(|d| d.version);
    match edit(stored.clone()) {
        None => Ok(stored),
        Some((doc, triggers)) => {
            let written = store_document(tx, doc, version)?;
            for t in &triggers {
                tx.insert_outbox(&NewOutboxRow::for_trigger(t))?;
            }
            Ok(Some(written))
        }
    }
}

/// Writes a document over `expected_version` with the next version, asserting first that
/// the count written is the count derived (the pair of the step's own derivation).
pub fn store_document(
    tx: &mut dyn Transaction,
    mut doc: Document,
    expected_version: Option<u64>,
) -> Result<Document> {
    assert_eq!(
        doc.completed_count,
        doc.derived_count(),
        "invariant: completed_count is derived from entries"
    );
    doc.version = expected_version.map_or(1, |v| v + 1);
    let body = serde_json::to_string(&doc).map_err(|e| Error::Permanent(e.to_string()))?;
    if !tx.write_document(&doc, &body, expected_version)? {
        // A writer outside this discipline moved the version: the transaction is retried.
        return Err(Error::Retryable(format!(
            "document {}/{} changed concurrently",
            doc.gate, doc.partition
        )));
    }
    Ok(doc)
}

/// The fenced write: checks that the token is the live current lease (by the store's clock)
/// and not older than the newest the warehouse has seen, upserts the rows, removes the
/// partition's rows an earlier run wrote that this run does not, writes the completion's
/// outbox row, and ends the writing run — all in the caller's one transaction (G3, G4).
pub fn fenced_write(tx: &mut dyn Transaction, write: &FencedWrite<'_>) -> Result<WriteOutcome> {
    let now = tx.now();
    let current = tx.lease_for_write(write.processor, write.partition)?;
    if let Err(refusal) = lease::check_current(current.as_ref(), write.token, now) {
        return Ok(WriteOutcome::Fenced(refusal));
    }
    // The warehouse's own fence: redundant with the lease check while both live in one
    // database; it is what still holds if a lease row were lost or edited.
    let newest = tx.newest_fence(write.processor, write.partition)?;
    if let Some(newest) = newest.filter(|n| *n > write.token) {
        return Ok(WriteOutcome::Fenced(Refusal::StaleToken {
            presented: write.token,
            current: newest,
        }));
    }
    tx.set_fence(write.processor, write.partition, write.token)?;
    let inserted = tx.upsert_rows(write.table, write.rows, write.token)?;
    let removed = tx.remove_rows_before(write.table, write.partition, write.token)?;
    tx.insert_outbox(write.completion)?;
    if let Some((run_id, end)) = write.run {
        tx.end_running_run(run_id, end, now)?;
    }
    Ok(WriteOutcome::Written {
        rows: write.rows.len() as u64,
        inserted,
        removed,
    })
}

/// Records a landing batch, its line in the landing-batch history, and the runs it requests
/// in one transaction (G9: a landing is an event that starts its readers, and neither half
/// can be lost without the other).
pub fn record_landing(
    tx: &mut dyn Transaction,
    job: &str,
    partition: Partition,
    at: Timestamp,
    requests: &[PendingRequest],
) -> Result<u32> {
    // Staleness compares runs with when baton learned of the batch, by the store's clock:
    // the landing time a scraper reports may be in another clock, or in the future.
    let recorded_at = tx.now();
    let batch = tx.land(job, partition, at, recorded_at)?;
    let line = LandingBatch {
        job: job.to_owned(),
        partition,
        batch,
        landed_at: at,
        recorded_at,
    };
    tx.add_landing_batch(&line, LANDING_BATCHES_KEPT)?;
    for request in requests {
        tx.owe_run(request)?;
    }
    Ok(batch)
}

/// Marks `abandoned` every run still `running` whose lease no longer covers it
/// ([`lease::abandoned`]: expired unreleased, released, or taken over), with the reason in
/// its error; returns the runs marked, as they were before. Such a run can never write (the
/// fence refuses its token), so its process died. Idempotent: a run marked, or finished by
/// its own process meanwhile, is left alone.
pub fn abandon_runs(tx: &mut dyn Transaction) -> Result<Vec<RunRecord>> {
    let running = tx.running_runs()?;
    abandon(tx, running)
}

/// [`abandon_runs`] for one (processor, partition): what a new holder of its lease does
/// before it starts, so the run it took over from does not stay `running`.
pub fn abandon_runs_of(
    tx: &mut dyn Transaction,
    processor: &ProcessorName,
    partition: Partition,
) -> Result<Vec<RunRecord>> {
    let running = tx.running_runs_of(processor, partition)?;
    abandon(tx, running)
}

fn abandon(tx: &mut dyn Transaction, running: Vec<RunRecord>) -> Result<Vec<RunRecord>> {
    let now = tx.now();
    let mut marked = Vec::new();
    for run in running {
        let current = tx.lease_for_write(&run.processor, run.partition)?;
        let Some(why) = lease::abandoned(current.as_ref(), run.token, now) else {
            continue;
        };
        let end = RunEnd {
            status: RunStatus::Abandoned,
            rows_written: 0,
            duplicates_dropped: 0,
            error: Some(format!(
                "abandoned: its process stopped before finishing the run ({why})"
            )),
        };
        if tx.end_running_run(&run.run_id, &end, now)? {
            marked.push(run);
        }
    }
    Ok(marked)
}
