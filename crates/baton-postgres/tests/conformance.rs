//! The shared conformance suite against a real PostgreSQL server started for the test.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use baton_postgres::{PgBackend, TimeSource};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

fn server() -> &'static baton_testkit::Postgres {
    static SERVER: OnceLock<baton_testkit::Postgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        baton_testkit::Postgres::start()
            .expect("PostgreSQL must be installed (./test.sh installs it)")
    })
}

/// A fresh database per backend: tests stay independent.
fn fresh(clock: Arc<baton_core::ManualClock>) -> PgBackend {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("conformance_{}", N.fetch_add(1, Ordering::SeqCst));
    let url = server().create_database(&name).unwrap();
    PgBackend::connect_with(&url, 4, TimeSource::Injected(clock)).unwrap()
}

#[test]
fn postgres_state_store_conforms() {
    baton_conformance::exercise_state_store(fresh);
}

#[test]
fn postgres_warehouse_conforms() {
    baton_conformance::exercise_warehouse(fresh);
}

#[test]
fn migrations_apply_once() {
    let url = server().create_database("migrations_once").unwrap();
    let a = PgBackend::connect(&url, 2).unwrap();
    assert_eq!(
        a.migrate().unwrap(),
        0,
        "connect applied them; a second run applies none"
    );
}

#[test]
fn an_unreachable_server_fails_with_one_clear_line() {
    let port = baton_testkit::free_port().unwrap();
    let err = PgBackend::connect(
        &format!("postgresql://baton:secret@127.0.0.1:{port}/baton"),
        2,
    )
    .err()
    .unwrap();
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "cannot connect to PostgreSQL at postgresql://baton:***@127.0.0.1:{port}/baton"
        )),
        "{text}"
    );
    assert!(
        !text.contains("secret"),
        "the password never reaches a message: {text}"
    );
    assert!(!text.contains('\n'));
}
