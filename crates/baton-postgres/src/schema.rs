//! Versioned migrations, kept in `migrations/` and applied in order under an advisory lock,
//! so several processes starting at once apply each exactly once.

use crate::{Tx, pg_err};
use baton_ports::Result;

/// The migrations, in order: (version, SQL).
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/001_init.sql")),
    (2, include_str!("../migrations/002_ops_records.sql")),
    (3, include_str!("../migrations/003_landing_batches.sql")),
    (4, include_str!("../migrations/004_dead_letter_bytes.sql")),
    (5, include_str!("../migrations/005_history.sql")),
];

/// Applies what is missing; returns how many were applied.
pub fn migrate(tx: &mut Tx<'_>) -> Result<usize> {
    // One migrator at a time across every process (the key spells "baton").
    tx.execute("SELECT pg_advisory_xact_lock(6298726411)", &[])
        .map_err(|e| pg_err(&e))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS baton_schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        .map_err(|e| pg_err(&e))?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM baton_schema_migrations", &[])
        .map_err(|e| pg_err(&e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut count = 0;
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).map_err(|e| pg_err(&e))?;
        tx.execute(
            "INSERT INTO baton_schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .map_err(|e| pg_err(&e))?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Config validation keeps warehouse tables off baton's names
    /// (`baton_core::names::BATON_RELATIONS`): every table and index a migration creates
    /// must be on that list (read from the SQL, so no server is needed).
    #[test]
    fn every_relation_of_the_migrations_is_reserved_from_warehouse_tables() {
        let mut seen = 0;
        for (_, sql) in MIGRATIONS {
            let words: Vec<&str> = sql.split_whitespace().collect();
            for w in words.windows(3) {
                let name = match w {
                    ["CREATE", "TABLE" | "INDEX", name] => name,
                    ["UNIQUE", "INDEX", name] => name,
                    _ => continue,
                };
                let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
                if name == "IF" {
                    continue;
                }
                seen += 1;
                assert!(
                    baton_core::names::BATON_RELATIONS.contains(&name),
                    "`{name}` is created by a migration but not in BATON_RELATIONS"
                );
            }
        }
        assert!(seen > 10, "{seen}");
        assert!(baton_core::names::BATON_RELATIONS.contains(&"baton_schema_migrations"));
    }
}
