//! baton-ports: the seams between baton's logic and its backends.
//!
//! [`StateStore`] (completion documents, leases, runs, outbox, dead letters, landings and
//! the bounded histories of landing batches and completion receipts),
//! [`Warehouse`] (tables with primary keys, fenced upserts) and [`Bus`] (topics, consumer
//! groups, acks, redelivery, dead-lettering). Every backend implements them and passes
//! `baton-conformance`; the simulator's in-memory fakes implement the same traits.
//!
//! Invariant: the traits are synchronous and hold no policy. Time comes from the clock the
//! backend was built with (the store's clock, never a worker's); the rules come from
//! `baton-core`, passed in as the step function.
#![deny(missing_docs)]

pub mod consume;
pub mod engine;
pub mod kinds;
pub mod retention;
pub mod stored;
pub mod wake;

use baton_core::completion::{Document, Outcome};
use baton_core::config::TableSpec;
use baton_core::dead_letter::{self as letters, LetterState, REASON_CAP_BYTES, clip};
use baton_core::lease::{Lease, Refusal};
use baton_core::message::CompletionMessage;
use baton_core::model::{
    CompletionStatus, FenceToken, GateId, Partition, ProcessorName, Row, RunId,
};
use jiff::{SignedDuration, Timestamp};
pub use kinds::{OutboxKind, RequestKind, RunStatus};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
pub use wake::Wake;

/// A backend failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Worth retrying: busy, locked, serialization conflict, connection lost.
    #[error("backend temporarily unavailable: {0}")]
    Retryable(String),
    /// Not worth retrying: corrupt data, schema mismatch, a bug.
    #[error("backend error: {0}")]
    Permanent(String),
}

impl Error {
    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Retryable(_))
    }

    /// The same error, of the same kind, with `what` (the thing it happened to) said before
    /// its text: the kind's prefix ("backend error: ") is said once, not again inside.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        match self {
            Error::Retryable(m) => Error::Retryable(format!("{what}: {m}")),
            Error::Permanent(m) => Error::Permanent(format!("{what}: {m}")),
        }
    }
}

/// Results of backend calls.
pub type Result<T> = std::result::Result<T, Error>;

/// One unit of orchestrator work, applied in a batch inside one transaction.
#[derive(Debug, Clone)]
pub enum Work {
    /// Apply a completion to its gate's document.
    Completion {
        /// The gate.
        gate: GateId,
        /// The parsed message.
        message: CompletionMessage,
    },
    /// Record a message that could not be parsed.
    DeadLetter(NewDeadLetter),
}

/// A message for the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeadLetter {
    /// The topic it came from.
    pub topic: String,
    /// Its id on the bus, if known.
    pub message_id: Option<String>,
    /// The payload, byte for byte as received (it may not be UTF-8).
    pub payload: Vec<u8>,
    /// Why it was dead-lettered (capped at [`baton_core::dead_letter::REASON_CAP_BYTES`]).
    pub reason: String,
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its id in the store.
    pub id: i64,
    /// When it was recorded.
    pub recorded_at: Timestamp,
    /// What was recorded.
    #[serde(flatten)]
    pub letter: NewDeadLetter,
    /// Open, replayed or retired.
    pub state: LetterState,
    /// When it was replayed or retired.
    pub settled_at: Option<Timestamp>,
    /// The operator's note: the retire reason, or the replay's message id.
    pub note: Option<String>,
}

/// What [`StateStore::settle_dead_letter`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The letter moved; here it is as stored now.
    Done(DeadLetter),
    /// The letter stays as it is (already settled, or no retire reason).
    Refused(DeadLetter, letters::Refusal),
    /// No letter has this id.
    NotFound,
}

/// A row of the transactional outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOutboxRow {
    /// The topic to publish on.
    pub topic: String,
    /// The deterministic message id (the bus drops replays of it).
    pub message_id: String,
    /// What the row carries.
    pub kind: OutboxKind,
    /// The partition it concerns.
    pub partition: Partition,
    /// The payload (JSON).
    pub payload: String,
}

impl NewOutboxRow {
    /// The outbox row that carries a trigger (every backend writes triggers this way).
    pub fn for_trigger(trigger: &baton_core::completion::Trigger) -> Self {
        Self {
            topic: trigger.topic.clone(),
            message_id: trigger.message_id.clone(),
            kind: OutboxKind::Trigger,
            partition: trigger.partition,
            // A Trigger holds only strings, numbers and timestamps: it always serialises.
            payload: serde_json::to_string(trigger).unwrap_or_default(),
        }
    }
}

impl NewOutboxRow {
    /// The outbox row that carries a completion on its processor's `topic` (the runner's
    /// fenced write and failed runs, the simulator's workers).
    pub fn for_completion(topic: String, message: &CompletionMessage) -> Self {
        Self {
            topic,
            message_id: message.message_id.clone(),
            kind: OutboxKind::Completion,
            partition: message.partition,
            payload: message.to_json().to_string(),
        }
    }
}

impl NewDeadLetter {
    /// A letter for `payload` received on `topic`; a reason longer than
    /// [`baton_core::dead_letter::REASON_CAP_BYTES`] is cut (the payload keeps everything).
    pub fn new(topic: &str, message_id: Option<&str>, payload: &[u8], reason: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            message_id: message_id.map(str::to_owned),
            payload: payload.to_vec(),
            reason: clip(reason, REASON_CAP_BYTES).into_owned(),
        }
    }

    /// The dead letter for a completion the step rejected. The step does not know the
    /// topic, so it is empty: a replay publishes it to its gate's completion topic.
    pub fn for_rejected(message: &CompletionMessage, reason: &str) -> Self {
        Self::new(
            "",
            Some(&message.message_id),
            message.to_json().to_string().as_bytes(),
            reason,
        )
    }
}

/// An outbox row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRow {
    /// Its id (publish order).
    pub id: i64,
    /// When it was written.
    pub created_at: Timestamp,
    /// When the relay published it.
    pub published_at: Option<Timestamp>,
    /// What it carries.
    #[serde(flatten)]
    pub row: NewOutboxRow,
}

/// What to do when an acquire finds the lease held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHeld {
    /// Only report who holds it.
    Report,
    /// Record a follow-up request, atomically with the failed acquire, so that the holder
    /// runs once more after it releases: a request is never dropped.
    Coalesce,
}

/// The result of an acquire at the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The caller holds the lease.
    Granted(Lease),
    /// Someone else does.
    Held {
        /// The live lease.
        lease: Lease,
        /// Whether a follow-up run was recorded for the holder.
        follow_up_recorded: bool,
    },
}

/// The result of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// Released; `follow_up` says whether requests arrived meanwhile (taken: the caller
    /// must run once more).
    Released {
        /// Whether a coalesced follow-up run is owed.
        follow_up: bool,
    },
    /// Refused: the caller is not the current holder.
    Refused(Refusal),
}

/// A run of a processor for a partition, as recorded in run history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run.
    pub run_id: RunId,
    /// The processor.
    pub processor: ProcessorName,
    /// The partition.
    pub partition: Partition,
    /// Who ran it.
    pub holder: String,
    /// The lease token it ran under.
    pub token: FenceToken,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// Running, or how it ended.
    pub status: RunStatus,
    /// Rows written.
    pub rows_written: u64,
    /// Rows dropped by pre-write dedup.
    pub duplicates_dropped: u64,
    /// Why it failed.
    pub error: Option<String>,
}

impl RunRecord {
    /// How the run stands at `now`, given the lease of its (processor, partition) from
    /// `leases`: a run recorded `running` that its lease no longer covers is abandoned
    /// ([`baton_core::lease::abandoned`]) even before a pass marked it so, which lets
    /// read-only commands show it.
    pub fn status_at(&self, leases: &[Lease], now: Timestamp) -> RunStatus {
        if self.status != RunStatus::Running {
            return self.status;
        }
        let lease = leases
            .iter()
            .find(|l| l.processor == self.processor && l.partition == self.partition);
        match baton_core::lease::abandoned(lease, self.token, now) {
            Some(_) => RunStatus::Abandoned,
            None => RunStatus::Running,
        }
    }
}

/// How a run ended, for [`StateStore::finish_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// How it ended.
    pub status: RunStatus,
    /// Rows written.
    pub rows_written: u64,
    /// Rows dropped by dedup.
    pub duplicates_dropped: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// An upstream job's landing for a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landing {
    /// The job.
    pub job: String,
    /// The partition.
    pub partition: Partition,
    /// When it first landed (lateness is judged by this).
    pub landed_at: Timestamp,
    /// When baton recorded its latest batch, by the store's clock (staleness is judged by
    /// this).
    pub latest_at: Timestamp,
    /// How many batches have landed (the latest batch's sequence number).
    pub batches: u32,
}

/// One batch of an upstream job's landing for a partition, as its history keeps it (the
/// newest [`engine::LANDING_BATCHES_KEPT`] per (job, partition)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandingBatch {
    /// The job.
    pub job: String,
    /// The partition.
    pub partition: Partition,
    /// Its sequence number (1 for the first).
    pub batch: u32,
    /// When it landed, as the job reported it.
    pub landed_at: Timestamp,
    /// When baton recorded it, by the store's clock.
    pub recorded_at: Timestamp,
}

/// A completion message the consumer applied to a (gate, partition)'s document, with the
/// step's verdict on it, as the receipt history keeps it (the newest
/// [`engine::RECEIPTS_KEPT`] per (gate, partition)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionReceipt {
    /// The gate.
    pub gate: GateId,
    /// The partition.
    pub partition: Partition,
    /// The message's id.
    pub message_id: String,
    /// The processor that reported.
    pub processor: ProcessorName,
    /// Its run.
    pub run_id: RunId,
    /// The status it reported.
    pub status: CompletionStatus,
    /// The rows it reported.
    pub record_count: u64,
    /// When the run produced it.
    pub produced_at: Timestamp,
    /// What the step made of it (never `Rejected`: a rejected message is a dead letter).
    pub verdict: Outcome,
    /// The run is a `no_data` on a date its processor has work for: recorded, not counted.
    #[serde(default)]
    pub not_counted: bool,
    /// When the consumer applied it, by the store's clock.
    pub applied_at: Timestamp,
}

/// A run owed for a (processor, date): deferred until its inputs land, or a partial run to
/// redo when they land.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    /// The processor.
    pub processor: ProcessorName,
    /// The partition.
    pub partition: Partition,
    /// Why it is owed.
    pub kind: RequestKind,
    /// What it waits for.
    pub reason: String,
    /// When it was first recorded.
    pub since: Timestamp,
}

/// What the outbox holds that is not yet published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Rows not yet published.
    pub pending: u64,
    /// When the oldest of them was written.
    pub oldest: Option<Timestamp>,
}

/// A small operational record kept by key (an alert incident, an instance's heartbeat),
/// written with compare-and-set on its version so concurrent `serve` instances cannot both
/// win.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpsRecord {
    /// Its key, e.g. `alert/<policy>` or `instance/<name>`.
    pub key: String,
    /// Bumped on every write.
    pub version: i64,
    /// JSON.
    pub body: String,
    /// When it was last written, by the store's clock.
    pub updated_at: Timestamp,
}

/// Durable orchestrator state.
pub trait StateStore: engine::Transact + Send + Sync {
    /// Applies a batch in one transaction through [`engine::apply`]: for each completion,
    /// loads its document, runs `step`, writes the document (version + 1), the step's
    /// effects (trigger outbox rows, dead letters) and the message's receipt; records each
    /// dead letter. Returns one outcome per item.
    fn apply(&self, batch: &[Work], step: &mut engine::StepFn<'_>) -> Result<Vec<Outcome>> {
        engine::run(self, |tx| engine::apply(tx, batch, step))
    }
    /// Rewrites documents in one transaction each with their effects, for reconcile and
    /// forced re-triggers: `edit` receives the stored document (or `None`) and returns the
    /// new one and the triggers to write, or `None` to leave it.
    fn edit_document(
        &self,
        gate: &GateId,
        partition: Partition,
        edit: &mut engine::EditFn<'_>,
    ) -> Result<Option<Document>> {
        engine::run(self, |tx| engine::edit_document(tx, gate, partition, edit))
    }
    /// The document of a gate and partition.
    fn document(&self, gate: &GateId, partition: Partition) -> Result<Option<Document>>;
    /// The documents of a gate in a range of partitions, in date order.
    fn documents(&self, gate: &GateId, from: Partition, to: Partition) -> Result<Vec<Document>>;

    /// Takes the lease if it is free or expired (by the store's clock).
    fn acquire_lease(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        holder: &str,
        ttl: SignedDuration,
        on_held: OnHeld,
    ) -> Result<Acquired>;
    /// Extends a lease held with `token`.
    fn renew_lease(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        token: FenceToken,
        ttl: SignedDuration,
    ) -> Result<std::result::Result<Lease, Refusal>>;
    /// Releases a lease held with `token`, taking any coalesced follow-up request.
    fn release_lease(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        token: FenceToken,
    ) -> Result<Released>;
    /// All leases (live, expired and released).
    fn leases(&self) -> Result<Vec<Lease>>;

    /// Records a run's start.
    fn start_run(&self, run: &RunRecord) -> Result<()>;
    /// Records a run's end.
    fn finish_run(&self, run_id: &RunId, end: &RunEnd) -> Result<()>;
    /// Runs of a partition (all processors), in start order.
    fn runs(&self, partition: Partition) -> Result<Vec<RunRecord>>;
    /// Runs of the partitions in `[from, to]`, by partition and, within one, in start
    /// order: [`StateStore::runs`] of each date in one read (health and reconcile read a
    /// range at once).
    fn runs_between(&self, from: Partition, to: Partition) -> Result<Vec<RunRecord>>;
    /// Runs that finished at or after `since`, of every partition.
    fn runs_finished_since(&self, since: Timestamp) -> Result<Vec<RunRecord>>;
    /// Marks `abandoned` every run still `running` whose lease no longer covers it (its
    /// process died), through [`engine::abandon_runs`]; returns the runs marked.
    fn abandon_runs(&self) -> Result<Vec<RunRecord>> {
        engine::run(self, engine::abandon_runs)
    }
    /// [`StateStore::abandon_runs`] for one (processor, partition), through
    /// [`engine::abandon_runs_of`].
    fn abandon_runs_of(
        &self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Vec<RunRecord>> {
        engine::run(self, |tx| engine::abandon_runs_of(tx, processor, partition))
    }

    /// Records (or refreshes) the run owed for a (processor, date): one per pair, the newest
    /// kind and reason win. The first `since` is kept, except that a run baton requested
    /// ([`RequestKind::Requested`]) moves it to the request's time, so a run that started
    /// before the request does not clear it.
    fn record_request(&self, request: &PendingRequest) -> Result<()> {
        engine::run(self, |tx| tx.owe_run(request))
    }
    /// Every owed run, oldest first.
    fn pending_requests(&self) -> Result<Vec<PendingRequest>>;
    /// Forgets the owed run of a (processor, date) if it was recorded at or before
    /// `requested_by` (a run that started at that time has done it); a request recorded
    /// later is kept, so a landing during a run still gets its rerun.
    fn clear_request(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        requested_by: Timestamp,
    ) -> Result<()>;

    /// Adds a row to the outbox outside a data write (a failed run's completion, a
    /// hand-published message).
    fn enqueue(&self, row: &NewOutboxRow) -> Result<()>;
    /// Claims up to `limit` unpublished rows, oldest first, for `claim_for`: rows another
    /// relay claimed are skipped until its claim expires, so relays in several `serve`
    /// processes never publish a row twice per claim (a relay that dies mid-claim leaves its
    /// rows to the next claim, and the bus drops the replayed message id).
    fn claim_unpublished(&self, limit: usize, claim_for: SignedDuration) -> Result<Vec<OutboxRow>>;
    /// Marks rows published.
    fn mark_published(&self, ids: &[i64]) -> Result<()>;
    /// The relay's step: claims up to `limit` unpublished rows (as
    /// [`StateStore::claim_unpublished`] with `claim_for`), publishes each on `bus` under its
    /// message id and under every extra id `extra_ids` gives for it (a fault: an
    /// at-least-once producer's copies), and marks them published; returns how many rows.
    /// The default does the three in turn (a crash in between republishes the same ids,
    /// which the bus drops); a store whose database holds `bus` does them in one transaction.
    fn relay(
        &self,
        bus: &dyn Bus,
        limit: usize,
        claim_for: SignedDuration,
        extra_ids: &mut dyn FnMut(&OutboxRow) -> Vec<String>,
    ) -> Result<usize> {
        relay_apart(self, bus, limit, claim_for, extra_ids)
    }
    /// Outbox rows of a kind for a partition (published or not), oldest first.
    fn outbox_for(&self, kind: OutboxKind, partition: Partition) -> Result<Vec<OutboxRow>>;
    /// What is waiting in the outbox.
    fn backlog(&self) -> Result<Backlog>;

    /// Records a dead letter.
    fn dead_letter(&self, letter: &NewDeadLetter) -> Result<()>;
    /// All dead letters, oldest first.
    fn dead_letters(&self) -> Result<Vec<DeadLetter>>;
    /// One dead letter by id.
    fn dead_letter_by_id(&self, id: i64) -> Result<Option<DeadLetter>>;
    /// Moves an open letter to `state` (replayed or retired) with `note`, in one
    /// transaction, as [`baton_core::dead_letter::settle`] allows; a settled letter stays
    /// as it is (so two operators cannot both replay one letter's effect into the store).
    fn settle_dead_letter(&self, id: i64, state: LetterState, note: &str) -> Result<Settled>;

    /// The operational record under `key`.
    fn ops_record(&self, key: &str) -> Result<Option<OpsRecord>>;
    /// Writes `body` under `key` if the stored version is still `expected` (`None`: no
    /// record yet); returns whether it was written (false: another writer was first).
    fn put_ops_record(&self, key: &str, body: &str, expected: Option<i64>) -> Result<bool>;
    /// The operational records whose key starts with `prefix`, by key.
    fn ops_records(&self, prefix: &str) -> Result<Vec<OpsRecord>>;

    /// Records a batch of an upstream job's landing for a partition (its count and its line
    /// in the batch history), and the runs it requests, in one transaction (a landing can
    /// no more be lost than a completion); returns the batch's sequence number (1 for the
    /// first).
    fn record_landing(
        &self,
        job: &str,
        partition: Partition,
        at: Timestamp,
        requests: &[PendingRequest],
    ) -> Result<u32> {
        engine::run(self, |tx| {
            engine::record_landing(tx, job, partition, at, requests)
        })
    }
    /// Landings for a partition, one per job: first and latest batch, and how many.
    fn landings(&self, partition: Partition) -> Result<Vec<Landing>>;
    /// The landing batches a partition's history keeps, every job's, by job then batch.
    fn landing_batches(&self, partition: Partition) -> Result<Vec<LandingBatch>>;
    /// The completion receipts a partition's history keeps, every gate's, in the order
    /// they were applied.
    fn receipts(&self, partition: Partition) -> Result<Vec<CompletionReceipt>>;

    /// The orchestrator's consume ([`consume`]): takes up to `take.max` deliveries of the
    /// group, has `handler` sort them into work, applies the work (one transaction) and acks
    /// what the handler said to. The default fetches, applies, then acks
    /// ([`consume::consume_apart`]); a store whose database holds `take.bus` does all of it
    /// in one transaction.
    fn consume(
        &self,
        take: &consume::Take<'_>,
        handler: &mut dyn consume::ConsumeHandler,
    ) -> Result<consume::Consumed> {
        consume::consume_apart(self, take, handler)
    }
    /// Landings of the partitions in `[from, to]`, by partition and then job:
    /// [`StateStore::landings`] of each date in one read.
    fn landings_between(&self, from: Partition, to: Partition) -> Result<Vec<Landing>>;

    /// Retention: every run of the (processor, partition) pairs that have more than `keep`
    /// runs, by processor, partition and start order (ties in recording order), for
    /// [`retention::prune`] to judge.
    fn runs_beyond(&self, keep: usize) -> Result<Vec<RunRecord>>;
    /// Retention: removes the runs with these ids, in one transaction; a run still
    /// `running` is never removed. Returns how many were.
    fn delete_runs(&self, ids: &[RunId]) -> Result<u64>;
    /// Retention: removes up to `limit` relayed completion rows of the outbox published
    /// before `before`, oldest first, in one transaction (trigger rows and unpublished rows
    /// stay, as `baton_core::retention` says). Returns how many.
    fn prune_outbox(&self, before: Timestamp, limit: usize) -> Result<u64>;
    /// Retention: how many rows [`StateStore::prune_outbox`] would remove in all.
    fn prunable_outbox(&self, before: Timestamp) -> Result<u64>;
}

/// A fenced write: the rows of one (processor, partition), the token they were computed
/// under, and the completion to publish with them.
#[derive(Debug, Clone)]
pub struct FencedWrite<'a> {
    /// The table.
    pub table: &'a TableSpec,
    /// The processor writing.
    pub processor: &'a ProcessorName,
    /// The partition.
    pub partition: Partition,
    /// The lease token.
    pub token: FenceToken,
    /// The rows, already deduplicated on the primary key.
    pub rows: &'a [Row],
    /// The completion's outbox row, written in the same transaction.
    pub completion: &'a NewOutboxRow,
    /// The run that writes, ended as this says in the same transaction (when it is still
    /// `running`): a process killed after the commit leaves a finished run, never one
    /// that is `running` and later marked abandoned although its output was published.
    pub run: Option<(&'a RunId, &'a RunEnd)>,
}

/// The result of a fenced write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written: rows upserted, and how many of them were new.
    Written {
        /// Rows upserted.
        rows: u64,
        /// Of those, rows whose key was not in the table before.
        inserted: u64,
        /// Rows of an earlier run for this partition that the new run no longer produces,
        /// removed.
        removed: u64,
    },
    /// Refused: the token is not the live current lease; nothing was written.
    Fenced(Refusal),
}

/// Tables with primary keys, written only through fenced upserts.
pub trait Warehouse: engine::Transact + Send + Sync {
    /// Creates the table if missing (columns: the primary key, the partition column, the
    /// row as JSON, the writer's token).
    fn ensure_table(&self, table: &TableSpec) -> Result<()>;
    /// In one transaction: checks the lease (`token` current and live by the store's
    /// clock), upserts the rows on the primary key, removes the partition's rows an earlier
    /// run wrote that this run does not, writes the completion's outbox row, and ends the
    /// writing run (`FencedWrite::run`).
    fn fenced_write(&self, write: &FencedWrite<'_>) -> Result<WriteOutcome> {
        engine::run(self, |tx| engine::fenced_write(tx, write))
    }
    /// Lands raw rows (an upstream job's data) with a plain upsert.
    fn land(&self, table: &TableSpec, rows: &[Row]) -> Result<u64>;
    /// Rows of a table with the partition column in `[from, to]`.
    fn read(&self, table: &TableSpec, from: Partition, to: Partition) -> Result<Vec<Row>>;
    /// Rows of a table for one partition.
    fn row_count(&self, table: &TableSpec, partition: Partition) -> Result<u64>;
    /// Rows of a table for one partition, and of those the rows where `column` is present
    /// and not null (equal to the rows when `column` is `None`), for quality checks.
    fn measure(
        &self,
        table: &TableSpec,
        partition: Partition,
        column: Option<&str>,
    ) -> Result<(u64, u64)>;
    /// The distinct values of `column` in a table's rows for one partition, for coverage
    /// checks, rendered as text: a string as it is, any other value (number, bool, array,
    /// object) as its JSON text; rows where the column is missing or null contribute none.
    /// `column` is an identifier (config validates it).
    fn distinct_values(
        &self,
        table: &TableSpec,
        partition: Partition,
        column: &str,
    ) -> Result<BTreeSet<String>>;
    /// Rows for one partition beyond the first per primary key (0 when the key holds).
    fn duplicate_rows(&self, table: &TableSpec, partition: Partition) -> Result<u64>;
    /// [`Warehouse::row_count`] of every partition in `[from, to]` in one read (`GROUP BY`
    /// the partition); a partition without rows is absent.
    fn row_counts(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
    ) -> Result<BTreeMap<Partition, u64>>;
    /// [`Warehouse::duplicate_rows`] of every partition in `[from, to]` in one read; a
    /// partition without duplicates is absent.
    fn duplicate_rows_between(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
    ) -> Result<BTreeMap<Partition, u64>>;
}

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The bus's sequence number for the message.
    pub seq: i64,
    /// The message id it was published with.
    pub message_id: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// Which delivery this is (1 for the first).
    pub attempt: u32,
}

/// A message to publish, for [`Bus::publish_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The message id (a replay of it is dropped).
    pub message_id: &'a str,
    /// The payload.
    pub payload: &'a [u8],
}

/// The relay of a store whose bus is another system: claim, publish, mark (the default of
/// [`StateStore::relay`]).
pub fn relay_apart<S: StateStore + ?Sized>(
    store: &S,
    bus: &dyn Bus,
    limit: usize,
    claim_for: SignedDuration,
    extra_ids: &mut dyn FnMut(&OutboxRow) -> Vec<String>,
) -> Result<usize> {
    let rows = store.claim_unpublished(limit, claim_for)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let extra: Vec<Vec<String>> = rows.iter().map(extra_ids).collect();
    bus.publish_batch(&outgoing(&rows, &extra))?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    store.mark_published(&ids)?;
    Ok(rows.len())
}

/// The messages that publish `rows`, each followed by its copies under the ids `extra`
/// gives for it (one list per row).
pub fn outgoing<'a>(rows: &'a [OutboxRow], extra: &'a [Vec<String>]) -> Vec<Outgoing<'a>> {
    let mut out = Vec::with_capacity(rows.len());
    for (row, ids) in rows.iter().zip(extra) {
        let message = |message_id| Outgoing {
            topic: &row.row.topic,
            message_id,
            payload: row.row.payload.as_bytes(),
        };
        out.push(message(&row.row.message_id));
        out.extend(ids.iter().map(|id| message(id)));
    }
    out
}

/// Whether a publish was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Stored.
    New,
    /// Dropped: a message with this id was already published to the topic.
    Duplicate,
}

/// Settings of a consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSettings {
    /// A delivery not acked within this is delivered again.
    pub ack_wait: SignedDuration,
}

/// Durable topics with consumer groups (at-least-once).
pub trait Bus: Send + Sync {
    /// Publishes; a message id already on the topic is dropped.
    fn publish(&self, topic: &str, message_id: &str, payload: &[u8]) -> Result<Published>;
    /// Publishes several messages, in order, each as [`Bus::publish`] would (the relay's
    /// batch); a backend may write them in one transaction or have them in flight together.
    /// On an error, any prefix of them may have been published (a retry republishes the
    /// same ids, which the bus drops).
    fn publish_batch(&self, messages: &[Outgoing<'_>]) -> Result<Vec<Published>> {
        messages
            .iter()
            .map(|m| self.publish(m.topic, m.message_id, m.payload))
            .collect()
    }
    /// Up to `max` messages for the group, oldest first: new ones, and ones whose ack wait
    /// passed (with `attempt` counting deliveries). The consumer dead-letters a message
    /// past its max deliveries; the bus only redelivers.
    fn fetch(
        &self,
        topic: &str,
        group: &str,
        max: usize,
        settings: GroupSettings,
    ) -> Result<Vec<Delivery>>;
    /// Acknowledges deliveries: they are not delivered again.
    fn ack(&self, topic: &str, group: &str, seqs: &[i64]) -> Result<()>;
    /// Messages the group has not acked (including ones not yet fetched).
    fn pending(&self, topic: &str, group: &str) -> Result<u64>;
    /// Messages published on a topic at or after `since`.
    fn published_since(&self, topic: &str, since: Timestamp) -> Result<u64>;
    /// Every message on a topic, for inspection (`status`, tests).
    fn messages(&self, topic: &str) -> Result<Vec<Delivery>>;
    /// Retention: removes up to `limit` messages, oldest first, that every consumer group of
    /// their topic has passed (taken, with no delivery outstanding; a topic without a group
    /// keeps all) and that were published before `before`, in one transaction. `None`: this
    /// bus keeps its own retention (NATS JetStream's stream limits).
    fn prune_consumed(&self, before: Timestamp, limit: usize) -> Result<Option<u64>> {
        let _ = (before, limit);
        Ok(None)
    }
    /// Retention: how many messages [`Bus::prune_consumed`] would remove in all (`None` as
    /// there).
    fn prunable_consumed(&self, before: Timestamp) -> Result<Option<u64>> {
        let _ = before;
        Ok(None)
    }
}
