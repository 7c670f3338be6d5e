//! Metrics derived from run history: what workers on other hosts did is counted once.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::ManualClock;
use baton_core::config::Pipeline;
use baton_core::model::{FenceToken, Partition, ProcessorName, RunId};
use baton_http::{Api, Metrics};
use baton_ports::{RunEnd, RunRecord, StateStore};
use baton_sqlite::{Durability, SqliteBackend};
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;

fn run(id: &str, token: u64, at: Timestamp) -> RunRecord {
    RunRecord {
        run_id: RunId::from(id),
        processor: ProcessorName::from("player_game_summary"),
        partition: Partition::parse("2024-03-01").unwrap(),
        holder: id.into(),
        token: FenceToken::new(token),
        started_at: at,
        finished_at: None,
        status: baton_ports::RunStatus::Running,
        rows_written: 0,
        duplicates_dropped: 0,
        error: None,
    }
}

fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_takeover_a_fenced_write_and_dropped_duplicates_are_counted_once() {
    let t0: Timestamp = "2024-03-02T12:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteBackend::open(&dir.path().join("b.db"), Durability::Full, clock.clone()).unwrap(),
    );
    let pipeline = Pipeline::reference().unwrap();
    for t in &pipeline.tables {
        baton_ports::Warehouse::ensure_table(store.as_ref(), t).unwrap();
    }
    let metrics = Arc::new(Metrics::new(&pipeline, t0));
    let api = Api {
        pipeline,
        store: store.clone(),
        warehouse: store.clone(),
        bus: store.clone(),
        clock: clock.clone(),
        token: None,
        metrics: metrics.clone(),
    };
    // Holder A starts and stalls; B takes the lease over (token 2) and writes; A is fenced.
    store.start_run(&run("a", 1, t0)).unwrap();
    store.start_run(&run("b", 2, t0)).unwrap();
    clock.advance(SignedDuration::from_secs(5));
    let end = |status: baton_ports::RunStatus, dropped| RunEnd {
        status,
        rows_written: 10,
        duplicates_dropped: dropped,
        error: None,
    };
    store
        .finish_run(&RunId::from("b"), &end(baton_ports::RunStatus::Success, 3))
        .unwrap();
    let text = metrics.render(&api).unwrap();
    assert_eq!(value(&text, "baton_lease_takeovers_total"), 1.0, "{text}");
    assert_eq!(value(&text, "baton_duplicates_dropped_total"), 3.0);
    assert!(
        text.contains("baton_run_duration_seconds_count{processor=\"player_game_summary\"} 1"),
        "{text}"
    );

    clock.advance(SignedDuration::from_secs(5));
    store
        .finish_run(&RunId::from("a"), &end(baton_ports::RunStatus::Fenced, 0))
        .unwrap();
    let text = metrics.render(&api).unwrap();
    assert_eq!(value(&text, "baton_fenced_writes_rejected_total"), 1.0);
    assert_eq!(
        value(&text, "baton_lease_takeovers_total"),
        1.0,
        "counted once across scrapes"
    );
    assert_eq!(
        value(&text, "baton_duplicates_dropped_total"),
        3.0,
        "counted once across scrapes"
    );
}
