//! `baton demo`: the reference pipeline end to end on a fresh database, with the faults of
//! the real incident injected on request, then a per-date verdict.

use crate::status::{verdict_table, verdicts};
use crate::{Cli, EXIT_FAILED, Exit, Outcome, load_pipeline, open_backend, parse_date};
use anyhow::anyhow;
use baton_core::clock::{Clock, OffsetClock};
use baton_core::config::TableSpec;
use baton_core::lease::Lease;
use baton_core::model::{Partition, Row};
use baton_core::rng::SplitMix64;
use baton_ports::{Bus, Delivery, StateStore, Warehouse};
use baton_runner::{RunHooks, RunOptions, Runner};
use baton_serve::{Consumer, ConsumerFaults, RelayFaults, Services, TriggerConsumer, drain};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::SignedDuration;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// `baton demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How many consecutive dates to run.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=366))]
    dates: u32,
    /// The last date (default: yesterday in the pipeline's time zone).
    #[arg(long, value_parser = parse_date)]
    end: Option<Partition>,
    /// Faults to inject, as probabilities: duplicate, drop, reorder, crash, pause, and
    /// orchestrator_down (completions acked but never applied, as in the incident).
    /// Example: duplicate=0.3,drop=0.2,reorder=0.2,crash=0.05,pause=0.1
    #[arg(long, value_parser = parse_faults, default_value = "")]
    faults: FaultSpec,
    /// Upstream jobs that land late, e.g. nbac_gamebook_scraper=8h45m (repeatable).
    #[arg(long, value_parser = parse_late)]
    late: Vec<(String, SignedDuration)>,
    /// Seed of the data and of the faults.
    #[arg(long, default_value_t = 2024)]
    seed: u64,
    /// Print the verdicts as JSON.
    #[arg(long)]
    json: bool,
}

/// Fault probabilities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSpec {
    duplicate: f64,
    drop: f64,
    reorder: f64,
    crash: f64,
    pause: f64,
    orchestrator_down: f64,
}

fn parse_faults(text: &str) -> Result<FaultSpec, String> {
    let mut spec = FaultSpec::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: expected NAME=PROBABILITY"))?;
        let p: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("`{part}`: `{value}` is not a number"))?;
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("`{part}`: a probability is between 0 and 1"));
        }
        match key.trim() {
            "duplicate" => spec.duplicate = p,
            "drop" => spec.drop = p,
            "reorder" => spec.reorder = p,
            "crash" => spec.crash = p,
            "pause" => spec.pause = p,
            "orchestrator_down" => spec.orchestrator_down = p,
            other => {
                return Err(format!(
                    "unknown fault `{other}` (duplicate, drop, reorder, crash, pause, orchestrator_down)"
                ));
            }
        }
    }
    Ok(spec)
}

fn parse_late(text: &str) -> Result<(String, SignedDuration), String> {
    let (job, duration) = text.split_once('=').ok_or_else(|| {
        format!("`{text}`: expected JOB=DURATION, e.g. nbac_gamebook_scraper=8h45m")
    })?;
    let d: SignedDuration = duration
        .parse()
        .map_err(|e| format!("`{duration}` is not a duration like 8h45m: {e}"))?;
    Ok((job.to_owned(), d))
}

/// The faults, drawn from one seeded generator; counts what was injected.
struct Faults {
    spec: FaultSpec,
    rng: Mutex<SplitMix64>,
    dropped_once: Mutex<BTreeSet<i64>>,
    paused: Mutex<BTreeSet<(String, Partition)>>,
    clock: Arc<OffsetClock>,
    counts: Mutex<BTreeMap<&'static str, usize>>,
    crashes_left: AtomicUsize,
}

impl Faults {
    /// Forgets the deliveries dropped and the holders paused, once their date is quiet (a
    /// drain ends with nothing in flight): memory per date, not per demo.
    fn forget_settled(&self) {
        self.dropped_once
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
    fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().unwrap_or_else(|e| e.into_inner()).chance(p)
    }
    fn count(&self, what: &'static str) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(what)
            .or_default() += 1;
    }
}

impl ConsumerFaults for &Faults {
    fn reorder(&mut self, batch: &mut Vec<Delivery>) {
        if batch.len() > 1 && self.roll(self.spec.reorder) {
            self.rng
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .shuffle(batch);
            self.count("reordered batches");
        }
    }
    fn drop_delivery(&mut self, delivery: &Delivery) -> bool {
        // Each message is dropped at most once: "dropped, then redelivered".
        if self.roll(self.spec.drop)
            && self
                .dropped_once
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(delivery.seq)
        {
            self.count("dropped deliveries");
            return true;
        }
        false
    }
    fn lose_delivery(&mut self, _: &Delivery) -> bool {
        let lost = self.roll(self.spec.orchestrator_down);
        if lost {
            self.count("completions lost while the orchestrator was down");
        }
        lost
    }
    fn crash_before_ack(&mut self) -> bool {
        // Bounded so no message exceeds max_deliveries through crashes alone.
        if self.roll(self.spec.crash)
            && self
                .crashes_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.count("consumer crashes");
            return true;
        }
        false
    }
}

impl RelayFaults for &Faults {
    fn extra_copies(&mut self, _message_id: &str) -> u32 {
        if self.roll(self.spec.duplicate) {
            self.count("duplicate messages");
            1
        } else {
            0
        }
    }
}

impl RunHooks for Faults {
    fn before_write(&self, lease: &Lease) {
        let key = (lease.processor.to_string(), lease.partition);
        if self.roll(self.spec.pause)
            && self
                .paused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key)
        {
            // The holder stalls (a GC pause, a frozen VM) past its lease.
            let ttl = lease.expires_at.duration_since(lease.renewed_at);
            self.clock.jump(ttl + SignedDuration::from_secs(1));
            self.count("holders paused past their lease");
        }
    }
}

/// Phase 2 of the reference pipeline: generates the raw tables for `dates`, lands them, and
/// records each upstream job's landing at its expected time (plus any `late` delay). After
/// the last of `run_dates`, only jobs already due at `now` land (a pipeline running up to
/// this moment). A landing for one of `run_dates` requests runs of its readers; one for
/// another date (history) is only recorded. One date's rows are generated, landed and
/// dropped at a time (memory does not grow with the range); late landings are returned to
/// be generated again when they land.
#[allow(clippy::too_many_arguments)] // one call site per command; a struct would only rename them
pub fn land_reference(
    pipeline: &baton_core::Pipeline,
    runner: &Runner,
    warehouse: &dyn Warehouse,
    dates: &[Partition],
    run_dates: &[Partition],
    seed: u64,
    late: &[(String, SignedDuration)],
    now: jiff::Timestamp,
    tick: &dyn Fn(),
) -> Result<Vec<LateLanding>, Exit> {
    let season = baton_reference::Season::new(seed);
    land_dates(
        pipeline,
        runner,
        warehouse,
        dates,
        run_dates,
        &|date| season.date(date),
        late,
        now,
        tick,
    )
}

/// [`land_reference`] with the raw rows of each date from `generate`, called for a date
/// only once the date before it has landed (and `tick` said so).
#[allow(clippy::too_many_arguments)] // land_reference's, with the generator
fn land_dates(
    pipeline: &baton_core::Pipeline,
    runner: &Runner,
    warehouse: &dyn Warehouse,
    dates: &[Partition],
    run_dates: &[Partition],
    generate: &dyn Fn(Partition) -> baton_reference::RawData,
    late: &[(String, SignedDuration)],
    now: jiff::Timestamp,
    tick: &dyn Fn(),
) -> Result<Vec<LateLanding>, Exit> {
    let end = run_dates.last().copied().unwrap_or(Partition::new(
        now.to_zoned(pipeline.timezone.clone()).date(),
    ));
    let mut held = Vec::new();
    for &date in dates {
        let raw = generate(date);
        for job in &pipeline.upstream {
            let delay = late
                .iter()
                .find(|(j, _)| j == &job.name)
                .map_or(SignedDuration::ZERO, |(_, d)| *d);
            let expected = baton_core::schedule::expected_at(job, date, &pipeline.timezone);
            if date > end && expected > now {
                continue;
            }
            let at = expected.checked_add(delay).unwrap_or(expected);
            if !delay.is_zero() && run_dates.contains(&date) {
                // Held back: it lands later, in two batches, while Phase 3 runs.
                held.push(LateLanding {
                    job: job.name.clone(),
                    date,
                    at,
                });
                continue;
            }
            for (spec, rows) in job_rows(pipeline, &raw, job, &date.to_string()) {
                warehouse.land(&spec, &rows)?;
            }
            if run_dates.contains(&date) {
                // Recorded with the runs it requests: `serve` runs its readers.
                runner.record_landing(&job.name, date, at)?;
            } else {
                // History before the run dates (or today, past them): data the pipeline
                // already processed, or not yet asked for.
                runner.store().record_landing(&job.name, date, at, &[])?;
            }
        }
        tick();
    }
    Ok(held)
}

/// Rows of several tables, landed together.
pub type TableRows = Vec<(TableSpec, Vec<Row>)>;

/// A late job's landing for one date, held back to land in two batches as in the incident:
/// the first two games at the late time, the rest 15 minutes later. Only the when is held;
/// the rows are generated when it lands.
pub struct LateLanding {
    /// The job.
    pub job: String,
    /// The date.
    pub date: Partition,
    /// When its first batch lands.
    pub at: jiff::Timestamp,
}

impl LateLanding {
    /// Each batch in order: when it lands, and its rows by table.
    pub fn batches(
        &self,
        pipeline: &baton_core::Pipeline,
        season: &baton_reference::Season,
    ) -> Vec<(jiff::Timestamp, TableRows)> {
        let Some(job) = pipeline.upstream_job(&self.job) else {
            return Vec::new();
        };
        let raw = season.date(self.date);
        let games: BTreeSet<String> = raw
            .get("nbac_schedule")
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|r| r.get("game_id").and_then(|v| v.as_str()).map(str::to_owned))
            .collect();
        let first: BTreeSet<&String> = games.iter().take(2).collect();
        let in_first = |r: &Row| {
            r.get("game_id")
                .and_then(|v| v.as_str())
                .is_none_or(|g| first.contains(&g.to_owned()))
        };
        let mut batches = vec![
            (self.at, Vec::new()),
            (self.at + SignedDuration::from_mins(15), Vec::new()),
        ];
        for (spec, rows) in job_rows(pipeline, &raw, job, &self.date.to_string()) {
            let (a, b): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|r| in_first(r));
            batches[0].1.push((spec.clone(), a));
            batches[1].1.push((spec, b));
        }
        batches
    }
}

/// The rows a job lands for one day, by table.
fn job_rows(
    pipeline: &baton_core::Pipeline,
    raw: &BTreeMap<String, Vec<Row>>,
    job: &baton_core::config::UpstreamJob,
    day: &str,
) -> TableRows {
    job.tables
        .iter()
        .filter_map(|name| pipeline.table(name).map(|spec| (name, spec)))
        .map(|(name, spec)| {
            let all = raw.get(name).map_or(&[][..], Vec::as_slice);
            (spec.clone(), rows_on(all, &spec.partition_column, day))
        })
        .collect()
}

fn rows_on(rows: &[Row], column: &str, day: &str) -> Vec<Row> {
    rows.iter()
        .filter(|r| r.get(column).and_then(|v| v.as_str()) == Some(day))
        .cloned()
        .collect()
}

/// The dates a demo covers: the dates it runs, and the dates raw data is generated for.
struct Span {
    /// The dates the processors run for, oldest first.
    dates: Vec<Partition>,
    /// The last of them.
    end: Partition,
    /// The longest history a processor reads before a date.
    history_days: i32,
    /// The dates raw data lands for: the history before the first date through the last
    /// (or through today, when the last is yesterday).
    generated: Vec<Partition>,
}

impl Span {
    fn new(pipeline: &baton_core::Pipeline, clock: &dyn Clock, args: &DemoArgs) -> Self {
        let end = args.end.unwrap_or_else(|| {
            let today =
                jiff::civil::Date::from(clock.now().to_zoned(pipeline.timezone.clone()).datetime());
            Partition::new(today).offset(-1)
        });
        let dates = end.offset(1 - args.dates as i32).through(end);
        let history_days = pipeline
            .processors
            .iter()
            .map(|p| p.history_days)
            .max()
            .unwrap_or(0) as i32;
        // Raw data through today: the jobs due today (today's schedule, injuries, props) have
        // landed by now, as they would have in a pipeline running up to this moment.
        let today = Partition::new(clock.now().to_zoned(pipeline.timezone.clone()).date());
        let last = if today.days_since(end) <= 1 {
            end.max(today)
        } else {
            end
        };
        let generated = dates[0].offset(-history_days).through(last);
        Self {
            dates,
            end,
            history_days,
            generated,
        }
    }
}

/// The demo's world: the pipeline over a fresh backend, its ports and a runner, all on the
/// demo's clock (which the faults jump).
struct Demo {
    pipeline: Arc<baton_core::Pipeline>,
    clock: Arc<OffsetClock>,
    /// Held for the whole demo, like the ports cloned from it.
    _backend: crate::Backends,
    store: Arc<dyn StateStore>,
    warehouse: Arc<dyn Warehouse>,
    bus: Arc<dyn Bus>,
    runner: Arc<Runner>,
    /// PostgreSQL and NATS rather than a SQLite file.
    distributed: bool,
    /// The raw data's generator, for the late landings (generated when they land).
    season: baton_reference::Season,
}

/// `baton demo`: opens a fresh backend, lands the raw data, runs every date under the
/// injected faults and reports the verdicts.
pub fn run(cli: &Cli, args: &DemoArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    for (job, _) in &args.late {
        if pipeline.upstream_job(job).is_none() {
            return Err(Exit::usage(anyhow!("--late: unknown upstream job `{job}`")));
        }
    }
    let clock = Arc::new(OffsetClock::default());
    let span = Span::new(&pipeline, clock.as_ref(), args);
    let demo = Demo::open(cli, pipeline, clock, args.seed)?;
    let faults = Faults::new(args, demo.clock.clone());
    crate::errln!(
        "baton demo: {} dates {}..{} (plus {} days of history), seed {}, database {}",
        span.dates.len(),
        span.dates[0],
        span.end,
        span.history_days,
        args.seed,
        cli.db.display()
    );
    let progress = ProgressBar::new((span.generated.len() + span.dates.len()) as u64);
    progress.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    // Phase 2: the upstream jobs land raw data, on time or late.
    progress.set_message("phase 2");
    let land_reference_held = land_reference(
        &demo.pipeline,
        &demo.runner,
        demo.warehouse.as_ref(),
        &span.generated,
        &span.dates,
        args.seed,
        &args.late,
        demo.clock.now(),
        &|| progress.inc(1),
    )?;
    let held = land_reference_held;
    let totals = demo.run_dates(&span.dates, &faults, &progress, &held)?;
    progress.finish_and_clear();
    let outcome = demo.report(cli, args, &span.dates, &faults, &totals);
    if let (Some(last), false) = (held.last(), args.json) {
        crate::explain::print_date_timeline(&demo.pipeline, demo.store.as_ref(), last.date)?;
    }
    outcome
}

impl Faults {
    /// The faults `args` ask for, drawn from the demo's seed; at most three consumer
    /// crashes.
    fn new(args: &DemoArgs, clock: Arc<OffsetClock>) -> Self {
        Self {
            spec: args.faults.clone(),
            rng: Mutex::new(SplitMix64::new(args.seed ^ 0xFA17)),
            dropped_once: Mutex::new(BTreeSet::new()),
            paused: Mutex::new(BTreeSet::new()),
            clock,
            counts: Mutex::new(BTreeMap::new()),
            crashes_left: AtomicUsize::new(3),
        }
    }
}

impl Demo {
    /// Opens a fresh backend (replacing a SQLite file, resetting PostgreSQL and NATS) and
    /// creates the pipeline's tables.
    fn open(
        cli: &Cli,
        pipeline: Arc<baton_core::Pipeline>,
        clock: Arc<OffsetClock>,
        seed: u64,
    ) -> Result<Self, Exit> {
        let distributed = crate::backend_kind(cli, &pipeline) == crate::BackendKind::Postgres;
        if !distributed {
            remove_database_files(cli)?;
        }
        let backend = open_backend(cli, &pipeline, clock.clone(), true)?;
        // JetStream redelivers on real time: a short ack wait keeps a demo with dropped
        // deliveries quick.
        let pipeline = if distributed {
            let mut p = (*pipeline).clone();
            p.ack_wait = SignedDuration::from_secs(2);
            Arc::new(p)
        } else {
            pipeline
        };
        reset_distributed(&pipeline, &backend, "demo")?;
        let store: Arc<dyn StateStore> = backend.store.clone();
        let warehouse: Arc<dyn Warehouse> = backend.warehouse.clone();
        let bus: Arc<dyn Bus> = backend.bus.clone();
        // Run ids from the demo's seed: a replay of a seed names the same runs.
        let ids = Arc::new(baton_core::ids::SeededIds::new(seed ^ 0x1D5));
        let runner = Arc::new(
            Runner::new(
                pipeline.clone(),
                store.clone(),
                warehouse.clone(),
                clock.clone(),
            )
            .with_ids(ids),
        );
        runner.ensure_tables()?;
        Ok(Self {
            pipeline,
            clock,
            _backend: backend,
            store,
            warehouse,
            bus,
            runner,
            distributed,
            season: baton_reference::Season::new(seed),
        })
    }

    /// Phase 3 with two competing instances per processor, then the orchestrator, relay and
    /// phase 4 until quiet, one date at a time; the orchestrator's outcomes, totalled.
    fn run_dates(
        &self,
        dates: &[Partition],
        faults: &Faults,
        progress: &ProgressBar,
        held: &[LateLanding],
    ) -> Result<BTreeMap<String, usize>, Exit> {
        let pipeline = &self.pipeline;
        let consumer = Consumer::new(
            pipeline.clone(),
            self.store.clone(),
            self.warehouse.clone(),
            self.bus.clone(),
            self.clock.clone(),
        );
        let triggers = TriggerConsumer::new(
            pipeline.clone(),
            self.bus.clone(),
            self.runner.clone(),
            "demo-phase4",
        );
        let services = Services {
            pipeline,
            store: self.store.as_ref(),
            bus: self.bus.as_ref(),
            consumer: &consumer,
            triggers: Some(&triggers),
            // The demo records its landings directly; nothing publishes notices.
            landings: None,
        };
        let phase = pipeline
            .gates
            .first()
            .map(|g| g.next_phase - 1)
            .unwrap_or(3);
        let mut totals: BTreeMap<String, usize> = BTreeMap::new();
        for &date in dates {
            progress.set_message(date.to_string());
            for processor in pipeline.phase(phase) {
                self.run_competing(processor.name.as_str(), date, faults)?;
            }
            for (k, v) in self.drain_date(&services, faults)? {
                *totals.entry(k).or_default() += v;
            }
            // The late jobs land now, batch by batch; each landing starts its readers.
            for late in held.iter().filter(|l| l.date == date) {
                for (at, tables) in late.batches(pipeline, &self.season) {
                    for (spec, rows) in &tables {
                        self.warehouse.land(spec, rows)?;
                    }
                    self.runner.record_landing(&late.job, date, at)?;
                    for (k, v) in self.drain_date(&services, faults)? {
                        *totals.entry(k).or_default() += v;
                    }
                }
            }
            // The date is quiet: what the faults remember of it is let go.
            faults.forget_settled();
            progress.inc(1);
        }
        Ok(totals)
    }

    /// Runs `processor` for `date` on two instances at once, competing for the lease.
    fn run_competing(&self, processor: &str, date: Partition, faults: &Faults) -> Result<(), Exit> {
        std::thread::scope(|s| -> Result<(), Exit> {
            let handles: Vec<_> = ["demo-a", "demo-b"]
                .into_iter()
                .map(|holder| {
                    let runner = self.runner.clone();
                    s.spawn(move || runner.run(processor, date, &RunOptions::new(holder), faults))
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| Exit::from(anyhow!("a processor thread panicked")))??;
            }
            Ok(())
        })
    }

    /// Runs the orchestrator, relay and phase 4 until quiet; the orchestrator's outcomes.
    fn drain_date(
        &self,
        services: &Services<'_>,
        faults: &Faults,
    ) -> Result<BTreeMap<String, usize>, Exit> {
        let ack_wait = self.pipeline.ack_wait;
        // The embedded bus follows the demo's clock; JetStream redelivers on its own (real)
        // clock, so with it the demo waits instead of jumping.
        let mut wait = || {
            if self.distributed {
                baton_core::SystemClock.sleep(SignedDuration::from_millis(200));
            } else {
                self.clock.jump(ack_wait + SignedDuration::from_secs(1));
            }
        };
        let report = drain(
            services,
            &mut &*faults,
            &mut &*faults,
            faults,
            &mut wait,
            200,
        )?;
        Ok(report.outcomes)
    }

    /// Prints the per-date verdicts, the faults injected and the orchestrator's outcomes
    /// (as a table or JSON); fails unless every date is exact.
    fn report(
        &self,
        cli: &Cli,
        args: &DemoArgs,
        dates: &[Partition],
        faults: &Faults,
        totals: &BTreeMap<String, usize>,
    ) -> Outcome {
        let rows = verdicts(
            &self.pipeline,
            self.store.as_ref(),
            self.warehouse.as_ref(),
            dates,
            self.clock.now(),
        )?;
        let exact = rows.iter().filter(|(_, v)| v.is_exact()).count();
        let counts = faults
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if args.json {
            let json = serde_json::json!({
                "dates": rows.iter().map(|(g, v)| serde_json::json!({"gate": g, "verdict": v, "exact": v.is_exact()})).collect::<Vec<_>>(),
                "faults_injected": counts,
                "orchestrator_outcomes": totals,
                "exact": exact == rows.len(),
            });
            crate::outln!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            print_text_report(cli, &rows, &counts, totals, self.distributed);
        }
        Ok(if exact == rows.len() { 0 } else { EXIT_FAILED })
    }
}

/// Removes the SQLite database and its journal files, so the demo starts fresh.
fn remove_database_files(cli: &Cli) -> Result<(), Exit> {
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", cli.db.display());
        if std::path::Path::new(&path).exists() {
            std::fs::remove_file(&path)
                .map_err(|e| Exit::usage(anyhow!("cannot replace {path}: {e}")))?;
        }
    }
    Ok(())
}

/// The demo's report as text: the verdict table, the faults, the orchestrator's outcomes,
/// whether every date is exact, and how to inspect the result.
fn print_text_report(
    cli: &Cli,
    rows: &[(String, baton_core::audit::DateVerdict)],
    counts: &BTreeMap<&'static str, usize>,
    totals: &BTreeMap<String, usize>,
    distributed: bool,
) {
    let exact = rows.iter().filter(|(_, v)| v.is_exact()).count();
    crate::outln!("{}", verdict_table(rows));
    let faults_text: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    crate::outln!(
        "faults injected: {}",
        if faults_text.is_empty() {
            "none".to_owned()
        } else {
            faults_text.join(", ")
        }
    );
    let outcomes: Vec<String> = totals.iter().map(|(k, v)| format!("{v} {k}")).collect();
    crate::outln!("orchestrator: {}", outcomes.join(", "));
    if exact == rows.len() {
        crate::outln!(
            "All {} dates exact: every processor recorded once, one trigger per date, zero duplicate rows.",
            rows.len()
        );
    } else {
        crate::outln!(
            "{} of {} dates NOT exact (see the table).",
            rows.len() - exact,
            rows.len()
        );
    }
    if distributed {
        crate::outln!(
            "Inspect with: baton --backend postgres status (with the same --database-url and --nats-url)"
        );
    } else {
        crate::outln!("Inspect with: baton status --db {}", cli.db.display());
    }
}

/// Resets a shared backend (baton's tables in PostgreSQL, its streams in NATS: the demo and
/// the bench start from a clean slate, and say so); nothing on SQLite, whose file is fresh.
pub fn reset_distributed(
    pipeline: &baton_core::config::Pipeline,
    backend: &crate::Backends,
    who: &str,
) -> Result<(), Exit> {
    let tables: Vec<String> = pipeline.tables.iter().map(|t| t.name.clone()).collect();
    let topics: Vec<String> = pipeline
        .gates
        .iter()
        .flat_map(|g| [g.completion_topic.clone(), g.trigger_topic.clone()])
        .chain(
            pipeline
                .processors
                .iter()
                .map(|p| pipeline.completion_topic(p)),
        )
        .collect();
    if backend.distributed() {
        crate::errln!(
            "baton {who}: resetting baton's tables in PostgreSQL and its streams in NATS"
        );
    }
    backend.admin.reset(&tables, &topics)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::cell::Cell;

    /// Phase 2 holds one date's raw rows at a time: a date is generated only once the date
    /// before it has landed, and a late landing keeps no rows until it lands. (Generating the
    /// whole range first made `baton demo` peak at 181 MB resident for 30 dates and 286 MB
    /// for 120.)
    #[test]
    fn landing_holds_one_date_of_raw_rows_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("demo.db");
        let cli =
            crate::Cli::try_parse_from(["baton", "--db", db.to_str().unwrap(), "demo"]).unwrap();
        let pipeline = crate::load_pipeline(&cli).unwrap();
        let clock = Arc::new(OffsetClock::default());
        let b = crate::open_backend(&cli, &pipeline, clock.clone(), true).unwrap();
        let runner = Runner::new(
            pipeline.clone(),
            b.store.clone(),
            b.warehouse.clone(),
            clock.clone(),
        );
        runner.ensure_tables().unwrap();
        let season = baton_reference::Season::new(5);
        let (generated, landed, most_held) = (Cell::new(0), Cell::new(0), Cell::new(0));
        let generate = |date| {
            generated.set(generated.get() + 1);
            most_held.set(most_held.get().max(generated.get() - landed.get()));
            season.date(date)
        };
        let end = Partition::parse("2024-01-20").unwrap();
        let dates = end.offset(-9).through(end);
        let late = [(
            "nbac_gamebook_scraper".to_owned(),
            SignedDuration::from_hours(3),
        )];
        let held = land_dates(
            &pipeline,
            &runner,
            b.warehouse.as_ref(),
            &dates,
            &dates[5..],
            &generate,
            &late,
            clock.now(),
            &|| landed.set(landed.get() + 1),
        )
        .unwrap();
        assert_eq!((generated.get(), landed.get()), (10, 10));
        assert_eq!(most_held.get(), 1, "dates generated before the last landed");
        // The late job's five run dates: held as times, their rows generated when they land.
        assert_eq!(held.len(), 5);
        let batches = held[0].batches(&pipeline, &season);
        assert_eq!(batches.len(), 2);
        assert_eq!(
            batches[1].0.duration_since(batches[0].0),
            SignedDuration::from_mins(15)
        );
    }
}
