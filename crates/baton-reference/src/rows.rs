//! Small helpers to read typed values out of JSON rows.

use baton_core::model::Row;

/// Typed reads of a row's columns; missing or mistyped values read as 0 / "".
pub trait RowExt {
    /// A number.
    fn f(&self, key: &str) -> f64;
    /// An integer.
    fn i(&self, key: &str) -> i64;
    /// A string.
    fn s(&self, key: &str) -> &str;
    /// A boolean.
    fn b(&self, key: &str) -> bool;
}

impl RowExt for Row {
    fn f(&self, key: &str) -> f64 {
        self.get(key)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    }
    fn i(&self, key: &str) -> i64 {
        self.get(key)
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
            .unwrap_or(0)
    }
    fn s(&self, key: &str) -> &str {
        self.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
    }
    fn b(&self, key: &str) -> bool {
        self.get(key)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }
}

/// Builds a row from a `json!({...})` object literal.
pub fn obj(value: serde_json::Value) -> Row {
    match value {
        serde_json::Value::Object(map) => map,
        _ => Row::new(),
    }
}
