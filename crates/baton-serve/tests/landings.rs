//! Landings announced on the bus: the original pipeline's Phase 2 completion, published on
//! the raw-landings topic, becomes a landing with its readers requested, once per message
//! id; a notice that is not a landing is dead-lettered with its reason. On the in-memory
//! backend with a manual clock (nothing here sleeps).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::Clock;
use baton_ports::{Bus, RequestKind, StateStore};
use baton_serve::landings::LANDINGS_GROUP;
use jiff::SignedDuration;

mod common;

use common::env;

impl common::Env {
    fn publish(&self, message_id: &str, payload: &str) {
        self.backend
            .publish("raw-landings", message_id, payload.as_bytes())
            .unwrap();
    }

    fn gamebook(&self) -> Option<baton_ports::Landing> {
        self.backend
            .landings(self.date)
            .unwrap()
            .into_iter()
            .find(|l| l.job == "nbac_gamebook_scraper")
    }
}

const PHASE2_GAMEBOOK: &str = r#"{"output_table": "nbac_gamebook_player_stats", "game_date": "2024-03-09", "status": "success", "timestamp": "2024-03-10T06:05:00Z", "execution_id": "p2-1"}"#;

#[test]
fn a_phase_2_completion_on_the_bus_is_a_landing_with_its_readers_requested() {
    let e = env();
    let mut service = e.service();
    e.publish("phase2/gamebook/2024-03-09/p2-1", PHASE2_GAMEBOOK);
    let round = service.round().unwrap();
    assert_eq!(round.drain.landings, 1, "{round:?}");
    let landing = e.gamebook().unwrap();
    assert_eq!(landing.batches, 1);
    assert_eq!(landing.landed_at.to_string(), "2024-03-10T06:05:00Z");
    let mut requested: Vec<String> = e
        .backend
        .pending_requests()
        .unwrap()
        .into_iter()
        .filter(|r| r.partition == e.date && r.kind == RequestKind::Requested)
        .map(|r| r.processor.to_string())
        .collect();
    requested.sort();
    let mut readers: Vec<String> = e
        .pipeline
        .readers_of("nbac_gamebook_scraper")
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    readers.sort();
    assert_eq!(requested, readers);
    assert_eq!(
        e.backend.pending("raw-landings", LANDINGS_GROUP).unwrap(),
        0,
        "acked"
    );
}

#[test]
fn a_redelivered_message_id_is_one_batch_and_a_new_one_is_the_next() {
    let e = env();
    let mut service = e.service();
    e.publish("phase2/gamebook/2024-03-09/p2-1", PHASE2_GAMEBOOK);
    service.round().unwrap();
    // The producer retries the same message: the bus drops the replayed id.
    e.publish("phase2/gamebook/2024-03-09/p2-1", PHASE2_GAMEBOOK);
    let round = service.round().unwrap();
    assert_eq!(round.drain.landings, 0, "{round:?}");
    assert_eq!(e.gamebook().unwrap().batches, 1);

    // A second batch later that morning (a corrected box score) is a new message.
    e.clock.advance(SignedDuration::from_hours(2));
    e.publish(
        "phase2/gamebook/2024-03-09/p2-2",
        r#"{"source_table": "nbac_team_boxscore", "game_date": "2024-03-09", "status": "success"}"#,
    );
    let round = service.round().unwrap();
    assert_eq!(round.drain.landings, 1, "{round:?}");
    let landing = e.gamebook().unwrap();
    assert_eq!(landing.batches, 2);
    assert_eq!(
        landing.landed_at.to_string(),
        "2024-03-10T06:05:00Z",
        "the first landing stays"
    );
    assert_eq!(landing.latest_at, e.clock.now());
}

#[test]
fn notices_that_are_not_landings_are_dead_lettered_with_their_reason() {
    let e = env();
    let mut service = e.service();
    let bad = [
        ("bad/1", "not json", "unreadable"),
        (
            "bad/2",
            r#"{"output_table": "no_such_table", "game_date": "2024-03-09", "status": "success"}"#,
            "no_such_table",
        ),
        (
            "bad/3",
            r#"{"output_table": "nbac_schedule", "game_date": "2024-02-30", "status": "success"}"#,
            "game_date",
        ),
        (
            "bad/4",
            r#"{"output_table": "nbac_schedule", "game_date": "2024-03-09", "status": "failed"}"#,
            "not a landing",
        ),
    ];
    for (id, payload, _) in bad {
        e.publish(id, payload);
    }
    let round = service.round().unwrap();
    assert_eq!(round.drain.landings, 0, "{round:?}");
    assert_eq!(round.drain.landings_dead_lettered, 4, "{round:?}");
    assert!(e.backend.landings(e.date).unwrap().is_empty());
    let letters = e.backend.dead_letters().unwrap();
    for (id, payload, reason) in bad {
        let l = letters
            .iter()
            .find(|l| l.letter.message_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} dead-lettered: {letters:?}"));
        assert_eq!(l.letter.topic, "raw-landings");
        assert_eq!(
            l.letter.payload,
            payload.as_bytes(),
            "kept exactly as received"
        );
        assert!(
            l.letter.reason.contains(reason),
            "{id}: {}",
            l.letter.reason
        );
    }
    assert_eq!(
        e.backend.pending("raw-landings", LANDINGS_GROUP).unwrap(),
        0
    );
}
