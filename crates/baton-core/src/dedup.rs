//! Pre-write dedup on a table's primary key: the first occurrence of a key wins and the
//! number of dropped rows is reported, so that a processor that emits a key twice can
//! never produce duplicate rows (G5) and the drop is visible in run history.

use crate::model::Row;
use std::collections::HashSet;

/// The result of deduplicating a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Deduped {
    /// The rows with distinct keys, in their original order.
    pub rows: Vec<Row>,
    /// How many rows were dropped as repeats of an earlier key.
    pub dropped: usize,
}

/// Why a batch could not be deduplicated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A row lacks a primary-key column or has it null.
    #[error("row {row} has no value for primary-key column `{column}`")]
    MissingKey {
        /// Zero-based index of the row in the batch.
        row: usize,
        /// The missing column.
        column: String,
    },
}

/// The primary-key value of a row as one comparable string, or the missing column.
pub fn key_of(row: &Row, primary_key: &[String]) -> Result<String, String> {
    let mut key = String::new();
    for column in primary_key {
        match row.get(column) {
            None | Some(serde_json::Value::Null) => return Err(column.clone()),
            Some(serde_json::Value::String(s)) => key.push_str(s),
            Some(other) => key.push_str(&other.to_string()),
        }
        // The unit separator cannot occur in a JSON-rendered scalar, so keys cannot collide.
        key.push('\u{1f}');
    }
    Ok(key)
}

/// Drops every row whose primary key repeats an earlier row's; first occurrence wins.
pub fn dedup(rows: Vec<Row>, primary_key: &[String]) -> Result<Deduped, Error> {
    let mut seen = HashSet::with_capacity(rows.len());
    let mut kept = Vec::with_capacity(rows.len());
    let mut dropped = 0;
    for (index, row) in rows.into_iter().enumerate() {
        let key =
            key_of(&row, primary_key).map_err(|column| Error::MissingKey { row: index, column })?;
        if seen.insert(key) {
            kept.push(row);
        } else {
            dropped += 1;
        }
    }
    Ok(Deduped {
        rows: kept,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: serde_json::Value) -> Row {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn first_occurrence_wins_and_drops_are_counted() {
        let pk = vec!["game_date".to_owned(), "player_lookup".to_owned()];
        let rows = vec![
            row(json!({"game_date": "2024-03-01", "player_lookup": "a", "points": 1})),
            row(json!({"game_date": "2024-03-01", "player_lookup": "b", "points": 2})),
            row(json!({"game_date": "2024-03-01", "player_lookup": "a", "points": 3})),
        ];
        let out = dedup(rows, &pk).unwrap();
        assert_eq!(out.dropped, 1);
        assert_eq!(out.rows.len(), 2);
        assert_eq!(out.rows[0]["points"], json!(1));
    }

    #[test]
    fn keys_of_different_types_do_not_collide() {
        let pk = vec!["k".to_owned()];
        let rows = vec![row(json!({"k": 1})), row(json!({"k": "1"}))];
        // A number 1 and a string "1" render the same; they are the same key in SQL too.
        assert_eq!(dedup(rows, &pk).unwrap().dropped, 1);
    }

    #[test]
    fn a_missing_key_names_row_and_column() {
        let pk = vec!["k".to_owned()];
        let err = dedup(vec![row(json!({"k": 1})), row(json!({"x": 1}))], &pk).unwrap_err();
        assert_eq!(
            err,
            Error::MissingKey {
                row: 1,
                column: "k".into()
            }
        );
    }
}
