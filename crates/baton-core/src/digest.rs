//! The digest of a run's output: what tells a rerun that changed a date's data from one that
//! wrote the same rows again (G9: changed data re-triggers the next phase once; identical
//! data never does).
//!
//! The digest is order-independent (a multiset of rows: each row hashed on its own and the
//! hashes added), ignores the processor's volatile columns (a run timestamp such as
//! `processed_at`), and reads JSON objects with their keys in sorted order, so the same rows
//! give the same digest in every run, process and backend. It is a change detector, not a
//! cryptographic hash: 128 bits of FNV-1a, two lanes.

use crate::model::Row;
use serde_json::Value;

const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;
const LANE_SEEDS: [u64; 2] = [0xCBF2_9CE4_8422_2325, 0x6C62_272E_07BB_0142];

struct Fnv([u64; 2]);

impl Fnv {
    fn new() -> Self {
        Self(LANE_SEEDS)
    }
    fn write(&mut self, bytes: &[u8]) {
        for lane in &mut self.0 {
            for b in bytes {
                *lane ^= u64::from(*b);
                *lane = lane.wrapping_mul(FNV_PRIME);
            }
        }
    }
    fn value(&mut self, v: &Value) {
        // A tag per JSON kind, so `"1"` and `1` differ; objects in key order.
        match v {
            Value::Null => self.write(b"n"),
            Value::Bool(b) => self.write(if *b { b"t" } else { b"f" }),
            Value::Number(n) => {
                self.write(b"#");
                self.write(n.to_string().as_bytes());
            }
            Value::String(s) => {
                self.write(b"s");
                self.write(&(s.len() as u64).to_le_bytes());
                self.write(s.as_bytes());
            }
            Value::Array(items) => {
                self.write(b"[");
                items.iter().for_each(|i| self.value(i));
                self.write(b"]");
            }
            Value::Object(map) => self.object(map.iter(), &[]),
        }
    }
    fn object<'a>(
        &mut self,
        entries: impl Iterator<Item = (&'a String, &'a Value)>,
        skip: &[String],
    ) {
        let mut sorted: Vec<(&String, &Value)> =
            entries.filter(|(k, _)| !skip.contains(k)).collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        self.write(b"{");
        for (k, v) in sorted {
            self.write(&(k.len() as u64).to_le_bytes());
            self.write(k.as_bytes());
            self.value(v);
        }
        self.write(b"}");
    }
}

/// The digest of `rows`, leaving out `volatile` columns: 32 hex digits.
pub fn of_rows(rows: &[Row], volatile: &[String]) -> String {
    let mut sum = [0u64; 2];
    for row in rows {
        let mut h = Fnv::new();
        h.object(row.iter(), volatile);
        sum[0] = sum[0].wrapping_add(h.0[0]);
        sum[1] = sum[1].wrapping_add(h.0[1]);
    }
    format!("{:016x}{:016x}", sum[0], sum[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_same_rows_in_any_order_give_the_same_digest() {
        let a = row(json!({"game_id": "g1", "points": 10, "processed_at": "t1"}));
        let b = row(json!({"game_id": "g2", "points": 12, "processed_at": "t1"}));
        let volatile = vec!["processed_at".to_owned()];
        let d = of_rows(&[a.clone(), b.clone()], &volatile);
        assert_eq!(d, of_rows(&[b.clone(), a.clone()], &volatile));
        assert_eq!(d.len(), 32);
        // A rerun stamps another time: the same data.
        let a2 = row(json!({"processed_at": "t2", "points": 10, "game_id": "g1"}));
        let b2 = row(json!({"game_id": "g2", "points": 12, "processed_at": "t2"}));
        assert_eq!(d, of_rows(&[a2, b2], &volatile));
        // Without declaring the column volatile, the timestamp is data.
        let a3 = row(json!({"game_id": "g1", "points": 10, "processed_at": "t3"}));
        assert_ne!(
            of_rows(&[a.clone(), b.clone()], &[]),
            of_rows(&[a3, b.clone()], &[])
        );
    }

    #[test]
    fn any_change_of_data_changes_the_digest() {
        let base = [
            row(json!({"game_id": "g1", "points": 10})),
            row(json!({"game_id": "g2", "points": 12})),
        ];
        let d = of_rows(&base, &[]);
        assert_ne!(d, of_rows(&base[..1], &[]), "a row fewer");
        assert_ne!(
            d,
            of_rows(
                &[base[0].clone(), row(json!({"game_id": "g2", "points": 13}))],
                &[]
            )
        );
        assert_ne!(
            d,
            of_rows(
                &[
                    base[0].clone(),
                    row(json!({"game_id": "g2", "points": "12"}))
                ],
                &[]
            )
        );
        assert_ne!(
            d,
            of_rows(&[base[0].clone(), base[0].clone(), base[1].clone()], &[])
        );
        assert_ne!(of_rows(&[], &[]), of_rows(&[row(json!({}))], &[]));
    }
}
