//! The third incident, replayed against `serve` as a library on the in-memory backend and a
//! manual clock: the gamebook scraper due at 06:00 ET lands at 14:45 ET with 2 games and at
//! 15:00 ET with the rest. Landings alone start Phase 3 (no external scheduler), a deadline
//! failure is not the end, changed output re-triggers Phase 4 once, a replayed trigger runs
//! nothing, and health and reconcile can never call a short or stale date clean.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::{Clock, ManualClock};
use baton_core::config::Pipeline;
use baton_core::health::Level;
use baton_core::model::{Partition, ProcessorName, Row};
use baton_ports::{Bus, OutboxKind, RunStatus, StateStore, Warehouse};
use baton_runner::{NoHooks, RunOptions, Runner};
use baton_serve::service::{Identity, Ports, ServeOptions, Service};
use baton_sim::mem::MemBackend;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const GAMEBOOK: &str = "nbac_gamebook_scraper";

struct Env {
    pipeline: Arc<Pipeline>,
    clock: Arc<ManualClock>,
    backend: Arc<MemBackend>,
    runner: Runner,
    date: Partition,
    raw: BTreeMap<String, Vec<Row>>,
    games: Vec<String>,
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A date with at least four games, its raw data generated, everything but the gamebook
/// landed for it (and history before it), at 08:00 ET the morning after.
fn env() -> Env {
    let pipeline = Arc::new(Pipeline::reference().unwrap());
    let clock = Arc::new(ManualClock::new(at("2024-03-10T13:00:00Z")));
    let backend = Arc::new(MemBackend::new(clock.clone()));
    let runner = Runner::new(
        pipeline.clone(),
        backend.clone(),
        backend.clone(),
        clock.clone(),
    );
    runner.ensure_tables().unwrap();
    let date = Partition::parse("2024-03-09").unwrap();
    let dates = date.offset(-30).through(date);
    let raw = baton_reference::generate(11, &dates);
    let games: BTreeSet<String> = raw["nbac_schedule"]
        .iter()
        .filter(|r| r["game_date"] == date.to_string())
        .map(|r| r["game_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(games.len() >= 4, "the test date needs games: {games:?}");
    let e = Env {
        pipeline,
        clock,
        backend,
        runner,
        date,
        raw,
        games: games.into_iter().collect(),
    };
    e.land_history_and_all_but_the_gamebook();
    e
}

impl Env {
    fn table_rows(&self, table: &str, keep: impl Fn(&Row) -> bool) -> Vec<Row> {
        self.raw[table]
            .iter()
            .filter(|r| keep(r))
            .cloned()
            .collect()
    }

    fn is_date(&self, row: &Row, column: &str) -> bool {
        row.get(column).and_then(|v| v.as_str()) == Some(self.date.to_string().as_str())
    }

    fn land_history_and_all_but_the_gamebook(&self) {
        let gamebook_tables = ["nbac_gamebook_player_stats", "nbac_team_boxscore"];
        for table in self.raw.keys() {
            let spec = self.pipeline.table(table).unwrap();
            let rows = self.table_rows(table, |r| {
                !(gamebook_tables.contains(&table.as_str())
                    && self.is_date(r, &spec.partition_column))
            });
            self.backend.land(spec, &rows).unwrap();
        }
        for job in &self.pipeline.upstream {
            for d in self.date.offset(-30).through(self.date.offset(-1)) {
                let t = self.clock.now();
                self.backend.record_landing(&job.name, d, t, &[]).unwrap();
            }
            if job.name != GAMEBOOK {
                let t = self.clock.now();
                self.runner.record_landing(&job.name, self.date, t).unwrap();
            }
        }
    }

    /// Lands the gamebook's rows (and box scores) of `games` for the date, as one batch.
    fn land_gamebook_batch(&self, games: &[String]) -> u32 {
        for table in ["nbac_gamebook_player_stats", "nbac_team_boxscore"] {
            let spec = self.pipeline.table(table).unwrap();
            let rows = self.table_rows(table, |r| {
                self.is_date(r, &spec.partition_column)
                    && games.iter().any(|g| r["game_id"] == g.as_str())
            });
            self.backend.land(spec, &rows).unwrap();
        }
        let t = self.clock.now();
        self.runner.record_landing(GAMEBOOK, self.date, t).unwrap()
    }

    fn service(&self) -> Service {
        let ports = Ports {
            pipeline: self.pipeline.clone(),
            store: self.backend.clone(),
            warehouse: self.backend.clone(),
            bus: self.backend.clone(),
            clock: self.clock.clone(),
        };
        let identity = Identity {
            role: "serve".into(),
            host: "h1".into(),
            pid: 7,
            version: "0.1.0".into(),
            commit: "abc".into(),
        };
        let options = ServeOptions {
            poll: SignedDuration::from_millis(1),
            ..ServeOptions::default()
        };
        Service::new(options, ports, identity).unwrap()
    }

    /// Runs `serve` until nothing is pending.
    fn serve_until_idle(&self) {
        self.service().until_idle().unwrap();
    }

    fn advance_to(&self, to: &str) {
        let d = at(to).duration_since(self.clock.now());
        self.clock.advance(d);
    }

    fn document(&self) -> baton_core::completion::Document {
        let gate = &self.pipeline.gates[0];
        self.backend.document(&gate.id, self.date).unwrap().unwrap()
    }

    fn games_in(&self, table: &str) -> BTreeSet<String> {
        let spec = &self.pipeline.processor(table).unwrap().table;
        self.backend
            .read(spec, self.date, self.date)
            .unwrap()
            .iter()
            .filter_map(|r| r.get("game_id").and_then(|v| v.as_str()).map(str::to_owned))
            .collect()
    }

    fn runs_of(&self, processor: &str) -> Vec<baton_ports::RunRecord> {
        let p = ProcessorName::from(processor);
        self.backend
            .runs(self.date)
            .unwrap()
            .into_iter()
            .filter(|r| r.processor == p)
            .collect()
    }

    fn health_fails(&self, code: &str) -> bool {
        let now = self.clock.now();
        let (dates, system) = baton_serve::checks::health_facts(
            &self.pipeline,
            self.backend.as_ref(),
            self.backend.as_ref(),
            self.backend.as_ref(),
            &[self.date],
            now,
        )
        .unwrap();
        let report = baton_core::health::evaluate(&dates, &system, now, Default::default());
        report
            .checks
            .iter()
            .any(|c| c.code == code && c.level == Level::Fail)
    }

    fn reconcile_codes(&self) -> Vec<&'static str> {
        let gate = &self.pipeline.gates[0];
        let r = baton_serve::checks::reconcile_date(
            &self.pipeline,
            self.backend.as_ref(),
            self.backend.as_ref(),
            gate,
            self.date,
            self.clock.now(),
            false,
        )
        .unwrap();
        r.before.findings.iter().map(|f| f.code).collect()
    }
}

#[test]
fn situation_1_a_deadline_failure_is_not_the_end_and_never_silent() {
    let e = env();
    // A run requested at 08:00 ET defers: the gamebook has not landed.
    let deferred = e
        .runner
        .run(
            "team_offense_game_summary",
            e.date,
            &RunOptions::new("cron"),
            &NoHooks,
        )
        .unwrap();
    assert!(matches!(
        deferred.outcome,
        baton_runner::RunOutcome::Deferred { .. }
    ));
    e.serve_until_idle();
    // 14:00 ET: the wait deadline (06:00 + 8h) passes; serve fails the deferred run.
    e.advance_to("2024-03-10T18:30:00Z");
    e.serve_until_idle();
    let failed = e.runs_of("team_offense_game_summary");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].status, RunStatus::Failed);
    assert!(!e.document().triggered);
    // On main, health said "All checks passed" here; now the short date fails.
    assert!(
        e.health_fails("BATON-H012"),
        "a short and silent date fails health"
    );
    assert!(e.reconcile_codes().contains(&"BATON-R009"));
    // 14:45 ET: the gamebook lands; its landing alone starts every reader.
    e.advance_to("2024-03-10T18:45:00Z");
    e.land_gamebook_batch(&e.games.clone());
    e.serve_until_idle();
    let doc = e.document();
    assert!(doc.triggered, "{doc:?}");
    assert_eq!(doc.completed_count, 5);
    assert_eq!(e.games_in("player_game_summary").len(), e.games.len());
    let runs = e.runs_of("team_offense_game_summary");
    assert_eq!(
        runs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [RunStatus::Failed, RunStatus::Success],
        "the failure stays in run history"
    );
    assert!(!e.health_fails("BATON-H012"));
    assert!(!e.health_fails("BATON-H001"));
    assert_eq!(e.reconcile_codes(), Vec::<&str>::new());
}

/// A correction landing again: one player's points in the gamebook change.
fn correct_one_player(e: &Env) {
    let spec = e.pipeline.table("nbac_gamebook_player_stats").unwrap();
    let mut row = e
        .table_rows("nbac_gamebook_player_stats", |r| {
            e.is_date(r, &spec.partition_column) && r["player_status"] == "active"
        })
        .remove(0);
    let points = row["points"].as_i64().unwrap();
    row.insert("points".into(), serde_json::json!(points + 2));
    row.insert(
        "ft_made".into(),
        serde_json::json!(row["ft_made"].as_i64().unwrap() + 2),
    );
    row.insert(
        "ft_attempted".into(),
        serde_json::json!(row["ft_attempted"].as_i64().unwrap() + 2),
    );
    e.backend.land(spec, &[row]).unwrap();
    let t = e.clock.now();
    e.runner.record_landing(GAMEBOOK, e.date, t).unwrap();
}

#[test]
fn situation_2_and_3_two_batches_end_on_every_game_and_trigger_phase_4_once_per_change() {
    let e = env();
    // No external scheduler: nothing but landings starts Phase 3.
    e.advance_to("2024-03-10T18:45:00Z");
    let (first, rest) = e.games.split_at(2);
    assert_eq!(e.land_gamebook_batch(first), 1);
    e.serve_until_idle();
    // Phase 3 ran on two games: the coverage check blocks Phase 4.
    let doc = e.document();
    assert!(!doc.triggered, "{doc:?}");
    assert_eq!(doc.blocked.as_ref().unwrap().check, "game_coverage");
    assert_eq!(e.games_in("player_game_summary").len(), 2);
    // An alert policy watching quality sees the blocked date.
    let policy = baton_core::alert::AlertPolicy {
        name: "quality".into(),
        watch: baton_core::alert::Watch::Quality,
        window: SignedDuration::from_mins(60),
        threshold: 1.0,
        quiet: SignedDuration::from_mins(60),
        notify: Vec::new(),
    };
    let (value, text) = baton_serve::alerting::measure(
        &policy,
        &e.pipeline,
        e.backend.as_ref(),
        e.backend.as_ref(),
        e.backend.as_ref(),
        e.clock.now(),
    )
    .unwrap();
    assert_eq!(value, 1.0, "{text}");
    assert!(text.contains("game_coverage"), "{text}");
    assert!(e.runs_of("player_daily_cache").is_empty());
    // 15:00 ET: the rest lands. Every reader reruns; Phase 4 runs once, on every game.
    e.advance_to("2024-03-10T19:00:00Z");
    assert_eq!(e.land_gamebook_batch(rest), 2);
    assert!(
        e.health_fails("BATON-H012"),
        "output older than its inputs is stale until it reruns"
    );
    e.serve_until_idle();
    let doc = e.document();
    assert_eq!(
        (doc.triggered, doc.trigger_generation),
        (true, 1),
        "{doc:?}"
    );
    assert_eq!(e.games_in("player_game_summary").len(), e.games.len());
    assert_eq!(e.games_in("team_offense_game_summary").len(), e.games.len());
    assert_eq!(e.runs_of("player_daily_cache").len(), 1);
    // 15:30 ET: a correction lands again. The changed output re-triggers, once.
    e.advance_to("2024-03-10T19:30:00Z");
    correct_one_player(&e);
    e.serve_until_idle();
    let doc = e.document();
    assert_eq!(
        (doc.triggered, doc.trigger_generation),
        (true, 2),
        "{doc:?}"
    );
    let triggers = e.backend.outbox_for(OutboxKind::Trigger, e.date).unwrap();
    assert_eq!(triggers.len(), 2, "one trigger per generation");
    let cache_runs = e.runs_of("player_daily_cache").len();
    assert_eq!(cache_runs, 2, "Phase 4 ran once per generation");
    assert_eq!(
        baton_serve::checks::next_phase_generation(
            e.backend.as_ref(),
            &e.pipeline.gates[0],
            e.date
        )
        .unwrap(),
        Some(2)
    );
    assert!(!e.health_fails("BATON-H012"));
    assert_eq!(e.reconcile_codes(), Vec::<&str>::new());

    // A rerun with identical output triggers nothing.
    e.advance_to("2024-03-10T20:00:00Z");
    e.runner
        .run(
            "team_defense_game_summary",
            e.date,
            &RunOptions::new("x"),
            &NoHooks,
        )
        .unwrap();
    e.serve_until_idle();
    assert_eq!(e.document().trigger_generation, 2);

    // G10: a replayed trigger of a handled generation runs nothing.
    let last = triggers.last().unwrap();
    e.backend
        .publish(&last.row.topic, "replay-1", last.row.payload.as_bytes())
        .unwrap();
    e.serve_until_idle();
    assert_eq!(e.runs_of("player_daily_cache").len(), cache_runs);
}

#[test]
fn situation_4_no_data_completes_only_a_date_without_work() {
    let e = env();
    let publish = |date: &str, run: &str| {
        let payload = serde_json::json!({
            "processor_name": "AsyncUpcomingPlayerGameContextProcessor",
            "game_date": date,
            "execution_id": run,
            "status": "no_data",
            "record_count": 0,
            "timestamp": "2024-03-10T12:30:00Z",
        });
        e.backend
            .publish("phase3-completions", run, payload.to_string().as_bytes())
            .unwrap();
    };
    let upgc = ProcessorName::from("upcoming_player_game_context");
    let gate = &e.pipeline.gates[0];
    // Only the message under test: the runs the landings requested are not wanted here.
    let far = at("2030-01-01T00:00:00Z");
    for r in e.backend.pending_requests().unwrap() {
        e.backend
            .clear_request(&r.processor, r.partition, far)
            .unwrap();
    }
    // A game day (games in nbac_schedule): recorded and visible, never counted.
    publish(&e.date.to_string(), "no-data-on-a-game-day");
    e.serve_until_idle();
    let doc = e.document();
    let entry = &doc.entries[&upgc];
    assert_eq!(entry.status, baton_core::model::CompletionStatus::NoData);
    assert!(!entry.is_complete(), "{entry:?}");
    assert_eq!(doc.completed_count, 0);
    // A date without games: `no_data` is the right answer, and it counts.
    let off_day = Partition::parse("2024-07-15").unwrap();
    publish("2024-07-15", "no-data-off-season");
    e.serve_until_idle();
    let doc = e.backend.document(&gate.id, off_day).unwrap().unwrap();
    assert!(doc.entries[&upgc].is_complete());
    assert_eq!(doc.completed_count, 1);
}

#[test]
fn the_runner_fails_a_run_with_no_rows_on_a_date_with_work() {
    let e = env();
    // The gamebook has not landed: team_offense_game_summary would compute no rows from the
    // box scores. Forced to run (partial policy off, so run it directly past its inputs by
    // landing the job with no rows), it must not call a game day `no_data`.
    e.runner
        .store()
        .record_landing(GAMEBOOK, e.date, e.clock.now(), &[])
        .unwrap();
    let r = e
        .runner
        .run(
            "team_offense_game_summary",
            e.date,
            &RunOptions::new("x"),
            &NoHooks,
        )
        .unwrap();
    assert_eq!(r.attempts[0].status, RunStatus::Failed, "{r:?}");
    assert!(
        r.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("nbac_schedule")
    );
}
