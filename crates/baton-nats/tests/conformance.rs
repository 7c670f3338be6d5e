//! The shared bus conformance suite against a real nats-server started for the test.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use baton_nats::NatsBus;

#[test]
fn nats_bus_conforms() {
    let server = baton_testkit::Nats::start()
        .expect("nats-server must be installed (./test.sh installs it)");
    // JetStream's ack wait runs on the server's clock, which a test cannot move: the suite
    // waits for it in real time (its ack wait is short for that reason).
    baton_conformance::exercise_bus(
        |_clock| NatsBus::connect(&server.url()).unwrap(),
        &|_clock, d| {
            baton_core::Clock::sleep(&baton_core::SystemClock, d);
        },
    );
}

#[test]
fn an_unreachable_server_fails_with_one_clear_line() {
    let port = baton_testkit::free_port().unwrap();
    let err = NatsBus::connect(&format!("nats://127.0.0.1:{port}"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!(
            "cannot connect to NATS at nats://127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(!err.contains('\n'));
}
