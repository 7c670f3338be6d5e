//! `serve` (parsing its options and wiring the HTTP side, notifiers and token around
//! `baton_serve::service::Service`, which owns the loop), `run`, `publish`, `init`,
//! `migrate` and `generate`.

use crate::watch::{COMMIT, VERSION};
use crate::{Cli, EXIT_FAILED, Exit, Outcome, load_pipeline, open_existing, parse_date};
use anyhow::anyhow;
use baton_core::clock::{Clock, SystemClock};
use baton_core::config::REFERENCE_TOML;
use baton_core::message::CompletionMessage;
use baton_core::model::{CompletionStatus, Partition, ProcessorName, RunId};
use baton_core::retry::Budget;
use baton_runner::{LeaseWait, NoHooks, RunOptions, RunOutcome, RunReport, Runner};
use baton_serve::service::{Identity, Ports, ServeOptions, Service, write_heartbeat};
use clap::{Args, Subcommand};
use jiff::{SignedDuration, Timestamp};
use std::path::PathBuf;
use std::sync::Arc;

/// `baton serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Drain what is pending (outbox, completions, triggers) and exit, for scripts.
    #[arg(long)]
    until_idle: bool,
    /// The fallback poll, in milliseconds: the longest idle wait while deliveries are in
    /// flight or runs are owed (they wait on time, which nothing signals). New work wakes
    /// `serve` at once without it (a commit in this process, `NOTIFY` on PostgreSQL, a
    /// publish on NATS, a commit by another process on SQLite); `--until-idle` waits this
    /// long between its passes.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    poll_ms: u64,
    /// Do not run the phases that triggers start (another process runs them).
    #[arg(long)]
    no_phase_runner: bool,
    /// Reconcile (and fix) the last `--reconcile-days` dates this often; 0 turns it off.
    /// The bus is not the source of truth: this repairs whatever it lost.
    #[arg(long, default_value_t = 300)]
    reconcile_every_secs: u64,
    /// How many dates, ending today, the periodic reconcile covers (default
    /// `[report] reconcile_days` in the config, 7).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=366))]
    reconcile_days: Option<u32>,
    /// Serve the HTTP API, /metrics and the dashboard on this address (default: the config's
    /// api.listen; none: no HTTP).
    #[arg(long, env = "BATON_LISTEN")]
    listen: Option<String>,
    /// Evaluate alert policies this often.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    alert_every_secs: u64,
    /// Prune history by the config's `[retention]` policy this often (default
    /// `[retention] every_mins`, 60); 0 turns it off (`baton prune` still works).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=604_800))]
    retention_every_secs: Option<u64>,
}

/// `baton run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The processor, e.g. player_game_summary.
    processor: String,
    /// The date (partition), YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    date: Partition,
    /// Wait up to this many seconds for a held lease before coalescing (default: config).
    #[arg(long)]
    wait_secs: Option<u64>,
    /// The holder name recorded on the lease and the run.
    #[arg(long)]
    holder: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Keep retrying a backend unavailable at the start (refused, starting up, out of
    /// connections) this many seconds, with backoff, before failing with exit 3 (default:
    /// the config's backend.start_retry_secs, 30; 0 fails at once).
    #[arg(long, env = "BATON_START_RETRY_SECS", value_parser = clap::value_parser!(u64).range(0..=3600))]
    start_retry_secs: Option<u64>,
}

/// `baton publish`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    #[command(subcommand)]
    what: PublishWhat,
}

#[derive(Subcommand, Debug)]
enum PublishWhat {
    /// Publish a completion on its gate's topic, as a processor would (or any JSON payload).
    #[command(after_help = crate::help::PUBLISH_COMPLETION)]
    Completion(CompletionArgs),
    /// Record an upstream job's landing for a date.
    #[command(after_help = crate::help::PUBLISH_RAW)]
    Raw(RawArgs),
}

#[derive(Args, Debug)]
struct CompletionArgs {
    /// The processor.
    #[arg(long, required_unless_present_any = ["payload", "payload_file"])]
    processor: Option<String>,
    /// The date.
    #[arg(long, value_parser = parse_date, required_unless_present_any = ["payload", "payload_file"])]
    date: Option<Partition>,
    /// The run id (reuse one to replay a completion).
    #[arg(long, required_unless_present_any = ["payload", "payload_file"])]
    run_id: Option<String>,
    /// success, partial, no_data or failed.
    #[arg(long, default_value = "success")]
    status: String,
    /// Rows the run wrote.
    #[arg(long, default_value_t = 0)]
    record_count: u64,
    /// Ask for a new trigger generation.
    #[arg(long)]
    force_reprocess: bool,
    /// Publish this JSON as it is (any format; malformed input goes to the dead-letter
    /// queue); `-` reads it from standard input. A Pub/Sub push envelope
    /// (`{"message":{"data":"<base64>",...}}`) publishes its decoded `message.data`.
    #[arg(long, conflicts_with_all = ["processor", "date", "run_id", "payload_file"])]
    payload: Option<String>,
    /// Read the payload from a file (`-`: standard input), for payloads past the OS
    /// argument limit; same rules as --payload.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["processor", "date", "run_id"])]
    payload_file: Option<PathBuf>,
    /// The topic (default: the completion topic of the processor's gate, or the first gate's).
    #[arg(long)]
    topic: Option<String>,
}

#[derive(Args, Debug)]
struct RawArgs {
    /// The upstream job.
    #[arg(long)]
    job: String,
    /// The date it landed data for.
    #[arg(long, value_parser = parse_date)]
    date: Partition,
    /// When it landed (RFC 3339); now when absent.
    #[arg(long)]
    at: Option<Timestamp>,
}

/// `baton migrate`.
#[derive(Args, Debug)]
pub struct MigrateArgs {}

/// `baton generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// How many consecutive dates.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3660))]
    dates: u32,
    /// The last date.
    #[arg(long, value_parser = parse_date)]
    end: Partition,
    /// The data's seed.
    #[arg(long, default_value_t = 2024)]
    seed: u64,
}

/// `baton init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Where to write the config.
    #[arg(long, default_value = "baton.toml")]
    out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

pub fn init(args: &InitArgs) -> Outcome {
    if args.out.exists() && !args.force {
        return Err(Exit::usage(anyhow!(
            "{} exists (use --force to overwrite)",
            args.out.display()
        )));
    }
    std::fs::write(&args.out, REFERENCE_TOML)?;
    crate::errln!(
        "wrote the reference pipeline's config to {}",
        args.out.display()
    );
    Ok(0)
}

pub fn serve(cli: &Cli, args: &ServeArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let on_stop = if args.until_idle {
        crate::signals::OnStop::Exit
    } else {
        crate::signals::OnStop::StopAfterRound(stop.clone())
    };
    crate::signals::kill_commands_on_stop(on_stop).map_err(Exit::backend)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = open_existing(cli, &pipeline)?;
    let ports = Ports {
        pipeline: pipeline.clone(),
        store: backend.store.clone(),
        warehouse: backend.warehouse.clone(),
        bus: backend.bus.clone(),
        clock: clock.clone(),
    };
    let options = ServeOptions {
        poll: SignedDuration::from_millis(args.poll_ms as i64),
        phase_runner: !args.no_phase_runner,
        reconcile_every: (args.reconcile_every_secs > 0)
            .then(|| SignedDuration::from_secs(args.reconcile_every_secs as i64)),
        reconcile_days: args
            .reconcile_days
            .unwrap_or(pipeline.report.reconcile_days),
        alert_every: SignedDuration::from_secs(args.alert_every_secs as i64),
        retention_every: match args.retention_every_secs {
            Some(0) => None,
            Some(secs) => Some(SignedDuration::from_secs(secs as i64)),
            None => Some(pipeline.retention.every),
        },
    };
    options.validate().map_err(Exit::usage)?;
    let metrics = Arc::new(baton_http::Metrics::new(&pipeline, clock.now()));
    // `--until-idle` serves HTTP while it drains only when asked on the command line (the
    // config's address is the long-running serve's); either way an address it cannot bind
    // is bad usage, exit 2.
    let listen = match args.until_idle {
        true => args.listen.clone(),
        false => args.listen.clone().or_else(|| pipeline.api.listen.clone()),
    };
    let _http = match listen {
        Some(addr) => Some(spawn_http(&ports, &addr, metrics.clone())?),
        None => None,
    };
    let identity = Identity::of_this_process("serve", VERSION, COMMIT);
    let service = Service::new(options, ports, identity)?;
    if args.until_idle {
        let idle = service.until_idle()?;
        let report = idle.drain;
        crate::errln!(
            "idle: relayed {}, outcomes {:?}, triggers {}, phase runs {}, owed runs {}; {} pending, {} owed runs due",
            report.relayed,
            report.outcomes,
            report.triggers,
            report.phase_runs,
            report.owed_runs,
            idle.pending,
            idle.owed_due
        );
        let idle_now = idle.pending == 0 && idle.owed_due == 0;
        return Ok(if idle_now { 0 } else { EXIT_FAILED });
    }
    // A notifier whose URL is missing fails here, at start, not at the first incident.
    let notifiers = baton_serve::alerting::notifiers(&pipeline).map_err(Exit::usage)?;
    let wake = backend.admin.start_wake()?;
    tracing::info!(db = %cli.db.display(), "serving; SIGTERM or Ctrl-C stops after the current round (every step is transactional, so stopping at any point is safe)");
    service
        .with_wake(wake)
        .with_notifiers(notifiers)
        .with_observer(Box::new(move |report| metrics.observe_drain(report)))
        .run(&|| stop.load(std::sync::atomic::Ordering::Relaxed))?;
    Ok(0)
}

/// Serves the HTTP API, `/metrics` and the dashboard on `addr` for `serve`.
fn spawn_http(
    ports: &Ports,
    addr: &str,
    metrics: Arc<baton_http::Metrics>,
) -> Result<baton_http::Server, Exit> {
    let api = baton_http::Api {
        pipeline: ports.pipeline.as_ref().clone(),
        store: ports.store.clone(),
        warehouse: ports.warehouse.clone(),
        bus: ports.bus.clone(),
        clock: ports.clock.clone(),
        token: crate::watch::api_token(&ports.pipeline)?,
        metrics,
    };
    let server = baton_http::spawn(addr, api).map_err(Exit::usage)?;
    crate::errln!(
        "baton serve: dashboard http://{0}/ , API http://{0}/api/v1/ , metrics http://{0}/metrics",
        server.addr
    );
    Ok(server)
}

/// `baton run`: runs one processor for one date as a worker; exit 0 when it wrote its data
/// or was coalesced into the holder's follow-up, 1 otherwise.
pub fn run(cli: &Cli, args: &RunArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    if pipeline.processor(&args.processor).is_none() {
        let known: Vec<&str> = pipeline
            .processors
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        return Err(Exit::usage(anyhow!(
            "unknown processor `{}` (known: {})",
            args.processor,
            known.join(", ")
        )));
    }
    crate::signals::kill_commands_on_stop(crate::signals::OnStop::FinishTheRun)
        .map_err(Exit::backend)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let report = run_retrying_start(cli, args, &pipeline, clock)?;
    if args.json {
        print_run_json(&report);
    } else {
        print_run_text(&report);
    }
    Ok(match report.outcome {
        RunOutcome::Ran if report.succeeded() => 0,
        RunOutcome::Coalesced { .. } => 0,
        _ => EXIT_FAILED,
    })
}

/// Runs, retrying the whole run while the backend is unavailable (refused, starting up, out
/// of connections) within the start-retry budget (`--start-retry-secs`, else the config's
/// `backend.start_retry_secs`), with backoff; past it, fails naming the operation. Every
/// step is safe to repeat: a run that took its lease before the failure finds it held on
/// the retry and coalesces, which is recorded as an owed run `serve` carries out.
fn run_retrying_start(
    cli: &Cli,
    args: &RunArgs,
    pipeline: &Arc<baton_core::config::Pipeline>,
    clock: Arc<dyn Clock>,
) -> Result<RunReport, Exit> {
    let budget = Budget::new(
        clock.now(),
        args.start_retry_secs
            .map(|s| SignedDuration::from_secs(s as i64))
            .unwrap_or(pipeline.start_retry),
    );
    let mut failed = 0;
    loop {
        let error = match start_and_run(cli, args, pipeline, clock.clone()) {
            Ok(report) => return Ok(report),
            Err(e) if e.is_transient() => e,
            Err(e) => return Err(e),
        };
        failed += 1;
        let Some(pause) = budget.next_pause(failed, clock.now()) else {
            let spent = clock.now().duration_since(budget.started).as_secs_f64();
            return Err(Exit::backend(error.error.context(format!(
                "run {} {}: the backend stayed unavailable ({failed} tries in {spent:.1}s, start retry budget {}s)",
                args.processor,
                args.date,
                budget.budget.as_secs()
            ))));
        };
        tracing::warn!(processor = %args.processor, date = %args.date, error = %format!("{:#}", error.error), retry_in_ms = pause.as_millis() as u64, "backend unavailable at the start of the run; retrying");
        clock.sleep(pause);
    }
}

/// One try of a run: opens the backend, creates the pipeline's tables, heartbeats as a
/// worker and runs; each failure names its operation.
fn start_and_run(
    cli: &Cli,
    args: &RunArgs,
    pipeline: &Arc<baton_core::config::Pipeline>,
    clock: Arc<dyn Clock>,
) -> Result<RunReport, Exit> {
    let backend = open_existing(cli, pipeline).map_err(|e| e.context("opening the backend"))?;
    let runner = Runner::new(
        pipeline.clone(),
        backend.store.clone(),
        backend.warehouse.clone(),
        clock.clone(),
    );
    runner.ensure_tables().map_err(|e| {
        Exit::from(anyhow::Error::from(e).context("creating the pipeline's tables"))
    })?;
    // Workers heartbeat too, so `baton drift` sees their version.
    write_heartbeat(
        backend.store.as_ref(),
        &Identity::of_this_process("worker", VERSION, COMMIT),
        clock.now(),
        &[],
        None,
    )
    .map_err(|e| Exit::from(anyhow::Error::from(e).context("recording the worker's heartbeat")))?;
    let options = run_options(args, pipeline);
    runner
        .run(&args.processor, args.date, &options, &NoHooks)
        .map_err(|e| Exit::from(anyhow::Error::from(e).context("running")))
}

/// The run's options: the holder (default `cli-<pid>`) and how long to wait for a held
/// lease (`--wait-secs`, else the config's; zero coalesces at once).
fn run_options(args: &RunArgs, pipeline: &baton_core::config::Pipeline) -> RunOptions {
    let mut options = RunOptions::new(
        args.holder
            .clone()
            .unwrap_or_else(|| format!("cli-{}", std::process::id())),
    );
    let wait = args
        .wait_secs
        .map(|s| SignedDuration::from_secs(s as i64))
        .unwrap_or(pipeline.lease_wait);
    options.lease_wait = if wait.is_zero() {
        LeaseWait::Skip
    } else {
        LeaseWait::UpTo(wait)
    };
    options
}

/// The run's report as one JSON line: how it ended and its attempts.
fn print_run_json(report: &RunReport) {
    let attempts: Vec<_> = report
        .attempts
        .iter()
        .map(|a| serde_json::json!({"run_id": a.run_id, "token": a.token, "status": a.status, "rows_written": a.rows_written, "duplicates_dropped": a.duplicates_dropped, "error": a.error}))
        .collect();
    let outcome = match &report.outcome {
        RunOutcome::Ran => serde_json::json!({"outcome": "ran"}),
        RunOutcome::Coalesced { holder, until } => {
            serde_json::json!({"outcome": "coalesced", "held_by": holder, "until": until.to_string()})
        }
        RunOutcome::Deferred { missing } => {
            serde_json::json!({"outcome": "deferred", "missing": missing})
        }
    };
    crate::outln!(
        "{}",
        serde_json::json!({"processor": report.processor, "date": report.partition.to_string(), "result": outcome, "attempts": attempts})
    );
}

/// The run's report as text: why it did not run (coalesced, deferred), then one line per
/// attempt with its fence token and outcome.
fn print_run_text(report: &RunReport) {
    match &report.outcome {
        RunOutcome::Ran => {}
        RunOutcome::Coalesced { holder, until } => crate::outln!(
            "{} {}: lease held by {holder} until {until}; this request was coalesced into its follow-up run",
            report.processor,
            report.partition
        ),
        RunOutcome::Deferred { missing } => crate::outln!(
            "{} {}: deferred: {}",
            report.processor,
            report.partition,
            missing.join("; ")
        ),
    }
    for a in &report.attempts {
        crate::outln!(
            "{} {} run {} token {}: {} ({} rows, {} duplicates dropped){}",
            report.processor,
            report.partition,
            a.run_id,
            a.token,
            a.status,
            a.rows_written,
            a.duplicates_dropped,
            a.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
}

pub fn publish(cli: &Cli, args: &PublishArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    let backend = open_existing(cli, &pipeline)?;
    match &args.what {
        PublishWhat::Raw(raw) => {
            if pipeline.upstream_job(&raw.job).is_none() {
                let known: Vec<&str> = pipeline.upstream.iter().map(|u| u.name.as_str()).collect();
                return Err(Exit::usage(anyhow!(
                    "unknown upstream job `{}` (known: {})",
                    raw.job,
                    known.join(", ")
                )));
            }
            let at = raw.at.unwrap_or_else(|| SystemClock.now());
            let runner = Runner::new(
                pipeline.clone(),
                backend.store.clone(),
                backend.warehouse.clone(),
                Arc::new(SystemClock),
            );
            let batch = runner.record_landing(&raw.job, raw.date, at)?;
            let readers: Vec<String> = pipeline
                .readers_of(&raw.job)
                .iter()
                .map(|p| p.name.to_string())
                .collect();
            crate::outln!(
                "recorded landing of {} for {} at {at} (batch {batch}); runs requested: {}",
                raw.job,
                raw.date,
                if readers.is_empty() {
                    "none".to_owned()
                } else {
                    readers.join(", ")
                }
            );
            Ok(0)
        }
        PublishWhat::Completion(c) => {
            let raw = raw_payload(c)?;
            let mut bus_id = None;
            let (payload, default_topic) = match raw {
                Some(bytes) => {
                    let (bytes, id) = unwrap_push(bytes)?;
                    bus_id = id;
                    (
                        bytes,
                        pipeline.gates.first().map(|g| g.completion_topic.clone()),
                    )
                }
                None => {
                    let processor = c.processor.clone().unwrap_or_default();
                    let Some(proc) = pipeline.processor(&processor) else {
                        return Err(Exit::usage(anyhow!("unknown processor `{processor}`")));
                    };
                    let status = CompletionStatus::parse(&c.status).ok_or_else(|| {
                        Exit::usage(anyhow!(
                            "unknown status `{}` (success, partial, no_data, failed)",
                            c.status
                        ))
                    })?;
                    let date = c
                        .date
                        .ok_or_else(|| Exit::usage(anyhow!("--date is required")))?;
                    let run_id = RunId::new(c.run_id.clone().unwrap_or_default());
                    let name = ProcessorName::new(processor.clone());
                    let gate = pipeline.gate_for_processor(&name).map(|g| g.id.clone());
                    let message = CompletionMessage::new(
                        name,
                        date,
                        run_id,
                        status,
                        c.record_count,
                        SystemClock.now(),
                    )
                    .for_gate(gate)
                    .forcing(c.force_reprocess);
                    (
                        message.to_json().to_string().into_bytes(),
                        Some(pipeline.completion_topic(proc)),
                    )
                }
            };
            let topic = c
                .topic
                .clone()
                .or(default_topic)
                .ok_or_else(|| Exit::usage(anyhow!("no topic: pass --topic")))?;
            consumed_topic(&pipeline, &topic)?;
            // A fresh bus id: a hand-published message is a new delivery, as a processor's
            // retry would be; the orchestrator's own idempotence must absorb it.
            // A push envelope's message id is kept, so a redelivered push is dropped by the bus.
            let bus_id = bus_id.unwrap_or_else(|| format!("manual/{}", uuid::Uuid::now_v7()));
            backend.bus.publish(&topic, &bus_id, &payload)?;
            crate::outln!(
                "published to {topic} as {bus_id}; `baton serve --until-idle` applies it"
            );
            Ok(0)
        }
    }
}

/// A topic `serve` reads: a gate's completion topic or the raw-landings topic. A message
/// published anywhere else would sit unread while `serve` and `health` report nothing.
fn consumed_topic(pipeline: &baton_core::Pipeline, topic: &str) -> Result<(), Exit> {
    let mut known: Vec<&str> = pipeline
        .gates
        .iter()
        .map(|g| g.completion_topic.as_str())
        .collect();
    known.push(&pipeline.raw_landings_topic);
    known.sort_unstable();
    known.dedup();
    if known.contains(&topic) {
        return Ok(());
    }
    Err(Exit::usage(anyhow!(
        "topic `{topic}` is read by no gate: nothing would ever consume the message (topics serve reads: {})",
        known.join(", ")
    )))
}

/// The payload of `--payload` or `--payload-file` (`-`: standard input), byte for byte;
/// `None` when the message is built from --processor/--date/--run-id.
fn raw_payload(c: &CompletionArgs) -> Result<Option<Vec<u8>>, Exit> {
    use std::io::Read;
    let from_stdin = || {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(baton_core::push::ENVELOPE_MAX_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                Exit::usage(anyhow!("cannot read the payload from standard input: {e}"))
            })?;
        Ok::<_, Exit>(bytes)
    };
    let bytes = match (&c.payload, &c.payload_file) {
        (Some(p), _) if p == "-" => from_stdin()?,
        (Some(p), _) => p.clone().into_bytes(),
        (None, Some(path)) if path.as_os_str() == "-" => from_stdin()?,
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| Exit::usage(anyhow!("--payload-file {}: {e}", path.display())))?,
        (None, None) => return Ok(None),
    };
    if bytes.len() > baton_core::push::ENVELOPE_MAX_BYTES {
        return Err(Exit::usage(anyhow!(
            "the payload is over the {}-byte limit",
            baton_core::push::ENVELOPE_MAX_BYTES
        )));
    }
    Ok(Some(bytes))
}

/// A Pub/Sub push envelope gives its decoded data and message id; anything else is
/// published as it is (a malformed completion is the consumer's to dead-letter). A broken
/// envelope is refused here, naming the field: the operator is at the keyboard.
fn unwrap_push(bytes: Vec<u8>) -> Result<(Vec<u8>, Option<String>), Exit> {
    if !baton_core::push::is_envelope(&bytes) {
        return Ok((bytes, None));
    }
    let m =
        baton_core::push::unwrap(&bytes).map_err(|e| Exit::usage(anyhow!("push envelope: {e}")))?;
    Ok((m.data, m.message_id.map(|id| format!("push/{id}"))))
}

pub fn migrate(cli: &Cli, _args: &MigrateArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    // Opening applies pending migrations (SQLite and PostgreSQL alike).
    let backend = crate::open_backend(cli, &pipeline, Arc::new(SystemClock), false)?;
    let applied = backend.admin.schema();
    let runner = Runner::new(
        pipeline,
        backend.store.clone(),
        backend.warehouse.clone(),
        Arc::new(SystemClock),
    );
    runner.ensure_tables()?;
    crate::outln!("{applied}; pipeline tables created");
    Ok(0)
}

pub fn generate(cli: &Cli, args: &GenerateArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    let backend = crate::open_backend(cli, &pipeline, Arc::new(SystemClock), false)?;
    let runner = Runner::new(
        pipeline.clone(),
        backend.store.clone(),
        backend.warehouse.clone(),
        Arc::new(SystemClock),
    );
    runner.ensure_tables()?;
    let history = pipeline
        .processors
        .iter()
        .map(|p| p.history_days)
        .max()
        .unwrap_or(0) as i32;
    let first = args.end.offset(1 - args.dates as i32);
    let dates = first.offset(-history).through(args.end);
    let run_dates = first.through(args.end);
    crate::demo::land_reference(
        &pipeline,
        &runner,
        backend.warehouse.as_ref(),
        &dates,
        &run_dates,
        args.seed,
        &[],
        SystemClock.now(),
        &|| (),
    )?;
    crate::outln!(
        "landed the reference pipeline's raw data for {} .. {} ({} days of history before)",
        first,
        args.end,
        history
    );
    Ok(0)
}
