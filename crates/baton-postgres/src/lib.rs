//! baton-postgres: the state store and the warehouse on PostgreSQL, for many `serve` and
//! worker processes on many hosts.
//!
//! Every operation is one transaction at READ COMMITTED with explicit row locks (documents
//! and leases `FOR UPDATE`, in key order so two consumers cannot deadlock on a batch), run
//! by [`PgBackend::txn`], which retries serialization failures (40001), deadlocks (40P01),
//! unique races (23505) and lost connections with jittered backoff, a bounded number of
//! times, and then fails with the last error.
//!
//! Invariant: lease expiry and every timestamp baton compares are read from the database's
//! clock (`clock_timestamp()`), never a worker's, unless a test injects a clock.
//! Invariant: a fenced write locks the lease row (`FOR SHARE`) before checking it, so a
//! takeover cannot commit between the check and the write.
#![deny(missing_docs)]

mod listen;
mod pool;
mod retention;
mod schema;

use baton_core::clock::Clock;
use baton_core::completion::Document;
use baton_core::config::TableSpec;
use baton_core::dead_letter::LetterState;
use baton_core::lease::{self, Lease, Refusal};
use baton_core::model::{FenceToken, GateId, Partition, ProcessorName, Row, RunId};
use baton_core::rng::SplitMix64;
use baton_ports::engine;
use baton_ports::stored::{
    LetterRow, corrupt, from_micros, kind_of, micros, partition_of, quote, receipt_body,
    receipt_of, settle_decision,
};
use baton_ports::{
    Acquired, Backlog, CompletionReceipt, DeadLetter, Error, FencedWrite, Landing, LandingBatch,
    NewDeadLetter, NewOutboxRow, OnHeld, OpsRecord, OutboxRow, PendingRequest, Released, Result,
    RunEnd, RunRecord, Settled, StateStore, Warehouse, WriteOutcome,
};
use baton_ports::{OutboxKind, RequestKind, RunStatus};
use jiff::{SignedDuration, Timestamp};
use postgres::Transaction;
use postgres::error::SqlState;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

pub use listen::{CHANNEL, POSTGRES, listen};
pub use pool::redact;
pub use schema::MIGRATIONS;

/// Where a backend reads "now".
#[derive(Clone)]
pub enum TimeSource {
    /// The database's `clock_timestamp()`: one clock for every host.
    Database,
    /// An injected clock (tests).
    Injected(Arc<dyn Clock>),
}

/// Tries of one transaction before giving up.
pub const TRIES_MAX: u32 = 8;

/// The PostgreSQL backend.
pub struct PgBackend {
    pool: pool::Pool,
    time: TimeSource,
    jitter: Mutex<SplitMix64>,
    /// Test hook: hold every fenced write open this long before its commit, so a test can
    /// kill the writer in the middle of a write. Off (zero) unless set.
    write_stall: SignedDuration,
}

fn pg_err(e: &postgres::Error) -> Error {
    let retryable = e.is_closed()
        || matches!(
            e.code(),
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::UNIQUE_VIOLATION
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || c.code().starts_with("08")
        )
        || e.code().is_none();
    let text = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    if retryable {
        Error::Retryable(text)
    } else {
        Error::Permanent(text)
    }
}

/// Where an operation's SQL runs: a transaction, or autocommit for one statement.
type Tx<'a> = pool::Sql<'a>;

impl PgBackend {
    /// Connects (one clear error if it cannot), applies pending migrations, and reads time
    /// from the database.
    pub fn connect(url: &str, pool_size: usize) -> Result<Self> {
        Self::connect_with(url, pool_size, TimeSource::Database)
    }

    /// Connects with an explicit time source (tests inject a manual clock).
    pub fn connect_with(url: &str, pool_size: usize, time: TimeSource) -> Result<Self> {
        let pool = pool::Pool::new(url, pool_size)?;
        let backend = Self {
            pool,
            time,
            jitter: Mutex::new(SplitMix64::new(std::process::id() as u64)),
            write_stall: SignedDuration::ZERO,
        };
        backend.migrate()?;
        Ok(backend)
    }

    /// Holds fenced writes open before commit (fault tests only).
    pub fn with_write_stall(mut self, stall: SignedDuration) -> Self {
        self.write_stall = stall;
        self
    }

    /// Applies the migrations the database has not seen; returns how many it applied.
    pub fn migrate(&self) -> Result<usize> {
        self.txn(schema::migrate)
    }

    /// Drops baton's state and the given warehouse tables, then migrates again: the demo's
    /// "fresh database". Never called by anything else.
    pub fn reset(&self, tables: &[String]) -> Result<()> {
        self.txn(|tx| {
            let mut names: Vec<String> = tables.iter().map(|t| quote(t)).collect();
            names.extend(
                [
                    "documents",
                    "leases",
                    "fences",
                    "runs",
                    "requests",
                    "outbox",
                    "dead_letters",
                    "landings",
                    "landing_batches",
                    "completion_receipts",
                    "ops_records",
                    "baton_schema_migrations",
                ]
                .iter()
                .map(|t| quote(t)),
            );
            tx.batch_execute(&format!(
                "DROP TABLE IF EXISTS {} CASCADE",
                names.join(", ")
            ))
            .map_err(|e| pg_err(&e))
        })?;
        // Statements prepared against the dropped tables are not reused.
        self.pool.clear();
        self.migrate().map(|_| ())
    }

    /// Runs `f` in a transaction, retrying retryable failures with jittered backoff.
    fn txn<T>(&self, f: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.attempts(true, f)
    }

    /// Runs `f`, one statement, on its own (autocommit), retried as [`PgBackend::txn`]:
    /// the same snapshot and atomicity as a transaction around that one statement, without
    /// the `BEGIN` and `COMMIT` round trips.
    fn once<T>(&self, f: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.attempts(false, f)
    }

    fn attempts<T>(
        &self,
        transaction: bool,
        mut f: impl FnMut(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut last = Error::Retryable("no attempt made".into());
        for attempt in 0..TRIES_MAX {
            if attempt > 0 {
                let base = 10u64 << attempt.min(6);
                let jitter = self
                    .jitter
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .range(0, base as i64) as u64;
                let pause = SignedDuration::from_millis((base + jitter) as i64);
                tracing::debug!(attempt, error = %last, ?pause, "retrying a PostgreSQL transaction");
                baton_core::SystemClock.sleep_for(pause);
            }
            let mut client = match self.pool.get() {
                Ok(c) => c,
                Err(e) if e.is_retryable() => {
                    last = e;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let result = (|| -> Result<T> {
                let mut tx = if transaction {
                    client.transaction().map_err(|e| pg_err(&e))?
                } else {
                    client.autocommit()
                };
                let out = f(&mut tx)?;
                tx.commit().map_err(|e| pg_err(&e))?;
                Ok(out)
            })();
            match result {
                Ok(out) => return Ok(out),
                Err(e) if e.is_retryable() => {
                    if client.is_closed() {
                        client.discard();
                    }
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Retryable(format!(
            "gave up after {TRIES_MAX} tries: {last}"
        )))
    }

    fn now(&self, tx: &mut Tx<'_>) -> Result<Timestamp> {
        match &self.time {
            TimeSource::Injected(c) => Ok(c.now()),
            TimeSource::Database => {
                let row = tx
                    .query_one(
                        "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
                        &[],
                    )
                    .map_err(|e| pg_err(&e))?;
                from_micros(row.get(0))
            }
        }
    }
}

/// Sleeping for the retry backoff: a real wait between tries against a real server.
trait SleepFor {
    fn sleep_for(&self, d: SignedDuration);
}

impl SleepFor for baton_core::SystemClock {
    fn sleep_for(&self, d: SignedDuration) {
        baton_core::Clock::sleep(self, d);
    }
}

fn load_document(
    tx: &mut Tx<'_>,
    gate: &GateId,
    partition: Partition,
    lock: bool,
) -> Result<Option<Document>> {
    let sql = if lock {
        "SELECT body FROM documents WHERE gate = $1 AND partition = $2 FOR UPDATE"
    } else {
        "SELECT body FROM documents WHERE gate = $1 AND partition = $2"
    };
    let rows = tx
        .query(sql, &[&gate.as_str(), &partition.to_string()])
        .map_err(|e| pg_err(&e))?;
    rows.first()
        .map(|r| {
            serde_json::from_str::<Document>(r.get::<_, &str>(0))
                .map_err(|e| corrupt("document", e))
        })
        .transpose()
}

/// Writes a document over `expected` (`None`: a new one); false if the stored version moved.
fn write_document(
    tx: &mut Tx<'_>,
    doc: &Document,
    body: &str,
    expected: Option<u64>,
    now: Timestamp,
) -> Result<bool> {
    let args: [&(dyn postgres::types::ToSql + Sync); 7] = [
        &doc.gate.as_str(),
        &doc.partition.to_string(),
        &(doc.version as i64),
        &(doc.completed_count as i32),
        &doc.triggered,
        &body,
        &micros(now),
    ];
    let changed = match expected {
        // A concurrent insert of the same key fails with 23505: the transaction is retried.
        None => tx
            .execute(
                "INSERT INTO documents (gate, partition, version, completed_count, triggered, body, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &args,
            )
            .map_err(|e| pg_err(&e))?,
        Some(v) => {
            let old = v as i64;
            let mut full: Vec<&(dyn postgres::types::ToSql + Sync)> = args.to_vec();
            full.push(&old);
            tx.execute(
                "UPDATE documents SET version = $3, completed_count = $4, triggered = $5, body = $6, updated_at = $7
                 WHERE gate = $1 AND partition = $2 AND version = $8",
                &full,
            )
            .map_err(|e| pg_err(&e))?
        }
    };
    Ok(changed == 1)
}

fn insert_outbox(tx: &mut Tx<'_>, row: &NewOutboxRow, now: Timestamp) -> Result<()> {
    tx.execute(
        "INSERT INTO outbox (topic, message_id, kind, partition, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&row.topic, &row.message_id, &row.kind.as_str(), &row.partition.to_string(), &row.payload, &micros(now)],
    )
    .map_err(|e| pg_err(&e))?;
    Ok(())
}

/// Dead letters matching `filter` (a `WHERE`/`ORDER BY` tail).
fn select_letters(
    tx: &mut Tx<'_>,
    filter: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<DeadLetter>> {
    let sql = format!(
        "SELECT id, topic, message_id, payload, reason, recorded_at, state, settled_at, note FROM dead_letters {filter}"
    );
    let rows = tx.query(&sql, args).map_err(|e| pg_err(&e))?;
    rows.iter()
        .map(|r| {
            LetterRow {
                id: r.get(0),
                topic: r.get(1),
                message_id: r.get(2),
                payload: r.get(3),
                reason: r.get(4),
                recorded_at: r.get(5),
                state: r.get(6),
                settled_at: r.get(7),
                note: r.get(8),
            }
            .decode()
        })
        .collect()
}

fn insert_dead_letter(tx: &mut Tx<'_>, letter: &NewDeadLetter, now: Timestamp) -> Result<()> {
    tx.execute(
        "INSERT INTO dead_letters (topic, message_id, payload, reason, recorded_at) VALUES ($1, $2, $3, $4, $5)",
        &[&letter.topic, &letter.message_id, &letter.payload, &letter.reason, &micros(now)],
    )
    .map_err(|e| pg_err(&e))?;
    Ok(())
}

fn load_lease(
    tx: &mut Tx<'_>,
    processor: &ProcessorName,
    partition: Partition,
    lock: &str,
) -> Result<Option<(Lease, bool)>> {
    let sql = format!(
        "SELECT holder, token, renewed_at, expires_at, released, follow_up FROM leases WHERE processor = $1 AND partition = $2 {lock}"
    );
    let rows = tx
        .query(sql.as_str(), &[&processor.as_str(), &partition.to_string()])
        .map_err(|e| pg_err(&e))?;
    rows.first()
        .map(|r| {
            Ok((
                Lease {
                    processor: processor.clone(),
                    partition,
                    holder: r.get(0),
                    token: FenceToken::new(r.get::<_, i64>(1) as u64),
                    renewed_at: from_micros(r.get(2))?,
                    expires_at: from_micros(r.get(3))?,
                    released: r.get(4),
                },
                r.get::<_, bool>(5),
            ))
        })
        .transpose()
}

fn save_lease(tx: &mut Tx<'_>, lease: &Lease, follow_up: bool) -> Result<()> {
    tx.execute(
        "INSERT INTO leases (processor, partition, holder, token, renewed_at, expires_at, released, follow_up)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (processor, partition) DO UPDATE SET holder = excluded.holder, token = excluded.token,
           renewed_at = excluded.renewed_at, expires_at = excluded.expires_at, released = excluded.released,
           follow_up = excluded.follow_up",
        &[
            &lease.processor.as_str(),
            &lease.partition.to_string(),
            &lease.holder,
            &(lease.token.get() as i64),
            &micros(lease.renewed_at),
            &micros(lease.expires_at),
            &lease.released,
            &follow_up,
        ],
    )
    .map_err(|e| pg_err(&e))?;
    Ok(())
}

fn run_from(r: &postgres::Row) -> Result<RunRecord> {
    Ok(RunRecord {
        run_id: RunId::new(r.get::<_, String>(0)),
        processor: ProcessorName::new(r.get::<_, String>(1)),
        partition: partition_of(r.get(2))?,
        holder: r.get(3),
        token: FenceToken::new(r.get::<_, i64>(4) as u64),
        started_at: from_micros(r.get(5))?,
        finished_at: r.get::<_, Option<i64>>(6).map(from_micros).transpose()?,
        status: kind_of(r.get::<_, &str>(7), RunStatus::parse, "run status")?,
        rows_written: r.get::<_, i64>(8) as u64,
        duplicates_dropped: r.get::<_, i64>(9) as u64,
        error: r.get(10),
    })
}

const RUN_COLUMNS: &str = "run_id, processor, partition, holder, token, started_at, finished_at, status, rows_written, duplicates_dropped, error";
const OUTBOX_COLUMNS: &str =
    "id, topic, message_id, kind, partition, payload, created_at, published_at";

fn outbox_from(r: &postgres::Row) -> Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0),
        created_at: from_micros(r.get(6))?,
        published_at: r.get::<_, Option<i64>>(7).map(from_micros).transpose()?,
        row: NewOutboxRow {
            topic: r.get(1),
            message_id: r.get(2),
            kind: kind_of(r.get::<_, &str>(3), OutboxKind::parse, "outbox kind")?,
            partition: partition_of(r.get(4))?,
            payload: r.get(5),
        },
    })
}

/// An open PostgreSQL transaction as the engine sees it.
struct PgTxn<'a, 'b> {
    tx: &'a mut Tx<'b>,
    now: Timestamp,
    /// Whether it created work (an outbox row, a landing, an owed run): it notifies
    /// [`CHANNEL`] before its commit, which delivers the notification.
    created_work: bool,
    /// Receipts added and not yet written, and how many per (gate, partition) to keep:
    /// written with one statement and trimmed with another just before the commit
    /// ([`PgTxn::write_receipts`]), instead of a round trip per receipt and per date.
    receipts: Receipts,
}

/// Receipts of a transaction waiting to be written: (partition, gate, body) in the order
/// added, and the bound of the history.
#[derive(Default)]
struct Receipts {
    rows: Vec<(String, String, String)>,
    keep: u32,
}

impl PgTxn<'_, '_> {
    /// Writes the receipts added so far, in the order added, then trims each (gate,
    /// partition) they touched to its newest `keep`. Nothing inside a transaction reads
    /// the history, so writing it at the end is the same as writing it as it came.
    fn write_receipts(&mut self) -> Result<()> {
        let Receipts { rows, keep } = std::mem::take(&mut self.receipts);
        if rows.is_empty() {
            return Ok(());
        }
        let mut days = Vec::with_capacity(rows.len());
        let mut gates = Vec::with_capacity(rows.len());
        let mut bodies = Vec::with_capacity(rows.len());
        for (day, gate, body) in rows {
            days.push(day);
            gates.push(gate);
            bodies.push(body);
        }
        self.tx
            .execute(
                "INSERT INTO completion_receipts (partition, gate, body)
                 SELECT p, g, b FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(p, g, b, n) ORDER BY n",
                &[&days, &gates, &bodies],
            )
            .map_err(|e| pg_err(&e))?;
        let mut pairs: Vec<(String, String)> = days.into_iter().zip(gates).collect();
        pairs.sort_unstable();
        pairs.dedup();
        let (days, gates): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
        self.tx
            .execute(
                "DELETE FROM completion_receipts c USING (
                   SELECT id FROM (
                     SELECT r.id, row_number() OVER (PARTITION BY r.partition, r.gate ORDER BY r.id DESC) AS n
                     FROM completion_receipts r JOIN unnest($1::text[], $2::text[]) AS k(p, g)
                       ON r.partition = k.p AND r.gate = k.g) x
                   WHERE x.n > $3) d
                 WHERE c.id = d.id",
                &[&days, &gates, &i64::from(keep)],
            )
            .map_err(|e| pg_err(&e))?;
        Ok(())
    }
}

/// Notifies the `serve` processes listening ([`listen`]) that work was created; delivered
/// at the transaction's commit, not at all on rollback.
fn notify_work(tx: &mut Tx<'_>) -> Result<()> {
    tx.batch_execute(&format!("NOTIFY {CHANNEL}"))
        .map_err(|e| pg_err(&e))
}

impl engine::Transaction for PgTxn<'_, '_> {
    fn now(&self) -> Timestamp {
        self.now
    }
    fn running_runs(&mut self) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' ORDER BY started_at, seq FOR UPDATE"
        );
        self.tx
            .query(sql.as_str(), &[])
            .map_err(|e| pg_err(&e))?
            .iter()
            .map(run_from)
            .collect()
    }
    fn running_runs_of(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE partition = $1 AND processor = $2 AND status = 'running' ORDER BY started_at, seq FOR UPDATE"
        );
        self.tx
            .query(sql.as_str(), &[&partition.to_string(), &processor.as_str()])
            .map_err(|e| pg_err(&e))?
            .iter()
            .map(run_from)
            .collect()
    }
    fn end_running_run(
        &mut self,
        run_id: &RunId,
        end: &RunEnd,
        finished_at: Timestamp,
    ) -> Result<bool> {
        let changed = self
            .tx
            .execute(
                "UPDATE runs SET finished_at = $2, status = $3, rows_written = $4, duplicates_dropped = $5, error = $6
                 WHERE run_id = $1 AND status = 'running'",
                &[&run_id.as_str(), &micros(finished_at), &end.status.as_str(), &(end.rows_written as i64), &(end.duplicates_dropped as i64), &end.error],
            )
            .map_err(|e| pg_err(&e))?;
        Ok(changed > 0)
    }
    fn document_for_update(
        &mut self,
        gate: &GateId,
        partition: Partition,
    ) -> Result<Option<Document>> {
        load_document(self.tx, gate, partition, true)
    }
    fn write_document(
        &mut self,
        doc: &Document,
        body: &str,
        expected: Option<u64>,
    ) -> Result<bool> {
        write_document(self.tx, doc, body, expected, self.now)
    }
    fn insert_outbox(&mut self, row: &NewOutboxRow) -> Result<()> {
        self.created_work = true;
        insert_outbox(self.tx, row, self.now)
    }
    fn insert_dead_letter(&mut self, letter: &NewDeadLetter) -> Result<()> {
        insert_dead_letter(self.tx, letter, self.now)
    }
    fn lease_for_write(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Option<Lease>> {
        // FOR SHARE: a takeover cannot commit between the fence check and the write.
        Ok(load_lease(self.tx, processor, partition, "FOR SHARE")?.map(|(l, _)| l))
    }
    fn newest_fence(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Option<FenceToken>> {
        let rows = self
            .tx
            .query(
                "SELECT newest_token FROM fences WHERE processor = $1 AND partition = $2 FOR UPDATE",
                &[&processor.as_str(), &partition.to_string()],
            )
            .map_err(|e| pg_err(&e))?;
        Ok(rows
            .first()
            .map(|r| FenceToken::new(r.get::<_, i64>(0) as u64)))
    }
    fn set_fence(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
        token: FenceToken,
    ) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO fences (processor, partition, newest_token) VALUES ($1, $2, $3)
                 ON CONFLICT (processor, partition) DO UPDATE SET newest_token = excluded.newest_token",
                &[&processor.as_str(), &partition.to_string(), &(token.get() as i64)],
            )
            .map_err(|e| pg_err(&e))?;
        Ok(())
    }
    fn upsert_rows(&mut self, table: &TableSpec, rows: &[Row], token: FenceToken) -> Result<u64> {
        upsert_rows(self.tx, table, rows, token.get() as i64)
    }
    fn land(
        &mut self,
        job: &str,
        partition: Partition,
        at: Timestamp,
        recorded_at: Timestamp,
    ) -> Result<u32> {
        let row = self
            .tx
            .query_one(
                "INSERT INTO landings (job, partition, landed_at, latest_at, batches) VALUES ($1, $2, $3, $4, 1)
                 ON CONFLICT (job, partition) DO UPDATE SET latest_at = greatest(landings.latest_at, excluded.latest_at),
                   batches = landings.batches + 1
                 RETURNING batches",
                &[&job, &partition.to_string(), &micros(at), &micros(recorded_at)],
            )
            .map_err(|e| pg_err(&e))?;
        self.created_work = true;
        Ok(row.get::<_, i32>(0) as u32)
    }
    fn add_landing_batch(&mut self, batch: &LandingBatch, keep: u32) -> Result<()> {
        let (day, job) = (batch.partition.to_string(), batch.job.as_str());
        self.tx
            .execute(
                "INSERT INTO landing_batches (partition, job, batch, landed_at, recorded_at) VALUES ($1, $2, $3, $4, $5)",
                &[&day, &job, &(batch.batch as i32), &micros(batch.landed_at), &micros(batch.recorded_at)],
            )
            .map_err(|e| pg_err(&e))?;
        let below = batch.batch.saturating_sub(keep) as i32;
        self.tx
            .execute(
                "DELETE FROM landing_batches WHERE partition = $1 AND job = $2 AND batch <= $3",
                &[&day, &job, &below],
            )
            .map_err(|e| pg_err(&e))?;
        Ok(())
    }
    fn add_receipts(&mut self, receipts: &[CompletionReceipt], keep: u32) -> Result<()> {
        // Another bound than the receipts waiting have: theirs is applied first.
        if keep != self.receipts.keep && !self.receipts.rows.is_empty() {
            self.write_receipts()?;
        }
        self.receipts.keep = keep;
        for r in receipts {
            let row = (
                r.partition.to_string(),
                r.gate.to_string(),
                receipt_body(r)?,
            );
            self.receipts.rows.push(row);
        }
        Ok(())
    }
    fn owe_run(&mut self, request: &PendingRequest) -> Result<()> {
        self.created_work = true;
        self.tx
            .execute(
                "INSERT INTO requests (processor, partition, kind, reason, since) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (processor, partition) DO UPDATE SET kind = excluded.kind, reason = excluded.reason,
                   since = CASE WHEN excluded.kind = 'requested' THEN greatest(requests.since, excluded.since) ELSE requests.since END",
                &[&request.processor.as_str(), &request.partition.to_string(), &request.kind.as_str(), &request.reason, &micros(request.since)],
            )
            .map_err(|e| pg_err(&e))?;
        Ok(())
    }
    fn remove_rows_before(
        &mut self,
        table: &TableSpec,
        partition: Partition,
        token: FenceToken,
    ) -> Result<u64> {
        let sql = format!(
            "DELETE FROM {} WHERE _partition = $1 AND _token < $2",
            quote(&table.name)
        );
        self.tx
            .execute(
                sql.as_str(),
                &[&partition.to_string(), &(token.get() as i64)],
            )
            .map_err(|e| pg_err(&e))
    }
}

impl engine::Transact for PgBackend {
    fn transact(
        &self,
        work: &mut dyn FnMut(&mut dyn engine::Transaction) -> Result<()>,
    ) -> Result<()> {
        self.txn(|tx| {
            let now = self.now(tx)?;
            let mut txn = PgTxn {
                tx,
                now,
                created_work: false,
                receipts: Receipts::default(),
            };
            work(&mut txn)?;
            txn.write_receipts()?;
            if txn.created_work {
                notify_work(txn.tx)?;
            }
            Ok(())
        })
    }
}

impl StateStore for PgBackend {
    fn document(&self, gate: &GateId, partition: Partition) -> Result<Option<Document>> {
        self.once(|tx| load_document(tx, gate, partition, false))
    }

    fn documents(&self, gate: &GateId, from: Partition, to: Partition) -> Result<Vec<Document>> {
        self.once(|tx| {
            let rows = tx
                .query(
                    "SELECT body FROM documents WHERE gate = $1 AND partition BETWEEN $2 AND $3 ORDER BY partition",
                    &[&gate.as_str(), &from.to_string(), &to.to_string()],
                )
                .map_err(|e| pg_err(&e))?;
            rows.iter()
                .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| corrupt("document", e)))
                .collect()
        })
    }

    fn acquire_lease(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        holder: &str,
        ttl: SignedDuration,
        on_held: OnHeld,
    ) -> Result<Acquired> {
        self.txn(|tx| {
            let now = self.now(tx)?;
            let existing = load_lease(tx, processor, partition, "FOR UPDATE")?;
            let (current, follow_up) = match &existing {
                Some((l, f)) => (Some(l), *f),
                None => (None, false),
            };
            match lease::acquire(current, processor, partition, holder, now, ttl) {
                lease::Acquire::Granted(l) => {
                    // A concurrent first acquire of the same key loses on the primary key (23505)
                    // and is retried, then sees the winner's lease.
                    if existing.is_none() {
                        tx.execute(
                            "INSERT INTO leases (processor, partition, holder, token, renewed_at, expires_at, released, follow_up)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE)",
                            &[&processor.as_str(), &partition.to_string(), &l.holder, &(l.token.get() as i64), &micros(l.renewed_at), &micros(l.expires_at), &l.released],
                        )
                        .map_err(|e| pg_err(&e))?;
                    } else {
                        save_lease(tx, &l, false)?;
                    }
                    Ok(Acquired::Granted(l))
                }
                lease::Acquire::Held(l) => {
                    let recorded = on_held == OnHeld::Coalesce;
                    if recorded && !follow_up {
                        save_lease(tx, &l, true)?;
                    }
                    Ok(Acquired::Held { lease: l, follow_up_recorded: recorded })
                }
            }
        })
    }

    fn renew_lease(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        token: FenceToken,
        ttl: SignedDuration,
    ) -> Result<std::result::Result<Lease, Refusal>> {
        self.txn(|tx| {
            let now = self.now(tx)?;
            let existing = load_lease(tx, processor, partition, "FOR UPDATE")?;
            let follow_up = existing.as_ref().is_some_and(|(_, f)| *f);
            match lease::renew(existing.as_ref().map(|(l, _)| l), token, now, ttl) {
                Ok(l) => {
                    save_lease(tx, &l, follow_up)?;
                    Ok(Ok(l))
                }
                Err(r) => Ok(Err(r)),
            }
        })
    }

    fn release_lease(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        token: FenceToken,
    ) -> Result<Released> {
        self.txn(|tx| {
            let existing = load_lease(tx, processor, partition, "FOR UPDATE")?;
            let follow_up = existing.as_ref().is_some_and(|(_, f)| *f);
            match lease::release(existing.as_ref().map(|(l, _)| l), token) {
                Ok(l) => {
                    save_lease(tx, &l, false)?;
                    Ok(Released::Released { follow_up })
                }
                Err(r) => Ok(Released::Refused(r)),
            }
        })
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        self.once(|tx| {
            let rows = tx
                .query("SELECT processor, partition, holder, token, renewed_at, expires_at, released FROM leases ORDER BY partition, processor", &[])
                .map_err(|e| pg_err(&e))?;
            rows.iter()
                .map(|r| {
                    Ok(Lease {
                        processor: ProcessorName::new(r.get::<_, String>(0)),
                        partition: partition_of(r.get(1))?,
                        holder: r.get(2),
                        token: FenceToken::new(r.get::<_, i64>(3) as u64),
                        renewed_at: from_micros(r.get(4))?,
                        expires_at: from_micros(r.get(5))?,
                        released: r.get(6),
                    })
                })
                .collect()
        })
    }

    fn start_run(&self, run: &RunRecord) -> Result<()> {
        self.once(|tx| {
            tx.execute(
                "INSERT INTO runs (run_id, processor, partition, holder, token, started_at, status, rows_written, duplicates_dropped)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0) ON CONFLICT (run_id) DO NOTHING",
                &[&run.run_id.as_str(), &run.processor.as_str(), &run.partition.to_string(), &run.holder, &(run.token.get() as i64), &micros(run.started_at), &run.status.as_str()],
            )
            .map_err(|e| pg_err(&e))?;
            Ok(())
        })
    }

    fn finish_run(&self, run_id: &RunId, end: &RunEnd) -> Result<()> {
        self.txn(|tx| {
            let now = self.now(tx)?;
            tx.execute(
                "UPDATE runs SET finished_at = $2, status = $3, rows_written = $4, duplicates_dropped = $5, error = $6 WHERE run_id = $1",
                &[&run_id.as_str(), &micros(now), &end.status.as_str(), &(end.rows_written as i64), &(end.duplicates_dropped as i64), &end.error],
            )
            .map_err(|e| pg_err(&e))?;
            Ok(())
        })
    }

    fn runs(&self, partition: Partition) -> Result<Vec<RunRecord>> {
        self.once(|tx| {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE partition = $1 ORDER BY started_at, seq"
            );
            tx.query(sql.as_str(), &[&partition.to_string()])
                .map_err(|e| pg_err(&e))?
                .iter()
                .map(run_from)
                .collect()
        })
    }

    fn runs_between(&self, from: Partition, to: Partition) -> Result<Vec<RunRecord>> {
        self.once(|tx| {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE partition BETWEEN $1 AND $2 ORDER BY partition, started_at, seq"
            );
            tx.query(sql.as_str(), &[&from.to_string(), &to.to_string()])
                .map_err(|e| pg_err(&e))?
                .iter()
                .map(run_from)
                .collect()
        })
    }

    fn runs_finished_since(&self, since: Timestamp) -> Result<Vec<RunRecord>> {
        self.once(|tx| {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE finished_at >= $1 ORDER BY finished_at, seq"
            );
            tx.query(sql.as_str(), &[&micros(since)])
                .map_err(|e| pg_err(&e))?
                .iter()
                .map(run_from)
                .collect()
        })
    }

    fn pending_requests(&self) -> Result<Vec<PendingRequest>> {
        self.once(|tx| {
            let rows = tx
                .query("SELECT processor, partition, kind, reason, since FROM requests ORDER BY since, partition, processor", &[])
                .map_err(|e| pg_err(&e))?;
            rows.iter()
                .map(|r| {
                    Ok(PendingRequest {
                        processor: ProcessorName::new(r.get::<_, String>(0)),
                        partition: partition_of(r.get(1))?,
                        kind: kind_of(r.get::<_, &str>(2), RequestKind::parse, "request kind")?,
                        reason: r.get(3),
                        since: from_micros(r.get(4))?,
                    })
                })
                .collect()
        })
    }

    fn clear_request(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        requested_by: Timestamp,
    ) -> Result<()> {
        self.once(|tx| {
            tx.execute(
                "DELETE FROM requests WHERE processor = $1 AND partition = $2 AND since <= $3",
                &[
                    &processor.as_str(),
                    &partition.to_string(),
                    &micros(requested_by),
                ],
            )
            .map_err(|e| pg_err(&e))?;
            Ok(())
        })
    }

    fn enqueue(&self, row: &NewOutboxRow) -> Result<()> {
        self.txn(|tx| {
            let now = self.now(tx)?;
            insert_outbox(tx, row, now)?;
            notify_work(tx)
        })
    }

    fn claim_unpublished(&self, limit: usize, claim_for: SignedDuration) -> Result<Vec<OutboxRow>> {
        self.txn(|tx| {
            let now = self.now(tx)?;
            let until = micros(now.checked_add(claim_for).unwrap_or(now));
            // SKIP LOCKED: relays in several processes claim disjoint rows.
            let sql = format!(
                "UPDATE outbox SET claimed_until = $2 WHERE id IN (
                    SELECT id FROM outbox WHERE published_at IS NULL AND claimed_until <= $1
                    ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING {OUTBOX_COLUMNS}"
            );
            let mut rows: Vec<OutboxRow> = tx
                .query(sql.as_str(), &[&micros(now), &until, &(limit as i64)])
                .map_err(|e| pg_err(&e))?
                .iter()
                .map(outbox_from)
                .collect::<Result<_>>()?;
            rows.sort_by_key(|r| r.id);
            Ok(rows)
        })
    }

    /// Claims, publishes and marks in one transaction: the rows are locked (`FOR UPDATE
    /// SKIP LOCKED`, so relays in other processes take other rows) while their messages
    /// are published, then marked. One commit instead of a claim's and a mark's, and that
    /// commit does not wait for its WAL flush (`synchronous_commit = off`): a mark lost in
    /// a crash only publishes the rows again under the same ids, which the bus drops (and
    /// the consumers' idempotence absorbs past its duplicate window). A failed publish
    /// rolls the claim back, so the rows wait for the next relay.
    fn relay(
        &self,
        bus: &dyn baton_ports::Bus,
        limit: usize,
        _claim_for: SignedDuration,
        extra_ids: &mut dyn FnMut(&OutboxRow) -> Vec<String>,
    ) -> Result<usize> {
        self.txn(|tx| {
            let now = self.now(tx)?;
            // A row another relay still claims (one that claims and marks apart) is left.
            let sql = format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NULL AND claimed_until <= $1
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
            );
            let rows: Vec<OutboxRow> = tx
                .query(sql.as_str(), &[&micros(now), &(limit as i64)])
                .map_err(|e| pg_err(&e))?
                .iter()
                .map(outbox_from)
                .collect::<Result<_>>()?;
            if rows.is_empty() {
                return Ok(0);
            }
            let extra: Vec<Vec<String>> = rows.iter().map(&mut *extra_ids).collect();
            bus.publish_batch(&baton_ports::outgoing(&rows, &extra))?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .map_err(|e| pg_err(&e))?;
            tx.execute(
                "UPDATE outbox SET published_at = $2 WHERE id = ANY($1)",
                &[&ids, &micros(now)],
            )
            .map_err(|e| pg_err(&e))?;
            Ok(rows.len())
        })
    }

    fn mark_published(&self, ids: &[i64]) -> Result<()> {
        self.txn(|tx| {
            let now = self.now(tx)?;
            tx.execute(
                "UPDATE outbox SET published_at = $2 WHERE id = ANY($1) AND published_at IS NULL",
                &[&ids, &micros(now)],
            )
            .map_err(|e| pg_err(&e))?;
            Ok(())
        })
    }

    fn outbox_for(&self, kind: OutboxKind, partition: Partition) -> Result<Vec<OutboxRow>> {
        self.once(|tx| {
            let sql = format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE kind = $1 AND partition = $2 ORDER BY id"
            );
            tx.query(sql.as_str(), &[&kind.as_str(), &partition.to_string()])
                .map_err(|e| pg_err(&e))?
                .iter()
                .map(outbox_from)
                .collect()
        })
    }

    fn backlog(&self) -> Result<Backlog> {
        self.once(|tx| {
            let r = tx
                .query_one(
                    "SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL",
                    &[],
                )
                .map_err(|e| pg_err(&e))?;
            Ok(Backlog {
                pending: r.get::<_, i64>(0) as u64,
                oldest: r.get::<_, Option<i64>>(1).map(from_micros).transpose()?,
            })
        })
    }

    fn dead_letter(&self, letter: &NewDeadLetter) -> Result<()> {
        self.txn(|tx| {
            let now = self.now(tx)?;
            insert_dead_letter(tx, letter, now)
        })
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.once(|tx| select_letters(tx, "ORDER BY id", &[]))
    }

    fn dead_letter_by_id(&self, id: i64) -> Result<Option<DeadLetter>> {
        self.once(|tx| Ok(select_letters(tx, "WHERE id = $1", &[&id])?.pop()))
    }

    fn settle_dead_letter(&self, id: i64, state: LetterState, note: &str) -> Result<Settled> {
        self.txn(|tx| {
            let now = self.now(tx)?;
            let stored = select_letters(tx, "WHERE id = $1 FOR UPDATE", &[&id])?.pop();
            let letter = match settle_decision(stored, state, note, now) {
                Settled::Done(letter) => letter,
                answer => return Ok(answer),
            };
            tx.execute(
                "UPDATE dead_letters SET state = $2, settled_at = $3, note = $4 WHERE id = $1",
                &[&id, &state.as_str(), &micros(now), &letter.note],
            )
            .map_err(|e| pg_err(&e))?;
            Ok(Settled::Done(letter))
        })
    }

    fn ops_record(&self, key: &str) -> Result<Option<OpsRecord>> {
        Ok(self.ops_records(key)?.into_iter().find(|r| r.key == key))
    }

    fn put_ops_record(&self, key: &str, body: &str, expected: Option<i64>) -> Result<bool> {
        self.txn(|tx| {
            let now = micros(self.now(tx)?);
            let changed = match expected {
                None => tx.execute(
                    "INSERT INTO ops_records (key, version, body, updated_at) VALUES ($1, 1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&key, &body, &now],
                ),
                Some(v) => tx.execute(
                    "UPDATE ops_records SET version = version + 1, body = $2, updated_at = $3 WHERE key = $1 AND version = $4",
                    &[&key, &body, &now, &v],
                ),
            }
            .map_err(|e| pg_err(&e))?;
            Ok(changed == 1)
        })
    }

    fn ops_records(&self, prefix: &str) -> Result<Vec<OpsRecord>> {
        self.once(|tx| {
            let rows = tx
                .query(
                    "SELECT key, version, body, updated_at FROM ops_records WHERE left(key, length($1)) = $1 ORDER BY key",
                    &[&prefix],
                )
                .map_err(|e| pg_err(&e))?;
            rows.iter()
                .map(|r| {
                    Ok(OpsRecord {
                        key: r.get(0),
                        version: r.get(1),
                        body: r.get(2),
                        updated_at: from_micros(r.get(3))?,
                    })
                })
                .collect()
        })
    }

    fn landings(&self, partition: Partition) -> Result<Vec<Landing>> {
        self.once(|tx| {
            let sql =
                format!("SELECT {LANDING_COLUMNS} FROM landings WHERE partition = $1 ORDER BY job");
            tx.query(sql.as_str(), &[&partition.to_string()])
                .map_err(|e| pg_err(&e))?
                .iter()
                .map(landing_from)
                .collect()
        })
    }

    fn landing_batches(&self, partition: Partition) -> Result<Vec<LandingBatch>> {
        self.once(|tx| {
            let rows = tx
                .query(
                    "SELECT job, batch, landed_at, recorded_at FROM landing_batches WHERE partition = $1 ORDER BY job, batch",
                    &[&partition.to_string()],
                )
                .map_err(|e| pg_err(&e))?;
            rows.iter()
                .map(|r| {
                    Ok(LandingBatch {
                        job: r.get(0),
                        partition,
                        batch: r.get::<_, i32>(1) as u32,
                        landed_at: from_micros(r.get(2))?,
                        recorded_at: from_micros(r.get(3))?,
                    })
                })
                .collect()
        })
    }

    fn receipts(&self, partition: Partition) -> Result<Vec<CompletionReceipt>> {
        self.once(|tx| {
            let rows = tx
                .query(
                    "SELECT body FROM completion_receipts WHERE partition = $1 ORDER BY id",
                    &[&partition.to_string()],
                )
                .map_err(|e| pg_err(&e))?;
            rows.iter().map(|r| receipt_of(r.get(0))).collect()
        })
    }
    fn landings_between(&self, from: Partition, to: Partition) -> Result<Vec<Landing>> {
        self.once(|tx| {
            let sql = format!(
                "SELECT {LANDING_COLUMNS} FROM landings WHERE partition BETWEEN $1 AND $2 ORDER BY partition, job"
            );
            tx.query(sql.as_str(), &[&from.to_string(), &to.to_string()])
                .map_err(|e| pg_err(&e))?
                .iter()
                .map(landing_from)
                .collect()
        })
    }

    fn runs_beyond(&self, keep: usize) -> Result<Vec<RunRecord>> {
        self.txn(|tx| retention::runs_beyond(tx, keep))
    }

    fn delete_runs(&self, ids: &[RunId]) -> Result<u64> {
        self.txn(|tx| retention::delete_runs(tx, ids))
    }

    fn prune_outbox(&self, before: Timestamp, limit: usize) -> Result<u64> {
        self.txn(|tx| retention::prune_outbox(tx, before, limit))
    }

    fn prunable_outbox(&self, before: Timestamp) -> Result<u64> {
        self.txn(|tx| retention::prunable_outbox(tx, before))
    }
}

const LANDING_COLUMNS: &str = "job, partition, landed_at, latest_at, batches";

fn landing_from(r: &postgres::Row) -> Result<Landing> {
    Ok(Landing {
        job: r.get(0),
        partition: partition_of(r.get(1))?,
        landed_at: from_micros(r.get(2))?,
        latest_at: from_micros(r.get(3))?,
        batches: r.get::<_, i32>(4) as u32,
    })
}

/// A primary-key value as text: strings as they are, other scalars in their JSON form (the
/// key columns are TEXT, so `1` and `"1"` are the same key, as in dedup).
fn key_text(row: &Row, column: &str, index: usize) -> Result<String> {
    match row.get(column) {
        None | Some(serde_json::Value::Null) => Err(Error::Permanent(format!(
            "row {index} has no value for primary-key column `{column}`"
        ))),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(v) => Ok(v.to_string()),
    }
}

fn partition_text(row: &Row, table: &TableSpec, index: usize) -> Result<String> {
    match row.get(&table.partition_column) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        _ => Err(Error::Permanent(format!(
            "row {index} of `{}` has no date in partition column `{}`",
            table.name, table.partition_column
        ))),
    }
}

/// Upserts rows in one statement (arrays unnested); returns how many keys were new.
fn upsert_rows(tx: &mut Tx<'_>, table: &TableSpec, rows: &[Row], token: i64) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let n = table.primary_key.len();
    // One statement may not touch a key twice: a repeated key keeps its last row, as a
    // sequence of upserts would.
    let mut last: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let key = table
            .primary_key
            .iter()
            .map(|c| key_text(row, c, i))
            .collect::<Result<Vec<_>>>()?;
        last.insert(key, i);
    }
    let mut order: Vec<usize> = last.into_values().collect();
    order.sort_unstable();
    let mut keys: Vec<Vec<String>> = vec![Vec::with_capacity(order.len()); n];
    let mut partitions = Vec::with_capacity(order.len());
    let mut bodies = Vec::with_capacity(order.len());
    for (i, row) in order.into_iter().map(|i| (i, &rows[i])) {
        for (k, column) in table.primary_key.iter().enumerate() {
            keys[k].push(key_text(row, column, i)?);
        }
        partitions.push(partition_text(row, table, i)?);
        bodies.push(serde_json::to_string(row).map_err(|e| Error::Permanent(e.to_string()))?);
    }
    let cols: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
    let arrays: Vec<String> = (1..=n + 2).map(|i| format!("${i}::text[]")).collect();
    let names: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    let sql = format!(
        "INSERT INTO {t} ({cols}, _partition, _row, _token)
         SELECT {names}, p, r::jsonb, ${tok} FROM unnest({arrays}) AS u({names}, p, r)
         ON CONFLICT ({cols}) DO UPDATE SET _partition = excluded._partition, _row = excluded._row, _token = excluded._token
         RETURNING (xmax = 0)",
        t = quote(&table.name),
        cols = cols.join(", "),
        names = names.join(", "),
        arrays = arrays.join(", "),
        tok = n + 3,
    );
    let mut args: Vec<&(dyn postgres::types::ToSql + Sync)> = keys
        .iter()
        .map(|k| k as &(dyn postgres::types::ToSql + Sync))
        .collect();
    args.push(&partitions);
    args.push(&bodies);
    args.push(&token);
    let inserted = tx
        .query(sql.as_str(), &args)
        .map_err(|e| pg_err(&e))?
        .iter()
        .filter(|r| r.get::<_, bool>(0))
        .count();
    Ok(inserted as u64)
}

impl Warehouse for PgBackend {
    fn ensure_table(&self, table: &TableSpec) -> Result<()> {
        let defs: Vec<String> = table
            .primary_key
            .iter()
            .map(|c| format!("{} TEXT NOT NULL", quote(c)))
            .collect();
        let cols: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {t} ({defs}, _partition TEXT NOT NULL, _row JSONB NOT NULL, _token BIGINT NOT NULL, PRIMARY KEY ({pk}));
             CREATE INDEX IF NOT EXISTS {idx} ON {t} (_partition);",
            t = quote(&table.name),
            defs = defs.join(", "),
            pk = cols.join(", "),
            idx = quote(&baton_core::names::partition_index(&table.name)),
        );
        // Two processes creating the same table at once race on the catalog (23505): retried.
        self.txn(|tx| tx.batch_execute(&sql).map_err(|e| pg_err(&e)))
    }

    fn fenced_write(&self, write: &FencedWrite<'_>) -> Result<WriteOutcome> {
        engine::run(self, |tx| {
            let outcome = engine::fenced_write(tx, write)?;
            if !self.write_stall.is_zero() {
                tracing::warn!(stall = ?self.write_stall, "test hook: holding the write open before commit");
                baton_core::SystemClock.sleep_for(self.write_stall);
            }
            Ok(outcome)
        })
    }

    fn land(&self, table: &TableSpec, rows: &[Row]) -> Result<u64> {
        self.txn(|tx| {
            upsert_rows(tx, table, rows, 0)?;
            Ok(rows.len() as u64)
        })
    }

    fn read(&self, table: &TableSpec, from: Partition, to: Partition) -> Result<Vec<Row>> {
        self.once(|tx| {
            let sql = format!(
                "SELECT _row::text FROM {} WHERE _partition BETWEEN $1 AND $2 ORDER BY _partition",
                quote(&table.name)
            );
            let rows = tx
                .query(sql.as_str(), &[&from.to_string(), &to.to_string()])
                .map_err(|e| pg_err(&e))?;
            rows.iter()
                .map(|r| match serde_json::from_str(r.get::<_, &str>(0)) {
                    Ok(serde_json::Value::Object(m)) => Ok(m),
                    Ok(_) => Err(corrupt("row", "not an object")),
                    Err(e) => Err(corrupt("row", e)),
                })
                .collect()
        })
    }

    fn row_count(&self, table: &TableSpec, partition: Partition) -> Result<u64> {
        self.once(|tx| {
            let sql = format!(
                "SELECT count(*) FROM {} WHERE _partition = $1",
                quote(&table.name)
            );
            Ok(tx
                .query_one(sql.as_str(), &[&partition.to_string()])
                .map_err(|e| pg_err(&e))?
                .get::<_, i64>(0) as u64)
        })
    }

    fn measure(
        &self,
        table: &TableSpec,
        partition: Partition,
        column: Option<&str>,
    ) -> Result<(u64, u64)> {
        self.once(|tx| {
            // `column` is a validated identifier.
            let non_null = match column {
                Some(c) => format!("count(*) FILTER (WHERE _row->>'{c}' IS NOT NULL)"),
                None => "count(*)".to_owned(),
            };
            let sql = format!(
                "SELECT count(*), {non_null} FROM {} WHERE _partition = $1",
                quote(&table.name)
            );
            let r = tx
                .query_one(sql.as_str(), &[&partition.to_string()])
                .map_err(|e| pg_err(&e))?;
            Ok((r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
        })
    }

    fn distinct_values(
        &self,
        table: &TableSpec,
        partition: Partition,
        column: &str,
    ) -> Result<BTreeSet<String>> {
        self.once(|tx| {
            // The key is bound, not spliced; `->>` gives a string's text and any other
            // value's JSON text, and SQL NULL for a JSON null or a missing key.
            let sql = format!(
                "SELECT DISTINCT _row->>($2::text) FROM {} WHERE _partition = $1 AND _row->>($2::text) IS NOT NULL",
                quote(&table.name)
            );
            let rows = tx
                .query(sql.as_str(), &[&partition.to_string(), &column])
                .map_err(|e| pg_err(&e))?;
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })
    }

    fn duplicate_rows(&self, table: &TableSpec, partition: Partition) -> Result<u64> {
        self.once(|tx| {
            let cols: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
            let sql = format!(
                "SELECT coalesce(sum(n - 1), 0)::bigint FROM (SELECT count(*) AS n FROM {} WHERE _partition = $1 GROUP BY {} HAVING count(*) > 1) d",
                quote(&table.name),
                cols.join(", ")
            );
            Ok(tx.query_one(sql.as_str(), &[&partition.to_string()]).map_err(|e| pg_err(&e))?.get::<_, i64>(0) as u64)
        })
    }

    fn row_counts(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
    ) -> Result<BTreeMap<Partition, u64>> {
        let sql = format!(
            "SELECT _partition, count(*) FROM {} WHERE _partition BETWEEN $1 AND $2 GROUP BY _partition",
            quote(&table.name)
        );
        self.partition_counts(&sql, from, to)
    }

    fn duplicate_rows_between(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
    ) -> Result<BTreeMap<Partition, u64>> {
        let cols: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
        let sql = format!(
            "SELECT _partition, sum(n - 1)::bigint FROM (SELECT _partition, count(*) AS n FROM {} WHERE _partition BETWEEN $1 AND $2 GROUP BY _partition, {} HAVING count(*) > 1) d GROUP BY _partition",
            quote(&table.name),
            cols.join(", ")
        );
        self.partition_counts(&sql, from, to)
    }
}

impl PgBackend {
    /// A `(partition, count)` query over `[from, to]` as a map.
    fn partition_counts(
        &self,
        sql: &str,
        from: Partition,
        to: Partition,
    ) -> Result<BTreeMap<Partition, u64>> {
        self.once(|tx| {
            tx.query(sql, &[&from.to_string(), &to.to_string()])
                .map_err(|e| pg_err(&e))?
                .iter()
                .map(|r| Ok((partition_of(r.get(0))?, r.get::<_, i64>(1) as u64)))
                .collect()
        })
    }
}

impl PgBackend {
    /// Runs `f` in a transaction on the backend's pool, retried as every operation is, outside
    /// baton's rules: for the bench's baselines (`baton_backends::baselines`), which measure
    /// what the database does without baton.
    pub fn with_transaction<T>(
        &self,
        mut f: impl FnMut(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.txn(|tx| match tx.raw() {
            Some(t) => f(t),
            None => Err(Error::Permanent(
                "invariant: a transaction is open in txn".into(),
            )),
        })
    }
}
