//! `baton bench`'s end-to-end figures, through a real `baton serve` process at its default
//! settings (a child of the bench, on the bench's database): the trigger latency from the
//! publish of a date's last completion to the next phase's run starting, the latency from
//! an upstream landing to Phase 4 written, and the CPU an idle `serve` uses.
//!
//! The clocks compared are the bench's and the store's (the serve's own on SQLite, the
//! database's on PostgreSQL): one machine, one system clock. The run's start and end are the
//! run records `serve` writes, so how often the bench looks at them does not change a
//! figure.

use super::{Figure, day};
use crate::{Backends, Cli, Exit};
use anyhow::anyhow;
use baton_core::clock::{Clock, SystemClock};
use baton_core::config::Pipeline;
use baton_core::model::Partition;
use baton_ports::{GroupSettings, RunRecord};
use baton_runner::Runner;
use baton_serve::{NoFaults, relay_once};
use jiff::{SignedDuration, Timestamp};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

/// How many samples each figure takes, and how long the idle CPU is measured.
pub(super) struct Sizes {
    /// Dates whose trigger latency is measured.
    pub triggers: usize,
    /// Dates landed and followed to Phase 4 written.
    pub landings: usize,
    /// Seconds of idle `serve` whose CPU time is read.
    pub idle_secs: i64,
}

impl Sizes {
    /// Small with `--quick` (the whole bench stays under a minute), else enough dates for
    /// a p99.
    pub(super) fn new(quick: bool) -> Self {
        if quick {
            Self {
                triggers: 50,
                landings: 5,
                idle_secs: 3,
            }
        } else {
            Self {
                triggers: 300,
                landings: 30,
                idle_secs: 10,
            }
        }
    }
}

/// Longest the bench waits for one run `serve` should start: past it the figure fails,
/// naming what it waited for.
const PATIENCE: SignedDuration = SignedDuration::from_secs(60);

/// The end-to-end figures, through a `serve` started here and stopped at the end.
pub(super) fn figures(
    cli: &Cli,
    pipeline: &Arc<Pipeline>,
    b: &Backends,
    db: &Path,
    distributed: bool,
    sizes: &Sizes,
) -> Result<Vec<Figure>, Exit> {
    settle_earlier_figures(pipeline, b)?;
    let mut serve = Serve(serve_command(cli, db, distributed)?.spawn()?);
    wait_until_serving(b, serve.0.id())?;
    let mut out = trigger_latency(pipeline, b, sizes.triggers, distributed)?;
    out.extend(landing_to_phase4(pipeline, b, sizes.landings)?);
    out.push(idle_cpu(serve.0.id(), sizes.idle_secs)?);
    serve.stop();
    Ok(out)
}

/// Relays what the earlier figures left in the outbox and acks every trigger they
/// delivered, so the `serve` measured here does not start with their backlog.
fn settle_earlier_figures(pipeline: &Pipeline, b: &Backends) -> Result<(), Exit> {
    while relay_once(b.store.as_ref(), b.bus.as_ref(), 1024, &mut NoFaults)? > 0 {}
    let settings = GroupSettings {
        ack_wait: pipeline.ack_wait,
    };
    for gate in &pipeline.gates {
        let group = baton_serve::phase_group(gate.next_phase);
        loop {
            let got = b.bus.fetch(&gate.trigger_topic, &group, 512, settings)?;
            if got.is_empty() {
                break;
            }
            let seqs: Vec<i64> = got.iter().map(|d| d.seq).collect();
            b.bus.ack(&gate.trigger_topic, &group, &seqs)?;
        }
    }
    Ok(())
}

/// A `serve` child, killed when dropped.
struct Serve(Child);

impl Serve {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `baton serve` on the bench's backend, every option at its default.
fn serve_command(cli: &Cli, db: &Path, distributed: bool) -> Result<Command, Exit> {
    let mut c = Command::new(std::env::current_exe()?);
    if let Some(config) = &cli.config {
        c.arg("--config").arg(config);
    }
    if distributed {
        c.args(["--backend", "postgres"]);
        if let Some(u) = &cli.database_url {
            c.args(["--database-url", u]);
        }
        if let Some(u) = &cli.nats_url {
            c.args(["--nats-url", u]);
        }
    } else {
        c.arg("--db").arg(db);
    }
    c.arg("serve").stdout(Stdio::null()).stderr(Stdio::null());
    Ok(c)
}

/// Polls `what` every millisecond until it returns a value, for at most [`PATIENCE`].
fn poll<T>(what: &str, mut f: impl FnMut() -> Result<Option<T>, Exit>) -> Result<T, Exit> {
    let clock = SystemClock;
    let until = clock.now().checked_add(PATIENCE).unwrap_or(clock.now());
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if clock.now() > until {
            return Err(Exit::backend(anyhow!(
                "bench: {what}: nothing after {PATIENCE:#}"
            )));
        }
        clock.sleep(SignedDuration::from_millis(1));
    }
}

/// Waits for the serve's first heartbeat (its first round is done), then a little more for
/// it to go idle.
fn wait_until_serving(b: &Backends, pid: u32) -> Result<(), Exit> {
    let suffix = format!("/{pid}");
    poll("serve's first heartbeat", || {
        let beats = b.store.ops_records("instance/serve/")?;
        Ok(beats.iter().any(|r| r.key.ends_with(&suffix)).then_some(()))
    })?;
    SystemClock.sleep(SignedDuration::from_millis(500));
    Ok(())
}

/// The run of `processor` for `date`, once `done` holds for it.
fn run_of(
    b: &Backends,
    processor: &str,
    date: Partition,
    done: impl Fn(&RunRecord) -> bool,
) -> Result<RunRecord, Exit> {
    poll(&format!("a run of {processor} for {date}"), || {
        let runs = b.store.runs(date)?;
        Ok(runs
            .into_iter()
            .find(|r| r.processor.as_str() == processor && done(r)))
    })
}

/// The next phase's processor the samples watch (the first of the gate's next phase).
fn next_phase_processor(pipeline: &Pipeline) -> Result<String, Exit> {
    let gate = &pipeline.gates[0];
    pipeline
        .phase(gate.next_phase)
        .next()
        .map(|p| p.name.to_string())
        .ok_or_else(|| Exit::usage(anyhow!("the first gate's next phase has no processor")))
}

/// Milliseconds from `from` to `to`.
fn ms(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64() * 1000.0
}

/// For each date: the gate's expected completions but one are published and applied, then
/// the last one is published by the bench (as a processor would); the sample is from just
/// before that publish to the start of the next phase's run, as `serve` recorded it.
fn trigger_latency(
    pipeline: &Arc<Pipeline>,
    b: &Backends,
    dates: usize,
    distributed: bool,
) -> Result<Vec<Figure>, Exit> {
    let gate = &pipeline.gates[0];
    let phase4 = next_phase_processor(pipeline)?;
    // The last completion must be the one the gate waits for: a critical processor when
    // the mode has one (a critical-plus-majority rule is met by all but a non-critical
    // one), else any.
    let mode = &gate.overnight;
    let last = mode
        .critical
        .iter()
        .rev()
        .find(|c| mode.expected.contains(c))
        .or(mode.expected.last())
        .ok_or_else(|| Exit::usage(anyhow!("the first gate expects no processor")))?;
    let rest: Vec<_> = mode.expected.iter().filter(|p| *p != last).collect();
    let bar = super::spinner("end-to-end trigger latency through serve");
    let clock = SystemClock;
    let mut samples = Vec::with_capacity(dates);
    for i in 0..dates {
        let date = day(200_000 + i);
        for p in &rest {
            publish_one(b, gate, p, date, clock.now())?;
        }
        // Let serve apply them: the sample is the last completion's path alone.
        clock.sleep(SignedDuration::from_millis(20));
        // A sample is only the last completion's path if the gate waited for it.
        if b.store
            .runs(date)?
            .iter()
            .any(|r| r.processor.as_str() == phase4)
        {
            return Err(Exit::usage(anyhow!(
                "{phase4} ran for {date} before its gate's last completion was published: the bench's dates must be in a mode that expects every processor"
            )));
        }
        let published = clock.now();
        publish_one(b, gate, last, date, published)?;
        let run = run_of(b, &phase4, date, |_| true)?;
        samples.push(ms(published, run.started_at));
        // Idle again before the next date: the run finished, its completion relayed.
        run_of(b, &phase4, date, |r| r.finished_at.is_some())?;
        clock.sleep(SignedDuration::from_millis(20));
        bar.set_message(format!(
            "end-to-end trigger latency through serve: {}/{dates}",
            i + 1
        ));
    }
    bar.finish_and_clear();
    let target = if distributed { 50.0 } else { 20.0 };
    Ok(quantiles(
        &mut samples,
        "trigger latency end to end",
        "last completion published -> next phase's run started, real serve at defaults",
        target,
    ))
}

/// Publishes the completion of `processor` for `date` on the gate's topic.
fn publish_one(
    b: &Backends,
    gate: &baton_core::gate::Gate,
    processor: &baton_core::model::ProcessorName,
    date: Partition,
    now: Timestamp,
) -> Result<(), Exit> {
    let m = super::completion(processor, date, now);
    b.bus.publish(
        &gate.completion_topic,
        &m.message_id,
        m.to_json().to_string().as_bytes(),
    )?;
    Ok(())
}

/// For each date: every upstream job's rows are landed in the warehouse with the history its
/// processors read, and each landing is recorded (as `baton publish raw` does), which
/// requests the Phase 3 runs; the sample is from the return of the last landing's record
/// to the end of the Phase 4 run `serve` starts once Phase 3's gate triggers.
fn landing_to_phase4(
    pipeline: &Arc<Pipeline>,
    b: &Backends,
    dates: usize,
) -> Result<Vec<Figure>, Exit> {
    let phase4 = next_phase_processor(pipeline)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let runner = Runner::new(
        pipeline.clone(),
        b.store.clone(),
        b.warehouse.clone(),
        clock.clone(),
    );
    let bar = super::spinner("landing to Phase 4 written through serve");
    let history = pipeline
        .processors
        .iter()
        .map(|p| p.history_days)
        .max()
        .unwrap_or(0) as i32;
    let mut samples = Vec::with_capacity(dates);
    let mut missed = 0;
    for i in 0..dates {
        // Dates far apart: each sample lands its own history, as `baton generate` does.
        let date = day(250_000 + i * (history as usize + 10));
        let landed_dates = date.offset(-history).through(date);
        // Lands every job's rows and records each landing (the date's last, with the runs
        // it requests, is its last step), as `baton publish raw` after the job's load.
        crate::demo::land_reference(
            pipeline,
            &runner,
            b.warehouse.as_ref(),
            &landed_dates,
            &[date],
            2024 + i as u64,
            &[],
            clock.now(),
            &|| (),
        )?;
        let landed = clock.now();
        match run_of(b, &phase4, date, |r| {
            r.finished_at.is_some() && r.status.completes()
        }) {
            Ok(run) => samples.push(ms(landed, run.finished_at.unwrap_or(run.started_at))),
            // Said in the figure's name, not dropped silently; the other dates still count.
            Err(e) => {
                crate::errln!("baton bench: landing to Phase 4 for {date}: {}", e.error);
                missed += 1;
            }
        }
        clock.sleep(SignedDuration::from_millis(20));
        bar.set_message(format!(
            "landing to Phase 4 written through serve: {}/{dates}",
            i + 1
        ));
    }
    bar.finish_and_clear();
    if samples.is_empty() {
        return Err(Exit::backend(anyhow!(
            "bench: no landed date reached Phase 4 written"
        )));
    }
    let what = format!(
        "last upstream landing recorded -> Phase 4 run finished, real serve at defaults{}",
        if missed > 0 {
            format!("; {missed} more did not finish within {PATIENCE:#}")
        } else {
            String::new()
        }
    );
    Ok(quantiles(
        &mut samples,
        "landing to Phase 4 written",
        &what,
        f64::INFINITY,
    ))
}

/// p50, p99 and max of `samples` (ms), named `label` and saying `what` they measure; p99
/// held to `p99_target` when finite.
fn quantiles(samples: &mut [f64], label: &str, what: &str, p99_target: f64) -> Vec<Figure> {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let pick = |q: f64| samples[((n.saturating_sub(1)) as f64 * q).round() as usize];
    let fig =
        |q: &str, v: f64| Figure::measured(format!("{label} {q} ({n} dates; {what})"), v, "ms");
    let p99 = fig("p99", pick(0.99));
    let p99 = if p99_target.is_finite() {
        let met = pick(0.99) < p99_target;
        p99.target(format!("< {p99_target} ms"), Some(met))
    } else {
        p99
    };
    vec![fig("p50", pick(0.5)), p99, fig("max", pick(1.0))]
}

/// CPU time (user + system, ms) the idle `serve` used over `secs` seconds, from
/// /proc/PID/stat; held to under one clock tick (10 ms): nothing measurable.
fn idle_cpu(pid: u32, secs: i64) -> Result<Figure, Exit> {
    let bar = super::spinner(&format!("serve idle CPU over {secs} s"));
    SystemClock.sleep(SignedDuration::from_secs(1));
    let before =
        cpu_ms(pid).ok_or_else(|| Exit::backend(anyhow!("cannot read /proc/{pid}/stat")))?;
    SystemClock.sleep(SignedDuration::from_secs(secs));
    let after =
        cpu_ms(pid).ok_or_else(|| Exit::backend(anyhow!("cannot read /proc/{pid}/stat")))?;
    bar.finish_and_clear();
    let used = after - before;
    Ok(Figure::measured(
        format!("serve CPU time idle over {secs} s (user + system, /proc/PID/stat)"),
        used,
        "ms",
    )
    .target("< 10 ms (one clock tick)", Some(used < 10.0)))
}

/// User + system CPU time of `pid` in ms (clock ticks of 10 ms, as Linux reports them).
fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0)
}
