//! Prometheus metrics: counters the `serve` loop feeds from what it did (messages by
//! outcome, triggers, relayed rows), and figures read from the store at each scrape
//! (accuracy per gate, outbox backlog and age, consumer lag, lateness, leases, and the runs
//! workers on every host recorded since this process started).
//!
//! Counters derived from run history count runs finished since this `serve` started, as a
//! Prometheus counter resets with its process.

use crate::Api;
use baton_core::model::Partition;
use baton_core::schedule::LandingStatus;
use baton_serve::{DrainReport, checks};
use jiff::Timestamp;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;
type Result<T> = std::result::Result<T, baton_serve::Error>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Every metric `serve` exposes.
pub struct Metrics {
    registry: Registry,
    consumed: Family<Labels, Counter>,
    triggers: Counter,
    relayed: Counter,
    phase_runs: Counter,
    runs: Family<Labels, Counter>,
    run_seconds: Family<Labels, Histogram>,
    fenced: Counter,
    takeovers: Counter,
    duplicates_dropped: Counter,
    rows_written: Counter,
    lease_grants: Gauge,
    leases_held: Gauge,
    leases_stale: Gauge,
    accuracy: Family<Labels, FloatGauge>,
    outbox_backlog: Gauge,
    outbox_age: FloatGauge,
    consumer_lag: Family<Labels, Gauge>,
    lateness: Family<Labels, FloatGauge>,
    dead_letters: Gauge,
    /// Runs already counted: the newest finish time seen, and the runs that finished then.
    seen: Mutex<(Timestamp, HashSet<String>)>,
}

impl Metrics {
    /// Registers every metric; runs that finished before `since` are not counted.
    pub fn new(pipeline: &baton_core::config::Pipeline, since: Timestamp) -> Self {
        let mut registry = Registry::with_prefix("baton");
        let m = Self::unregistered(since);
        // Registration order is the order of the exposition: counters, then gauges.
        m.register_counters(&mut registry);
        m.register_gauges(&mut registry);
        m.expose_zero_series(pipeline);
        Self { registry, ..m }
    }

    /// Every metric at zero, in an empty registry (`new` registers them in its own).
    fn unregistered(since: Timestamp) -> Self {
        Self {
            consumed: Family::default(),
            triggers: Counter::default(),
            relayed: Counter::default(),
            phase_runs: Counter::default(),
            runs: Family::default(),
            run_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.05, 2.0, 14))
            }),
            fenced: Counter::default(),
            takeovers: Counter::default(),
            duplicates_dropped: Counter::default(),
            rows_written: Counter::default(),
            lease_grants: Gauge::default(),
            leases_held: Gauge::default(),
            leases_stale: Gauge::default(),
            accuracy: Family::default(),
            outbox_backlog: Gauge::default(),
            outbox_age: FloatGauge::default(),
            consumer_lag: Family::default(),
            lateness: Family::default(),
            dead_letters: Gauge::default(),
            seen: Mutex::new((since, HashSet::new())),
            registry: Registry::default(),
        }
    }

    /// The counters: what the `serve` loop did, and the runs workers recorded.
    fn register_counters(&self, registry: &mut Registry) {
        registry.register(
            "messages_consumed",
            "Completion messages consumed, by outcome: applied (the first of a run), duplicate, conflicting_duplicate, stale, dead_lettered",
            self.consumed.clone(),
        );
        registry.register(
            "triggers",
            "Next-phase triggers decided",
            self.triggers.clone(),
        );
        registry.register(
            "outbox_relayed",
            "Outbox rows published",
            self.relayed.clone(),
        );
        registry.register(
            "phase_runs",
            "Next-phase runs started by triggers",
            self.phase_runs.clone(),
        );
        registry.register(
            "runs",
            "Processor runs finished, by processor and status",
            self.runs.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Processor run durations",
            self.run_seconds.clone(),
        );
        registry.register(
            "fenced_writes_rejected",
            "Writes refused because the writer's lease was taken over (a stale holder)",
            self.fenced.clone(),
        );
        registry.register(
            "lease_takeovers",
            "Runs whose lease was taken over from an earlier holder that never released it (it died or stalled past its lease)",
            self.takeovers.clone(),
        );
        registry.register(
            "duplicates_dropped",
            "Rows dropped by pre-write dedup on the primary key",
            self.duplicates_dropped.clone(),
        );
        registry.register(
            "rows_written",
            "Rows written by fenced upserts",
            self.rows_written.clone(),
        );
    }

    /// The gauges read from the store at each scrape: leases, accuracy, outbox, consumer
    /// lag, lateness and dead letters.
    fn register_gauges(&self, registry: &mut Registry) {
        registry.register(
            "lease_grants",
            "Lease grants ever made (the sum of fencing tokens: each acquisition or takeover adds one)",
            self.lease_grants.clone(),
        );
        registry.register(
            "leases_held",
            "Leases held and live",
            self.leases_held.clone(),
        );
        registry.register(
            "leases_stale",
            "Leases expired and never released (a holder died)",
            self.leases_stale.clone(),
        );
        registry.register(
            "completion_accuracy_ratio",
            "Recorded completions over actual ones, per gate, over the last 7 dates (1 = exact)",
            self.accuracy.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Outbox rows not yet published",
            self.outbox_backlog.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row",
            self.outbox_age.clone(),
        );
        registry.register(
            "consumer_lag",
            "Messages not yet acked, per topic and consumer group",
            self.consumer_lag.clone(),
        );
        registry.register(
            "upstream_lateness_seconds",
            "How late each upstream job is for its latest due date (0 when on time)",
            self.lateness.clone(),
        );
        registry.register(
            "dead_letters",
            "Messages in the dead-letter queue",
            self.dead_letters.clone(),
        );
    }

    /// Creates the series a dashboard expects before anything happened.
    fn expose_zero_series(&self, pipeline: &baton_core::config::Pipeline) {
        // Every outcome is exposed from the start, at zero, so a rate() has a series.
        for outcome in baton_serve::OUTCOME_NAMES {
            let _ = self
                .consumed
                .get_or_create(&labels(&[("outcome", outcome)]));
        }
        for p in &pipeline.processors {
            let _ = self
                .run_seconds
                .get_or_create(&labels(&[("processor", p.name.as_str())]));
        }
    }

    /// Counts what one `serve` round did.
    pub fn observe_drain(&self, report: &DrainReport) {
        for (outcome, n) in &report.outcomes {
            self.consumed
                .get_or_create(&labels(&[("outcome", outcome)]))
                .inc_by(*n as u64);
        }
        self.triggers.inc_by(report.triggers as u64);
        self.relayed.inc_by(report.relayed as u64);
        self.phase_runs
            .inc_by((report.phase_runs + report.owed_runs) as u64);
    }

    /// Reads the store's figures and encodes everything in the OpenMetrics text format.
    pub fn render(&self, api: &Api) -> Result<String> {
        self.refresh(api)?;
        let mut out = String::new();
        encode(&mut out, &self.registry)
            .map_err(|e| baton_ports::Error::Permanent(format!("encoding metrics: {e}")))
            .map_err(baton_serve::Error::from)?;
        Ok(out)
    }

    /// Reads the store's and the bus's figures into the gauges (and counts new runs).
    fn refresh(&self, api: &Api) -> Result<()> {
        let now = api.clock.now();
        self.count_new_runs(api)?;
        self.refresh_leases(api, now)?;
        self.refresh_outbox(api, now)?;
        self.refresh_gates(api, now)?;
        self.refresh_lateness(api, now)
    }

    /// Lease grants (the sum of fence tokens), and leases held live or stale.
    fn refresh_leases(&self, api: &Api, now: Timestamp) -> Result<()> {
        let leases = api.store.leases()?;
        self.lease_grants
            .set(leases.iter().map(|l| l.token.get() as i64).sum());
        self.leases_held.set(
            leases
                .iter()
                .filter(|l| !l.released && l.expires_at > now)
                .count() as i64,
        );
        self.leases_stale.set(
            leases
                .iter()
                .filter(|l| !l.released && l.expires_at <= now)
                .count() as i64,
        );
        Ok(())
    }

    /// The outbox backlog and its oldest row's age, and the dead-letter queue's size.
    fn refresh_outbox(&self, api: &Api, now: Timestamp) -> Result<()> {
        let backlog = api.store.backlog()?;
        self.outbox_backlog.set(backlog.pending as i64);
        self.outbox_age.set(
            backlog
                .oldest
                .map_or(0.0, |t| now.duration_since(t).as_secs_f64().max(0.0)),
        );
        self.dead_letters
            .set(api.store.dead_letters()?.len() as i64);
        Ok(())
    }

    /// Per gate: completion accuracy over the last 7 dates, and the lag of the consumers
    /// of its completion topic (the orchestrator) and its trigger topic (the next phase).
    fn refresh_gates(&self, api: &Api, now: Timestamp) -> Result<()> {
        let pipeline = &api.pipeline;
        let today = Partition::new(now.to_zoned(pipeline.timezone.clone()).date());
        let week = today.offset(-6).through(today);
        for gate in &pipeline.gates {
            let (stored, actual) = checks::accuracy(
                pipeline,
                api.store.as_ref(),
                api.warehouse.as_ref(),
                gate,
                &week,
                now,
            )?;
            let ratio = if actual == 0 {
                1.0
            } else {
                stored as f64 / actual as f64
            };
            self.accuracy
                .get_or_create(&labels(&[("gate", gate.id.as_str())]))
                .set(ratio);
            let completion = api
                .bus
                .pending(&gate.completion_topic, baton_serve::ORCHESTRATOR_GROUP)?;
            self.consumer_lag
                .get_or_create(&labels(&[
                    ("topic", &gate.completion_topic),
                    ("group", baton_serve::ORCHESTRATOR_GROUP),
                ]))
                .set(completion as i64);
            let group = baton_serve::phase_group(gate.next_phase);
            let trigger = api.bus.pending(&gate.trigger_topic, &group)?;
            self.consumer_lag
                .get_or_create(&labels(&[
                    ("topic", &gate.trigger_topic),
                    ("group", &group),
                ]))
                .set(trigger as i64);
        }
        Ok(())
    }

    /// How late each upstream job is for its latest due date (0 when on time or not due).
    fn refresh_lateness(&self, api: &Api, now: Timestamp) -> Result<()> {
        for v in checks::latest_landings(&api.pipeline, api.store.as_ref(), now)? {
            let late = match v.status {
                LandingStatus::Late => v
                    .landed_at
                    .map_or(0.0, |at| at.duration_since(v.expected_at).as_secs_f64()),
                LandingStatus::Missing => now.duration_since(v.expected_at).as_secs_f64(),
                LandingStatus::OnTime | LandingStatus::NotDue => 0.0,
            };
            self.lateness
                .get_or_create(&labels(&[("job", &v.job)]))
                .set(late.max(0.0));
        }
        Ok(())
    }

    /// Counts runs that finished since the last scrape, once each.
    fn count_new_runs(&self, api: &Api) -> Result<()> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (since, at_since) = &mut *seen;
        let runs = api.store.runs_finished_since(*since)?;
        let mut newest = *since;
        let mut by_partition: std::collections::HashMap<Partition, Vec<baton_ports::RunRecord>> =
            std::collections::HashMap::new();
        for run in &runs {
            let Some(finished) = run.finished_at else {
                continue;
            };
            if finished == *since && at_since.contains(run.run_id.as_str()) {
                continue;
            }
            self.runs
                .get_or_create(&labels(&[
                    ("processor", run.processor.as_str()),
                    ("status", run.status.as_str()),
                ]))
                .inc();
            self.run_seconds
                .get_or_create(&labels(&[("processor", run.processor.as_str())]))
                .observe(
                    finished
                        .duration_since(run.started_at)
                        .as_secs_f64()
                        .max(0.0),
                );
            if run.status == baton_ports::RunStatus::Fenced {
                self.fenced.inc();
            }
            // A takeover: an earlier run of the same (processor, date) under an older token
            // never released (still `running`) or was fenced.
            if run.token.get() > 1 {
                let earlier = match by_partition.entry(run.partition) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(api.store.runs(run.partition)?)
                    }
                };
                if earlier.iter().any(|r| {
                    r.processor == run.processor
                        && r.token < run.token
                        && matches!(
                            r.status,
                            baton_ports::RunStatus::Running
                                | baton_ports::RunStatus::Fenced
                                | baton_ports::RunStatus::Abandoned
                        )
                }) {
                    self.takeovers.inc();
                }
            }
            self.duplicates_dropped.inc_by(run.duplicates_dropped);
            self.rows_written.inc_by(run.rows_written);
            newest = newest.max(finished);
        }
        if newest > *since {
            at_since.clear();
        }
        at_since.extend(
            runs.iter()
                .filter(|r| r.finished_at == Some(newest))
                .map(|r| r.run_id.to_string()),
        );
        *since = newest;
        Ok(())
    }
}
