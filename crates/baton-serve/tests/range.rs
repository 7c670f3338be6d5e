//! Health, reconcile and accuracy over a range of dates read the range once; what they
//! answer for the range is what they answer for each date alone. Checked on a store where
//! the dates differ: complete and triggered, waiting on a landing, landed but not run,
//! run but never consumed, a run whose process died, an owed run, nothing at all; on
//! SQLite and on the in-memory backend.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::{Clock, ManualClock};
use baton_core::config::Pipeline;
use baton_core::model::{FenceToken, Partition, ProcessorName, RunId};
use baton_ports::{
    Acquired, Bus, OnHeld, PendingRequest, RequestKind, RunRecord, RunStatus, StateStore, Warehouse,
};
use baton_runner::{NoHooks, RunOptions, Runner};
use baton_serve::checks;
use baton_serve::service::{Identity, Ports, ServeOptions, Service};
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;

const GAMEBOOK: &str = "nbac_gamebook_scraper";

trait Backend: StateStore + Warehouse + Bus {}
impl<T: StateStore + Warehouse + Bus> Backend for T {}

fn first_date() -> Partition {
    Partition::parse("2024-03-01").unwrap()
}

/// Ten dates of reference data, each left in a different state (see the module doc).
fn populate<B: Backend + 'static>(backend: Arc<B>, clock: Arc<ManualClock>) -> Arc<Pipeline> {
    let pipeline = Arc::new(Pipeline::reference().unwrap());
    let runner = Runner::new(
        pipeline.clone(),
        backend.clone(),
        backend.clone(),
        clock.clone(),
    );
    runner.ensure_tables().unwrap();
    let dates = first_date().through(first_date().offset(9));
    // The processors read a month of history: it is landed, without asking for runs.
    let history = first_date().offset(-30).through(first_date().offset(-1));
    let all: Vec<Partition> = history.iter().chain(&dates).copied().collect();
    for (table, rows) in baton_reference::generate(5, &all) {
        backend
            .land(pipeline.table(&table).unwrap(), &rows)
            .unwrap();
    }
    for d in history {
        for job in &pipeline.upstream {
            backend
                .record_landing(&job.name, d, clock.now(), &[])
                .unwrap();
        }
    }
    let land = |d: Partition, skip: &str| {
        for job in pipeline.upstream.iter().filter(|j| j.name != skip) {
            runner.record_landing(&job.name, d, clock.now()).unwrap();
        }
    };
    // Dates 0 and 1 complete through serve; date 2 waits for the gamebook.
    for d in &dates[..2] {
        land(*d, "");
    }
    land(dates[2], GAMEBOOK);
    serve_until_idle(&pipeline, backend.clone(), clock.clone());
    // Dates 3 and 4 landed without asking for runs (history); date 4 then ran one
    // processor whose completion nobody consumed.
    for d in [dates[3], dates[4]] {
        for job in &pipeline.upstream {
            backend
                .record_landing(&job.name, d, clock.now(), &[])
                .unwrap();
        }
    }
    let report = runner
        .run(
            "team_offense_game_summary",
            dates[4],
            &RunOptions::new("test"),
            &NoHooks,
        )
        .unwrap();
    assert!(
        matches!(report.outcome, baton_runner::RunOutcome::Ran),
        "{report:?}"
    );
    died_mid_run(backend.as_ref(), dates[5], clock.now());
    backend
        .record_request(&PendingRequest {
            processor: ProcessorName::from("player_game_summary"),
            partition: dates[6],
            kind: RequestKind::Requested,
            reason: "test".into(),
            since: clock.now(),
        })
        .unwrap();
    // A day later: landings are due, the dead run's lease has expired.
    clock.advance(SignedDuration::from_hours(24));
    pipeline
}

/// A run of `d` whose process died: started under a lease that then expires.
fn died_mid_run(store: &dyn StateStore, d: Partition, now: Timestamp) {
    let p = ProcessorName::from("team_defense_game_summary");
    let ttl = SignedDuration::from_mins(10);
    let Acquired::Granted(lease) = store
        .acquire_lease(&p, d, "w9", ttl, OnHeld::Report)
        .unwrap()
    else {
        panic!("the lease is free")
    };
    assert_ne!(lease.token, FenceToken::ZERO);
    store
        .start_run(&RunRecord {
            run_id: RunId::from("died"),
            processor: p,
            partition: d,
            holder: "w9".into(),
            token: lease.token,
            started_at: now,
            finished_at: None,
            status: RunStatus::Running,
            rows_written: 0,
            duplicates_dropped: 0,
            error: None,
        })
        .unwrap();
}

fn serve_until_idle<B: Backend + 'static>(
    pipeline: &Arc<Pipeline>,
    backend: Arc<B>,
    clock: Arc<ManualClock>,
) {
    let ports = Ports {
        pipeline: pipeline.clone(),
        store: backend.clone(),
        warehouse: backend.clone(),
        bus: backend,
        clock,
    };
    let identity = Identity {
        role: "serve".into(),
        host: "h1".into(),
        pid: 7,
        version: "0.1.0".into(),
        commit: "abc".into(),
    };
    let options = ServeOptions {
        poll: SignedDuration::from_millis(1),
        ..ServeOptions::default()
    };
    Service::new(options, ports, identity)
        .unwrap()
        .until_idle()
        .unwrap();
}

/// The range's answers against each date's, on a populated backend.
fn range_equals_each_date<B: Backend + 'static>(backend: Arc<B>, clock: Arc<ManualClock>) {
    let pipeline = populate(backend.clone(), clock.clone());
    let b = backend.as_ref();
    let now = clock.now();
    // Two dates past the populated ones, with nothing at all.
    let dates = first_date().through(first_date().offset(11));
    let gate = &pipeline.gates[0];

    let (range, system) = checks::health_facts(&pipeline, b, b, b, &dates, now).unwrap();
    let mut each = Vec::new();
    for &d in &dates {
        let (facts, s) = checks::health_facts(&pipeline, b, b, b, &[d], now).unwrap();
        assert_eq!(
            s, system,
            "{d}: the system facts do not depend on the dates"
        );
        each.extend(facts);
    }
    assert_eq!(range, each, "health facts of the range and of each date");

    let reconciled =
        checks::reconcile_dates(&pipeline, b, b, gate, &dates, now, checks::Mode::Report).unwrap();
    assert_eq!(reconciled.len(), dates.len());
    for (r, &d) in reconciled.iter().zip(&dates) {
        let alone = checks::reconcile_date(&pipeline, b, b, gate, d, now, false).unwrap();
        assert_eq!(
            r.before, alone.before,
            "{d}: reconcile of the range and alone"
        );
        assert_eq!(r.after, alone.after, "{d}");
        assert!(r.changes.is_empty(), "report mode changes nothing");
    }

    // Lateness reads the range's landings at once; each verdict is the job's landing of its
    // date as the per-date read has it.
    let lateness = baton_serve::status::lateness(&pipeline, b, &dates, now).unwrap();
    assert_eq!(lateness.len(), dates.len() * pipeline.upstream.len());
    for v in &lateness {
        let landed = b.landings(v.partition).unwrap();
        let alone = landed.iter().find(|l| l.job == v.job).map(|l| l.landed_at);
        assert_eq!(v.landed_at, alone, "{v:?}");
    }
    assert!(lateness.iter().any(|v| v.landed_at.is_some()));
    assert!(lateness.iter().any(|v| v.landed_at.is_none()));

    let (stored, actual) = checks::accuracy(&pipeline, b, b, gate, &dates, now).unwrap();
    let summed = dates.iter().fold((0, 0), |(s, a), &d| {
        let (ds, da) = checks::accuracy(&pipeline, b, b, gate, &[d], now).unwrap();
        (s + ds, a + da)
    });
    assert_eq!((stored, actual), summed);

    // The dates do differ, so the comparison above compared something.
    let with_findings = reconciled
        .iter()
        .filter(|r| !r.before.findings.is_empty())
        .count();
    assert!(with_findings >= 2, "{reconciled:?}");
    assert!(reconciled[0].before.triggered, "{:?}", reconciled[0].before);
    assert!(
        range[5].abandoned.iter().any(|a| a.run_id == "died"),
        "{:?}",
        range[5]
    );
    assert!(
        range[..2]
            .iter()
            .all(|d| d.actual == d.expected && d.expected > 0)
    );
    assert!(range.iter().any(|d| !d.landings.is_empty()));
    assert!(stored > 0 && actual > stored, "{stored} of {actual}");
}

#[test]
fn range_answers_equal_each_dates_on_sqlite() {
    let clock = Arc::new(ManualClock::new("2024-03-16T12:00:00Z".parse().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let backend = baton_sqlite::SqliteBackend::open(
        &dir.path().join("b.db"),
        baton_sqlite::Durability::Normal,
        clock.clone(),
    )
    .unwrap();
    range_equals_each_date(Arc::new(backend), clock);
}

#[test]
fn range_answers_equal_each_dates_in_memory() {
    let clock = Arc::new(ManualClock::new("2024-03-16T12:00:00Z".parse().unwrap()));
    let backend = baton_sim::mem::MemBackend::new(clock.clone());
    range_equals_each_date(Arc::new(backend), clock);
}

/// A warehouse that fails its per-date row counts for one date: a `reconcile --fix`
/// stopped half-way (a crash, a lost connection) at that date's repair.
struct FailsAt {
    inner: Arc<baton_sim::mem::MemBackend>,
    date: Partition,
}

impl baton_ports::engine::Transact for FailsAt {
    fn transact(
        &self,
        work: &mut dyn FnMut(&mut dyn baton_ports::engine::Transaction) -> baton_ports::Result<()>,
    ) -> baton_ports::Result<()> {
        baton_ports::engine::Transact::transact(self.inner.as_ref(), work)
    }
}

impl Warehouse for FailsAt {
    fn ensure_table(&self, table: &baton_core::config::TableSpec) -> baton_ports::Result<()> {
        self.inner.ensure_table(table)
    }
    fn land(
        &self,
        table: &baton_core::config::TableSpec,
        rows: &[baton_core::model::Row],
    ) -> baton_ports::Result<u64> {
        self.inner.land(table, rows)
    }
    fn read(
        &self,
        table: &baton_core::config::TableSpec,
        from: Partition,
        to: Partition,
    ) -> baton_ports::Result<Vec<baton_core::model::Row>> {
        self.inner.read(table, from, to)
    }
    fn row_count(
        &self,
        table: &baton_core::config::TableSpec,
        partition: Partition,
    ) -> baton_ports::Result<u64> {
        self.inner.row_count(table, partition)
    }
    fn measure(
        &self,
        table: &baton_core::config::TableSpec,
        partition: Partition,
        column: Option<&str>,
    ) -> baton_ports::Result<(u64, u64)> {
        self.inner.measure(table, partition, column)
    }
    fn distinct_values(
        &self,
        table: &baton_core::config::TableSpec,
        partition: Partition,
        column: &str,
    ) -> baton_ports::Result<std::collections::BTreeSet<String>> {
        self.inner.distinct_values(table, partition, column)
    }
    fn duplicate_rows(
        &self,
        table: &baton_core::config::TableSpec,
        partition: Partition,
    ) -> baton_ports::Result<u64> {
        self.inner.duplicate_rows(table, partition)
    }
    fn row_counts(
        &self,
        table: &baton_core::config::TableSpec,
        from: Partition,
        to: Partition,
    ) -> baton_ports::Result<std::collections::BTreeMap<Partition, u64>> {
        if from == self.date && to == self.date {
            return Err(baton_ports::Error::Retryable("connection lost".into()));
        }
        self.inner.row_counts(table, from, to)
    }
    fn duplicate_rows_between(
        &self,
        table: &baton_core::config::TableSpec,
        from: Partition,
        to: Partition,
    ) -> baton_ports::Result<std::collections::BTreeMap<Partition, u64>> {
        self.inner.duplicate_rows_between(table, from, to)
    }
}

#[test]
fn a_fix_stopped_half_way_keeps_the_record_of_each_date_it_repaired() {
    let clock = Arc::new(ManualClock::new("2024-03-16T12:00:00Z".parse().unwrap()));
    let backend = Arc::new(baton_sim::mem::MemBackend::new(clock.clone()));
    let pipeline = populate(backend.clone(), clock.clone());
    let dates = first_date().through(first_date().offset(9));
    // Date 3 too ran a processor whose completion nobody consumed: dates 3 and 4 both need
    // a repair, and the fix stops at date 4's.
    let runner = Runner::new(
        pipeline.clone(),
        backend.clone(),
        backend.clone(),
        clock.clone(),
    );
    runner
        .run(
            "team_offense_game_summary",
            dates[3],
            &RunOptions::new("test"),
            &NoHooks,
        )
        .unwrap();
    let warehouse = FailsAt {
        inner: backend.clone(),
        date: dates[4],
    };
    let gate = &pipeline.gates[0];
    let mode = checks::Mode::Fix { by: "test" };
    let err = checks::reconcile_dates(
        &pipeline,
        backend.as_ref(),
        &warehouse,
        gate,
        &dates,
        clock.now(),
        mode,
    )
    .unwrap_err();
    assert!(err.to_string().contains("connection lost"), "{err}");
    let repaired = baton_serve::timeline::repairs(backend.as_ref(), "repair/").unwrap();
    assert_eq!(
        repaired.iter().map(|r| r.date).collect::<Vec<_>>(),
        vec![dates[3]],
        "date 3's repair is recorded though the run stopped at date 4: {repaired:?}"
    );
    assert_eq!(repaired[0].by, "test");
    assert!(!repaired[0].changes.is_empty());
}
