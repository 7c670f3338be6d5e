//! The shared conformance suite, run against the SQLite backend (on a file, in WAL mode).

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use baton_sqlite::{Durability, SqliteBackend};
use std::sync::Arc;

fn on_file(clock: Arc<baton_core::ManualClock>) -> SqliteBackend {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("baton.db");
    // Keep the directory for the test's lifetime: the backend outlives this function.
    std::mem::forget(dir);
    SqliteBackend::open(&path, Durability::Full, clock).expect("open sqlite")
}

#[test]
fn sqlite_state_store_conforms() {
    baton_conformance::exercise_state_store(on_file);
}

#[test]
fn sqlite_warehouse_conforms() {
    baton_conformance::exercise_warehouse(on_file);
}

#[test]
fn sqlite_bus_conforms() {
    baton_conformance::exercise_bus(on_file, &|clock, d| clock.advance(d));
}
