//! The orchestrator figure of `baton bench`: what `serve` sustains on a backlog of
//! completions, measured through the loop `serve` runs ([`baton_serve::drain`]: the relay,
//! then the completion consumer, round after round until nothing is pending), so the
//! triggers the completions decide are relayed within the measured time, as in production.
//! The baseline is the store's bare upsert through the same connection, per the same number
//! of messages.

use super::{Figure, elapsed, publish_completions, spinner};
use crate::{Backends, Exit};
use anyhow::anyhow;
use baton_core::clock::Clock;
use baton_core::config::Pipeline;
use baton_runner::NoHooks;
use baton_serve::{Consumer, DrainReport, NoFaults, Services, drain};
use std::sync::Arc;

/// Completions per second applied by `serve`'s loop, with their triggers relayed, over a
/// backlog of `dates` x the gate's processors, half of them duplicates (the same run
/// delivered twice under different bus ids, as a replaying publisher would).
pub(super) fn orchestrator(
    pipeline: &Arc<Pipeline>,
    b: &Backends,
    clock: &Arc<dyn Clock>,
    dates: usize,
    distributed: bool,
) -> Result<Figure, Exit> {
    let gate = &pipeline.gates[0];
    let now = clock.now();
    let bar = spinner("orchestrator throughput: publishing the backlog");
    let mut total = 0usize;
    for i in 0..dates {
        total += publish_completions(b, gate, super::day(i), now, &["dup"])?;
    }
    bar.set_message("orchestrator throughput: serve's loop draining it");
    let start = clock.now();
    // Nothing is left in flight on a healthy backend: a round that moves nothing means the
    // backlog is done, so the loop never waits.
    let report = drain_backlog(pipeline, b, clock, &mut || {}, usize::MAX)?;
    let secs = elapsed(start);
    let applied: usize = report.outcomes.values().sum();
    if applied != total || report.relayed != report.triggers {
        return Err(Exit::backend(anyhow!(
            "orchestrator bench: {applied} of {total} completions applied, {} of {} triggers relayed",
            report.relayed,
            report.triggers
        )));
    }
    let rate = total as f64 / secs;
    bar.set_message("orchestrator throughput: baseline");
    let start = clock.now();
    b.admin.baselines().upserts(total, baton_serve::BATCH_MAX)?;
    let baseline = total as f64 / elapsed(start);
    bar.finish_and_clear();
    let floor = if distributed { 5_000.0 } else { 20_000.0 };
    Ok(Figure::measured(
        format!(
            "orchestrator throughput, serve's loop ({total} completions applied of {dates} dates x {} processors, half duplicates; {} triggers relayed)",
            gate.overnight.expected.len(),
            report.relayed
        ),
        rate,
        "msg/s",
    )
    .against(
        Some(baseline),
        format!(
            "{total} single-row upserts, {} per transaction",
            baton_serve::BATCH_MAX
        ),
    )
    .target(
        format!(">= 50% of baseline and >= {floor:.0} msg/s"),
        Some(rate >= 0.5 * baseline && rate >= floor),
    ))
}

/// Drains what is pending with the loop `serve` runs (relay, completion consumer, trigger
/// relay; no phase runner), calling `wait` after a round that moved nothing, for at most
/// `rounds_max` rounds: the orchestrator figure times it, `bench --scale` measures its growth.
pub(crate) fn drain_backlog(
    pipeline: &Arc<Pipeline>,
    b: &Backends,
    clock: &Arc<dyn Clock>,
    wait: &mut dyn FnMut(),
    rounds_max: usize,
) -> Result<DrainReport, Exit> {
    let consumer = Consumer::new(
        pipeline.clone(),
        b.store.clone(),
        b.warehouse.clone(),
        b.bus.clone(),
        clock.clone(),
    );
    let services = Services {
        pipeline,
        store: b.store.as_ref(),
        bus: b.bus.as_ref(),
        consumer: &consumer,
        triggers: None,
        landings: None,
    };
    Ok(drain(
        &services,
        &mut NoFaults,
        &mut NoFaults,
        &NoHooks,
        wait,
        rounds_max,
    )?)
}
