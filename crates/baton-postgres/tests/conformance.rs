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

/// The orchestrator's consume on PostgreSQL from NATS: fetch, apply, ack.
#[test]
fn postgres_consume_from_nats_conforms() {
    let nats = baton_testkit::Nats::start()
        .expect("nats-server must be installed (./test.sh installs it)");
    baton_conformance::exercise_consume(
        |clock| {
            let bus: Arc<dyn baton_ports::Bus> =
                Arc::new(baton_nats::NatsBus::connect(&nats.url()).unwrap());
            (Arc::new(fresh(clock)), bus)
        },
        // JetStream's ack wait runs on the server's clock: wait for it (the store's clock
        // moves along, so the step sees the time pass too).
        &|clock, d| {
            baton_core::Clock::sleep(&baton_core::SystemClock, d);
            clock.advance(d);
        },
    );
    baton_conformance::exercise_relay(|clock| {
        let bus: Arc<dyn baton_ports::Bus> =
            Arc::new(baton_nats::NatsBus::connect(&nats.url()).unwrap());
        (Arc::new(fresh(clock)), bus)
    });
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

/// Six consumers in separate connections apply every completion of ten dates at once, in
/// different orders, then six relays claim the outbox at once: row locks and retries must
/// leave each message applied once, one trigger per date, and each row claimed once.
#[test]
fn concurrent_consumers_and_relays_stay_exact() {
    use baton_core::completion::{self, Outcome};
    use baton_core::message::CompletionMessage;
    use baton_core::model::{GateId, Partition};
    use baton_core::{Clock, Pipeline, SystemClock};
    use baton_ports::{StateStore, Work};

    let url = server().create_database("concurrency").unwrap();
    let pipeline = Pipeline::reference().unwrap();
    let gate = pipeline.gates[0].clone();
    let first = Partition::parse("2024-03-01").unwrap();
    let dates: Vec<Partition> = first
        .through(Partition::parse("2024-03-10").unwrap())
        .to_vec();
    let work: Vec<Work> = dates
        .iter()
        .flat_map(|&partition| {
            gate.overnight.expected.iter().map(move |p| {
                let run = format!("run-{p}-{partition}");
                baton_conformance::completion(p.as_str(), &run, &partition.to_string())
            })
        })
        .map(|message| Work::Completion {
            gate: gate.id.clone(),
            message,
        })
        .collect();
    let backends: Vec<PgBackend> = (0..6)
        .map(|_| PgBackend::connect(&url, 2).unwrap())
        .collect();

    let applied: usize = std::thread::scope(|s| {
        let handles: Vec<_> = backends
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (gate, work) = (&gate, &work);
                s.spawn(move || {
                    // Each consumer sees the messages in its own order, in batches of 7.
                    let mut mine = work.clone();
                    mine.rotate_left(i * 11 % work.len());
                    if i % 2 == 1 {
                        mine.reverse();
                    }
                    let mut step = |doc, _: &GateId, m: &CompletionMessage| {
                        completion::step(doc, m, gate, SystemClock.now(), &[])
                    };
                    mine.chunks(7)
                        .flat_map(|batch| store.apply(batch, &mut step).unwrap())
                        .filter(|o| *o == Outcome::Applied)
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(
        applied,
        work.len(),
        "every message applied exactly once across consumers"
    );
    for &d in &dates {
        let doc = backends[0].document(&gate.id, d).unwrap().unwrap();
        assert_eq!(doc.completed_count, gate.overnight.expected.len(), "{d}");
        assert!(doc.triggered, "{d}");
        assert_eq!(
            backends[0]
                .outbox_for(baton_ports::OutboxKind::Trigger, d)
                .unwrap()
                .len(),
            1,
            "one trigger for {d}"
        );
    }

    let claimed: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = backends
            .iter()
            .map(|store| {
                s.spawn(move || {
                    let claim = jiff::SignedDuration::from_secs(60);
                    let mut ids = Vec::new();
                    loop {
                        let rows = store.claim_unpublished(1, claim).unwrap();
                        if rows.is_empty() {
                            return ids;
                        }
                        ids.extend(rows.iter().map(|r| r.id));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut unique = claimed.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        claimed.len(),
        "no row claimed by two relays: {claimed:?}"
    );
    assert_eq!(claimed.len(), dates.len(), "every trigger row claimed");
}
