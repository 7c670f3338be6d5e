//! The orchestrator's consume: take a batch from a consumer group, apply it to the store,
//! and acknowledge it, as one operation of the [`StateStore`](crate::StateStore).
//!
//! What differs between backends is how many transactions that takes. Where the bus is a
//! separate system (NATS), [`consume_apart`] fetches, applies in one store transaction and
//! acks after it committed: a crash in between redelivers, and the step's idempotence
//! absorbs the repeat. Where the bus lives in the store's own database (SQLite, the
//! simulator's memory), the backend takes the batch, applies it, advances the group's
//! position and records what is left unacked in one transaction, so nothing is redelivered
//! and nothing needs a per-message delivery record unless it was not acked.
//!
//! Invariant: a delivery the handler acks is acked only if the work it sorted it into was
//! applied (in the same transaction, or in one that committed before); a delivery it does
//! not ack, or a batch whose transaction failed, comes back after the group's ack wait with
//! its attempt counted.

use crate::{Bus, Delivery, GroupSettings, Result, Work, engine};
use baton_core::completion::{Document, Outcome, StepOutput};
use baton_core::message::CompletionMessage;
use baton_core::model::GateId;

/// Which batch to consume.
#[derive(Clone, Copy)]
pub struct Take<'a> {
    /// The bus it comes from.
    pub bus: &'a dyn Bus,
    /// The topic.
    pub topic: &'a str,
    /// The consumer group.
    pub group: &'a str,
    /// At most this many deliveries.
    pub max: usize,
    /// The group's settings (ack wait).
    pub settings: GroupSettings,
}

/// A batch sorted by the handler: the work to apply, and the deliveries to ack once it is.
#[derive(Debug, Clone, Default)]
pub struct Sorted {
    /// The work, applied in this order.
    pub work: Vec<Work>,
    /// Sequence numbers of the deliveries to acknowledge (the rest come back after the ack
    /// wait).
    pub ack: Vec<i64>,
}

/// What a consume did.
#[derive(Debug, Clone, Default)]
pub struct Consumed {
    /// Deliveries taken from the bus.
    pub fetched: usize,
    /// The work applied (as the handler sorted it).
    pub work: Vec<Work>,
    /// One outcome per item of `work`.
    pub outcomes: Vec<Outcome>,
}

/// The consumer's side of a consume.
pub trait ConsumeHandler {
    /// Sorts the deliveries into work and the deliveries to ack. Called outside any store
    /// transaction: it may read the warehouse and the store.
    fn sort(&mut self, deliveries: Vec<Delivery>) -> Result<Sorted>;
    /// The step, as [`engine::apply`] calls it.
    fn step(
        &mut self,
        doc: Option<Document>,
        gate: &GateId,
        message: &CompletionMessage,
    ) -> StepOutput;
    /// Called after the work was applied and before the acks are written; an error stops
    /// the consume there (where apply and ack are one transaction, it rolls back both).
    /// The simulator's crash between commit and ack.
    fn before_ack(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The consume of a store whose bus is a separate system: fetch, sort, apply in one store
/// transaction, then ack (the default of [`crate::StateStore::consume`]).
pub fn consume_apart<S: crate::StateStore + ?Sized>(
    store: &S,
    take: &Take<'_>,
    handler: &mut dyn ConsumeHandler,
) -> Result<Consumed> {
    let deliveries = take
        .bus
        .fetch(take.topic, take.group, take.max, take.settings)?;
    let fetched = deliveries.len();
    if fetched == 0 {
        return Ok(Consumed::default());
    }
    let sorted = handler.sort(deliveries)?;
    let outcomes = if sorted.work.is_empty() {
        Vec::new()
    } else {
        let outcomes = store.apply(&sorted.work, &mut |doc, gate, message| {
            handler.step(doc, gate, message)
        })?;
        handler.before_ack()?;
        outcomes
    };
    take.bus.ack(take.topic, take.group, &sorted.ack)?;
    Ok(Consumed {
        fetched,
        work: sorted.work,
        outcomes,
    })
}

/// Applies a sorted batch inside an open transaction and calls the handler's
/// [`ConsumeHandler::before_ack`]: the part of a one-transaction consume that every
/// embedded backend shares.
pub fn apply_sorted(
    tx: &mut dyn engine::Transaction,
    sorted: &Sorted,
    handler: &mut dyn ConsumeHandler,
) -> Result<Vec<Outcome>> {
    if sorted.work.is_empty() {
        return Ok(Vec::new());
    }
    let outcomes = engine::apply(tx, &sorted.work, &mut |doc, gate, message| {
        handler.step(doc, gate, message)
    })?;
    handler.before_ack()?;
    Ok(outcomes)
}

/// Whether `bus` is the very object `backend` is: a backend that holds the bus in its own
/// database consumes in one transaction only from itself.
pub fn is_same<T>(bus: &dyn Bus, backend: &T) -> bool {
    std::ptr::addr_eq(bus as *const dyn Bus, backend as *const T)
}
