//! The in-memory backend: the simulator's only fake, behind the same traits as SQLite and
//! held to the same conformance suite. Test-only switches make it wrong on purpose (the
//! canaries, one per guarantee): a stored count incremented per message, writes without the
//! fence, each trigger row written twice, a fenced write that commits its rows without the
//! completion's outbox row, a table that keeps both rows of a repeated key, a store that
//! loses the record of the generation the next phase ran for, and wrong rules wrapped
//! around the orchestrator step the consumer passes to `StateStore::apply` (see
//! `canary.rs`).
//!
//! It also keeps a log of the completions its `apply` stepped, in order, with the store's
//! time: the simulator's reference model reads that sequence (an input, not a decision).

use baton_core::clock::Clock;
use baton_core::completion::Document;
use baton_core::completion::Outcome;
use baton_core::config::{Pipeline, TableSpec};
use baton_core::dead_letter::LetterState;
use baton_core::dedup::key_of;
use baton_core::lease::{self, Lease, Refusal};
use baton_core::message::CompletionMessage;
use baton_core::model::{FenceToken, GateId, Partition, ProcessorName, Row, RunId};
use baton_core::retention::RetentionPolicy;
use baton_ports::engine;
use baton_ports::stored::partition_of;
use baton_ports::wake::{self, Signal, Wake};
use baton_ports::{
    Acquired, Backlog, Bus, CompletionReceipt, DeadLetter, Delivery, Error, FencedWrite,
    GroupSettings, Landing, LandingBatch, NewDeadLetter, NewOutboxRow, OnHeld, OpsRecord,
    OutboxKind, OutboxRow, PendingRequest, Published, Released, Result, RunEnd, RunRecord, Settled,
    StateStore, Warehouse, Work, WriteOutcome,
};
use baton_ports::{RequestKind, RunStatus};
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Deliberate bugs, for proving the simulator catches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Canary {
    /// No bug.
    #[default]
    None,
    /// The stored count is incremented per message (the original tracker's bug).
    CountPerMessage,
    /// Writes skip the lease and fence check.
    NoFence,
    /// Each trigger outbox row is written twice (G2).
    TriggerWrittenTwice,
    /// An entry's best run prefers a failed run over a successful one (G1).
    BestRunPrefersFailed,
    /// The critical-plus-majority rule ignores the critical processors (G2).
    CriticalIgnored,
    /// "All complete" fires when all but one expected processor are complete (G2).
    AllButOneIsAll,
    /// Digests are stripped from completions, so changed output never re-triggers (G9).
    DigestStripped,
    /// The fenced write commits the rows without the completion's outbox row (G3).
    CompletionWithoutOutbox,
    /// Dedup keeps both rows of a repeated key, and the table keeps them too (G5).
    DuplicateKeyKept,
    /// The generation the next phase ran for is never kept, so a trigger delivered again
    /// runs the next phase again (G10).
    NextPhaseForgotten,
    /// A reconcile repair writes its document but not the trigger rows it fired (G2).
    RepairWithoutTriggers,
}

impl Canary {
    /// Every canary with its command-line name (`baton-sim --canary NAME`).
    pub const ALL: [(&'static str, Canary); 11] = [
        ("count-per-message", Canary::CountPerMessage),
        ("no-fence", Canary::NoFence),
        ("trigger-written-twice", Canary::TriggerWrittenTwice),
        ("best-run-prefers-failed", Canary::BestRunPrefersFailed),
        ("critical-ignored", Canary::CriticalIgnored),
        ("all-but-one-is-all", Canary::AllButOneIsAll),
        ("digest-stripped", Canary::DigestStripped),
        ("completion-without-outbox", Canary::CompletionWithoutOutbox),
        ("duplicate-key-kept", Canary::DuplicateKeyKept),
        ("next-phase-forgotten", Canary::NextPhaseForgotten),
        ("repair-without-triggers", Canary::RepairWithoutTriggers),
    ];
    /// The canary named `name`.
    pub fn parse(name: &str) -> Option<Canary> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }
}

#[derive(Default)]
struct LeaseRow {
    lease: Option<Lease>,
    follow_up: bool,
}

#[derive(Default)]
struct TableData {
    spec: Option<TableSpec>,
    /// Primary key -> (partition, row, token).
    rows: BTreeMap<String, (String, Row, u64)>,
}

#[derive(Default)]
struct GroupState {
    cursor: i64,
    /// seq -> (attempts, visible_at)
    inflight: BTreeMap<i64, (u32, Timestamp)>,
}

#[derive(Default)]
struct State {
    documents: BTreeMap<(GateId, Partition), Document>,
    leases: BTreeMap<(ProcessorName, Partition), LeaseRow>,
    fences: BTreeMap<(ProcessorName, Partition), u64>,
    runs: Vec<RunRecord>,
    outbox: Vec<OutboxRow>,
    /// The last outbox id and bus seq given (retention removes rows, so not a length).
    last_outbox_id: i64,
    last_seq: i64,
    dead_letters: Vec<DeadLetter>,
    /// (job, date) -> (first, latest, batches).
    landings: BTreeMap<(String, Partition), (Timestamp, Timestamp, u32)>,
    /// (date, job, batch) -> the batch, as the landing-batch history keeps it.
    landing_batches: BTreeMap<(Partition, String, u32), LandingBatch>,
    /// (date, gate) -> its receipt history, oldest first, numbered in the order applied.
    receipts: BTreeMap<(Partition, GateId), VecDeque<(u64, CompletionReceipt)>>,
    /// The number of the last receipt added.
    receipt_seq: u64,
    tables: BTreeMap<String, TableData>,
    messages: Vec<(String, Delivery, Timestamp)>,
    requests: BTreeMap<(ProcessorName, Partition), PendingRequest>,
    claims: BTreeMap<i64, Timestamp>,
    ids: BTreeSet<(String, String)>,
    groups: BTreeMap<(String, String), GroupState>,
    ops: BTreeMap<String, OpsRecord>,
    /// Completions stepped by `apply`, in order, with the store's time (for the model).
    applied: Vec<(Timestamp, CompletionMessage)>,
}

/// All three ports in memory.
pub struct MemBackend {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    canary: Canary,
    /// The pipeline whose gates the step canaries bend (absent: no step canary can fire).
    pipeline: Option<Arc<Pipeline>>,
    /// Raised by every write that creates work (the wake port).
    signal: Signal,
}

impl MemBackend {
    /// A correct in-memory backend.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_canary(clock, Canary::None)
    }
    /// A backend with a deliberate bug.
    pub fn with_canary(clock: Arc<dyn Clock>, canary: Canary) -> Self {
        Self {
            state: Mutex::new(State::default()),
            clock,
            canary,
            pipeline: None,
            signal: Signal::default(),
        }
    }
    /// A backend with a deliberate bug that may bend the step of `pipeline`'s gates.
    pub fn with_pipeline_canary(
        clock: Arc<dyn Clock>,
        canary: Canary,
        pipeline: Arc<Pipeline>,
    ) -> Self {
        Self {
            pipeline: Some(pipeline),
            ..Self::with_canary(clock, canary)
        }
    }
    /// Takes the log of completions `apply` stepped since the last call, oldest first.
    pub fn take_applied(&self) -> Vec<(Timestamp, CompletionMessage)> {
        std::mem::take(&mut self.lock().applied)
    }
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The current lease record (for the simulator's G4 checker).
    pub fn lease(&self, processor: &ProcessorName, partition: Partition) -> Option<Lease> {
        self.lock()
            .leases
            .get(&(processor.clone(), partition))
            .and_then(|r| r.lease.clone())
    }
    /// The tokens of the rows of a table for a partition (for the G5 checker).
    pub fn row_tokens(&self, table: &str, partition: Partition) -> Vec<u64> {
        let day = partition.to_string();
        self.lock()
            .tables
            .get(table)
            .map(|t| {
                t.rows
                    .values()
                    .filter(|(p, _, _)| *p == day)
                    .map(|(_, _, tok)| *tok)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn push_outbox(s: &mut State, row: &NewOutboxRow, now: Timestamp) {
    s.last_outbox_id += 1;
    let id = s.last_outbox_id;
    s.outbox.push(OutboxRow {
        id,
        created_at: now,
        published_at: None,
        row: row.clone(),
    });
}

fn push_dead_letter(s: &mut State, letter: &NewDeadLetter, now: Timestamp) {
    let id = s.dead_letters.len() as i64 + 1;
    s.dead_letters.push(DeadLetter {
        id,
        recorded_at: now,
        letter: letter.clone(),
        state: LetterState::Open,
        settled_at: None,
        note: None,
    });
}

/// An in-memory transaction: the engine works on the state under the backend's lock.
///
/// It needs no rollback: the lock is held from the first read to the last write, and no
/// operation fails after changing anything (`upsert` checks every row before it writes).
struct MemTxn<'a> {
    state: &'a mut State,
    now: Timestamp,
    canary: Canary,
    signal: &'a Signal,
}

impl engine::Transaction for MemTxn<'_> {
    fn now(&self) -> Timestamp {
        self.now
    }
    fn running_runs(&mut self) -> Result<Vec<RunRecord>> {
        let mut runs: Vec<RunRecord> = (self.state.runs.iter())
            .filter(|r| r.status == baton_ports::RunStatus::Running)
            .cloned()
            .collect();
        runs.sort_by_key(|r| r.started_at);
        Ok(runs)
    }
    fn running_runs_of(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Vec<RunRecord>> {
        let runs = self.running_runs()?;
        Ok(runs
            .into_iter()
            .filter(|r| &r.processor == processor && r.partition == partition)
            .collect())
    }
    fn end_running_run(
        &mut self,
        run_id: &RunId,
        end: &RunEnd,
        finished_at: Timestamp,
    ) -> Result<bool> {
        let run = (self.state.runs.iter_mut())
            .find(|r| &r.run_id == run_id && r.status == baton_ports::RunStatus::Running);
        let Some(r) = run else {
            return Ok(false);
        };
        r.finished_at = Some(finished_at);
        r.status = end.status;
        r.rows_written = end.rows_written;
        r.duplicates_dropped = end.duplicates_dropped;
        r.error = end.error.clone();
        Ok(true)
    }
    fn document_for_update(
        &mut self,
        gate: &GateId,
        partition: Partition,
    ) -> Result<Option<Document>> {
        Ok(self
            .state
            .documents
            .get(&(gate.clone(), partition))
            .cloned())
    }
    fn write_document(
        &mut self,
        doc: &Document,
        _body: &str,
        expected: Option<u64>,
    ) -> Result<bool> {
        let key = (doc.gate.clone(), doc.partition);
        let stored = self.state.documents.get(&key);
        if stored.map(|d| d.version) != expected {
            return Ok(false);
        }
        let mut doc = doc.clone();
        if self.canary == Canary::CountPerMessage {
            // The canary: a store that increments its count per write instead of keeping
            // the derived one (the original tracker's bug).
            doc.completed_count = stored.map_or(0, |d| d.completed_count) + 1;
        }
        self.state.documents.insert(key, doc);
        Ok(true)
    }
    fn insert_outbox(&mut self, row: &NewOutboxRow) -> Result<()> {
        self.signal.raise(wake::LOCAL);
        if self.canary == Canary::CompletionWithoutOutbox && row.kind == OutboxKind::Completion {
            // The canary: the completion written with data is lost in the transaction
            // (the original pipeline published it after the commit, and a crash lost it).
            return Ok(());
        }
        push_outbox(self.state, row, self.now);
        if self.canary == Canary::TriggerWrittenTwice && row.kind == OutboxKind::Trigger {
            // The canary: a store that writes the trigger row twice (a retried insert
            // without the deterministic id as key).
            push_outbox(self.state, row, self.now);
        }
        Ok(())
    }
    fn insert_dead_letter(&mut self, letter: &NewDeadLetter) -> Result<()> {
        push_dead_letter(self.state, letter, self.now);
        Ok(())
    }
    fn lease_for_write(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Option<Lease>> {
        let key = (processor.clone(), partition);
        Ok(self.state.leases.get(&key).and_then(|r| r.lease.clone()))
    }
    fn newest_fence(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Option<FenceToken>> {
        let key = (processor.clone(), partition);
        Ok(self.state.fences.get(&key).map(|t| FenceToken::new(*t)))
    }
    fn set_fence(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
        token: FenceToken,
    ) -> Result<()> {
        self.state
            .fences
            .insert((processor.clone(), partition), token.get());
        Ok(())
    }
    fn upsert_rows(&mut self, table: &TableSpec, rows: &[Row], token: FenceToken) -> Result<u64> {
        let data = self.state.tables.entry(table.name.clone()).or_default();
        let keep_repeats = self.canary == Canary::DuplicateKeyKept;
        upsert(data, table, rows, token.get(), keep_repeats)
    }
    fn land(
        &mut self,
        job: &str,
        partition: Partition,
        at: Timestamp,
        recorded_at: Timestamp,
    ) -> Result<u32> {
        let entry = self
            .state
            .landings
            .entry((job.to_owned(), partition))
            .or_insert((at, recorded_at, 0));
        entry.1 = entry.1.max(recorded_at);
        entry.2 += 1;
        self.signal.raise(wake::LOCAL);
        Ok(entry.2)
    }
    fn add_landing_batch(&mut self, batch: &LandingBatch, keep: u32) -> Result<()> {
        let key = (batch.partition, batch.job.clone(), batch.batch);
        self.state.landing_batches.insert(key, batch.clone());
        let below = batch.batch.saturating_sub(keep);
        self.state
            .landing_batches
            .retain(|(d, job, n), _| !(*d == batch.partition && *job == batch.job && *n <= below));
        Ok(())
    }
    fn add_receipts(&mut self, receipts: &[CompletionReceipt], keep: u32) -> Result<()> {
        for r in receipts {
            self.state.receipt_seq += 1;
            let kept = (self.state.receipts)
                .entry((r.partition, r.gate.clone()))
                .or_default();
            kept.push_back((self.state.receipt_seq, r.clone()));
            while kept.len() > keep as usize {
                kept.pop_front();
            }
        }
        Ok(())
    }
    fn owe_run(&mut self, request: &PendingRequest) -> Result<()> {
        let key = (request.processor.clone(), request.partition);
        let since = match self.state.requests.get(&key) {
            None => request.since,
            Some(old) if request.kind == RequestKind::Requested => old.since.max(request.since),
            Some(old) => old.since,
        };
        let request = PendingRequest {
            since,
            ..request.clone()
        };
        self.state.requests.insert(key, request);
        self.signal.raise(wake::LOCAL);
        Ok(())
    }
    fn remove_rows_before(
        &mut self,
        table: &TableSpec,
        partition: Partition,
        token: FenceToken,
    ) -> Result<u64> {
        let day = partition.to_string();
        let data = self.state.tables.entry(table.name.clone()).or_default();
        let before = data.rows.len();
        data.rows
            .retain(|_, (p, _, t)| !(*p == day && *t < token.get()));
        Ok((before - data.rows.len()) as u64)
    }
}

impl engine::Transact for MemBackend {
    fn transact(
        &self,
        work: &mut dyn FnMut(&mut dyn engine::Transaction) -> Result<()>,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut state = self.lock();
        work(&mut MemTxn {
            state: &mut state,
            now,
            canary: self.canary,
            signal: &self.signal,
        })
    }
}

impl MemBackend {
    /// The canary's write: rows and the completion, with no lease or fence check and
    /// nothing removed.
    fn unfenced_write(&self, write: &FencedWrite<'_>) -> Result<WriteOutcome> {
        engine::run(self, |tx| {
            let inserted = tx.upsert_rows(write.table, write.rows, write.token)?;
            tx.insert_outbox(write.completion)?;
            Ok(WriteOutcome::Written {
                rows: write.rows.len() as u64,
                inserted,
                removed: 0,
            })
        })
    }
}

impl StateStore for MemBackend {
    fn apply(&self, batch: &[Work], step: &mut engine::StepFn<'_>) -> Result<Vec<Outcome>> {
        let now = self.clock.now();
        // What the step canaries need to bend the decision as a wrong rule would: the
        // gates, and the processors with a run owed (read before the transaction, as the
        // consumer does).
        let owed: Vec<PendingRequest> = self.lock().requests.values().cloned().collect();
        let canary = self.canary;
        let pipeline = self.pipeline.clone();
        let mut log = Vec::new();
        let outcomes = engine::run(self, |tx| {
            log.clear();
            engine::apply(tx, batch, &mut |doc, gate, message| {
                log.push((now, message.clone()));
                match pipeline.as_ref().and_then(|p| p.gate(gate.as_str())) {
                    Some(g) => {
                        let bend = crate::canary::Bend {
                            canary,
                            gate: g,
                            owed: &owed,
                            now,
                        };
                        bend.step(doc, gate, message, step)
                    }
                    None => step(doc, gate, message),
                }
            })
        })?;
        self.lock().applied.extend(log);
        Ok(outcomes)
    }

    fn edit_document(
        &self,
        gate: &GateId,
        partition: Partition,
        edit: &mut engine::EditFn<'_>,
    ) -> Result<Option<Document>> {
        let owed: Vec<PendingRequest> = self.lock().requests.values().cloned().collect();
        let now = self.clock.now();
        let pipeline = self.pipeline.clone();
        let Some(g) = pipeline.as_ref().and_then(|p| p.gate(gate.as_str())) else {
            return engine::run(self, |tx| engine::edit_document(tx, gate, partition, edit));
        };
        let bend = crate::canary::Bend {
            canary: self.canary,
            gate: g,
            owed: &owed,
            now,
        };
        let mut bent = |doc: Option<Document>| {
            let (mut document, mut triggers) = edit(doc)?;
            if self.canary == Canary::RepairWithoutTriggers {
                // The bug: the edited document is written, its triggers are dropped.
                triggers.clear();
            }
            bend.repair(&mut document, &mut triggers);
            Some((document, triggers))
        };
        engine::run(self, |tx| {
            engine::edit_document(tx, gate, partition, &mut bent)
        })
    }

    fn document(&self, gate: &GateId, partition: Partition) -> Result<Option<Document>> {
        Ok(self
            .lock()
            .documents
            .get(&(gate.clone(), partition))
            .cloned())
    }

    fn documents(&self, gate: &GateId, from: Partition, to: Partition) -> Result<Vec<Document>> {
        Ok(self
            .lock()
            .documents
            .iter()
            .filter(|((g, p), _)| g == gate && *p >= from && *p <= to)
            .map(|(_, d)| d.clone())
            .collect())
    }

    fn acquire_lease(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        holder: &str,
        ttl: SignedDuration,
        on_held: OnHeld,
    ) -> Result<Acquired> {
        let now = self.clock.now();
        let mut s = self.lock();
        let row = s.leases.entry((processor.clone(), partition)).or_default();
        match lease::acquire(row.lease.as_ref(), processor, partition, holder, now, ttl) {
            lease::Acquire::Granted(l) => {
                row.lease = Some(l.clone());
                row.follow_up = false;
                Ok(Acquired::Granted(l))
            }
            lease::Acquire::Held(l) => {
                let recorded = on_held == OnHeld::Coalesce;
                row.follow_up |= recorded;
                Ok(Acquired::Held {
                    lease: l,
                    follow_up_recorded: recorded,
                })
            }
        }
    }

    fn renew_lease(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        token: FenceToken,
        ttl: SignedDuration,
    ) -> Result<std::result::Result<Lease, Refusal>> {
        let now = self.clock.now();
        let mut s = self.lock();
        let row = s.leases.entry((processor.clone(), partition)).or_default();
        Ok(lease::renew(row.lease.as_ref(), token, now, ttl)
            .inspect(|l| row.lease = Some(l.clone())))
    }

    fn release_lease(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        token: FenceToken,
    ) -> Result<Released> {
        let mut s = self.lock();
        let row = s.leases.entry((processor.clone(), partition)).or_default();
        match lease::release(row.lease.as_ref(), token) {
            Ok(l) => {
                row.lease = Some(l);
                let follow_up = std::mem::take(&mut row.follow_up);
                Ok(Released::Released { follow_up })
            }
            Err(r) => Ok(Released::Refused(r)),
        }
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        Ok(self
            .lock()
            .leases
            .values()
            .filter_map(|r| r.lease.clone())
            .collect())
    }

    fn start_run(&self, run: &RunRecord) -> Result<()> {
        self.lock().runs.push(run.clone());
        Ok(())
    }

    fn finish_run(&self, run_id: &RunId, end: &RunEnd) -> Result<()> {
        let now = self.clock.now();
        let mut s = self.lock();
        if let Some(r) = s.runs.iter_mut().find(|r| &r.run_id == run_id) {
            r.finished_at = Some(now);
            r.status = end.status;
            r.rows_written = end.rows_written;
            r.duplicates_dropped = end.duplicates_dropped;
            r.error = end.error.clone();
        }
        Ok(())
    }

    fn runs(&self, partition: Partition) -> Result<Vec<RunRecord>> {
        Ok(self
            .lock()
            .runs
            .iter()
            .filter(|r| r.partition == partition)
            .cloned()
            .collect())
    }

    fn runs_between(&self, from: Partition, to: Partition) -> Result<Vec<RunRecord>> {
        let mut runs: Vec<RunRecord> = self
            .lock()
            .runs
            .iter()
            .filter(|r| r.partition >= from && r.partition <= to)
            .cloned()
            .collect();
        // Stable: within a date, the order `runs` gives.
        runs.sort_by_key(|r| r.partition);
        Ok(runs)
    }

    fn runs_finished_since(&self, since: Timestamp) -> Result<Vec<RunRecord>> {
        let mut runs: Vec<RunRecord> = self
            .lock()
            .runs
            .iter()
            .filter(|r| r.finished_at.is_some_and(|f| f >= since))
            .cloned()
            .collect();
        runs.sort_by_key(|r| r.finished_at);
        Ok(runs)
    }

    fn pending_requests(&self) -> Result<Vec<PendingRequest>> {
        let mut out: Vec<PendingRequest> = self.lock().requests.values().cloned().collect();
        out.sort_by(|a, b| {
            (a.since, a.partition, &a.processor).cmp(&(b.since, b.partition, &b.processor))
        });
        Ok(out)
    }

    fn clear_request(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        requested_by: Timestamp,
    ) -> Result<()> {
        let mut state = self.lock();
        let key = (processor.clone(), partition);
        if state
            .requests
            .get(&key)
            .is_some_and(|r| r.since <= requested_by)
        {
            state.requests.remove(&key);
        }
        Ok(())
    }

    fn enqueue(&self, row: &NewOutboxRow) -> Result<()> {
        let now = self.clock.now();
        push_outbox(&mut self.lock(), row, now);
        self.signal.raise(wake::LOCAL);
        Ok(())
    }

    fn claim_unpublished(&self, limit: usize, claim_for: SignedDuration) -> Result<Vec<OutboxRow>> {
        let now = self.clock.now();
        let until = now.checked_add(claim_for).unwrap_or(now);
        let mut s = self.lock();
        let ids: Vec<i64> = s
            .outbox
            .iter()
            .filter(|r| r.published_at.is_none() && s.claims.get(&r.id).is_none_or(|c| *c <= now))
            .take(limit)
            .map(|r| r.id)
            .collect();
        for id in &ids {
            s.claims.insert(*id, until);
        }
        Ok(s.outbox
            .iter()
            .filter(|r| ids.contains(&r.id))
            .cloned()
            .collect())
    }

    fn mark_published(&self, ids: &[i64]) -> Result<()> {
        let now = self.clock.now();
        let mut s = self.lock();
        for r in s
            .outbox
            .iter_mut()
            .filter(|r| ids.contains(&r.id) && r.published_at.is_none())
        {
            r.published_at = Some(now);
        }
        Ok(())
    }

    fn outbox_for(
        &self,
        kind: baton_ports::OutboxKind,
        partition: Partition,
    ) -> Result<Vec<OutboxRow>> {
        Ok(self
            .lock()
            .outbox
            .iter()
            .filter(|r| r.row.kind == kind && r.row.partition == partition)
            .cloned()
            .collect())
    }

    fn backlog(&self) -> Result<Backlog> {
        let s = self.lock();
        let pending: Vec<&OutboxRow> = s
            .outbox
            .iter()
            .filter(|r| r.published_at.is_none())
            .collect();
        Ok(Backlog {
            pending: pending.len() as u64,
            oldest: pending.iter().map(|r| r.created_at).min(),
        })
    }

    fn dead_letter(&self, letter: &NewDeadLetter) -> Result<()> {
        let now = self.clock.now();
        push_dead_letter(&mut self.lock(), letter, now);
        Ok(())
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        Ok(self.lock().dead_letters.clone())
    }

    fn dead_letter_by_id(&self, id: i64) -> Result<Option<DeadLetter>> {
        Ok(self
            .lock()
            .dead_letters
            .iter()
            .find(|l| l.id == id)
            .cloned())
    }

    fn settle_dead_letter(&self, id: i64, state: LetterState, note: &str) -> Result<Settled> {
        let now = self.clock.now();
        let mut s = self.lock();
        let Some(slot) = s.dead_letters.iter_mut().find(|l| l.id == id) else {
            return Ok(Settled::NotFound);
        };
        let answer = baton_ports::stored::settle_decision(Some(slot.clone()), state, note, now);
        if let Settled::Done(letter) = &answer {
            *slot = letter.clone();
        }
        Ok(answer)
    }

    fn ops_record(&self, key: &str) -> Result<Option<OpsRecord>> {
        Ok(self.lock().ops.get(key).cloned())
    }

    fn put_ops_record(&self, key: &str, body: &str, expected: Option<i64>) -> Result<bool> {
        if self.canary == Canary::NextPhaseForgotten && key.starts_with("next_phase/") {
            // The canary: the store acknowledges the record of a handled generation and
            // keeps nothing, so every delivery of a trigger looks like the first.
            return Ok(true);
        }
        let now = self.clock.now();
        let mut state = self.lock();
        let current = state.ops.get(key).map(|r| r.version);
        if current != expected {
            return Ok(false);
        }
        let version = current.unwrap_or(0) + 1;
        state.ops.insert(
            key.to_owned(),
            OpsRecord {
                key: key.to_owned(),
                version,
                body: body.to_owned(),
                updated_at: now,
            },
        );
        Ok(true)
    }

    fn ops_records(&self, prefix: &str) -> Result<Vec<OpsRecord>> {
        Ok(self
            .lock()
            .ops
            .values()
            .filter(|r| r.key.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn landings(&self, partition: Partition) -> Result<Vec<Landing>> {
        self.landings_between(partition, partition)
    }

    fn runs_beyond(&self, keep: usize) -> Result<Vec<RunRecord>> {
        let s = self.lock();
        let mut counts: BTreeMap<(&ProcessorName, Partition), usize> = BTreeMap::new();
        for r in &s.runs {
            *counts.entry((&r.processor, r.partition)).or_default() += 1;
        }
        let mut out: Vec<RunRecord> = s
            .runs
            .iter()
            .filter(|r| counts[&(&r.processor, r.partition)] > keep)
            .cloned()
            .collect();
        // Stable: ties in start order stay in recording order.
        out.sort_by(|a, b| {
            (&a.processor, a.partition, a.started_at).cmp(&(
                &b.processor,
                b.partition,
                b.started_at,
            ))
        });
        Ok(out)
    }

    fn delete_runs(&self, ids: &[RunId]) -> Result<u64> {
        let mut s = self.lock();
        let before = s.runs.len();
        s.runs
            .retain(|r| r.status == RunStatus::Running || !ids.contains(&r.run_id));
        Ok((before - s.runs.len()) as u64)
    }

    fn prune_outbox(&self, before: Timestamp, limit: usize) -> Result<u64> {
        let now = self.clock.now();
        let policy = retention_at(before, now);
        let mut s = self.lock();
        let gone: Vec<i64> = s
            .outbox
            .iter()
            .filter(|r| {
                policy.removes_outbox_row(r.row.kind == OutboxKind::Trigger, r.published_at, now)
            })
            .take(limit)
            .map(|r| r.id)
            .collect();
        s.outbox.retain(|r| !gone.contains(&r.id));
        s.claims.retain(|id, _| !gone.contains(id));
        Ok(gone.len() as u64)
    }

    fn prunable_outbox(&self, before: Timestamp) -> Result<u64> {
        let now = self.clock.now();
        let policy = retention_at(before, now);
        Ok(self
            .lock()
            .outbox
            .iter()
            .filter(|r| {
                policy.removes_outbox_row(r.row.kind == OutboxKind::Trigger, r.published_at, now)
            })
            .count() as u64)
    }

    fn landings_between(&self, from: Partition, to: Partition) -> Result<Vec<Landing>> {
        let mut out: Vec<Landing> = self
            .lock()
            .landings
            .iter()
            .filter(|((_, p), _)| *p >= from && *p <= to)
            .map(|((job, p), (first, latest, batches))| Landing {
                job: job.clone(),
                partition: *p,
                landed_at: *first,
                latest_at: *latest,
                batches: *batches,
            })
            .collect();
        // Stable: within a date, by job (the map's order).
        out.sort_by_key(|l| l.partition);
        Ok(out)
    }

    fn landing_batches(&self, partition: Partition) -> Result<Vec<LandingBatch>> {
        Ok(self
            .lock()
            .landing_batches
            .range((partition, String::new(), 0)..)
            .take_while(|((d, _, _), _)| *d == partition)
            .map(|(_, b)| b.clone())
            .collect())
    }

    fn receipts(&self, partition: Partition) -> Result<Vec<CompletionReceipt>> {
        let state = self.lock();
        let mut out: Vec<&(u64, CompletionReceipt)> = (state.receipts)
            .range((partition, GateId::from(""))..)
            .take_while(|((d, _), _)| *d == partition)
            .flat_map(|(_, kept)| kept.iter())
            .collect();
        out.sort_by_key(|(seq, _)| *seq);
        Ok(out.into_iter().map(|(_, r)| r.clone()).collect())
    }
}

/// Upserts rows stamped with `token`; every row is checked before any is written, so a bad
/// row changes nothing. `keep_repeats` is the duplicate-key canary: a key repeated within
/// the write is stored again beside the first, as a table without its unique key would.
fn upsert(
    data: &mut TableData,
    spec: &TableSpec,
    rows: &[Row],
    token: u64,
    keep_repeats: bool,
) -> Result<u64> {
    let mut keyed = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let key = key_of(row, &spec.primary_key).map_err(|c| {
            Error::Permanent(format!("row {i} has no value for primary-key column `{c}`"))
        })?;
        let partition = row
            .get(&spec.partition_column)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                Error::Permanent(format!(
                    "row {i} of `{}` has no date in partition column `{}`",
                    spec.name, spec.partition_column
                ))
            })?;
        keyed.push((key, partition.to_owned(), row));
    }
    let mut inserted = 0;
    let mut in_write = BTreeSet::new();
    for (key, partition, row) in keyed {
        let key = if keep_repeats && !in_write.insert(key.clone()) {
            format!("{key}#repeat{}", data.rows.len())
        } else {
            key
        };
        if data
            .rows
            .insert(key, (partition, row.clone(), token))
            .is_none()
        {
            inserted += 1;
        }
    }
    Ok(inserted)
}

impl Warehouse for MemBackend {
    fn ensure_table(&self, table: &TableSpec) -> Result<()> {
        self.lock()
            .tables
            .entry(table.name.clone())
            .or_default()
            .spec = Some(table.clone());
        Ok(())
    }

    fn fenced_write(&self, write: &FencedWrite<'_>) -> Result<WriteOutcome> {
        if self.canary == Canary::NoFence {
            return self.unfenced_write(write);
        }
        engine::run(self, |tx| engine::fenced_write(tx, write))
    }

    fn land(&self, table: &TableSpec, rows: &[Row]) -> Result<u64> {
        let mut s = self.lock();
        let data = s.tables.entry(table.name.clone()).or_default();
        upsert(data, table, rows, 0, false)?;
        Ok(rows.len() as u64)
    }

    fn read(&self, table: &TableSpec, from: Partition, to: Partition) -> Result<Vec<Row>> {
        let (from, to) = (from.to_string(), to.to_string());
        let s = self.lock();
        let mut rows: Vec<(String, Row)> = s
            .tables
            .get(&table.name)
            .map(|t| {
                t.rows
                    .values()
                    .filter(|(p, _, _)| *p >= from && *p <= to)
                    .map(|(p, r, _)| (p.clone(), r.clone()))
                    .collect()
            })
            .unwrap_or_default();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    }

    fn row_count(&self, table: &TableSpec, partition: Partition) -> Result<u64> {
        let day = partition.to_string();
        Ok(self.lock().tables.get(&table.name).map_or(0, |t| {
            t.rows.values().filter(|(p, _, _)| *p == day).count() as u64
        }))
    }

    fn measure(
        &self,
        table: &TableSpec,
        partition: Partition,
        column: Option<&str>,
    ) -> Result<(u64, u64)> {
        let day = partition.to_string();
        let s = self.lock();
        let rows: Vec<&Row> = s
            .tables
            .get(&table.name)
            .map(|t| {
                t.rows
                    .values()
                    .filter(|(p, _, _)| *p == day)
                    .map(|(_, r, _)| r)
                    .collect()
            })
            .unwrap_or_default();
        let non_null = match column {
            Some(c) => rows
                .iter()
                .filter(|r| r.get(c).is_some_and(|v| !v.is_null()))
                .count(),
            None => rows.len(),
        };
        Ok((rows.len() as u64, non_null as u64))
    }

    fn distinct_values(
        &self,
        table: &TableSpec,
        partition: Partition,
        column: &str,
    ) -> Result<BTreeSet<String>> {
        let day = partition.to_string();
        let s = self.lock();
        let Some(t) = s.tables.get(&table.name) else {
            return Ok(BTreeSet::new());
        };
        Ok(t.rows
            .values()
            .filter(|(p, _, _)| *p == day)
            .filter_map(|(_, r, _)| match r.get(column)? {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            })
            .collect())
    }

    fn duplicate_rows(&self, table: &TableSpec, partition: Partition) -> Result<u64> {
        Ok(self
            .duplicate_rows_between(table, partition, partition)?
            .get(&partition)
            .copied()
            .unwrap_or(0))
    }

    fn row_counts(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
    ) -> Result<BTreeMap<Partition, u64>> {
        self.partition_counts(table, from, to, |_| true)
    }

    fn duplicate_rows_between(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
    ) -> Result<BTreeMap<Partition, u64>> {
        // Rows are keyed by primary key: a map holds a key twice only under the
        // duplicate-key canary, which stores the repeat under a marked key.
        self.partition_counts(table, from, to, |key| key.contains("#repeat"))
    }
}

impl MemBackend {
    /// The rows of a table in `[from, to]` whose key passes `counted`, by partition (a
    /// partition with none is absent, as a `GROUP BY` leaves it out).
    fn partition_counts(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
        counted: impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<Partition, u64>> {
        let (from, to) = (from.to_string(), to.to_string());
        let s = self.lock();
        let mut out = BTreeMap::new();
        let Some(t) = s.tables.get(&table.name) else {
            return Ok(out);
        };
        for (key, (p, _, _)) in &t.rows {
            if *p >= from && *p <= to && counted(key) {
                *out.entry(partition_of(p)?).or_insert(0) += 1;
            }
        }
        Ok(out)
    }
}

/// In memory every writer is in this process: the signal its writes raise is all there is.
impl Wake for MemBackend {
    fn wait(&self, timeout: SignedDuration) -> Result<bool> {
        self.signal.wait(timeout)
    }
}

impl Bus for MemBackend {
    fn publish(&self, topic: &str, message_id: &str, payload: &[u8]) -> Result<Published> {
        let mut s = self.lock();
        if !s.ids.insert((topic.to_owned(), message_id.to_owned())) {
            return Ok(Published::Duplicate);
        }
        s.last_seq += 1;
        let seq = s.last_seq;
        s.messages.push((
            topic.to_owned(),
            Delivery {
                seq,
                message_id: message_id.to_owned(),
                payload: payload.to_vec(),
                attempt: 0,
            },
            self.clock.now(),
        ));
        self.signal.raise(wake::LOCAL);
        Ok(Published::New)
    }

    fn fetch(
        &self,
        topic: &str,
        group: &str,
        max: usize,
        settings: GroupSettings,
    ) -> Result<Vec<Delivery>> {
        let now = self.clock.now();
        let mut s = self.lock();
        let newest: Vec<i64> = s
            .messages
            .iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, d, _)| d.seq)
            .collect();
        let g = s
            .groups
            .entry((topic.to_owned(), group.to_owned()))
            .or_default();
        let cursor = g.cursor;
        for seq in newest.into_iter().filter(|seq| *seq > cursor) {
            g.inflight.insert(seq, (0, Timestamp::MIN));
            g.cursor = seq;
        }
        let mut picked = Vec::new();
        for (seq, (attempts, visible)) in g.inflight.iter_mut() {
            if picked.len() >= max {
                break;
            }
            if *visible <= now {
                *attempts += 1;
                *visible = now.checked_add(settings.ack_wait).unwrap_or(now);
                picked.push((*seq, *attempts));
            }
        }
        Ok(picked
            .into_iter()
            .filter_map(|(seq, attempt)| {
                // Sorted by seq (appended in order; retention only removes).
                let i = s
                    .messages
                    .binary_search_by_key(&seq, |(_, d, _)| d.seq)
                    .ok()?;
                s.messages.get(i).map(|(_, d, _)| Delivery {
                    attempt,
                    ..d.clone()
                })
            })
            .collect())
    }

    fn ack(&self, topic: &str, group: &str, seqs: &[i64]) -> Result<()> {
        let mut s = self.lock();
        if let Some(g) = s.groups.get_mut(&(topic.to_owned(), group.to_owned())) {
            for seq in seqs {
                g.inflight.remove(seq);
            }
        }
        Ok(())
    }

    fn pending(&self, topic: &str, group: &str) -> Result<u64> {
        let s = self.lock();
        let (cursor, inflight) = s
            .groups
            .get(&(topic.to_owned(), group.to_owned()))
            .map_or((0, 0), |g| (g.cursor, g.inflight.len()));
        let unseen = s
            .messages
            .iter()
            .filter(|(t, d, _)| t == topic && d.seq > cursor)
            .count();
        Ok((inflight + unseen) as u64)
    }

    fn published_since(&self, topic: &str, since: Timestamp) -> Result<u64> {
        Ok(self
            .lock()
            .messages
            .iter()
            .filter(|(t, _, at)| t == topic && *at >= since)
            .count() as u64)
    }

    fn prune_consumed(&self, before: Timestamp, limit: usize) -> Result<Option<u64>> {
        let now = self.clock.now();
        let policy = retention_at(before, now);
        let mut s = self.lock();
        let gone: Vec<i64> = s
            .messages
            .iter()
            .filter(|(t, d, at)| policy.removes_bus_message(passed(&s, t, d.seq), *at, now))
            .take(limit)
            .map(|(_, d, _)| d.seq)
            .collect();
        let State { messages, ids, .. } = &mut *s;
        messages.retain(|(t, d, _)| {
            let keep = !gone.contains(&d.seq);
            if !keep {
                ids.remove(&(t.clone(), d.message_id.clone()));
            }
            keep
        });
        Ok(Some(gone.len() as u64))
    }

    fn prunable_consumed(&self, before: Timestamp) -> Result<Option<u64>> {
        let now = self.clock.now();
        let policy = retention_at(before, now);
        let s = self.lock();
        Ok(Some(
            s.messages
                .iter()
                .filter(|(t, d, at)| policy.removes_bus_message(passed(&s, t, d.seq), *at, now))
                .count() as u64,
        ))
    }

    fn messages(&self, topic: &str) -> Result<Vec<Delivery>> {
        Ok(self
            .lock()
            .messages
            .iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, d, _)| d.clone())
            .collect())
    }
}

/// A policy whose cutoff at `now` is `before` (the port passes the cutoff; the pure
/// predicates take a policy and `now`).
fn retention_at(before: Timestamp, now: Timestamp) -> RetentionPolicy {
    RetentionPolicy {
        older_than: now.duration_since(before),
        ..RetentionPolicy::default()
    }
}

/// Whether every group of `topic` (at least one) has taken `seq` and holds no delivery of it.
fn passed(s: &State, topic: &str, seq: i64) -> bool {
    let mut groups = s.groups.iter().filter(|((t, _), _)| t == topic).peekable();
    groups.peek().is_some()
        && groups.all(|(_, g)| g.cursor >= seq && !g.inflight.contains_key(&seq))
}
