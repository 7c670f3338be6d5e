//! `health` sees what running `serve` instances report in their heartbeats.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::ManualClock;
use baton_core::config::Pipeline;
use baton_core::health::Level;
use baton_ports::StateStore;
use baton_serve::status::Heartbeat;
use baton_sqlite::{Durability, SqliteBackend};
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;

#[test]
fn a_serve_that_retried_backend_errors_shows_in_health() {
    let t0: Timestamp = "2024-03-02T12:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteBackend::open(&dir.path().join("b.db"), Durability::Full, clock.clone()).unwrap();
    let pipeline = Pipeline::reference().unwrap();
    let health = |now| {
        baton_serve::checks::health(&pipeline, &store, &store, &store, &[], now)
            .unwrap()
            .checks
            .into_iter()
            .find(|c| c.code == "BATON-H011")
            .unwrap()
    };
    assert_eq!(health(t0).level, Level::Pass, "no serve yet");

    let beat = Heartbeat {
        role: "serve".into(),
        host: "h1".into(),
        pid: 7,
        version: "0.1.0".into(),
        commit: "abc".into(),
        started_at: t0,
        backend_errors: vec![t0, t0],
        last_error: Some("backend temporarily unavailable: connection refused".into()),
        stopped_at: None,
    };
    store
        .put_ops_record(
            "instance/serve/h1/7",
            &serde_json::to_string(&beat).unwrap(),
            None,
        )
        .unwrap();
    let c = health(t0);
    assert_eq!(c.level, Level::Warn);
    assert!(
        c.evidence.contains("serve/h1/7 retried 2 backend errors"),
        "{}",
        c.evidence
    );

    // An hour later the errors have aged out, but the serve has gone silent since.
    let later = t0.checked_add(SignedDuration::from_mins(61)).unwrap();
    let c = health(later);
    assert_eq!(c.level, Level::Warn);
    assert!(
        c.evidence.contains("serve/h1/7 last heartbeat 1h1m ago"),
        "{}",
        c.evidence
    );
    assert!(!c.evidence.contains("retried"), "{}", c.evidence);
}

/// A bus that never answers: NATS down.
struct DownBus;

impl DownBus {
    fn down<T>() -> baton_ports::Result<T> {
        Err(baton_ports::Error::Retryable(
            "cannot connect to NATS at nats://127.0.0.1:4222: connection refused".into(),
        ))
    }
}

impl baton_ports::Bus for DownBus {
    fn publish(&self, _: &str, _: &str, _: &[u8]) -> baton_ports::Result<baton_ports::Published> {
        Self::down()
    }
    fn fetch(
        &self,
        _: &str,
        _: &str,
        _: usize,
        _: baton_ports::GroupSettings,
    ) -> baton_ports::Result<Vec<baton_ports::Delivery>> {
        Self::down()
    }
    fn ack(&self, _: &str, _: &str, _: &[i64]) -> baton_ports::Result<()> {
        Self::down()
    }
    fn pending(&self, _: &str, _: &str) -> baton_ports::Result<u64> {
        Self::down()
    }
    fn published_since(&self, _: &str, _: Timestamp) -> baton_ports::Result<u64> {
        Self::down()
    }
    fn messages(&self, _: &str) -> baton_ports::Result<Vec<baton_ports::Delivery>> {
        Self::down()
    }
}

#[test]
fn with_the_bus_down_only_the_check_that_needs_it_is_left_unjudged() {
    let t0: Timestamp = "2024-03-02T12:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteBackend::open(&dir.path().join("b.db"), Durability::Full, clock.clone()).unwrap();
    let pipeline = Pipeline::reference().unwrap();
    for t in &pipeline.tables {
        baton_ports::Warehouse::ensure_table(&store, t).unwrap();
    }
    let date = baton_core::model::Partition::parse("2024-03-01").unwrap();
    let report =
        baton_serve::checks::health(&pipeline, &store, &store, &DownBus, &[date], t0).unwrap();
    let unjudged: Vec<_> = (report.checks.iter())
        .filter(|c| c.level == Level::Unchecked)
        .collect();
    assert_eq!(unjudged.len(), 1, "{report:?}");
    assert_eq!(unjudged[0].code, "BATON-H007");
    assert!(
        unjudged[0].evidence.contains("the bus did not answer")
            && unjudged[0].evidence.contains("connection refused"),
        "{}",
        unjudged[0].evidence
    );
    // The store's checks are judged: the date's landings are missing.
    let h004 = report
        .checks
        .iter()
        .find(|c| c.code == "BATON-H004")
        .unwrap();
    assert_ne!(h004.level, Level::Unchecked);
    assert_eq!(report.exit_code(), if report.failures > 0 { 1 } else { 2 });
}
