//! A real `serve` wakes on work published by another process instead of waiting out its
//! fallback poll: on SQLite (a commit by `baton publish` seen through the file watch) and on
//! PostgreSQL + NATS (`NOTIFY`, and the subscription on baton's subjects). The fallback poll
//! is set to a minute, so on a `serve` that polls the trigger comes two polls (two minutes)
//! after the publish, past each test's patience.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const DATE: &str = "2024-03-30";
const PHASE3: [&str; 5] = [
    "team_offense_game_summary",
    "team_defense_game_summary",
    "upcoming_team_game_context",
    "upcoming_player_game_context",
    "player_game_summary",
];
/// How long the test waits for one line of the serve's log: well under the two fallback
/// polls a polling `serve` would need.
const PATIENCE: Duration = Duration::from_secs(50);

struct Env {
    dir: PathBuf,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new(dir: &Path, vars: Vec<(String, String)>) -> Self {
        std::fs::write(dir.join("baton.toml"), baton_core::config::REFERENCE_TOML).unwrap();
        let env = Self {
            dir: dir.to_path_buf(),
            vars,
        };
        env.ok(&["migrate"]);
        env.ok(&["generate", "--dates", "1", "--end", DATE]);
        env
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("baton"));
        c.current_dir(&self.dir)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("BATON_DB")
            .env_remove("BATON_LISTEN")
            .env("BATON_CONFIG", "baton.toml");
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    fn ok(&self, args: &[&str]) {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A `serve` at a one-minute fallback poll, its log lines sent to the receiver.
    fn serve(&self) -> (Serve, mpsc::Receiver<String>) {
        let mut child = self
            .cmd(&["serve", "--poll-ms", "60000", "--reconcile-every-secs", "0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        (Serve(child), rx)
    }
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a log line containing every one of `words`; the lines seen, on failure.
fn wait_for_line(rx: &mpsc::Receiver<String>, words: &[&str]) -> Result<String, Vec<String>> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(PATIENCE) {
            Ok(line) if words.iter().all(|w| line.contains(w)) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(_) => return Err(seen),
        }
    }
}

/// Starts a `serve`, waits until it idles, publishes the date's five Phase 3 completions
/// from other processes, and waits for the trigger to start Phase 4.
fn publish_wakes_serve(env: &Env) {
    let (_serve, rx) = env.serve();
    wait_for_line(&rx, &["serving"]).unwrap_or_else(|seen| panic!("serve started: {seen:#?}"));
    for p in PHASE3 {
        env.ok(&[
            "publish",
            "completion",
            "--processor",
            p,
            "--date",
            DATE,
            "--run-id",
            &format!("wake-{p}"),
        ]);
    }
    let line = wait_for_line(&rx, &["trigger received", DATE]).unwrap_or_else(|seen| {
        panic!("the publish woke serve and Phase 4 started within {PATIENCE:?}: {seen:#?}")
    });
    assert!(line.contains("phase=4"), "{line}");
}

#[test]
fn a_publish_from_another_process_wakes_serve_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path(), Vec::new());
    publish_wakes_serve(&env);
}

#[test]
fn a_publish_from_another_process_wakes_serve_on_postgres_and_nats() {
    let pg = baton_testkit::Postgres::start()
        .expect("PostgreSQL must be installed (./test.sh installs it)");
    let nats = baton_testkit::Nats::start()
        .expect("nats-server must be installed (./test.sh installs it)");
    let url = pg.create_database("wake").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(
        dir.path(),
        vec![
            ("BATON_BACKEND".into(), "postgres".into()),
            ("BATON_DATABASE_URL".into(), url),
            ("BATON_NATS_URL".into(), nats.url()),
        ],
    );
    publish_wakes_serve(&env);
}
