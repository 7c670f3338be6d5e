//! The `baton` command: parses arguments, builds the parts, and maps outcomes to exit
//! codes. It holds no pipeline logic of its own.
//!
//! Exit codes: 0 success; 1 a verdict failed (demo not exact, a run failed); 2 bad usage,
//! config or input; 3 backend error (database unreadable, busy past its timeout).

mod check;
mod demo;
mod ops;
mod status;

use anyhow::Context;
use baton_core::clock::{Clock, SystemClock};
use baton_core::config::{Backend, Pipeline};
use baton_sqlite::{Durability, SqliteBackend};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
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
    /// Write the reference pipeline's config to a file to start from.
    Init(ops::InitArgs),
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
        Command::Reconcile(a) => check::reconcile(&cli, a),
        Command::Health(a) => check::health(&cli, a),
        Command::Init(a) => ops::init(a),
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

/// Opens the embedded backend at `path`.
pub fn open_backend(
    pipeline: &Pipeline,
    path: &Path,
    clock: Arc<dyn Clock>,
) -> Result<Arc<SqliteBackend>, Exit> {
    let durability = match pipeline.backend {
        Backend::Sqlite {
            synchronous_full: true,
        } => Durability::Full,
        Backend::Sqlite {
            synchronous_full: false,
        } => Durability::Normal,
        _ => {
            return Err(Exit::usage(anyhow::anyhow!(
                "this build supports only the sqlite backend"
            )));
        }
    };
    SqliteBackend::open(path, durability, clock)
        .map(Arc::new)
        .map_err(|e| Exit::backend(anyhow::anyhow!("database {}: {e}", path.display())))
}

/// Opens an existing database (commands other than `demo` must not create one by accident).
pub fn open_existing(cli: &Cli, pipeline: &Pipeline) -> Result<Arc<SqliteBackend>, Exit> {
    if !cli.db.exists() {
        return Err(Exit::usage(anyhow::anyhow!(
            "database {} does not exist (run `baton demo` first, or pass --db PATH)",
            cli.db.display()
        )));
    }
    open_backend(pipeline, &cli.db, Arc::new(SystemClock))
}

/// Parses a `YYYY-MM-DD` argument.
pub fn parse_date(text: &str) -> Result<baton_core::Partition, String> {
    baton_core::Partition::parse(text)
}
