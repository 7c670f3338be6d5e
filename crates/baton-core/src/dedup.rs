//! Pre-write dedup on a table's primary key: the first occurrence of a key wins and the
//! number of dropped rows is reported, so that a processor that emits a key twice can
//! never produce duplicate rows (G5) and the drop is visible in run history.

use crate::model::Row;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

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

/// FNV-1a over a key's columns as they render (a number 1 and a string "1" are one key,
/// as in the SQL key columns, and as [`key_of`] says).
fn key_hash(row: &Row, primary_key: &[String]) -> Result<u64, String> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for column in primary_key {
        match row.get(column) {
            None | Some(serde_json::Value::Null) => return Err(column.clone()),
            Some(serde_json::Value::String(s)) => eat(s.as_bytes()),
            Some(other) => eat(other.to_string().as_bytes()),
        }
        eat(&[0x1f]);
    }
    Ok(h)
}

/// A key column as it renders (strings as they are, other scalars as JSON).
fn rendered(v: &serde_json::Value) -> std::borrow::Cow<'_, str> {
    match v {
        serde_json::Value::String(s) => std::borrow::Cow::Borrowed(s),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

fn same_key(a: &Row, b: &Row, primary_key: &[String]) -> bool {
    primary_key.iter().all(|c| match (a.get(c), b.get(c)) {
        (Some(x), Some(y)) => x == y || rendered(x) == rendered(y),
        _ => false,
    })
}

/// The key hash is already a good hash: the map uses it as it is.
#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Where the kept rows with one key hash are (almost always one).
enum Slot {
    One(usize),
    Many(Vec<usize>),
}

/// Drops every row whose primary key repeats an earlier row's; first occurrence wins.
///
/// Keys are compared by value, column by column, after a hash of the key columns picks
/// the candidates: no key string is built per row.
pub fn dedup(rows: Vec<Row>, primary_key: &[String]) -> Result<Deduped, Error> {
    let mut seen: HashMap<u64, Slot, BuildHasherDefault<PassThrough>> =
        HashMap::with_capacity_and_hasher(rows.len(), BuildHasherDefault::default());
    let mut kept: Vec<Row> = Vec::with_capacity(rows.len());
    let mut dropped = 0;
    for (index, row) in rows.into_iter().enumerate() {
        let hash = key_hash(&row, primary_key)
            .map_err(|column| Error::MissingKey { row: index, column })?;
        let repeat = match seen.get_mut(&hash) {
            None => {
                seen.insert(hash, Slot::One(kept.len()));
                false
            }
            Some(Slot::One(i)) => {
                if same_key(&kept[*i], &row, primary_key) {
                    true
                } else {
                    let first = *i;
                    seen.insert(hash, Slot::Many(vec![first, kept.len()]));
                    false
                }
            }
            Some(Slot::Many(list)) => {
                if list.iter().any(|&i| same_key(&kept[i], &row, primary_key)) {
                    true
                } else {
                    list.push(kept.len());
                    false
                }
            }
        };
        if repeat {
            dropped += 1;
        } else {
            kept.push(row);
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
    fn agrees_with_the_rendered_key_on_random_rows() {
        // The hash path must keep exactly the rows a set of rendered keys would.
        let mut rng = crate::rng::SplitMix64::new(7);
        let pk = vec!["a".to_owned(), "b".to_owned()];
        for _ in 0..50 {
            let rows: Vec<Row> = (0..300)
                .map(|i| {
                    let a = rng.range(0, 6);
                    let b = rng.range(0, 6);
                    let a = if rng.range(0, 2) == 0 {
                        json!(a)
                    } else {
                        json!(a.to_string())
                    };
                    row(json!({"a": a, "b": format!("x{b}"), "i": i}))
                })
                .collect();
            let mut seen = std::collections::HashSet::new();
            let expected: Vec<i64> = rows
                .iter()
                .filter(|r| seen.insert(key_of(r, &pk).unwrap()))
                .map(|r| r["i"].as_i64().unwrap())
                .collect();
            let got: Vec<i64> = dedup(rows, &pk)
                .unwrap()
                .rows
                .iter()
                .map(|r| r["i"].as_i64().unwrap())
                .collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn on_a_hash_collision_rows_with_different_keys_are_both_kept() {
        // The key hash only picks candidates; `same_key` decides. When two keys share a
        // hash, a row is dropped only if its key columns are equal by value (as rendered,
        // like the SQL key columns): dropping a row with another key would lose data.
        let pk = vec!["a".to_owned(), "b".to_owned()];
        let x = row(json!({"a": 1, "b": "x", "v": 1}));
        assert!(same_key(&x, &row(json!({"a": "1", "b": "x", "v": 2})), &pk));
        assert!(!same_key(&x, &row(json!({"a": 2, "b": "x"})), &pk));
        assert!(!same_key(&x, &row(json!({"a": 1, "b": "y"})), &pk));
        assert!(!same_key(&x, &row(json!({"a": "one", "b": "x"})), &pk));
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
