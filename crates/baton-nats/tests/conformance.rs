//! The shared bus conformance suite against a real nats-server started for the test.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use baton_nats::{LazyNatsBus, NatsBus};
use baton_ports::Bus;

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

#[test]
fn a_lazy_bus_connects_on_first_use_and_again_after_a_failed_connect() {
    let mut server = baton_testkit::Nats::start().unwrap();
    server.stop();
    let bus = LazyNatsBus::new(&server.url());
    assert!(!bus.connected(), "building the bus connects nothing");
    let err = bus.publish("lazy", "m1", b"{}").unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!bus.connected());
    server.start_again().unwrap();
    bus.publish("lazy", "m1", b"{}").unwrap();
    assert!(bus.connected());
    assert_eq!(bus.messages("lazy").unwrap().len(), 1);
}
