//! The raw-landings consumer: upstream jobs that cannot run `baton publish raw` announce a
//! landing on the bus (the original pipeline's Phase 2 completion, or baton's own
//! `{"job","date","landed_at"}`) on `[pipeline] raw_landings_topic`; each one read is
//! recorded as a batch through [`Runner::record_landing`], which requests the job's readers
//! in the same transaction, and [`crate::drain`] runs them.
//!
//! Invariant: nothing is dropped: a notice that cannot be read, names an unknown job or
//! table, says the job failed, or was delivered more than `max_deliveries` times goes to
//! the dead-letter queue with its reason before it is acked.
//!
//! A replayed message id is dropped by the bus at publish, so a producer's retry is one
//! batch. A crash after the landing committed and before the ack redelivers the notice,
//! which records one more batch: harmless, since a batch only requests reruns of the
//! readers, and a rerun whose output digest is unchanged triggers nothing downstream.

use crate::Error;
use baton_core::config::Pipeline;
use baton_core::landing::{self, NoticeError};
use baton_ports::{Bus, Delivery, GroupSettings, NewDeadLetter};
use baton_runner::Runner;
use std::sync::Arc;

/// The consumer group that records landings from the raw-landings topic.
pub const LANDINGS_GROUP: &str = "landings";
/// Notices fetched per poll.
const FETCH_MAX: usize = 64;

/// What one poll of the landings consumer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LandingReport {
    /// Deliveries fetched.
    pub fetched: usize,
    /// Landings recorded (one batch each).
    pub recorded: usize,
    /// Notices sent to the dead-letter queue.
    pub dead_lettered: usize,
}

/// Records the landings announced on the raw-landings topic.
pub struct LandingConsumer {
    pipeline: Arc<Pipeline>,
    bus: Arc<dyn Bus>,
    runner: Arc<Runner>,
}

impl LandingConsumer {
    /// A consumer recording through `runner` (its store and clock).
    pub fn new(pipeline: Arc<Pipeline>, bus: Arc<dyn Bus>, runner: Arc<Runner>) -> Self {
        Self {
            pipeline,
            bus,
            runner,
        }
    }

    /// The topic it reads.
    pub fn topic(&self) -> &str {
        &self.pipeline.raw_landings_topic
    }

    /// Fetches one batch of notices; records or dead-letters each, then acks it (after the
    /// write committed, so a crash in between redelivers rather than loses it).
    pub fn poll_once(&self) -> Result<LandingReport, Error> {
        let mut report = LandingReport::default();
        let settings = GroupSettings {
            ack_wait: self.pipeline.ack_wait,
        };
        let topic = self.topic();
        for delivery in self.bus.fetch(topic, LANDINGS_GROUP, FETCH_MAX, settings)? {
            report.fetched += 1;
            match self.read(&delivery) {
                Ok(notice) => {
                    let batch = self.runner.record_landing(
                        &notice.job,
                        notice.partition,
                        notice.landed_at,
                    )?;
                    tracing::info!(job = %notice.job, date = %notice.partition, batch, landed_at = %notice.landed_at, message_id = %delivery.message_id, topic, "landing recorded from the bus");
                    report.recorded += 1;
                }
                Err(reason) => {
                    let letter = NewDeadLetter::new(
                        topic,
                        Some(&delivery.message_id),
                        &delivery.payload,
                        &reason,
                    );
                    let message_id = baton_core::dead_letter::clip(
                        &delivery.message_id,
                        baton_core::dead_letter::FIELD_CAP_BYTES,
                    );
                    tracing::warn!(%message_id, topic, reason = %letter.reason, "landing notice dead-lettered");
                    self.runner.store().dead_letter(&letter)?;
                    report.dead_lettered += 1;
                }
            }
            self.bus.ack(topic, LANDINGS_GROUP, &[delivery.seq])?;
        }
        Ok(report)
    }

    /// The notice a delivery carries, or why it is dead-lettered.
    fn read(&self, delivery: &Delivery) -> Result<landing::LandingNotice, String> {
        if delivery.attempt > self.pipeline.max_deliveries {
            return Err(format!(
                "delivered {} times without being acknowledged (max_deliveries = {})",
                delivery.attempt - 1,
                self.pipeline.max_deliveries
            ));
        }
        landing::parse(&delivery.payload, &self.pipeline, self.runner.now()).map_err(|e| match e {
            NoticeError::NotLanded(_) => format!("not a landing: {e}"),
            _ => format!("unreadable landing notice: {e}"),
        })
    }

    /// Notices not yet acked.
    pub fn pending(&self) -> Result<u64, Error> {
        Ok(self.bus.pending(self.topic(), LANDINGS_GROUP)?)
    }
}

/// A landing recorded outside the loop: its batch and the readers it requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The batch's number (1 for the first landing of the job on the date).
    pub batch: u32,
    /// The processors requested to run (the job's readers).
    pub requested: Vec<String>,
}

/// Records a notice through the same [`Runner::record_landing`] the consumer and
/// `baton publish raw` use (the HTTP endpoint's path): the batch and the readers' run
/// requests in one transaction; `serve` runs them.
pub fn record(
    pipeline: Arc<Pipeline>,
    store: Arc<dyn baton_ports::StateStore>,
    warehouse: Arc<dyn baton_ports::Warehouse>,
    clock: Arc<dyn baton_core::clock::Clock>,
    notice: &landing::LandingNotice,
) -> Result<Recorded, Error> {
    let runner = Runner::new(pipeline.clone(), store, warehouse, clock);
    let batch = runner.record_landing(&notice.job, notice.partition, notice.landed_at)?;
    let requested = pipeline
        .readers_of(&notice.job)
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    Ok(Recorded { batch, requested })
}
