//! The orchestrator consumer and relay on the embedded backend. Incident 1 (a tracker that
//! showed 1/5 and never triggered) is reproduced here.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use baton_core::clock::{Clock, ManualClock};
use baton_core::completion::Document;
use baton_core::config::Pipeline;
use baton_core::message::CompletionMessage;
use baton_core::model::{CompletionStatus, Partition, ProcessorName, RunId};
use baton_ports::{Bus, StateStore};
use baton_serve::{Consumer, ConsumerFaults, NoFaults, ORCHESTRATOR_GROUP, relay_once};
use baton_sqlite::{Durability, SqliteBackend};
use jiff::SignedDuration;
use std::collections::BTreeSet;
use std::sync::Arc;

const ALL: [&str; 5] = [
    "team_offense_game_summary",
    "team_defense_game_summary",
    "upcoming_team_game_context",
    "player_game_summary",
    "upcoming_player_game_context",
];

struct Env {
    _dir: tempfile::TempDir,
    pipeline: Arc<Pipeline>,
    backend: Arc<SqliteBackend>,
    clock: Arc<ManualClock>,
    consumer: Consumer,
    date: Partition,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(Pipeline::reference().unwrap());
    let clock = Arc::new(ManualClock::new("2024-03-10T12:00:00Z".parse().unwrap()));
    let backend = Arc::new(
        SqliteBackend::open(&dir.path().join("b.db"), Durability::Full, clock.clone()).unwrap(),
    );
    for table in &pipeline.tables {
        baton_ports::Warehouse::ensure_table(backend.as_ref(), table).unwrap();
    }
    let consumer = Consumer::new(
        pipeline.clone(),
        backend.clone(),
        backend.clone(),
        backend.clone(),
        clock.clone(),
    );
    Env {
        _dir: dir,
        pipeline,
        backend,
        clock,
        consumer,
        date: Partition::parse("2024-03-05").unwrap(),
    }
}

fn completion(e: &Env, processor: &str) -> CompletionMessage {
    CompletionMessage::new(
        ProcessorName::from(processor),
        e.date,
        RunId::from("run-1"),
        CompletionStatus::Success,
        10,
        e.clock.now(),
    )
}

fn publish(e: &Env, bus_id: &str, payload: &str) {
    e.backend
        .publish("phase3-completions", bus_id, payload.as_bytes())
        .unwrap();
}

fn doc(e: &Env) -> Document {
    e.backend
        .document(&e.pipeline.gates[0].id, e.date)
        .unwrap()
        .unwrap()
}

fn triggers(e: &Env) -> usize {
    e.backend
        .outbox_for(baton_ports::OutboxKind::Trigger, e.date)
        .unwrap()
        .len()
}

#[test]
fn incident_1_a_second_writer_cannot_stop_the_trigger() {
    let e = env();
    // The naive orchestrator: a message already in the document is a duplicate, and the
    // duplicate path returns before the trigger is evaluated.
    let mut naive_doc: BTreeSet<&str> = BTreeSet::new();
    let mut naive_triggered = false;
    for p in ALL {
        naive_doc.insert(p); // the second tracker writes the entry first ...
    }
    for p in ALL {
        let duplicate = naive_doc.contains(p); // ... so the orchestrator sees a duplicate
        if !duplicate {
            naive_triggered = naive_doc.len() == ALL.len();
        }
    }
    assert!(!naive_triggered, "the naive tracker never triggers");

    // baton: the second writer's entries land first (through the store, as any writer must).
    let gate = e.pipeline.gates[0].clone();
    for p in ALL {
        let m = completion(&e, p);
        e.backend
            .edit_document(&gate.id, e.date, &mut |d| {
                let mut out = baton_core::completion::step(d, &m, &gate, e.clock.now(), &[]);
                out.document.triggered = false;
                out.document.trigger_generation = 0;
                Some((out.document, vec![]))
            })
            .unwrap();
    }
    assert!(!doc(&e).triggered);
    for p in ALL {
        publish(
            &e,
            &format!("bus-{p}"),
            &completion(&e, p).to_json().to_string(),
        );
    }
    let report = e.consumer.poll_once(&mut NoFaults).unwrap();
    assert_eq!(
        report.outcomes.get("duplicate"),
        Some(&5),
        "every message is a duplicate: {report:?}"
    );
    assert_eq!(report.triggers, 1, "and the duplicate path still triggers");
    assert_eq!(doc(&e).completed_count, 5);
    assert_eq!(triggers(&e), 1);
}

#[test]
fn duplicates_and_replays_change_no_count_and_trigger_once() {
    let e = env();
    for round in 0..3 {
        for p in ALL {
            publish(
                &e,
                &format!("bus-{p}-{round}"),
                &completion(&e, p).to_json().to_string(),
            );
        }
        e.consumer.poll_once(&mut NoFaults).unwrap();
    }
    let d = doc(&e);
    assert_eq!(d.completed_count, 5);
    assert!(d.entries.values().all(|x| x.messages_seen == 3));
    assert_eq!(triggers(&e), 1);
}

struct CrashOnce(bool);
impl ConsumerFaults for CrashOnce {
    fn crash_before_ack(&mut self) -> bool {
        std::mem::replace(&mut self.0, false)
    }
}

/// On the embedded backend the batch is applied and acked in one transaction: a crash
/// before the ack rolls the apply back too, and the batch comes back after the ack wait and
/// is applied once.
#[test]
fn a_crash_between_apply_and_ack_redelivers_and_applies_once() {
    let e = env();
    for p in ALL {
        publish(
            &e,
            &format!("bus-{p}"),
            &completion(&e, p).to_json().to_string(),
        );
    }
    assert!(
        e.consumer.poll_once(&mut CrashOnce(true)).is_err(),
        "the injected crash surfaces"
    );
    assert_eq!(
        triggers(&e),
        0,
        "the crash rolled the apply back with the ack"
    );
    assert!(
        e.backend
            .document(&e.pipeline.gates[0].id, e.date)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        e.consumer.poll_once(&mut NoFaults).unwrap().fetched,
        0,
        "the batch is in flight until its ack wait passes"
    );
    e.clock
        .advance(e.pipeline.ack_wait + SignedDuration::from_secs(1));
    let report = e.consumer.poll_once(&mut NoFaults).unwrap();
    assert_eq!(
        report.outcomes.get("applied"),
        Some(&5),
        "redelivered after the ack wait, and applied then"
    );
    assert_eq!(triggers(&e), 1);
    assert!(doc(&e).entries.values().all(|x| x.messages_seen == 1));
    assert_eq!(
        e.backend
            .pending("phase3-completions", ORCHESTRATOR_GROUP)
            .unwrap(),
        0
    );
}

#[test]
fn bad_messages_go_to_the_dead_letter_queue_with_a_reason() {
    let e = env();
    publish(&e, "m1", "{not json");
    publish(
        &e,
        "m2",
        r#"{"processor_name": "MysteryProcessor", "game_date": "2024-03-05", "execution_id": "x", "status": "success", "timestamp": "2024-03-05T10:00:00Z"}"#,
    );
    publish(
        &e,
        "m3",
        r#"{"processor_name": "PlayerGameSummaryProcessor", "game_date": "2024-03-05", "execution_id": "x", "status": "success", "timestamp": "2024-03-05T10:00:00", "record_count": 5}"#,
    );
    let report = e.consumer.poll_once(&mut NoFaults).unwrap();
    assert_eq!(report.outcomes.get("dead_lettered"), Some(&2));
    assert_eq!(
        report.outcomes.get("applied"),
        Some(&1),
        "the original pipeline's JSON is accepted"
    );
    let letters = e.backend.dead_letters().unwrap();
    assert!(
        letters[0].letter.reason.starts_with("not JSON"),
        "{:?}",
        letters[0]
    );
    assert!(
        letters[1]
            .letter
            .reason
            .contains("unknown processor `MysteryProcessor`"),
        "{:?}",
        letters[1]
    );
    assert_eq!(letters[1].letter.message_id.as_deref(), Some("m2"));
    assert_eq!(doc(&e).completed_count, 1, "nothing bad was counted");
}

struct DropAll;
impl ConsumerFaults for DropAll {
    fn drop_delivery(&mut self, _: &baton_ports::Delivery) -> bool {
        true
    }
}

#[test]
fn a_message_never_acked_is_dead_lettered_after_max_deliveries() {
    let e = env();
    publish(&e, "m1", &completion(&e, ALL[0]).to_json().to_string());
    for _ in 0..e.pipeline.max_deliveries {
        e.consumer.poll_once(&mut DropAll).unwrap();
        e.clock
            .advance(e.pipeline.ack_wait + SignedDuration::from_secs(1));
    }
    let report = e.consumer.poll_once(&mut NoFaults).unwrap();
    assert_eq!(report.outcomes.get("dead_lettered"), Some(&1), "{report:?}");
    assert!(
        e.backend.dead_letters().unwrap()[0]
            .letter
            .reason
            .contains("max_deliveries")
    );
}

#[test]
fn the_relay_publishes_each_outbox_row_once_even_when_rerun() {
    let e = env();
    for p in ALL {
        publish(
            &e,
            &format!("bus-{p}"),
            &completion(&e, p).to_json().to_string(),
        );
    }
    e.consumer.poll_once(&mut NoFaults).unwrap();
    assert_eq!(
        relay_once(e.backend.as_ref(), e.backend.as_ref(), 10, &mut NoFaults).unwrap(),
        1
    );
    // A relay that crashed before marking republishes with the same id: the bus drops it.
    let row = e
        .backend
        .outbox_for(baton_ports::OutboxKind::Trigger, e.date)
        .unwrap()
        .remove(0);
    assert_eq!(
        e.backend
            .publish(
                &row.row.topic,
                &row.row.message_id,
                row.row.payload.as_bytes()
            )
            .unwrap(),
        baton_ports::Published::Duplicate
    );
    assert_eq!(
        relay_once(e.backend.as_ref(), e.backend.as_ref(), 10, &mut NoFaults).unwrap(),
        0
    );
    assert_eq!(e.backend.messages("phase4-trigger").unwrap().len(), 1);
}

#[test]
fn an_unreadable_trigger_is_dead_lettered_not_dropped() {
    let e = env();
    let runner = Arc::new(baton_runner::Runner::new(
        e.pipeline.clone(),
        e.backend.clone(),
        e.backend.clone(),
        e.clock.clone(),
    ));
    let triggers =
        baton_serve::TriggerConsumer::new(e.pipeline.clone(), e.backend.clone(), runner, "t");
    let topic = &e.pipeline.gates[0].trigger_topic;
    e.backend
        .publish(
            topic,
            "garbage-1",
            br#"{"date": "2024-03-05", "not": "a trigger"}"#,
        )
        .unwrap();
    let report = triggers.poll_once(&baton_runner::NoHooks).unwrap();
    assert_eq!(report.triggers, 0, "nothing ran for it");
    let letters = e.backend.dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "kept in the dead-letter queue");
    assert_eq!(&letters[0].letter.topic, topic);
    assert!(
        letters[0].letter.reason.starts_with("unreadable trigger"),
        "{:?}",
        letters[0]
    );
    assert_eq!(
        e.backend
            .pending(
                topic,
                &baton_serve::phase_group(e.pipeline.gates[0].next_phase)
            )
            .unwrap(),
        0,
        "and acked, so it is not redelivered forever"
    );
}

/// Lands `games` scheduled games for the date and player rows for the first `played` of
/// them (two players each, minutes recorded).
fn land_games(e: &Env, games: usize, played: usize) {
    let table = |name: &str| e.pipeline.table(name).unwrap().clone();
    let date = e.date.to_string();
    let schedule: Vec<baton_core::model::Row> = (0..games)
        .map(|g| row(serde_json::json!({"game_id": format!("g{g:02}"), "game_date": date})))
        .collect();
    let players: Vec<baton_core::model::Row> = (0..played)
        .flat_map(|g| {
            let date = date.clone();
            (0..2).map(move |p| {
                row(serde_json::json!({
                    "game_id": format!("g{g:02}"), "game_date": date,
                    "player_lookup": format!("p{g:02}{p}"), "minutes": 30,
                }))
            })
        })
        .collect();
    let w: &dyn baton_ports::Warehouse = e.backend.as_ref();
    w.land(&table("nbac_schedule"), &schedule).unwrap();
    w.land(&table("player_game_summary"), &players).unwrap();
}

fn row(v: serde_json::Value) -> baton_core::model::Row {
    v.as_object().unwrap().clone()
}

fn publish_all(e: &Env, run: &str) {
    for p in ALL {
        let mut m = completion(e, p);
        m.run_id = RunId::from(run);
        publish(e, &format!("{run}-{p}"), &m.to_json().to_string());
    }
}

#[test]
fn two_of_ten_games_block_the_trigger_and_a_warning_triggers_and_is_recorded() {
    let e = env();
    land_games(&e, 10, 2);
    publish_all(&e, "run-1");
    let report = e.consumer.poll_once(&mut NoFaults).unwrap();
    assert_eq!(report.triggers, 0, "2 of 10 games never trigger Phase 4");
    assert_eq!(triggers(&e), 0);
    let d = doc(&e);
    assert_eq!(d.completed_count, 5);
    assert!(!d.triggered);
    let blocked = d.blocked.expect("the block is recorded");
    assert_eq!(blocked.check, "game_coverage");
    assert_eq!(
        blocked.evidence,
        "2 of 10 game_id values of nbac_schedule in player_game_summary.game_id (20.0%; \
         minimum 80%, warning below 85%); missing g02, g03, g04, ..."
    );
    assert!(d.warnings.is_empty());
    let h010 = quality_health(&e);
    assert_eq!(h010.level, baton_core::health::Level::Fail, "{h010:?}");
    assert!(
        h010.evidence
            .starts_with("trigger blocked: 2024-03-05: `game_coverage` 2 of 10")
    );

    // Eight of ten games processed and rerun: above the minimum, below the warning
    // threshold. The trigger goes out, with the warning on the document.
    land_games(&e, 10, 8);
    publish_all(&e, "run-2");
    let report = e.consumer.poll_once(&mut NoFaults).unwrap();
    assert_eq!(report.triggers, 1, "a warning does not block: {report:?}");
    assert_eq!(triggers(&e), 1);
    let d = doc(&e);
    assert!(d.triggered && d.blocked.is_none());
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert_eq!(d.warnings[0].check, "game_coverage");
    assert_eq!(
        d.warnings[0].evidence,
        "8 of 10 game_id values of nbac_schedule in player_game_summary.game_id (80.0%; \
         minimum 80%, warning below 85%); missing g08, g09"
    );
    assert_eq!(d.warnings[0].at, e.clock.now());
    let h010 = quality_health(&e);
    assert_eq!(h010.level, baton_core::health::Level::Warn, "{h010:?}");
    assert_eq!(
        h010.details,
        [format!(
            "WARN 2024-03-05: `game_coverage` {}",
            d.warnings[0].evidence
        )]
    );
    assert!(
        h010.evidence
            .contains("(80.0%; minimum 80%, warning below 85%)")
    );
}

/// Health's quality-check verdict (BATON-H010) for the test's date.
fn quality_health(e: &Env) -> baton_core::health::Check {
    let b = e.backend.as_ref();
    let (dates, system) =
        baton_serve::checks::health_facts(&e.pipeline, b, b, b, &[e.date], e.clock.now()).unwrap();
    let report = baton_core::health::evaluate(&dates, &system, e.clock.now(), Default::default());
    report
        .checks
        .into_iter()
        .find(|c| c.code == "BATON-H010")
        .unwrap()
}

#[test]
fn every_scheduled_game_covered_triggers_without_a_warning() {
    let e = env();
    land_games(&e, 10, 10);
    publish_all(&e, "run-1");
    let report = e.consumer.poll_once(&mut NoFaults).unwrap();
    assert_eq!(report.triggers, 1);
    let d = doc(&e);
    assert!(d.triggered && d.blocked.is_none() && d.warnings.is_empty());
}
