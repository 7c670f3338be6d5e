//! The wake signal each backend kind starts for `serve` ([`baton_backends::Admin::start_wake`])
//! passes the shared conformance exercise: on SQLite, and on PostgreSQL (`NOTIFY`) with NATS
//! (the subscription on baton's subjects) against servers started for the test.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_backends::{Kind, Settings, open};
use baton_core::clock::SystemClock;
use std::sync::Arc;

fn settings(sqlite_path: std::path::PathBuf) -> Settings {
    Settings {
        sqlite_path,
        sqlite_full_sync: false,
        database_url: None,
        nats_url: None,
        clock: Arc::new(SystemClock),
        inject_clock: false,
        write_stall: None,
        read_only: false,
        sqlite_busy_timeout: None,
    }
}

#[test]
fn the_sqlite_wake_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(Kind::Sqlite, &settings(dir.path().join("baton.db"))).unwrap();
    let wake = b.admin.start_wake().unwrap();
    baton_conformance::exercise_wake(b.store.as_ref(), b.bus.as_ref(), wake.as_ref());
}

#[test]
fn the_postgres_and_nats_wake_conforms() {
    let pg = baton_testkit::Postgres::start()
        .expect("PostgreSQL must be installed (./test.sh installs it)");
    let nats = baton_testkit::Nats::start()
        .expect("nats-server must be installed (./test.sh installs it)");
    let dir = tempfile::tempdir().unwrap();
    let b = open(
        Kind::Postgres,
        &Settings {
            database_url: Some(pg.create_database("wake").unwrap()),
            nats_url: Some(nats.url()),
            ..settings(dir.path().join("unused.db"))
        },
    )
    .unwrap();
    let wake = b.admin.start_wake().unwrap();
    baton_conformance::exercise_wake(b.store.as_ref(), b.bus.as_ref(), wake.as_ref());
}
