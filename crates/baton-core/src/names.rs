//! The SQL names baton owns and how names are compared: the tables, indexes and columns
//! baton itself creates, the columns a database reserves, and the one rule for when two
//! names are the same relation on every backend.
//!
//! Config validation rejects a table or column that would collide with one of these
//! (`config.rs`), and the SQL adapters name a warehouse table's partition index with
//! [`partition_index`], so the check and the DDL cannot drift apart. A test in each SQL
//! adapter asserts that every table and index its schema creates is listed here.

/// The tables and indexes baton's own schema creates (SQLite and PostgreSQL alike): a
/// warehouse table of the same name would be baton's table.
pub const BATON_RELATIONS: &[&str] = &[
    "baton_schema_migrations",
    "bus_deliveries",
    "bus_groups",
    "bus_messages",
    "bus_messages_published",
    "completion_receipts",
    "completion_receipts_date",
    "dead_letters",
    "dead_letters_state",
    "documents",
    "fences",
    "landing_batches",
    "landings",
    "leases",
    "ops_records",
    "outbox",
    "outbox_partition",
    "outbox_unpublished",
    "requests",
    "runs",
    "runs_finished",
    "runs_partition",
];

/// The columns baton adds to every warehouse table next to its primary key.
pub const BATON_COLUMNS: &[&str] = &["_partition", "_row", "_token"];

/// Column names a database keeps for itself: SQLite's row id aliases and PostgreSQL's
/// system columns (which it refuses in `CREATE TABLE`).
pub const SYSTEM_COLUMNS: &[&str] = &[
    "rowid", "oid", "_rowid_", "ctid", "xmin", "xmax", "cmin", "cmax", "tableoid",
];

/// The prefix SQLite reserves for its own tables.
pub const SQLITE_RESERVED_PREFIX: &str = "sqlite_";

/// PostgreSQL's limit on an identifier, in bytes; a longer one is silently truncated.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The name of a warehouse table's index on `_partition`.
pub fn partition_index(table: &str) -> String {
    format!("{table}__partition")
}

/// The form in which two names are the same relation or column on every backend: ASCII
/// case folded (SQLite compares identifiers without ASCII case, quoted or not) and cut
/// at [`MAX_IDENTIFIER_BYTES`] (PostgreSQL truncates longer ones). baton quotes every
/// identifier, so PostgreSQL alone would keep `Runs` and `runs` apart; a config must mean
/// the same tables on both backends, so the stricter rule applies everywhere.
pub fn folded(name: &str) -> String {
    let mut f = name.to_ascii_lowercase();
    if f.len() > MAX_IDENTIFIER_BYTES {
        // Identifiers are ASCII (config validation), so any byte index is a char boundary.
        let mut cut = MAX_IDENTIFIER_BYTES;
        while !f.is_char_boundary(cut) {
            cut -= 1;
        }
        f.truncate(cut);
    }
    f
}

/// Why a warehouse table name is baton's or the database's, if it is.
pub fn reserved_table(name: &str) -> Option<String> {
    let f = folded(name);
    if BATON_RELATIONS.contains(&f.as_str()) {
        return Some(format!("`{name}` is one of baton's own tables or indexes"));
    }
    if f.starts_with(SQLITE_RESERVED_PREFIX) {
        return Some(format!(
            "`{name}` starts with `{SQLITE_RESERVED_PREFIX}`, which SQLite keeps for itself"
        ));
    }
    None
}

/// Why a primary-key column name is baton's or the database's, if it is.
pub fn reserved_column(name: &str) -> Option<String> {
    let f = folded(name);
    if BATON_COLUMNS.contains(&f.as_str()) {
        return Some(format!(
            "`{name}` is a column baton adds to every table ({})",
            BATON_COLUMNS.join(", ")
        ));
    }
    if SYSTEM_COLUMNS.contains(&f.as_str()) {
        return Some(format!(
            "`{name}` is a system column name of SQLite or PostgreSQL"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_without_ascii_case_and_cut_at_postgres_limit() {
        assert_eq!(folded("Team_Offense"), folded("team_offense"));
        let long = "a".repeat(70);
        assert_eq!(folded(&long).len(), MAX_IDENTIFIER_BYTES);
        assert_eq!(folded(&long), folded(&"A".repeat(64)));
    }

    #[test]
    fn baton_tables_and_columns_are_reserved_in_any_case() {
        assert!(reserved_table("Runs").is_some());
        assert!(reserved_table("SQLITE_stat1").is_some());
        assert!(reserved_table("team_offense_game_summary").is_none());
        assert!(reserved_column("_TOKEN").is_some());
        assert!(reserved_column("xmin").is_some());
        assert!(reserved_column("game_id").is_none());
    }
}
