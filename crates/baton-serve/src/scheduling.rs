//! Fires the pipeline's schedules (`[[schedules]]`): each round, `serve` asks
//! [`baton_core::cron::due`] whether a schedule has a cron time to fire, claims the fire
//! with compare-and-set on the operational record `schedule/<name>` (its body a
//! [`FireRecord`]), and then records a run request ([`RequestKind::Requested`]) for each
//! of the schedule's processors and the schedule's date. The runner's `retry_pending` (in
//! every drain with the phase runner on) runs them through the lease path, like any owed
//! run: a processor still waiting for an upstream landing waits for it.
//!
//! Invariant: a fire is claimed before anything is requested, so two `serve` instances on
//! one store fire a schedule once: the one whose compare-and-set loses sees the new fire
//! time and finds nothing due. A process that dies between the claim and the requests
//! loses that fire (at most once, by choice: requesting first would let a second instance
//! request again after the first one's run had cleared the request, a second run).
//!
//! The store is read only when a fire is possible: a [`Scheduler`] remembers the last fire
//! time it saw per schedule, and [`cron::due`] with an older last fire is due whenever it
//! is due with the stored one, so a round with nothing due costs no query.

use crate::Error;
use baton_core::config::Pipeline;
use baton_core::cron::{self, FireRecord, Schedule};
use baton_core::model::{Partition, ProcessorName};
use baton_ports::{PendingRequest, RequestKind, StateStore};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// One schedule fired in a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fired {
    /// The schedule.
    pub schedule: String,
    /// The cron time fired.
    pub fire_time: Timestamp,
    /// The date its runs were requested for.
    pub partition: Partition,
    /// The processors requested.
    pub processors: Vec<ProcessorName>,
}

/// Fires schedules, remembering the last fire time it saw of each.
#[derive(Debug, Default)]
pub struct Scheduler {
    seen: BTreeMap<String, Timestamp>,
}

impl Scheduler {
    /// Fires every schedule due at `now` that this caller wins the claim of, as `by` (a
    /// lease holder name); returns what it fired. One another instance fired is skipped.
    pub fn fire_due(
        &mut self,
        pipeline: &Pipeline,
        store: &dyn StateStore,
        by: &str,
        now: Timestamp,
    ) -> Result<Vec<Fired>, Error> {
        let mut fired = Vec::new();
        for schedule in &pipeline.schedules {
            let seen = self.seen.get(&schedule.name).copied();
            if cron::due(schedule, seen, now, &pipeline.timezone).is_none() {
                continue;
            }
            let (last, f) = fire_one(pipeline, store, schedule, by, now)?;
            if let Some(last) = last {
                self.seen.insert(schedule.name.clone(), last);
            }
            fired.extend(f);
        }
        Ok(fired)
    }
}

/// Fires every schedule due at `now` that this caller wins the claim of, as `by`, reading
/// each schedule's record (no memory between calls); returns what it fired.
pub fn fire_due(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    by: &str,
    now: Timestamp,
) -> Result<Vec<Fired>, Error> {
    Scheduler::default().fire_due(pipeline, store, by, now)
}

/// Logs a fire.
fn log_fire(f: &Fired) {
    tracing::info!(
        schedule = %f.schedule,
        fire_time = %f.fire_time,
        date = %f.partition,
        processors = ?f.processors,
        "schedule fired: runs requested"
    );
}

/// Fires one schedule if it is due and the claim is won; returns the last fire time the
/// store holds afterwards (if any) and the fire.
fn fire_one(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    schedule: &Schedule,
    by: &str,
    now: Timestamp,
) -> Result<(Option<Timestamp>, Option<Fired>), Error> {
    let (last_fired, claimed) = claim(pipeline, store, &schedule.record_key(), schedule, by, now)?;
    let Some((fire_time, partition)) = claimed else {
        return Ok((last_fired, None));
    };
    for processor in &schedule.processors {
        store.record_request(&PendingRequest {
            processor: processor.clone(),
            partition,
            kind: RequestKind::Requested,
            reason: format!("schedule {}", schedule.name),
            since: now,
        })?;
    }
    let fired = Fired {
        schedule: schedule.name.clone(),
        fire_time,
        partition,
        processors: schedule.processors.clone(),
    };
    log_fire(&fired);
    Ok((Some(fire_time), Some(fired)))
}

/// A fire this caller won: its cron time and the date it is for.
pub type Won = (Timestamp, Partition);

/// Claims the fire of `schedule` due at `now`, with compare-and-set on the operational
/// record `key`: the last fire time the store held (if any), and the fire time and its
/// date when this caller won it. Anything a fire does comes after the claim, so two
/// `serve` instances do it once (see the module doc).
pub fn claim(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    key: &str,
    schedule: &Schedule,
    by: &str,
    now: Timestamp,
) -> Result<(Option<Timestamp>, Option<Won>), Error> {
    let record = store.ops_record(key)?;
    let last_fired = record.as_ref().and_then(|r| {
        serde_json::from_str::<FireRecord>(&r.body)
            .map_err(|e| tracing::warn!(%key, error = %e, "unreadable schedule record; treated as never fired"))
            .ok()
            .map(|b| b.last_fired)
    });
    let Some(fire_time) = cron::due(schedule, last_fired, now, &pipeline.timezone) else {
        return Ok((last_fired, None));
    };
    let partition = schedule.date.partition(fire_time, &pipeline.timezone);
    let body = FireRecord {
        last_fired: fire_time,
        fired_at: now,
        partition,
        by: by.to_owned(),
    };
    let body = serde_json::to_string(&body)
        .map_err(|e| baton_ports::Error::Permanent(format!("encoding a schedule record: {e}")))?;
    if !store.put_ops_record(key, &body, record.map(|r| r.version))? {
        // Another instance fired it since the read; the next round reads what it wrote.
        tracing::debug!(schedule = %schedule.name, %fire_time, "fired by another instance");
        return Ok((last_fired, None));
    }
    Ok((Some(fire_time), Some((fire_time, partition))))
}
