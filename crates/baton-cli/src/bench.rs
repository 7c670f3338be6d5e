//! `baton bench`: baton's speed beside a baseline measured in the same run, on the same
//! machine, through the same driver: orchestrator throughput, trigger latency, dedup and
//! fenced upsert, dedup alone (against polars when installed), leases, reconcile and health
//! over a year, and `serve`'s memory. Targets are printed beside the figures; a miss is
//! marked, never a failure.

use crate::{Backends, Cli, Exit, Outcome, load_pipeline};
use anyhow::anyhow;
use baton_core::clock::{Clock, SystemClock};
use baton_core::config::{Pipeline, TableSpec};
use baton_core::message::CompletionMessage;
use baton_core::model::{CompletionStatus, Partition, ProcessorName, Row, RunId};
use baton_ports::{Acquired, FencedWrite, NewOutboxRow, OnHeld, RunEnd, RunRecord, WriteOutcome};
use baton_serve::{Consumer, NoFaults, relay_once};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

#[path = "bench_e2e.rs"]
mod e2e;
#[path = "bench_orchestrator.rs"]
mod orchestrator;
pub(crate) use orchestrator::drain_backlog;
use orchestrator::orchestrator;

/// `baton bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Smaller sizes: the whole bench in under a minute (the figures are noisier).
    #[arg(long)]
    quick: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// How time and memory grow with dates, processors per gate and rows per run instead
    /// (SQLite; a few minutes, or seconds with --quick).
    #[arg(long)]
    scale: bool,
    /// Measure only these figures (repeat or separate with commas), for profiling one of
    /// them: orchestrator, end-to-end, dedup, leases, year, memory.
    #[arg(long, value_enum, value_delimiter = ',', conflicts_with = "scale")]
    only: Vec<Part>,
}

/// A part of `baton bench`, as `--only` names it.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Orchestrator throughput through `serve`'s loop, beside the bare upsert.
    Orchestrator,
    /// Trigger and landing latency end to end through a real `serve`, and its idle CPU.
    EndToEnd,
    /// Dedup + fenced upsert, and dedup alone.
    Dedup,
    /// Lease acquire + release.
    Leases,
    /// Reconcile and health over a year (and the distributed baselines).
    Year,
    /// `serve`'s resident memory.
    Memory,
}

impl BenchArgs {
    /// Whether `part` is measured in this run (every part without `--only`).
    fn wants(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

/// One line of the result.
#[derive(Debug, Serialize)]
struct Figure {
    figure: String,
    baton: f64,
    unit: &'static str,
    baseline: Option<f64>,
    baseline_is: String,
    /// baton / baseline (every baseline is a rate: above 1 = baton is faster).
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
}

impl Figure {
    /// A figure with no baseline and no target.
    fn measured(figure: impl Into<String>, baton: f64, unit: &'static str) -> Self {
        Self {
            figure: figure.into(),
            baton,
            unit,
            baseline: None,
            baseline_is: String::new(),
            ratio: None,
            target: String::new(),
            met: None,
        }
    }

    /// Sets the baseline it is compared with (a rate: the ratio is baton / baseline).
    fn against(mut self, baseline: Option<f64>, what: impl Into<String>) -> Self {
        self.ratio = baseline.map(|b| self.baton / b);
        self.baseline = baseline;
        self.baseline_is = what.into();
        self
    }

    /// Sets its target and whether it was met (`None`: not judged).
    fn target(mut self, target: impl Into<String>, met: Option<bool>) -> Self {
        self.target = target.into();
        self.met = met;
        self
    }
}

/// Publishes the completion of every processor the gate expects for `partition`, once under
/// its own message id and once more under each of `copies` (a replaying publisher:
/// duplicates the bus does not drop); returns how many messages went out.
fn publish_completions(
    b: &Backends,
    gate: &baton_core::gate::Gate,
    partition: Partition,
    now: Timestamp,
    copies: &[&str],
) -> Result<usize, Exit> {
    let mut sent = 0;
    for p in &gate.overnight.expected {
        let m = completion(p, partition, now);
        let payload = m.to_json().to_string().into_bytes();
        b.bus
            .publish(&gate.completion_topic, &m.message_id, &payload)?;
        for copy in copies {
            b.bus.publish(
                &gate.completion_topic,
                &format!("{}#{copy}", m.message_id),
                &payload,
            )?;
        }
        sent += 1 + copies.len();
    }
    Ok(sent)
}

struct Sizes {
    dates: usize,
    /// Dates of the orchestrator's backlog (x 5 processors x 2 copies).
    orchestrator_dates: usize,
    rows: usize,
    lease_ops: usize,
    year: usize,
}

fn elapsed(since: Timestamp) -> f64 {
    SystemClock
        .now()
        .duration_since(since)
        .as_secs_f64()
        .max(1e-9)
}

fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

fn day(i: usize) -> Partition {
    // Dates from the year 1000: every index the bench uses (up to about 310,000 days) stays
    // far in the past, so every gate runs in its overnight mode (all expected processors).
    // From 2000-01-01, indexes past about 9,800 were future dates, in the same-day mode,
    // whose policy triggers before the last completion and made latencies negative.
    Partition::parse("1000-01-01")
        .map(|d| d.offset(i as i32))
        .unwrap_or_else(|_| unreachable!("invariant: a literal date parses"))
}

fn completion(
    processor: &ProcessorName,
    partition: Partition,
    now: Timestamp,
) -> CompletionMessage {
    let run_id = RunId::from(format!("bench-{processor}-{partition}").as_str());
    CompletionMessage::new(
        processor.clone(),
        partition,
        run_id,
        CompletionStatus::Success,
        10,
        now,
    )
}

/// `baton bench`: every figure on a fresh database (or a reset PostgreSQL and NATS), printed
/// as a table or JSON.
pub fn run(cli: &Cli, args: &BenchArgs) -> Outcome {
    if args.scale {
        return crate::bench_scale::run(cli, args.quick, args.json);
    }
    let pipeline = load_pipeline(cli)?;
    let distributed = crate::backend_kind(cli, &pipeline) == crate::BackendKind::Postgres;
    let sizes = Sizes::new(args.quick, distributed);
    let dir = tempfile::Builder::new()
        .prefix("baton-bench-")
        .tempdir()
        .map_err(|e| Exit::usage(anyhow!("cannot make a temp dir: {e}")))?;
    let db = dir.path().join("bench.db");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let b = crate::open_backend_at(cli, &db, &pipeline, clock.clone(), false, false)?;
    crate::demo::reset_distributed(&pipeline, &b, "bench")?;
    for t in &pipeline.tables {
        b.warehouse.ensure_table(t)?;
    }
    crate::errln!(
        "baton bench on {} ({}): {} dates x 5 processors, {} rows{}",
        if distributed {
            "PostgreSQL + NATS"
        } else {
            "SQLite, synchronous=FULL"
        },
        if args.quick { "quick" } else { "full" },
        sizes.dates,
        sizes.rows,
        if distributed {
            ""
        } else {
            "; the database is a fresh file in a temp dir"
        }
    );
    let mut figures = Vec::new();
    if args.wants(Part::Orchestrator) {
        figures.push(orchestrator(
            &pipeline,
            &b,
            &clock,
            sizes.orchestrator_dates,
            distributed,
        )?);
    }
    if args.wants(Part::EndToEnd) {
        // Trigger latency end to end through a real `serve` (bench_e2e.rs).
        figures.extend(e2e::figures(
            cli,
            &pipeline,
            &b,
            &db,
            distributed,
            &e2e::Sizes::new(args.quick),
        )?);
    }
    if args.wants(Part::Dedup) {
        figures.extend(dedup_and_write(&b, sizes.rows, dir.path())?);
    }
    if args.wants(Part::Leases) {
        figures.extend(leases(&b, sizes.lease_ops)?);
    }
    if args.wants(Part::Year) {
        figures.extend(year(&pipeline, &b, &clock, sizes.year)?);
        if distributed {
            figures.extend(distributed_baselines(&b, sizes.dates)?);
        }
    }
    if args.wants(Part::Memory) {
        figures.extend(memory(cli, &db, distributed, sizes.dates.min(2_000))?);
    }

    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        crate::outln!("{}", figures_table(&figures));
        let missed = figures.iter().filter(|f| f.met == Some(false)).count();
        crate::outln!(
            "{missed} of {} targets missed (see BENCHMARKS.md for what bounds each figure).",
            figures.iter().filter(|f| f.met.is_some()).count()
        );
    }
    Ok(0)
}

impl Sizes {
    /// The sizes of a run: small with `--quick`, smaller on PostgreSQL + NATS (a network
    /// round trip per step), full on SQLite.
    fn new(quick: bool, distributed: bool) -> Self {
        if quick {
            Sizes {
                dates: 1_000,
                orchestrator_dates: 1_000,
                rows: 100_000,
                lease_ops: 500,
                year: 60,
            }
        } else if distributed {
            Sizes {
                dates: 2_000,
                orchestrator_dates: 10_000,
                rows: 200_000,
                lease_ops: 1_000,
                year: 365,
            }
        } else {
            Sizes {
                dates: 10_000,
                orchestrator_dates: 10_000,
                rows: 1_000_000,
                lease_ops: 2_000,
                year: 365,
            }
        }
    }
}

/// One row per figure: baton's, the baseline's, their ratio, and the target it is held to.
fn figures_table(figures: &[Figure]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "figure", "baton", "baseline", "ratio", "target", "met",
    ]);
    for f in figures {
        t.add_row(vec![
            f.figure.clone(),
            format!("{} {}", human(f.baton), f.unit),
            f.baseline.map_or("-".to_owned(), |b| {
                format!("{} {} ({})", human(b), f.unit, f.baseline_is)
            }),
            f.ratio.map_or("-".to_owned(), |r| format!("{r:.2}x")),
            f.target.clone(),
            match f.met {
                Some(true) => "yes".to_owned(),
                Some(false) => "MISSED".to_owned(),
                None => "-".to_owned(),
            },
        ]);
    }
    t
}

fn human(v: f64) -> String {
    if v >= 100.0 {
        format!("{:.0}", v)
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Rows on a three-column primary key; every tenth row repeats the key of the row five
/// before it (never itself a repeat), so a tenth of the rows are duplicates.
fn bench_rows(n: usize, partition: Partition) -> Vec<Row> {
    let date = partition.to_string();
    (0..n)
        .map(|i| {
            let k = if i % 10 == 9 { i - 5 } else { i };
            let mut row = Row::new();
            row.insert("game_id".into(), format!("g{}", k % 1_230).into());
            row.insert("team".into(), format!("t{}", (k / 1_230) % 30).into());
            row.insert("player".into(), format!("p{}", k / 36_900).into());
            row.insert("game_date".into(), date.clone().into());
            row.insert("points".into(), ((i * 7) % 41).into());
            row
        })
        .collect()
}

/// The rows of the dedup figures as generated: how many, and how many distinct keys. The
/// labels and every rate are computed from these counts, so they say what was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RowCounts {
    /// Rows generated (the input of dedup, duplicates included).
    generated: usize,
    /// Rows left after dedup (the rows written).
    unique: usize,
}

impl RowCounts {
    /// The share of generated rows that repeat an earlier key, in percent.
    fn duplicate_percent(&self) -> f64 {
        if self.generated == 0 {
            return 0.0;
        }
        (self.generated - self.unique) as f64 * 100.0 / self.generated as f64
    }

    /// What the write figures measure.
    fn write_label(&self) -> String {
        format!(
            "dedup + fenced upsert ({} rows in, {:.1}% duplicates, {} written, 3-column key)",
            self.generated,
            self.duplicate_percent(),
            self.unique
        )
    }

    /// Rows written per second: baton's write and the plain insert both write the unique
    /// rows, so both rates are per unique row (baton's time includes its dedup).
    fn written_per_sec(&self, secs: f64) -> f64 {
        self.unique as f64 / secs
    }

    /// What the in-memory dedup figures measure (both rates are per generated row: dedup
    /// and polars' `unique` read every row).
    fn dedup_label(&self) -> String {
        format!(
            "in-memory dedup alone ({} rows in, {:.1}% duplicates)",
            self.generated,
            self.duplicate_percent()
        )
    }
}

/// Dedup plus the fenced upsert against a plain insert of the unique rows, and dedup alone
/// against polars.
fn dedup_and_write(b: &Backends, n: usize, dir: &Path) -> Result<Vec<Figure>, Exit> {
    let table = TableSpec {
        name: "bench_rows".into(),
        primary_key: vec!["game_id".into(), "team".into(), "player".into()],
        partition_column: "game_date".into(),
    };
    b.warehouse.ensure_table(&table)?;
    let partition = day(0);
    let rows = bench_rows(n, partition);
    let bar = spinner("dedup alone");
    let input = rows.clone();
    let start = SystemClock.now();
    let deduped = baton_core::dedup::dedup(input, &table.primary_key)
        .map_err(|e| Exit::usage(anyhow!("bench rows: {e}")))?;
    let dedup_rate = n as f64 / elapsed(start);
    let unique = deduped.rows.clone();
    let counts = RowCounts {
        generated: n,
        unique: unique.len(),
    };

    bar.set_message("dedup + fenced upsert");
    let write_secs = fenced_upsert_secs(b, &table, partition, rows)?;
    let write_rate = counts.written_per_sec(write_secs);
    bar.set_message("plain insert baseline");
    let start = SystemClock.now();
    let plain = b
        .admin
        .baselines()
        .plain_insert(&table, &unique)?
        .then(|| counts.written_per_sec(elapsed(start)));
    let upsert = Figure::measured(counts.write_label(), write_rate, "rows written/s")
        .against(plain, "plain INSERT of the same unique rows")
        .target(
            if plain.is_some() {
                ">= 50% of baseline"
            } else {
                ""
            },
            plain.map(|p| write_rate >= 0.5 * p),
        );

    bar.set_message("polars baseline");
    let polars = polars_dedup(&rows_csv(n, partition), dir);
    bar.finish_and_clear();
    Ok(vec![upsert, dedup_figure(&counts, dedup_rate, polars)])
}

/// Seconds through dedup and the fenced upsert (with its completion's outbox row) under a
/// lease the bench takes for itself.
fn fenced_upsert_secs(
    b: &Backends,
    table: &TableSpec,
    partition: Partition,
    rows: Vec<Row>,
) -> Result<f64, Exit> {
    let processor = ProcessorName::from("bench_writer");
    let token = match b.store.acquire_lease(
        &processor,
        partition,
        "bench",
        SignedDuration::from_hours(1),
        OnHeld::Report,
    )? {
        Acquired::Granted(l) => l.token,
        Acquired::Held { .. } => return Err(Exit::backend(anyhow!("the bench lease is held"))),
    };
    let outbox = NewOutboxRow {
        topic: "bench-completions".into(),
        message_id: "bench-write".into(),
        kind: baton_ports::OutboxKind::Completion,
        partition,
        payload: "{}".into(),
    };
    let start = SystemClock.now();
    let deduped = baton_core::dedup::dedup(rows, &table.primary_key)
        .map_err(|e| Exit::usage(anyhow!("bench rows: {e}")))?;
    let outcome = b.warehouse.fenced_write(&FencedWrite {
        table,
        processor: &processor,
        partition,
        token,
        rows: &deduped.rows,
        completion: &outbox,
        run: None,
    })?;
    let secs = elapsed(start);
    if !matches!(outcome, WriteOutcome::Written { .. }) {
        return Err(Exit::backend(anyhow!(
            "the bench write was fenced: {outcome:?}"
        )));
    }
    Ok(secs)
}

/// Dedup alone beside polars' rate (or why polars was skipped); both per generated row.
fn dedup_figure(counts: &RowCounts, dedup_rate: f64, polars: Result<f64, String>) -> Figure {
    let (baseline, note) = match &polars {
        Ok(rate) => (
            Some(*rate),
            "polars unique(subset, keep=first) of the same rows".to_owned(),
        ),
        Err(why) => {
            crate::errln!("baton bench: polars baseline skipped: {why}");
            (None, format!("polars skipped: {why}"))
        }
    };
    Figure::measured(counts.dedup_label(), dedup_rate, "rows in/s")
        .against(baseline, note)
        .target(
            "at least as fast as polars",
            baseline.map(|p| dedup_rate >= p),
        )
}

/// The same generated rows (duplicates included) as CSV, for the polars script.
fn rows_csv(n: usize, partition: Partition) -> String {
    let mut out = String::from("game_id,team,player,game_date,points\n");
    for row in bench_rows(n, partition) {
        let f = |k: &str| {
            row.get(k).map_or(String::new(), |v| {
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            })
        };
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            f("game_id"),
            f("team"),
            f("player"),
            f("game_date"),
            f("points")
        ));
    }
    out
}

/// Runs `scripts/bench_dedup_polars.py` on the same rows; its rows/s, or why not.
fn polars_dedup(csv: &str, dir: &Path) -> Result<f64, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_dedup_polars.py");
    if !script.exists() {
        return Err(format!(
            "{} not found (run from a checkout)",
            script.display()
        ));
    }
    let data = dir.join("rows.csv");
    std::fs::write(&data, csv).map_err(|e| e.to_string())?;
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&data)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("the script failed").to_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .map_err(|e| format!("unreadable polars figure: {e}"))
}

fn leases(b: &Backends, ops: usize) -> Result<Vec<Figure>, Exit> {
    let bar = spinner("lease acquire + release");
    let cycle = |worker: usize, ops: usize| -> Result<(), baton_ports::Error> {
        let processor = ProcessorName::from(format!("bench_lease_{worker}").as_str());
        for i in 0..ops {
            let d = day(i);
            if let Acquired::Granted(l) = b.store.acquire_lease(
                &processor,
                d,
                "bench",
                SignedDuration::from_mins(10),
                OnHeld::Report,
            )? {
                b.store.release_lease(&processor, d, l.token)?;
            }
        }
        Ok(())
    };
    let start = SystemClock.now();
    cycle(0, ops)?;
    let one = ops as f64 / elapsed(start);
    let start = SystemClock.now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..=8).map(|w| s.spawn(move || cycle(w, ops))).collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| {
                Err(baton_ports::Error::Permanent(
                    "a bench worker panicked".into(),
                ))
            })
        })
    })?;
    let eight = (8 * ops) as f64 / elapsed(start);
    bar.finish_and_clear();
    Ok(vec![
        Figure::measured("lease acquire + release, 1 worker", one, "cycles/s"),
        Figure::measured(
            "lease acquire + release, 8 concurrent workers",
            eight,
            "cycles/s",
        )
        .against(Some(one), "1 worker"),
    ])
}

/// Reconcile and health over `days` dates of recorded runs, rows and completions.
/// Reconcile and health over a year of dates, each with every watched processor recorded
/// through the fenced write and the orchestrator.
fn year(
    pipeline: &Arc<Pipeline>,
    b: &Backends,
    clock: &Arc<dyn Clock>,
    days: usize,
) -> Result<Vec<Figure>, Exit> {
    let bar = ProgressBar::new(days as u64);
    bar.set_message("reconcile/health: recording a year");
    let gate = &pipeline.gates[0];
    let now = SystemClock.now();
    let first = day(200_000);
    let dates: Vec<Partition> = (0..days).map(|i| first.offset(i as i32)).collect();
    for &d in &dates {
        for p in pipeline.processors.iter().filter(|p| gate.watches(&p.name)) {
            record_run(b, gate, p, d, now, 10)?;
        }
        bar.inc(1);
    }
    // The completions go through the relay and the orchestrator, as in production.
    bar.set_message("reconcile/health: recording completions");
    orchestrate_until_idle(pipeline, b, clock)?;
    bar.finish_and_clear();
    let bar = spinner("reconcile over the year");
    let start = SystemClock.now();
    baton_serve::checks::reconcile_dates(
        pipeline,
        b.store.as_ref(),
        b.warehouse.as_ref(),
        gate,
        &dates,
        SystemClock.now(),
        baton_serve::checks::Mode::Report,
    )?;
    let reconcile = elapsed(start);
    bar.set_message("health over the year");
    let start = SystemClock.now();
    baton_serve::checks::health(
        pipeline,
        b.store.as_ref(),
        b.warehouse.as_ref(),
        b.bus.as_ref(),
        &dates,
        SystemClock.now(),
    )?;
    let health = elapsed(start);
    bar.finish_and_clear();
    Ok(vec![
        Figure::measured(
            format!("reconcile, report mode, {days} dates"),
            reconcile,
            "s",
        )
        .target(
            if days >= 365 { "< 1 s" } else { "" },
            (days >= 365).then_some(reconcile < 1.0),
        ),
        Figure::measured(format!("health, {days} dates"), health, "s"),
    ])
}

/// One successful run of `p` for date `d`, as a worker records it: lease, run start, `rows`
/// rows and the completion's outbox row through the fenced write, run finish, release. A
/// lease already held skips the run.
pub(crate) fn record_run(
    b: &Backends,
    gate: &baton_core::gate::Gate,
    p: &baton_core::config::Processor,
    d: Partition,
    now: Timestamp,
    rows: usize,
) -> Result<(), Exit> {
    let token = match b.store.acquire_lease(
        &p.name,
        d,
        "bench",
        SignedDuration::from_hours(1),
        OnHeld::Report,
    )? {
        Acquired::Granted(l) => l.token,
        Acquired::Held { .. } => return Ok(()),
    };
    let run_id = RunId::from(format!("bench-{}-{d}", p.name).as_str());
    let run = RunRecord {
        run_id: run_id.clone(),
        processor: p.name.clone(),
        partition: d,
        holder: "bench".into(),
        token,
        started_at: now,
        finished_at: None,
        status: baton_ports::RunStatus::Running,
        rows_written: 0,
        duplicates_dropped: 0,
        error: None,
    };
    b.store.start_run(&run)?;
    let rows: Vec<Row> = (0..rows)
        .map(|i| {
            let mut row = Row::new();
            for k in &p.table.primary_key {
                row.insert(k.clone(), format!("{k}-{i}").into());
            }
            row.insert(p.table.partition_column.clone(), d.to_string().into());
            row
        })
        .collect();
    let m = completion(&p.name, d, now);
    let outbox = NewOutboxRow {
        topic: gate.completion_topic.clone(),
        message_id: m.message_id.clone(),
        kind: baton_ports::OutboxKind::Completion,
        partition: d,
        payload: m.to_json().to_string(),
    };
    b.warehouse.fenced_write(&FencedWrite {
        table: &p.table,
        processor: &p.name,
        partition: d,
        token,
        rows: &rows,
        completion: &outbox,
        run: None,
    })?;
    b.store.finish_run(
        &run_id,
        &RunEnd {
            status: baton_ports::RunStatus::Success,
            rows_written: rows.len() as u64,
            duplicates_dropped: 0,
            error: None,
        },
    )?;
    b.store.release_lease(&p.name, d, token)?;
    Ok(())
}

/// Relays the whole outbox, then polls the orchestrator until three polls in a row fetch
/// nothing.
fn orchestrate_until_idle(
    pipeline: &Arc<Pipeline>,
    b: &Backends,
    clock: &Arc<dyn Clock>,
) -> Result<(), Exit> {
    while relay_once(b.store.as_ref(), b.bus.as_ref(), 512, &mut NoFaults)? > 0 {}
    let consumer = Consumer::new(
        pipeline.clone(),
        b.store.clone(),
        b.warehouse.clone(),
        b.bus.clone(),
        clock.clone(),
    );
    let mut idle = 0;
    while idle < 3 {
        idle = if consumer.poll_once(&mut NoFaults)?.fetched == 0 {
            idle + 1
        } else {
            0
        };
    }
    Ok(())
}

/// The bus's and the store's raw rates on PostgreSQL + NATS.
fn distributed_baselines(b: &Backends, n: usize) -> Result<Vec<Figure>, Exit> {
    if !b.distributed() {
        return Ok(Vec::new());
    }
    let bar = spinner("NATS publish-with-ack baseline");
    let start = SystemClock.now();
    for i in 0..n {
        b.bus.publish("bench-baseline", &format!("b{i}"), b"{}")?;
    }
    let publish = n as f64 / elapsed(start);
    bar.set_message("PostgreSQL single-row UPDATE baseline");
    let per = (n / 8).max(100);
    let start = SystemClock.now();
    b.admin.baselines().updates(8, per)?;
    let updates = (8 * per) as f64 / elapsed(start);
    bar.finish_and_clear();
    Ok(vec![
        Figure::measured(
            "baseline: JetStream publish with ack, one at a time",
            publish,
            "msg/s",
        ),
        Figure::measured(
            "baseline: single-row UPDATE transactions, 8 connections",
            updates,
            "tx/s",
        ),
    ])
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `serve`'s resident memory idle, and its peak while it consumes a backlog: the same
/// command line both times (`serve --no-phase-runner`, no periodic reconcile), the second
/// with `--until-idle` so it stops once the backlog is consumed.
fn memory(cli: &Cli, db: &Path, distributed: bool, dates: usize) -> Result<Vec<Figure>, Exit> {
    let exe = std::env::current_exe()?;
    let serve_cmd = |extra: &[&str]| {
        let mut c = std::process::Command::new(&exe);
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
        c.arg("serve").args(SERVE_MEMORY_ARGS).args(extra);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let bar = spinner("serve memory: idle");
    let mut idle = serve_cmd(&[]).spawn()?;
    SystemClock.sleep(SignedDuration::from_secs(3));
    let idle_kib = rss_kib(idle.id(), "VmRSS:").unwrap_or(0);
    let _ = idle.kill();
    let _ = idle.wait();

    bar.set_message("serve memory: under load");
    // A backlog for the serve to consume: completions of fresh dates.
    let pipeline = load_pipeline(cli)?;
    let b = crate::open_backend_at(cli, db, &pipeline, Arc::new(SystemClock), false, false)?;
    let gate = &pipeline.gates[0];
    let now = SystemClock.now();
    for i in 0..dates {
        publish_completions(&b, gate, day(300_000 + i), now, &[])?;
    }
    let mut busy = serve_cmd(&["--until-idle"]).spawn()?;
    let mut peak = 0;
    loop {
        if let Some(v) = rss_kib(busy.id(), "VmHWM:") {
            peak = peak.max(v);
        }
        if busy.try_wait()?.is_some() {
            break;
        }
        SystemClock.sleep(SignedDuration::from_millis(20));
    }
    bar.finish_and_clear();
    let mib = |k: u64| k as f64 / 1024.0;
    let config = SERVE_MEMORY_ARGS.join(" ");
    Ok(vec![
        Figure::measured(
            format!("serve resident memory, idle (serve {config})"),
            mib(idle_kib),
            "MiB",
        )
        .target("< 30 MB", Some(mib(idle_kib) < 30.0 * 1e6 / 1_048_576.0)),
        Figure::measured(
            format!(
                "serve peak resident memory consuming {} messages (serve {config} --until-idle)",
                dates * 5
            ),
            mib(peak),
            "MiB",
        ),
    ])
}

/// The flags of both `serve` memory figures: no Phase 4 runner (the backlog's triggers would
/// start processors on dates without data) and no periodic reconcile.
const SERVE_MEMORY_ARGS: &[&str] = &["--no-phase-runner", "--reconcile-every-secs", "0"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_rows_hold_the_duplicate_share_their_label_says() {
        let n = 10_000;
        let rows = bench_rows(n, day(0));
        let keys = ["game_id".to_owned(), "team".to_owned(), "player".to_owned()];
        let unique = baton_core::dedup::dedup(rows, &keys).unwrap().rows.len();
        let counts = RowCounts {
            generated: n,
            unique,
        };
        assert_eq!(unique, 9_000);
        assert!((counts.duplicate_percent() - 10.0).abs() < 1e-9);
        assert!(
            counts
                .write_label()
                .contains("10000 rows in, 10.0% duplicates, 9000 written")
        );
        assert!(
            counts
                .dedup_label()
                .contains("10000 rows in, 10.0% duplicates")
        );
    }

    #[test]
    fn only_names_the_parts_measured_and_none_means_all() {
        use clap::Parser;
        let parts = |args: &[&str]| {
            let cli =
                crate::Cli::try_parse_from(["baton", "bench"].iter().chain(args).copied()).unwrap();
            let crate::Command::Bench(b) = cli.command else {
                unreachable!("bench parses as bench")
            };
            [
                Part::Orchestrator,
                Part::EndToEnd,
                Part::Dedup,
                Part::Leases,
                Part::Year,
                Part::Memory,
            ]
            .into_iter()
            .filter(|p| b.wants(*p))
            .collect::<Vec<_>>()
        };
        assert_eq!(parts(&[]).len(), 6);
        assert_eq!(parts(&["--only", "orchestrator"]), [Part::Orchestrator]);
        assert_eq!(
            parts(&["--only", "dedup,end-to-end"]),
            [Part::EndToEnd, Part::Dedup]
        );
        assert!(
            crate::Cli::try_parse_from(["baton", "bench", "--scale", "--only", "dedup"]).is_err()
        );
    }

    #[test]
    fn write_rates_divide_the_rows_written_for_baton_and_the_baseline_alike() {
        let counts = RowCounts {
            generated: 1_000,
            unique: 900,
        };
        // Same time, same rows written: the same rate, whatever the input held.
        assert_eq!(counts.written_per_sec(2.0), 450.0);
        let baton = counts.written_per_sec(3.0);
        let baseline = counts.written_per_sec(1.5);
        assert_eq!(baton / baseline, 0.5);
        let empty = RowCounts {
            generated: 0,
            unique: 0,
        };
        assert_eq!(empty.duplicate_percent(), 0.0);
    }
}
