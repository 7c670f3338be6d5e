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

/// The servers a child test process started, kept where nothing drops them (the
/// conformance suite keeps its PostgreSQL in a `static`).
static KEPT: std::sync::OnceLock<(baton_testkit::Postgres, baton_testkit::Nats)> =
    std::sync::OnceLock::new();

#[test]
#[ignore = "the child process of servers_never_outlive_the_test_process, run by it with --ignored"]
fn child_starts_servers_and_ends_without_dropping_them() {
    let (pg, nats) = KEPT.get_or_init(|| {
        let mut pg = baton_testkit::Postgres::start().unwrap();
        // A restart replaces the guarded process: the restarted server is guarded too.
        pg.stop();
        pg.start_again().unwrap();
        let mut nats = baton_testkit::Nats::start().unwrap();
        nats.stop();
        nats.start_again().unwrap();
        (pg, nats)
    });
    println!("PG {} {}", pg.port, pg.dir().display());
    println!("NATS {} {}", nats.port, nats.dir().display());
    println!("READY");
    match std::env::var("BATON_TESTKIT_CHILD").as_deref() {
        // Ends at once without unwinding: statics and locals are never dropped.
        Ok("exit") => std::process::exit(0),
        // Waits for SIGKILL from the parent.
        _ => loop {
            std::thread::park();
        },
    }
}

/// Runs the child test in its own process in `mode`, and returns the ports and directories
/// of the servers it started, once it has ended.
fn servers_of_a_child(mode: &str) -> Vec<(u16, std::path::PathBuf)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_starts_servers_and_ends_without_dropping_them",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BATON_TESTKIT_CHILD", mode)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut servers = Vec::new();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in out.lines().map_while(Result::ok) {
        if line == "READY" {
            break;
        }
        // libtest prints the test's name on the line the first one starts.
        let Some(server) = ["PG ", "NATS "]
            .iter()
            .find_map(|tag| line.find(tag).map(|i| &line[i + tag.len()..]))
        else {
            continue;
        };
        if let Some((port, dir)) = server.split_once(' ') {
            servers.push((port.parse().unwrap(), dir.into()));
        }
    }
    assert_eq!(servers.len(), 2, "the child started both servers");
    if mode == "kill" {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    servers
}

/// Whether a server is gone: its port refuses and its directory is removed. Polled with a
/// deadline: the watchdog stops a real process on real time.
#[allow(clippy::disallowed_methods)] // real processes on real time; no Clock to inject
fn gone_within(port: u16, dir: &std::path::Path, deadline: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + deadline;
    while std::time::Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && !dir.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn servers_never_outlive_the_test_process() {
    for mode in ["exit", "kill"] {
        for (port, dir) in servers_of_a_child(mode) {
            assert!(
                gone_within(port, &dir, std::time::Duration::from_secs(60)),
                "{mode}: the server on port {port} ({}) outlived its test process",
                dir.display()
            );
        }
    }
}
