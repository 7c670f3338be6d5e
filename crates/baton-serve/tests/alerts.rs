//! Alert policies end to end on a real SQLite store, with real HTTP deliveries to a local
//! receiver that records what it got, and time moved by an injected clock.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::ManualClock;
use baton_core::config::{Pipeline, REFERENCE_TOML};
use baton_ports::{NewDeadLetter, StateStore, Work};
use baton_serve::alerting::{self, AlertRound, Notifier};
use baton_sqlite::{Durability, SqliteBackend};
use baton_testkit::receiver;
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;

fn pipeline(slack_file: &std::path::Path, hook_port: u16) -> Pipeline {
    let extra = format!(
        r#"
[[notifiers]]
name = "slack"
kind = "slack"
url_file = "{}"

[[notifiers]]
name = "ops-hook"
kind = "webhook"
url = "http://127.0.0.1:{hook_port}/hook"

[[alerts]]
name = "dead-letters"
watch = "dead_letters"
window_mins = 60
threshold = 1
quiet_mins = 60
notify = ["slack", "ops-hook"]
"#,
        slack_file.display()
    );
    Pipeline::from_toml(&format!("{REFERENCE_TOML}{extra}")).unwrap()
}

fn dead_letter(store: &SqliteBackend) {
    let letter = NewDeadLetter {
        topic: "phase3-completions".into(),
        message_id: None,
        payload: "{not json".into(),
        reason: "not JSON".into(),
    };
    store
        .apply(&[Work::DeadLetter(letter)], &mut |_, _, _| {
            unreachable!("no completions")
        })
        .unwrap();
}

#[test]
fn an_incident_opens_once_notifies_slack_and_the_webhook_once_and_closes_after_quiet() {
    let slack = receiver(0).unwrap();
    let hook = receiver(0).unwrap();
    // The Slack URL carries a secret in its path, as real ones do.
    let secret = "T000/B000/XXXXsecretXXXX";
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("slack-url");
    std::fs::write(
        &url_file,
        format!("http://127.0.0.1:{}/services/{secret}\n", slack.port),
    )
    .unwrap();
    let pipeline = pipeline(&url_file, hook.port);
    let t0: Timestamp = "2024-03-02T12:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let store =
        SqliteBackend::open(&dir.path().join("b.db"), Durability::Full, clock.clone()).unwrap();
    let notifiers = alerting::notifiers(&pipeline).unwrap();
    let round =
        |now| alerting::run_alerts(&pipeline, &store, &store, &store, &notifiers, now).unwrap();

    assert_eq!(
        round(t0),
        AlertRound::default(),
        "nothing wrong: nothing happens"
    );
    dead_letter(&store);
    let opened = round(t0);
    assert_eq!(
        (opened.opened, opened.delivered),
        (1, 2),
        "opened, notified on both"
    );
    let slack_got = slack.got.lock().unwrap().clone();
    assert_eq!(slack_got.len(), 1);
    let payload: serde_json::Value = serde_json::from_str(&slack_got[0].1).unwrap();
    let text = payload["text"].as_str().unwrap();
    assert!(
        text.contains("dead-letters")
            && text.contains("opened")
            && text.contains("1 messages dead-lettered"),
        "{text}"
    );
    let hook_got: serde_json::Value = serde_json::from_str(&hook.got.lock().unwrap()[0].1).unwrap();
    assert_eq!(hook_got["event"], "opened");
    assert_eq!(hook_got["policy"], "dead-letters");

    // Still breaching, more letters: no new notice.
    dead_letter(&store);
    let later = t0.checked_add(SignedDuration::from_mins(10)).unwrap();
    assert_eq!(round(later).delivered, 0);
    assert_eq!(
        slack.got.lock().unwrap().len(),
        1,
        "an open incident notifies once"
    );
    assert_eq!(alerting::open_incidents(&store).unwrap().len(), 1);

    // The letters (recorded at t0) leave the window after +60m; the incident closes once
    // the figure has been quiet for 60m after its last breach (+10m), at +70m.
    assert_eq!(
        round(t0.checked_add(SignedDuration::from_mins(65)).unwrap()).closed,
        0
    );
    let closed = round(t0.checked_add(SignedDuration::from_mins(71)).unwrap());
    assert_eq!((closed.closed, closed.delivered), (1, 2));
    let last: serde_json::Value = serde_json::from_str(&hook.got.lock().unwrap()[1].1).unwrap();
    assert_eq!(last["event"], "closed");
    assert!(slack.got.lock().unwrap()[1].1.contains("closed"));
    assert!(alerting::open_incidents(&store).unwrap().is_empty());

    // The secret never reaches what is stored (and so never reaches `alerts list`).
    for r in store.ops_records("").unwrap() {
        assert!(!r.body.contains(secret), "{}", r.body);
    }
}

#[test]
fn a_failed_delivery_is_recorded_and_retried_with_backoff() {
    let slack = receiver(2).unwrap();
    let hook = receiver(0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("slack-url");
    std::fs::write(
        &url_file,
        format!("http://127.0.0.1:{}/services/secret", slack.port),
    )
    .unwrap();
    let pipeline = pipeline(&url_file, hook.port);
    let t0: Timestamp = "2024-03-02T12:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let store =
        SqliteBackend::open(&dir.path().join("b.db"), Durability::Full, clock.clone()).unwrap();
    let notifiers = alerting::notifiers(&pipeline).unwrap();
    let round =
        |now| alerting::run_alerts(&pipeline, &store, &store, &store, &notifiers, now).unwrap();
    dead_letter(&store);

    let first = round(t0);
    assert_eq!(
        (first.delivered, first.failed),
        (1, 1),
        "the webhook got it; Slack answered 500"
    );
    let incident = &alerting::incidents(&store).unwrap()[0];
    let slack_notice = incident
        .notices
        .iter()
        .find(|n| n.notifier == "slack")
        .unwrap();
    assert_eq!(slack_notice.attempts, 1);
    assert!(
        slack_notice.last_error.as_deref().unwrap().contains("500"),
        "{slack_notice:?}"
    );
    assert!(
        !slack_notice
            .last_error
            .as_deref()
            .unwrap()
            .contains("secret")
    );

    // Backing off: nothing is sent again until 60 s have passed, then 120 s.
    assert_eq!(
        round(t0.checked_add(SignedDuration::from_secs(59)).unwrap()).failed,
        0
    );
    let second = round(t0.checked_add(SignedDuration::from_secs(61)).unwrap());
    assert_eq!(second.failed, 1, "second attempt also failed");
    assert_eq!(
        round(t0.checked_add(SignedDuration::from_secs(61 + 100)).unwrap()).failed,
        0
    );
    let third = round(t0.checked_add(SignedDuration::from_secs(61 + 121)).unwrap());
    assert_eq!(third.delivered, 1, "delivered on the third attempt");
    assert_eq!(slack.got.lock().unwrap().len(), 1, "delivered exactly once");
    assert_eq!(
        hook.got.lock().unwrap().len(),
        1,
        "the webhook was never re-sent"
    );
    let test_notifier: &dyn Notifier = notifiers[1].as_ref();
    alerting::test_notifier(test_notifier, t0).unwrap();
    assert_eq!(
        hook.got.lock().unwrap().len(),
        2,
        "a test notice reaches the receiver"
    );
}
