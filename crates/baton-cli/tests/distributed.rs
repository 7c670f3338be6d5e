//! Many processes on one PostgreSQL and one NATS: three workers and two `serve` instances
//! run the reference pipeline for 30 dates while the test kills a worker with SIGKILL in the
//! middle of a write, kills a `serve` while it holds deliveries, restarts nats-server and
//! restarts PostgreSQL. Afterwards every date must be exact.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const FROM: &str = "2024-03-01";
const TO: &str = "2024-03-30";
const PHASE3: [&str; 5] = [
    "team_offense_game_summary",
    "team_defense_game_summary",
    "upcoming_team_game_context",
    "upcoming_player_game_context",
    "player_game_summary",
];

struct Env {
    dir: PathBuf,
    vars: Vec<(String, String)>,
}

impl Env {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("baton"));
        c.current_dir(&self.dir)
            .args(args)
            .env_remove("RUST_LOG")
            .env("BATON_CONFIG", "baton.toml");
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }
    fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd(args).output().unwrap()
    }
    /// Starts a `serve`; its log goes to `serve-<name>.log` in the test's directory.
    fn serve(&self, name: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("serve-{name}.log")))
            .unwrap();
        self.cmd(&["serve", "--poll-ms", "50", "--reconcile-every-secs", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }
    fn logs(&self) -> String {
        ["a", "b"]
            .iter()
            .map(|n| {
                std::fs::read_to_string(self.dir.join(format!("serve-{n}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

/// Waits a real interval: this test supervises real processes on real time.
fn pause(ms: i64) {
    baton_core::Clock::sleep(
        &baton_core::SystemClock,
        jiff::SignedDuration::from_millis(ms),
    );
}

fn dates() -> Vec<String> {
    let from = baton_core::Partition::parse(FROM).unwrap();
    from.through(baton_core::Partition::parse(TO).unwrap())
        .iter()
        .map(|d| d.to_string())
        .collect()
}

fn exact_dates(env: &Env) -> (usize, serde_json::Value) {
    let out = env.run(&["status", "--from", FROM, "--to", TO, "--json"]);
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let exact = status.as_array().map_or(0, |a| {
        a.iter()
            .filter(|d| d["exact"] == true && d["verdict"]["triggers"] == 1)
            .count()
    });
    (exact, status)
}

fn config(dir: &Path) {
    let text = baton_core::config::REFERENCE_TOML
        .replace("wait_deadline_mins = 480", "")
        .replace("ttl_secs = 600", "ttl_secs = 6")
        .replace("ack_wait_secs = 30", "ack_wait_secs = 3");
    std::fs::write(dir.join("baton.toml"), text).unwrap();
}

/// Throwaway PostgreSQL and NATS servers for one test.
fn servers() -> (baton_testkit::Postgres, baton_testkit::Nats) {
    let pg = baton_testkit::Postgres::start()
        .expect("PostgreSQL must be installed (./test.sh installs it)");
    let nats = baton_testkit::Nats::start()
        .expect("nats-server must be installed (./test.sh installs it)");
    (pg, nats)
}

/// A running `baton run` and its job.
type Running = Vec<(Child, (String, String))>;

/// Whether a finished `baton run` did its job: 0 (written or coalesced) or 1 with
/// "deferred" (owed: serve runs it).
fn job_done(child: &mut Child, status: std::process::ExitStatus) -> bool {
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut out);
    }
    status.code() == Some(0) || (status.code() == Some(1) && out.contains("deferred"))
}

/// Collects the workers that ended; one that failed (a backend restarting under it) is
/// queued again, as a scheduler would.
fn reap(
    running: &mut Running,
    queue: &mut VecDeque<(String, String)>,
    done: &mut usize,
    requeued: &mut usize,
) {
    let mut still = Vec::new();
    for (mut child, job) in running.drain(..) {
        match child.try_wait().unwrap() {
            None => still.push((child, job)),
            Some(status) if job_done(&mut child, status) => *done += 1,
            Some(_) => {
                *requeued += 1;
                queue.push_back(job);
            }
        }
    }
    *running = still;
}

/// Waits for every running worker.
fn finish(
    running: &mut Running,
    queue: &mut VecDeque<(String, String)>,
    done: &mut usize,
    requeued: &mut usize,
) {
    while !running.is_empty() {
        reap(running, queue, done, requeued);
        pause(20);
    }
}

/// Records a second batch of the injury report for a date whose runs are done (the
/// `n`-th of them), which requests reruns of its readers from the serves; returns the
/// date. The data is the same, so the reruns change no output and trigger nothing.
fn outage_landing(env: &Env, pg: &baton_testkit::Postgres, n: usize) -> String {
    let date = dates()[n].clone();
    let out = env.run(&[
        "publish",
        "raw",
        "--job",
        "nbac_injury_report_scraper",
        "--date",
        &date,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(owed_runs(pg, &date), 0, "the landing requested runs");
    date
}

/// Owed runs of a date, read in PostgreSQL (0 while it is down is never asked).
fn owed_runs(pg: &baton_testkit::Postgres, date: &str) -> usize {
    pg.query(
        "faults",
        &format!("SELECT count(*) FROM requests WHERE partition = '{date}'"),
    )
    .unwrap()
    .parse()
    .unwrap()
}

/// Waits until the serves ran the owed runs of `date` (at most two minutes).
fn wait_until_not_owed(pg: &baton_testkit::Postgres, date: &str) {
    for _ in 0..1200 {
        if owed_runs(pg, date) == 0 {
            return;
        }
        pause(100);
    }
    panic!("the serves never ran the runs owed for {date}");
}

/// Starts three queued jobs as workers during an outage and waits for them; each must do
/// its job without being retried by the test. With `pg` (PostgreSQL down), each worker
/// must first say it retries at its start; then PostgreSQL is started again.
fn run_during_outage(
    env: &Env,
    queue: &mut VecDeque<(String, String)>,
    done: &mut usize,
    pg: Option<&mut baton_testkit::Postgres>,
) {
    let mut workers = Vec::new();
    for i in 0..3 {
        let Some(job) = queue.pop_front() else { break };
        let mut child = env
            .cmd(&[
                "run",
                &job.0,
                "--date",
                &job.1,
                "--holder",
                &format!("outage{i}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        workers.push((child, job, rx));
    }
    if let Some(pg) = pg {
        for (_, job, rx) in &workers {
            let retrying = rx
                .iter()
                .find(|l| l.contains("retrying"))
                .unwrap_or_else(|| panic!("{job:?} never said it retries"));
            assert!(retrying.contains("opening the backend"), "{retrying}");
        }
        pg.start_again().unwrap();
    }
    for (mut child, job, rx) in workers {
        let status = child.wait().unwrap();
        let stderr: Vec<String> = rx.try_iter().collect();
        assert!(
            job_done(&mut child, status),
            "{job:?} started during the outage failed: {status} {stderr:?}"
        );
        *done += 1;
    }
}

#[test]
fn workers_and_serves_survive_kills_and_restarts_and_every_date_is_exact() {
    let (mut pg, mut nats) = servers();
    let url = pg.create_database("faults").unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path());
    let env = Env {
        dir: dir.path().to_path_buf(),
        vars: vec![
            ("BATON_BACKEND".into(), "postgres".into()),
            ("BATON_DATABASE_URL".into(), url),
            ("BATON_NATS_URL".into(), nats.url()),
        ],
    };
    assert!(env.run(&["migrate"]).status.success());
    assert!(
        env.run(&["generate", "--dates", "30", "--end", TO])
            .status
            .success()
    );

    let mut serve_a = Some(env.serve("a"));
    let mut serve_b = env.serve("b");
    let mut queue: VecDeque<(String, String)> = dates()
        .into_iter()
        .flat_map(|d| PHASE3.iter().map(move |p| (p.to_string(), d.clone())))
        .collect();
    let total = queue.len();
    let mut running: Running = Vec::new();
    let (mut done, mut requeued) = (0usize, 0usize);
    let (mut stalled, mut killed_serve, mut restarted_nats, mut restarted_serve, mut restarted_pg) =
        (false, false, false, false, false);
    let mut worker = 0;
    while !queue.is_empty() || !running.is_empty() {
        // A worker killed in the middle of its write: the transaction is open, holding rows
        // and the completion's outbox row, when SIGKILL arrives.
        if done >= 15 && !stalled {
            stalled = true;
            let job = queue.pop_front().unwrap();
            let mut child = env
                .cmd(&["run", &job.0, "--date", &job.1, "--holder", "doomed", "-v"])
                .env("BATON_TEST_WRITE_STALL_MS", "60000")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = child.stderr.take().unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("holding the write open") {
                        let _ = tx.send(());
                    }
                }
            });
            rx.recv_timeout(Duration::from_secs(60))
                .expect("the doomed worker reached its write");
            child.kill().unwrap();
            child.wait().unwrap();
            queue.push_back(job);
        }
        if done >= 40 && !killed_serve {
            killed_serve = true;
            let mut a = serve_a.take().unwrap();
            a.kill().unwrap();
            a.wait().unwrap();
        }
        if done >= 60 && !restarted_nats {
            restarted_nats = true;
            finish(&mut running, &mut queue, &mut done, &mut requeued);
            nats.stop();
            // New work while the bus is down: workers write data and outbox rows (they never
            // connect to NATS), and the serves run the runs a landing requests (owed runs
            // need only PostgreSQL).
            let reran = outage_landing(&env, &pg, 0);
            run_during_outage(&env, &mut queue, &mut done, None);
            wait_until_not_owed(&pg, &reran);
            nats.start_again().unwrap();
        }
        if done >= 80 && !restarted_serve {
            restarted_serve = true;
            serve_a = Some(env.serve("a"));
        }
        if done >= 100 && !restarted_pg {
            restarted_pg = true;
            finish(&mut running, &mut queue, &mut done, &mut requeued);
            // Runs the serves start from a landing just before PostgreSQL goes down fail
            // for a transient reason and stay owed; workers started while it is down retry
            // at their start until it is back.
            let reran = outage_landing(&env, &pg, 1);
            pg.stop();
            run_during_outage(&env, &mut queue, &mut done, Some(&mut pg));
            wait_until_not_owed(&pg, &reran);
        }
        while running.len() < 3 {
            let Some(job) = queue.pop_front() else { break };
            worker += 1;
            let child = env
                .cmd(&[
                    "run",
                    &job.0,
                    "--date",
                    &job.1,
                    "--holder",
                    &format!("w{}", worker % 3),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            running.push((child, job));
        }
        reap(&mut running, &mut queue, &mut done, &mut requeued);
        pause(20);
    }
    assert!(
        stalled && killed_serve && restarted_nats && restarted_serve && restarted_pg,
        "every fault was injected"
    );
    eprintln!("{done} of {total} jobs done, {requeued} retried after a failure");

    // The serves finish what is owed (deferred runs, Phase 4) on their own.
    let mut settled = 0;
    for _ in 0..300 {
        settled = exact_dates(&env).0;
        if settled == 30 {
            break;
        }
        pause(200);
    }
    if settled < 30 {
        // The bus is not the source of truth: reconcile repairs what it lost.
        let out = env.run(&["reconcile", "--from", FROM, "--to", TO, "--fix"]);
        eprintln!(
            "reconcile --fix after the faults:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        for _ in 0..300 {
            settled = exact_dates(&env).0;
            if settled == 30 {
                break;
            }
            pause(200);
        }
    }
    // Both serves lived through every restart.
    assert!(
        serve_b.try_wait().unwrap().is_none(),
        "serve b died:\n{}",
        env.logs()
    );
    assert!(
        serve_a.as_mut().unwrap().try_wait().unwrap().is_none(),
        "serve a died:\n{}",
        env.logs()
    );
    let (exact, status) = exact_dates(&env);
    assert_eq!(
        exact,
        30,
        "every date exact: {status:#}\nserve logs:\n{}",
        env.logs()
    );
    for d in status.as_array().unwrap() {
        assert_eq!(d["verdict"]["done"], 5);
        assert_eq!(d["verdict"]["triggers"], 1, "exactly one trigger: {d}");
        assert_eq!(d["verdict"]["duplicate_rows"], 0);
        assert_eq!(d["verdict"]["next_phase_ran"], true);
    }
    let health = env.run(&["health", "--from", FROM, "--to", TO, "--json"]);
    let health: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    let outbox = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "BATON-H009")
        .unwrap();
    // The serves keep relaying: wait for the last rows to go out.
    let mut empty = outbox["evidence"] == "empty";
    for _ in 0..100 {
        if empty {
            break;
        }
        pause(100);
        let h = env.run(&["health", "--from", FROM, "--to", TO, "--json"]);
        let h: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
        empty = h["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == "BATON-H009" && c["evidence"] == "empty");
    }
    assert!(empty, "nothing left in the outbox");
    assert_eq!(
        pg.query("faults", "SELECT count(*) FROM requests").unwrap(),
        "0",
        "no run is left owed"
    );
    if let Some(mut a) = serve_a {
        let _ = a.kill();
        let _ = a.wait();
    }
    let _ = serve_b.kill();
    let _ = serve_b.wait();
}

#[test]
fn the_demo_runs_distributed_and_every_date_is_exact_under_faults() {
    let (pg, nats) = servers();
    let url = pg.create_database("demo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path());
    let env = Env {
        dir: dir.path().to_path_buf(),
        vars: vec![],
    };
    // Flags on the command line, not the environment: `--backend postgres` on any command.
    let args = [
        "--backend",
        "postgres",
        "--database-url",
        &url,
        "--nats-url",
        &nats.url(),
    ];
    let demo = |extra: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(extra);
        env.run(&all)
    };
    let out = demo(&[
        "demo",
        "--dates",
        "5",
        "--faults",
        "duplicate=0.3,drop=0.2,reorder=0.2,crash=0.05,pause=0.1",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dates = report["dates"].as_array().unwrap();
    assert_eq!(dates.len(), 5);
    for d in dates {
        assert_eq!(d["exact"], true, "{d}");
        assert_eq!(d["verdict"]["triggers"], 1, "{d}");
    }
    // A second demo starts from a clean slate on the same servers and is exact again.
    let again = demo(&["demo", "--dates", "3"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("All 3 dates exact"));
}

#[test]
fn an_unreachable_backend_fails_at_start_with_one_line_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path());
    let env = Env {
        dir: dir.path().to_path_buf(),
        vars: vec![],
    };
    let port = baton_testkit::free_port().unwrap();
    let db = format!("postgres://baton:hunter2@127.0.0.1:{port}/baton");
    let nats = format!("nats://127.0.0.1:{}", baton_testkit::free_port().unwrap());
    let unreachable = |command: &str| {
        env.run(&[
            "--backend",
            "postgres",
            "--database-url",
            &db,
            "--nats-url",
            &nats,
            command,
        ])
    };
    let out = unreachable("status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(
        line.contains("cannot connect to PostgreSQL")
            && line.contains(&format!("127.0.0.1:{port}")),
        "{line}"
    );
    assert!(line.contains("refused"), "says why: {line}");
    assert!(
        !stderr.contains("hunter2"),
        "the password never reaches output: {stderr}"
    );
    // health cannot check: exit 2, as documented.
    let health = unreachable("health");
    assert_eq!(health.status.code(), Some(2));
    // A missing URL is bad usage, naming every way to give it.
    let missing = env.run(&["--backend", "postgres", "--database-url", &db, "status"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("BATON_NATS_URL"));
}

/// A migrated database with the reference pipeline's raw data for `TO`, on fresh servers.
fn landed_env(dir: &Path, name: &str) -> (baton_testkit::Postgres, baton_testkit::Nats, Env) {
    let (pg, nats) = servers();
    let url = pg.create_database(name).unwrap();
    config(dir);
    let env = Env {
        dir: dir.to_path_buf(),
        vars: vec![
            ("BATON_BACKEND".into(), "postgres".into()),
            ("BATON_DATABASE_URL".into(), url),
            ("BATON_NATS_URL".into(), nats.url()),
        ],
    };
    assert!(env.run(&["migrate"]).status.success());
    assert!(
        env.run(&["generate", "--dates", "1", "--end", TO])
            .status
            .success()
    );
    (pg, nats, env)
}

#[test]
fn run_writes_with_the_bus_down_and_serve_relays_its_completion_later() {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, mut nats, env) = landed_env(dir.path(), "busdown");
    nats.stop();
    // On main, `run` connected to NATS at start and failed with exit 3.
    let out = env.run(&["run", PHASE3[0], "--date", TO]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "run needs no bus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Commands that only read the store work with the bus down too.
    for args in [
        vec!["status", "--from", TO, "--to", TO],
        vec!["reconcile", "--from", TO, "--to", TO],
        vec!["drift"],
    ] {
        let out = env.run(&args);
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("NATS"),
            "{args:?} never touches the bus: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The completion waits in the outbox; once NATS is back, the relay publishes it and the
    // orchestrator records it.
    nats.start_again().unwrap();
    let serve = env.run(&["serve", "--until-idle", "--reconcile-every-secs", "0"]);
    assert!(
        serve.status.success(),
        "{}",
        String::from_utf8_lossy(&serve.stderr)
    );
    let (_, status) = exact_dates(&env);
    let date = &status.as_array().unwrap()[0];
    // The run's completion reached the orchestrator (and `serve` ran the rest of the date).
    assert_eq!(
        date["verdict"]["done"], 5,
        "the completion was relayed: {date}"
    );
    assert_eq!(date["verdict"]["triggers"], 1, "{date}");
}

/// A `baton run` in the background whose stderr is watched for the retry warning.
fn spawn_run_watching_retries(env: &Env, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut args = vec!["run", PHASE3[0], "--date", TO];
    args.extend_from_slice(extra);
    let mut child = env
        .cmd(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

#[test]
fn run_retries_a_database_down_at_its_start_within_the_budget_then_fails_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pg, _nats, env) = landed_env(dir.path(), "pgdown");
    pg.stop();
    // Started while PostgreSQL is down; PostgreSQL comes back once the run said it retries.
    let (mut child, lines) = spawn_run_watching_retries(&env, &["--start-retry-secs", "120"]);
    let first = lines.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(
        first.contains("retrying") && first.contains("opening the backend"),
        "{first}"
    );
    pg.start_again().unwrap();
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    assert_eq!(status.code(), Some(0), "{rest:?}");

    // Down for longer than the budget: exit 3 and one line naming the run and the operation.
    pg.stop();
    let (mut child, lines) = spawn_run_watching_retries(&env, &["--start-retry-secs", "1"]);
    let status = child.wait().unwrap();
    let stderr: Vec<String> = lines.iter().collect();
    assert_eq!(status.code(), Some(3), "{stderr:?}");
    let errors: Vec<&String> = stderr.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr:?}");
    let line = errors[0];
    for part in [
        &format!("run {} {TO}", PHASE3[0]),
        "opening the backend",
        "cannot connect to PostgreSQL",
        "refused",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    assert!(
        stderr.iter().any(|l| l.contains("retrying")),
        "it retried before giving up: {stderr:?}"
    );
}
