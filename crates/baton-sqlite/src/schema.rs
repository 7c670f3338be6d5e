//! The SQLite schema and its versioned migrations (`PRAGMA user_version`).

use baton_ports::{Error, Result};
use rusqlite::Connection;

/// Migrations in order; the database's `user_version` says how many have been applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE documents (
    gate TEXT NOT NULL, partition TEXT NOT NULL, version INTEGER NOT NULL,
    completed_count INTEGER NOT NULL, triggered INTEGER NOT NULL, body TEXT NOT NULL,
    updated_at INTEGER NOT NULL, PRIMARY KEY (gate, partition));
CREATE TABLE leases (
    processor TEXT NOT NULL, partition TEXT NOT NULL, holder TEXT NOT NULL, token INTEGER NOT NULL,
    renewed_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, released INTEGER NOT NULL,
    follow_up INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (processor, partition));
CREATE TABLE fences (
    processor TEXT NOT NULL, partition TEXT NOT NULL, newest_token INTEGER NOT NULL,
    PRIMARY KEY (processor, partition));
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, processor TEXT NOT NULL, partition TEXT NOT NULL, holder TEXT NOT NULL,
    token INTEGER NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER, status TEXT NOT NULL,
    rows_written INTEGER NOT NULL, duplicates_dropped INTEGER NOT NULL, error TEXT);
CREATE INDEX runs_partition ON runs (partition);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, message_id TEXT NOT NULL, kind TEXT NOT NULL,
    partition TEXT NOT NULL, payload TEXT NOT NULL, created_at INTEGER NOT NULL, published_at INTEGER);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_partition ON outbox (kind, partition);
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, message_id TEXT, payload TEXT NOT NULL,
    reason TEXT NOT NULL, recorded_at INTEGER NOT NULL);
CREATE TABLE landings (
    job TEXT NOT NULL, partition TEXT NOT NULL, landed_at INTEGER NOT NULL, PRIMARY KEY (job, partition));
CREATE TABLE bus_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, message_id TEXT NOT NULL, payload BLOB NOT NULL,
    published_at INTEGER NOT NULL, UNIQUE (topic, message_id));
CREATE TABLE bus_groups (topic TEXT NOT NULL, grp TEXT NOT NULL, cursor INTEGER NOT NULL, PRIMARY KEY (topic, grp));
CREATE TABLE bus_deliveries (
    topic TEXT NOT NULL, grp TEXT NOT NULL, seq INTEGER NOT NULL, attempts INTEGER NOT NULL,
    visible_at INTEGER NOT NULL, PRIMARY KEY (topic, grp, seq));
"#,
    r#"
CREATE TABLE requests (
    processor TEXT NOT NULL, partition TEXT NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL,
    since INTEGER NOT NULL, PRIMARY KEY (processor, partition));
CREATE INDEX runs_finished ON runs (finished_at);
CREATE INDEX bus_messages_published ON bus_messages (topic, published_at);
"#,
    r#"
ALTER TABLE outbox ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
CREATE TABLE ops_records (
    key TEXT PRIMARY KEY, version INTEGER NOT NULL, body TEXT NOT NULL, updated_at INTEGER NOT NULL);
"#,
    r#"
ALTER TABLE landings ADD COLUMN latest_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE landings ADD COLUMN batches INTEGER NOT NULL DEFAULT 1;
UPDATE landings SET latest_at = landed_at;
"#,
    // Dead letters keep their payload's bytes (a BLOB, not text that a non-UTF-8 payload
    // would not survive), and have a state: open, replayed or retired.
    r#"
CREATE TABLE dead_letters_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, message_id TEXT, payload BLOB NOT NULL,
    reason TEXT NOT NULL, recorded_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'open', settled_at INTEGER, note TEXT);
INSERT INTO dead_letters_v2 (id, topic, message_id, payload, reason, recorded_at)
    SELECT id, topic, message_id, CAST(payload AS BLOB), reason, recorded_at FROM dead_letters;
DROP TABLE dead_letters;
ALTER TABLE dead_letters_v2 RENAME TO dead_letters;
CREATE INDEX dead_letters_state ON dead_letters (state, id);
"#,
    // The timeline's histories: every landing batch and every completion receipt, the newest
    // few hundred per date (the engine trims them in the transaction that adds one).
    r#"
CREATE TABLE landing_batches (
    partition TEXT NOT NULL, job TEXT NOT NULL, batch INTEGER NOT NULL, landed_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL, PRIMARY KEY (partition, job, batch));
CREATE TABLE completion_receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, partition TEXT NOT NULL, gate TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX completion_receipts_date ON completion_receipts (partition, gate, id);
"#,
];

/// Why a database opened read-only cannot be used.
#[derive(Debug)]
pub enum Unreadable {
    /// SQLite refused (e.g. no lock file could be made).
    Sqlite(rusqlite::Error),
    /// The schema is at `found`, this baton needs `needed` (migrations cannot run read-only).
    Version { found: i64, needed: usize },
}

impl Unreadable {
    /// As the port's error, naming the file and the fix.
    pub fn into_error(self, path: &std::path::Path) -> Error {
        match self {
            Unreadable::Sqlite(e) => {
                Error::Permanent(format!("cannot read {}: {e}", path.display()))
            }
            Unreadable::Version { found, needed } if (found as usize) < needed => {
                Error::Permanent(format!(
                    "database {} has schema version {found}, older than this baton's ({needed}), and is opened read-only: run `baton migrate` as a user who may write it",
                    path.display()
                ))
            }
            Unreadable::Version { found, needed } => Error::Permanent(format!(
                "database {} has schema version {found}, newer than this baton's ({needed}); upgrade baton",
                path.display()
            )),
        }
    }
}

/// Checks, without writing, that the database's schema is the one this baton writes.
pub fn check_current(conn: &Connection) -> std::result::Result<(), Unreadable> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(Unreadable::Sqlite)?;
    if found as usize != MIGRATIONS.len() {
        return Err(Unreadable::Version {
            found,
            needed: MIGRATIONS.len(),
        });
    }
    Ok(())
}

/// Applies the migrations the database has not seen, each in its own transaction.
pub fn migrate(conn: &Connection) -> Result<()> {
    let applied: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| Error::Permanent(format!("cannot read schema version: {e}")))?;
    if applied as usize > MIGRATIONS.len() {
        return Err(Error::Permanent(format!(
            "database schema version {applied} is newer than this baton ({}); upgrade baton",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .map_err(|e| Error::Permanent(format!("migration {} failed: {e}", i + 1)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Config validation keeps warehouse tables off baton's names
    /// (`baton_core::names::BATON_RELATIONS`): every table and index this schema creates
    /// must be on that list.
    #[test]
    fn every_relation_of_the_schema_is_reserved_from_warehouse_tables() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
            .unwrap();
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert!(names.len() > 10, "{names:?}");
        for name in names {
            assert!(
                baton_core::names::BATON_RELATIONS.contains(&name.as_str()),
                "`{name}` is created by the schema but not in BATON_RELATIONS"
            );
        }
    }
}
