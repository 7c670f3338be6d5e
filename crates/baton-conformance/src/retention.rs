//! Retention's conformance: what `baton_ports::retention::prune` removes from a store and a
//! bus, and what it must leave (runs a verdict reads, trigger rows, unpublished rows,
//! messages a group has not passed, anything younger than the window), in batches.

use crate::{NowTs, day};
use baton_core::ManualClock;
use baton_core::model::{FenceToken, ProcessorName, RunId};
use baton_core::retention::RetentionPolicy;
use baton_ports::retention::{self, Mode};
use baton_ports::{
    Bus, GroupSettings, NewOutboxRow, OutboxKind, Published, RunEnd, RunRecord, RunStatus,
    StateStore,
};
use jiff::SignedDuration;

fn policy() -> RetentionPolicy {
    RetentionPolicy {
        keep_runs: 5,
        older_than: SignedDuration::from_hours(24 * 7),
        batch: 3,
    }
}

fn eight_days() -> SignedDuration {
    SignedDuration::from_hours(24 * 8)
}

/// Thirty runs of one (processor, date): the first succeeded, the sixth is still running,
/// the rest failed. After the window, the newest five, the running one and the successful
/// one (reconcile's truth) stay; before it, everything stays. Relayed completion rows older
/// than the window go; the trigger row and an unpublished row stay. A dry run removes nothing.
pub(crate) fn exercise_store_retention<S: StateStore>(store: &S, clock: &ManualClock) {
    let p = ProcessorName::from("retention_probe");
    let d = day("2023-06-01");
    for i in 0..30 {
        let id = RunId::from(format!("ret{i:02}").as_str());
        store
            .start_run(&RunRecord {
                run_id: id.clone(),
                processor: p.clone(),
                partition: d,
                holder: "w".into(),
                token: FenceToken::new(i + 1),
                started_at: clock.now_ts(),
                finished_at: None,
                status: RunStatus::Running,
                rows_written: 0,
                duplicates_dropped: 0,
                error: None,
            })
            .unwrap();
        clock.advance(SignedDuration::from_secs(60));
        if i != 5 {
            let status = if i == 0 {
                RunStatus::Success
            } else {
                RunStatus::Failed
            };
            let end = RunEnd {
                status,
                rows_written: 1,
                duplicates_dropped: 0,
                error: None,
            };
            store.finish_run(&id, &end).unwrap();
        }
    }
    let row = |id: &str, kind: OutboxKind| NewOutboxRow {
        topic: "retention".into(),
        message_id: id.into(),
        kind,
        partition: d,
        payload: "{}".into(),
    };
    for i in 0..7 {
        store
            .enqueue(&row(&format!("c{i}"), OutboxKind::Completion))
            .unwrap();
    }
    store.enqueue(&row("trigger", OutboxKind::Trigger)).unwrap();
    let claimed = store
        .claim_unpublished(1_000, SignedDuration::from_secs(30))
        .unwrap();
    store
        .mark_published(&claimed.iter().map(|r| r.id).collect::<Vec<_>>())
        .unwrap();
    store
        .enqueue(&row("unpublished", OutboxKind::Completion))
        .unwrap();
    let ids = || -> Vec<String> {
        (store.runs(d).unwrap().iter())
            .map(|r| r.run_id.to_string())
            .collect()
    };
    let outbox = |kind| store.outbox_for(kind, d).unwrap().len();

    let young = retention::prune_store(store, &policy(), clock.now_ts(), Mode::Delete).unwrap();
    assert_eq!(
        (ids().len(), outbox(OutboxKind::Completion)),
        (30, 8),
        "{young:?}: within the window nothing goes"
    );

    clock.advance(eight_days());
    let dry = retention::prune_store(store, &policy(), clock.now_ts(), Mode::DryRun).unwrap();
    assert!(dry.dry_run && dry.runs >= 23 && dry.outbox >= 7, "{dry:?}");
    assert_eq!(ids().len(), 30, "a dry run removes nothing");
    assert_eq!(outbox(OutboxKind::Completion), 8);

    let done = retention::prune_store(store, &policy(), clock.now_ts(), Mode::Delete).unwrap();
    assert_eq!(
        (done.runs, done.outbox, done.dry_run),
        (dry.runs, dry.outbox, false)
    );
    assert_eq!(
        ids(),
        [
            "ret00", "ret05", "ret25", "ret26", "ret27", "ret28", "ret29"
        ],
        "the best successful run, the running one and the newest five stay"
    );
    let left: Vec<String> = (store.outbox_for(OutboxKind::Completion, d).unwrap().iter())
        .map(|r| r.row.message_id.clone())
        .collect();
    assert_eq!(left, ["unpublished"], "an unpublished row is work");
    assert_eq!(outbox(OutboxKind::Trigger), 1, "trigger rows stay");
    let again = retention::prune_store(store, &policy(), clock.now_ts(), Mode::Delete).unwrap();
    assert_eq!(
        (again.runs, again.outbox),
        (0, 0),
        "a second prune finds nothing"
    );
}

/// A message goes once every group of its topic has taken it with no delivery outstanding
/// and it is older than the window; a topic without a group keeps everything; what the
/// groups still have coming is delivered as before. A bus that keeps its own retention
/// (NATS) answers `None` and is not exercised further.
pub(crate) fn exercise_bus_retention<B: Bus>(
    bus: &B,
    clock: &ManualClock,
    pass: &dyn Fn(&ManualClock, SignedDuration),
) {
    let Some(none_yet) =
        retention::prune_bus(bus, &policy(), clock.now_ts(), Mode::DryRun).unwrap()
    else {
        return;
    };
    let settings = GroupSettings {
        ack_wait: SignedDuration::from_secs(2),
    };
    for id in ["r1", "r2", "r3"] {
        bus.publish("kept", id, id.as_bytes()).unwrap();
    }
    bus.publish("lonely", "l1", b"l1").unwrap();
    let a = bus.fetch("kept", "a", 10, settings).unwrap();
    bus.ack("kept", "a", &a.iter().map(|m| m.seq).collect::<Vec<_>>())
        .unwrap();
    let b = bus.fetch("kept", "b", 2, settings).unwrap();
    bus.ack("kept", "b", &[b[0].seq]).unwrap();
    let young = retention::prune_bus(bus, &policy(), clock.now_ts(), Mode::Delete).unwrap();
    assert_eq!(young, Some(0), "within the window nothing goes");

    pass(clock, eight_days());
    let dry = retention::prune_bus(bus, &policy(), clock.now_ts(), Mode::DryRun).unwrap();
    assert_eq!(
        dry,
        Some(none_yet + 1),
        "only r1 has been passed by every group"
    );
    assert_eq!(
        bus.messages("kept").unwrap().len(),
        3,
        "a dry run removes nothing"
    );
    let done = retention::prune_bus(bus, &policy(), clock.now_ts(), Mode::Delete).unwrap();
    assert_eq!(done, dry);
    let left: Vec<String> = (bus.messages("kept").unwrap().into_iter())
        .map(|m| m.message_id)
        .collect();
    assert_eq!(left, ["r2", "r3"]);
    assert_eq!(
        bus.messages("lonely").unwrap().len(),
        1,
        "no group, nothing passed"
    );
    assert_eq!(bus.pending("kept", "b").unwrap(), 2);
    let redelivered: Vec<String> = (bus.fetch("kept", "b", 10, settings).unwrap().into_iter())
        .map(|m| m.message_id)
        .collect();
    assert_eq!(redelivered, ["r2", "r3"], "what b has coming still comes");
    assert_eq!(
        bus.publish("kept", "r1", b"r1").unwrap(),
        Published::New,
        "the window is the horizon of duplicate detection"
    );
}
