//! Retention on PostgreSQL: the statements behind `StateStore::runs_beyond`, `delete_runs`
//! and `prune_outbox` (the rules are `baton_core::retention`'s; each delete is one short
//! transaction of at most a batch of rows). The bus is NATS, whose streams keep their own
//! retention.

use crate::{RUN_COLUMNS, Tx, pg_err, run_from};
use baton_core::model::RunId;
use baton_ports::stored::micros;
use baton_ports::{Result, RunRecord};
use jiff::Timestamp;

/// Every run of the (processor, partition) pairs with more than `keep` runs.
pub(crate) fn runs_beyond(tx: &mut Tx<'_>, keep: usize) -> Result<Vec<RunRecord>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE (processor, partition) IN
            (SELECT processor, partition FROM runs GROUP BY processor, partition HAVING count(*) > $1)
         ORDER BY processor, partition, started_at, seq"
    );
    tx.query(sql.as_str(), &[&(keep as i64)])
        .map_err(|e| pg_err(&e))?
        .iter()
        .map(run_from)
        .collect()
}

/// Removes the runs with these ids that are not `running`.
pub(crate) fn delete_runs(tx: &mut Tx<'_>, ids: &[RunId]) -> Result<u64> {
    let ids: Vec<&str> = ids.iter().map(RunId::as_str).collect();
    tx.execute(
        "DELETE FROM runs WHERE run_id = ANY($1) AND status <> 'running'",
        &[&ids],
    )
    .map_err(|e| pg_err(&e))
}

/// Relayed completion rows published before the cutoff (`$1`).
const OUTBOX_PRUNABLE: &str =
    "FROM outbox WHERE kind = 'completion' AND published_at IS NOT NULL AND published_at < $1";

/// Removes up to `limit` of [`OUTBOX_PRUNABLE`], oldest first; rows another transaction
/// holds locked are skipped (the next batch takes them).
pub(crate) fn prune_outbox(tx: &mut Tx<'_>, before: Timestamp, limit: usize) -> Result<u64> {
    let sql = format!(
        "DELETE FROM outbox WHERE id IN (SELECT id {OUTBOX_PRUNABLE} ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)"
    );
    tx.execute(sql.as_str(), &[&micros(before), &(limit as i64)])
        .map_err(|e| pg_err(&e))
}

/// How many rows [`prune_outbox`] would remove in all.
pub(crate) fn prunable_outbox(tx: &mut Tx<'_>, before: Timestamp) -> Result<u64> {
    let sql = format!("SELECT count(*) {OUTBOX_PRUNABLE}");
    tx.query_one(sql.as_str(), &[&micros(before)])
        .map(|r| r.get::<_, i64>(0) as u64)
        .map_err(|e| pg_err(&e))
}
