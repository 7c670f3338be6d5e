//! baton-backends: the one place that knows every backend.
//!
//! [`open`] builds the three ports ([`Backends`]) for a [`Kind`] from [`Settings`], with the
//! backend's [`Admin`] (what an operator does to a backend beyond the ports: describe its
//! schema, reset it for the demo and the bench) and its bench [`Baselines`]. A new backend is
//! its adapter crate plus one arm in [`open`]; the CLI names no concrete backend type.
//!
//! Invariant: nothing here holds a pipeline rule; it only builds and registers adapters.
#![deny(missing_docs)]

pub mod baselines;

pub use baselines::Baselines;
use baton_core::clock::Clock;
use baton_nats::LazyNatsBus;
use baton_ports::wake::Signal;
use baton_ports::{Bus, Result, StateStore, Wake, Warehouse};
use baton_postgres::{PgBackend, TimeSource};
use baton_sqlite::{Durability, SqliteBackend};
use jiff::SignedDuration;
use std::path::PathBuf;
use std::sync::Arc;

/// The backends baton can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// One embedded SQLite file: state store, warehouse and bus.
    Sqlite,
    /// PostgreSQL (state store, warehouse) and NATS JetStream (bus).
    Postgres,
}

/// What opening a backend needs; each kind reads its own fields.
#[derive(Clone)]
pub struct Settings {
    /// The SQLite file.
    pub sqlite_path: PathBuf,
    /// fsync on every SQLite commit.
    pub sqlite_full_sync: bool,
    /// The PostgreSQL URL.
    pub database_url: Option<String>,
    /// The NATS URL.
    pub nats_url: Option<String>,
    /// The clock of SQLite, and of PostgreSQL when `inject_clock` (the demo, whose clock
    /// jumps); otherwise PostgreSQL reads the database's clock.
    pub clock: Arc<dyn Clock>,
    /// See `clock`.
    pub inject_clock: bool,
    /// Test hook: hold every PostgreSQL fenced write open this long before it commits.
    pub write_stall: Option<SignedDuration>,
    /// Open an existing SQLite file for reading only, without migrating it (commands that
    /// only read, for a user who may only read). PostgreSQL ignores it.
    pub read_only: bool,
    /// How long SQLite waits for another connection's lock (30 s when `None`).
    pub sqlite_busy_timeout: Option<std::time::Duration>,
}

/// A backend failed to open, or a setting it needs is missing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required setting is missing (the message names it and where it may come from).
    #[error("{0}")]
    Missing(String),
    /// The backend refused.
    #[error(transparent)]
    Backend(#[from] baton_ports::Error),
}

/// What an operator does to a backend beyond the ports.
pub trait Admin: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> Kind;
    /// One line on the schema (opening applied any pending migration).
    fn schema(&self) -> String;
    /// Drops baton's state, the pipeline's `tables` and the bus's `topics`, for the demo and
    /// the bench; false for a backend that starts fresh anyway (SQLite's new file).
    fn reset(&self, tables: &[String], topics: &[String]) -> Result<bool>;
    /// The bench's baselines on this backend.
    fn baselines(&self) -> &dyn Baselines;
    /// Starts the backend's wake signal for a `serve` loop ([`baton_ports::Wake`]): what
    /// tells it new work arrived, from this process or another.
    fn start_wake(&self) -> Result<Arc<dyn Wake>>;
}

/// The three ports of one backend, and its administration.
#[derive(Clone)]
pub struct Backends {
    /// The state store.
    pub store: Arc<dyn StateStore>,
    /// The warehouse.
    pub warehouse: Arc<dyn Warehouse>,
    /// The bus.
    pub bus: Arc<dyn Bus>,
    /// Its administration.
    pub admin: Arc<dyn Admin>,
}

impl Backends {
    /// Whether state lives on a server shared by many hosts (PostgreSQL + NATS).
    pub fn distributed(&self) -> bool {
        self.admin.kind() != Kind::Sqlite
    }
}

/// Opens the backend of `kind`: the registry.
pub fn open(kind: Kind, settings: &Settings) -> std::result::Result<Backends, Error> {
    match kind {
        Kind::Sqlite => open_sqlite(settings),
        Kind::Postgres => open_postgres(settings),
    }
}

fn open_sqlite(settings: &Settings) -> std::result::Result<Backends, Error> {
    let durability = if settings.sqlite_full_sync {
        Durability::Full
    } else {
        Durability::Normal
    };
    let path = &settings.sqlite_path;
    let sqlite = if settings.read_only {
        SqliteBackend::open_read_only(path, settings.clock.clone())
    } else {
        SqliteBackend::open(path, durability, settings.clock.clone())
    }
    .map(Arc::new)
    .map_err(|e| e.context(format_args!("database {}", path.display())))?;
    if let Some(timeout) = settings.sqlite_busy_timeout {
        sqlite.set_busy_timeout(timeout)?;
    }
    let admin = Arc::new(SqliteAdmin {
        backend: sqlite.clone(),
        path: path.clone(),
    });
    Ok(Backends {
        store: sqlite.clone(),
        warehouse: sqlite.clone(),
        bus: sqlite,
        admin,
    })
}

fn open_postgres(settings: &Settings) -> std::result::Result<Backends, Error> {
    let db = settings.database_url.clone().ok_or_else(|| {
        Error::Missing("the postgres backend needs --database-url (or BATON_DATABASE_URL, or backend.database_url)".into())
    })?;
    let nats = settings.nats_url.clone().ok_or_else(|| {
        Error::Missing(
            "the postgres backend needs --nats-url (or BATON_NATS_URL, or backend.nats_url)".into(),
        )
    })?;
    let time = if settings.inject_clock {
        TimeSource::Injected(settings.clock.clone())
    } else {
        TimeSource::Database
    };
    let mut pg = PgBackend::connect_with(&db, 8, time)?;
    if let Some(stall) = settings.write_stall {
        pg = pg.with_write_stall(stall);
    }
    let pg = Arc::new(pg);
    // Connected on first use: a command that neither publishes nor consumes (`run`,
    // `status`, `reconcile`...) works while NATS is down.
    let bus = Arc::new(LazyNatsBus::new(&nats));
    let admin = Arc::new(PgAdmin {
        pg: pg.clone(),
        nats: bus.clone(),
        url: db,
    });
    Ok(Backends {
        store: pg.clone(),
        warehouse: pg,
        bus,
        admin,
    })
}

struct SqliteAdmin {
    backend: Arc<SqliteBackend>,
    path: PathBuf,
}

impl Admin for SqliteAdmin {
    fn kind(&self) -> Kind {
        Kind::Sqlite
    }
    fn schema(&self) -> String {
        format!("SQLite schema of {} up to date", self.path.display())
    }
    fn reset(&self, _tables: &[String], _topics: &[String]) -> Result<bool> {
        Ok(false)
    }
    fn baselines(&self) -> &dyn Baselines {
        self.backend.as_ref()
    }
    /// Its own commits in process, a file watch for other processes' commits.
    fn start_wake(&self) -> Result<Arc<dyn Wake>> {
        Ok(self.backend.clone())
    }
}

struct PgAdmin {
    pg: Arc<PgBackend>,
    nats: Arc<LazyNatsBus>,
    /// The database URL, for the wake signal's own `LISTEN` connection.
    url: String,
}

impl Admin for PgAdmin {
    fn kind(&self) -> Kind {
        Kind::Postgres
    }
    fn schema(&self) -> String {
        format!(
            "PostgreSQL schema at version {}",
            baton_postgres::MIGRATIONS.len()
        )
    }
    fn reset(&self, tables: &[String], topics: &[String]) -> Result<bool> {
        self.pg.reset(tables)?;
        self.nats.delete_topics(topics)?;
        Ok(true)
    }
    fn baselines(&self) -> &dyn Baselines {
        self.pg.as_ref()
    }
    /// One signal raised by PostgreSQL's `NOTIFY` (outbox rows, landings, owed runs) and by
    /// NATS (any publish on baton's subjects).
    fn start_wake(&self) -> Result<Arc<dyn Wake>> {
        let signal = Arc::new(Signal::default());
        baton_postgres::listen(&self.url, &signal)?;
        self.nats.forward_wakes(&signal);
        Ok(signal)
    }
}
