//! Retention through the real paths, on SQLite: one date rerun hundreds of times (runs
//! through the runner's lease, fenced write and run history; completions relayed onto the
//! table bus and consumed by `serve`'s loop) grows run history, the outbox and the bus by a
//! row per rerun; after each prune every table is back under its bound (at most `keep_runs`
//! runs per (processor, date), the date's trigger row, no message every group has passed),
//! however many reruns came before, and no verdict of health, reconcile, explain or status
//! changed.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::{Clock, ManualClock};
use baton_core::config::Pipeline;
use baton_core::model::{Partition, ProcessorName};
use baton_core::retention::RetentionPolicy;
use baton_ports::retention::{self, Mode};
use baton_ports::{StateStore, Warehouse};
use baton_runner::{NoHooks, RunOptions, Runner};
use baton_serve::service::{Identity, Ports, ServeOptions, Service};
use baton_serve::{checks, explain, status};
use baton_sqlite::SqliteBackend;
use jiff::SignedDuration;
use std::sync::Arc;

const RERUN: &str = "team_offense_game_summary";
const RERUNS_PER_ROUND: usize = 100;

fn date() -> Partition {
    Partition::parse("2024-03-01").unwrap()
}

fn policy() -> RetentionPolicy {
    RetentionPolicy {
        keep_runs: 10,
        older_than: SignedDuration::from_hours(24 * 7),
        batch: 64,
    }
}

/// The date complete and triggered through `serve`, over a month of landed history.
fn populate(backend: &Arc<SqliteBackend>, clock: &Arc<ManualClock>) -> (Arc<Pipeline>, Runner) {
    let pipeline = Arc::new(Pipeline::reference().unwrap());
    let runner = Runner::new(
        pipeline.clone(),
        backend.clone(),
        backend.clone(),
        clock.clone(),
    );
    runner.ensure_tables().unwrap();
    let history = date().offset(-30).through(date().offset(-1));
    let all: Vec<Partition> = history.iter().copied().chain([date()]).collect();
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
    for job in &pipeline.upstream {
        runner
            .record_landing(&job.name, date(), clock.now())
            .unwrap();
    }
    service(&pipeline, backend, clock, None)
        .until_idle()
        .unwrap();
    (pipeline, runner)
}

fn service(
    pipeline: &Arc<Pipeline>,
    backend: &Arc<SqliteBackend>,
    clock: &Arc<ManualClock>,
    retention_every: Option<SignedDuration>,
) -> Service {
    let ports = Ports {
        pipeline: pipeline.clone(),
        store: backend.clone(),
        warehouse: backend.clone(),
        bus: backend.clone(),
        clock: clock.clone(),
    };
    let options = ServeOptions {
        poll: SignedDuration::from_millis(1),
        reconcile_every: None,
        retention_every,
        ..ServeOptions::default()
    };
    Service::new(options, ports, identity()).unwrap()
}

fn identity() -> Identity {
    Identity {
        role: "serve".into(),
        host: "h1".into(),
        pid: 7,
        version: "0.1.0".into(),
        commit: "abc".into(),
    }
}

/// Rows of the three tables that grow per rerun: runs, outbox, bus_messages.
fn counts(b: &SqliteBackend) -> [i64; 3] {
    b.with_write_transaction(|tx| {
        let count = |table: &str| {
            tx.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| baton_ports::Error::Permanent(e.to_string()))
        };
        Ok([count("runs")?, count("outbox")?, count("bus_messages")?])
    })
    .unwrap()
}

/// Every verdict a person reads about the dates around the date: health's checks, each
/// date's reconcile findings, its explanation (without the timeline, which is history) and
/// its status.
fn verdicts(pipeline: &Pipeline, b: &SqliteBackend, now: jiff::Timestamp) -> String {
    let dates = date().offset(-1).through(date().offset(1));
    let health = checks::health(pipeline, b, b, b, &dates, now).unwrap();
    let levels: Vec<String> = (health.checks.iter())
        .map(|c| format!("{} {:?}", c.code, c.level))
        .collect();
    let gate = &pipeline.gates[0];
    let reconciled: Vec<_> =
        checks::reconcile_dates(pipeline, b, b, gate, &dates, now, checks::Mode::Report)
            .unwrap()
            .into_iter()
            .map(|r| r.before)
            .collect();
    let gates: Vec<_> = pipeline.gates.iter().collect();
    let explained: Vec<_> = (dates.iter())
        .map(|&d| {
            let e = explain::explain(pipeline, b, b, &gates, d, now).unwrap();
            (e.gates, e.owed_runs, e.landings)
        })
        .collect();
    let status = status::verdicts(pipeline, b, b, &dates, now).unwrap();
    format!("{levels:#?}\n{reconciled:#?}\n{explained:#?}\n{status:#?}")
}

#[test]
fn a_date_rerun_hundreds_of_times_stays_bounded_after_each_prune_and_no_verdict_changes() {
    let clock = Arc::new(ManualClock::new("2024-03-02T12:00:00Z".parse().unwrap()));
    let backend = Arc::new(SqliteBackend::open_in_memory(clock.clone()).unwrap());
    let (pipeline, runner) = populate(&backend, &clock);
    let b = backend.as_ref();
    let mut after_prune = Vec::new();
    for round in 0..3 {
        let start = counts(b);
        for _ in 0..RERUNS_PER_ROUND {
            let report = runner
                .run(RERUN, date(), &RunOptions::new("test"), &NoHooks)
                .unwrap();
            assert!(
                matches!(report.outcome, baton_runner::RunOutcome::Ran),
                "{report:?}"
            );
            clock.advance(SignedDuration::from_mins(1));
        }
        service(&pipeline, &backend, &clock, None)
            .until_idle()
            .unwrap();
        let grown = counts(b);
        for (table, (g, s)) in ["runs", "outbox", "bus_messages"]
            .iter()
            .zip(grown.iter().zip(start))
        {
            assert!(
                *g >= s + RERUNS_PER_ROUND as i64,
                "round {round}: {table} grew by a row per rerun: {s} -> {g}"
            );
        }
        // Past the window, then prune: directly, and in the last round through `serve`'s loop.
        clock.advance(SignedDuration::from_hours(24 * 8));
        let now = clock.now();
        // The round below heartbeats before it prunes: the instance is live in both views.
        baton_serve::service::write_heartbeat(b, &identity(), now, &[], None).unwrap();
        let before = verdicts(&pipeline, b, now);
        if round < 2 {
            let report = retention::prune(b, b, &policy(), now, Mode::Delete).unwrap();
            assert!(report.runs >= RERUNS_PER_ROUND as u64 - 10, "{report:?}");
        } else {
            let p = Arc::new(Pipeline {
                retention: baton_core::config::RetentionConfig {
                    policy: policy(),
                    every: SignedDuration::from_hours(1),
                },
                ..(*pipeline).clone()
            });
            let mut serve = service(&p, &backend, &clock, Some(SignedDuration::from_hours(1)));
            let served = serve.round().unwrap();
            assert!(served.pruned.is_some_and(|r| r.runs > 0), "{served:?}");
        }
        assert_eq!(
            verdicts(&pipeline, b, now),
            before,
            "round {round}: a prune changed a verdict"
        );
        // The bound of run history: at most `keep_runs` per (processor, date) (the best
        // successful run is among them: every rerun succeeds).
        let runs = backend.runs(date()).unwrap();
        for p in &pipeline.processors {
            let kept = runs.iter().filter(|r| r.processor == p.name).count();
            assert!(kept <= 10, "round {round}: {kept} runs of {} kept", p.name);
        }
        let mine = runs
            .iter()
            .filter(|r| r.processor == ProcessorName::from(RERUN))
            .count();
        assert_eq!(mine, 10, "round {round}");
        let pruned = counts(b);
        // The figure in BENCHMARKS.md (`cargo test -p baton-serve --test retention -- --nocapture`).
        eprintln!(
            "after {} reruns: runs, outbox, bus_messages before the prune {grown:?}, after {pruned:?}",
            (round + 1) * RERUNS_PER_ROUND
        );
        after_prune.push(pruned);
    }
    let runs_bound = (pipeline.processors.len() * 10) as i64;
    for (round, [runs, outbox, bus]) in after_prune.iter().enumerate() {
        assert!(*runs <= runs_bound, "round {round}: {runs} runs");
        // What stays: the trigger row of the date's one generation, and one message no
        // consumer group has passed.
        assert_eq!((*outbox, *bus), (1, 1), "round {round}");
    }
}
