//! baton-serve: the service tasks that move messages: the completion consumer (the
//! orchestrator), the outbox relay and the trigger consumer that starts the next phase.
//!
//! Each task (and the raw-landings consumer, [`landings::LandingConsumer`]) is a
//! `poll_once` over the ports plus a loop in [`drain`]; faults for the demo
//! and the simulator are injected through [`ConsumerFaults`] and [`RelayFaults`], which the
//! real service leaves at their no-op defaults. The long-running `serve` loop around them
//! (heartbeats, alerts, periodic reconcile, retrying backend errors) is
//! [`service::Service`].
//!
//! Invariant: a delivery is acked only after the transaction that applied it committed;
//! a crash in between redelivers it, and the step's idempotence absorbs the repeat.
//! Invariant: nothing is dropped silently: a message that cannot be parsed, names an
//! unknown processor, or was delivered `max_deliveries` times goes to the dead-letter
//! queue with its reason.
#![deny(missing_docs)]

pub mod alerting;
pub mod checks;
pub mod dead_letters;
pub mod explain;
pub mod landings;
pub mod range;
pub mod report;
pub mod scheduling;
pub mod service;
pub mod status;
pub mod timeline;

use baton_core::clock::Clock;
use baton_core::completion::{self, Outcome, Trigger};
use baton_core::completion::{Document, StepOutput};
use baton_core::config::Pipeline;
use baton_core::dead_letter::{FIELD_CAP_BYTES, clip};
use baton_core::message::CompletionMessage;
use baton_core::model::GateId;
use baton_core::quality::CheckResult;
use baton_ports::consume::{ConsumeHandler, Sorted, Take};
use baton_ports::{Bus, Delivery, GroupSettings, NewDeadLetter, StateStore, Warehouse, Work};
use baton_runner::{RunHooks, RunOptions, Runner};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Errors of the service tasks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A backend failed.
    #[error(transparent)]
    Backend(#[from] baton_ports::Error),
    /// A run failed to start.
    #[error(transparent)]
    Runner(#[from] baton_runner::Error),
    /// Bad operational configuration (a notifier's URL missing), found at start.
    #[error("{0}")]
    Config(String),
    /// An injected crash (demo and simulator only).
    #[error("injected crash: {0}")]
    InjectedCrash(&'static str),
}

impl Error {
    /// Whether retrying may succeed (a backend restarting, a dropped connection), directly
    /// or under a run the trigger consumer started.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Backend(b) | Error::Runner(baton_runner::Error::Backend(b)) => b.is_retryable(),
            _ => false,
        }
    }
}

/// The consumer group of the orchestrator on every completion topic.
pub const ORCHESTRATOR_GROUP: &str = "orchestrator";
/// Messages fetched and applied per transaction (group commit).
pub const BATCH_MAX: usize = 512;

/// Faults the consumer can be asked to suffer (the demo's `--faults`, the simulator).
pub trait ConsumerFaults {
    /// Reorders a fetched batch.
    fn reorder(&mut self, _batch: &mut Vec<Delivery>) {}
    /// Whether to drop this delivery (not apply, not ack: it comes back after the ack wait).
    fn drop_delivery(&mut self, _delivery: &Delivery) -> bool {
        false
    }
    /// Whether this delivery is lost: acked without being applied, as the original
    /// orchestrator did while it was down (a push endpoint that answered 200).
    fn lose_delivery(&mut self, _delivery: &Delivery) -> bool {
        false
    }
    /// Whether to crash after the commit and before the ack.
    fn crash_before_ack(&mut self) -> bool {
        false
    }
}

/// No faults.
#[derive(Debug, Default)]
pub struct NoFaults;
impl ConsumerFaults for NoFaults {}
impl RelayFaults for NoFaults {}

/// What one poll of the consumer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConsumeReport {
    /// Deliveries fetched.
    pub fetched: usize,
    /// Deliveries dropped by an injected fault.
    pub dropped: usize,
    /// Deliveries lost by an injected fault (acked, never applied).
    pub lost: usize,
    /// Outcomes by name (`applied`, `duplicate`, `rejected`, ...).
    pub outcomes: BTreeMap<String, usize>,
    /// Triggers written to the outbox.
    pub triggers: usize,
}

/// The orchestrator: consumes completion topics and applies the step.
pub struct Consumer {
    pipeline: Arc<Pipeline>,
    store: Arc<dyn StateStore>,
    warehouse: Arc<dyn Warehouse>,
    bus: Arc<dyn Bus>,
    clock: Arc<dyn Clock>,
}

/// The date and processor a payload names, for logs about messages that may not parse
/// (`-` where it names none).
fn payload_fields(payload: &[u8]) -> (String, String) {
    use baton_core::message::Field;
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let field = |field: Field| {
        field
            .aliases()
            .iter()
            .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
            .map(|x| clip(x, FIELD_CAP_BYTES).into_owned())
            .unwrap_or_else(|| "-".to_owned())
    };
    (field(Field::Date), field(Field::Processor))
}

/// Per (gate, date) of a batch: its quality checks, measured just before the batch, and
/// the step's facts (processors with a rerun in flight, processors with work on the date).
type QualityByDate =
    BTreeMap<(String, baton_core::Partition), (Vec<CheckResult>, completion::StepFacts)>;

/// Every name a completion's outcome is counted under (in [`DrainReport::outcomes`]).
pub const OUTCOME_NAMES: [&str; 5] = [
    "applied",
    "duplicate",
    "conflicting_duplicate",
    "stale",
    "dead_lettered",
];

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Applied => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::ConflictingDuplicate { .. } => "conflicting_duplicate",
        Outcome::Stale => "stale",
        Outcome::Rejected { .. } => "dead_lettered",
    }
}

impl Consumer {
    /// A consumer over the ports.
    pub fn new(
        pipeline: Arc<Pipeline>,
        store: Arc<dyn StateStore>,
        warehouse: Arc<dyn Warehouse>,
        bus: Arc<dyn Bus>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            pipeline,
            store,
            warehouse,
            bus,
            clock,
        }
    }

    /// Fetches one batch per gate, applies it in one transaction, then acks it.
    pub fn poll_once(&self, faults: &mut dyn ConsumerFaults) -> Result<ConsumeReport, Error> {
        let mut report = ConsumeReport::default();
        let settings = GroupSettings {
            ack_wait: self.pipeline.ack_wait,
        };
        for gate in &self.pipeline.gates {
            self.poll_gate(gate, settings, faults, &mut report)?;
        }
        Ok(report)
    }

    /// One gate's batch, through [`StateStore::consume`]: taken, sorted into work, applied,
    /// and acked only with (or after) the transaction that applied it, so a crash in
    /// between redelivers it.
    fn poll_gate(
        &self,
        gate: &baton_core::gate::Gate,
        settings: GroupSettings,
        faults: &mut dyn ConsumerFaults,
        report: &mut ConsumeReport,
    ) -> Result<(), Error> {
        let take = Take {
            bus: self.bus.as_ref(),
            topic: &gate.completion_topic,
            group: ORCHESTRATOR_GROUP,
            max: BATCH_MAX,
            settings,
        };
        let mut batch = GateBatch {
            consumer: self,
            gate,
            faults,
            report,
            now: self.clock.now(),
            quality: QualityByDate::new(),
            triggers: 0,
            failure: None,
        };
        let consumed = match self.store.consume(&take, &mut batch) {
            Ok(c) => c,
            Err(e) => return Err(batch.failure.take().unwrap_or(Error::Backend(e))),
        };
        let triggers = batch.triggers;
        report.fetched += consumed.fetched;
        report.triggers += triggers;
        for (w, o) in consumed.work.iter().zip(&consumed.outcomes) {
            if let Work::Completion { gate, message } = w {
                tracing::debug!(gate = %gate, date = %message.partition, processor = %message.processor, message_id = %message.message_id, outcome = outcome_name(o), "completion applied");
            }
            *report
                .outcomes
                .entry(outcome_name(o).to_owned())
                .or_default() += 1;
        }
        Ok(())
    }

    /// Sorts a fetched batch into the work to apply and the sequence numbers to ack,
    /// passing each delivery by the injected faults (dropped ones are not acked, lost ones
    /// are acked and never applied).
    fn sort_batch(
        &self,
        topic: &str,
        gate: &baton_core::gate::Gate,
        batch: Vec<Delivery>,
        faults: &mut dyn ConsumerFaults,
        report: &mut ConsumeReport,
    ) -> (Vec<Work>, Vec<i64>) {
        let mut work = Vec::with_capacity(batch.len());
        let mut seqs = Vec::with_capacity(batch.len());
        for delivery in batch {
            if faults.drop_delivery(&delivery) {
                report.dropped += 1;
                continue;
            }
            if faults.lose_delivery(&delivery) {
                report.lost += 1;
                seqs.push(delivery.seq);
                continue;
            }
            seqs.push(delivery.seq);
            work.push(self.classify(topic, gate, &delivery));
        }
        (work, seqs)
    }

    /// Measures the quality checks for every gate and date in the batch, before the
    /// transaction (they read the warehouse).
    fn measure_batch(&self, work: &[Work], now: Timestamp) -> Result<QualityByDate, Error> {
        let pipeline = &self.pipeline;
        let mut quality = QualityByDate::new();
        let owed = self.store.pending_requests()?;
        for w in work {
            if let Work::Completion { gate: gid, message } = w {
                let key = (gid.to_string(), message.partition);
                if quality.contains_key(&key) {
                    continue;
                }
                if let Some(g) = pipeline.gate(gid.as_str()) {
                    let results = checks::measure(
                        pipeline,
                        self.warehouse.as_ref(),
                        g,
                        message.partition,
                        now,
                    )?;
                    let facts = checks::step_facts(
                        pipeline,
                        self.warehouse.as_ref(),
                        &owed,
                        g,
                        message.partition,
                    )?;
                    quality.insert(key, (results, facts));
                }
            }
        }
        Ok(quality)
    }

    fn classify(&self, topic: &str, gate: &baton_core::gate::Gate, delivery: &Delivery) -> Work {
        let letter = |reason: String| {
            let (date, processor) = payload_fields(&delivery.payload);
            let letter = NewDeadLetter::new(
                topic,
                Some(&delivery.message_id),
                &delivery.payload,
                &reason,
            );
            let message_id = clip(&delivery.message_id, FIELD_CAP_BYTES);
            tracing::warn!(gate = %gate.id, %date, %processor, %message_id, topic, reason = %letter.reason, "dead-lettered");
            Work::DeadLetter(letter)
        };
        if delivery.attempt > self.pipeline.max_deliveries {
            return letter(format!(
                "delivered {} times without being acknowledged (max_deliveries = {})",
                delivery.attempt - 1,
                self.pipeline.max_deliveries
            ));
        }
        match CompletionMessage::parse(&delivery.payload, &self.pipeline) {
            Ok(message) => {
                let gate_id = message.gate.clone().unwrap_or_else(|| gate.id.clone());
                Work::Completion {
                    gate: gate_id,
                    message,
                }
            }
            Err(rejection) => letter(rejection.0),
        }
    }
}

/// One gate's batch as the store's consume sees the consumer: sorting (with the injected
/// faults and the quality measurements, before the transaction) and the completion step.
struct GateBatch<'a> {
    consumer: &'a Consumer,
    gate: &'a baton_core::gate::Gate,
    faults: &'a mut dyn ConsumerFaults,
    report: &'a mut ConsumeReport,
    now: Timestamp,
    quality: QualityByDate,
    /// Triggers the step fired (counted only if the consume commits).
    triggers: usize,
    /// The consumer's own error behind a backend error this handler returned.
    failure: Option<Error>,
}

impl GateBatch<'_> {
    /// The backend error to hand the store for `e`, keeping `e` to return in its place.
    fn stash(&mut self, e: Error) -> baton_ports::Error {
        match e {
            Error::Backend(b) => b,
            other => {
                let kept = baton_ports::Error::Permanent(other.to_string());
                self.failure = Some(other);
                kept
            }
        }
    }
}

impl ConsumeHandler for GateBatch<'_> {
    fn sort(&mut self, mut batch: Vec<Delivery>) -> baton_ports::Result<Sorted> {
        self.faults.reorder(&mut batch);
        let topic = &self.gate.completion_topic;
        let (work, ack) =
            self.consumer
                .sort_batch(topic, self.gate, batch, &mut *self.faults, self.report);
        self.now = self.consumer.clock.now();
        match self.consumer.measure_batch(&work, self.now) {
            Ok(q) => self.quality = q,
            Err(e) => return Err(self.stash(e)),
        }
        Ok(Sorted { work, ack })
    }

    fn step(
        &mut self,
        doc: Option<Document>,
        gate_id: &GateId,
        message: &CompletionMessage,
    ) -> StepOutput {
        let pipeline = &self.consumer.pipeline;
        let gate = pipeline.gate(gate_id.as_str()).unwrap_or(self.gate);
        let (results, facts) = match self.quality.get(&(gate_id.to_string(), message.partition)) {
            Some((r, f)) => (r.as_slice(), f.clone()),
            None => (&[][..], Default::default()),
        };
        let out = completion::step_settling(doc, message, gate, self.now, results, &facts);
        if let Some(b) = out
            .document
            .blocked
            .as_ref()
            .filter(|_| !out.document.triggered)
        {
            tracing::error!(gate = %gate.id, date = %message.partition, processor = %message.processor, message_id = %message.message_id, check = %b.check, evidence = %b.evidence, "quality check failed: trigger blocked");
        }
        let fired = out
            .effects
            .iter()
            .filter(|e| matches!(e, completion::Effect::PublishTrigger(_)))
            .count();
        if fired > 0 {
            for w in &out.document.warnings {
                tracing::warn!(gate = %gate.id, date = %message.partition, check = %w.check, evidence = %w.evidence, "quality check warned: triggered with a warning");
            }
        }
        self.triggers += fired;
        out
    }

    fn before_ack(&mut self) -> baton_ports::Result<()> {
        if self.faults.crash_before_ack() {
            return Err(self.stash(Error::InjectedCrash("after apply, before ack")));
        }
        Ok(())
    }
}

/// Faults the relay can be asked to suffer.
pub trait RelayFaults {
    /// Extra copies to publish of a row, each under a distinct bus id (an at-least-once
    /// producer that retried: the orchestrator must absorb them).
    fn extra_copies(&mut self, _message_id: &str) -> u32 {
        0
    }
}

/// How long a relay's claim on outbox rows lasts before another relay may take them.
pub const RELAY_CLAIM: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// Publishes up to `limit` outbox rows and marks them published; returns how many.
/// A crash between publish and mark republishes with the same id: the bus drops it.
pub fn relay_once(
    store: &dyn StateStore,
    bus: &dyn Bus,
    limit: usize,
    faults: &mut dyn RelayFaults,
) -> Result<usize, Error> {
    let relayed = store.relay(bus, limit, RELAY_CLAIM, &mut |row| {
        let copies = faults.extra_copies(&row.row.message_id);
        (1..=copies)
            .map(|copy| format!("{}#copy{copy}", row.row.message_id))
            .collect()
    })?;
    Ok(relayed)
}

/// The consumer group that runs a gate's next phase.
pub fn phase_group(next_phase: u32) -> String {
    format!("phase{next_phase}-runner")
}

/// Runs the next phase for each trigger delivered on the gates' trigger topics.
pub struct TriggerConsumer {
    pipeline: Arc<Pipeline>,
    bus: Arc<dyn Bus>,
    runner: Arc<Runner>,
    holder: String,
}

/// What one poll of the trigger consumer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TriggerReport {
    /// Triggers handled.
    pub triggers: usize,
    /// Processor runs that wrote data.
    pub runs_ok: usize,
    /// Processor runs that did not (deferred, failed, coalesced).
    pub runs_not_ok: usize,
    /// Triggers of a generation the next phase had already run for: nothing ran (G10).
    pub already_handled: usize,
}

impl TriggerConsumer {
    /// A trigger consumer.
    pub fn new(
        pipeline: Arc<Pipeline>,
        bus: Arc<dyn Bus>,
        runner: Arc<Runner>,
        holder: impl Into<String>,
    ) -> Self {
        Self {
            pipeline,
            bus,
            runner,
            holder: holder.into(),
        }
    }

    /// The runner it runs phases and owed runs with.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Runs the next phase for a trigger, once per (gate, date, generation) (G10): a
    /// generation the next phase already ran for (a redelivered or replayed trigger, or an
    /// older one arriving late) runs nothing. The generation is recorded after every run of
    /// the phase succeeded; a crash before that reruns the phase on redelivery, which writes
    /// the same rows through the fence.
    fn run_next_phase(
        &self,
        gate: &baton_core::gate::Gate,
        trigger: &Trigger,
        hooks: &dyn RunHooks,
        report: &mut TriggerReport,
    ) -> Result<(), Error> {
        let store = self.runner.store();
        let handled = checks::next_phase_generation(store, gate, trigger.partition)?;
        if handled.is_some_and(|h| h >= trigger.generation) {
            tracing::info!(gate = %gate.id, date = %trigger.partition, generation = trigger.generation, "the next phase already ran for this generation; nothing to do");
            report.already_handled += 1;
            return Ok(());
        }
        tracing::info!(gate = %gate.id, date = %trigger.partition, generation = trigger.generation, phase = gate.next_phase, "trigger received: running the next phase");
        let mut all_ok = true;
        for processor in self.pipeline.phase(gate.next_phase) {
            let options = RunOptions::new(self.holder.clone());
            let run =
                self.runner
                    .run(processor.name.as_str(), trigger.partition, &options, hooks)?;
            if run.succeeded() {
                report.runs_ok += 1
            } else {
                all_ok = false;
                report.runs_not_ok += 1
            }
        }
        if all_ok {
            let now = self.runner.now();
            checks::record_next_phase(store, &gate.id, trigger.partition, trigger.generation, now)?;
        }
        Ok(())
    }

    /// Handles one batch of triggers per gate, acking each after its phase ran.
    pub fn poll_once(&self, hooks: &dyn RunHooks) -> Result<TriggerReport, Error> {
        let mut report = TriggerReport::default();
        let settings = GroupSettings {
            ack_wait: self.pipeline.ack_wait,
        };
        for gate in &self.pipeline.gates {
            let group = phase_group(gate.next_phase);
            for delivery in self.bus.fetch(&gate.trigger_topic, &group, 64, settings)? {
                let trigger: Trigger = match serde_json::from_slice(&delivery.payload) {
                    Ok(t) => t,
                    Err(e) => {
                        // Nothing is dropped: the trigger goes to the dead-letter queue with
                        // its reason before it is acked.
                        let (date, _) = payload_fields(&delivery.payload);
                        let letter = NewDeadLetter::new(
                            &gate.trigger_topic,
                            Some(&delivery.message_id),
                            &delivery.payload,
                            &format!("unreadable trigger: {e}"),
                        );
                        let message_id = clip(&delivery.message_id, FIELD_CAP_BYTES);
                        tracing::warn!(gate = %gate.id, %date, processor = "-", %message_id, reason = %letter.reason, "trigger dead-lettered");
                        self.runner.store().dead_letter(&letter)?;
                        self.bus.ack(&gate.trigger_topic, &group, &[delivery.seq])?;
                        continue;
                    }
                };
                report.triggers += 1;
                self.run_next_phase(gate, &trigger, hooks, &mut report)?;
                self.bus.ack(&gate.trigger_topic, &group, &[delivery.seq])?;
            }
        }
        Ok(report)
    }
}

/// What a drain did in total.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Outbox rows relayed.
    pub relayed: usize,
    /// Completion outcomes by name.
    pub outcomes: BTreeMap<String, usize>,
    /// Triggers decided.
    pub triggers: usize,
    /// Injected consumer crashes survived.
    pub crashes: usize,
    /// Deliveries dropped by injected faults.
    pub dropped: usize,
    /// Next-phase runs that wrote data.
    pub phase_runs: usize,
    /// Owed runs (deferred or partial) that ran once their inputs landed.
    pub owed_runs: usize,
    /// Landings recorded from the raw-landings topic.
    pub landings: usize,
    /// Landing notices dead-lettered (unreadable, unknown job or table, failed).
    pub landings_dead_lettered: usize,
    /// Whether its last pass moved anything (fetched, relayed, ran): more may be waiting.
    pub progressed: bool,
    /// Whether it stopped with messages unacked or outbox rows unpublished that did not
    /// move (deliveries in flight until their ack wait passes): only time releases them.
    pub in_flight: bool,
}

/// Everything a drain drives.
pub struct Services<'a> {
    /// The pipeline.
    pub pipeline: &'a Pipeline,
    /// The store.
    pub store: &'a dyn StateStore,
    /// The bus.
    pub bus: &'a dyn Bus,
    /// The orchestrator.
    pub consumer: &'a Consumer,
    /// The next-phase runner, if this process runs it.
    pub triggers: Option<&'a TriggerConsumer>,
    /// The raw-landings consumer, if this process records landings from the bus.
    pub landings: Option<&'a landings::LandingConsumer>,
}

/// Runs relay, consumer and trigger consumer until nothing is pending anywhere. When only
/// in-flight (unacked) deliveries remain, `wait` is called to let their ack wait pass
/// (a clock jump in the demo, a sleep in `serve --until-idle`). Gives up after
/// `rounds_max` rounds.
pub fn drain(
    services: &Services<'_>,
    consumer_faults: &mut dyn ConsumerFaults,
    relay_faults: &mut dyn RelayFaults,
    hooks: &dyn RunHooks,
    wait: &mut dyn FnMut(),
    rounds_max: usize,
) -> Result<DrainReport, Error> {
    let mut total = DrainReport::default();
    for _ in 0..rounds_max {
        // The bus's part may fail (NATS restarting) while the store's goes on: owed runs
        // need only the store, so they run even then, and the bus's error is returned after.
        let bus_part = drain_bus_once(services, consumer_faults, relay_faults, hooks, &mut total);
        let owed_progressed = run_owed(services, hooks, &mut total)?;
        let progressed = bus_part? | owed_progressed;
        total.progressed = progressed;
        if progressed {
            continue;
        }
        total.in_flight = pending(services)? > 0 || services.store.backlog()?.pending > 0;
        if !total.in_flight {
            return Ok(total);
        }
        wait();
    }
    Ok(total)
}

/// One pass over what the bus carries: relay, landings, completions (and the relay of the
/// triggers they wrote), triggers; true when anything moved.
fn drain_bus_once(
    services: &Services<'_>,
    consumer_faults: &mut dyn ConsumerFaults,
    relay_faults: &mut dyn RelayFaults,
    hooks: &dyn RunHooks,
    total: &mut DrainReport,
) -> Result<bool, Error> {
    let relayed = relay_once(services.store, services.bus, 1024, relay_faults)?;
    total.relayed += relayed;
    let mut progressed = relayed > 0;
    // Landings first: the readers they request run in this same round.
    if let Some(lc) = services.landings {
        let r = lc.poll_once()?;
        progressed |= r.fetched > 0;
        total.landings += r.recorded;
        total.landings_dead_lettered += r.dead_lettered;
    }
    match services.consumer.poll_once(consumer_faults) {
        Ok(r) => {
            progressed |= r.fetched > 0;
            total.dropped += r.dropped;
            total.triggers += r.triggers;
            for (k, v) in r.outcomes {
                *total.outcomes.entry(k).or_default() += v;
            }
            // The triggers it just wrote go out now, so the trigger consumer below runs
            // them in this round instead of the next one's.
            if r.triggers > 0 {
                total.relayed += relay_once(services.store, services.bus, 1024, relay_faults)?;
            }
        }
        Err(Error::InjectedCrash(_)) => {
            total.crashes += 1;
            progressed = true;
        }
        Err(e) => return Err(e),
    }
    if let Some(tc) = services.triggers {
        let r = tc.poll_once(hooks)?;
        progressed |= r.triggers > 0;
        total.phase_runs += r.runs_ok;
    }
    Ok(progressed)
}

/// Owed runs (requested by a landing, a schedule or a dependency's new output, deferred
/// until inputs land, partial runs to redo, coalesced follow-ups of a holder that died)
/// whose inputs have landed since; true when any ran. One that fails for a transient reason
/// stays owed and is tried again on a later round.
fn run_owed(
    services: &Services<'_>,
    hooks: &dyn RunHooks,
    total: &mut DrainReport,
) -> Result<bool, Error> {
    let Some(tc) = services.triggers else {
        return Ok(false);
    };
    let owed = tc
        .runner
        .retry_pending(&RunOptions::new(tc.holder.clone()), hooks)?;
    total.owed_runs += owed.iter().filter(|r| r.succeeded()).count();
    Ok(owed.iter().any(|r| !r.attempts.is_empty()))
}

/// Messages not yet acked by the orchestrator, the trigger consumers or the landings
/// consumer.
pub fn pending(services: &Services<'_>) -> Result<u64, Error> {
    let mut n = match services.landings {
        Some(lc) => lc.pending()?,
        None => 0,
    };
    for gate in &services.pipeline.gates {
        n += services
            .bus
            .pending(&gate.completion_topic, ORCHESTRATOR_GROUP)?;
        if services.triggers.is_some() {
            n += services
                .bus
                .pending(&gate.trigger_topic, &phase_group(gate.next_phase))?;
        }
    }
    Ok(n)
}
