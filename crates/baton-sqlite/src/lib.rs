//! baton-sqlite: the embedded backend. One SQLite file (WAL) holds the state store, the
//! warehouse and the bus, so a data write, its completion's outbox row and a document's
//! trigger each commit in one local transaction.
//!
//! Invariant: time in SQL is bound from the backend's clock (never `datetime('now')`), so
//! leases and ack deadlines follow the injected clock. Invariant: table and column names
//! spliced into SQL come from a validated `Pipeline` and are quoted.
//! Durability: `synchronous=FULL` by default, so an acknowledged completion survives power
//! loss; throughput comes from group commit (a consumer batch is one transaction).

mod consume;
mod retention;
mod schema;
mod wake;

use baton_core::clock::Clock;
use baton_core::completion::Document;
use baton_core::config::TableSpec;
use baton_core::dead_letter::LetterState;
use baton_core::lease::{self, Lease, Refusal};
use baton_core::model::{FenceToken, GateId, Partition, ProcessorName, Row, RunId};
use baton_ports::consume::{ConsumeHandler, Consumed, Take, consume_apart, is_same};
use baton_ports::engine;
use baton_ports::stored::{
    LetterRow, corrupt, from_micros, kind_of, micros, partition_of, quote, receipt_body,
    receipt_of, settle_decision,
};
use baton_ports::{
    Acquired, Backlog, Bus, CompletionReceipt, DeadLetter, Delivery, Error, GroupSettings, Landing,
    LandingBatch, NewDeadLetter, NewOutboxRow, OnHeld, OpsRecord, OutboxRow, Outgoing,
    PendingRequest, Published, Released, Result, RunEnd, RunRecord, Settled, StateStore, Warehouse,
};
use baton_ports::{OutboxKind, RequestKind, RunStatus};
use jiff::{SignedDuration, Timestamp};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

/// How commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: an acknowledged write survives power loss.
    Full,
    /// fsync at WAL checkpoints only: faster, may lose the last commits on power loss.
    Normal,
}

/// The embedded backend: one SQLite connection, shared by the process's threads.
pub struct SqliteBackend {
    conn: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    /// The wake signal: raised by this process's commits that create work, and by the
    /// file watch for other processes' commits.
    watch: wake::Watch,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").finish_non_exhaustive()
    }
}

fn map_err(e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Error::Retryable(e.to_string())
        }
        _ => Error::Permanent(e.to_string()),
    }
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path` and applies the schema.
    pub fn open(path: &Path, durability: Durability, clock: Arc<dyn Clock>) -> Result<Self> {
        let conn = Connection::open(path)
            .map_err(|e| Error::Permanent(format!("cannot open {}: {e}", path.display())))?;
        let mut backend = Self::setup(conn, durability, clock)?;
        backend.watch = wake::Watch::new(Some(path));
        Ok(backend)
    }

    /// Opens an existing database for reading only (`status`, `health`, `reconcile`
    /// without `--fix`), for a user who may only read it: no migration, no pragma that
    /// writes, and an error naming `baton migrate` when its schema is not this baton's.
    /// When the lock file (`-shm`) cannot be created (a read-only directory) and no
    /// write-ahead log is pending (no writer has the database open), it is read as an
    /// immutable file.
    pub fn open_read_only(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let cannot = |e: rusqlite::Error| {
            Error::Permanent(format!("cannot open {} for reading: {e}", path.display()))
        };
        let conn = open_read_only_uri(path, "mode=ro").map_err(cannot)?;
        let conn = match schema::check_current(&conn) {
            Err(schema::Unreadable::Sqlite(e)) if immutable_is_safe(path, &e) => {
                let conn = open_read_only_uri(path, "immutable=1").map_err(cannot)?;
                schema::check_current(&conn).map_err(|e| e.into_error(path))?;
                conn
            }
            Err(e) => return Err(e.into_error(path)),
            Ok(()) => conn,
        };
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self {
            conn: Mutex::new(conn),
            clock,
            watch: wake::Watch::new(Some(path)),
        })
    }

    /// How long a statement waits for another connection's lock before it fails as busy
    /// (30 s unless set).
    pub fn set_busy_timeout(&self, timeout: std::time::Duration) -> Result<()> {
        self.lock().busy_timeout(timeout).map_err(map_err)
    }

    /// An in-memory database (tests).
    pub fn open_in_memory(clock: Arc<dyn Clock>) -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(map_err)?;
        Self::setup(conn, Durability::Full, clock)
    }

    fn setup(conn: Connection, durability: Durability, clock: Arc<dyn Clock>) -> Result<Self> {
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(map_err)?;
        // The consume, the engine's statements and the relay are about thirty statements,
        // each prepared once and kept (rusqlite keeps 16 by default, which evicted them).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync};"
        ))
        .map_err(map_err)?;
        schema::migrate(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            clock,
            watch: wake::Watch::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls
        // back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_txn<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(map_err)?;
        Ok(out)
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// A read-only connection to `path` through a URI with `query` (`mode=ro`, `immutable=1`).
fn open_read_only_uri(path: &Path, query: &str) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    // A file URI: characters the URI syntax gives a meaning to are percent-encoded.
    let mut uri = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'?' | b'#' | b'%' => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(char::from(b)),
        }
    }
    uri.push('?');
    uri.push_str(query);
    Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// Whether a read-only open that failed with `e` may read the file as immutable: only
/// when it failed for want of a writable lock file and no write-ahead log exists (a
/// pending log holds commits an immutable read would not see).
fn immutable_is_safe(path: &Path, e: &rusqlite::Error) -> bool {
    let readonly = matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen));
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    readonly && !Path::new(&wal).exists()
}

fn load_document(tx: &Connection, gate: &GateId, partition: Partition) -> Result<Option<Document>> {
    let body: Option<String> = tx
        .prepare_cached("SELECT body FROM documents WHERE gate = ?1 AND partition = ?2")
        .map_err(map_err)?
        .query_row(params![gate.as_str(), partition.to_string()], |r| r.get(0))
        .optional()
        .map_err(map_err)?;
    body.map(|b| serde_json::from_str(&b).map_err(|e| corrupt("document", e)))
        .transpose()
}

/// Writes a document over `expected` (`None`: a new one); false if the stored version moved.
fn write_document(
    tx: &Connection,
    doc: &Document,
    body: &str,
    expected: Option<u64>,
    now: Timestamp,
) -> Result<bool> {
    let changed = match expected {
        None => tx
            .prepare_cached(
                "INSERT INTO documents (gate, partition, version, completed_count, triggered, body, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(map_err)?
            .execute(
                params![doc.gate.as_str(), doc.partition.to_string(), doc.version as i64, doc.completed_count as i64, doc.triggered, body, micros(now)],
            )
            .map_err(map_err)?,
        Some(v) => tx
            .prepare_cached(
                "UPDATE documents SET version = ?3, completed_count = ?4, triggered = ?5, body = ?6, updated_at = ?7
                 WHERE gate = ?1 AND partition = ?2 AND version = ?8",
            )
            .map_err(map_err)?
            .execute(
                params![doc.gate.as_str(), doc.partition.to_string(), doc.version as i64, doc.completed_count as i64, doc.triggered, body, micros(now), v as i64],
            )
            .map_err(map_err)?,
    };
    Ok(changed == 1)
}

fn insert_outbox(tx: &Connection, row: &NewOutboxRow, now: Timestamp) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO outbox (topic, message_id, kind, partition, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .map_err(map_err)?
    .execute(
        params![row.topic, row.message_id, row.kind.as_str(), row.partition.to_string(), row.payload, micros(now)],
    )
    .map_err(map_err)?;
    Ok(())
}

/// Dead letters matching `filter` (a `WHERE`/`ORDER BY` tail).
fn select_letters(
    conn: &Connection,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<DeadLetter>> {
    let mut stmt = conn
        .prepare(&format!("SELECT id, topic, message_id, payload, reason, recorded_at, state, settled_at, note FROM dead_letters {filter}"))
        .map_err(map_err)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok(LetterRow {
                id: r.get(0)?,
                topic: r.get(1)?,
                message_id: r.get(2)?,
                // Rows written before the payload became a BLOB hold text: read either.
                payload: match r.get_ref(3)? {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        t.to_vec()
                    }
                    _ => Vec::new(),
                },
                reason: r.get(4)?,
                recorded_at: r.get(5)?,
                state: r.get(6)?,
                settled_at: r.get(7)?,
                note: r.get(8)?,
            })
        })
        .map_err(map_err)?;
    rows.map(|row| row.map_err(map_err)?.decode()).collect()
}

fn insert_dead_letter(tx: &Connection, letter: &NewDeadLetter, now: Timestamp) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO dead_letters (topic, message_id, payload, reason, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(map_err)?
    .execute(
        params![letter.topic, letter.message_id, letter.payload, letter.reason, micros(now)],
    )
    .map_err(map_err)?;
    Ok(())
}

fn load_lease(
    tx: &Connection,
    processor: &ProcessorName,
    partition: Partition,
) -> Result<Option<Lease>> {
    tx.query_row(
        "SELECT holder, token, renewed_at, expires_at, released FROM leases WHERE processor = ?1 AND partition = ?2",
        params![processor.as_str(), partition.to_string()],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get::<_, bool>(4)?)),
    )
    .optional()
    .map_err(map_err)?
    .map(|(holder, token, renewed, expires, released)| {
        Ok(Lease {
            processor: processor.clone(),
            partition,
            holder,
            token: FenceToken::new(token as u64),
            renewed_at: from_micros(renewed)?,
            expires_at: from_micros(expires)?,
            released,
        })
    })
    .transpose()
}

fn save_lease(tx: &Connection, lease: &Lease) -> Result<()> {
    tx.execute(
        "INSERT INTO leases (processor, partition, holder, token, renewed_at, expires_at, released, follow_up)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)
         ON CONFLICT (processor, partition) DO UPDATE SET holder = excluded.holder, token = excluded.token,
           renewed_at = excluded.renewed_at, expires_at = excluded.expires_at, released = excluded.released",
        params![
            lease.processor.as_str(),
            lease.partition.to_string(),
            lease.holder,
            lease.token.get() as i64,
            micros(lease.renewed_at),
            micros(lease.expires_at),
            lease.released
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

/// An open SQLite transaction as the engine sees it.
struct SqliteTxn<'a> {
    conn: &'a Connection,
    now: Timestamp,
    /// Raised by a write that creates work; the waiter reads only after the commit, since
    /// it needs the connection this transaction holds.
    watch: &'a wake::Watch,
}

impl engine::Transaction for SqliteTxn<'_> {
    fn now(&self) -> Timestamp {
        self.now
    }
    fn running_runs(&mut self) -> Result<Vec<RunRecord>> {
        query_runs(
            self.conn,
            "WHERE status = 'running' ORDER BY started_at, rowid",
            [],
        )
    }
    fn running_runs_of(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Vec<RunRecord>> {
        query_runs(
            self.conn,
            "WHERE partition = ?1 AND processor = ?2 AND status = 'running' ORDER BY started_at, rowid",
            params![partition.to_string(), processor.as_str()],
        )
    }
    fn end_running_run(
        &mut self,
        run_id: &RunId,
        end: &RunEnd,
        finished_at: Timestamp,
    ) -> Result<bool> {
        let changed = self
            .conn
            .execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, rows_written = ?4, duplicates_dropped = ?5, error = ?6
                 WHERE run_id = ?1 AND status = 'running'",
                params![run_id.as_str(), micros(finished_at), end.status.as_str(), end.rows_written as i64, end.duplicates_dropped as i64, end.error],
            )
            .map_err(map_err)?;
        Ok(changed > 0)
    }
    fn document_for_update(
        &mut self,
        gate: &GateId,
        partition: Partition,
    ) -> Result<Option<Document>> {
        // `BEGIN IMMEDIATE` already holds the database's write lock.
        load_document(self.conn, gate, partition)
    }
    fn write_document(
        &mut self,
        doc: &Document,
        body: &str,
        expected: Option<u64>,
    ) -> Result<bool> {
        write_document(self.conn, doc, body, expected, self.now)
    }
    fn insert_outbox(&mut self, row: &NewOutboxRow) -> Result<()> {
        self.watch.raise();
        insert_outbox(self.conn, row, self.now)
    }
    fn insert_dead_letter(&mut self, letter: &NewDeadLetter) -> Result<()> {
        insert_dead_letter(self.conn, letter, self.now)
    }
    fn lease_for_write(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Option<Lease>> {
        load_lease(self.conn, processor, partition)
    }
    fn newest_fence(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
    ) -> Result<Option<FenceToken>> {
        let newest: Option<i64> = self
            .conn
            .query_row(
                "SELECT newest_token FROM fences WHERE processor = ?1 AND partition = ?2",
                params![processor.as_str(), partition.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(map_err)?;
        Ok(newest.map(|n| FenceToken::new(n as u64)))
    }
    fn set_fence(
        &mut self,
        processor: &ProcessorName,
        partition: Partition,
        token: FenceToken,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO fences (processor, partition, newest_token) VALUES (?1, ?2, ?3)
                 ON CONFLICT (processor, partition) DO UPDATE SET newest_token = excluded.newest_token",
                params![processor.as_str(), partition.to_string(), token.get() as i64],
            )
            .map_err(map_err)?;
        Ok(())
    }
    fn upsert_rows(&mut self, table: &TableSpec, rows: &[Row], token: FenceToken) -> Result<u64> {
        upsert_rows(self.conn, table, rows, token.get() as i64)
    }
    fn land(
        &mut self,
        job: &str,
        partition: Partition,
        at: Timestamp,
        recorded_at: Timestamp,
    ) -> Result<u32> {
        let batches: i64 = self
            .conn
            .query_row(
                "INSERT INTO landings (job, partition, landed_at, latest_at, batches) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (job, partition) DO UPDATE SET latest_at = max(latest_at, excluded.latest_at), batches = batches + 1
                 RETURNING batches",
                params![job, partition.to_string(), micros(at), micros(recorded_at)],
                |r| r.get(0),
            )
            .map_err(map_err)?;
        self.watch.raise();
        Ok(batches as u32)
    }
    fn add_landing_batch(&mut self, batch: &LandingBatch, keep: u32) -> Result<()> {
        let (day, job) = (batch.partition.to_string(), batch.job.as_str());
        self.conn
            .execute(
                "INSERT INTO landing_batches (partition, job, batch, landed_at, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![day, job, batch.batch, micros(batch.landed_at), micros(batch.recorded_at)],
            )
            .map_err(map_err)?;
        self.conn
            .execute(
                "DELETE FROM landing_batches WHERE partition = ?1 AND job = ?2 AND batch <= ?3",
                params![day, job, batch.batch.saturating_sub(keep)],
            )
            .map_err(map_err)?;
        Ok(())
    }
    fn add_receipts(&mut self, receipts: &[CompletionReceipt], keep: u32) -> Result<()> {
        let Some(first) = receipts.first() else {
            return Ok(());
        };
        let (day, gate) = (first.partition.to_string(), first.gate.as_str());
        let mut insert = self
            .conn
            .prepare_cached(
                "INSERT INTO completion_receipts (partition, gate, body) VALUES (?1, ?2, ?3)",
            )
            .map_err(map_err)?;
        for r in receipts {
            insert
                .execute(params![day, gate, receipt_body(r)?])
                .map_err(map_err)?;
        }
        // The newest receipt past the bound, then a delete only when there is one (most
        // batches of a date are under the bound).
        let past: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT id FROM completion_receipts WHERE partition = ?1 AND gate = ?2
                 ORDER BY id DESC LIMIT 1 OFFSET ?3",
            )
            .map_err(map_err)?
            .query_row(params![day, gate, keep], |r| r.get(0))
            .optional()
            .map_err(map_err)?;
        if let Some(past) = past {
            self.conn
                .prepare_cached(
                    "DELETE FROM completion_receipts WHERE partition = ?1 AND gate = ?2 AND id <= ?3",
                )
                .map_err(map_err)?
                .execute(params![day, gate, past])
                .map_err(map_err)?;
        }
        Ok(())
    }
    fn owe_run(&mut self, request: &PendingRequest) -> Result<()> {
        self.watch.raise();
        self.conn
            .execute(
                "INSERT INTO requests (processor, partition, kind, reason, since) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (processor, partition) DO UPDATE SET kind = excluded.kind, reason = excluded.reason,
                   since = CASE WHEN excluded.kind = 'requested' THEN max(since, excluded.since) ELSE since END",
                params![request.processor.as_str(), request.partition.to_string(), request.kind.as_str(), request.reason, micros(request.since)],
            )
            .map_err(map_err)?;
        Ok(())
    }
    fn remove_rows_before(
        &mut self,
        table: &TableSpec,
        partition: Partition,
        token: FenceToken,
    ) -> Result<u64> {
        let sql = format!(
            "DELETE FROM {} WHERE _partition = ?1 AND _token < ?2",
            quote(&table.name)
        );
        let removed = self
            .conn
            .execute(&sql, params![partition.to_string(), token.get() as i64])
            .map_err(map_err)?;
        Ok(removed as u64)
    }
}

impl engine::Transact for SqliteBackend {
    fn transact(
        &self,
        work: &mut dyn FnMut(&mut dyn engine::Transaction) -> Result<()>,
    ) -> Result<()> {
        let now = self.now();
        let watch = &self.watch;
        self.write_txn(|tx| {
            work(&mut SqliteTxn {
                conn: tx,
                now,
                watch,
            })
        })
    }
}

impl StateStore for SqliteBackend {
    fn document(&self, gate: &GateId, partition: Partition) -> Result<Option<Document>> {
        load_document(&self.lock(), gate, partition)
    }

    fn documents(&self, gate: &GateId, from: Partition, to: Partition) -> Result<Vec<Document>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT body FROM documents WHERE gate = ?1 AND partition BETWEEN ?2 AND ?3 ORDER BY partition")
            .map_err(map_err)?;
        let rows = stmt
            .query_map(
                params![gate.as_str(), from.to_string(), to.to_string()],
                |r| r.get::<_, String>(0),
            )
            .map_err(map_err)?;
        rows.map(|b| {
            let b = b.map_err(map_err)?;
            serde_json::from_str(&b).map_err(|e| corrupt("document", e))
        })
        .collect()
    }

    fn acquire_lease(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        holder: &str,
        ttl: SignedDuration,
        on_held: OnHeld,
    ) -> Result<Acquired> {
        let now = self.now();
        self.write_txn(|tx| {
            let existing = load_lease(tx, processor, partition)?;
            match lease::acquire(existing.as_ref(), processor, partition, holder, now, ttl) {
                lease::Acquire::Granted(l) => {
                    save_lease(tx, &l)?;
                    // The new holder's run supersedes any follow-up owed by the old one.
                    tx.execute(
                        "UPDATE leases SET follow_up = 0 WHERE processor = ?1 AND partition = ?2",
                        params![processor.as_str(), partition.to_string()],
                    )
                    .map_err(map_err)?;
                    Ok(Acquired::Granted(l))
                }
                lease::Acquire::Held(l) => {
                    let follow_up_recorded = on_held == OnHeld::Coalesce;
                    if follow_up_recorded {
                        tx.execute(
                            "UPDATE leases SET follow_up = 1 WHERE processor = ?1 AND partition = ?2",
                            params![processor.as_str(), partition.to_string()],
                        )
                        .map_err(map_err)?;
                    }
                    Ok(Acquired::Held { lease: l, follow_up_recorded })
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
        let now = self.now();
        self.write_txn(|tx| {
            let existing = load_lease(tx, processor, partition)?;
            match lease::renew(existing.as_ref(), token, now, ttl) {
                Ok(l) => {
                    save_lease(tx, &l)?;
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
        self.write_txn(|tx| {
            let existing = load_lease(tx, processor, partition)?;
            match lease::release(existing.as_ref(), token) {
                Ok(l) => {
                    save_lease(tx, &l)?;
                    let key = params![processor.as_str(), partition.to_string()];
                    let follow_up: bool = tx
                        .query_row(
                            "SELECT follow_up FROM leases WHERE processor = ?1 AND partition = ?2",
                            key,
                            |r| r.get(0),
                        )
                        .map_err(map_err)?;
                    tx.execute(
                        "UPDATE leases SET follow_up = 0 WHERE processor = ?1 AND partition = ?2",
                        key,
                    )
                    .map_err(map_err)?;
                    Ok(Released::Released { follow_up })
                }
                Err(r) => Ok(Released::Refused(r)),
            }
        })
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT processor, partition FROM leases ORDER BY partition, processor")
            .map_err(map_err)?;
        let keys: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_err)?
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)?;
        let mut out = Vec::new();
        for (p, d) in keys {
            if let Some(l) = load_lease(&conn, &ProcessorName::new(p), partition_of(&d)?)? {
                out.push(l);
            }
        }
        Ok(out)
    }

    fn start_run(&self, run: &RunRecord) -> Result<()> {
        self.write_txn(|tx| {
            tx.execute(
                "INSERT INTO runs (run_id, processor, partition, holder, token, started_at, status, rows_written, duplicates_dropped)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0)",
                params![
                    run.run_id.as_str(),
                    run.processor.as_str(),
                    run.partition.to_string(),
                    run.holder,
                    run.token.get() as i64,
                    micros(run.started_at),
                    run.status.as_str()
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
    }

    fn finish_run(&self, run_id: &RunId, end: &RunEnd) -> Result<()> {
        let now = self.now();
        self.write_txn(|tx| {
            tx.execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, rows_written = ?4, duplicates_dropped = ?5, error = ?6 WHERE run_id = ?1",
                params![run_id.as_str(), micros(now), end.status.as_str(), end.rows_written as i64, end.duplicates_dropped as i64, end.error],
            )
            .map_err(map_err)?;
            Ok(())
        })
    }

    fn runs(&self, partition: Partition) -> Result<Vec<RunRecord>> {
        query_runs(
            &self.lock(),
            "WHERE partition = ?1 ORDER BY started_at, rowid",
            params![partition.to_string()],
        )
    }

    fn runs_between(&self, from: Partition, to: Partition) -> Result<Vec<RunRecord>> {
        query_runs(
            &self.lock(),
            "WHERE partition BETWEEN ?1 AND ?2 ORDER BY partition, started_at, rowid",
            params![from.to_string(), to.to_string()],
        )
    }

    fn runs_finished_since(&self, since: Timestamp) -> Result<Vec<RunRecord>> {
        query_runs(
            &self.lock(),
            "WHERE finished_at >= ?1 ORDER BY finished_at, rowid",
            params![micros(since)],
        )
    }

    fn pending_requests(&self) -> Result<Vec<PendingRequest>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT processor, partition, kind, reason, since FROM requests ORDER BY since, partition, processor")
            .map_err(map_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(map_err)?;
        rows.map(|row| {
            let (processor, partition, kind, reason, since) = row.map_err(map_err)?;
            Ok(PendingRequest {
                processor: ProcessorName::new(processor),
                partition: partition_of(&partition)?,
                kind: kind_of(&kind, RequestKind::parse, "request kind")?,
                reason,
                since: from_micros(since)?,
            })
        })
        .collect()
    }

    fn clear_request(
        &self,
        processor: &ProcessorName,
        partition: Partition,
        requested_by: Timestamp,
    ) -> Result<()> {
        self.write_txn(|tx| {
            tx.execute(
                "DELETE FROM requests WHERE processor = ?1 AND partition = ?2 AND since <= ?3",
                params![
                    processor.as_str(),
                    partition.to_string(),
                    micros(requested_by)
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
    }

    fn enqueue(&self, row: &NewOutboxRow) -> Result<()> {
        let now = self.now();
        self.write_txn(|tx| insert_outbox(tx, row, now))?;
        // After the commit: a waiter woken earlier could look before the row is there.
        self.watch.raise();
        Ok(())
    }

    fn claim_unpublished(&self, limit: usize, claim_for: SignedDuration) -> Result<Vec<OutboxRow>> {
        let now = self.now();
        let until = micros(now.checked_add(claim_for).unwrap_or(now));
        self.write_txn(|tx| {
            let rows = query_outbox(
                tx,
                "WHERE published_at IS NULL AND claimed_until <= ?1 ORDER BY id LIMIT ?2",
                params![micros(now), limit as i64],
            )?;
            let mut stmt = tx
                .prepare_cached("UPDATE outbox SET claimed_until = ?2 WHERE id = ?1")
                .map_err(map_err)?;
            for r in &rows {
                stmt.execute(params![r.id, until]).map_err(map_err)?;
            }
            Ok(rows)
        })
    }

    fn mark_published(&self, ids: &[i64]) -> Result<()> {
        let now = self.now();
        self.write_txn(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE outbox SET published_at = ?2 WHERE id = ?1 AND published_at IS NULL",
                )
                .map_err(map_err)?;
            for id in ids {
                stmt.execute(params![id, micros(now)]).map_err(map_err)?;
            }
            Ok(())
        })
    }

    fn relay(
        &self,
        bus: &dyn Bus,
        limit: usize,
        claim_for: SignedDuration,
        extra_ids: &mut dyn FnMut(&OutboxRow) -> Vec<String>,
    ) -> Result<usize> {
        if !is_same(bus, self) {
            return baton_ports::relay_apart(self, bus, limit, claim_for, extra_ids);
        }
        // The outbox and the bus share the file: claim, publish and mark in one commit.
        let now = self.now();
        self.write_txn(|tx| {
            let rows = query_outbox(
                tx,
                "WHERE published_at IS NULL AND claimed_until <= ?1 ORDER BY id LIMIT ?2",
                params![micros(now), limit as i64],
            )?;
            let extra: Vec<Vec<String>> = rows.iter().map(extra_ids).collect();
            insert_messages(tx, &baton_ports::outgoing(&rows, &extra), now)?;
            let mut mark = tx
                .prepare_cached("UPDATE outbox SET published_at = ?2 WHERE id = ?1")
                .map_err(map_err)?;
            for r in &rows {
                mark.execute(params![r.id, micros(now)]).map_err(map_err)?;
            }
            Ok(rows.len())
        })
        .inspect(|n| {
            // New messages on the bus: the consumers of this process have work.
            if *n > 0 {
                self.watch.raise();
            }
        })
    }

    fn outbox_for(&self, kind: OutboxKind, partition: Partition) -> Result<Vec<OutboxRow>> {
        let conn = self.lock();
        query_outbox(
            &conn,
            "WHERE kind = ?1 AND partition = ?2 ORDER BY id",
            params![kind.as_str(), partition.to_string()],
        )
    }

    fn backlog(&self) -> Result<Backlog> {
        let conn = self.lock();
        let (pending, oldest): (i64, Option<i64>) = conn
            .prepare_cached(
                "SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL",
            )
            .map_err(map_err)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_err)?;
        Ok(Backlog {
            pending: pending as u64,
            oldest: oldest.map(from_micros).transpose()?,
        })
    }

    fn dead_letter(&self, letter: &NewDeadLetter) -> Result<()> {
        let now = self.now();
        self.write_txn(|tx| insert_dead_letter(tx, letter, now))
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        select_letters(&self.lock(), "ORDER BY id", params![])
    }

    fn dead_letter_by_id(&self, id: i64) -> Result<Option<DeadLetter>> {
        Ok(select_letters(&self.lock(), "WHERE id = ?1", params![id])?.pop())
    }

    fn settle_dead_letter(&self, id: i64, state: LetterState, note: &str) -> Result<Settled> {
        let now = self.now();
        self.write_txn(|tx| {
            let stored = select_letters(tx, "WHERE id = ?1", params![id])?.pop();
            let letter = match settle_decision(stored, state, note, now) {
                Settled::Done(letter) => letter,
                answer => return Ok(answer),
            };
            tx.execute(
                "UPDATE dead_letters SET state = ?2, settled_at = ?3, note = ?4 WHERE id = ?1",
                params![id, state.as_str(), micros(now), letter.note],
            )
            .map_err(map_err)?;
            Ok(Settled::Done(letter))
        })
    }

    fn ops_record(&self, key: &str) -> Result<Option<OpsRecord>> {
        Ok(self.ops_records(key)?.into_iter().find(|r| r.key == key))
    }

    fn put_ops_record(&self, key: &str, body: &str, expected: Option<i64>) -> Result<bool> {
        let now = micros(self.now());
        self.write_txn(|tx| {
            let changed = match expected {
                None => tx.execute(
                    "INSERT INTO ops_records (key, version, body, updated_at) VALUES (?1, 1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![key, body, now],
                ),
                Some(v) => tx.execute(
                    "UPDATE ops_records SET version = version + 1, body = ?2, updated_at = ?3 WHERE key = ?1 AND version = ?4",
                    params![key, body, now, v],
                ),
            }
            .map_err(map_err)?;
            Ok(changed == 1)
        })
    }

    fn ops_records(&self, prefix: &str) -> Result<Vec<OpsRecord>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT key, version, body, updated_at FROM ops_records WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![prefix], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(map_err)?;
        rows.map(|row| {
            let (key, version, body, at) = row.map_err(map_err)?;
            Ok(OpsRecord {
                key,
                version,
                body,
                updated_at: from_micros(at)?,
            })
        })
        .collect()
    }

    fn consume(&self, take: &Take<'_>, handler: &mut dyn ConsumeHandler) -> Result<Consumed> {
        if is_same(take.bus, self) {
            self.consume_here(take, handler)
        } else {
            consume_apart(self, take, handler)
        }
    }

    fn landings(&self, partition: Partition) -> Result<Vec<Landing>> {
        query_landings(
            &self.lock(),
            "WHERE partition = ?1 ORDER BY job",
            params![partition.to_string()],
        )
    }

    fn landing_batches(&self, partition: Partition) -> Result<Vec<LandingBatch>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT job, batch, landed_at, recorded_at FROM landing_batches WHERE partition = ?1 ORDER BY job, batch")
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![partition.to_string()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(map_err)?;
        rows.map(|row| {
            let (job, batch, landed_at, recorded_at) = row.map_err(map_err)?;
            Ok(LandingBatch {
                job,
                partition,
                batch,
                landed_at: from_micros(landed_at)?,
                recorded_at: from_micros(recorded_at)?,
            })
        })
        .collect()
    }

    fn receipts(&self, partition: Partition) -> Result<Vec<CompletionReceipt>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT body FROM completion_receipts WHERE partition = ?1 ORDER BY id")
            .map_err(map_err)?;
        let bodies = stmt
            .query_map(params![partition.to_string()], |r| r.get::<_, String>(0))
            .map_err(map_err)?;
        bodies
            .map(|body| receipt_of(&body.map_err(map_err)?))
            .collect()
    }
    fn landings_between(&self, from: Partition, to: Partition) -> Result<Vec<Landing>> {
        query_landings(
            &self.lock(),
            "WHERE partition BETWEEN ?1 AND ?2 ORDER BY partition, job",
            params![from.to_string(), to.to_string()],
        )
    }

    fn runs_beyond(&self, keep: usize) -> Result<Vec<RunRecord>> {
        retention::runs_beyond(&self.lock(), keep)
    }

    fn delete_runs(&self, ids: &[RunId]) -> Result<u64> {
        self.write_txn(|tx| retention::delete_runs(tx, ids))
    }

    fn prune_outbox(&self, before: Timestamp, limit: usize) -> Result<u64> {
        self.write_txn(|tx| retention::prune_outbox(tx, before, limit))
    }

    fn prunable_outbox(&self, before: Timestamp) -> Result<u64> {
        retention::prunable_outbox(&self.lock(), before)
    }
}

fn query_landings(
    conn: &Connection,
    tail: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Landing>> {
    let sql = format!("SELECT job, partition, landed_at, latest_at, batches FROM landings {tail}");
    let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .map_err(map_err)?;
    rows.map(|row| {
        let (job, partition, first, latest, batches) = row.map_err(map_err)?;
        Ok(Landing {
            job,
            partition: partition_of(&partition)?,
            landed_at: from_micros(first)?,
            latest_at: from_micros(latest)?,
            batches: batches as u32,
        })
    })
    .collect()
}

fn query_runs(
    conn: &Connection,
    tail: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<RunRecord>> {
    let sql = format!(
        "SELECT run_id, processor, partition, holder, token, started_at, finished_at, status, rows_written, duplicates_dropped, error
         FROM runs {tail}"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
    let mut rows = stmt.query(args).map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(map_err)? {
        let partition: String = r.get(2).map_err(map_err)?;
        let finished: Option<i64> = r.get(6).map_err(map_err)?;
        out.push(RunRecord {
            run_id: RunId::new(r.get::<_, String>(0).map_err(map_err)?),
            processor: ProcessorName::new(r.get::<_, String>(1).map_err(map_err)?),
            partition: partition_of(&partition)?,
            holder: r.get(3).map_err(map_err)?,
            token: FenceToken::new(r.get::<_, i64>(4).map_err(map_err)? as u64),
            started_at: from_micros(r.get(5).map_err(map_err)?)?,
            finished_at: finished.map(from_micros).transpose()?,
            status: kind_of(
                &r.get::<_, String>(7).map_err(map_err)?,
                RunStatus::parse,
                "run status",
            )?,
            rows_written: r.get::<_, i64>(8).map_err(map_err)? as u64,
            duplicates_dropped: r.get::<_, i64>(9).map_err(map_err)? as u64,
            error: r.get(10).map_err(map_err)?,
        });
    }
    Ok(out)
}

fn query_outbox(
    conn: &Connection,
    tail: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<OutboxRow>> {
    let sql = format!(
        "SELECT id, topic, message_id, kind, partition, payload, created_at, published_at FROM outbox {tail}"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<i64>>(7)?,
            ))
        })
        .map_err(map_err)?;
    rows.map(|row| {
        let (id, topic, message_id, kind, partition, payload, created, published) =
            row.map_err(map_err)?;
        Ok(OutboxRow {
            id,
            created_at: from_micros(created)?,
            published_at: published.map(from_micros).transpose()?,
            row: NewOutboxRow {
                topic,
                message_id,
                kind: kind_of(&kind, OutboxKind::parse, "outbox kind")?,
                partition: partition_of(&partition)?,
                payload,
            },
        })
    })
    .collect()
}

/// A JSON scalar as the SQL value it is (rusqlite's own conversion would store JSON text).
fn pk_value(row: &Row, column: &str, index: usize) -> Result<SqlValue> {
    use serde_json::Value as J;
    match row.get(column) {
        None | Some(J::Null) => Err(Error::Permanent(format!(
            "row {index} has no value for primary-key column `{column}`"
        ))),
        Some(J::String(s)) => Ok(SqlValue::Text(s.clone())),
        Some(J::Bool(b)) => Ok(SqlValue::Integer(i64::from(*b))),
        Some(J::Number(n)) => Ok(match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Some(v) => Ok(SqlValue::Text(v.to_string())),
    }
}

fn partition_value(row: &Row, table: &TableSpec, index: usize) -> Result<String> {
    match row.get(&table.partition_column) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        _ => Err(Error::Permanent(format!(
            "row {index} of `{}` has no date in partition column `{}`",
            table.name, table.partition_column
        ))),
    }
}

/// Upserts rows with `token`; returns how many keys were new.
fn upsert_rows(tx: &Connection, table: &TableSpec, rows: &[Row], token: i64) -> Result<u64> {
    let cols: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
    let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    let n = cols.len();
    let exists_sql = format!(
        "SELECT 1 FROM {} WHERE {}",
        quote(&table.name),
        cols.iter()
            .zip(&placeholders)
            .map(|(c, p)| format!("{c} = {p}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    );
    let upsert_sql = format!(
        "INSERT INTO {t} ({cols}, _partition, _row, _token) VALUES ({ph}, ?{a}, ?{b}, ?{c})
         ON CONFLICT ({cols}) DO UPDATE SET _partition = excluded._partition, _row = excluded._row, _token = excluded._token",
        t = quote(&table.name),
        cols = cols.join(", "),
        ph = placeholders.join(", "),
        a = n + 1,
        b = n + 2,
        c = n + 3,
    );
    let mut exists = tx.prepare_cached(&exists_sql).map_err(map_err)?;
    let mut upsert = tx.prepare_cached(&upsert_sql).map_err(map_err)?;
    let mut inserted = 0;
    for (index, row) in rows.iter().enumerate() {
        let mut values: Vec<SqlValue> = Vec::with_capacity(n + 3);
        for c in &table.primary_key {
            values.push(pk_value(row, c, index)?);
        }
        if !exists
            .exists(rusqlite::params_from_iter(values.iter()))
            .map_err(map_err)?
        {
            inserted += 1;
        }
        values.push(SqlValue::Text(partition_value(row, table, index)?));
        values.push(SqlValue::Text(
            serde_json::to_string(row).map_err(|e| Error::Permanent(e.to_string()))?,
        ));
        values.push(SqlValue::Integer(token));
        upsert
            .execute(rusqlite::params_from_iter(values.iter()))
            .map_err(map_err)?;
    }
    Ok(inserted)
}

impl Warehouse for SqliteBackend {
    fn ensure_table(&self, table: &TableSpec) -> Result<()> {
        let cols: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {t} ({defs}, _partition TEXT NOT NULL, _row TEXT NOT NULL, _token INTEGER NOT NULL, PRIMARY KEY ({pk}));
             CREATE INDEX IF NOT EXISTS {idx} ON {t} (_partition);",
            t = quote(&table.name),
            defs = cols.join(", "),
            pk = cols.join(", "),
            idx = quote(&baton_core::names::partition_index(&table.name)),
        );
        self.lock().execute_batch(&sql).map_err(map_err)
    }

    fn land(&self, table: &TableSpec, rows: &[Row]) -> Result<u64> {
        self.write_txn(|tx| {
            upsert_rows(tx, table, rows, 0)?;
            Ok(rows.len() as u64)
        })
    }

    fn read(&self, table: &TableSpec, from: Partition, to: Partition) -> Result<Vec<Row>> {
        let conn = self.lock();
        let sql = format!(
            "SELECT _row FROM {} WHERE _partition BETWEEN ?1 AND ?2 ORDER BY _partition, rowid",
            quote(&table.name)
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
        let rows = stmt
            .query_map(params![from.to_string(), to.to_string()], |r| {
                r.get::<_, String>(0)
            })
            .map_err(map_err)?;
        rows.map(|r| {
            let text = r.map_err(map_err)?;
            match serde_json::from_str(&text) {
                Ok(serde_json::Value::Object(m)) => Ok(m),
                Ok(_) => Err(corrupt("row", "not an object")),
                Err(e) => Err(corrupt("row", e)),
            }
        })
        .collect()
    }

    fn row_count(&self, table: &TableSpec, partition: Partition) -> Result<u64> {
        let conn = self.lock();
        let sql = format!(
            "SELECT count(*) FROM {} WHERE _partition = ?1",
            quote(&table.name)
        );
        conn.prepare_cached(&sql)
            .map_err(map_err)?
            .query_row(params![partition.to_string()], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(map_err)
    }

    fn measure(
        &self,
        table: &TableSpec,
        partition: Partition,
        column: Option<&str>,
    ) -> Result<(u64, u64)> {
        let conn = self.lock();
        // `column` is a validated identifier: safe inside the JSON path.
        let non_null = match column {
            Some(c) => format!("count(json_extract(_row, '$.{c}'))"),
            None => "count(*)".to_owned(),
        };
        let sql = format!(
            "SELECT count(*), {non_null} FROM {} WHERE _partition = ?1",
            quote(&table.name)
        );
        conn.prepare_cached(&sql)
            .map_err(map_err)?
            .query_row(params![partition.to_string()], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })
            .map_err(map_err)
    }

    fn distinct_values(
        &self,
        table: &TableSpec,
        partition: Partition,
        column: &str,
    ) -> Result<BTreeSet<String>> {
        let conn = self.lock();
        // The JSON path is bound, not spliced. `->>` gives a string's text, `->` any other
        // value's JSON text (so `true` stays `true`, not 1).
        let sql = format!(
            "SELECT DISTINCT CASE json_type(_row, ?2) WHEN 'text' THEN _row ->> ?2 ELSE _row -> ?2 END \
             FROM {} WHERE _partition = ?1 AND json_type(_row, ?2) IS NOT NULL AND json_type(_row, ?2) <> 'null'",
            quote(&table.name)
        );
        let mut stmt = conn.prepare(&sql).map_err(map_err)?;
        let values = stmt
            .query_map(params![partition.to_string(), format!("$.{column}")], |r| {
                r.get::<_, String>(0)
            })
            .map_err(map_err)?;
        values
            .collect::<std::result::Result<BTreeSet<String>, _>>()
            .map_err(map_err)
    }

    fn duplicate_rows(&self, table: &TableSpec, partition: Partition) -> Result<u64> {
        let conn = self.lock();
        let cols: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
        let sql = format!(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {} WHERE _partition = ?1 GROUP BY {} HAVING count(*) > 1)",
            quote(&table.name),
            cols.join(", ")
        );
        conn.prepare_cached(&sql)
            .map_err(map_err)?
            .query_row(params![partition.to_string()], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(map_err)
    }

    fn row_counts(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
    ) -> Result<BTreeMap<Partition, u64>> {
        let sql = format!(
            "SELECT _partition, count(*) FROM {} WHERE _partition BETWEEN ?1 AND ?2 GROUP BY _partition",
            quote(&table.name)
        );
        partition_counts(&self.lock(), &sql, from, to)
    }

    fn duplicate_rows_between(
        &self,
        table: &TableSpec,
        from: Partition,
        to: Partition,
    ) -> Result<BTreeMap<Partition, u64>> {
        let cols: Vec<String> = table.primary_key.iter().map(|c| quote(c)).collect();
        let sql = format!(
            "SELECT _partition, sum(n - 1) FROM (SELECT _partition, count(*) AS n FROM {} WHERE _partition BETWEEN ?1 AND ?2 GROUP BY _partition, {} HAVING count(*) > 1) GROUP BY _partition",
            quote(&table.name),
            cols.join(", ")
        );
        partition_counts(&self.lock(), &sql, from, to)
    }
}

/// A `(partition, count)` query over `[from, to]` as a map.
fn partition_counts(
    conn: &Connection,
    sql: &str,
    from: Partition,
    to: Partition,
) -> Result<BTreeMap<Partition, u64>> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let rows = stmt
        .query_map(params![from.to_string(), to.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(map_err)?;
    rows.map(|row| {
        let (partition, n) = row.map_err(map_err)?;
        Ok((partition_of(&partition)?, n as u64))
    })
    .collect()
}

/// In process, the commits that create work raise the signal; another process's commit is
/// seen by the file watch and confirmed by `PRAGMA data_version` (see [`wake`]).
impl baton_ports::Wake for SqliteBackend {
    fn wait(&self, timeout: SignedDuration) -> Result<bool> {
        use baton_ports::wake::{LOCAL, deadline, std_duration};
        use std::time::Duration;
        let end = deadline(std_duration(timeout));
        let watching = self.watch.ensure_started();
        // Without a file watch, another process's commit is looked for by polling the
        // version (a read of shared memory), not left to the service's next deadline.
        let polling = !watching && self.watch.is_file();
        if (watching || polling) && !self.watch.has_baseline() {
            // The version later waits compare with.
            self.watch.changed(self.data_version()?);
        }
        // The file changes when a commit's frames are written, a moment before the commit
        // is visible: after a change with no new version yet, look again every 2 ms for
        // half a second (this process's own commits cost that much, and nothing when idle).
        let mut recheck_until = None;
        loop {
            let next = match recheck_until {
                Some(_) => end.min(deadline(Duration::from_millis(2))),
                None if polling => end.min(deadline(wake::POLL_WITHOUT_WATCH)),
                None => end,
            };
            let raised = self.watch.signal.take_by(next);
            if raised & LOCAL != 0 {
                return Ok(true);
            }
            if (raised != 0 || recheck_until.is_some() || polling)
                && self.watch.changed(self.data_version()?)
            {
                return Ok(true);
            }
            if raised != 0 {
                recheck_until = Some(deadline(Duration::from_millis(500)));
            } else if recheck_until.is_some_and(|until| deadline(Duration::ZERO) >= until) {
                recheck_until = None;
            }
            if deadline(Duration::ZERO) >= end {
                return Ok(false);
            }
        }
    }
}

impl SqliteBackend {
    /// `PRAGMA data_version` of this backend's connection: it changes when another
    /// connection (another process) commits.
    fn data_version(&self) -> Result<i64> {
        self.lock()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(map_err)
    }
}

/// Appends messages to the bus's log in the caller's transaction; a message id already on
/// its topic is dropped. One statement for `publish`, `publish_batch` and the relay.
fn insert_messages(
    tx: &Connection,
    messages: &[Outgoing<'_>],
    now: Timestamp,
) -> Result<Vec<Published>> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO bus_messages (topic, message_id, payload, published_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )
        .map_err(map_err)?;
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let n = stmt
            .execute(params![m.topic, m.message_id, m.payload, micros(now)])
            .map_err(map_err)?;
        out.push(if n == 1 {
            Published::New
        } else {
            Published::Duplicate
        });
    }
    Ok(out)
}

impl Bus for SqliteBackend {
    fn publish(&self, topic: &str, message_id: &str, payload: &[u8]) -> Result<Published> {
        let now = self.now();
        let message = Outgoing {
            topic,
            message_id,
            payload,
        };
        self.write_txn(|tx| Ok(insert_messages(tx, &[message], now)?[0]))
            .inspect(|p| {
                if *p == Published::New {
                    self.watch.raise();
                }
            })
    }

    fn publish_batch(&self, messages: &[Outgoing<'_>]) -> Result<Vec<Published>> {
        let now = self.now();
        self.write_txn(|tx| insert_messages(tx, messages, now))
            .inspect(|out| {
                if out.contains(&Published::New) {
                    self.watch.raise();
                }
            })
    }

    fn fetch(
        &self,
        topic: &str,
        group: &str,
        max: usize,
        settings: GroupSettings,
    ) -> Result<Vec<Delivery>> {
        let now = self.now();
        let visible_again = micros(now.checked_add(settings.ack_wait).unwrap_or(now));
        self.write_txn(|tx| {
            tx.execute(
                "INSERT INTO bus_groups (topic, grp, cursor) VALUES (?1, ?2, 0) ON CONFLICT DO NOTHING",
                params![topic, group],
            )
            .map_err(map_err)?;
            // Move the group's cursor over newly published messages, creating a delivery
            // record for each (a rowid range past the cursor: `+topic` keeps the planner off
            // the topic index, which would scan every message of the topic on each fetch).
            tx.execute(
                "INSERT INTO bus_deliveries (topic, grp, seq, attempts, visible_at)
                 SELECT ?1, ?2, seq, 0, 0 FROM bus_messages
                 WHERE +topic = ?1 AND seq > (SELECT cursor FROM bus_groups WHERE topic = ?1 AND grp = ?2)",
                params![topic, group],
            )
            .map_err(map_err)?;
            tx.execute(
                // Only messages past the cursor are scanned (a rowid range; `+topic` keeps
                // the planner off the topic index, which would scan the whole topic).
                "UPDATE bus_groups SET cursor = coalesce(
                    (SELECT max(seq) FROM bus_messages WHERE +topic = ?1 AND seq > bus_groups.cursor), cursor)
                 WHERE topic = ?1 AND grp = ?2",
                params![topic, group],
            )
            .map_err(map_err)?;
            // Pick by the primary key's order, then update each picked row by its key: a
            // row-value `IN (subquery)` in the UPDATE would scan the whole table.
            let mut pick = tx
                .prepare_cached(
                    "SELECT seq, attempts FROM bus_deliveries
                     WHERE topic = ?1 AND grp = ?2 AND visible_at <= ?3 ORDER BY seq LIMIT ?4",
                )
                .map_err(map_err)?;
            let candidates: Vec<(i64, i64)> = pick
                .query_map(params![topic, group, micros(now), max as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(map_err)?
                .collect::<std::result::Result<_, _>>()
                .map_err(map_err)?;
            let mut lease = tx
                .prepare_cached(
                    "UPDATE bus_deliveries SET attempts = attempts + 1, visible_at = ?4
                     WHERE topic = ?1 AND grp = ?2 AND seq = ?3",
                )
                .map_err(map_err)?;
            let mut picked = Vec::with_capacity(candidates.len());
            for (seq, attempts) in candidates {
                lease
                    .execute(params![topic, group, seq, visible_again])
                    .map_err(map_err)?;
                picked.push((seq, attempts + 1));
            }
            let mut msg = tx
                .prepare_cached("SELECT message_id, payload FROM bus_messages WHERE seq = ?1")
                .map_err(map_err)?;
            let mut out = Vec::with_capacity(picked.len());
            for (seq, attempts) in picked {
                let (message_id, payload): (String, Vec<u8>) = msg
                    .query_row(params![seq], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(map_err)?;
                out.push(Delivery { seq, message_id, payload, attempt: attempts as u32 });
            }
            out.sort_by_key(|d| d.seq);
            Ok(out)
        })
    }

    fn ack(&self, topic: &str, group: &str, seqs: &[i64]) -> Result<()> {
        self.write_txn(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "DELETE FROM bus_deliveries WHERE topic = ?1 AND grp = ?2 AND seq = ?3",
                )
                .map_err(map_err)?;
            for seq in seqs {
                stmt.execute(params![topic, group, seq]).map_err(map_err)?;
            }
            Ok(())
        })
    }

    fn pending(&self, topic: &str, group: &str) -> Result<u64> {
        let conn = self.lock();
        let unacked: i64 = conn
            .query_row(
                "SELECT count(*) FROM bus_deliveries WHERE topic = ?1 AND grp = ?2",
                params![topic, group],
                |r| r.get(0),
            )
            .map_err(map_err)?;
        let unseen: i64 = conn
            .query_row(
                "SELECT count(*) FROM bus_messages WHERE topic = ?1 AND seq > coalesce((SELECT cursor FROM bus_groups WHERE topic = ?1 AND grp = ?2), 0)",
                params![topic, group],
                |r| r.get(0),
            )
            .map_err(map_err)?;
        Ok((unacked + unseen) as u64)
    }

    fn published_since(&self, topic: &str, since: Timestamp) -> Result<u64> {
        self.lock()
            .query_row(
                "SELECT count(*) FROM bus_messages WHERE topic = ?1 AND published_at >= ?2",
                params![topic, micros(since)],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(map_err)
    }

    fn prune_consumed(&self, before: Timestamp, limit: usize) -> Result<Option<u64>> {
        self.write_txn(|tx| retention::prune_consumed(tx, before, limit))
            .map(Some)
    }

    fn prunable_consumed(&self, before: Timestamp) -> Result<Option<u64>> {
        retention::prunable_consumed(&self.lock(), before).map(Some)
    }

    fn messages(&self, topic: &str) -> Result<Vec<Delivery>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT seq, message_id, payload FROM bus_messages WHERE topic = ?1 ORDER BY seq",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![topic], |r| {
                Ok(Delivery {
                    seq: r.get(0)?,
                    message_id: r.get(1)?,
                    payload: r.get(2)?,
                    attempt: 0,
                })
            })
            .map_err(map_err)?;
        rows.collect::<std::result::Result<_, _>>().map_err(map_err)
    }
}

impl SqliteBackend {
    /// Runs `f` in a plain write transaction on the backend's own connection, outside
    /// baton's rules: for the bench's baselines (`baton_backends::baselines`), which measure
    /// what the storage does without baton.
    pub fn with_write_transaction<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.write_txn(f)
    }
}
