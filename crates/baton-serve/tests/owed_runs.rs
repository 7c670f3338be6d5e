//! Runs baton itself requested (a landing, a schedule, a dependency's new output, a
//! coalesced follow-up) are owed until they succeed: `serve` runs them while the bus is
//! down, and one that fails for a transient reason stays owed and is run on a later round.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::{Clock, ManualClock};
use baton_core::config::{Pipeline, TableSpec};
use baton_core::health::Level;
use baton_core::model::{FenceToken, Partition, ProcessorName, Row, RunId};
use baton_ports::engine::{Transact, Transaction};
use baton_ports::{
    Bus, Delivery, GroupSettings, PendingRequest, Published, RequestKind, RunEnd, RunRecord,
    RunStatus, StateStore, Warehouse,
};
use baton_serve::service::{Identity, Ports, ServeOptions, Service};
use baton_sim::mem::MemBackend;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const CONTEXT: &str = "upcoming_player_game_context";

fn unavailable(what: &str) -> baton_ports::Error {
    baton_ports::Error::Retryable(format!("{what}: connection refused"))
}

/// A bus that refuses every operation while `down`: NATS restarting.
struct DownBus {
    inner: Arc<MemBackend>,
    down: AtomicBool,
}

impl DownBus {
    fn check(&self) -> baton_ports::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(unavailable("NATS"));
        }
        Ok(())
    }
}

impl Bus for DownBus {
    fn publish(&self, topic: &str, id: &str, payload: &[u8]) -> baton_ports::Result<Published> {
        self.check()?;
        self.inner.publish(topic, id, payload)
    }
    fn fetch(
        &self,
        topic: &str,
        group: &str,
        max: usize,
        settings: GroupSettings,
    ) -> baton_ports::Result<Vec<Delivery>> {
        self.check()?;
        self.inner.fetch(topic, group, max, settings)
    }
    fn ack(&self, topic: &str, group: &str, seqs: &[i64]) -> baton_ports::Result<()> {
        self.check()?;
        self.inner.ack(topic, group, seqs)
    }
    fn pending(&self, topic: &str, group: &str) -> baton_ports::Result<u64> {
        self.check()?;
        self.inner.pending(topic, group)
    }
    fn published_since(&self, topic: &str, since: Timestamp) -> baton_ports::Result<u64> {
        self.check()?;
        self.inner.published_since(topic, since)
    }
    fn messages(&self, topic: &str) -> baton_ports::Result<Vec<Delivery>> {
        self.check()?;
        self.inner.messages(topic)
    }
}

/// A warehouse whose next `failing` reads fail as a database restarting would.
struct FlakyWarehouse {
    inner: Arc<MemBackend>,
    failing: AtomicUsize,
}

impl Transact for FlakyWarehouse {
    fn transact(
        &self,
        work: &mut dyn FnMut(&mut dyn Transaction) -> baton_ports::Result<()>,
    ) -> baton_ports::Result<()> {
        self.inner.transact(work)
    }
}

impl Warehouse for FlakyWarehouse {
    fn ensure_table(&self, table: &TableSpec) -> baton_ports::Result<()> {
        self.inner.ensure_table(table)
    }
    fn land(&self, table: &TableSpec, rows: &[Row]) -> baton_ports::Result<u64> {
        self.inner.land(table, rows)
    }
    fn read(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
    ) -> baton_ports::Result<Vec<Row>> {
        let left = self.failing.load(Ordering::SeqCst);
        if left > 0 {
            self.failing.store(left - 1, Ordering::SeqCst);
            return Err(unavailable("PostgreSQL"));
        }
        self.inner.read(table, from, to)
    }
    fn row_count(&self, table: &TableSpec, partition: Partition) -> baton_ports::Result<u64> {
        self.inner.row_count(table, partition)
    }
    fn measure(
        &self,
        table: &TableSpec,
        partition: Partition,
        column: Option<&str>,
    ) -> baton_ports::Result<(u64, u64)> {
        self.inner.measure(table, partition, column)
    }
    fn distinct_values(
        &self,
        table: &TableSpec,
        partition: Partition,
        column: &str,
    ) -> baton_ports::Result<BTreeSet<String>> {
        self.inner.distinct_values(table, partition, column)
    }
    fn duplicate_rows(&self, table: &TableSpec, partition: Partition) -> baton_ports::Result<u64> {
        self.inner.duplicate_rows(table, partition)
    }
    fn row_counts(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
    ) -> baton_ports::Result<BTreeMap<Partition, u64>> {
        self.inner.row_counts(table, from, to)
    }
    fn duplicate_rows_between(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
    ) -> baton_ports::Result<BTreeMap<Partition, u64>> {
        self.inner.duplicate_rows_between(table, from, to)
    }
}

struct Env {
    pipeline: Arc<Pipeline>,
    clock: Arc<ManualClock>,
    backend: Arc<MemBackend>,
    bus: Arc<DownBus>,
    warehouse: Arc<FlakyWarehouse>,
    date: Partition,
}

/// Every upstream job landed for the date, and a run of the upcoming-game context owed
/// (as a landing or a schedule records it).
fn env() -> Env {
    let t0: Timestamp = "2024-06-03T10:30:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let backend = Arc::new(MemBackend::new(clock.clone()));
    let pipeline = Arc::new(Pipeline::reference().unwrap());
    let date = Partition::parse("2024-06-03").unwrap();
    for job in &pipeline.upstream {
        backend.record_landing(&job.name, date, t0, &[]).unwrap();
    }
    backend
        .record_request(&PendingRequest {
            processor: ProcessorName::from(CONTEXT),
            partition: date,
            kind: RequestKind::Requested,
            reason: "requested by a schedule".into(),
            since: t0,
        })
        .unwrap();
    Env {
        bus: Arc::new(DownBus {
            inner: backend.clone(),
            down: AtomicBool::new(false),
        }),
        warehouse: Arc::new(FlakyWarehouse {
            inner: backend.clone(),
            failing: AtomicUsize::new(0),
        }),
        pipeline,
        clock,
        backend,
        date,
    }
}

impl Env {
    fn service(&self) -> Service {
        self.service_with(ServeOptions {
            reconcile_every: None,
            ..ServeOptions::default()
        })
    }

    fn service_with(&self, options: ServeOptions) -> Service {
        let ports = Ports {
            pipeline: self.pipeline.clone(),
            store: self.backend.clone(),
            warehouse: self.warehouse.clone(),
            bus: self.bus.clone(),
            clock: self.clock.clone(),
        };
        let identity = Identity {
            role: "serve".into(),
            host: "h1".into(),
            pid: 7,
            version: "0.1.0".into(),
            commit: "abc".into(),
        };
        Service::new(options, ports, identity).unwrap()
    }

    fn owed(&self) -> bool {
        self.backend
            .pending_requests()
            .unwrap()
            .iter()
            .any(|r| r.processor.as_str() == CONTEXT && r.partition == self.date)
    }

    fn succeeded_runs(&self) -> usize {
        self.backend
            .runs(self.date)
            .unwrap()
            .iter()
            .filter(|r| r.processor.as_str() == CONTEXT && r.status != RunStatus::Failed)
            .filter(|r| r.finished_at.is_some() && r.status != RunStatus::Fenced)
            .count()
    }
}

#[test]
fn owed_runs_go_on_while_the_bus_is_down() {
    let e = env();
    let mut service = e.service();
    e.bus.down.store(true, Ordering::SeqCst);
    let round = service.round().unwrap();
    assert!(
        round
            .backend_error
            .as_deref()
            .is_some_and(|m| m.contains("NATS")),
        "the round reports the bus: {round:?}"
    );
    // On main the round stopped at the relay, and the owed run waited for the bus.
    assert_eq!(e.succeeded_runs(), 1, "the owed run ran with the bus down");
    assert!(!e.owed(), "and is no longer owed");
    // Its completion waits in the outbox for the bus.
    assert!(e.backend.backlog().unwrap().pending > 0);
    e.bus.down.store(false, Ordering::SeqCst);
    e.clock.advance(SignedDuration::from_secs(1));
    let round = service.round().unwrap();
    assert!(round.backend_error.is_none(), "{round:?}");
    assert!(round.drain.relayed > 0, "relayed once the bus is back");
}

#[test]
fn an_owed_run_that_fails_for_a_transient_reason_stays_owed_until_it_succeeds() {
    let e = env();
    let mut service = e.service();
    e.warehouse.failing.store(1, Ordering::SeqCst);
    let round = service.round().unwrap();
    assert!(
        round
            .backend_error
            .as_deref()
            .is_some_and(|m| m.contains("PostgreSQL")),
        "{round:?}"
    );
    assert_eq!(e.succeeded_runs(), 0);
    assert!(e.owed(), "a transient failure keeps the run owed");
    // Later rounds run it (once a lease the failed try may hold has lapsed).
    for _ in 0..3 {
        e.clock
            .advance(e.pipeline.lease_ttl + SignedDuration::from_secs(1));
        service.round().unwrap();
    }
    assert_eq!(e.succeeded_runs(), 1, "run once it could");
    assert!(!e.owed(), "and no longer owed");
}

#[test]
fn a_past_date_whose_only_run_failed_before_writing_fails_health_with_nothing_owed() {
    // 2026-11-20 of the issue: a run was attempted and failed before it wrote anything, so
    // there is no completion document at all, and nothing is owed for the date.
    let e = env();
    let yesterday = e.date.offset(-1);
    for job in &e.pipeline.upstream {
        e.backend
            .record_landing(&job.name, yesterday, e.clock.now(), &[])
            .unwrap();
    }
    let run_id = RunId::from("failed-at-start");
    e.backend
        .start_run(&RunRecord {
            run_id: run_id.clone(),
            processor: ProcessorName::from("team_offense_game_summary"),
            partition: yesterday,
            holder: "w1".into(),
            token: FenceToken::ZERO,
            started_at: e.clock.now(),
            finished_at: None,
            status: RunStatus::Running,
            rows_written: 0,
            duplicates_dropped: 0,
            error: None,
        })
        .unwrap();
    let failed = RunEnd {
        status: RunStatus::Failed,
        rows_written: 0,
        duplicates_dropped: 0,
        error: Some("backend temporarily unavailable".into()),
    };
    e.backend.finish_run(&run_id, &failed).unwrap();
    let gate = &e.pipeline.gates[0];
    assert!(e.backend.document(&gate.id, yesterday).unwrap().is_none());
    let report = baton_serve::checks::health(
        &e.pipeline,
        e.backend.as_ref(),
        e.backend.as_ref(),
        e.backend.as_ref(),
        &[yesterday],
        e.clock.now(),
    )
    .unwrap();
    let h012 = report
        .checks
        .iter()
        .find(|c| c.code == "BATON-H012")
        .unwrap();
    assert_eq!(h012.level, Level::Fail, "{h012:?}");
    assert!(
        h012.details
            .iter()
            .any(|d| d.contains("BATON-R009") && d.contains("team_offense_game_summary")),
        "{h012:?}"
    );
}

#[test]
fn the_periodic_reconcile_does_not_repair_a_completion_still_on_its_way() {
    // A `serve` starting with runs owed: the first round runs them, and their completions
    // wait in the outbox for the next round's relay. A reconcile in that round saw the runs
    // without their completions and "repaired" the date: a false repair, recorded and
    // reported, and the completions then arrived as duplicates.
    let e = env();
    let mut service = e.service_with(ServeOptions {
        reconcile_every: Some(SignedDuration::from_secs(300)),
        ..ServeOptions::default()
    });
    let mut repairs = Vec::new();
    let mut reconciled = 0;
    for _ in 0..10 {
        let round = service.round().unwrap();
        assert!(round.backend_error.is_none(), "{round:?}");
        if let Some(r) = round.reconciled {
            reconciled += 1;
            repairs.extend(r.into_iter().filter(|r| !r.changes.is_empty()));
        }
        e.clock.advance(SignedDuration::from_millis(10));
    }
    assert_eq!(e.succeeded_runs(), 1, "the owed run ran");
    assert_eq!(
        reconciled, 1,
        "the reconcile due at start ran once the loop was idle"
    );
    assert!(
        repairs.is_empty(),
        "nothing was lost, nothing repaired: {repairs:?}"
    );
}
