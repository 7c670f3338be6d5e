//! Retention on SQLite: the statements behind `StateStore::runs_beyond`, `delete_runs`,
//! `prune_outbox` and `Bus::prune_consumed` (the rules are `baton_core::retention`'s; each
//! delete is one short `BEGIN IMMEDIATE` transaction of at most a batch of rows).

use crate::{map_err, query_runs};
use baton_core::model::RunId;
use baton_ports::stored::micros;
use baton_ports::{Result, RunRecord};
use jiff::Timestamp;
use rusqlite::{Connection, Transaction, params};

/// Every run of the (processor, partition) pairs with more than `keep` runs.
pub(crate) fn runs_beyond(conn: &Connection, keep: usize) -> Result<Vec<RunRecord>> {
    query_runs(
        conn,
        "WHERE (processor, partition) IN
            (SELECT processor, partition FROM runs GROUP BY processor, partition HAVING count(*) > ?1)
         ORDER BY processor, partition, started_at, rowid",
        params![keep as i64],
    )
}

/// Removes the runs with these ids that are not `running`.
pub(crate) fn delete_runs(tx: &Transaction<'_>, ids: &[RunId]) -> Result<u64> {
    let mut stmt = tx
        .prepare_cached("DELETE FROM runs WHERE run_id = ?1 AND status <> 'running'")
        .map_err(map_err)?;
    let mut n = 0;
    for id in ids {
        n += stmt.execute(params![id.as_str()]).map_err(map_err)? as u64;
    }
    Ok(n)
}

/// Relayed completion rows published before the cutoff (`?1`), oldest first.
const OUTBOX_PRUNABLE: &str =
    "FROM outbox WHERE kind = 'completion' AND published_at IS NOT NULL AND published_at < ?1";

/// Removes up to `limit` of [`OUTBOX_PRUNABLE`].
pub(crate) fn prune_outbox(tx: &Transaction<'_>, before: Timestamp, limit: usize) -> Result<u64> {
    let sql = format!(
        "DELETE FROM outbox WHERE id IN (SELECT id {OUTBOX_PRUNABLE} ORDER BY id LIMIT ?2)"
    );
    tx.execute(&sql, params![micros(before), limit as i64])
        .map(|n| n as u64)
        .map_err(map_err)
}

/// How many rows [`prune_outbox`] would remove in all.
pub(crate) fn prunable_outbox(conn: &Connection, before: Timestamp) -> Result<u64> {
    let sql = format!("SELECT count(*) {OUTBOX_PRUNABLE}");
    conn.query_row(&sql, params![micros(before)], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(map_err)
}

/// Messages published before the cutoff (`?1`) that every group of their topic has passed:
/// at or before the lowest cursor (NULL, so nothing, for a topic without a group) and with no
/// delivery outstanding in any group. `seq` is AUTOINCREMENT, so a removed seq is never reused
/// and the cursors stay right.
const BUS_PRUNABLE: &str = "FROM bus_messages m WHERE m.published_at < ?1
    AND m.seq <= (SELECT min(g.cursor) FROM bus_groups g WHERE g.topic = m.topic)
    AND NOT EXISTS (SELECT 1 FROM bus_deliveries d WHERE d.topic = m.topic AND d.seq = m.seq)";

/// Removes up to `limit` of [`BUS_PRUNABLE`], oldest first.
pub(crate) fn prune_consumed(tx: &Transaction<'_>, before: Timestamp, limit: usize) -> Result<u64> {
    let sql = format!(
        "DELETE FROM bus_messages WHERE seq IN (SELECT m.seq {BUS_PRUNABLE} ORDER BY m.seq LIMIT ?2)"
    );
    tx.execute(&sql, params![micros(before), limit as i64])
        .map(|n| n as u64)
        .map_err(map_err)
}

/// How many messages [`prune_consumed`] would remove in all.
pub(crate) fn prunable_consumed(conn: &Connection, before: Timestamp) -> Result<u64> {
    let sql = format!("SELECT count(*) {BUS_PRUNABLE}");
    conn.query_row(&sql, params![micros(before)], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(map_err)
}
