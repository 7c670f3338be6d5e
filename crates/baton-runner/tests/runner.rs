//! The runner on the real embedded backend: concurrency, fencing, coalescing, external
//! processors and dependencies. Incident 2 (72 duplicate rows) is reproduced here.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use baton_core::clock::{Clock, ManualClock};
use baton_core::config::{Pipeline, REFERENCE_TOML};
use baton_core::lease::Lease;
use baton_core::model::Partition;
use baton_ports::RunStatus;
use baton_ports::{StateStore, Warehouse};
use baton_runner::{RunHooks, RunOptions, RunOutcome, Runner};
use baton_sqlite::{Durability, SqliteBackend};
use jiff::SignedDuration;
use std::sync::Arc;

struct Env {
    _dir: tempfile::TempDir,
    pipeline: Arc<Pipeline>,
    backend: Arc<SqliteBackend>,
    clock: Arc<ManualClock>,
    runner: Arc<Runner>,
    date: Partition,
}

fn env_with(config: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(Pipeline::from_toml(config).unwrap());
    let clock = Arc::new(ManualClock::new("2024-03-10T12:00:00Z".parse().unwrap()));
    let backend = Arc::new(
        SqliteBackend::open(&dir.path().join("b.db"), Durability::Normal, clock.clone()).unwrap(),
    );
    let runner = Arc::new(Runner::new(
        pipeline.clone(),
        backend.clone(),
        backend.clone(),
        clock.clone(),
    ));
    runner.ensure_tables().unwrap();
    // Land a month of raw data and every upstream job for the test date.
    let date = Partition::parse("2024-03-05").unwrap();
    let dates = date.offset(-30).through(date);
    let raw = baton_reference::generate(11, &dates);
    for (table, rows) in &raw {
        backend.land(pipeline.table(table).unwrap(), rows).unwrap();
    }
    for job in &pipeline.upstream {
        backend
            .record_landing(&job.name, date, clock.now(), &[])
            .unwrap();
    }
    Env {
        _dir: dir,
        pipeline,
        backend,
        clock,
        runner,
        date,
    }
}

fn env() -> Env {
    env_with(REFERENCE_TOML)
}

struct NoHooks;
impl RunHooks for NoHooks {}

#[test]
fn incident_2_concurrent_instances_write_no_duplicate_rows() {
    // The naive pattern of the incident: both instances DELETE the date, then both INSERT.
    let rows: Vec<u32> = (0..72).collect();
    let mut naive_table: Vec<u32> = Vec::new();
    naive_table.retain(|_| false); // instance A: DELETE
    naive_table.retain(|_| false); // instance B: DELETE (18 s later, before A inserted)
    naive_table.extend(&rows); // A: INSERT
    naive_table.extend(&rows); // B: INSERT
    assert_eq!(
        naive_table.len() - rows.len(),
        72,
        "the naive interleaving writes 72 duplicate rows"
    );

    let e = env();
    let tog = e
        .runner
        .run(
            "team_offense_game_summary",
            e.date,
            &RunOptions::new("setup"),
            &NoHooks,
        )
        .unwrap();
    assert!(tog.succeeded());
    let reports: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|h| {
                let runner = e.runner.clone();
                s.spawn(move || {
                    runner
                        .run("player_game_summary", e.date, &RunOptions::new(h), &NoHooks)
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let table = &e.pipeline.processor("player_game_summary").unwrap().table;
    assert_eq!(e.backend.duplicate_rows(table, e.date).unwrap(), 0);
    let active = baton_reference::generate(11, &[e.date])["nbac_gamebook_player_stats"]
        .iter()
        .filter(|r| r["player_status"] == "active")
        .count() as u64;
    assert_eq!(
        e.backend.row_count(table, e.date).unwrap(),
        active,
        "one row per active player"
    );
    let written: usize = reports
        .iter()
        .map(|r| {
            r.attempts
                .iter()
                .filter(|a| a.status == RunStatus::Success)
                .count()
        })
        .sum();
    assert!(written >= 1);
    assert!(
        reports
            .iter()
            .all(|r| r.outcome == RunOutcome::Ran
                || matches!(r.outcome, RunOutcome::Coalesced { .. }))
    );
}

/// Pauses the holder past its lease once, and lets another worker take over meanwhile.
struct PauseOnce {
    clock: Arc<ManualClock>,
    runner: Arc<Runner>,
    paused: std::sync::Mutex<bool>,
    intruder: std::sync::Mutex<Option<baton_runner::RunReport>>,
}

impl RunHooks for PauseOnce {
    fn before_write(&self, lease: &Lease) {
        let mut paused = self.paused.lock().unwrap();
        if !*paused {
            *paused = true;
            drop(paused);
            self.clock.advance(SignedDuration::from_secs(601));
            let report = self
                .runner
                .run(
                    lease.processor.as_str(),
                    lease.partition,
                    &RunOptions::new("intruder"),
                    &NoHooks,
                )
                .unwrap();
            *self.intruder.lock().unwrap() = Some(report);
        }
    }
}

#[test]
fn a_holder_paused_past_its_lease_is_fenced_and_retries() {
    let e = env();
    let hooks = PauseOnce {
        clock: e.clock.clone(),
        runner: e.runner.clone(),
        paused: Default::default(),
        intruder: Default::default(),
    };
    let report = e
        .runner
        .run(
            "team_offense_game_summary",
            e.date,
            &RunOptions::new("paused"),
            &hooks,
        )
        .unwrap();
    let intruder = hooks.intruder.lock().unwrap().clone().unwrap();
    assert_eq!(
        intruder.attempts[0].status,
        RunStatus::Success,
        "the new holder writes"
    );
    assert_eq!(
        report.attempts[0].status,
        RunStatus::Fenced,
        "the paused holder's write is refused"
    );
    assert!(
        report.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("stale"),
        "{:?}",
        report.attempts[0].error
    );
    assert!(report.attempts[0].token < intruder.attempts[0].token);
    assert_eq!(
        report.attempts.last().unwrap().status,
        RunStatus::Success,
        "then it retries with a fresh lease"
    );
    let runs = e.backend.runs(e.date).unwrap();
    assert!(
        runs.iter().any(|r| r.status == RunStatus::Fenced),
        "the fenced run is in run history"
    );
}

struct RequestDuringRun {
    runner: Arc<Runner>,
    seen: std::sync::Mutex<Vec<RunOutcome>>,
}

impl RunHooks for RequestDuringRun {
    fn before_write(&self, lease: &Lease) {
        let mut seen = self.seen.lock().unwrap();
        if seen.is_empty() {
            // A second request arrives while this run holds the lease.
            let r = self
                .runner
                .run(
                    lease.processor.as_str(),
                    lease.partition,
                    &RunOptions::new("second"),
                    &NoHooks,
                )
                .unwrap();
            seen.push(r.outcome);
        }
    }
}

#[test]
fn a_request_while_the_lease_is_held_is_coalesced_not_dropped() {
    let e = env();
    let hooks = RequestDuringRun {
        runner: e.runner.clone(),
        seen: Default::default(),
    };
    let report = e
        .runner
        .run(
            "team_defense_game_summary",
            e.date,
            &RunOptions::new("first"),
            &hooks,
        )
        .unwrap();
    let seen = hooks.seen.lock().unwrap().clone();
    match &seen[0] {
        RunOutcome::Coalesced { holder, .. } => assert_eq!(holder, "first"),
        other => panic!("the second request is coalesced, not run concurrently: {other:?}"),
    }
    assert_eq!(
        report.attempts.len(),
        2,
        "the holder ran once more for the coalesced request"
    );
    assert!(
        report
            .attempts
            .iter()
            .all(|a| a.status == RunStatus::Success)
    );
    assert!(report.attempts[1].token > report.attempts[0].token);
}

#[test]
fn dependencies_defer_a_run() {
    let e = env();
    let r = e
        .runner
        .run(
            "player_game_summary",
            e.date,
            &RunOptions::new("x"),
            &NoHooks,
        )
        .unwrap();
    match r.outcome {
        RunOutcome::Deferred { missing } => assert_eq!(
            missing,
            vec!["processor `team_offense_game_summary` has no successful run".to_owned()]
        ),
        other => panic!("{other:?}"),
    }
    // The test clock is the morning of 2024-03-10: that date's box scores are not due yet.
    let later = Partition::parse("2024-03-10").unwrap();
    let r = e
        .runner
        .run(
            "team_offense_game_summary",
            later,
            &RunOptions::new("x"),
            &NoHooks,
        )
        .unwrap();
    assert!(
        matches!(r.outcome, RunOutcome::Deferred { ref missing } if missing[0].contains("nbac_gamebook_scraper")),
        "{r:?}"
    );
    assert!(
        e.backend.runs(later).unwrap().is_empty(),
        "a deferred run records nothing"
    );
}

fn external(script: &str) -> String {
    REFERENCE_TOML.replace(
        "# Phase 4: precompute",
        &format!(
            "[[processors]]\nname = \"external_one\"\nphase = 5\ntable = \"external_one\"\nprimary_key = [\"game_date\", \"k\"]\ncommand = [\"python3\", \"-c\", {script:?}, \"{{date}}\"]\n\n# Phase 4: precompute"
        ),
    )
}

#[test]
fn an_external_processor_writes_its_json_lines() {
    let e = env_with(&external(
        "import sys, json\nfor k in range(3):\n    print(json.dumps({'game_date': sys.argv[1], 'k': k}))\nprint(json.dumps({'game_date': sys.argv[1], 'k': 0}))",
    ));
    let r = e
        .runner
        .run("external_one", e.date, &RunOptions::new("x"), &NoHooks)
        .unwrap();
    assert!(r.succeeded(), "{r:?}");
    assert_eq!(
        (r.attempts[0].rows_written, r.attempts[0].duplicates_dropped),
        (3, 1)
    );
}

#[test]
fn an_external_processor_with_a_bad_line_writes_nothing() {
    let e = env_with(&external(
        "import sys\nprint('{\"game_date\": \"' + sys.argv[1] + '\", \"k\": 1}')\nprint('oops')",
    ));
    let r = e
        .runner
        .run("external_one", e.date, &RunOptions::new("x"), &NoHooks)
        .unwrap();
    assert_eq!(r.attempts[0].status, RunStatus::Failed);
    assert!(
        r.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("stdout line 2: not JSON"),
        "{:?}",
        r.attempts[0].error
    );
    let table = &e.pipeline.processor("external_one").unwrap().table;
    assert_eq!(e.backend.row_count(table, e.date).unwrap(), 0);
}

#[test]
fn an_external_processor_that_exits_non_zero_writes_nothing() {
    let e = env_with(&external(
        "import sys\nprint('{}')\nsys.stderr.write('boom\\n')\nsys.exit(3)",
    ));
    let r = e
        .runner
        .run("external_one", e.date, &RunOptions::new("x"), &NoHooks)
        .unwrap();
    assert_eq!(r.attempts[0].status, RunStatus::Failed);
    let error = r.attempts[0].error.clone().unwrap();
    assert!(
        error.contains("exit status: 3") && error.contains("boom"),
        "{error}"
    );
}

#[test]
fn incident_3_a_late_scraper_makes_processors_wait_instead_of_running_on_partial_data() {
    let e = env();
    let date = e.date.offset(-1); // raw data exists, but no job has landed for this date
    // 06:30 ET on the 5th: the 4th's box scores were due at 06:00 and have not landed.
    e.clock.set("2024-03-05T11:30:00Z".parse().unwrap());
    // The naive scheduler runs at 06:00 on whatever has arrived: in the incident, the first
    // batch (2 games) landed at 14:45 and the rest (8 games) at 15:00, so an early run sees
    // a fraction of the games and writes a short table.
    let raw = baton_reference::generate(11, &[date]);
    let games: Vec<String> = raw["nbac_schedule"]
        .iter()
        .map(|g| g["game_id"].as_str().unwrap().to_owned())
        .collect();
    let mut partial = raw.clone();
    partial
        .get_mut("nbac_team_boxscore")
        .unwrap()
        .retain(|r| games[..2].iter().any(|g| r["game_id"] == g.as_str()));
    let naive =
        baton_reference::compute("team_offense_game_summary", date, &partial, e.clock.now())
            .unwrap()
            .unwrap();
    assert_eq!(
        naive.len(),
        4,
        "the naive run wrote 2 games of {}",
        games.len()
    );
    assert!(games.len() > 2);
    let r = e
        .runner
        .run(
            "team_offense_game_summary",
            date,
            &RunOptions::new("x"),
            &NoHooks,
        )
        .unwrap();
    assert!(matches!(r.outcome, RunOutcome::Deferred { .. }), "{r:?}");
    let table = &e
        .pipeline
        .processor("team_offense_game_summary")
        .unwrap()
        .table;
    assert_eq!(
        e.backend.row_count(table, date).unwrap(),
        0,
        "nothing computed from partial data"
    );
    // The scraper lands 8h45m late; the processor then runs.
    let landed = "2024-03-04T19:45:00Z".parse().unwrap();
    e.backend
        .record_landing("nbac_gamebook_scraper", date, landed, &[])
        .unwrap();
    let r = e
        .runner
        .run(
            "team_offense_game_summary",
            date,
            &RunOptions::new("x"),
            &NoHooks,
        )
        .unwrap();
    assert!(r.succeeded(), "{r:?}");
    assert_eq!(
        e.backend.row_count(table, date).unwrap(),
        2 * games.len() as u64,
        "every game, once the input landed"
    );
}

#[test]
fn a_run_waiting_past_its_deadline_fails_naming_what_never_landed() {
    let e = env();
    let date = e.date.offset(-1);
    // 06:00 ET on the 6th: 24 hours after the box scores were due, past the 8-hour deadline.
    e.clock.set("2024-03-06T11:00:00Z".parse().unwrap());
    let r = e
        .runner
        .run(
            "team_offense_game_summary",
            date,
            &RunOptions::new("x"),
            &NoHooks,
        )
        .unwrap();
    assert_eq!(r.attempts[0].status, RunStatus::Failed);
    assert_eq!(
        r.attempts[0].error.as_deref(),
        Some(
            "inputs not landed by the wait deadline: upstream job `nbac_gamebook_scraper` has not landed"
        )
    );
    assert!(
        e.backend.pending_requests().unwrap().is_empty(),
        "a failed run is not retried forever"
    );
}

#[test]
fn a_partial_run_is_redone_when_the_late_input_lands() {
    let config = REFERENCE_TOML.replacen(
        "on_missing_input = \"wait\"",
        "on_missing_input = \"partial\"",
        1,
    );
    let e = env_with(&config);
    // A date after the landed month; 06:30 ET the next morning, when its box scores are due.
    let date = e.date.offset(1);
    e.clock.set("2024-03-07T11:30:00Z".parse().unwrap());
    let table = e
        .pipeline
        .processor("team_offense_game_summary")
        .unwrap()
        .table
        .clone();
    let spec = e.pipeline.table("nbac_team_boxscore").unwrap().clone();
    let raw = baton_reference::generate(11, &[date]);
    let games: Vec<&str> = raw["nbac_schedule"]
        .iter()
        .map(|g| g["game_id"].as_str().unwrap())
        .collect();
    assert!(games.len() > 2);
    // The first batch (two games) has arrived; the scraper has not reported its landing.
    let first_batch: Vec<_> = raw["nbac_team_boxscore"]
        .iter()
        .filter(|r| games[..2].contains(&r["game_id"].as_str().unwrap()))
        .cloned()
        .collect();
    e.backend.land(&spec, &first_batch).unwrap();
    let first = e
        .runner
        .run(
            "team_offense_game_summary",
            date,
            &RunOptions::new("x"),
            &NoHooks,
        )
        .unwrap();
    assert_eq!(first.attempts[0].status, RunStatus::Partial, "{first:?}");
    assert!(
        first.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("nbac_gamebook_scraper")
    );
    assert_eq!(
        e.backend.row_count(&table, date).unwrap(),
        4,
        "two games so far"
    );
    let owed = e.backend.pending_requests().unwrap();
    let own = owed
        .iter()
        .find(|r| r.processor.as_str() == "team_offense_game_summary")
        .unwrap();
    assert_eq!(own.kind, baton_ports::RequestKind::Partial);
    assert!(
        e.runner
            .retry_pending(&RunOptions::new("serve"), &NoHooks)
            .unwrap()
            .is_empty(),
        "nothing to redo before the input lands"
    );
    // The scraper lands the rest (late); the owed run redoes the date with every game.
    e.backend.land(&spec, &raw["nbac_team_boxscore"]).unwrap();
    e.backend
        .record_landing(
            "nbac_gamebook_scraper",
            date,
            "2024-03-07T19:45:00Z".parse().unwrap(),
            &[],
        )
        .unwrap();
    let redone = e
        .runner
        .retry_pending(&RunOptions::new("serve"), &NoHooks)
        .unwrap();
    assert_eq!(redone.len(), 1);
    assert_eq!(redone[0].attempts[0].status, RunStatus::Success);
    assert_eq!(
        e.backend.row_count(&table, date).unwrap(),
        2 * games.len() as u64
    );
    assert_eq!(e.backend.duplicate_rows(&table, date).unwrap(), 0);
    // Nothing is owed for the processor itself; its dependent is owed a run, since the
    // output it reads changed.
    let owed: Vec<String> = e
        .backend
        .pending_requests()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.processor, r.kind))
        .collect();
    assert_eq!(owed, ["player_game_summary requested"]);
}

#[test]
fn a_request_coalesced_into_a_holder_that_died_still_runs() {
    let e = env();
    let p = e
        .pipeline
        .processor("team_defense_game_summary")
        .unwrap()
        .name
        .clone();
    // A holder takes the lease and dies (SIGKILL): it never releases, never runs the follow-up.
    let held = e
        .backend
        .acquire_lease(
            &p,
            e.date,
            "dead-worker",
            e.pipeline.lease_ttl,
            baton_ports::OnHeld::Report,
        )
        .unwrap();
    assert!(matches!(held, baton_ports::Acquired::Granted(_)));
    let r = e
        .runner
        .run(p.as_str(), e.date, &RunOptions::new("x"), &NoHooks)
        .unwrap();
    assert!(
        matches!(r.outcome, RunOutcome::Coalesced { ref holder, .. } if holder == "dead-worker")
    );
    assert!(
        e.runner
            .retry_pending(&RunOptions::new("serve"), &NoHooks)
            .unwrap()
            .is_empty(),
        "not while the lease may be live"
    );
    e.clock
        .advance(e.pipeline.lease_ttl + jiff::SignedDuration::from_secs(1));
    let owed = e
        .runner
        .retry_pending(&RunOptions::new("serve"), &NoHooks)
        .unwrap();
    assert_eq!(owed.len(), 1);
    assert!(owed[0].succeeded(), "{owed:?}");
    assert!(e.backend.pending_requests().unwrap().is_empty());
}

/// Tester's F4: a request coalesced late in a dead holder's lease is due when that lease
/// lapses, not a whole lease TTL after the request (`serve` left it owed meanwhile).
#[test]
fn a_request_coalesced_late_in_a_dead_holders_lease_runs_once_the_lease_lapses() {
    let e = env();
    let p = e
        .pipeline
        .processor("team_defense_game_summary")
        .unwrap()
        .name
        .clone();
    let held = e
        .backend
        .acquire_lease(
            &p,
            e.date,
            "dead-serve",
            e.pipeline.lease_ttl,
            baton_ports::OnHeld::Report,
        )
        .unwrap();
    assert!(matches!(held, baton_ports::Acquired::Granted(_)));
    // The request comes a minute before the dead holder's lease lapses.
    let minute = SignedDuration::from_secs(60);
    e.clock.advance(e.pipeline.lease_ttl - minute);
    let r = e
        .runner
        .run(p.as_str(), e.date, &RunOptions::new("x"), &NoHooks)
        .unwrap();
    assert!(matches!(r.outcome, RunOutcome::Coalesced { .. }), "{r:?}");
    assert!(
        e.runner.owed_runs_due().unwrap().is_empty(),
        "not while the lease is live"
    );
    e.clock.advance(minute + SignedDuration::from_secs(1));
    assert_eq!(
        e.runner.owed_runs_due().unwrap().len(),
        1,
        "due once the lease lapsed"
    );
    let owed = e
        .runner
        .retry_pending(&RunOptions::new("serve"), &NoHooks)
        .unwrap();
    assert_eq!(owed.len(), 1);
    assert!(owed[0].succeeded(), "{owed:?}");
    assert!(e.backend.pending_requests().unwrap().is_empty());
}

/// Drops the processor's table just before the fenced write: a real backend error mid-run.
struct BreakTheTable {
    backend: Arc<SqliteBackend>,
}

impl RunHooks for BreakTheTable {
    fn before_write(&self, _lease: &Lease) {
        self.backend
            .with_write_transaction(|tx| {
                tx.execute_batch("DROP TABLE team_offense_game_summary")
                    .map_err(|e| baton_ports::Error::Permanent(e.to_string()))
            })
            .unwrap();
    }
}

#[test]
fn issue_10_a_backend_error_mid_run_releases_the_lease_and_fails_the_run() {
    let e = env();
    let hooks = BreakTheTable {
        backend: e.backend.clone(),
    };
    let err = e
        .runner
        .run(
            "team_offense_game_summary",
            e.date,
            &RunOptions::new("x"),
            &hooks,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("team_offense_game_summary"),
        "{err}"
    );
    let lease = e
        .backend
        .leases()
        .unwrap()
        .into_iter()
        .find(|l| l.processor.as_str() == "team_offense_game_summary" && l.partition == e.date)
        .unwrap();
    assert!(
        lease.released,
        "the lease is handed back, not held for its TTL"
    );
    let runs = e.backend.runs(e.date).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Failed, "{:?}", runs[0]);
    assert!(runs[0].error.as_deref().unwrap().contains("backend error"));
}

#[test]
fn issue_10_the_next_holder_marks_a_dead_holders_run_abandoned() {
    let e = env();
    let p = baton_core::model::ProcessorName::from("team_offense_game_summary");
    // A holder takes the lease, records its start, and dies (nothing more happens).
    let baton_ports::Acquired::Granted(dead) = e
        .backend
        .acquire_lease(
            &p,
            e.date,
            "dead",
            e.pipeline.lease_ttl,
            baton_ports::OnHeld::Report,
        )
        .unwrap()
    else {
        panic!("free lease")
    };
    e.backend
        .start_run(&baton_ports::RunRecord {
            run_id: baton_core::model::RunId::from("dead-run"),
            processor: p.clone(),
            partition: e.date,
            holder: "dead".into(),
            token: dead.token,
            started_at: e.clock.now(),
            finished_at: None,
            status: RunStatus::Running,
            rows_written: 0,
            duplicates_dropped: 0,
            error: None,
        })
        .unwrap();
    e.clock
        .advance(e.pipeline.lease_ttl + SignedDuration::from_secs(1));
    let r = e
        .runner
        .run(p.as_str(), e.date, &RunOptions::new("next"), &NoHooks)
        .unwrap();
    assert!(r.succeeded(), "{r:?}");
    let runs = e.backend.runs(e.date).unwrap();
    let dead_run = runs
        .iter()
        .find(|r| r.run_id.as_str() == "dead-run")
        .unwrap();
    assert_eq!(dead_run.status, RunStatus::Abandoned);
    assert!(dead_run.finished_at.is_some());
}

/// The reference pipeline with an external processor running `command` (a TOML array)
/// under `limits` (TOML lines).
fn external_command(command: &str, limits: &str) -> String {
    REFERENCE_TOML.replace(
        "# Phase 4: precompute",
        &format!(
            "[[processors]]\nname = \"external_one\"\nphase = 5\ntable = \"external_one\"\nprimary_key = [\"game_date\", \"k\"]\ncommand = {command}\n{limits}\n\n# Phase 4: precompute"
        ),
    )
}

/// Runs `external_one` (the command with these limits) once for the test date.
fn run_external(command: &str, limits: &str) -> baton_runner::RunReport {
    let e = env_with(&external_command(command, limits));
    e.runner
        .run("external_one", e.date, &RunOptions::new("x"), &NoHooks)
        .unwrap()
}

/// Whether the process is gone (or a zombie waiting to be reaped), waiting a bounded time:
/// a SIGKILL is delivered asynchronously.
fn dead(pid: &str) -> bool {
    let stat = format!("/proc/{}/stat", pid.trim());
    for _ in 0..200 {
        match std::fs::read_to_string(&stat) {
            Err(_) => return true,
            Ok(s) if s.rsplit(')').next().unwrap().trim_start().starts_with('Z') => return true,
            Ok(_) => {
                let (_tx, rx) = std::sync::mpsc::channel::<()>();
                let _ = rx.recv_timeout(std::time::Duration::from_millis(25));
            }
        }
    }
    false
}

#[test]
fn issue_10_a_hung_external_command_times_out_and_its_grandchild_dies() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let script = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
    let e = env_with(&external_command(
        &format!("[\"sh\", \"-c\", {script:?}]"),
        "timeout_secs = 1",
    ));
    let r = e
        .runner
        .run("external_one", e.date, &RunOptions::new("x"), &NoHooks)
        .unwrap();
    let a = &r.attempts[0];
    assert_eq!(a.status, RunStatus::Failed);
    let error = a.error.as_deref().unwrap();
    assert!(
        error.contains("processor `external_one`") && error.contains("timeout_secs = 1"),
        "{error}"
    );
    let grandchild = std::fs::read_to_string(&pidfile).unwrap();
    assert!(dead(&grandchild), "the command's whole group is killed");
    let lease = e.backend.leases().unwrap();
    assert!(lease.iter().all(|l| l.released), "the lease is released");
    let table = &e.pipeline.processor("external_one").unwrap().table;
    assert_eq!(e.backend.row_count(table, e.date).unwrap(), 0);
}

#[test]
fn issue_10_endless_output_is_refused_at_the_byte_limit() {
    let script =
        "import json, sys\nwhile True:\n    print(json.dumps({'game_date': sys.argv[1], 'k': 1}))";
    let r = run_external(
        &format!("[\"python3\", \"-c\", {script:?}, \"{{date}}\"]"),
        "stdout_bytes_max = 100000",
    );
    assert_eq!(r.attempts[0].status, RunStatus::Failed);
    let error = r.attempts[0].error.as_deref().unwrap();
    assert!(
        error
            .starts_with("processor `external_one`: stdout passed stdout_bytes_max (100000 bytes)"),
        "{error}"
    );
}

#[test]
fn issue_10_too_many_rows_are_refused_at_the_row_limit() {
    let script = "import json, sys\nfor k in range(10):\n    print(json.dumps({'game_date': sys.argv[1], 'k': k}))";
    let r = run_external(
        &format!("[\"python3\", \"-c\", {script:?}, \"{{date}}\"]"),
        "rows_max = 3",
    );
    let error = r.attempts[0].error.as_deref().unwrap();
    assert!(error.contains("rows_max (3 rows)"), "{error}");
}

#[test]
fn issue_10_a_grandchild_holding_stdout_open_does_not_block_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let script = format!(
        "echo \"{{\\\"game_date\\\": \\\"$BATON_DATE\\\", \\\"k\\\": 1}}\"; sleep 600 & echo $! > {}; exit 0",
        pidfile.display()
    );
    let r = run_external(
        &format!("[\"sh\", \"-c\", {script:?}]"),
        "timeout_secs = 3600",
    );
    assert!(r.succeeded(), "{r:?}");
    assert_eq!(r.attempts[0].rows_written, 1);
    let grandchild = std::fs::read_to_string(&pidfile).unwrap();
    assert!(dead(&grandchild), "what the command left behind is killed");
}

#[test]
fn issue_10_stderr_in_the_error_is_a_bounded_escaped_tail() {
    let script = "import sys\nsys.stderr.write('x' * 100000 + '\\nboom\\x1b[2J\\n')\nsys.exit(4)";
    let r = run_external(
        &format!("[\"python3\", \"-c\", {script:?}]"),
        "stderr_bytes_max = 1024",
    );
    let error = r.attempts[0].error.clone().unwrap();
    assert!(error.contains("exit status: 4"), "{error}");
    assert!(error.ends_with("boom\\u{1b}[2J"), "{error}");
    assert!(error.len() < 1200, "only the tail is kept: {}", error.len());
}

#[test]
fn issue_10_a_command_that_closes_stdout_and_hangs_still_times_out() {
    let script = "exec >&-; sleep 600";
    let r = run_external(&format!("[\"sh\", \"-c\", {script:?}]"), "timeout_secs = 1");
    let error = r.attempts[0].error.as_deref().unwrap();
    assert!(error.contains("timeout_secs = 1"), "{error}");
}

/// The warehouse as it is the instant after a fenced write commits: what a process killed
/// there (SIGKILL) leaves behind.
struct SnapshotAfterWrite {
    inner: Arc<SqliteBackend>,
    runs: std::sync::Mutex<Vec<Vec<baton_ports::RunRecord>>>,
}

impl baton_ports::engine::Transact for SnapshotAfterWrite {
    fn transact(
        &self,
        work: &mut dyn FnMut(&mut dyn baton_ports::engine::Transaction) -> baton_ports::Result<()>,
    ) -> baton_ports::Result<()> {
        self.inner.transact(work)
    }
}

type Counts = std::collections::BTreeMap<Partition, u64>;

impl Warehouse for SnapshotAfterWrite {
    fn ensure_table(&self, t: &baton_core::config::TableSpec) -> baton_ports::Result<()> {
        self.inner.ensure_table(t)
    }
    fn fenced_write(
        &self,
        write: &baton_ports::FencedWrite<'_>,
    ) -> baton_ports::Result<baton_ports::WriteOutcome> {
        let out = self.inner.fenced_write(write)?;
        let runs = self.inner.runs(write.partition)?;
        self.runs.lock().unwrap().push(runs);
        Ok(out)
    }
    fn land(
        &self,
        t: &baton_core::config::TableSpec,
        rows: &[baton_core::model::Row],
    ) -> baton_ports::Result<u64> {
        self.inner.land(t, rows)
    }
    fn read(
        &self,
        t: &baton_core::config::TableSpec,
        from: Partition,
        to: Partition,
    ) -> baton_ports::Result<Vec<baton_core::model::Row>> {
        self.inner.read(t, from, to)
    }
    fn row_count(
        &self,
        t: &baton_core::config::TableSpec,
        p: Partition,
    ) -> baton_ports::Result<u64> {
        self.inner.row_count(t, p)
    }
    fn measure(
        &self,
        t: &baton_core::config::TableSpec,
        p: Partition,
        c: Option<&str>,
    ) -> baton_ports::Result<(u64, u64)> {
        self.inner.measure(t, p, c)
    }
    fn distinct_values(
        &self,
        t: &baton_core::config::TableSpec,
        p: Partition,
        c: &str,
    ) -> baton_ports::Result<std::collections::BTreeSet<String>> {
        self.inner.distinct_values(t, p, c)
    }
    fn duplicate_rows(
        &self,
        t: &baton_core::config::TableSpec,
        p: Partition,
    ) -> baton_ports::Result<u64> {
        self.inner.duplicate_rows(t, p)
    }
    fn row_counts(
        &self,
        t: &baton_core::config::TableSpec,
        from: Partition,
        to: Partition,
    ) -> baton_ports::Result<Counts> {
        self.inner.row_counts(t, from, to)
    }
    fn duplicate_rows_between(
        &self,
        t: &baton_core::config::TableSpec,
        from: Partition,
        to: Partition,
    ) -> baton_ports::Result<Counts> {
        self.inner.duplicate_rows_between(t, from, to)
    }
}

/// Tester's F3: a process killed right after its write committed leaves a finished run
/// (success, rows), not one `running` that abandonment later marks although its completion
/// was published.
#[test]
fn a_run_whose_write_committed_is_finished_in_that_commit() {
    let e = env();
    let snap = Arc::new(SnapshotAfterWrite {
        inner: e.backend.clone(),
        runs: Default::default(),
    });
    let runner = Runner::new(
        e.pipeline.clone(),
        e.backend.clone(),
        snap.clone(),
        e.clock.clone(),
    );
    let r = runner
        .run(
            "team_offense_game_summary",
            e.date,
            &RunOptions::new("w"),
            &NoHooks,
        )
        .unwrap();
    assert!(r.succeeded(), "{r:?}");
    let at_commit = snap.runs.lock().unwrap().clone();
    assert_eq!(at_commit.len(), 1);
    let ran: Vec<_> = at_commit[0]
        .iter()
        .map(|r| (r.status, r.rows_written > 0, r.finished_at.is_some()))
        .collect();
    assert_eq!(
        ran,
        [(RunStatus::Success, true, true)],
        "ended in the write's commit"
    );
    // Its lease lapsing later abandons nothing: the run is over.
    e.clock
        .advance(e.pipeline.lease_ttl + SignedDuration::from_secs(1));
    assert!(e.backend.abandon_runs().unwrap().is_empty());
}
