//! The `baton` command: parses arguments, builds the parts, and maps outcomes to exit
//! codes. It holds no pipeline logic of its own.
//!
//! Exit codes: 0 success; 1 a verdict failed (demo not exact, a run failed); 2 bad usage,
//! config or input; 3 backend error (database unreadable, busy past its timeout).

mod bench;
mod check;
mod demo;
mod explain;
mod ops;
mod report;
mod status;
mod watch;

use anyhow::Context;
use baton_core::clock::{Clock, SystemClock};
use baton_core::config::{Backend, Pipeline};

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code: a verdict failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage, config or input.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the backend failed.
pub const EXIT_BACKEND: u8 = 3;

/// baton makes phased batch pipelines exact: completion tracking, fenced writes, triggers
/// exactly once.
#[derive(Parser, Debug)]
#[command(name = "baton", version, about, long_about = None, after_help = "Exit codes: 0 success, 1 a check failed (demo not exact, run failed), 2 bad usage/config/input, 3 backend error.")]
pub struct Cli {
    /// Pipeline config (TOML); the built-in reference pipeline when absent.
    #[arg(long, global = true, env = "BATON_CONFIG")]
    config: Option<PathBuf>,
    /// The embedded SQLite database.
    #[arg(long, global = true, env = "BATON_DB", default_value = "baton-demo.db")]
    db: PathBuf,
    /// The backend, overriding the config's: sqlite (one file) or postgres (PostgreSQL + NATS).
    #[arg(long, global = true, env = "BATON_BACKEND", value_enum)]
    backend: Option<BackendKind>,
    /// PostgreSQL URL for the postgres backend (a password in it is never logged).
    #[arg(
        long,
        global = true,
        env = "BATON_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// NATS URL for the postgres backend.
    #[arg(long, global = true, env = "BATON_NATS_URL", hide_env_values = true)]
    nats_url: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// More detail: `health --verbose` shows the evidence of passing checks; logs go to
    /// info (-v) and debug (-vv); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// Which backend.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// One embedded SQLite file: state store, warehouse and bus.
    Sqlite,
    /// PostgreSQL (state store, warehouse) and NATS JetStream (bus).
    Postgres,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the reference pipeline end to end on a fresh database and check every date.
    Demo(demo::DemoArgs),
    /// Consume completions, relay the outbox and run triggered phases until Ctrl-C.
    Serve(ops::ServeArgs),
    /// Run one processor for one date under a lease.
    Run(ops::RunArgs),
    /// Publish a completion message, or record an upstream landing, by hand.
    Publish(ops::PublishArgs),
    /// Compare stored completion state with the truth (runs, rows); --fix repairs it.
    Reconcile(check::ReconcileArgs),
    /// Pass/fail checks: accuracy, duplicates, lateness, leases, dead letters, error rates.
    Health(check::HealthArgs),
    /// Show completion documents, runs and leases.
    Status(status::StatusArgs),
    /// Why a date stands where it does (mode, processors, rules, checks, next schedule),
    /// with its timeline.
    Explain(explain::ExplainArgs),
    /// A reconcile and health summary over a window: findings by code, repairs, lateness
    /// by job, dead letters.
    Report(report::ReportArgs),
    /// Write the reference pipeline's config to a file to start from.
    Init(ops::InitArgs),
    /// Apply the database schema's pending migrations and create the pipeline's tables.
    Migrate(ops::MigrateArgs),
    /// Land the reference pipeline's raw data (Phase 2) for dates, as its scrapers would.
    Generate(ops::GenerateArgs),
    /// Alert policies: list them with their incidents, or send a test notice.
    Alerts(watch::AlertsArgs),
    /// List `serve` and worker instances that are stale or not at the expected version.
    Drift(watch::DriftArgs),
    /// Measure baton beside baselines from the same run (release build): throughput,
    /// trigger latency, dedup, leases, reconcile, memory.
    Bench(bench::BenchArgs),
}

/// A failure with its exit code.
#[derive(Debug)]
pub struct Exit {
    code: u8,
    error: anyhow::Error,
}

impl Exit {
    /// Bad usage or input.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_USAGE,
            error: error.into(),
        }
    }
    /// A backend failure.
    pub fn backend(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_BACKEND,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Exit {
    fn from(error: E) -> Self {
        let error = error.into();
        let code = if error
            .chain()
            .any(|c| c.downcast_ref::<baton_ports::Error>().is_some())
        {
            EXIT_BACKEND
        } else {
            1
        };
        Self { code, error }
    }
}

/// A command's result: an exit code on success paths too (a failed verdict is not an error).
pub type Outcome = Result<u8, Exit>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let result = match &cli.command {
        Command::Demo(a) => demo::run(&cli, a),
        Command::Serve(a) => ops::serve(&cli, a),
        Command::Run(a) => ops::run(&cli, a),
        Command::Publish(a) => ops::publish(&cli, a),
        Command::Status(a) => status::run(&cli, a),
        Command::Explain(a) => explain::run(&cli, a),
        Command::Report(a) => report::run(&cli, a),
        Command::Reconcile(a) => check::reconcile(&cli, a),
        Command::Health(a) => check::health(&cli, a),
        Command::Init(a) => ops::init(a),
        Command::Migrate(a) => ops::migrate(&cli, a),
        Command::Generate(a) => ops::generate(&cli, a),
        Command::Alerts(a) => watch::alerts(&cli, a),
        Command::Drift(a) => watch::drift(&cli, a),
        Command::Bench(a) => bench::run(&cli, a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(exit) => {
            if is_broken_pipe(&exit.error) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {:#}", exit.error);
            ExitCode::from(exit.code)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(cli: &Cli) {
    let default = match (cli.verbose, &cli.command) {
        (0, Command::Demo(_)) => "error",
        // `health -v` asks for evidence, not for logs.
        (0, _) | (1, Command::Health(_)) => "warn",
        (1, _) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Loads the pipeline: `--config`, or the built-in reference.
pub fn load_pipeline(cli: &Cli) -> Result<Arc<Pipeline>, Exit> {
    let pipeline = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))
                .map_err(Exit::usage)?;
            Pipeline::from_toml(&text)
                .map_err(|e| Exit::usage(anyhow::anyhow!("config {}: {e}", path.display())))?
        }
        None => Pipeline::reference()
            .map_err(|e| Exit::usage(anyhow::anyhow!("built-in config: {e}")))?,
    };
    Ok(Arc::new(pipeline))
}

pub use baton_backends::Backends;

/// Which backend a command uses: `--backend`, else the config's.
pub fn backend_kind(cli: &Cli, pipeline: &Pipeline) -> BackendKind {
    cli.backend.unwrap_or(match pipeline.backend {
        Backend::Postgres { .. } => BackendKind::Postgres,
        _ => BackendKind::Sqlite,
    })
}

/// Opens the backends. `clock` is the SQLite backend's clock; for PostgreSQL it is used only
/// when `inject_clock` (the demo, whose clock jumps), otherwise the database's clock rules.
pub fn open_backend(
    cli: &Cli,
    pipeline: &Pipeline,
    clock: Arc<dyn Clock>,
    inject_clock: bool,
) -> Result<Backends, Exit> {
    open_backend_at(cli, &cli.db, pipeline, clock, inject_clock)
}

/// [`open_backend`] with the SQLite file at `db` instead of `--db`.
pub fn open_backend_at(
    cli: &Cli,
    db: &std::path::Path,
    pipeline: &Pipeline,
    clock: Arc<dyn Clock>,
    inject_clock: bool,
) -> Result<Backends, Exit> {
    let (config_db, config_nats) = match &pipeline.backend {
        Backend::Postgres {
            database_url,
            nats_url,
        } => (database_url.clone(), nats_url.clone()),
        _ => (None, None),
    };
    let settings = baton_backends::Settings {
        sqlite_path: db.to_path_buf(),
        sqlite_full_sync: !matches!(
            pipeline.backend,
            Backend::Sqlite {
                synchronous_full: false
            }
        ),
        database_url: cli.database_url.clone().or(config_db),
        nats_url: cli.nats_url.clone().or(config_nats),
        clock,
        inject_clock,
        // A test hook: hold fenced writes open so a fault test can kill a writer mid-write.
        write_stall: std::env::var("BATON_TEST_WRITE_STALL_MS")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .map(jiff::SignedDuration::from_millis),
    };
    let kind = match backend_kind(cli, pipeline) {
        BackendKind::Sqlite => baton_backends::Kind::Sqlite,
        BackendKind::Postgres => baton_backends::Kind::Postgres,
    };
    baton_backends::open(kind, &settings).map_err(|e| match e {
        baton_backends::Error::Missing(_) => Exit::usage(anyhow::anyhow!("{e}")),
        _ => Exit::backend(anyhow::anyhow!("{e}")),
    })
}

/// Opens existing backends (for SQLite, commands other than `demo` must not create a
/// database by accident).
pub fn open_existing(cli: &Cli, pipeline: &Pipeline) -> Result<Backends, Exit> {
    if backend_kind(cli, pipeline) == BackendKind::Sqlite && !cli.db.exists() {
        return Err(Exit::usage(anyhow::anyhow!(
            "database {} does not exist (run `baton demo` first, or pass --db PATH)",
            cli.db.display()
        )));
    }
    open_backend(cli, pipeline, Arc::new(SystemClock), false)
}

/// Parses a `YYYY-MM-DD` argument.
pub fn parse_date(text: &str) -> Result<baton_core::Partition, String> {
    baton_core::Partition::parse(text)
}
