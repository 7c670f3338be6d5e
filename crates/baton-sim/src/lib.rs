//! baton-sim: a deterministic simulator of baton under faults.
//!
//! From one seed it drives the core, the real consumer and relay of `baton-serve`, and
//! simulated workers (lease, compute, fenced write, release, coalesced follow-ups) over the
//! in-memory backend, interleaving their steps with duplicated, dropped, reordered and
//! redelivered messages, consumer crashes between commit and ack, workers crashing while
//! holding a lease, holders paused past their lease, clock jumps and skewed worker clocks.
//! After every step it checks G1-G5; at the end it drains and checks that every date
//! triggered exactly once. A failure names the seed, and `--seed N` replays it exactly.
//!
//! Invariant: the in-memory backend is the only fake, behind the same traits as the real
//! backends, and passes the same conformance suite.
#![deny(missing_docs)]

pub mod mem;

use baton_core::clock::{Clock, ManualClock};
use baton_core::completion::Trigger;
use baton_core::config::{Pipeline, Processor};
use baton_core::dedup;
use baton_core::lease::{self, Lease};
use baton_core::message::CompletionMessage;
use baton_core::model::{CompletionStatus, Partition, Row, RunId};
use baton_core::rng::SplitMix64;
use baton_ports::{
    Acquired, Bus, Delivery, FencedWrite, NewOutboxRow, OnHeld, Released, StateStore, Warehouse,
    WriteOutcome,
};
use baton_serve::{Consumer, ConsumerFaults, RelayFaults, relay_once};
use jiff::{SignedDuration, Timestamp};
use mem::{Canary, MemBackend};
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
    /// The guarantee (G1..G5).
    pub guarantee: &'static str,
    /// What was wrong.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} violated at step {} (seed {}): {}\nreplay: cargo run -p baton-sim --release -- --seed {}",
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Acquire,
    Compute(Lease),
    Write(Lease, Vec<Row>, usize),
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
}

struct World {
    pipeline: Arc<Pipeline>,
    clock: Arc<ManualClock>,
    backend: Arc<MemBackend>,
    consumer: Consumer,
    rng: SplitMix64,
    workers: Vec<Worker>,
    dates: Vec<Partition>,
    phase3: Vec<Processor>,
    events: BTreeMap<&'static str, usize>,
    /// Per (processor index, partition): the largest token that wrote.
    written_tokens: BTreeMap<(usize, Partition), u64>,
    /// Completion message ids the store must hold in its outbox (written with data).
    written_completions: BTreeSet<String>,
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

/// The rows a processor "computes": deterministic per (processor, date), with repeated
/// keys mixed in so that dedup has work to do.
fn rows_for(processor: &Processor, partition: Partition, rng: &mut SplitMix64) -> Vec<Row> {
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
        row.insert("value".into(), json!(i));
        rows.push(row);
    }
    for _ in 0..rng.range(0, 3) {
        let dup = rows[rng.index(6)].clone();
        rows.push(dup);
    }
    rows
}

impl World {
    fn new(options: &SimOptions) -> Self {
        let pipeline = Arc::new(
            Pipeline::reference()
                .unwrap_or_else(|e| panic!("invariant: the reference config is valid: {e}")),
        );
        let clock = Arc::new(ManualClock::new(
            "2024-03-10T12:00:00Z"
                .parse()
                .unwrap_or(Timestamp::UNIX_EPOCH),
        ));
        let backend = Arc::new(MemBackend::with_canary(clock.clone(), options.canary));
        let consumer = Consumer::new(
            pipeline.clone(),
            backend.clone(),
            backend.clone(),
            backend.clone(),
            clock.clone(),
        );
        let phase3: Vec<Processor> = pipeline.phase(3).cloned().collect();
        for p in &pipeline.processors {
            let _ = backend.ensure_table(&p.table);
        }
        let start = Partition::new(jiff::civil::date(2024, 3, 1));
        Self {
            pipeline,
            clock,
            backend,
            consumer,
            rng: SplitMix64::new(options.seed),
            workers: Vec::new(),
            dates: start.through(start.offset(2)),
            phase3,
            events: BTreeMap::new(),
            written_tokens: BTreeMap::new(),
            written_completions: BTreeSet::new(),
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
        }
    }

    fn spawn_worker(&mut self, processor: usize, partition: Partition) {
        self.next_worker += 1;
        let skew = SignedDuration::from_secs(self.rng.range(-120, 120));
        self.workers.push(Worker {
            name: format!("w{}", self.next_worker),
            processor,
            partition,
            phase: Phase::Acquire,
            skew,
        });
    }

    fn ttl(&self) -> SignedDuration {
        self.pipeline.lease_ttl
    }

    /// One step of worker `i`.
    fn worker_step(&mut self, i: usize) -> Result<(), Violation> {
        let w = self.workers[i].clone();
        let proc = self.phase3[w.processor].clone();
        let backend = self.backend.clone();
        let (seed, step) = (self.seed, self.step);
        let err = move |e: baton_ports::Error| Violation {
            seed,
            step,
            guarantee: "backend",
            detail: e.to_string(),
        };
        let next = match w.phase {
            Phase::Done => Phase::Done,
            Phase::Acquire => match backend
                .acquire_lease(
                    &proc.name,
                    w.partition,
                    &w.name,
                    self.ttl(),
                    OnHeld::Coalesce,
                )
                .map_err(err)?
            {
                Acquired::Granted(l) => Phase::Compute(l),
                Acquired::Held { .. } => {
                    self.event("requests coalesced");
                    Phase::Done
                }
            },
            Phase::Compute(lease) => {
                // The worker renews when its own (skewed) clock says a third has passed.
                let worker_now = self
                    .clock
                    .now()
                    .checked_add(w.skew)
                    .unwrap_or(self.clock.now());
                if worker_now >= lease.renew_due_at()
                    && let Ok(renewed) = backend
                        .renew_lease(&proc.name, w.partition, lease.token, self.ttl())
                        .map_err(err)?
                {
                    self.event("renewals");
                    self.workers[i].phase = Phase::Compute(renewed);
                    return Ok(());
                }
                let rows = rows_for(&proc, w.partition, &mut self.rng);
                let d = dedup::dedup(rows, &proc.table.primary_key)
                    .map_err(|e| self.violation("G5", e.to_string()))?;
                Phase::Write(lease, d.rows, d.dropped)
            }
            Phase::Write(lease, rows, _dropped) => {
                if self.rng.chance(0.1) {
                    // Paused past the lease: a GC pause, a frozen VM.
                    self.clock
                        .advance(self.ttl() + SignedDuration::from_secs(1));
                    self.event("holders paused past their lease");
                }
                let run_id = RunId::new(format!("{}-{}", w.name, self.step));
                let message = CompletionMessage::new(
                    proc.name.clone(),
                    w.partition,
                    run_id,
                    CompletionStatus::Success,
                    rows.len() as u64,
                    self.clock.now(),
                );
                let completion =
                    NewOutboxRow::for_completion(self.pipeline.completion_topic(&proc), &message);
                // What the store says about this holder before the write, by its clock.
                let current = backend.lease(&proc.name, w.partition);
                let legitimate =
                    lease::check_current(current.as_ref(), lease.token, self.clock.now()).is_ok();
                let outcome = backend
                    .fenced_write(&FencedWrite {
                        table: &proc.table,
                        processor: &proc.name,
                        partition: w.partition,
                        token: lease.token,
                        rows: &rows,
                        completion: &completion,
                    })
                    .map_err(err)?;
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
                        let newest = self
                            .written_tokens
                            .get(&(w.processor, w.partition))
                            .copied()
                            .unwrap_or(0);
                        if lease.token.get() < newest {
                            return Err(self.violation(
                                "G4",
                                format!("token {} wrote after token {newest}", lease.token),
                            ));
                        }
                        self.written_tokens
                            .insert((w.processor, w.partition), lease.token.get());
                        self.written_completions.insert(message.message_id.clone());
                        self.event("writes");
                    }
                    WriteOutcome::Fenced(_) => self.event("writes fenced"),
                }
                Phase::Release(lease)
            }
            Phase::Release(lease) => {
                if self.rng.chance(0.05) {
                    // The worker dies holding the lease; a scheduler will retry the job later.
                    self.event("workers crashed holding a lease");
                    self.workers[i].phase = Phase::Done;
                    return Ok(());
                }
                match backend
                    .release_lease(&proc.name, w.partition, lease.token)
                    .map_err(err)?
                {
                    Released::Released { follow_up: true } => {
                        self.event("follow-up runs");
                        Phase::Acquire
                    }
                    _ => Phase::Done,
                }
            }
        };
        self.workers[i].phase = next;
        Ok(())
    }

    fn relay(&mut self) -> Result<(), Violation> {
        let backend = self.backend.clone();
        let mut faults = Faults {
            rng: &mut self.rng,
            events: &mut self.events,
        };
        relay_once(backend.as_ref(), backend.as_ref(), 16, &mut faults).map_err(|e| Violation {
            seed: self.seed,
            step: self.step,
            guarantee: "backend",
            detail: e.to_string(),
        })?;
        Ok(())
    }

    fn consume(&mut self) -> Result<(), Violation> {
        let mut faults = Faults {
            rng: &mut self.rng,
            events: &mut self.events,
        };
        match self.consumer.poll_once(&mut faults) {
            Ok(_) | Err(baton_serve::Error::InjectedCrash(_)) => Ok(()),
            Err(e) => Err(self.violation("backend", e.to_string())),
        }
    }

    /// G1-G5 after a step.
    fn check(&self) -> Result<(), Violation> {
        let gate = &self.pipeline.gates[0];
        for &d in &self.dates {
            let doc = self
                .backend
                .document(&gate.id, d)
                .map_err(|e| self.violation("backend", e.to_string()))?;
            let triggers = self
                .backend
                .outbox_for(baton_ports::OutboxKind::Trigger, d)
                .map_err(|e| self.violation("backend", e.to_string()))?;
            if let Some(doc) = &doc {
                // G1: the count is derived, and only processors whose data was written are complete.
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
                for p in doc.completed() {
                    let written = self
                        .phase3
                        .iter()
                        .position(|q| q.name == p)
                        .is_some_and(|i| self.written_tokens.contains_key(&(i, d)));
                    if !written {
                        return Err(self.violation(
                            "G1",
                            format!("{d}: {p} recorded complete without a write"),
                        ));
                    }
                }
            }
            // G2: at most one trigger per generation.
            let mut per_generation: BTreeMap<u32, usize> = BTreeMap::new();
            for row in &triggers {
                let t: Trigger = serde_json::from_str(&row.row.payload)
                    .map_err(|e| self.violation("G2", e.to_string()))?;
                *per_generation.entry(t.generation).or_default() += 1;
            }
            if let Some((g, n)) = per_generation.iter().find(|(_, n)| **n > 1) {
                return Err(
                    self.violation("G2", format!("{d}: generation {g} triggered {n} times"))
                );
            }
            // G5: no duplicate keys, and a partition's rows come from one run.
            for (i, p) in self.phase3.iter().enumerate() {
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
                let count = self
                    .backend
                    .row_count(&p.table, d)
                    .map_err(|e| self.violation("backend", e.to_string()))?;
                if count > 6 {
                    return Err(self
                        .violation("G5", format!("{d}: {} has {count} rows for 6 keys", p.name)));
                }
            }
        }
        // G3: every accepted write's completion is in the outbox.
        let outbox: BTreeSet<String> = self
            .dates
            .iter()
            .flat_map(|d| {
                self.backend
                    .outbox_for(baton_ports::OutboxKind::Completion, *d)
                    .unwrap_or_default()
            })
            .map(|r| r.row.message_id)
            .collect();
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

    fn random_step(&mut self) -> Result<(), Violation> {
        let live: Vec<usize> = (0..self.workers.len())
            .filter(|&i| self.workers[i].phase != Phase::Done)
            .collect();
        match self.rng.range(0, 99) {
            0..=44 if !live.is_empty() => {
                let i = live[self.rng.index(live.len())];
                self.worker_step(i)
            }
            0..=54 => {
                let (p, d) = (
                    self.rng.index(self.phase3.len()),
                    self.dates[self.rng.index(self.dates.len())],
                );
                self.spawn_worker(p, d);
                Ok(())
            }
            55..=69 => self.relay(),
            70..=89 => self.consume(),
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

    /// Finishes every job and delivers every message, then checks the end state.
    fn drain(&mut self) -> Result<(), Violation> {
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
            // A scheduler retries jobs that never wrote (crashed holders, lost follow-ups).
            let missing: Vec<(usize, Partition)> = (0..self.phase3.len())
                .flat_map(|p| self.dates.iter().map(move |d| (p, *d)))
                .filter(|k| !self.written_tokens.contains_key(k))
                .collect();
            if let Some(&(p, d)) = missing.first() {
                self.clock
                    .advance(self.ttl() + SignedDuration::from_secs(1));
                self.spawn_worker(p, d);
                continue;
            }
            self.relay()?;
            self.consume()?;
            self.check()?;
            let backend = self.backend.clone();
            let pending = backend
                .pending(
                    &self.pipeline.gates[0].completion_topic,
                    baton_serve::ORCHESTRATOR_GROUP,
                )
                .unwrap_or(0);
            if pending == 0 && backend.backlog().map(|b| b.pending).unwrap_or(0) == 0 {
                return self.final_check();
            }
            self.clock
                .advance(self.pipeline.ack_wait + SignedDuration::from_secs(1));
        }
        Err(self.violation(
            "liveness",
            "the system did not quiesce within 5000 drain steps".into(),
        ))
    }

    fn final_check(&self) -> Result<(), Violation> {
        let gate = &self.pipeline.gates[0];
        for &d in &self.dates {
            let doc = self
                .backend
                .document(&gate.id, d)
                .ok()
                .flatten()
                .ok_or_else(|| self.violation("G2", format!("{d}: no document after drain")))?;
            // A completion redelivered past max_deliveries is dead-lettered (G8): it is
            // visible there for reconcile, and excused here; any other gap is a loss.
            let day = d.to_string();
            let dead: BTreeSet<String> = self
                .backend
                .dead_letters()
                .unwrap_or_default()
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.letter.payload).ok())
                .filter(|v| v["date"] == day)
                .filter_map(|v| v["processor"].as_str().map(str::to_owned))
                .collect();
            let recorded = doc.completed();
            for p in &self.phase3 {
                if !recorded.contains(&p.name) && !dead.contains(p.name.as_str()) {
                    return Err(self.violation("G1", format!("{d}: {} wrote its data but is not recorded after every completion was delivered", p.name)));
                }
            }
            let triggers = self
                .backend
                .outbox_for(baton_ports::OutboxKind::Trigger, d)
                .unwrap_or_default()
                .len();
            let satisfied = matches!(
                gate.evaluate(d, self.clock.now(), &recorded),
                baton_core::gate::Verdict::Satisfied { .. }
            );
            if satisfied != doc.triggered || triggers != usize::from(satisfied) {
                return Err(self.violation("G2", format!("{d}: policy satisfied={satisfied}, triggered={} with {triggers} trigger rows", doc.triggered)));
            }
        }
        Ok(())
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
