//! baton-sim: a deterministic simulator of baton under faults.
//!
//! From one seed it drives the core, the real consumer and relay of `baton-serve`, the
//! real trigger consumer (which runs the next phase through the real runner), and
//! simulated workers (lease, compute, fenced write, release, coalesced follow-ups) over the
//! in-memory backend, interleaving their steps with duplicated, dropped, reordered and
//! redelivered messages (triggers included), consumer crashes between commit and ack,
//! workers crashing while holding a lease, holders paused past their lease, external
//! processors that hang until their lease expires and another run takes it over, clock
//! jumps and skewed worker clocks, failed and `no_data` runs (also on dates the calendar
//! says have work), forced re-triggers, and upstream landings that come late, in batches or
//! again (each requests runs of its readers, whose output may change or not; the schedule
//! scraper's land calendar rows, so the gate's quality checks apply and can block the
//! trigger until corrected data lands), over dates on both sides of midnight in the
//! pipeline's time zone (same-day and overnight modes). After every step it compares the
//! product's state (documents, trigger rows, owed runs, warehouse rows, next-phase runs)
//! with the reference model (`model.rs`), which derives it from what happened without
//! baton-core's rules; at the end it drains and checks that every date's trigger
//! generations are exactly the model's, each written once and each run by the next phase
//! once. A failure names the seed, and `--seed N` replays it exactly.
//!
//! The periodic `reconcile --fix` of `serve` is a step among the others (and runs once
//! more when the drain has quiesced): the simulated workers record their runs in run
//! history as the runner does, which is what reconcile's truth is read from, and the model
//! says what each repair must record, trigger and request (`reconcile.rs`).
//!
//! Invariant: the in-memory backend is the only fake, behind the same traits as the real
//! backends, and passes the same conformance suite.
#![deny(missing_docs)]

mod canary;
mod check;
pub mod mem;
pub mod model;
pub mod reconcile;

use baton_core::clock::{Clock, ManualClock};
use baton_core::config::{Pipeline, Processor, TableSpec};
use baton_core::ids::SeededIds;
use baton_core::lease::{self, Lease};
use baton_core::message::CompletionMessage;
use baton_core::model::{CompletionStatus, Partition, ProcessorName, Row, RunId};
use baton_core::rng::SplitMix64;
use baton_ports::{
    Acquired, Bus, Delivery, FencedWrite, NewOutboxRow, OnHeld, PendingRequest, Released,
    RequestKind, RunEnd, RunRecord, RunStatus, StateStore, Warehouse, WriteOutcome,
};
use baton_runner::{NoHooks, Runner};
use baton_serve::{Consumer, ConsumerFaults, RelayFaults, TriggerConsumer, relay_once};
use jiff::{SignedDuration, Timestamp};
use mem::{Canary, MemBackend};
use model::Model;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How a simulation runs.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    /// The seed: everything else follows from it.
    pub seed: u64,
    /// Steps before the final drain.
    pub steps_max: usize,
    /// A deliberate bug, to prove the checkers catch it.
    pub canary: Canary,
}

impl SimOptions {
    /// Defaults for a seed.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            steps_max: 300,
            canary: Canary::None,
        }
    }
}

/// A broken guarantee, with what is needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The seed.
    pub seed: u64,
    /// The step at which the checker fired.
    pub step: usize,
    /// The guarantee (G1..G5, G9, G10), or `liveness` / `backend`.
    pub guarantee: &'static str,
    /// What was wrong.
    pub detail: String,
    /// The deliberate bug the run had (its replay needs it too).
    pub canary: Canary,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let canary = Canary::ALL
            .iter()
            .find(|(_, c)| *c == self.canary)
            .map(|(name, _)| format!(" --canary {name}"))
            .unwrap_or_default();
        write!(
            f,
            "{} violated at step {} (seed {}): {}\nreplay: cargo run -p baton-sim --release -- --seed {}{canary}",
            self.guarantee, self.step, self.seed, self.detail, self.seed
        )
    }
}

/// What a passing simulation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    /// Steps taken (including the drain).
    pub steps: usize,
    /// Fault and event counts by name.
    pub events: BTreeMap<&'static str, usize>,
}

/// What a run computed: the rows, how it ends, the digest of the rows, and whether it asks
/// for a new trigger generation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Output {
    /// The rows as computed, repeated keys and all (the model dedups them its own way).
    computed: Vec<Row>,
    /// The rows the product writes (after its dedup).
    rows: Vec<Row>,
    status: CompletionStatus,
    digest: Option<String>,
    force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Acquire,
    /// Holding the lease; the run started at this time (by the store's clock).
    Compute(Lease, Timestamp),
    Write(Lease, Timestamp, Output),
    Release(Lease),
    Done,
}

#[derive(Debug, Clone)]
struct Worker {
    name: String,
    processor: usize,
    partition: Partition,
    phase: Phase,
    /// The worker's own clock is off by this much; it only decides when it renews.
    skew: SignedDuration,
    /// An external processor that hangs: it stops renewing and sits past its lease, a
    /// scheduler starts another run that takes the lease over, then the hung one wakes and
    /// tries to write and release.
    hung: bool,
    /// The run it holds the lease for, as run history records it (from its acquire).
    run: Option<RunId>,
}

struct World {
    pipeline: Arc<Pipeline>,
    clock: Arc<ManualClock>,
    backend: Arc<MemBackend>,
    consumer: Consumer,
    /// The real trigger consumer, starting the next phase through the real runner.
    next_phase: TriggerConsumer,
    rng: SplitMix64,
    workers: Vec<Worker>,
    dates: Vec<Partition>,
    phase3: Vec<Processor>,
    events: BTreeMap<&'static str, usize>,
    /// Per (processor index, partition): the largest token that wrote.
    written_tokens: BTreeMap<(usize, Partition), u64>,
    /// Per (processor index, partition): the version of its inputs; a landing that changes
    /// them bumps it, and a run's rows (and digest) follow it.
    inputs: BTreeMap<(usize, Partition), u32>,
    /// Completion message ids the store must hold in its outbox (written with data).
    written_completions: BTreeSet<String>,
    /// Every completion a run produced (written or enqueued), by message id: the model must
    /// have seen each applied by the end, unless it was dead-lettered.
    produced: BTreeMap<String, (ProcessorName, Partition)>,
    model: Model,
    canary: Canary,
    /// Whether every table's rows are to be checked at the next check (the start, the end).
    rows_changed: std::cell::Cell<bool>,
    /// The (processor index, partition) written to since the last check.
    wrote_to: std::cell::RefCell<BTreeSet<(usize, Partition)>>,
    /// Whether the trigger consumer polled since the last check.
    next_phase_ran: std::cell::Cell<bool>,
    draining: bool,
    /// Whether the drain ran its reconcile pass once it had quiesced.
    reconciled_in_drain: bool,
    /// Dates the drain landed corrected data for (once each).
    corrected: BTreeSet<Partition>,
    seed: u64,
    step: usize,
    next_worker: usize,
}

struct Faults<'a> {
    rng: &'a mut SplitMix64,
    events: &'a mut BTreeMap<&'static str, usize>,
}

impl ConsumerFaults for Faults<'_> {
    fn reorder(&mut self, batch: &mut Vec<Delivery>) {
        if batch.len() > 1 && self.rng.chance(0.5) {
            self.rng.shuffle(batch);
            *self.events.entry("reordered batches").or_default() += 1;
        }
    }
    fn drop_delivery(&mut self, _: &Delivery) -> bool {
        let drop = self.rng.chance(0.15);
        if drop {
            *self.events.entry("dropped deliveries").or_default() += 1;
        }
        drop
    }
    fn crash_before_ack(&mut self) -> bool {
        let crash = self.rng.chance(0.1);
        if crash {
            *self.events.entry("consumer crashes").or_default() += 1;
        }
        crash
    }
}

impl RelayFaults for Faults<'_> {
    fn extra_copies(&mut self, _: &str) -> u32 {
        if self.rng.chance(0.3) {
            *self.events.entry("duplicate messages").or_default() += 1;
            1 + u32::from(self.rng.chance(0.3))
        } else {
            0
        }
    }
}

/// The rows a processor "computes" from inputs of version `inputs`: deterministic per
/// (processor, date, inputs), so equal inputs give equal rows (and digest), with repeated
/// keys mixed in so that dedup has work to do.
fn rows_for(
    processor: &Processor,
    partition: Partition,
    inputs: u32,
    fault: FirstDataFault,
    rng: &mut SplitMix64,
) -> Vec<Row> {
    let day = partition.to_string();
    let mut rows = Vec::new();
    for i in 0..6 {
        let mut row = Row::new();
        for col in &processor.table.primary_key {
            let v = if *col == processor.table.partition_column {
                json!(day)
            } else {
                json!(format!("k{i}"))
            };
            row.insert(col.clone(), v);
        }
        row.insert(processor.table.partition_column.clone(), json!(day));
        row.insert("value".into(), json!(i + 10 * inputs as usize));
        // What the gate's checks read: before its inputs changed once, a run covers one of
        // the date's three games, or misses two players' minutes, or both (`fault`: the
        // coverage check, the non-null check or both fail on a date with games); afterwards
        // it covers all of them (they pass).
        let first = inputs == 0;
        let games = if first && fault != FirstDataFault::Minutes {
            1
        } else {
            GAMES_PER_DATE
        };
        row.entry("game_id")
            .or_insert_with(|| json!(game_id(partition, 1 + i % games)));
        let minutes = if first && fault != FirstDataFault::Games && i < 2 {
            serde_json::Value::Null
        } else {
            json!(20 + i)
        };
        row.entry("minutes").or_insert(minutes);
        rows.push(row);
    }
    for _ in 0..rng.range(0, 3) {
        let dup = rows[rng.index(6)].clone();
        rows.push(dup);
    }
    rows
}

/// Games on a date with games (the calendar rows the schedule scraper lands).
const GAMES_PER_DATE: usize = 3;

/// What a processor's rows for a date miss until its inputs first change: the date's games,
/// players' minutes, or both. Drawn per (processor, date) from the seed, so that each of the
/// gate's checks is sometimes the only one failing: when both always failed together, a
/// wrong non-null check hid behind the coverage check (a mutant of
/// `QualityCheck::column` survived the simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstDataFault {
    Games,
    Minutes,
    Both,
}

impl FirstDataFault {
    /// The fault of (`processor`, `date`) in the run of `seed`: a function of the three, so a
    /// rerun on the same inputs computes the same rows, and drawn apart from the seed's main
    /// generator, so it shifts no other choice.
    fn of(seed: u64, processor: usize, date: Partition) -> Self {
        let day = date.to_string();
        let mut h = seed ^ 0x5eed_da7a_u64.wrapping_mul(processor as u64 + 1);
        for b in day.bytes() {
            h = h.rotate_left(8) ^ u64::from(b);
        }
        match SplitMix64::new(h).index(3) {
            0 => Self::Games,
            1 => Self::Minutes,
            _ => Self::Both,
        }
    }
}

/// The id of game `n` of a date (unique across dates: the schedule is keyed on it alone).
fn game_id(partition: Partition, n: usize) -> String {
    format!("{partition}-g{n}")
}

/// The calendar rows of a date: its games, in the calendar table's columns.
fn calendar_rows(table: &TableSpec, partition: Partition) -> Vec<Row> {
    (1..=GAMES_PER_DATE)
        .map(|n| {
            let mut row = Row::new();
            for col in &table.primary_key {
                row.insert(col.clone(), json!(game_id(partition, n)));
            }
            row.insert("game_id".into(), json!(game_id(partition, n)));
            row.insert(table.partition_column.clone(), json!(partition.to_string()));
            row
        })
        .collect()
}

/// The reference pipeline, parsed once per process: a seed's run reads it and never
/// changes it, and parsing it per seed cost a twentieth of a seed's time.
fn reference_pipeline() -> Arc<Pipeline> {
    static PIPELINE: std::sync::OnceLock<Arc<Pipeline>> = std::sync::OnceLock::new();
    PIPELINE
        .get_or_init(|| {
            Arc::new(
                Pipeline::reference()
                    .unwrap_or_else(|e| panic!("invariant: the reference config is valid: {e}")),
            )
        })
        .clone()
}

/// Midnight starting 2024-03-20 in New York (the reference pipeline's time zone), in UTC.
const MIDNIGHT: &str = "2024-03-20T04:00:00Z";

impl World {
    fn new(options: &SimOptions) -> Self {
        let pipeline = reference_pipeline();
        let mut rng = SplitMix64::new(options.seed);
        // Start up to two hours before midnight in the pipeline's time zone, so that in many
        // seeds "today" moves on mid-run and a date changes from same-day to overnight mode.
        let midnight: Timestamp = MIDNIGHT.parse().unwrap_or(Timestamp::UNIX_EPOCH);
        let start = midnight
            .checked_sub(SignedDuration::from_secs(rng.range(1, 7200)))
            .unwrap_or(midnight);
        let clock = Arc::new(ManualClock::new(start));
        let backend = Arc::new(MemBackend::with_pipeline_canary(
            clock.clone(),
            options.canary,
            pipeline.clone(),
        ));
        let consumer = Consumer::new(
            pipeline.clone(),
            backend.clone(),
            backend.clone(),
            backend.clone(),
            clock.clone(),
        );
        let runner = Runner::new(
            pipeline.clone(),
            backend.clone(),
            backend.clone(),
            clock.clone(),
        )
        .with_ids(Arc::new(SeededIds::new(options.seed)));
        let next_phase = TriggerConsumer::new(
            pipeline.clone(),
            backend.clone(),
            Arc::new(runner),
            "phase4",
        );
        let phase3: Vec<Processor> = pipeline.phase(3).cloned().collect();
        for p in &pipeline.processors {
            let _ = backend.ensure_table(&p.table);
        }
        // Yesterday (overnight), today and tomorrow (same-day) at the start.
        let today = Partition::new(jiff::civil::date(2024, 3, 19));
        let model = Model::new(&pipeline);
        Self {
            pipeline,
            clock,
            backend,
            consumer,
            next_phase,
            rng,
            workers: Vec::new(),
            dates: today.offset(-1).through(today.offset(1)),
            phase3,
            events: BTreeMap::new(),
            written_tokens: BTreeMap::new(),
            inputs: BTreeMap::new(),
            written_completions: BTreeSet::new(),
            produced: BTreeMap::new(),
            model,
            canary: options.canary,
            rows_changed: std::cell::Cell::new(true),
            wrote_to: Default::default(),
            next_phase_ran: std::cell::Cell::new(true),
            draining: false,
            reconciled_in_drain: false,
            corrected: BTreeSet::new(),
            seed: options.seed,
            step: 0,
            next_worker: 0,
        }
    }

    fn event(&mut self, name: &'static str) {
        *self.events.entry(name).or_default() += 1;
    }

    fn violation(&self, guarantee: &'static str, detail: String) -> Violation {
        Violation {
            seed: self.seed,
            step: self.step,
            guarantee,
            detail,
            canary: self.canary,
        }
    }

    fn backend_error(&self, e: impl std::fmt::Display) -> Violation {
        self.violation("backend", e.to_string())
    }

    fn spawn_worker(&mut self, processor: usize, partition: Partition) {
        self.next_worker += 1;
        let skew = SignedDuration::from_secs(self.rng.range(-120, 120));
        let hung = !self.draining && self.rng.chance(0.04);
        self.workers.push(Worker {
            name: format!("w{}", self.next_worker),
            processor,
            partition,
            phase: Phase::Acquire,
            skew,
            hung,
            run: None,
        });
    }

    fn ttl(&self) -> SignedDuration {
        self.pipeline.lease_ttl
    }

    /// One step of worker `i`.
    fn worker_step(&mut self, i: usize) -> Result<(), Violation> {
        let w = self.workers[i].clone();
        let proc = self.phase3[w.processor].clone();
        let next = match w.phase.clone() {
            Phase::Done => Phase::Done,
            Phase::Acquire => self.acquire(&w, &proc)?,
            Phase::Compute(lease, started) => match self.compute(&w, &proc, lease, started)? {
                Some(next) => next,
                None => return Ok(()),
            },
            Phase::Write(lease, started, output) => {
                self.write(&w, &proc, &lease, started, output)?;
                Phase::Release(lease)
            }
            Phase::Release(lease) => {
                if self.rng.chance(0.05) {
                    // The worker dies holding the lease; a scheduler will retry the job later.
                    self.event("workers crashed holding a lease");
                    Phase::Done
                } else {
                    self.release(&w, &proc, lease)?
                }
            }
        };
        self.workers[i].phase = next;
        Ok(())
    }

    fn acquire(&mut self, w: &Worker, proc: &Processor) -> Result<Phase, Violation> {
        let acquired = self
            .backend
            .acquire_lease(
                &proc.name,
                w.partition,
                &w.name,
                self.ttl(),
                OnHeld::Coalesce,
            )
            .map_err(|e| self.backend_error(e))?;
        Ok(match acquired {
            Acquired::Granted(l) => {
                let started = self.clock.now();
                self.start_run(w, proc, &l, started)?;
                Phase::Compute(l, started)
            }
            Acquired::Held { .. } => {
                self.event("requests coalesced");
                Phase::Done
            }
        })
    }

    /// Records the start of the run worker `w` holds `lease` for, as the runner does.
    fn start_run(
        &mut self,
        w: &Worker,
        proc: &Processor,
        lease: &Lease,
        started_at: Timestamp,
    ) -> Result<(), Violation> {
        let run_id = RunId::new(format!("{}-{}", w.name, self.step));
        self.backend
            .start_run(&RunRecord {
                run_id: run_id.clone(),
                processor: proc.name.clone(),
                partition: w.partition,
                holder: w.name.clone(),
                token: lease.token,
                started_at,
                finished_at: None,
                status: RunStatus::Running,
                rows_written: 0,
                duplicates_dropped: 0,
                error: None,
            })
            .map_err(|e| self.backend_error(e))?;
        self.model.run_started(w.partition);
        if let Some(i) = self.workers.iter().position(|x| x.name == w.name) {
            self.workers[i].run = Some(run_id);
        }
        Ok(())
    }

    /// The run id worker `w` records its run under.
    fn run_id(&self, w: &Worker) -> RunId {
        w.run
            .clone()
            .unwrap_or_else(|| RunId::new(format!("{}-{}", w.name, self.step)))
    }

    /// Records how the worker's run ended.
    fn finish_run(&self, run_id: &RunId, status: RunStatus, rows: u64) -> Result<(), Violation> {
        let end = RunEnd {
            status,
            rows_written: rows,
            duplicates_dropped: 0,
            error: None,
        };
        self.backend
            .finish_run(run_id, &end)
            .map_err(|e| self.backend_error(e))
    }

    fn release(&mut self, w: &Worker, proc: &Processor, lease: Lease) -> Result<Phase, Violation> {
        let released = self
            .backend
            .release_lease(&proc.name, w.partition, lease.token)
            .map_err(|e| self.backend_error(e))?;
        Ok(match released {
            Released::Released { follow_up: true } => {
                self.event("follow-up runs");
                Phase::Acquire
            }
            Released::Refused(_) => {
                self.event("releases refused (lease taken over)");
                Phase::Done
            }
            Released::Released { .. } => Phase::Done,
        })
    }

    /// Renews when due, or computes the run's output (or fails it). `None`: renewed, stay.
    fn compute(
        &mut self,
        w: &Worker,
        proc: &Processor,
        lease: Lease,
        started: Timestamp,
    ) -> Result<Option<Phase>, Violation> {
        if w.hung {
            return self.hang(w, lease);
        }
        // The worker renews when its own (skewed) clock says a third has passed.
        let now = self.clock.now();
        let worker_now = now.checked_add(w.skew).unwrap_or(now);
        if worker_now >= lease.renew_due_at()
            && let Ok(renewed) = self
                .backend
                .renew_lease(&proc.name, w.partition, lease.token, self.ttl())
                .map_err(|e| self.backend_error(e))?
        {
            self.event("renewals");
            let i = self.workers.iter().position(|x| x.name == w.name);
            if let Some(i) = i {
                self.workers[i].phase = Phase::Compute(renewed, started);
            }
            return Ok(None);
        }
        if !self.draining && self.rng.chance(0.08) {
            self.fail_run(w, proc)?;
            return Ok(Some(Phase::Release(lease)));
        }
        let force = self.rng.chance(0.05);
        if force {
            self.event("runs asking to reprocess");
        }
        let output = if self.rng.chance(0.08) {
            self.event("no_data runs");
            if self.model.has_work(&proc.name, w.partition) {
                self.event("no_data runs on a date with work");
            }
            Output {
                computed: Vec::new(),
                rows: Vec::new(),
                status: CompletionStatus::NoData,
                digest: Some("no rows".into()),
                force,
            }
        } else {
            let version = self
                .inputs
                .get(&(w.processor, w.partition))
                .copied()
                .unwrap_or(0);
            let fault = FirstDataFault::of(self.seed, w.processor, w.partition);
            let computed = rows_for(proc, w.partition, version, fault, &mut self.rng);
            let rows = canary::dedup(self.canary, computed.clone(), &proc.table.primary_key)
                .map_err(|e| self.violation("G5", e.to_string()))?;
            Output {
                computed,
                rows,
                status: CompletionStatus::Success,
                digest: Some(format!("inputs v{version}")),
                force,
            }
        };
        Ok(Some(Phase::Write(lease, started, output)))
    }

    /// A hung external processor: it does nothing, renews nothing, until its lease has
    /// expired by the store's clock (in the drain the clock is moved there); then a
    /// scheduler starts another run, which takes the lease over, and the hung one wakes,
    /// to compute and try to write and release with its old token.
    fn hang(&mut self, w: &Worker, lease: Lease) -> Result<Option<Phase>, Violation> {
        if self.clock.now() < lease.expires_at {
            if !self.draining {
                return Ok(None);
            }
            self.clock
                .advance(self.ttl() + SignedDuration::from_secs(1));
        }
        self.event("hung processors whose lease expired");
        if let Some(i) = self.workers.iter().position(|x| x.name == w.name) {
            self.workers[i].hung = false;
        }
        self.spawn_worker(w.processor, w.partition);
        Ok(None)
    }

    /// A failed run: nothing written, the failure published (as the runner does); the
    /// run it was asked for is still owed.
    fn fail_run(&mut self, w: &Worker, proc: &Processor) -> Result<(), Violation> {
        let run_id = self.run_id(w);
        self.finish_run(&run_id, RunStatus::Failed, 0)?;
        let message = CompletionMessage::new(
            proc.name.clone(),
            w.partition,
            run_id,
            CompletionStatus::Failed,
            0,
            self.clock.now(),
        );
        let row = NewOutboxRow::for_completion(self.pipeline.completion_topic(proc), &message);
        self.backend
            .enqueue(&row)
            .map_err(|e| self.backend_error(e))?;
        self.produced
            .insert(message.message_id, (proc.name.clone(), w.partition));
        self.event("failed runs");
        Ok(())
    }

    /// The fenced write of a run's output, judged against who should hold the lease.
    fn write(
        &mut self,
        w: &Worker,
        proc: &Processor,
        lease: &Lease,
        started: Timestamp,
        output: Output,
    ) -> Result<(), Violation> {
        if self.rng.chance(0.1) {
            // Paused past the lease: a GC pause, a frozen VM.
            self.clock
                .advance(self.ttl() + SignedDuration::from_secs(1));
            self.event("holders paused past their lease");
        }
        let run_id = self.run_id(w);
        let message = CompletionMessage::new(
            proc.name.clone(),
            w.partition,
            run_id.clone(),
            output.status,
            output.rows.len() as u64,
            self.clock.now(),
        )
        .with_digest(output.digest.clone())
        .forcing(output.force);
        let completion =
            NewOutboxRow::for_completion(self.pipeline.completion_topic(proc), &message);
        // What the store says about this holder before the write, by its clock.
        self.wrote_to
            .borrow_mut()
            .insert((w.processor, w.partition));
        let current = self.backend.lease(&proc.name, w.partition);
        let legitimate =
            lease::check_current(current.as_ref(), lease.token, self.clock.now()).is_ok();
        let outcome = self
            .backend
            .fenced_write(&FencedWrite {
                table: &proc.table,
                processor: &proc.name,
                partition: w.partition,
                token: lease.token,
                rows: &output.rows,
                completion: &completion,
                run: None,
            })
            .map_err(|e| self.backend_error(e))?;
        match outcome {
            WriteOutcome::Written { .. } => {
                if !legitimate {
                    return Err(self.violation(
                        "G4",
                        format!(
                            "{} wrote {} {} with token {} after losing its lease",
                            w.name, proc.name, w.partition, lease.token
                        ),
                    ));
                }
                let rows = output.rows.len() as u64;
                self.finish_run(&run_id, output.status.into(), rows)?;
                let written = reconcile::WrittenRun {
                    run_id,
                    status: output.status,
                    rows,
                    started_at: started,
                    finished_at: self.clock.now(),
                };
                self.model.run_written(&proc.name, w.partition, written);
                self.accepted(w, proc, lease, started, output, message)?;
            }
            WriteOutcome::Fenced(_) => {
                self.finish_run(&run_id, RunStatus::Fenced, 0)?;
                self.event("writes fenced");
            }
        }
        Ok(())
    }

    /// Bookkeeping of an accepted write: the newest token and rows, the completion, the
    /// owed run it did, and the runs it requests of its dependents (as the runner does).
    fn accepted(
        &mut self,
        w: &Worker,
        proc: &Processor,
        lease: &Lease,
        started: Timestamp,
        output: Output,
        message: CompletionMessage,
    ) -> Result<(), Violation> {
        let key = (w.processor, w.partition);
        let newest = self.written_tokens.get(&key).copied().unwrap_or(0);
        if lease.token.get() < newest {
            return Err(self.violation(
                "G4",
                format!("token {} wrote after token {newest}", lease.token),
            ));
        }
        self.written_tokens.insert(key, lease.token.get());
        let table = &proc.table;
        self.model.wrote_rows(
            &table.name,
            &table.primary_key,
            w.partition,
            &output.computed,
        );
        self.written_completions.insert(message.message_id.clone());
        self.produced
            .insert(message.message_id, (proc.name.clone(), w.partition));
        self.event("writes");
        self.backend
            .clear_request(&proc.name, w.partition, started)
            .map_err(|e| self.backend_error(e))?;
        self.model.run_wrote(&proc.name, w.partition, started);
        let dependents: Vec<usize> = self
            .pipeline
            .dependents_of(&proc.name)
            .iter()
            .filter_map(|d| self.phase3.iter().position(|p| p.name == d.name))
            .collect();
        for d in dependents {
            let request = self.request(d, w.partition, format!("{} reran", proc.name));
            self.backend
                .record_request(&request)
                .map_err(|e| self.backend_error(e))?;
            self.spawn_worker(d, w.partition);
        }
        Ok(())
    }

    /// A run of processor `p` for `date` requested now (recorded in the model too).
    fn request(&mut self, p: usize, date: Partition, reason: String) -> PendingRequest {
        let now = self.clock.now();
        let processor = self.phase3[p].name.clone();
        self.model.request(&processor, date, now);
        PendingRequest {
            processor,
            partition: date,
            kind: RequestKind::Requested,
            reason,
            since: now,
        }
    }

    /// An upstream job lands a batch for a date (late, again, or in several batches): the
    /// landing and its readers' requests are recorded together, the batch changes what
    /// they read or not, and a scheduler starts them.
    fn land(&mut self) -> Result<(), Violation> {
        let jobs: Vec<String> = self
            .pipeline
            .upstream
            .iter()
            .map(|u| u.name.clone())
            .collect();
        let job = jobs[self.rng.index(jobs.len())].clone();
        let date = self.dates[self.rng.index(self.dates.len())];
        let changes = self.rng.chance(0.6);
        self.land_batch(&job, date, changes)
    }

    /// A batch of `job` for `date` that changes its readers' inputs or not.
    fn land_batch(&mut self, job: &str, date: Partition, changes: bool) -> Result<(), Violation> {
        let readers: Vec<usize> = self
            .pipeline
            .readers_of(job)
            .iter()
            .filter_map(|r| self.phase3.iter().position(|p| p.name == r.name))
            .collect();
        self.land_calendar(job, date)?;
        let mut requests = Vec::new();
        for &r in &readers {
            requests.push(self.request(r, date, format!("{job} landed")));
            if changes {
                *self.inputs.entry((r, date)).or_default() += 1;
            }
        }
        let at = self.clock.now();
        self.backend
            .record_landing(job, date, at, &requests)
            .map_err(|e| self.backend_error(e))?;
        self.model.landed_batch(job, date, at);
        self.event(if changes {
            "landings that change inputs"
        } else {
            "landings with the same data"
        });
        for r in readers {
            self.spawn_worker(r, date);
        }
        Ok(())
    }

    /// In the drain, a date whose trigger a quality check holds back gets its corrected data
    /// once: the upstream of the checked processor lands again with changed data (late
    /// box scores), its rerun writes rows that pass, and the gate must trigger then.
    fn correct_held_date(&mut self) -> Result<bool, Violation> {
        let now = self.clock.now();
        let held = self.model.dates.iter().find(|(d, m)| {
            m.held
                && !m.triggered
                && !self.corrected.contains(*d)
                && self.model.policy(**d, now).satisfied(&m.complete())
        });
        let Some(date) = held.map(|(d, _)| *d) else {
            return Ok(false);
        };
        self.corrected.insert(date);
        let jobs: Vec<String> = self
            .model
            .checked_tables()
            .into_iter()
            .filter_map(|p| self.pipeline.processor(p.as_str()))
            .flat_map(|p| p.upstream.iter().cloned())
            .collect();
        for job in jobs.iter().take(1) {
            self.event("corrected data landed for a held date");
            self.land_batch(job, date, true)?;
        }
        Ok(!jobs.is_empty())
    }

    /// When `job` lands a table some processor reads as its calendar, its rows for the date
    /// land first (the same rows each time): from then on the date has work.
    fn land_calendar(&mut self, job: &str, date: Partition) -> Result<(), Violation> {
        let Some(up) = self.pipeline.upstream_job(job) else {
            return Ok(());
        };
        let calendars: BTreeSet<&str> = self
            .pipeline
            .processors
            .iter()
            .filter_map(|p| p.calendar.as_deref())
            .collect();
        let Some(table) = up
            .tables
            .iter()
            .filter(|t| calendars.contains(t.as_str()))
            .find_map(|t| self.pipeline.table(t))
            .cloned()
        else {
            return Ok(());
        };
        let rows = calendar_rows(&table, date);
        self.backend
            .land(&table, &rows)
            .map_err(|e| self.backend_error(e))?;
        self.model
            .landed(&table.name, &table.primary_key, date, &rows);
        self.event("calendar rows landed");
        Ok(())
    }

    /// One poll of the real trigger consumer, which runs the next phase through the real
    /// runner (its triggers come duplicated by the relay's faults).
    fn start_next_phase(&mut self) -> Result<(), Violation> {
        self.next_phase_ran.set(true);
        let report = self
            .next_phase
            .poll_once(&NoHooks)
            .map_err(|e| self.backend_error(e))?;
        for (name, n) in [
            ("triggers delivered to the next phase", report.triggers),
            (
                "triggers of a generation already handled",
                report.already_handled,
            ),
        ] {
            *self.events.entry(name).or_default() += n;
        }
        Ok(())
    }

    fn relay(&mut self) -> Result<(), Violation> {
        let backend = self.backend.clone();
        let mut faults = Faults {
            rng: &mut self.rng,
            events: &mut self.events,
        };
        let relayed = relay_once(backend.as_ref(), backend.as_ref(), 16, &mut faults);
        relayed.map_err(|e| self.backend_error(e))?;
        Ok(())
    }

    /// One poll of the real consumer; then the model sees what its transactions applied.
    fn consume(&mut self) -> Result<(), Violation> {
        let mut faults = Faults {
            rng: &mut self.rng,
            events: &mut self.events,
        };
        let polled = match self.consumer.poll_once(&mut faults) {
            Ok(_) | Err(baton_serve::Error::InjectedCrash(_)) => Ok(()),
            Err(e) => Err(self.violation("backend", e.to_string())),
        };
        for (at, message) in self.backend.take_applied() {
            self.model.apply(&message, at);
        }
        polled
    }
}

impl World {
    fn random_step(&mut self) -> Result<(), Violation> {
        let live: Vec<usize> = (0..self.workers.len())
            .filter(|&i| self.workers[i].phase != Phase::Done)
            .collect();
        match self.rng.range(0, 99) {
            0..=44 if !live.is_empty() => {
                let i = live[self.rng.index(live.len())];
                self.worker_step(i)
            }
            0..=49 => {
                let (p, d) = (
                    self.rng.index(self.phase3.len()),
                    self.dates[self.rng.index(self.dates.len())],
                );
                self.spawn_worker(p, d);
                Ok(())
            }
            50..=54 => self.land(),
            55..=69 => self.relay(),
            70..=85 => self.consume(),
            86..=89 => self.start_next_phase(),
            90..=91 => self.reconcile(),
            _ => {
                let secs = if self.rng.chance(0.1) {
                    self.rng.range(60, 900)
                } else {
                    self.rng.range(1, 30)
                };
                self.clock.advance(SignedDuration::from_secs(secs));
                Ok(())
            }
        }
    }

    /// The next job a scheduler would start in the drain: one that never wrote (a crashed
    /// holder, a lost follow-up, only failures), one whose last write left no rows on a
    /// date with work (a `no_data` there: retried until it writes, so a check it blocked
    /// can pass), or a run still owed.
    fn job_to_retry(&self) -> Option<(usize, Partition)> {
        let jobs = || (0..self.phase3.len()).flat_map(|p| self.dates.iter().map(move |d| (p, *d)));
        let never_wrote = jobs().find(|k| !self.written_tokens.contains_key(k));
        let left_nothing = || {
            jobs().find(|(p, d)| {
                let table = &self.phase3[*p].table.name;
                self.model.has_work(&self.phase3[*p].name, *d)
                    && self
                        .model
                        .tables
                        .get(&(table.clone(), *d))
                        .is_none_or(Vec::is_empty)
            })
        };
        never_wrote.or_else(left_nothing).or_else(|| {
            self.model.requests.keys().find_map(|(name, d)| {
                self.phase3
                    .iter()
                    .position(|p| &p.name == name)
                    .map(|p| (p, *d))
            })
        })
    }

    /// Finishes every job and delivers every message, then checks the end state.
    fn drain(&mut self) -> Result<(), Violation> {
        self.draining = true;
        for _ in 0..5_000 {
            self.step += 1;
            let live: Vec<usize> = (0..self.workers.len())
                .filter(|&i| self.workers[i].phase != Phase::Done)
                .collect();
            if let Some(&i) = live.first() {
                self.worker_step(i)?;
                self.check()?;
                continue;
            }
            if let Some((p, d)) = self.job_to_retry() {
                self.clock
                    .advance(self.ttl() + SignedDuration::from_secs(1));
                self.spawn_worker(p, d);
                continue;
            }
            if self.correct_held_date()? {
                continue;
            }
            self.relay()?;
            self.consume()?;
            self.start_next_phase()?;
            self.check()?;
            let backend = self.backend.clone();
            let gate = &self.pipeline.gates[0];
            let pending = backend
                .pending(&gate.completion_topic, baton_serve::ORCHESTRATOR_GROUP)
                .unwrap_or(0)
                + backend
                    .pending(
                        &gate.trigger_topic,
                        &baton_serve::phase_group(gate.next_phase),
                    )
                    .unwrap_or(0);
            if pending == 0 && backend.backlog().map(|b| b.pending).unwrap_or(0) == 0 {
                if std::mem::replace(&mut self.reconciled_in_drain, true) {
                    return self.final_check();
                }
                // Quiet: what a periodic reconcile finds now must already be right, or its
                // repair is drained like any other work.
                self.reconcile()?;
                self.check()?;
                continue;
            }
            self.clock
                .advance(self.pipeline.ack_wait + SignedDuration::from_secs(1));
        }
        Err(self.violation(
            "liveness",
            "the system did not quiesce within 5000 drain steps".into(),
        ))
    }

    /// What the model saw happen, for the report.
    fn tally(&mut self) {
        let changes: u32 = self.model.dates.values().map(|m| m.changes).sum();
        let identical: u32 = self.model.dates.values().map(|m| m.identical).sum();
        let generations: u32 = self.model.dates.values().map(|m| m.generation).sum();
        let blocked: u32 = self.model.dates.values().map(|m| m.blocked).sum();
        for m in self.model.dates.values() {
            for (kind, n) in &m.held_alone {
                let name = match *kind {
                    "non_null_coverage" => "decisions held back by the non-null check alone",
                    "coverage" => "decisions held back by the coverage check alone",
                    _ => "decisions held back by another check alone",
                };
                *self.events.entry(name).or_default() += *n as usize;
            }
        }
        let passed: u32 = self
            .model
            .dates
            .values()
            .map(|m| m.passed_after_block)
            .sum();
        let overnight_late = self
            .dates
            .iter()
            .filter(|d| self.model.policy(**d, self.clock.now()).expected.len() > 1);
        let overnight = overnight_late.count();
        for (name, n) in [
            ("generations opened by changed output", changes as usize),
            ("identical reruns after a trigger", identical as usize),
            ("generations in all", generations as usize),
            ("decisions held back by a quality check", blocked as usize),
            (
                "triggers after a quality check passed later",
                passed as usize,
            ),
            ("dates in overnight mode at the end", overnight),
        ] {
            *self.events.entry(name).or_default() += n;
        }
    }
}

/// Runs one seeded simulation.
pub fn simulate(options: SimOptions) -> Result<SimReport, Violation> {
    let mut world = World::new(&options);
    let dates = world.dates.clone();
    for p in 0..world.phase3.len() {
        for &d in &dates {
            world.spawn_worker(p, d);
        }
    }
    while world.step < options.steps_max {
        world.step += 1;
        world.random_step()?;
        world.check()?;
    }
    world.drain()?;
    world.tally();
    Ok(SimReport {
        steps: world.step,
        events: world.events,
    })
}

/// Runs seeds `first..first + count`; stops at the first violation.
pub fn simulate_many(
    first: u64,
    count: u64,
    steps_max: usize,
    canary: Canary,
) -> Result<usize, Violation> {
    for seed in first..first + count {
        simulate(SimOptions {
            seed,
            steps_max,
            canary,
        })?;
    }
    Ok(count as usize)
}
