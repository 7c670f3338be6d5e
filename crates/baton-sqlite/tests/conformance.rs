//! The shared conformance suite, run against the SQLite backend (on a file, in WAL mode).

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use baton_core::ManualClock;
use baton_sqlite::{Durability, SqliteBackend};
use jiff::SignedDuration;
use std::sync::Arc;

fn on_file(clock: Arc<baton_core::ManualClock>) -> SqliteBackend {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("baton.db");
    // Keep the directory for the test's lifetime: the backend outlives this function.
    std::mem::forget(dir);
    SqliteBackend::open(&path, Durability::Full, clock).expect("open sqlite")
}

/// The backend on `dir`'s `baton.db` (several may share it, as processes do).
fn on_file_in(dir: &std::path::Path, clock: ManualClock) -> SqliteBackend {
    SqliteBackend::open(&dir.join("baton.db"), Durability::Full, Arc::new(clock))
        .expect("open sqlite")
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

/// The orchestrator's consume from the backend's own bus: one transaction per batch.
#[test]
fn sqlite_consume_conforms() {
    baton_conformance::exercise_consume(
        |c| {
            let b = Arc::new(on_file(c));
            (b.clone(), b as Arc<dyn baton_ports::Bus>)
        },
        &|clock, d| clock.advance(d),
    );
}

/// The relay onto the backend's own bus (one transaction) and onto another database's.
#[test]
fn sqlite_relay_conforms() {
    baton_conformance::exercise_relay(|c| {
        let b = Arc::new(on_file(c));
        (b.clone(), b as Arc<dyn baton_ports::Bus>)
    });
    baton_conformance::exercise_relay(|c| {
        let bus: Arc<dyn baton_ports::Bus> = Arc::new(on_file(c.clone()));
        (Arc::new(on_file(c)), bus)
    });
}

/// The consume from a bus in another database: fetch, apply, ack (the default).
#[test]
fn sqlite_consume_from_another_bus_conforms() {
    baton_conformance::exercise_consume(
        |c| {
            let bus: Arc<dyn baton_ports::Bus> = Arc::new(on_file(c.clone()));
            (Arc::new(on_file(c)), bus)
        },
        &|clock, d| clock.advance(d),
    );
}

/// A database whose dead letters were stored as text (schema version 5) keeps them across
/// the migration to byte payloads, open and with their reasons.
#[test]
fn dead_letters_stored_as_text_survive_the_migration_to_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE dead_letters (
                id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, message_id TEXT,
                payload TEXT NOT NULL, reason TEXT NOT NULL, recorded_at INTEGER NOT NULL);
             INSERT INTO dead_letters (topic, message_id, payload, reason, recorded_at)
                VALUES ('t', 'm1', '{\"date\":\"2024-03-01\"}', 'not JSON', 1700000000000000);
             PRAGMA user_version = 5;",
        )
        .unwrap();
    }
    let clock = Arc::new(baton_core::ManualClock::new(
        "2024-03-02T00:00:00Z".parse().unwrap(),
    ));
    let store = SqliteBackend::open(&path, Durability::Full, clock).unwrap();
    use baton_ports::StateStore;
    let letters = store.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].letter.payload, br#"{"date":"2024-03-01"}"#);
    assert_eq!(letters[0].letter.reason, "not JSON");
    assert_eq!(letters[0].state, baton_core::dead_letter::LetterState::Open);
}

#[test]
fn sqlite_wake_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let backend = on_file_in(
        dir.path(),
        ManualClock::new(baton_conformance::start_time()),
    );
    baton_conformance::exercise_wake(&backend, &backend, &backend);
}

/// Another connection (another process: `baton publish`, a worker) committing to the file
/// wakes a waiter through the file watch; this connection's own writes that create no
/// work for it (a heartbeat) do not.
#[test]
fn another_connections_commit_wakes_a_waiter_and_its_own_writes_do_not() {
    use baton_ports::{Bus, StateStore, Wake};
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(baton_conformance::start_time());
    let serve = on_file_in(dir.path(), clock);
    let other = on_file_in(
        dir.path(),
        ManualClock::new(baton_conformance::start_time()),
    );
    let short = SignedDuration::from_millis(300);
    // The first wait starts the watch and takes whatever opening the file raised.
    while serve.wait(short).unwrap() {}
    serve
        .put_ops_record("instance/serve/h/1", "{}", None)
        .unwrap();
    assert!(
        !serve.wait(short).unwrap(),
        "its own heartbeat does not wake it"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| tx.send(serve.wait(SignedDuration::from_secs(60)).unwrap()));
        other.publish("phase3-completions", "m-1", b"{}").unwrap();
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(60)),
            Ok(true),
            "another connection's publish woke the waiter"
        );
    });
}
