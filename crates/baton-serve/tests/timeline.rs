//! A date's timeline shows every landing batch and every completion the consumer received,
//! duplicates and stale ones with their verdict, through `serve` on the in-memory backend
//! and a manual clock; and for a date re-sent past the history's bound it says how many
//! earlier receipts are not kept.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::Clock;
use baton_core::message::CompletionMessage;
use baton_core::model::{CompletionStatus, ProcessorName, RunId};
use baton_ports::{Bus, StateStore};
use baton_serve::timeline::{self, Event, Timeline};
use jiff::SignedDuration;

const GAMEBOOK: &str = "nbac_gamebook_scraper";
const PGS: &str = "player_game_summary";

mod common;

use common::env;

impl common::Env {
    fn serve_until_idle(&self) {
        self.service().until_idle().unwrap();
    }

    fn minutes_later(&self, minutes: i64) {
        self.clock.advance(SignedDuration::from_mins(minutes));
    }

    /// Publishes a completion of `player_game_summary` under `message_id` (a resend of a
    /// run is another message with the run's content).
    fn send(&self, message_id: &str, run: &str, status: CompletionStatus, rows: u64, at: &str) {
        let mut m = CompletionMessage::new(
            ProcessorName::from(PGS),
            self.date,
            RunId::from(run),
            status,
            rows,
            at.parse().unwrap(),
        );
        m.message_id = message_id.into();
        self.backend
            .publish(
                "phase3-completions",
                message_id,
                m.to_json().to_string().as_bytes(),
            )
            .unwrap();
    }

    fn timeline(&self) -> Timeline {
        timeline::build(&self.pipeline, self.backend.as_ref(), self.date).unwrap()
    }
}

fn kind(e: &Event) -> String {
    serde_json::to_value(e.kind)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

fn of_kind<'a>(t: &'a Timeline, k: &str) -> Vec<&'a Event> {
    t.events.iter().filter(|e| kind(e) == k).collect()
}

#[test]
fn every_landing_batch_and_every_completion_received_is_an_event_with_its_verdict() {
    let e = env();
    let first_at = e.clock.now();
    e.backend
        .record_landing(GAMEBOOK, e.date, first_at, &[])
        .unwrap();
    e.minutes_later(15);
    e.backend
        .record_landing(GAMEBOOK, e.date, e.clock.now(), &[])
        .unwrap();
    e.minutes_later(30);
    let second_at = e.clock.now();
    e.backend
        .record_landing(GAMEBOOK, e.date, second_at, &[])
        .unwrap();

    e.minutes_later(5);
    e.send(
        "m-1",
        "r1",
        CompletionStatus::Success,
        10,
        "2024-03-10T12:40:00Z",
    );
    e.serve_until_idle();
    e.minutes_later(5);
    e.send(
        "m-2",
        "r1",
        CompletionStatus::Success,
        10,
        "2024-03-10T12:40:00Z",
    );
    e.send(
        "m-3",
        "r1",
        CompletionStatus::Success,
        11,
        "2024-03-10T12:40:00Z",
    );
    e.send(
        "m-4",
        "r0",
        CompletionStatus::Failed,
        0,
        "2024-03-10T12:30:00Z",
    );
    e.serve_until_idle();

    let t = e.timeline();
    // Three batches: the first as the landing, the two later ones each as a batch.
    let first = of_kind(&t, "landing");
    assert_eq!(first.len(), 1, "{t:#?}");
    assert_eq!(
        (first[0].at, first[0].data["batch"].as_u64()),
        (first_at, Some(1))
    );
    let later = of_kind(&t, "landing_batch");
    let numbers: Vec<Option<u64>> = later.iter().map(|b| b.data["batch"].as_u64()).collect();
    assert_eq!(numbers, [Some(2), Some(3)], "{t:#?}");
    assert_eq!(later[1].at, second_at);

    // Four messages received, each with the step's verdict, in the order applied.
    let received: Vec<(String, String, String)> = t
        .events
        .iter()
        .filter(|ev| kind(ev).starts_with("completion_") && kind(ev) != "completion_published")
        .map(|ev| {
            (
                kind(ev),
                ev.data["message_id"].as_str().unwrap().to_owned(),
                ev.data["verdict"]["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("completion_applied", "m-1", "applied"),
        ("completion_duplicate", "m-2", "duplicate"),
        ("completion_duplicate", "m-3", "conflicting_duplicate"),
        ("completion_stale", "m-4", "stale"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(received, expected, "{t:#?}");
    let stale = of_kind(&t, "completion_stale")[0];
    assert!(stale.detail.contains("stale"), "{}", stale.detail);
    assert_eq!(stale.subject, PGS);
    assert!(
        of_kind(&t, "completion_duplicate")[1]
            .detail
            .contains("record_count"),
        "the conflicting field is named"
    );
    assert!(t.notes.is_empty(), "everything is kept: {:?}", t.notes);
}

#[test]
fn a_date_resent_past_the_bound_keeps_the_latest_receipts_and_says_how_many_are_not() {
    let e = env();
    let extra = 7;
    let sent = baton_ports::engine::RECEIPTS_KEPT + extra;
    for i in 0..sent {
        e.send(
            &format!("m-{i}"),
            "r1",
            CompletionStatus::Success,
            10,
            "2024-03-10T12:00:00Z",
        );
    }
    e.serve_until_idle();
    let doc = e
        .backend
        .document(&e.pipeline.gates[0].id, e.date)
        .unwrap()
        .unwrap();
    assert_eq!(
        doc.entries[&ProcessorName::from(PGS)].messages_seen,
        sent as u64
    );
    let t = e.timeline();
    let kept = of_kind(&t, "completion_duplicate").len() + of_kind(&t, "completion_applied").len();
    assert_eq!(kept, baton_ports::engine::RECEIPTS_KEPT as usize);
    assert!(
        of_kind(&t, "completion_applied").is_empty(),
        "the first (applied) receipt is among the forgotten"
    );
    let last = t
        .events
        .iter()
        .rev()
        .find(|ev| kind(ev) == "completion_duplicate")
        .unwrap();
    assert_eq!(last.data["message_id"], format!("m-{}", sent - 1));
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains(&format!("{extra} earlier")) && n.contains("not kept")),
        "{:?}",
        t.notes
    );
}
