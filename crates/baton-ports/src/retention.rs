//! The prune: carries out `baton_core::retention`'s policy on a store and its bus, in bounded
//! batches (one short transaction per batch of `policy.batch` rows, so a prune never holds a
//! long lock and `serve`'s other work interleaves with it).
//!
//! Runs are judged here, per (processor, date), by the pure
//! [`RetentionPolicy::runs_to_remove`]; the outbox and bus rules are simple enough that each
//! adapter states them in SQL (`prune_outbox`, `prune_consumed`), and the in-memory fake
//! calls the pure predicates.

use crate::{Bus, Result, RunRecord, RunStatus, StateStore};
use baton_core::model::RunId;
use baton_core::retention::{PruneReport, RetentionPolicy, RunAge, RunKind};
use jiff::Timestamp;

/// Whether a prune removes or only counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Remove.
    Delete,
    /// Count what would go; remove nothing.
    DryRun,
}

/// Prunes run history, relayed completion rows and consumed bus messages as `policy` says,
/// judged at `now`.
pub fn prune(
    store: &dyn StateStore,
    bus: &dyn Bus,
    policy: &RetentionPolicy,
    now: Timestamp,
    mode: Mode,
) -> Result<PruneReport> {
    let mut report = prune_store(store, policy, now, mode)?;
    report.bus_messages = prune_bus(bus, policy, now, mode)?;
    Ok(report)
}

/// The store's part of [`prune`]: run history and relayed completion rows (`bus_messages`
/// is `None`).
pub fn prune_store(
    store: &dyn StateStore,
    policy: &RetentionPolicy,
    now: Timestamp,
    mode: Mode,
) -> Result<PruneReport> {
    let batch = policy.batch.max(1) as usize;
    let cutoff = policy.cutoff(now);
    let ids = runs_to_remove(store, policy, now)?;
    let mut report = PruneReport {
        dry_run: mode == Mode::DryRun,
        ..PruneReport::default()
    };
    if mode == Mode::DryRun {
        report.runs = ids.len() as u64;
        report.outbox = store.prunable_outbox(cutoff)?;
        return Ok(report);
    }
    for chunk in ids.chunks(batch) {
        report.runs += store.delete_runs(chunk)?;
    }
    report.outbox = in_batches(batch, |n| store.prune_outbox(cutoff, n).map(Some))?.unwrap_or(0);
    Ok(report)
}

/// The bus's part of [`prune`]: consumed messages (`None`: the bus keeps its own retention).
pub fn prune_bus(
    bus: &dyn Bus,
    policy: &RetentionPolicy,
    now: Timestamp,
    mode: Mode,
) -> Result<Option<u64>> {
    let cutoff = policy.cutoff(now);
    match mode {
        Mode::DryRun => bus.prunable_consumed(cutoff),
        Mode::Delete => in_batches(policy.batch.max(1) as usize, |n| {
            bus.prune_consumed(cutoff, n)
        }),
    }
}

/// Calls `step` with `batch` until it removes fewer (or says it does not prune: `None`).
fn in_batches(
    batch: usize,
    mut step: impl FnMut(usize) -> Result<Option<u64>>,
) -> Result<Option<u64>> {
    let mut total = 0;
    loop {
        match step(batch)? {
            None => return Ok(None),
            Some(n) => {
                total += n;
                if (n as usize) < batch {
                    return Ok(Some(total));
                }
            }
        }
    }
}

/// The runs the policy removes, over every (processor, date) with more than `keep_runs`.
fn runs_to_remove(
    store: &dyn StateStore,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<Vec<RunId>> {
    let runs = store.runs_beyond(policy.keep_runs.max(1) as usize)?;
    let mut out = Vec::new();
    for group in runs.chunk_by(|a, b| a.processor == b.processor && a.partition == b.partition) {
        let ages: Vec<RunAge> = group.iter().map(age).collect();
        out.extend(
            policy
                .runs_to_remove(&ages, now)
                .into_iter()
                .map(|i| group[i].run_id.clone()),
        );
    }
    Ok(out)
}

/// A run as the policy sees it.
pub fn age(r: &RunRecord) -> RunAge {
    RunAge {
        kind: match r.status {
            RunStatus::Running => RunKind::Running,
            s if s.completes() => RunKind::Completing,
            _ => RunKind::Ended,
        },
        started_at: r.started_at,
        finished_at: r.finished_at,
    }
}
