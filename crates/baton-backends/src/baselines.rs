//! The bench's baselines: the work `baton bench` measures, done through the same driver and
//! connection without baton (no lease, no fence, no outbox, no step), so each figure stands
//! beside what the storage itself does. They live here, with the registry, and not in the
//! adapters: an adapter holds only what baton runs.

use baton_core::config::TableSpec;
use baton_core::model::Row;
use baton_ports::{Error, Result};
use baton_postgres::PgBackend;
use baton_sqlite::SqliteBackend;
use rusqlite::types::Value as SqlValue;

/// Plain work on a backend, for comparison.
pub trait Baselines: Send + Sync {
    /// `n` single-row upserts (half of them to a key already written), `batch` per
    /// transaction: what the orchestrator's document writes cost at the storage.
    fn upserts(&self, n: usize, batch: usize) -> Result<()>;
    /// A plain INSERT of `rows` (already unique) into a fresh table of the warehouse's
    /// layout, in one transaction; false where this backend has no such baseline.
    fn plain_insert(&self, table: &TableSpec, rows: &[Row]) -> Result<bool>;
    /// `per_thread` single-row UPDATE transactions from each of `threads` threads, each on
    /// its own row; false where this backend has no such baseline.
    fn updates(&self, threads: usize, per_thread: usize) -> Result<bool>;
}

fn sqlite_err(e: rusqlite::Error) -> Error {
    Error::Permanent(format!("baseline: {e}"))
}

fn pg_err(e: postgres::Error) -> Error {
    Error::Retryable(format!("baseline: {e}"))
}

const UPSERT_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS bench_baseline (k TEXT PRIMARY KEY, v TEXT NOT NULL)";

/// A JSON scalar as the SQL value SQLite stores for it.
fn sql_value(value: Option<&serde_json::Value>) -> SqlValue {
    use serde_json::Value as J;
    match value {
        None | Some(J::Null) => SqlValue::Null,
        Some(J::String(s)) => SqlValue::Text(s.clone()),
        Some(J::Bool(b)) => SqlValue::Integer(i64::from(*b)),
        Some(J::Number(n)) => n
            .as_i64()
            .map(SqlValue::Integer)
            .unwrap_or_else(|| SqlValue::Real(n.as_f64().unwrap_or_default())),
        Some(other) => SqlValue::Text(other.to_string()),
    }
}

impl Baselines for SqliteBackend {
    fn upserts(&self, n: usize, batch: usize) -> Result<()> {
        self.with_write_transaction(|tx| tx.execute_batch(UPSERT_TABLE).map_err(sqlite_err))?;
        let mut start = 0;
        while start < n {
            let end = (start + batch.max(1)).min(n);
            self.with_write_transaction(|tx| {
                let mut stmt = tx
                    .prepare_cached("INSERT INTO bench_baseline (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
                    .map_err(sqlite_err)?;
                for i in start..end {
                    stmt.execute(rusqlite::params![format!("k{}", i / 2), format!("v{i}")])
                        .map_err(sqlite_err)?;
                }
                Ok(())
            })?;
            start = end;
        }
        Ok(())
    }

    fn plain_insert(&self, table: &TableSpec, rows: &[Row]) -> Result<bool> {
        let name = format!("\"{}_plain\"", table.name);
        let cols: Vec<String> = table
            .primary_key
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect();
        let n = cols.len();
        let create = format!(
            "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} ({defs}, _partition TEXT NOT NULL, _row TEXT NOT NULL, _token INTEGER NOT NULL, PRIMARY KEY ({defs}))",
            defs = cols.join(", ")
        );
        let insert = format!(
            "INSERT INTO {name} ({}, _partition, _row, _token) VALUES ({})",
            cols.join(", "),
            (1..=n + 3)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.with_write_transaction(|tx| {
            tx.execute_batch(&create).map_err(sqlite_err)?;
            let mut stmt = tx.prepare_cached(&insert).map_err(sqlite_err)?;
            for row in rows {
                let mut values: Vec<SqlValue> = table
                    .primary_key
                    .iter()
                    .map(|c| sql_value(row.get(c)))
                    .collect();
                values.push(sql_value(row.get(&table.partition_column)));
                values.push(SqlValue::Text(
                    serde_json::Value::Object(row.clone()).to_string(),
                ));
                values.push(SqlValue::Integer(0));
                stmt.execute(rusqlite::params_from_iter(values.iter()))
                    .map_err(sqlite_err)?;
            }
            Ok(true)
        })
    }

    fn updates(&self, _threads: usize, _per_thread: usize) -> Result<bool> {
        Ok(false)
    }
}

impl Baselines for PgBackend {
    fn upserts(&self, n: usize, batch: usize) -> Result<()> {
        self.with_transaction(|tx| tx.batch_execute(UPSERT_TABLE).map_err(pg_err))?;
        let mut start = 0;
        while start < n {
            let end = (start + batch.max(1)).min(n);
            self.with_transaction(|tx| {
                let stmt = tx
                    .prepare("INSERT INTO bench_baseline (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
                    .map_err(pg_err)?;
                for i in start..end {
                    tx.execute(&stmt, &[&format!("k{}", i / 2), &format!("v{i}")])
                        .map_err(pg_err)?;
                }
                Ok(())
            })?;
            start = end;
        }
        Ok(())
    }

    fn plain_insert(&self, _table: &TableSpec, _rows: &[Row]) -> Result<bool> {
        Ok(false)
    }

    fn updates(&self, threads: usize, per_thread: usize) -> Result<bool> {
        self.with_transaction(|tx| {
            tx.batch_execute("CREATE TABLE IF NOT EXISTS bench_counter (id INTEGER PRIMARY KEY, v BIGINT NOT NULL)")
                .map_err(pg_err)?;
            for id in 0..threads as i32 {
                tx.execute("INSERT INTO bench_counter (id, v) VALUES ($1, 0) ON CONFLICT DO NOTHING", &[&id])
                    .map_err(pg_err)?;
            }
            Ok(())
        })?;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads as i32)
                .map(|id| {
                    s.spawn(move || -> Result<()> {
                        for _ in 0..per_thread {
                            self.with_transaction(|tx| {
                                tx.execute(
                                    "UPDATE bench_counter SET v = v + 1 WHERE id = $1",
                                    &[&id],
                                )
                                .map_err(pg_err)?;
                                Ok(())
                            })?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Permanent("a bench thread panicked".into())))
            })
        })?;
        Ok(true)
    }
}
