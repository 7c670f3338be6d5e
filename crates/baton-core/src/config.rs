//! The pipeline config (`baton.toml`): parsing and validation into a [`Pipeline`].
//!
//! Invariant: a [`Pipeline`] value is valid: names are unique, every reference resolves,
//! `depends_on` has no cycle, every primary key is non-empty, and every table and column
//! name is a safe SQL identifier (adapters splice them into SQL). Every error names the key
//! and, where the source has one, the line.

use crate::alert::{AlertPolicy, NotifierSpec, SecretSource, Watch};
use crate::cron::{CronExpr, Schedule, ScheduleDate};
use crate::gate::{Gate, ModePolicy, Rule};
use crate::model::{GateId, ProcessorName};
use crate::names;
use crate::quality::{CheckKind, QualityCheck};
use crate::retention;
use jiff::SignedDuration;
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use toml::Spanned;

/// The reference NBA pipeline's config, built in; `baton init` writes it out.
pub const REFERENCE_TOML: &str = include_str!("../reference.toml");

/// The topic `serve` reads landing notices from when `[pipeline] raw_landings_topic` is
/// not set.
pub const DEFAULT_RAW_LANDINGS_TOPIC: &str = "raw-landings";

/// A config that could not be used: what, at which key, on which line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Error {
    /// The key, as a path (`processors[2].primary_key`).
    pub key: String,
    /// The 1-based line in the source, where known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}, key `{}`: {}", self.key, self.message),
            None => write!(f, "key `{}`: {}", self.key, self.message),
        }
    }
}

/// The HTTP API's settings (`[api]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiConfig {
    /// The address `serve` listens on when `--listen` is not given.
    pub listen: Option<String>,
    /// A file holding the bearer token of mutating endpoints (`BATON_API_TOKEN` wins).
    pub token_file: Option<String>,
}

/// The report `serve` sends to the notifiers, and its own periodic reconcile (`[report]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportConfig {
    /// When the report is sent, in the pipeline's time zone (default Monday 09:00).
    pub schedule: CronExpr,
    /// How many dates, ending today, it covers (default 30).
    pub days: u32,
    /// How many dates, ending today, `serve`'s periodic reconcile covers (default 7;
    /// `serve --reconcile-days` wins).
    pub reconcile_days: u32,
}

/// The report's default schedule: Monday 09:00 in the pipeline's time zone.
pub const DEFAULT_REPORT_SCHEDULE: &str = "0 9 * * MON";

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            schedule: CronExpr::parse(DEFAULT_REPORT_SCHEDULE)
                .unwrap_or_else(|e| unreachable!("the default report schedule parses: {e}")),
            days: 30,
            reconcile_days: 7,
        }
    }
}

/// Retention (`[retention]`): what `serve` and `baton prune` remove, and how often `serve`
/// prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// What is kept.
    pub policy: retention::RetentionPolicy,
    /// How often `serve` prunes (default hourly).
    pub every: SignedDuration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            policy: retention::RetentionPolicy::default(),
            every: SignedDuration::from_hours(1),
        }
    }
}

/// How long `run` retries an unavailable backend at its start, unless configured.
pub const DEFAULT_START_RETRY_SECS: i64 = 30;

/// Which storage backend the pipeline runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// One embedded SQLite file.
    Sqlite {
        /// Whether commits are fsynced (`FULL`) or only at checkpoints (`NORMAL`).
        synchronous_full: bool,
    },
    /// PostgreSQL (state store and warehouse) and NATS JetStream (bus), for many hosts.
    /// The URLs may also come from flags or the environment, which take precedence.
    Postgres {
        /// The PostgreSQL URL (may hold a password: never logged).
        database_url: Option<String>,
        /// The NATS URL.
        nats_url: Option<String>,
    },
}

/// A table with a primary key, partitioned by a date column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The table name (a validated SQL identifier).
    pub name: String,
    /// The primary-key columns (validated SQL identifiers), never empty.
    pub primary_key: Vec<String>,
    /// The date column that partitions the table.
    pub partition_column: String,
}

/// An upstream job: outside baton, landing a table by an expected time of day.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamJob {
    /// The job's name.
    pub name: String,
    /// The tables it lands.
    pub tables: Vec<String>,
    /// When it is expected to have landed, in the pipeline's time zone.
    pub expected: jiff::civil::Time,
    /// How late it may land before it counts as late.
    pub tolerance: SignedDuration,
    /// Days after the partition's date on which it is expected (1: the morning after, as a
    /// box score of last night's games).
    pub day_offset: i32,
    /// The table whose rows for a date say the job runs that day; on a date without rows
    /// there no landing is expected (not late, not missing).
    pub calendar: Option<String>,
}

/// What a processor does when an upstream job it reads has not landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingInput {
    /// Defer the run until the input lands (or the wait deadline passes: then fail).
    Wait,
    /// Run on what is there, mark the run partial, and rerun when the input lands.
    Partial,
}

/// The bounds an external processor's command runs within: past any of them its process
/// group is killed and the run fails, naming the processor and the limit, writing nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalLimits {
    /// How long the command may run (`timeout_secs`).
    pub timeout: SignedDuration,
    /// Bytes of stdout it may print (`stdout_bytes_max`): output is parsed as it arrives,
    /// so memory stays bounded by this and `rows_max`.
    pub stdout_bytes_max: u64,
    /// Rows it may print (`rows_max`).
    pub rows_max: u64,
    /// The tail of stderr kept for the error message (`stderr_bytes_max`); the rest is
    /// read and dropped.
    pub stderr_bytes_max: u64,
}

impl Default for ExternalLimits {
    fn default() -> Self {
        Self {
            timeout: SignedDuration::from_secs(3600),
            stdout_bytes_max: 256 * 1024 * 1024,
            rows_max: 5_000_000,
            stderr_bytes_max: 64 * 1024,
        }
    }
}

/// A processor: writes one table for a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Processor {
    /// Its name.
    pub name: ProcessorName,
    /// The phase it belongs to.
    pub phase: u32,
    /// The table it writes.
    pub table: TableSpec,
    /// The tables it reads.
    pub inputs: Vec<String>,
    /// How many days of input history before the partition it reads (0: the date only).
    pub history_days: u32,
    /// Upstream jobs whose landing for the partition it waits for.
    pub upstream: Vec<String>,
    /// Processors of the same phase whose success for the partition it waits for.
    pub depends_on: Vec<ProcessorName>,
    /// An external command printing rows as JSON Lines; `None` for a built-in processor.
    pub command: Option<Vec<String>>,
    /// The bounds an external command runs within (defaults for a built-in processor,
    /// which does not use them).
    pub limits: ExternalLimits,
    /// What to do when an upstream input has not landed.
    pub on_missing_input: MissingInput,
    /// With `Wait`: how long after the latest expected landing to keep waiting before the
    /// run fails; `None` waits indefinitely.
    pub wait_deadline: Option<SignedDuration>,
    /// Columns that change on every run without the data changing (e.g. `processed_at`):
    /// left out of the output digest, so an identical rerun triggers nothing.
    pub volatile_columns: Vec<String>,
    /// The table whose rows for a date say the processor has work (e.g. `nbac_schedule`):
    /// a `no_data` completion counts only on a date without rows there.
    pub calendar: Option<String>,
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Its name.
    pub name: String,
    /// The time zone its dates and schedules are in.
    pub timezone: TimeZone,
    /// The time zone's IANA name.
    pub timezone_name: String,
    /// The storage backend.
    pub backend: Backend,
    /// How long `run` keeps retrying a backend that is unavailable at its start (refused,
    /// starting up, out of connections) before it fails; zero fails at once.
    pub start_retry: SignedDuration,
    /// A lease's lifetime.
    pub lease_ttl: SignedDuration,
    /// How long `run` waits for a held lease before coalescing.
    pub lease_wait: SignedDuration,
    /// How long a delivery may stay unacked before it is delivered again.
    pub ack_wait: SignedDuration,
    /// Deliveries of one message before it goes to the dead-letter queue.
    pub max_deliveries: u32,
    /// Upstream jobs.
    pub upstream: Vec<UpstreamJob>,
    /// Every table: raw tables and the processors' outputs.
    pub tables: Vec<TableSpec>,
    /// Processors in dependency order (a processor after those it depends on).
    pub processors: Vec<Processor>,
    /// Gates.
    pub gates: Vec<Gate>,
    /// The HTTP API's settings.
    pub api: ApiConfig,
    /// Where alerts are sent.
    pub notifiers: Vec<NotifierSpec>,
    /// Alert policies.
    pub alerts: Vec<AlertPolicy>,
    /// Schedules: runs started by a cron time rather than a landing.
    pub schedules: Vec<Schedule>,
    /// The report sent to the notifiers, and the periodic reconcile's window.
    pub report: ReportConfig,
    /// What history `serve` and `baton prune` remove, and how often `serve` does.
    pub retention: RetentionConfig,
    /// The topic upstream jobs announce landings on (the original pipeline's Phase 2
    /// completions); `serve` records each as a landing.
    pub raw_landings_topic: String,
}

impl Pipeline {
    /// The built-in reference pipeline.
    pub fn reference() -> Result<Self, Error> {
        Self::from_toml(REFERENCE_TOML)
    }

    /// Parses and validates a config.
    pub fn from_toml(source: &str) -> Result<Self, Error> {
        let raw: RawConfig = toml::from_str(source).map_err(|e| parse_error(source, e))?;
        Validator { source }.validate(raw)
    }

    /// The processor with this name.
    pub fn processor(&self, name: &str) -> Option<&Processor> {
        self.processors.iter().find(|p| p.name.as_str() == name)
    }
    /// The processor that writes this table.
    pub fn processor_for_table(&self, table: &str) -> Option<&Processor> {
        self.processors.iter().find(|p| p.table.name == table)
    }
    /// The table with this name.
    pub fn table(&self, name: &str) -> Option<&TableSpec> {
        self.tables.iter().find(|t| t.name == name)
    }
    /// The gate with this name.
    pub fn gate(&self, id: &str) -> Option<&Gate> {
        self.gates.iter().find(|g| g.id.as_str() == id)
    }
    /// The gate a processor's completions go to (the first that expects it).
    pub fn gate_for_processor(&self, processor: &ProcessorName) -> Option<&Gate> {
        self.gates.iter().find(|g| g.watches(processor))
    }
    /// The topic a processor publishes its completions on.
    pub fn completion_topic(&self, processor: &Processor) -> String {
        self.gate_for_processor(&processor.name)
            .map(|g| g.completion_topic.clone())
            .unwrap_or_else(|| format!("phase{}-completions", processor.phase))
    }
    /// The processors of a phase, in dependency order.
    pub fn phase(&self, phase: u32) -> impl Iterator<Item = &Processor> {
        self.processors.iter().filter(move |p| p.phase == phase)
    }
    /// The quality checks of `gate` that apply to `partition` at `now`: a check on a table
    /// written by a processor the mode does not expect (e.g. same-day) is skipped.
    pub fn checks_for<'a>(
        &'a self,
        gate: &'a Gate,
        partition: crate::model::Partition,
        now: jiff::Timestamp,
    ) -> Vec<&'a QualityCheck> {
        let (_, policy) = gate.policy_for(partition, now);
        gate.checks
            .iter()
            .filter(|c| match self.processor_for_table(&c.table) {
                Some(p) => policy.expected.contains(&p.name),
                None => true,
            })
            .collect()
    }

    /// The upstream job with this name.
    pub fn upstream_job(&self, name: &str) -> Option<&UpstreamJob> {
        self.upstream.iter().find(|u| u.name == name)
    }
    /// The processors a landing of upstream job `job` concerns (its readers): those that
    /// wait for the job, or read one of the tables it lands. Empty for an unknown job.
    pub fn readers_of(&self, job: &str) -> Vec<&Processor> {
        let Some(up) = self.upstream_job(job) else {
            return Vec::new();
        };
        self.processors
            .iter()
            .filter(|p| {
                p.upstream.iter().any(|u| u == job)
                    || p.inputs.iter().any(|t| up.tables.contains(t))
            })
            .collect()
    }
    /// The processors of the same phase that depend on `processor` (rerun after its output
    /// changes: their output was computed from the old one).
    pub fn dependents_of(&self, processor: &ProcessorName) -> Vec<&Processor> {
        self.processors
            .iter()
            .filter(|p| p.depends_on.contains(processor))
            .collect()
    }
}

/// The 1-based line of a byte offset.
/// A TOML error (syntax, or a value of the wrong type) with the key it concerns as a path
/// (`processors[5].phase`): the parser gives the keys without array indices, so each
/// array of tables gets its index from the `[[...]]` headers before the error.
fn parse_error(source: &str, mut e: toml::de::Error) -> Error {
    let offset = e.span().map(|s| s.start);
    let message = e.message().to_owned();
    // Without the input, the error's text is the message and then `in `a.b`` (the keys).
    e.set_input(None);
    let text = e.to_string();
    let keys: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
        .map(|k| k.split('.').collect())
        .unwrap_or_default();
    let mut key = key_path(source, &keys, offset.unwrap_or(source.len()));
    // An unknown field is named in the message; it is the key at fault.
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next())
    {
        key = if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        };
    }
    Error {
        key: if key.is_empty() {
            "(document)".to_owned()
        } else {
            key
        },
        line: offset.map(|o| line_of(source, o)),
        message,
    }
}

/// `keys` as a path, each array of tables (`[[a.b]]` header) indexed by how many of its
/// headers come before `offset` since its parent's last header.
fn key_path(source: &str, keys: &[&str], offset: usize) -> String {
    let before = &source[..offset.min(source.len())];
    let headers: Vec<&str> = before
        .lines()
        .filter_map(|l| {
            let l = l.split('#').next().unwrap_or("").trim();
            l.strip_prefix("[[")?.strip_suffix("]]").map(str::trim)
        })
        .collect();
    let mut path = String::new();
    for k in 1..=keys.len() {
        let prefix = keys[..k].join(".");
        let parent = keys[..k - 1].join(".");
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(keys[k - 1]);
        if !headers.contains(&prefix.as_str()) {
            continue;
        }
        let since_parent = headers
            .iter()
            .rposition(|h| k > 1 && *h == parent)
            .map_or(0, |i| i + 1);
        let count = headers[since_parent..]
            .iter()
            .filter(|h| **h == prefix)
            .count();
        path.push_str(&format!("[{}]", count.saturating_sub(1)));
    }
    path
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    pipeline: RawPipeline,
    #[serde(default)]
    backend: Option<RawBackend>,
    #[serde(default)]
    lease: Option<RawLease>,
    #[serde(default)]
    bus: Option<RawBus>,
    #[serde(default)]
    upstream: Vec<RawUpstream>,
    #[serde(default)]
    tables: Vec<RawTable>,
    #[serde(default)]
    processors: Vec<RawProcessor>,
    #[serde(default)]
    gates: Vec<RawGate>,
    #[serde(default)]
    api: Option<RawApi>,
    #[serde(default)]
    notifiers: Vec<RawNotifier>,
    #[serde(default)]
    alerts: Vec<RawAlert>,
    #[serde(default)]
    schedules: Vec<RawSchedule>,
    #[serde(default)]
    report: Option<RawReport>,
    #[serde(default)]
    retention: Option<RawRetention>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    #[serde(default)]
    keep_runs: Option<Spanned<i64>>,
    #[serde(default)]
    older_than_days: Option<Spanned<i64>>,
    #[serde(default)]
    batch: Option<Spanned<i64>>,
    #[serde(default)]
    every_mins: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    #[serde(default)]
    schedule: Option<Spanned<String>>,
    #[serde(default)]
    days: Option<Spanned<i64>>,
    #[serde(default)]
    reconcile_days: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    name: Spanned<String>,
    cron: Spanned<String>,
    processors: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    date: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    token_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotifier {
    name: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    url_env: Option<Spanned<String>>,
    #[serde(default)]
    url_file: Option<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    name: Spanned<String>,
    watch: Spanned<String>,
    #[serde(default)]
    window_mins: Option<Spanned<i64>>,
    threshold: Spanned<f64>,
    #[serde(default)]
    quiet_mins: Option<Spanned<i64>>,
    #[serde(default)]
    notify: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: Spanned<String>,
    timezone: Spanned<String>,
    #[serde(default)]
    raw_landings_topic: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    kind: Spanned<String>,
    #[serde(default)]
    synchronous: Option<Spanned<String>>,
    #[serde(default)]
    database_url: Option<Spanned<String>>,
    #[serde(default)]
    nats_url: Option<Spanned<String>>,
    #[serde(default)]
    start_retry_secs: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLease {
    #[serde(default)]
    ttl_secs: Option<Spanned<i64>>,
    #[serde(default)]
    wait_secs: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBus {
    #[serde(default)]
    ack_wait_secs: Option<Spanned<i64>>,
    #[serde(default)]
    max_deliveries: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: Spanned<String>,
    table: Spanned<String>,
    #[serde(default)]
    also_lands: Vec<Spanned<String>>,
    expected: Spanned<String>,
    tolerance_mins: Spanned<i64>,
    #[serde(default)]
    expected_day_offset: Option<Spanned<i64>>,
    #[serde(default)]
    calendar: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: Spanned<String>,
    primary_key: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    partition_column: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcessor {
    name: Spanned<String>,
    phase: Spanned<i64>,
    table: Spanned<String>,
    primary_key: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    partition_column: Option<Spanned<String>>,
    #[serde(default)]
    inputs: Vec<Spanned<String>>,
    #[serde(default)]
    history_days: Option<Spanned<i64>>,
    #[serde(default)]
    upstream: Vec<Spanned<String>>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    on_missing_input: Option<Spanned<String>>,
    #[serde(default)]
    wait_deadline_mins: Option<Spanned<i64>>,
    #[serde(default)]
    timeout_secs: Option<Spanned<i64>>,
    #[serde(default)]
    stdout_bytes_max: Option<Spanned<i64>>,
    #[serde(default)]
    rows_max: Option<Spanned<i64>>,
    #[serde(default)]
    stderr_bytes_max: Option<Spanned<i64>>,
    #[serde(default)]
    volatile_columns: Vec<Spanned<String>>,
    #[serde(default)]
    calendar: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    name: Spanned<String>,
    completion_topic: Spanned<String>,
    trigger_topic: Spanned<String>,
    next_phase: Spanned<i64>,
    overnight: RawMode,
    #[serde(default)]
    same_day: Option<RawMode>,
    #[serde(default)]
    checks: Vec<RawCheck>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: Spanned<String>,
    kind: Spanned<String>,
    table: Spanned<String>,
    #[serde(default)]
    column: Option<Spanned<String>>,
    #[serde(default)]
    min_rows: Option<Spanned<i64>>,
    #[serde(default)]
    min_percent: Option<Spanned<f64>>,
    #[serde(default)]
    warn_below_percent: Option<Spanned<f64>>,
    #[serde(default)]
    reference_table: Option<Spanned<String>>,
    #[serde(default)]
    reference_column: Option<Spanned<String>>,
    #[serde(default)]
    only_when_rows_in: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMode {
    expected: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    critical: Vec<Spanned<String>>,
    rules: Spanned<Vec<Spanned<String>>>,
}

/// Whether `name` is safe to splice into SQL as an identifier: ASCII letters, digits and
/// underscores, not starting with a digit, at most 63 bytes (PostgreSQL's limit), and not
/// a reserved word.
pub fn is_sql_identifier(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "all",
        "and",
        "as",
        "by",
        "case",
        "check",
        "column",
        "constraint",
        "create",
        "default",
        "delete",
        "distinct",
        "drop",
        "else",
        "end",
        "from",
        "grant",
        "group",
        "having",
        "in",
        "index",
        "insert",
        "into",
        "is",
        "join",
        "key",
        "limit",
        "not",
        "null",
        "on",
        "or",
        "order",
        "primary",
        "references",
        "select",
        "set",
        "table",
        "then",
        "to",
        "union",
        "unique",
        "update",
        "user",
        "using",
        "values",
        "when",
        "where",
        "with",
    ];
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&name.to_ascii_lowercase().as_str())
}

/// The relation names claimed so far, folded ([`names::folded`]), with what claimed each.
type Claimed = BTreeMap<String, String>;

struct Validator<'a> {
    source: &'a str,
}

impl Validator<'_> {
    fn err<T>(
        &self,
        key: impl Into<String>,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Result<T, Error> {
        Err(Error {
            key: key.into(),
            line: Some(line_of(self.source, span.start)),
            message: message.into(),
        })
    }

    fn ident(&self, key: &str, value: &Spanned<String>) -> Result<String, Error> {
        if is_sql_identifier(value.get_ref()) {
            Ok(value.get_ref().clone())
        } else {
            self.err(
                key,
                value.span(),
                format!(
                    "`{}` is not a valid SQL identifier (letters, digits and _, not starting with a digit, at most 63 characters, not a reserved word)",
                    value.get_ref()
                ),
            )
        }
    }

    fn positive(&self, key: &str, value: &Spanned<i64>, max: i64) -> Result<i64, Error> {
        let v = *value.get_ref();
        if v < 1 || v > max {
            return self.err(
                key,
                value.span(),
                format!("must be between 1 and {max}, got {v}"),
            );
        }
        Ok(v)
    }

    fn primary_key(
        &self,
        key: &str,
        pk: &Spanned<Vec<Spanned<String>>>,
    ) -> Result<Vec<String>, Error> {
        if pk.get_ref().is_empty() {
            return self.err(key, pk.span(), "a primary key needs at least one column");
        }
        let mut out: Vec<String> = Vec::new();
        for (i, col) in pk.get_ref().iter().enumerate() {
            let name = self.ident(&format!("{key}[{i}]"), col)?;
            if let Some(why) = names::reserved_column(&name) {
                return self.err(
                    format!("{key}[{i}]"),
                    col.span(),
                    format!("{why}; rename the column"),
                );
            }
            if let Some(other) = out
                .iter()
                .find(|o| names::folded(o) == names::folded(&name))
                .filter(|o| **o != name)
            {
                return self.err(
                    format!("{key}[{i}]"),
                    col.span(),
                    format!("column `{name}` is the same column as `{other}` (column names are compared without case)"),
                );
            }
            if out.contains(&name) {
                return self.err(
                    format!("{key}[{i}]"),
                    col.span(),
                    format!("column `{name}` appears twice"),
                );
            }
            out.push(name);
        }
        Ok(out)
    }

    /// Validates the sections in the order they are written, so that the first error a
    /// config has is the one reported; each section only sees what the sections before
    /// it made known (upstream jobs see the raw tables, processors' references see every
    /// name).
    fn validate(&self, raw: RawConfig) -> Result<Pipeline, Error> {
        let (name, timezone, timezone_name, raw_landings_topic) =
            self.pipeline_section(&raw.pipeline)?;
        let backend = self.backend(raw.backend.as_ref())?;
        let start_retry = self.start_retry(raw.backend.as_ref())?;
        let (lease_ttl, lease_wait) = self.lease(raw.lease.as_ref())?;
        let (ack_wait, max_deliveries) = self.bus(raw.bus.as_ref())?;

        // Tables: raw tables first, then each processor's output. `declared` holds every
        // table name seen so far, so that no two writers share a table.
        // `claimed` holds every relation name they create, folded as the backends compare them.
        let mut declared: BTreeSet<String> = BTreeSet::new();
        let mut claimed = Claimed::new();
        let mut tables = self.tables(&raw.tables, &mut declared, &mut claimed)?;
        let upstream = self.upstream(&raw.upstream, &declared)?;
        let mut processors = self.processors(&raw.processors, &mut declared, &mut claimed)?;
        tables.extend(processors.iter().map(|p| p.table.clone()));
        // References, now that every name is known.
        self.references(&mut processors, &raw.processors, &upstream, &declared)?;
        let processors = self.topological(processors, &raw.processors)?;
        let gates = self.gates(
            &raw.gates,
            &processors,
            &tables,
            &timezone,
            &raw_landings_topic,
        )?;

        let api = self.api(raw.api.as_ref())?;
        let notifiers = self.notifiers(&raw.notifiers)?;
        let alerts = self.alerts(&raw.alerts, &notifiers)?;
        let schedules = self.schedules(&raw.schedules, &processors)?;
        let report = self.report(raw.report.as_ref())?;
        let retention = self.retention(raw.retention.as_ref())?;
        Ok(Pipeline {
            name,
            timezone,
            timezone_name,
            backend,
            start_retry,
            lease_ttl,
            lease_wait,
            ack_wait,
            max_deliveries,
            upstream,
            tables,
            processors,
            gates,
            api,
            notifiers,
            alerts,
            schedules,
            report,
            retention,
            raw_landings_topic,
        })
    }

    /// `[retention]`: runs kept per (processor, date), a window of at least the longest
    /// alert window (so no alert's figure loses a row), a batch size and `serve`'s interval.
    fn retention(&self, raw: Option<&RawRetention>) -> Result<RetentionConfig, Error> {
        let mut out = RetentionConfig::default();
        let Some(raw) = raw else {
            return Ok(out);
        };
        if let Some(v) = &raw.keep_runs {
            out.policy.keep_runs = self.positive("retention.keep_runs", v, 100_000)? as u32;
        }
        if let Some(v) = &raw.older_than_days {
            let days = *v.get_ref();
            if !(retention::MIN_OLDER_THAN_DAYS..=3_650).contains(&days) {
                return self.err(
                    "retention.older_than_days",
                    v.span(),
                    format!(
                        "must be between {} (the longest alert window) and 3650, got {days}",
                        retention::MIN_OLDER_THAN_DAYS
                    ),
                );
            }
            out.policy.older_than = SignedDuration::from_hours(24 * days);
        }
        if let Some(v) = &raw.batch {
            out.policy.batch = self.positive("retention.batch", v, 100_000)? as u32;
        }
        if let Some(v) = &raw.every_mins {
            out.every =
                SignedDuration::from_mins(self.positive("retention.every_mins", v, 10_080)?);
        }
        Ok(out)
    }

    /// `[report]`: a five-field cron schedule and two windows of at most a year.
    fn report(&self, raw: Option<&RawReport>) -> Result<ReportConfig, Error> {
        let mut report = ReportConfig::default();
        let Some(raw) = raw else {
            return Ok(report);
        };
        if let Some(s) = &raw.schedule {
            report.schedule = CronExpr::parse(s.get_ref())
                .or_else(|e| self.err("report.schedule", s.span(), e))?;
        }
        if let Some(d) = &raw.days {
            report.days = self.positive("report.days", d, 366)? as u32;
        }
        if let Some(d) = &raw.reconcile_days {
            report.reconcile_days = self.positive("report.reconcile_days", d, 366)? as u32;
        }
        Ok(report)
    }

    /// `[pipeline]`: the name, the time zone, the time zone's name and the raw-landings
    /// topic (default [`DEFAULT_RAW_LANDINGS_TOPIC`]).
    fn pipeline_section(
        &self,
        raw: &RawPipeline,
    ) -> Result<(String, TimeZone, String, String), Error> {
        let name = raw.name.get_ref().trim().to_owned();
        if name.is_empty() {
            return self.err("pipeline.name", raw.name.span(), "must not be empty");
        }
        let tz_name = raw.timezone.get_ref().clone();
        let timezone = TimeZone::get(&tz_name).or_else(|e| {
            self.err(
                "pipeline.timezone",
                raw.timezone.span(),
                format!("unknown time zone `{tz_name}`: {e}"),
            )
        })?;
        let topic = match &raw.raw_landings_topic {
            Some(t) => {
                self.topic("pipeline.raw_landings_topic", t)?;
                t.get_ref().clone()
            }
            None => DEFAULT_RAW_LANDINGS_TOPIC.to_owned(),
        };
        Ok((name, timezone, tz_name, topic))
    }

    /// `[backend]`: SQLite (the default, fsynced) or PostgreSQL with NATS.
    fn backend(&self, raw: Option<&RawBackend>) -> Result<Backend, Error> {
        let mut backend = Backend::Sqlite {
            synchronous_full: true,
        };
        let Some(b) = raw else {
            return Ok(backend);
        };
        match b.kind.get_ref().as_str() {
            "sqlite" => {}
            "postgres" => backend = self.postgres(b)?,
            other => {
                return self.err(
                    "backend.kind",
                    b.kind.span(),
                    format!("unknown backend `{other}` (expected \"sqlite\" or \"postgres\")"),
                );
            }
        }
        if let Some(sync) = &b.synchronous {
            let full = match sync.get_ref().as_str() {
                "full" => true,
                "normal" => false,
                other => {
                    return self.err(
                        "backend.synchronous",
                        sync.span(),
                        format!("`{other}` is not \"full\" or \"normal\""),
                    );
                }
            };
            backend = Backend::Sqlite {
                synchronous_full: full,
            };
        }
        Ok(backend)
    }

    /// `[backend] start_retry_secs`: how long a run retries an unavailable backend at its
    /// start (default [`DEFAULT_START_RETRY_SECS`]; 0 turns it off).
    fn start_retry(&self, raw: Option<&RawBackend>) -> Result<SignedDuration, Error> {
        match raw.and_then(|b| b.start_retry_secs.as_ref()) {
            None => Ok(SignedDuration::from_secs(DEFAULT_START_RETRY_SECS)),
            Some(v) if *v.get_ref() == 0 => Ok(SignedDuration::ZERO),
            Some(v) => Ok(SignedDuration::from_secs(self.positive(
                "backend.start_retry_secs",
                v,
                3_600,
            )?)),
        }
    }

    /// `[backend]` with `kind = "postgres"`: the URLs, each of its own scheme.
    fn postgres(&self, b: &RawBackend) -> Result<Backend, Error> {
        if let Some(s) = &b.synchronous {
            return self.err(
                "backend.synchronous",
                s.span(),
                "`synchronous` applies to the sqlite backend only",
            );
        }
        for (key, url, scheme) in [
            ("backend.database_url", &b.database_url, "postgres"),
            ("backend.nats_url", &b.nats_url, "nats"),
        ] {
            if let Some(u) = url
                && !u.get_ref().starts_with(scheme)
            {
                return self.err(key, u.span(), format!("expected a {scheme}:// URL"));
            }
        }
        Ok(Backend::Postgres {
            database_url: b.database_url.as_ref().map(|u| u.get_ref().clone()),
            nats_url: b.nats_url.as_ref().map(|u| u.get_ref().clone()),
        })
    }

    /// `[lease]`: the lease's lifetime and how long `run` waits for a held lease.
    fn lease(&self, raw: Option<&RawLease>) -> Result<(SignedDuration, SignedDuration), Error> {
        let mut lease_ttl = SignedDuration::from_secs(600);
        let mut lease_wait = SignedDuration::ZERO;
        if let Some(l) = raw {
            if let Some(ttl) = &l.ttl_secs {
                lease_ttl =
                    SignedDuration::from_secs(self.positive("lease.ttl_secs", ttl, 86_400)?);
                if *ttl.get_ref() < 3 {
                    return self.err(
                        "lease.ttl_secs",
                        ttl.span(),
                        "must be at least 3 (it is renewed every third)",
                    );
                }
            }
            if let Some(w) = &l.wait_secs
                && *w.get_ref() != 0
            {
                lease_wait =
                    SignedDuration::from_secs(self.positive("lease.wait_secs", w, 86_400)?);
            }
        }
        Ok((lease_ttl, lease_wait))
    }

    /// `[bus]`: the ack wait and the deliveries before the dead-letter queue.
    fn bus(&self, raw: Option<&RawBus>) -> Result<(SignedDuration, u32), Error> {
        let mut ack_wait = SignedDuration::from_secs(30);
        let mut max_deliveries = 5;
        if let Some(b) = raw {
            if let Some(a) = &b.ack_wait_secs {
                ack_wait =
                    SignedDuration::from_secs(self.positive("bus.ack_wait_secs", a, 86_400)?);
            }
            if let Some(m) = &b.max_deliveries {
                max_deliveries = self.positive("bus.max_deliveries", m, 1000)? as u32;
            }
        }
        Ok((ack_wait, max_deliveries))
    }

    /// A table's partition column, `game_date` unless given.
    fn partition_column(&self, key: &str, raw: &Option<Spanned<String>>) -> Result<String, Error> {
        match raw {
            Some(c) => self.ident(&format!("{key}.partition_column"), c),
            None => Ok("game_date".to_owned()),
        }
    }

    /// `[[tables]]`: the raw tables, each added to `declared`.
    fn tables(
        &self,
        raw: &[RawTable],
        declared: &mut BTreeSet<String>,
        claimed: &mut Claimed,
    ) -> Result<Vec<TableSpec>, Error> {
        let mut tables = Vec::new();
        for (i, t) in raw.iter().enumerate() {
            let key = format!("tables[{i}]");
            let name = self.ident(&format!("{key}.name"), &t.name)?;
            if !declared.insert(name.clone()) {
                return self.err(
                    format!("{key}.name"),
                    t.name.span(),
                    format!("table `{name}` is declared twice"),
                );
            }
            self.claim_table(&format!("{key}.name"), &t.name, claimed)?;
            let primary_key = self.primary_key(&format!("{key}.primary_key"), &t.primary_key)?;
            let partition_column = self.partition_column(&key, &t.partition_column)?;
            tables.push(TableSpec {
                name,
                primary_key,
                partition_column,
            });
        }
        Ok(tables)
    }

    /// Claims a table's name and its partition index's name: neither may be baton's own,
    /// nor the same relation on some backend as a table or index already claimed.
    fn claim_table(
        &self,
        key: &str,
        name: &Spanned<String>,
        claimed: &mut Claimed,
    ) -> Result<(), Error> {
        let table = name.get_ref();
        if let Some(why) = names::reserved_table(table) {
            return self.err(key, name.span(), format!("{why}; pick another table name"));
        }
        let index = names::partition_index(table);
        for relation in [table, &index] {
            if let Some(other) = claimed.get(&names::folded(relation)) {
                return self.err(
                    key,
                    name.span(),
                    format!("table `{table}` would be the same relation as {other} in the database (SQLite compares names without case, PostgreSQL cuts them at {} bytes); pick another table name", names::MAX_IDENTIFIER_BYTES),
                );
            }
        }
        claimed.insert(names::folded(table), format!("table `{table}`"));
        claimed.insert(
            names::folded(&index),
            format!("`{index}` (the partition index of table `{table}`)"),
        );
        Ok(())
    }

    /// `[[upstream]]`: the jobs outside baton; each lands tables declared under [[tables]].
    fn upstream(
        &self,
        raw: &[RawUpstream],
        declared: &BTreeSet<String>,
    ) -> Result<Vec<UpstreamJob>, Error> {
        let mut upstream: Vec<UpstreamJob> = Vec::new();
        for (i, u) in raw.iter().enumerate() {
            let key = format!("upstream[{i}]");
            let job = u.name.get_ref().trim().to_owned();
            if job.is_empty() {
                return self.err(format!("{key}.name"), u.name.span(), "must not be empty");
            }
            if upstream.iter().any(|j| j.name == job) {
                return self.err(
                    format!("{key}.name"),
                    u.name.span(),
                    format!("upstream job `{job}` is declared twice"),
                );
            }
            let tables = self.landed_tables(&key, u, declared)?;
            let mut job = self.upstream_timing(&key, u, job, tables)?;
            job.calendar = self.calendar(&key, &u.calendar, declared)?;
            upstream.push(job);
        }
        Ok(upstream)
    }

    /// The tables an upstream job lands: `table`, then `also_lands`, each declared.
    fn landed_tables(
        &self,
        key: &str,
        u: &RawUpstream,
        declared: &BTreeSet<String>,
    ) -> Result<Vec<String>, Error> {
        let mut landed = vec![self.ident(&format!("{key}.table"), &u.table)?];
        for (j, t) in u.also_lands.iter().enumerate() {
            landed.push(self.ident(&format!("{key}.also_lands[{j}]"), t)?);
        }
        for (j, t) in landed.iter().enumerate() {
            if !declared.contains(t) {
                let span = if j == 0 {
                    u.table.span()
                } else {
                    u.also_lands[j - 1].span()
                };
                // The key is `table` even for an `also_lands` entry, as it always was.
                return self.err(
                    format!("{key}.table"),
                    span,
                    format!("table `{t}` is not declared under [[tables]]"),
                );
            }
        }
        Ok(landed)
    }

    /// An upstream job's expected time, tolerance and day offset.
    fn upstream_timing(
        &self,
        key: &str,
        u: &RawUpstream,
        name: String,
        tables: Vec<String>,
    ) -> Result<UpstreamJob, Error> {
        let expected = u
            .expected
            .get_ref()
            .parse::<jiff::civil::Time>()
            .or_else(|e| {
                self.err(
                    format!("{key}.expected"),
                    u.expected.span(),
                    format!(
                        "`{}` is not a time of day like \"06:00\": {e}",
                        u.expected.get_ref()
                    ),
                )
            })?;
        let tolerance = SignedDuration::from_mins(self.positive(
            &format!("{key}.tolerance_mins"),
            &u.tolerance_mins,
            24 * 60,
        )?);
        let day_offset = match &u.expected_day_offset {
            Some(o) if (0..=7).contains(o.get_ref()) => *o.get_ref() as i32,
            Some(o) => {
                return self.err(
                    format!("{key}.expected_day_offset"),
                    o.span(),
                    format!("must be between 0 and 7 days, got {}", o.get_ref()),
                );
            }
            None => 0,
        };
        Ok(UpstreamJob {
            name,
            tables,
            expected,
            tolerance,
            day_offset,
            calendar: None,
        })
    }

    /// `[[processors]]`, without their references (inputs, upstream, depends_on), which
    /// need every processor's name and table first; each output table goes in `declared`.
    fn processors(
        &self,
        raw: &[RawProcessor],
        declared: &mut BTreeSet<String>,
        claimed: &mut Claimed,
    ) -> Result<Vec<Processor>, Error> {
        let mut processors: Vec<Processor> = Vec::new();
        for (i, p) in raw.iter().enumerate() {
            let key = format!("processors[{i}]");
            let pname = p.name.get_ref().clone();
            if !is_sql_identifier(&pname) {
                return self.err(format!("{key}.name"), p.name.span(), format!("`{pname}` is not a valid processor name (a lower-case identifier like player_game_summary)"));
            }
            if processors.iter().any(|q| q.name.as_str() == pname) {
                return self.err(
                    format!("{key}.name"),
                    p.name.span(),
                    format!("processor `{pname}` is declared twice"),
                );
            }
            let phase = self.positive(&format!("{key}.phase"), &p.phase, 100)? as u32;
            let table = self.output_table(&key, p, declared, claimed)?;
            processors.push(self.processor_settings(&key, p, pname, phase, table)?);
        }
        Ok(processors)
    }

    /// The table a processor writes: a new name (added to `declared`) with its key.
    fn output_table(
        &self,
        key: &str,
        p: &RawProcessor,
        declared: &mut BTreeSet<String>,
        claimed: &mut Claimed,
    ) -> Result<TableSpec, Error> {
        let name = self.ident(&format!("{key}.table"), &p.table)?;
        if !declared.insert(name.clone()) {
            return self.err(format!("{key}.table"), p.table.span(), format!("table `{name}` is already written by another processor or declared under [[tables]]"));
        }
        self.claim_table(&format!("{key}.table"), &p.table, claimed)?;
        let primary_key = self.primary_key(&format!("{key}.primary_key"), &p.primary_key)?;
        let partition_column = self.partition_column(key, &p.partition_column)?;
        Ok(TableSpec {
            name,
            primary_key,
            partition_column,
        })
    }

    /// A processor's run settings: history, command, missing-input policy, wait deadline.
    fn processor_settings(
        &self,
        key: &str,
        p: &RawProcessor,
        name: String,
        phase: u32,
        table: TableSpec,
    ) -> Result<Processor, Error> {
        let history_days = match &p.history_days {
            Some(h) if *h.get_ref() == 0 => 0,
            Some(h) => self.positive(&format!("{key}.history_days"), h, 3660)? as u32,
            None => 0,
        };
        let command = match &p.command {
            Some(c) if c.get_ref().is_empty() => {
                return self.err(
                    format!("{key}.command"),
                    c.span(),
                    "a command needs at least the program",
                );
            }
            Some(c) => Some(c.get_ref().clone()),
            None => None,
        };
        let on_missing_input = match &p.on_missing_input {
            None => MissingInput::Wait,
            Some(v) => match v.get_ref().as_str() {
                "wait" => MissingInput::Wait,
                "partial" => MissingInput::Partial,
                other => {
                    return self.err(
                        format!("{key}.on_missing_input"),
                        v.span(),
                        format!("`{other}` is not \"wait\" or \"partial\""),
                    );
                }
            },
        };
        let wait_deadline = match &p.wait_deadline_mins {
            Some(m) => Some(SignedDuration::from_mins(self.positive(
                &format!("{key}.wait_deadline_mins"),
                m,
                7 * 24 * 60,
            )?)),
            None => None,
        };
        let limits = self.external_limits(key, p)?;
        let mut volatile_columns = Vec::new();
        for (j, c) in p.volatile_columns.iter().enumerate() {
            volatile_columns.push(self.ident(&format!("{key}.volatile_columns[{j}]"), c)?);
        }
        Ok(Processor {
            name: ProcessorName::new(name),
            phase,
            table,
            inputs: Vec::new(),
            history_days,
            upstream: Vec::new(),
            depends_on: Vec::new(),
            command,
            limits,
            on_missing_input,
            wait_deadline,
            volatile_columns,
            calendar: None,
        })
    }

    /// An external processor's timeout and output limits, each defaulted and bounded; set
    /// on a built-in processor they are an error (they would silently do nothing).
    fn external_limits(&self, key: &str, p: &RawProcessor) -> Result<ExternalLimits, Error> {
        let mut limits = ExternalLimits::default();
        let fields = [
            ("timeout_secs", &p.timeout_secs, 7 * 24 * 3600),
            ("stdout_bytes_max", &p.stdout_bytes_max, 1 << 40),
            ("rows_max", &p.rows_max, 1_000_000_000),
            ("stderr_bytes_max", &p.stderr_bytes_max, 16 << 20),
        ];
        for (name, value, max) in fields {
            let Some(value) = value else { continue };
            let full = format!("{key}.{name}");
            if p.command.is_none() {
                return self.err(
                    full,
                    value.span(),
                    "only an external processor (one with a `command`) has this limit",
                );
            }
            let v = self.positive(&full, value, max)?;
            match name {
                "timeout_secs" => limits.timeout = SignedDuration::from_secs(v),
                "stdout_bytes_max" => limits.stdout_bytes_max = v as u64,
                "rows_max" => limits.rows_max = v as u64,
                _ => limits.stderr_bytes_max = v as u64,
            }
        }
        Ok(limits)
    }

    /// Resolves each processor's inputs, upstream jobs and dependencies, in the order of
    /// `raw` (which `processors` is still in).
    fn references(
        &self,
        processors: &mut [Processor],
        raw: &[RawProcessor],
        upstream: &[UpstreamJob],
        declared: &BTreeSet<String>,
    ) -> Result<(), Error> {
        for (i, p) in raw.iter().enumerate() {
            let key = format!("processors[{i}]");
            let inputs = self.inputs(&key, p, declared)?;
            let ups = self.upstream_refs(&key, p, upstream)?;
            let deps = self.depends_on(&key, p, processors, processors[i].phase)?;
            processors[i].inputs = inputs;
            processors[i].upstream = ups;
            processors[i].depends_on = deps;
            processors[i].calendar = self.calendar(&key, &p.calendar, declared)?;
        }
        Ok(())
    }

    /// A `calendar`: a declared table whose rows for a date say the date has work.
    fn calendar(
        &self,
        key: &str,
        raw: &Option<Spanned<String>>,
        declared: &BTreeSet<String>,
    ) -> Result<Option<String>, Error> {
        let Some(raw) = raw else { return Ok(None) };
        let name = self.ident(&format!("{key}.calendar"), raw)?;
        if !declared.contains(&name) {
            return self.err(
                format!("{key}.calendar"),
                raw.span(),
                format!("unknown table `{name}` (a calendar is a declared table)"),
            );
        }
        Ok(Some(name))
    }

    /// A processor's `inputs`: declared tables.
    fn inputs(
        &self,
        key: &str,
        p: &RawProcessor,
        declared: &BTreeSet<String>,
    ) -> Result<Vec<String>, Error> {
        let mut inputs = Vec::new();
        for (j, t) in p.inputs.iter().enumerate() {
            let name = self.ident(&format!("{key}.inputs[{j}]"), t)?;
            if !declared.contains(&name) {
                return self.err(
                    format!("{key}.inputs[{j}]"),
                    t.span(),
                    format!("unknown table `{name}`"),
                );
            }
            inputs.push(name);
        }
        Ok(inputs)
    }

    /// A processor's `upstream`: declared upstream jobs.
    fn upstream_refs(
        &self,
        key: &str,
        p: &RawProcessor,
        upstream: &[UpstreamJob],
    ) -> Result<Vec<String>, Error> {
        let mut ups = Vec::new();
        for (j, u) in p.upstream.iter().enumerate() {
            if !upstream.iter().any(|job| &job.name == u.get_ref()) {
                return self.err(
                    format!("{key}.upstream[{j}]"),
                    u.span(),
                    format!("unknown upstream job `{}`", u.get_ref()),
                );
            }
            ups.push(u.get_ref().clone());
        }
        Ok(ups)
    }

    /// A processor's `depends_on`: declared processors of its own phase (`phase`).
    fn depends_on(
        &self,
        key: &str,
        p: &RawProcessor,
        processors: &[Processor],
        phase: u32,
    ) -> Result<Vec<ProcessorName>, Error> {
        let mut deps = Vec::new();
        for (j, d) in p.depends_on.iter().enumerate() {
            let Some(dep) = processors.iter().find(|q| q.name.as_str() == d.get_ref()) else {
                return self.err(
                    format!("{key}.depends_on[{j}]"),
                    d.span(),
                    format!("unknown processor `{}`", d.get_ref()),
                );
            };
            if dep.phase != phase {
                return self.err(
                    format!("{key}.depends_on[{j}]"),
                    d.span(),
                    format!(
                        "`{}` is in phase {}, not this processor's phase {}",
                        d.get_ref(),
                        dep.phase,
                        phase
                    ),
                );
            }
            deps.push(dep.name.clone());
        }
        Ok(deps)
    }

    /// `[[gates]]`, over the processors and tables already validated.
    fn gates(
        &self,
        raw: &[RawGate],
        processors: &[Processor],
        tables: &[TableSpec],
        timezone: &TimeZone,
        raw_landings_topic: &str,
    ) -> Result<Vec<Gate>, Error> {
        let mut gates: Vec<Gate> = Vec::new();
        for (i, g) in raw.iter().enumerate() {
            let key = format!("gates[{i}]");
            let gname = g.name.get_ref().clone();
            if !is_sql_identifier(&gname) {
                return self.err(
                    format!("{key}.name"),
                    g.name.span(),
                    format!("`{gname}` is not a valid gate name"),
                );
            }
            if gates.iter().any(|x| x.id.as_str() == gname) {
                return self.err(
                    format!("{key}.name"),
                    g.name.span(),
                    format!("gate `{gname}` is declared twice"),
                );
            }
            let gate = self.gate(&key, g, gname, processors, tables, timezone)?;
            self.gate_phase(&key, g, &gate, processors)?;
            self.gate_topics(&key, g, &gates, raw_landings_topic)?;
            gates.push(gate);
        }
        Ok(gates)
    }

    /// A gate's `next_phase` is a later phase than every processor it watches (else a
    /// trigger would rerun what it waits for) and has processors to run.
    fn gate_phase(
        &self,
        key: &str,
        g: &RawGate,
        gate: &Gate,
        processors: &[Processor],
    ) -> Result<(), Error> {
        let key = format!("{key}.next_phase");
        let next = gate.next_phase;
        if let Some(p) = processors
            .iter()
            .find(|p| gate.watches(&p.name) && p.phase >= next)
        {
            return self.err(key, g.next_phase.span(), format!("the gate waits for processor `{}` of phase {}, so next_phase must be a later phase, got {next}", p.name, p.phase));
        }
        if !processors.iter().any(|p| p.phase == next) {
            let mut phases: Vec<u32> = processors.iter().map(|p| p.phase).collect();
            phases.sort_unstable();
            phases.dedup();
            let phases: Vec<String> = phases.iter().map(u32::to_string).collect();
            return self.err(
                key,
                g.next_phase.span(),
                format!(
                    "phase {next} has no processors, so a trigger would run nothing (phases with processors: {})",
                    phases.join(", ")
                ),
            );
        }
        Ok(())
    }

    /// Each topic has one role: a gate's trigger topic is no gate's completion topic and
    /// no other gate's trigger topic, and neither is the raw-landings topic (two consumers
    /// would read one stream as two kinds of message, and lose what the other expects).
    fn gate_topics(
        &self,
        key: &str,
        g: &RawGate,
        earlier: &[Gate],
        raw_landings_topic: &str,
    ) -> Result<(), Error> {
        let completion = g.completion_topic.get_ref();
        let trigger = g.trigger_topic.get_ref();
        let clash = |topic: &str, role: &str| -> Option<String> {
            if topic == raw_landings_topic {
                return Some("the raw-landings topic ([pipeline] raw_landings_topic)".to_owned());
            }
            earlier.iter().find_map(|o| {
                if role == "trigger" && o.completion_topic == topic {
                    Some(format!("the completion topic of gate `{}`", o.id))
                } else if o.trigger_topic == topic {
                    Some(format!("the trigger topic of gate `{}`", o.id))
                } else {
                    None
                }
            })
        };
        if trigger == completion {
            return self.err(format!("{key}.trigger_topic"), g.trigger_topic.span(), format!("`{trigger}` is also this gate's completion topic; a trigger and the completions it follows need topics of their own"));
        }
        for (field, topic, role) in [
            ("completion_topic", &g.completion_topic, "completion"),
            ("trigger_topic", &g.trigger_topic, "trigger"),
        ] {
            if let Some(other) = clash(topic.get_ref(), role) {
                return self.err(
                    format!("{key}.{field}"),
                    topic.span(),
                    format!(
                        "`{}` is already {other}; each topic carries one kind of message",
                        topic.get_ref()
                    ),
                );
            }
        }
        Ok(())
    }

    /// One gate, its name already checked: phase, modes, topics and quality checks.
    fn gate(
        &self,
        key: &str,
        g: &RawGate,
        name: String,
        processors: &[Processor],
        tables: &[TableSpec],
        timezone: &TimeZone,
    ) -> Result<Gate, Error> {
        let next_phase = self.positive(&format!("{key}.next_phase"), &g.next_phase, 100)? as u32;
        let overnight = self.mode(&format!("{key}.overnight"), &g.overnight, processors)?;
        let same_day = match &g.same_day {
            Some(m) => Some(self.mode(&format!("{key}.same_day"), m, processors)?),
            None => None,
        };
        for (topic_key, topic) in [
            ("completion_topic", &g.completion_topic),
            ("trigger_topic", &g.trigger_topic),
        ] {
            self.topic(&format!("{key}.{topic_key}"), topic)?;
        }
        let mut checks = Vec::new();
        for (j, c) in g.checks.iter().enumerate() {
            checks.push(self.check(&format!("{key}.checks[{j}]"), c, tables, &checks)?);
        }
        Ok(Gate {
            id: GateId::new(name),
            completion_topic: g.completion_topic.get_ref().clone(),
            trigger_topic: g.trigger_topic.get_ref().clone(),
            next_phase,
            overnight,
            same_day,
            timezone: timezone.clone(),
            checks,
        })
    }

    /// A topic name: letters, digits, `-` and `_` (the bus's subject rules).
    fn topic(&self, key: &str, topic: &Spanned<String>) -> Result<(), Error> {
        let t = topic.get_ref();
        if t.is_empty()
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return self.err(
                key,
                topic.span(),
                format!("`{t}` is not a valid topic name (letters, digits, - and _)"),
            );
        }
        Ok(())
    }

    fn api(&self, raw: Option<&RawApi>) -> Result<ApiConfig, Error> {
        let Some(raw) = raw else {
            return Ok(ApiConfig::default());
        };
        if let Some(l) = &raw.listen
            && l.get_ref().parse::<std::net::SocketAddr>().is_err()
        {
            return self.err(
                "api.listen",
                l.span(),
                format!("`{}` is not an address like 127.0.0.1:8080", l.get_ref()),
            );
        }
        Ok(ApiConfig {
            listen: raw.listen.as_ref().map(|l| l.get_ref().clone()),
            token_file: raw.token_file.as_ref().map(|t| t.get_ref().clone()),
        })
    }

    fn notifiers(&self, raw: &[RawNotifier]) -> Result<Vec<NotifierSpec>, Error> {
        let mut out: Vec<NotifierSpec> = Vec::new();
        for (i, n) in raw.iter().enumerate() {
            let key = format!("notifiers[{i}]");
            let name = n.name.get_ref().trim().to_owned();
            if name.is_empty() || out.iter().any(|o| o.name() == name) {
                return self.err(
                    format!("{key}.name"),
                    n.name.span(),
                    format!("notifier name `{name}` is empty or declared twice"),
                );
            }
            let sources: Vec<(SecretSource, std::ops::Range<usize>)> = [
                n.url_env
                    .as_ref()
                    .map(|v| (SecretSource::Env(v.get_ref().clone()), v.span())),
                n.url_file
                    .as_ref()
                    .map(|v| (SecretSource::File(v.get_ref().clone()), v.span())),
                n.url
                    .as_ref()
                    .map(|v| (SecretSource::Literal(v.get_ref().clone()), v.span())),
            ]
            .into_iter()
            .flatten()
            .collect();
            let [(url, span)] = sources.as_slice() else {
                return self.err(
                    key,
                    n.name.span(),
                    "give exactly one of url_env, url_file or url",
                );
            };
            out.push(match n.kind.get_ref().as_str() {
                "slack" => {
                    if matches!(url, SecretSource::Literal(_)) {
                        return self.err(
                            format!("{key}.url"),
                            span.clone(),
                            "a Slack webhook URL is a secret: give url_env or url_file, not url",
                        );
                    }
                    NotifierSpec::Slack {
                        name,
                        url: url.clone(),
                    }
                }
                "webhook" => NotifierSpec::Webhook {
                    name,
                    url: url.clone(),
                },
                other => {
                    return self.err(
                        format!("{key}.kind"),
                        n.kind.span(),
                        format!("unknown notifier kind `{other}` (slack or webhook)"),
                    );
                }
            });
        }
        Ok(out)
    }

    fn alerts(
        &self,
        raw: &[RawAlert],
        notifiers: &[NotifierSpec],
    ) -> Result<Vec<AlertPolicy>, Error> {
        let mut out: Vec<AlertPolicy> = Vec::new();
        for (i, a) in raw.iter().enumerate() {
            let key = format!("alerts[{i}]");
            let name = a.name.get_ref().trim().to_owned();
            if name.is_empty() || out.iter().any(|o| o.name == name) {
                return self.err(
                    format!("{key}.name"),
                    a.name.span(),
                    format!("alert name `{name}` is empty or declared twice"),
                );
            }
            let Some(watch) = Watch::parse(a.watch.get_ref()) else {
                return self.err(
                    format!("{key}.watch"),
                    a.watch.span(),
                    format!(
                        "unknown watch `{}` (orchestrator_errors, processor_errors, lateness, dead_letters or accuracy)",
                        a.watch.get_ref()
                    ),
                );
            };
            let threshold = *a.threshold.get_ref();
            if !threshold.is_finite() || threshold <= 0.0 {
                return self.err(
                    format!("{key}.threshold"),
                    a.threshold.span(),
                    format!("must be a positive number, got {threshold}"),
                );
            }
            let mins = |field: &str,
                        v: &Option<Spanned<i64>>,
                        default: i64|
             -> Result<SignedDuration, Error> {
                Ok(SignedDuration::from_mins(match v {
                    Some(v) => self.positive(&format!("{key}.{field}"), v, 10_080)?,
                    None => default,
                }))
            };
            let window = mins("window_mins", &a.window_mins, 60)?;
            let quiet = mins("quiet_mins", &a.quiet_mins, 60)?;
            let mut notify = Vec::new();
            for n in &a.notify {
                if !notifiers.iter().any(|x| x.name() == n.get_ref()) {
                    return self.err(
                        format!("{key}.notify"),
                        n.span(),
                        format!("unknown notifier `{}`", n.get_ref()),
                    );
                }
                notify.push(n.get_ref().clone());
            }
            out.push(AlertPolicy {
                name,
                watch,
                window,
                threshold,
                quiet,
                notify,
            });
        }
        Ok(out)
    }

    /// `[[schedules]]`, over the processors already validated: a unique name, a five-field
    /// cron expression, known processors (at least one, no repeats), `today` or `yesterday`.
    fn schedules(
        &self,
        raw: &[RawSchedule],
        processors: &[Processor],
    ) -> Result<Vec<Schedule>, Error> {
        let mut out: Vec<Schedule> = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            let key = format!("schedules[{i}]");
            let name = s.name.get_ref().trim().to_owned();
            let well_formed = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !well_formed || out.iter().any(|o| o.name == name) {
                return self.err(
                    format!("{key}.name"),
                    s.name.span(),
                    format!("schedule name `{name}` is empty, not letters, digits, - and _, or declared twice"),
                );
            }
            let cron = CronExpr::parse(s.cron.get_ref())
                .or_else(|e| self.err(format!("{key}.cron"), s.cron.span(), e))?;
            let date = match &s.date {
                None => ScheduleDate::Today,
                Some(d) => match ScheduleDate::parse(d.get_ref()) {
                    Some(date) => date,
                    None => {
                        return self.err(
                            format!("{key}.date"),
                            d.span(),
                            format!("unknown date `{}` (today or yesterday)", d.get_ref()),
                        );
                    }
                },
            };
            let procs = self.schedule_processors(&key, &s.processors, processors)?;
            out.push(Schedule {
                name,
                cron,
                processors: procs,
                date,
            });
        }
        Ok(out)
    }

    /// A schedule's `processors`: known, at least one, none twice.
    fn schedule_processors(
        &self,
        key: &str,
        raw: &Spanned<Vec<Spanned<String>>>,
        processors: &[Processor],
    ) -> Result<Vec<ProcessorName>, Error> {
        if raw.get_ref().is_empty() {
            return self.err(
                format!("{key}.processors"),
                raw.span(),
                "a schedule needs at least one processor",
            );
        }
        let mut out: Vec<ProcessorName> = Vec::new();
        for (j, p) in raw.get_ref().iter().enumerate() {
            let Some(known) = processors.iter().find(|x| x.name.as_str() == p.get_ref()) else {
                return self.err(
                    format!("{key}.processors[{j}]"),
                    p.span(),
                    format!("unknown processor `{}`", p.get_ref()),
                );
            };
            if out.contains(&known.name) {
                return self.err(
                    format!("{key}.processors[{j}]"),
                    p.span(),
                    format!("processor `{}` appears twice", p.get_ref()),
                );
            }
            out.push(known.name.clone());
        }
        Ok(out)
    }

    fn check(
        &self,
        key: &str,
        raw: &RawCheck,
        tables: &[TableSpec],
        earlier: &[QualityCheck],
    ) -> Result<QualityCheck, Error> {
        let name = raw.name.get_ref().trim().to_owned();
        if name.is_empty() || earlier.iter().any(|c| c.name == name) {
            return self.err(
                format!("{key}.name"),
                raw.name.span(),
                format!("check name `{name}` is empty or used twice in this gate"),
            );
        }
        let table = self.known_table(&format!("{key}.table"), &raw.table, tables)?;
        let only_when_rows_in = match &raw.only_when_rows_in {
            Some(t) => Some(self.known_table(&format!("{key}.only_when_rows_in"), t, tables)?),
            None => None,
        };
        let kind = self.check_kind(key, raw, tables)?;
        Ok(QualityCheck {
            name,
            table,
            kind,
            only_when_rows_in,
        })
    }

    /// A table a quality check names: an identifier of a table the pipeline has.
    fn known_table(
        &self,
        key: &str,
        raw: &Spanned<String>,
        tables: &[TableSpec],
    ) -> Result<String, Error> {
        let name = self.ident(key, raw)?;
        if !tables.iter().any(|t| t.name == name) {
            return self.err(key, raw.span(), format!("unknown table `{name}`"));
        }
        Ok(name)
    }

    /// What a quality check measures, with the settings its kind needs.
    fn check_kind(
        &self,
        key: &str,
        raw: &RawCheck,
        tables: &[TableSpec],
    ) -> Result<CheckKind, Error> {
        let kind = raw.kind.get_ref().as_str();
        self.no_stray_settings(key, kind, raw)?;
        match kind {
            "min_rows" => {
                let Some(min) = &raw.min_rows else {
                    return self.err(
                        format!("{key}.min_rows"),
                        raw.kind.span(),
                        "a min_rows check needs `min_rows`",
                    );
                };
                Ok(CheckKind::MinRows {
                    min: self.positive(&format!("{key}.min_rows"), min, i64::MAX)? as u64,
                })
            }
            "non_null_coverage" => {
                let (Some(column), Some(pct)) = (&raw.column, &raw.min_percent) else {
                    return self.err(
                        key,
                        raw.kind.span(),
                        "a non_null_coverage check needs `column` and `min_percent`",
                    );
                };
                let (min_percent, warn_below_percent) = self.thresholds(key, pct, raw)?;
                Ok(CheckKind::NonNullCoverage {
                    column: self.ident(&format!("{key}.column"), column)?,
                    min_percent,
                    warn_below_percent,
                })
            }
            "coverage" => self.coverage_kind(key, raw, tables),
            other => self.err(
                format!("{key}.kind"),
                raw.kind.span(),
                format!(
                    "unknown check kind `{other}` (\"min_rows\", \"non_null_coverage\" or \"coverage\")"
                ),
            ),
        }
    }

    /// Settings another kind of check has are refused, rather than silently ignored.
    fn no_stray_settings(&self, key: &str, kind: &str, raw: &RawCheck) -> Result<(), Error> {
        let mut stray = Vec::new();
        if kind != "coverage" {
            stray.push((
                "reference_table",
                raw.reference_table.as_ref().map(|s| s.span()),
            ));
            stray.push((
                "reference_column",
                raw.reference_column.as_ref().map(|s| s.span()),
            ));
        }
        if kind == "min_rows" {
            stray.push((
                "warn_below_percent",
                raw.warn_below_percent.as_ref().map(|s| s.span()),
            ));
        }
        match stray.into_iter().find_map(|(f, span)| Some((f, span?))) {
            Some((field, span)) => self.err(
                format!("{key}.{field}"),
                span,
                format!("a {kind} check has no `{field}`"),
            ),
            None => Ok(()),
        }
    }

    /// A coverage check: the column, the reference table (one the pipeline has) and column
    /// (the same column by default), and its thresholds. Columns are not checked against
    /// the tables (rows are stored as JSON), only that they are identifiers.
    fn coverage_kind(
        &self,
        key: &str,
        raw: &RawCheck,
        tables: &[TableSpec],
    ) -> Result<CheckKind, Error> {
        let (Some(column), Some(reference), Some(pct)) =
            (&raw.column, &raw.reference_table, &raw.min_percent)
        else {
            return self.err(
                key,
                raw.kind.span(),
                "a coverage check needs `column`, `reference_table` and `min_percent`",
            );
        };
        let column = self.ident(&format!("{key}.column"), column)?;
        let reference_table =
            self.known_table(&format!("{key}.reference_table"), reference, tables)?;
        let reference_column = match &raw.reference_column {
            Some(c) => self.ident(&format!("{key}.reference_column"), c)?,
            None => column.clone(),
        };
        let (min_percent, warn_below_percent) = self.thresholds(key, pct, raw)?;
        Ok(CheckKind::Coverage {
            column,
            reference_table,
            reference_column,
            min_percent,
            warn_below_percent,
        })
    }

    /// A check's `min_percent` and optional `warn_below_percent`: each between 0 and 100,
    /// the warning threshold at least the minimum.
    fn thresholds(
        &self,
        key: &str,
        min: &Spanned<f64>,
        raw: &RawCheck,
    ) -> Result<(f64, Option<f64>), Error> {
        let percent = |field: &str, v: &Spanned<f64>| -> Result<f64, Error> {
            let p = *v.get_ref();
            if !(0.0..=100.0).contains(&p) {
                return self.err(
                    format!("{key}.{field}"),
                    v.span(),
                    "must be between 0 and 100",
                );
            }
            Ok(p)
        };
        let min_percent = percent("min_percent", min)?;
        let Some(w) = &raw.warn_below_percent else {
            return Ok((min_percent, None));
        };
        let warn = percent("warn_below_percent", w)?;
        if warn < min_percent {
            return self.err(
                format!("{key}.warn_below_percent"),
                w.span(),
                format!("must be at least min_percent ({min_percent})"),
            );
        }
        Ok((min_percent, Some(warn)))
    }

    fn mode(
        &self,
        key: &str,
        raw: &RawMode,
        processors: &[Processor],
    ) -> Result<ModePolicy, Error> {
        let resolve = |k: String, s: &Spanned<String>| -> Result<ProcessorName, Error> {
            match processors.iter().find(|p| p.name.as_str() == s.get_ref()) {
                Some(p) => Ok(p.name.clone()),
                None => self.err(k, s.span(), format!("unknown processor `{}`", s.get_ref())),
            }
        };
        if raw.expected.get_ref().is_empty() {
            return self.err(
                format!("{key}.expected"),
                raw.expected.span(),
                "a gate must expect at least one processor",
            );
        }
        let mut expected = Vec::new();
        for (i, s) in raw.expected.get_ref().iter().enumerate() {
            let p = resolve(format!("{key}.expected[{i}]"), s)?;
            if expected.contains(&p) {
                return self.err(
                    format!("{key}.expected[{i}]"),
                    s.span(),
                    format!("processor `{p}` is listed twice"),
                );
            }
            expected.push(p);
        }
        let mut critical = Vec::new();
        for (i, s) in raw.critical.iter().enumerate() {
            let p = resolve(format!("{key}.critical[{i}]"), s)?;
            if !expected.contains(&p) {
                return self.err(
                    format!("{key}.critical[{i}]"),
                    s.span(),
                    format!("critical processor `{p}` is not in `expected`"),
                );
            }
            critical.push(p);
        }
        if raw.rules.get_ref().is_empty() {
            return self.err(
                format!("{key}.rules"),
                raw.rules.span(),
                "at least one rule is needed (e.g. \"all_complete\")",
            );
        }
        let mut rules = Vec::new();
        for (i, s) in raw.rules.get_ref().iter().enumerate() {
            match Rule::parse(s.get_ref()) {
                Some(r) => rules.push(r),
                None => {
                    return self.err(format!("{key}.rules[{i}]"), s.span(), format!("unknown rule `{}` (expected \"all_complete\" or \"critical_plus_majority_<N>pct\")", s.get_ref()));
                }
            }
        }
        Ok(ModePolicy {
            expected,
            critical,
            rules,
        })
    }

    /// Orders processors so that each comes after those it depends on; rejects a cycle.
    fn topological(
        &self,
        processors: Vec<Processor>,
        raw: &[RawProcessor],
    ) -> Result<Vec<Processor>, Error> {
        let index: BTreeMap<&str, usize> = processors
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let mut done: BTreeSet<usize> = BTreeSet::new();
        let mut order = Vec::new();
        fn visit(
            i: usize,
            processors: &[Processor],
            index: &BTreeMap<&str, usize>,
            done: &mut BTreeSet<usize>,
            path: &mut Vec<usize>,
            order: &mut Vec<usize>,
        ) -> Result<(), Vec<usize>> {
            if done.contains(&i) {
                return Ok(());
            }
            if let Some(pos) = path.iter().position(|&x| x == i) {
                let mut cycle = path[pos..].to_vec();
                cycle.push(i);
                return Err(cycle);
            }
            path.push(i);
            for dep in &processors[i].depends_on {
                if let Some(&j) = index.get(dep.as_str()) {
                    visit(j, processors, index, done, path, order)?;
                }
            }
            path.pop();
            done.insert(i);
            order.push(i);
            Ok(())
        }
        for i in 0..processors.len() {
            let mut path = Vec::new();
            if let Err(cycle) = visit(i, &processors, &index, &mut done, &mut path, &mut order) {
                let names: Vec<&str> = cycle.iter().map(|&c| processors[c].name.as_str()).collect();
                let first = cycle[0];
                let span = raw[first]
                    .depends_on
                    .first()
                    .map(|d| d.span())
                    .unwrap_or_else(|| raw[first].name.span());
                return self.err(
                    format!("processors[{first}].depends_on"),
                    span,
                    format!("dependency cycle: {}", names.join(" -> ")),
                );
            }
        }
        let mut slots: Vec<Option<Processor>> = processors.into_iter().map(Some).collect();
        Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_landing_concerns_the_processors_that_read_or_wait_for_it() {
        let p = Pipeline::reference().unwrap();
        let names = |v: Vec<&Processor>| v.iter().map(|p| p.name.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(p.readers_of("nbac_gamebook_scraper")),
            [
                "team_offense_game_summary",
                "player_game_summary",
                "team_defense_game_summary",
                "upcoming_player_game_context",
                "upcoming_team_game_context",
            ],
            "the gamebook job lands the gamebook and the team box score"
        );
        assert_eq!(
            names(p.readers_of("nbac_schedule_scraper")),
            ["upcoming_player_game_context", "upcoming_team_game_context"]
        );
        assert!(p.readers_of("no_such_job").is_empty());
        assert_eq!(
            names(p.dependents_of(&ProcessorName::from("team_offense_game_summary"))),
            ["player_game_summary"]
        );
    }
    use super::*;

    #[test]
    fn the_reference_config_is_valid() {
        let p = Pipeline::reference().unwrap();
        assert_eq!(p.phase(3).count(), 5);
        assert_eq!(p.phase(4).count(), 1);
        let order: Vec<&str> = p.processors.iter().map(|p| p.name.as_str()).collect();
        let tog = order
            .iter()
            .position(|n| *n == "team_offense_game_summary")
            .unwrap();
        let pgs = order
            .iter()
            .position(|n| *n == "player_game_summary")
            .unwrap();
        assert!(tog < pgs, "dependencies come first: {order:?}");
        assert_eq!(p.gates[0].overnight.expected.len(), 5);
    }

    fn err_of(src: &str) -> Error {
        Pipeline::from_toml(src).unwrap_err()
    }

    fn mutate(from: &str, to: &str) -> String {
        assert!(
            REFERENCE_TOML.contains(from),
            "fixture text `{from}` missing"
        );
        REFERENCE_TOML.replacen(from, to, 1)
    }

    fn line_containing(src: &str, needle: &str) -> usize {
        src.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn the_start_retry_budget_defaults_to_30s_may_be_0_and_is_bounded() {
        let reference = Pipeline::reference().unwrap();
        assert_eq!(reference.start_retry, SignedDuration::from_secs(30));
        let off = mutate("start_retry_secs = 30", "start_retry_secs = 0");
        assert_eq!(
            Pipeline::from_toml(&off).unwrap().start_retry,
            SignedDuration::ZERO
        );
        let bad = mutate("start_retry_secs = 30", "start_retry_secs = -5");
        let e = err_of(&bad).to_string();
        assert!(e.contains("backend.start_retry_secs"), "{e}");
    }

    #[test]
    fn retention_defaults_and_bad_keys_name_key_and_line() {
        let reference = Pipeline::reference().unwrap();
        assert_eq!(reference.retention, RetentionConfig::default());
        assert_eq!(reference.retention.policy.keep_runs, 20);
        let set = format!(
            "{REFERENCE_TOML}\n[retention]\nkeep_runs = 5\nolder_than_days = 10\nbatch = 50\nevery_mins = 15\n"
        );
        let r = Pipeline::from_toml(&set).unwrap().retention;
        assert_eq!(r.policy.keep_runs, 5);
        assert_eq!(r.policy.older_than, SignedDuration::from_hours(240));
        assert_eq!(r.policy.batch, 50);
        assert_eq!(r.every, SignedDuration::from_mins(15));
        for (bad, key) in [
            ("older_than_days = 6", "retention.older_than_days"),
            ("keep_runs = 0", "retention.keep_runs"),
            ("batch = -1", "retention.batch"),
            ("every_mins = 0", "retention.every_mins"),
        ] {
            let src = format!("{REFERENCE_TOML}\n[retention]\n{bad}\n");
            let e = err_of(&src);
            assert_eq!(e.key, key, "{e}");
            assert_eq!(e.line, Some(line_containing(&src, bad)), "{e}");
        }
        let e = err_of(&format!("{REFERENCE_TOML}\n[retention]\nkeep = 1\n"));
        assert!(e.to_string().contains("keep"), "{e}");
    }

    #[test]
    fn the_raw_landings_topic_defaults_and_is_validated_with_key_and_line() {
        assert_eq!(
            Pipeline::reference().unwrap().raw_landings_topic,
            DEFAULT_RAW_LANDINGS_TOPIC
        );
        let tz = r#"timezone = "America/New_York""#;
        let src = mutate(tz, &format!("{tz}\nraw_landings_topic = \"phase2-done\""));
        assert_eq!(
            Pipeline::from_toml(&src).unwrap().raw_landings_topic,
            "phase2-done"
        );
        let src = mutate(tz, &format!("{tz}\nraw_landings_topic = \"raw landings\""));
        let e = err_of(&src);
        assert_eq!(e.key, "pipeline.raw_landings_topic");
        assert_eq!(e.line, Some(line_containing(&src, "raw_landings_topic")));
        assert!(e.message.contains("not a valid topic name"), "{e}");
    }

    #[test]
    fn an_unknown_processor_in_a_gate_names_key_and_line() {
        let src = mutate(
            r#"critical = ["player_game_summary", "upcoming_player_game_context"]"#,
            r#"critical = ["player_game_summary", "nope_processor"]"#,
        );
        let e = err_of(&src);
        assert_eq!(e.key, "gates[0].overnight.critical[1]");
        assert_eq!(e.line, Some(line_containing(&src, "nope_processor")));
        assert!(e.message.contains("nope_processor"), "{e}");
    }

    #[test]
    fn the_reference_config_checks_game_coverage() {
        let p = Pipeline::reference().unwrap();
        let c = p.gates[0]
            .checks
            .iter()
            .find(|c| c.name == "game_coverage")
            .unwrap();
        assert_eq!(c.table, "player_game_summary");
        assert_eq!(c.only_when_rows_in.as_deref(), Some("nbac_schedule"));
        assert_eq!(
            c.kind,
            CheckKind::Coverage {
                column: "game_id".into(),
                reference_table: "nbac_schedule".into(),
                reference_column: "game_id".into(),
                min_percent: 80.0,
                warn_below_percent: Some(85.0),
            }
        );
        // The reference column defaults to the column.
        let src = mutate("reference_column = \"game_id\"\n", "");
        let p = Pipeline::from_toml(&src).unwrap();
        let c = p.gates[0].checks.iter().find(|c| c.name == "game_coverage");
        assert!(matches!(
            &c.unwrap().kind,
            CheckKind::Coverage { reference_column, .. } if reference_column == "game_id"
        ));
    }

    #[test]
    fn bad_coverage_checks_name_the_key_and_line() {
        let cases = [
            (
                "reference_table = \"nbac_schedule\"",
                "reference_table = \"nope_table\"",
                "gates[0].checks[2].reference_table",
                "unknown table `nope_table`",
            ),
            (
                "table = \"player_game_summary\"\ncolumn = \"game_id\"",
                "table = \"nope_table\"\ncolumn = \"game_id\"",
                "gates[0].checks[2].table",
                "unknown table",
            ),
            (
                "min_percent = 80\nwarn_below_percent = 85",
                "min_percent = 80\nwarn_below_percent = 75",
                "gates[0].checks[2].warn_below_percent",
                "at least min_percent (80)",
            ),
            (
                "warn_below_percent = 85",
                "warn_below_percent = 185",
                "gates[0].checks[2].warn_below_percent",
                "between 0 and 100",
            ),
            (
                "min_percent = 80\nwarn_below_percent",
                "min_percent = -1\nwarn_below_percent",
                "gates[0].checks[2].min_percent",
                "between 0 and 100",
            ),
            (
                "reference_column = \"game_id\"",
                "reference_column = \"game id\"",
                "gates[0].checks[2].reference_column",
                "",
            ),
            (
                "min_rows = 1\n",
                "min_rows = 1\nwarn_below_percent = 90\n",
                "gates[0].checks[0].warn_below_percent",
                "a min_rows check has no `warn_below_percent`",
            ),
            (
                "column = \"minutes\"\n",
                "column = \"minutes\"\nreference_table = \"nbac_schedule\"\n",
                "gates[0].checks[1].reference_table",
                "a non_null_coverage check has no `reference_table`",
            ),
        ];
        for (from, to, key, message) in cases {
            let src = mutate(from, to);
            let e = err_of(&src);
            assert_eq!(e.key, key, "{to}: {e}");
            assert!(e.message.contains(message), "{to}: {e}");
            let needle = to.lines().find(|l| !from.lines().any(|f| f == *l)).unwrap();
            assert_eq!(e.line, Some(line_containing(&src, needle)), "{to}: {e}");
        }
        let e = err_of(&mutate("reference_table = \"nbac_schedule\"\n", ""));
        assert_eq!(e.key, "gates[0].checks[2]");
        assert!(
            e.message.contains("needs `column`, `reference_table`"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_primary_key_is_rejected() {
        let src = mutate(
            r#"primary_key = ["game_date", "team_abbr"]"#,
            "primary_key = []",
        );
        let e = err_of(&src);
        assert_eq!(e.key, "processors[0].primary_key");
        assert!(e.message.contains("at least one column"));
    }

    #[test]
    fn a_duplicate_processor_name_is_rejected() {
        let src = mutate(
            r#"name = "team_defense_game_summary""#,
            r#"name = "team_offense_game_summary""#,
        );
        let e = err_of(&src);
        assert_eq!(e.key, "processors[2].name");
        assert!(e.message.contains("declared twice"));
    }

    #[test]
    fn a_dependency_cycle_is_rejected() {
        let src = mutate(
            "inputs = [\"nbac_team_boxscore\"]\nupstream",
            "inputs = [\"nbac_team_boxscore\"]\ndepends_on = [\"player_game_summary\"]\nupstream",
        );
        let e = err_of(&src);
        assert!(e.message.contains("dependency cycle"), "{e}");
    }

    #[test]
    fn an_unsafe_sql_identifier_is_rejected() {
        let src = mutate(
            r#"table = "team_offense_game_summary""#,
            r#"table = "x; DROP TABLE runs""#,
        );
        let e = err_of(&src);
        assert_eq!(e.key, "processors[0].table");
        assert!(e.message.contains("not a valid SQL identifier"));
        assert!(!is_sql_identifier("select"));
        assert!(!is_sql_identifier("1abc"));
        assert!(is_sql_identifier("game_date"));
    }

    const ALERTING: &str = r#"
[api]
listen = "127.0.0.1:8080"

[[notifiers]]
name = "slack"
kind = "slack"
url_env = "BATON_SLACK_WEBHOOK_URL"

[[alerts]]
name = "late-scrapers"
watch = "lateness"
threshold = 1
notify = ["slack"]
"#;

    #[test]
    fn alert_policies_and_notifiers_parse_with_defaults() {
        let p = Pipeline::from_toml(&format!("{REFERENCE_TOML}{ALERTING}")).unwrap();
        assert_eq!(p.api.listen.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(p.alerts.len(), 1);
        let a = &p.alerts[0];
        assert_eq!(a.watch, crate::alert::Watch::Lateness);
        assert_eq!(a.window, SignedDuration::from_hours(1), "default window");
        assert_eq!(
            a.quiet,
            SignedDuration::from_hours(1),
            "default quiet period: an hour"
        );
        assert_eq!(
            p.notifiers[0],
            NotifierSpec::Slack {
                name: "slack".into(),
                url: SecretSource::Env("BATON_SLACK_WEBHOOK_URL".into())
            }
        );
    }

    #[test]
    fn bad_alerting_config_names_the_key_and_line() {
        let cases = [
            (
                "watch = \"lateness\"",
                "watch = \"latenes\"",
                "alerts[0].watch",
                "unknown watch",
            ),
            (
                "notify = [\"slack\"]",
                "notify = [\"pager\"]",
                "alerts[0].notify",
                "unknown notifier",
            ),
            (
                "threshold = 1",
                "threshold = -1",
                "alerts[0].threshold",
                "positive",
            ),
            (
                "url_env = \"BATON_SLACK_WEBHOOK_URL\"",
                "url = \"https://hooks.slack.com/services/x\"",
                "notifiers[0].url",
                "secret",
            ),
            (
                "listen = \"127.0.0.1:8080\"",
                "listen = \"everywhere\"",
                "api.listen",
                "address",
            ),
        ];
        for (from, to, key, words) in cases {
            let src = format!("{REFERENCE_TOML}{}", ALERTING.replacen(from, to, 1));
            let e = err_of(&src);
            assert_eq!(e.key, key, "{e}");
            assert!(e.message.contains(words), "{e}");
            assert_eq!(e.line, Some(line_containing(&src, to)), "{e}");
            assert!(
                !e.to_string().contains("hooks.slack.com/services/x"),
                "a secret is not echoed: {e}"
            );
        }
    }

    #[test]
    fn external_limits_default_and_are_validated_with_key_and_line() {
        let team = "name = \"team_offense_game_summary\"";
        let ext = format!("{team}\ncommand = [\"./p\"]");
        let p = Pipeline::from_toml(&mutate(team, &ext)).unwrap();
        let proc = p.processor("team_offense_game_summary").unwrap();
        assert_eq!(proc.limits, ExternalLimits::default());
        let src = mutate(
            team,
            &format!(
                "{ext}\ntimeout_secs = 5\nstdout_bytes_max = 1000\nrows_max = 7\nstderr_bytes_max = 64"
            ),
        );
        let limits = Pipeline::from_toml(&src).unwrap().processors[0].limits;
        assert_eq!(
            limits,
            ExternalLimits {
                timeout: SignedDuration::from_secs(5),
                stdout_bytes_max: 1000,
                rows_max: 7,
                stderr_bytes_max: 64
            }
        );
        for bad in [
            "timeout_secs = 0",
            "rows_max = -1",
            "stderr_bytes_max = 99999999999",
        ] {
            let src = mutate(team, &format!("{ext}\n{bad}"));
            let e = err_of(&src);
            let key = bad.split(' ').next().unwrap();
            assert!(
                e.key.ends_with(key) || e.message.contains(key),
                "{bad}: {e}"
            );
            assert_eq!(e.line, Some(line_containing(&src, key)), "{bad}: {e}");
        }
        let src = mutate(team, &format!("{team}\ntimeout_secs = 5"));
        let e = err_of(&src);
        assert!(e.key.ends_with("timeout_secs"), "{e}");
        assert!(e.message.contains("only an external processor"), "{e}");
        assert_eq!(e.line, Some(line_containing(&src, "timeout_secs")));
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let src = mutate("ttl_secs = 600", "ttl_secs = ");
        let e = err_of(&src);
        assert_eq!(e.line, Some(line_containing(&src, "ttl_secs")));
    }

    #[test]
    fn an_unknown_key_is_rejected() {
        let src = mutate("ttl_secs = 600", "ttl_sec = 600");
        let e = err_of(&src);
        assert!(e.message.contains("ttl_sec"), "{e}");
        assert!(e.line.is_some());
    }

    /// The reference config with one more phase 3 processor writing `table`.
    fn with_processor_table(table: &str, primary_key: &str) -> String {
        let extra = format!(
            "[[processors]]\nname = \"shadow\"\nphase = 3\ntable = \"{table}\"\nprimary_key = {primary_key}\n\n"
        );
        REFERENCE_TOML.replacen("[[gates]]", &format!("{extra}[[gates]]"), 1)
    }

    #[test]
    fn a_table_differing_only_in_case_is_the_same_table() {
        let src = with_processor_table("Team_Offense_Game_Summary", r#"["game_id"]"#);
        let e = err_of(&src);
        assert_eq!(e.key, "processors[6].table", "{e}");
        assert_eq!(
            e.line,
            Some(line_containing(&src, "Team_Offense_Game_Summary"))
        );
        assert!(e.message.contains("team_offense_game_summary"), "{e}");
        // A raw table too.
        let src = mutate(
            r#"name = "odds_api_game_lines""#,
            r#"name = "NBAC_schedule""#,
        );
        assert_eq!(err_of(&src).key, "tables[5].name");
    }

    #[test]
    fn a_table_named_like_another_tables_partition_index_is_rejected() {
        let src = with_processor_table("nbac_schedule__partition", r#"["game_id"]"#);
        let e = err_of(&src);
        assert_eq!(e.key, "processors[6].table", "{e}");
        assert!(e.message.contains("partition index"), "{e}");
    }

    #[test]
    fn batons_own_tables_are_not_warehouse_tables() {
        for name in [
            "runs",
            "Leases",
            "outbox",
            "dead_letters",
            "baton_schema_migrations",
            "sqlite_stat1",
        ] {
            let src = with_processor_table(name, r#"["game_id"]"#);
            let e = err_of(&src);
            assert_eq!(e.key, "processors[6].table", "{name}: {e}");
            assert_eq!(
                e.line,
                Some(line_containing(&src, &format!("table = \"{name}\"")))
            );
        }
    }

    #[test]
    fn batons_own_and_system_columns_are_not_key_columns() {
        for col in ["_token", "_ROW", "_partition", "rowid", "xmin"] {
            let src = with_processor_table("shadow", &format!(r#"["game_id", "{col}"]"#));
            let e = err_of(&src);
            assert_eq!(e.key, "processors[6].primary_key[1]", "{col}: {e}");
        }
        let src = with_processor_table("shadow", r#"["game_id", "Game_ID"]"#);
        assert!(err_of(&src).message.contains("same column"));
    }

    #[test]
    fn a_trigger_topic_that_is_a_completion_topic_is_rejected() {
        let src = mutate(
            r#"trigger_topic = "phase4-trigger""#,
            r#"trigger_topic = "phase3-completions""#,
        );
        let e = err_of(&src);
        assert_eq!(e.key, "gates[0].trigger_topic");
        assert_eq!(e.line, Some(line_containing(&src, "trigger_topic")));
        // Nor the raw-landings topic, for either role.
        let src = mutate(
            r#"trigger_topic = "phase4-trigger""#,
            r#"trigger_topic = "raw-landings""#,
        );
        assert_eq!(err_of(&src).key, "gates[0].trigger_topic");
        let src = mutate(
            r#"completion_topic = "phase3-completions""#,
            r#"completion_topic = "raw-landings""#,
        );
        assert_eq!(err_of(&src).key, "gates[0].completion_topic");
    }

    #[test]
    fn a_second_gate_may_not_reuse_a_trigger_topic_as_its_completion_topic() {
        let extra = "\n[[gates]]\nname = \"phase4_to_phase5\"\ncompletion_topic = \"phase4-trigger\"\ntrigger_topic = \"phase5-trigger\"\nnext_phase = 5\n\n[gates.overnight]\nexpected = [\"player_daily_cache\"]\nrules = [\"all_complete\"]\n";
        let src = with_processor_table("shadow", r#"["game_id"]"#).replacen(
            "phase = 3\ntable = \"shadow\"",
            "phase = 5\ntable = \"shadow\"",
            1,
        ) + extra;
        let e = err_of(&src);
        assert_eq!(e.key, "gates[1].completion_topic", "{e}");
        assert!(e.message.contains("phase3_to_phase4"), "{e}");
    }

    #[test]
    fn next_phase_must_have_processors_and_come_after_what_the_gate_waits_for() {
        let src = mutate("next_phase = 4", "next_phase = 5");
        let e = err_of(&src);
        assert_eq!(e.key, "gates[0].next_phase");
        assert_eq!(e.line, Some(line_containing(&src, "next_phase = 5")));
        assert!(e.message.contains("phases with processors: 3, 4"), "{e}");
        let src = mutate("next_phase = 4", "next_phase = 3");
        assert!(err_of(&src).message.contains("later phase"));
    }

    #[test]
    fn a_type_error_names_the_key_it_is_under() {
        let src = mutate("phase = 4", r#"phase = "four""#);
        let e = err_of(&src);
        assert_eq!(e.key, "processors[5].phase", "{e}");
        assert_eq!(e.line, Some(line_containing(&src, "\"four\"")));
        let src = mutate(r#"name = "phase3_to_phase4""#, "name = 5");
        assert_eq!(err_of(&src).key, "gates[0].name");
        let src = mutate(
            r#"primary_key = ["report_date", "player_lookup"]"#,
            "primary_key = 3",
        );
        assert_eq!(err_of(&src).key, "tables[3].primary_key");
        let src = mutate("tolerance_mins = 120", r#"tolerance_mins = "x""#);
        assert_eq!(err_of(&src).key, "upstream[0].tolerance_mins");
        let src = mutate("ttl_secs = 600", "ttl_secs = true");
        assert_eq!(err_of(&src).key, "lease.ttl_secs");
        let src = mutate("ttl_secs = 600", "ttl_sec = 600");
        assert_eq!(err_of(&src).key, "lease.ttl_sec");
    }

    #[test]
    fn an_unknown_time_zone_is_rejected() {
        let src = mutate("America/New_York", "Mars/Olympus");
        assert_eq!(err_of(&src).key, "pipeline.timezone");
    }

    /// The reference config with a `[[schedules]]` section appended.
    #[test]
    fn the_report_section_has_defaults_and_names_its_bad_keys() {
        let p = Pipeline::from_toml(REFERENCE_TOML).unwrap();
        assert_eq!(p.report.schedule.as_str(), DEFAULT_REPORT_SCHEDULE);
        assert_eq!((p.report.days, p.report.reconcile_days), (30, 7));
        let src = format!(
            "{REFERENCE_TOML}\n[report]\nschedule = \"0 18 * * FRI\"\ndays = 14\nreconcile_days = 3\n"
        );
        let p = Pipeline::from_toml(&src).unwrap();
        assert_eq!((p.report.days, p.report.reconcile_days), (14, 3));
        let lines = REFERENCE_TOML.lines().count();
        let bad = format!("{REFERENCE_TOML}\n[report]\nschedule = \"every monday\"\n");
        let e = err_of(&bad);
        assert_eq!(e.key, "report.schedule", "{e}");
        assert_eq!(e.line, Some(lines + 3), "{e}");
        let e = err_of(&format!("{REFERENCE_TOML}\n[report]\ndays = 0\n"));
        assert_eq!(e.key, "report.days", "{e}");
        let e = err_of(&format!("{REFERENCE_TOML}\n[report]\nweekly = true\n"));
        assert!(e.to_string().contains("weekly"), "{e}");
    }

    fn with_schedules(schedules: &str) -> String {
        format!("{REFERENCE_TOML}\n{schedules}")
    }

    #[test]
    fn the_commented_schedule_example_is_valid() {
        // The example at the end of the reference config, uncommented.
        let start = REFERENCE_TOML.find("# [[schedules]]").unwrap();
        let example: String = REFERENCE_TOML[start..]
            .lines()
            .map(|l| l.trim_start_matches("# "))
            .collect::<Vec<_>>()
            .join("\n");
        let p = Pipeline::from_toml(&format!("{REFERENCE_TOML}\n{example}\n")).unwrap();
        assert_eq!(p.schedules.len(), 1);
        assert_eq!(p.schedules[0].processors.len(), 2);
        assert!(Pipeline::reference().unwrap().schedules.is_empty());
    }

    #[test]
    fn schedules_parse_with_the_date_defaulting_to_today() {
        let src = with_schedules(
            r#"
[[schedules]]
name = "morning-context"
cron = "0 7 * * *"
processors = ["upcoming_player_game_context", "upcoming_team_game_context"]

[[schedules]]
name = "late_box_scores"
cron = "30 11 * * MON-FRI"
processors = ["player_game_summary"]
date = "yesterday"
"#,
        );
        let p = Pipeline::from_toml(&src).unwrap();
        assert_eq!(p.schedules.len(), 2);
        let (morning, late) = (&p.schedules[0], &p.schedules[1]);
        assert_eq!(morning.name, "morning-context");
        assert_eq!(morning.cron.as_str(), "0 7 * * *");
        assert_eq!(morning.date, crate::cron::ScheduleDate::Today);
        assert_eq!(
            morning.processors,
            vec![
                ProcessorName::from("upcoming_player_game_context"),
                ProcessorName::from("upcoming_team_game_context")
            ]
        );
        assert_eq!(late.date, crate::cron::ScheduleDate::Yesterday);
        assert_eq!(morning.record_key(), "schedule/morning-context");
    }

    #[test]
    fn bad_schedules_name_the_key_and_line() {
        for (body, key, needle, message) in [
            (
                "name = \"s\"\ncron = \"0 7 * *\"\nprocessors = [\"player_game_summary\"]",
                "schedules[0].cron",
                "cron = \"0 7 * *\"",
                "has 4 fields",
            ),
            (
                "name = \"s\"\ncron = \"0 27 * * *\"\nprocessors = [\"player_game_summary\"]",
                "schedules[0].cron",
                "cron = \"0 27",
                "not a valid cron expression",
            ),
            (
                "name = \"s\"\ncron = \"0 7 * * *\"\nprocessors = [\"player_game_summary\", \"nope_processor\"]",
                "schedules[0].processors[1]",
                "nope_processor",
                "unknown processor `nope_processor`",
            ),
            (
                "name = \"s\"\ncron = \"0 7 * * *\"\nprocessors = []",
                "schedules[0].processors",
                "processors = []",
                "at least one processor",
            ),
            (
                "name = \"s\"\ncron = \"0 7 * * *\"\nprocessors = [\"player_game_summary\"]\ndate = \"tomorrow\"",
                "schedules[0].date",
                "date = \"tomorrow\"",
                "unknown date `tomorrow` (today or yesterday)",
            ),
            (
                "name = \"a b\"\ncron = \"0 7 * * *\"\nprocessors = [\"player_game_summary\"]",
                "schedules[0].name",
                "name = \"a b\"",
                "schedule name",
            ),
        ] {
            let src = with_schedules(&format!("[[schedules]]\n{body}\n"));
            let e = err_of(&src);
            assert_eq!(e.key, key, "{e}");
            assert_eq!(e.line, Some(line_containing(&src, needle)), "{e}");
            assert!(e.message.contains(message), "{e}");
        }
        // A name declared twice, on the second.
        let one = "name = \"s\"\ncron = \"0 7 * * *\"\nprocessors = [\"player_game_summary\"]\n";
        let src = with_schedules(&format!("[[schedules]]\n{one}\n[[schedules]]\n{one}"));
        let e = err_of(&src);
        assert_eq!(e.key, "schedules[1].name", "{e}");
        assert!(e.message.contains("declared twice"), "{e}");
        // An unknown key in a schedule is refused, like everywhere else.
        let e = err_of(&with_schedules(&format!(
            "[[schedules]]\n{one}when = \"now\"\n"
        )));
        assert!(e.message.contains("when"), "{e}");
        assert!(e.line.is_some());
    }
}
