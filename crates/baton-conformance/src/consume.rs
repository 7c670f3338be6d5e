//! The orchestrator's consume ([`StateStore::consume`]) over a store and a bus: whatever
//! the backend does in one transaction or in three, a batch is applied once, an unacked
//! delivery comes back after the ack wait, and a batch whose apply fails before its ack is
//! neither lost nor applied twice.

use crate::{NowTs, clock, completion, day};
use baton_core::ManualClock;
use baton_core::completion::{self as step, Document, StepOutput};
use baton_core::config::Pipeline;
use baton_core::gate::Gate;
use baton_core::message::CompletionMessage;
use baton_core::model::GateId;
use baton_ports::consume::{ConsumeHandler, Sorted, Take};
use baton_ports::{Bus, Delivery, Error, GroupSettings, OutboxKind, StateStore, Work};
use jiff::SignedDuration;
use std::sync::Arc;

/// The consumer's side, with the faults the exercise needs.
struct Handler {
    pipeline: Pipeline,
    gate: Gate,
    clock: Arc<ManualClock>,
    /// A message id to leave unacked (and unapplied).
    skip: Option<String>,
    /// Fail once between apply and ack.
    crash: bool,
    /// (message id, attempt) of every delivery sorted.
    seen: Vec<(String, u32)>,
}

impl ConsumeHandler for Handler {
    fn sort(&mut self, deliveries: Vec<Delivery>) -> baton_ports::Result<Sorted> {
        let mut sorted = Sorted::default();
        for d in deliveries {
            self.seen.push((d.message_id.clone(), d.attempt));
            if self.skip.as_deref() == Some(d.message_id.as_str()) {
                continue;
            }
            let message = CompletionMessage::parse(&d.payload, &self.pipeline).unwrap();
            sorted.work.push(Work::Completion {
                gate: self.gate.id.clone(),
                message,
            });
            sorted.ack.push(d.seq);
        }
        Ok(sorted)
    }

    fn step(&mut self, doc: Option<Document>, _: &GateId, m: &CompletionMessage) -> StepOutput {
        step::step(doc, m, &self.gate, self.clock.now_ts(), &[])
    }

    fn before_ack(&mut self) -> baton_ports::Result<()> {
        if std::mem::replace(&mut self.crash, false) {
            return Err(Error::Retryable("injected crash before the ack".into()));
        }
        Ok(())
    }
}

/// Consume through `store` from `bus`: one batch applied once, an unacked delivery
/// redelivered after the ack wait (with its attempt counted), and a batch that fails
/// between apply and ack redelivered after the ack wait and applied exactly once.
///
/// `make` builds a fresh store and the bus it consumes from (the same object where the
/// backend holds both); `pass` lets the ack wait pass as in [`crate::exercise_bus`].
pub fn exercise_consume<S: StateStore>(
    make: impl Fn(Arc<ManualClock>) -> (Arc<S>, Arc<dyn Bus>),
    pass: &dyn Fn(&ManualClock, SignedDuration),
) {
    let pipeline = Pipeline::reference().unwrap();
    let gate = pipeline.gates[0].clone();
    let clock = clock();
    let (store, bus) = make(clock.clone());
    let ack_wait = SignedDuration::from_secs(2);
    let topic = gate.completion_topic.clone();
    let take = Take {
        bus: bus.as_ref(),
        topic: &topic,
        group: "orchestrator",
        max: 64,
        settings: GroupSettings { ack_wait },
    };
    let mut handler = Handler {
        pipeline: pipeline.clone(),
        gate: gate.clone(),
        clock: clock.clone(),
        skip: None,
        crash: true,
        seen: Vec::new(),
    };
    let publish = |date: &str, p: &baton_core::model::ProcessorName| {
        let m = completion(p.as_str(), "r1", date);
        bus.publish(
            &topic,
            &format!("{p}-{date}"),
            m.to_json().to_string().as_bytes(),
        )
        .unwrap();
    };
    for p in &gate.overnight.expected {
        publish("2024-03-01", p);
    }
    let n = gate.overnight.expected.len();

    // A crash between apply and ack.
    assert!(
        store.consume(&take, &mut handler).is_err(),
        "the failure between apply and ack surfaces"
    );
    assert_eq!(handler.seen.len(), n);
    let again = store.consume(&take, &mut handler).unwrap();
    assert_eq!(
        again.fetched, 0,
        "a batch that failed before its ack is in flight until its ack wait passes"
    );
    pass(&clock, ack_wait + SignedDuration::from_millis(500));
    handler.seen.clear();
    let redelivered = store.consume(&take, &mut handler).unwrap();
    assert_eq!(redelivered.fetched, n, "the failed batch comes back whole");
    assert!(
        handler.seen.iter().all(|(_, attempt)| *attempt == 2),
        "its attempts are counted: {:?}",
        handler.seen
    );
    assert_eq!(redelivered.outcomes.len(), n);
    let doc = store
        .document(&gate.id, day("2024-03-01"))
        .unwrap()
        .unwrap();
    assert_eq!(doc.completed_count, n, "nothing was lost");
    let triggers = store
        .outbox_for(OutboxKind::Trigger, day("2024-03-01"))
        .unwrap();
    assert_eq!(triggers.len(), 1, "nothing was applied twice: one trigger");
    assert_eq!(bus.pending(&topic, "orchestrator").unwrap(), 0);

    // A delivery the consumer does not ack.
    let (first, second) = (&gate.overnight.expected[0], &gate.overnight.expected[1]);
    publish("2024-03-02", first);
    publish("2024-03-02", second);
    handler.skip = Some(format!("{first}-2024-03-02"));
    handler.seen.clear();
    let batch = store.consume(&take, &mut handler).unwrap();
    assert_eq!((batch.fetched, batch.outcomes.len()), (2, 1));
    assert_eq!(
        bus.pending(&topic, "orchestrator").unwrap(),
        1,
        "the unacked delivery is pending"
    );
    assert_eq!(
        store.consume(&take, &mut handler).unwrap().fetched,
        0,
        "an unacked delivery waits for its ack wait"
    );
    handler.skip = None;
    pass(&clock, ack_wait + SignedDuration::from_millis(500));
    handler.seen.clear();
    let back = store.consume(&take, &mut handler).unwrap();
    assert_eq!(back.fetched, 1);
    assert_eq!(
        handler.seen,
        vec![(format!("{first}-2024-03-02"), 2)],
        "only the unacked delivery comes back, on its second attempt"
    );
    let doc = store
        .document(&gate.id, day("2024-03-02"))
        .unwrap()
        .unwrap();
    assert_eq!(doc.completed_count, 2);
    assert_eq!(bus.pending(&topic, "orchestrator").unwrap(), 0);
    pass(&clock, ack_wait + SignedDuration::from_millis(500));
    assert_eq!(
        store.consume(&take, &mut handler).unwrap().fetched,
        0,
        "acked deliveries stay acked"
    );
}

/// The relay ([`StateStore::relay`]) from `store`'s outbox onto `bus`: every unpublished row
/// once, with the copies asked for, then nothing left.
pub fn exercise_relay<S: StateStore>(make: impl Fn(Arc<ManualClock>) -> (Arc<S>, Arc<dyn Bus>)) {
    let (store, bus) = make(clock());
    for run in ["r1", "r2", "r3"] {
        store.enqueue(&crate::outbox_row(run)).unwrap();
    }
    let topic = crate::outbox_row("r1").topic;
    let claim = SignedDuration::from_secs(30);
    let mut copies = |row: &baton_ports::OutboxRow| {
        if row.row.message_id.contains("r2") {
            vec![format!("{}#copy1", row.row.message_id)]
        } else {
            Vec::new()
        }
    };
    assert_eq!(store.relay(bus.as_ref(), 2, claim, &mut copies).unwrap(), 2);
    assert_eq!(store.backlog().unwrap().pending, 1, "the limit holds");
    assert_eq!(
        store.relay(bus.as_ref(), 10, claim, &mut copies).unwrap(),
        1
    );
    assert_eq!(
        store.relay(bus.as_ref(), 10, claim, &mut copies).unwrap(),
        0
    );
    assert_eq!(store.backlog().unwrap().pending, 0);
    let ids: Vec<String> = bus
        .messages(&topic)
        .unwrap()
        .into_iter()
        .map(|d| d.message_id)
        .collect();
    assert_eq!(
        ids.len(),
        4,
        "each row once, and the copy asked for: {ids:?}"
    );
    assert!(ids.iter().any(|id| id.ends_with("#copy1")));
}
