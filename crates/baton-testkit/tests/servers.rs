//! The kit starts, stops and restarts real servers.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

#[test]
fn postgres_and_nats_start_restart_and_stop() {
    if !baton_testkit::postgres_available() || !baton_testkit::nats_available() {
        panic!(
            "PostgreSQL server binaries and nats-server must be installed (./test.sh installs them)"
        );
    }
    let mut pg = baton_testkit::Postgres::start().unwrap();
    let url = pg.create_database("kit").unwrap();
    assert!(url.ends_with("/kit"));
    pg.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", pg.port)).is_err());
    pg.start_again().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", pg.port)).is_ok());
    let mut nats = baton_testkit::Nats::start().unwrap();
    nats.stop();
    nats.start_again().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", nats.port)).is_ok());
}
