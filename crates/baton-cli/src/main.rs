//! The `baton` command: parses arguments, builds the parts, and maps outcomes to exit
//! codes. It holds no pipeline logic of its own.
//!
//! Exit codes: 0 success; 1 a verdict failed (demo not exact, a run failed); 2 bad usage,
//! config or input; 3 backend error (database unreadable, busy past its timeout).

mod bench;
mod bench_scale;
mod check;
mod demo;
mod explain;
mod help;
mod letters;
mod logs;
mod ops;
pub mod out;
mod prune;
mod report;
mod signals;
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

/// The command line: global options and the commands.
#[derive(Parser, Debug)]
#[command(name = "baton", version, about = help::ABOUT, long_about = None, after_help = help::AFTER)]
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
    #[command(after_help = help::DEMO)]
    Demo(demo::DemoArgs),
    /// Consume completions, relay the outbox and run triggered phases until SIGTERM or Ctrl-C.
    #[command(after_help = help::SERVE)]
    Serve(ops::ServeArgs),
    /// Run one processor for one date under a lease.
    #[command(after_help = help::RUN)]
    Run(ops::RunArgs),
    /// Publish a completion message, or record an upstream landing, by hand.
    #[command(after_help = help::PUBLISH)]
    Publish(ops::PublishArgs),
    /// Compare stored completion state with the truth (runs, rows); --fix repairs it.
    #[command(after_help = help::RECONCILE)]
    Reconcile(check::ReconcileArgs),
    /// Pass/fail checks: accuracy, duplicates, lateness, leases, dead letters, error rates.
    #[command(after_help = help::HEALTH)]
    Health(check::HealthArgs),
    /// Show completion documents, runs and leases.
    #[command(after_help = help::STATUS)]
    Status(status::StatusArgs),
    /// Dead letters: list, show, replay (after fixing the cause) or retire them.
    #[command(after_help = help::DEAD_LETTERS)]
    DeadLetters(letters::LettersArgs),
    /// Why a date stands where it does (mode, processors, rules, checks, next schedule),
    /// with its timeline.
    #[command(after_help = help::EXPLAIN)]
    Explain(explain::ExplainArgs),
    /// A reconcile and health summary over a window: findings by code, repairs, lateness
    /// by job, dead letters.
    #[command(after_help = help::REPORT)]
    Report(report::ReportArgs),
    /// Remove old history by the config's `[retention]` policy (what `serve` does every
    /// `[retention] every_mins`); --dry-run counts what would go.
    #[command(after_help = help::PRUNE)]
    Prune(prune::PruneArgs),
    /// Write the reference pipeline's config to a file to start from.
    #[command(after_help = help::INIT)]
    Init(ops::InitArgs),
    /// Apply the database schema's pending migrations and create the pipeline's tables.
    #[command(after_help = help::MIGRATE)]
    Migrate(ops::MigrateArgs),
    /// Land the reference pipeline's raw data (Phase 2) for dates, as its scrapers would.
    #[command(after_help = help::GENERATE)]
    Generate(ops::GenerateArgs),
    /// Alert policies: list them with their incidents, or send a test notice.
    #[command(after_help = help::ALERTS)]
    Alerts(watch::AlertsArgs),
    /// List `serve` and worker instances that are stale or not at the expected version.
    #[command(after_help = help::DRIFT)]
    Drift(watch::DriftArgs),
    /// Measure baton beside baselines from the same run (release build): throughput,
    /// trigger latency, dedup, leases, reconcile, memory.
    #[command(after_help = help::BENCH)]
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
    /// The same failure with what was being done when it happened.
    pub fn context(self, what: &'static str) -> Self {
        Self {
            code: self.code,
            error: self.error.context(what),
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
        let code = if backend_error(&error).is_some() {
            EXIT_BACKEND
        } else {
            1
        };
        Self { code, error }
    }
}

impl Exit {
    /// Whether the failure is a backend error that may pass (a server restarting, refusing
    /// connections, out of connection slots), told by the error's kind, not its text.
    pub fn is_transient(&self) -> bool {
        backend_error(&self.error).is_some_and(baton_ports::Error::is_retryable)
    }
}

/// The backend error in a failure's chain, wherever a boundary wrapped it.
fn backend_error(error: &anyhow::Error) -> Option<&baton_ports::Error> {
    error.chain().find_map(|c| {
        c.downcast_ref::<baton_ports::Error>()
            .or_else(|| match c.downcast_ref::<baton_backends::Error>() {
                Some(baton_backends::Error::Backend(b)) => Some(b),
                _ => None,
            })
            .or_else(|| match c.downcast_ref::<baton_runner::Error>() {
                Some(baton_runner::Error::Backend(b)) => Some(b),
                _ => None,
            })
            .or_else(|| match c.downcast_ref::<baton_serve::Error>() {
                Some(
                    baton_serve::Error::Backend(b)
                    | baton_serve::Error::Runner(baton_runner::Error::Backend(b)),
                ) => Some(b),
                _ => None,
            })
    })
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
        Command::DeadLetters(a) => letters::run(&cli, a),
        Command::Explain(a) => explain::run(&cli, a),
        Command::Report(a) => report::run(&cli, a),
        Command::Reconcile(a) => check::reconcile(&cli, a),
        Command::Health(a) => check::health(&cli, a),
        Command::Prune(a) => prune::run(&cli, a),
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
                // The reader went away: quiet, with the verdict reached so far (out.rs).
                return ExitCode::from(out::recorded_verdict());
            }
            crate::errln!("error: {:#}", exit.error);
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
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // No level shows the HTTP client's own logs of URLs and headers (logs.rs).
    for directive in logs::CAPPED_TARGETS {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    // Colours only on a terminal: in a file or a pipe they are escape sequences.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| out::Stderr);
    match cli.log_format {
        // JSON escapes control characters itself; the caps keep the client's URLs out.
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.fmt_fields(logs::text_fields()).init(),
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
    open_backend_at(cli, &cli.db, pipeline, clock, inject_clock, false)
}

/// [`open_backend`] with the SQLite file at `db` instead of `--db`.
pub fn open_backend_at(
    cli: &Cli,
    db: &std::path::Path,
    pipeline: &Pipeline,
    clock: Arc<dyn Clock>,
    inject_clock: bool,
    read_only: bool,
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
        read_only,
        sqlite_busy_timeout: std::env::var("BATON_SQLITE_BUSY_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(std::time::Duration::from_millis),
    };
    let kind = match backend_kind(cli, pipeline) {
        BackendKind::Sqlite => baton_backends::Kind::Sqlite,
        BackendKind::Postgres => baton_backends::Kind::Postgres,
    };
    // The error itself is kept (not its text): `run` tells a transient one by its kind.
    baton_backends::open(kind, &settings).map_err(|e| match e {
        baton_backends::Error::Missing(_) => Exit::usage(e),
        _ => Exit::backend(e),
    })
}

/// Opens existing backends (for SQLite, commands other than `demo` must not create a
/// database by accident).
pub fn open_existing(cli: &Cli, pipeline: &Pipeline) -> Result<Backends, Exit> {
    must_exist(cli, pipeline)?;
    open_backend(cli, pipeline, Arc::new(SystemClock), false)
}

/// Opens existing backends for a command that only reads (`status`, `health`,
/// `reconcile` without `--fix`): a SQLite file is opened read-only and not migrated, so a
/// user who may only read it can run them.
pub fn open_existing_read_only(cli: &Cli, pipeline: &Pipeline) -> Result<Backends, Exit> {
    must_exist(cli, pipeline)?;
    open_backend_at(cli, &cli.db, pipeline, Arc::new(SystemClock), false, true)
}

/// For SQLite, commands other than `demo` must not create a database by accident.
fn must_exist(cli: &Cli, pipeline: &Pipeline) -> Result<(), Exit> {
    if backend_kind(cli, pipeline) == BackendKind::Sqlite && !cli.db.exists() {
        return Err(Exit::usage(anyhow::anyhow!(
            "database {} does not exist (run `baton demo` first, or pass --db PATH)",
            cli.db.display()
        )));
    }
    Ok(())
}

/// Parses a `YYYY-MM-DD` argument.
pub fn parse_date(text: &str) -> Result<baton_core::Partition, String> {
    baton_core::Partition::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk under `baton run` surfaces as the runner's backend error (SQLite's
    /// "database or disk is full"); it is exit 3, as is a database locked past its timeout
    /// under `reconcile --fix` (the service's error). A failed verdict stays 1.
    #[test]
    fn backend_failures_inside_runner_and_service_errors_exit_3() {
        let full = baton_ports::Error::Permanent("database or disk is full".into());
        let exit = Exit::from(baton_runner::Error::Backend(full));
        assert_eq!(exit.code, EXIT_BACKEND);
        let locked = baton_ports::Error::Retryable("database is locked".into());
        let exit = Exit::from(baton_serve::Error::Backend(locked));
        assert_eq!(exit.code, EXIT_BACKEND);
        let nested = baton_runner::Error::Backend(baton_ports::Error::Retryable("busy".into()));
        let exit =
            Exit::from(anyhow::Error::from(baton_serve::Error::Runner(nested)).context("run"));
        assert_eq!(exit.code, EXIT_BACKEND);
        let exit = Exit::from(anyhow::anyhow!("the demo found 1 date not exact"));
        assert_eq!(exit.code, EXIT_FAILED);
    }
}
