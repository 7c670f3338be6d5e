//! How every SQL adapter stores baton's values: timestamps as microseconds since the epoch,
//! partitions as `YYYY-MM-DD` text, identifiers quoted. One definition, so the backends
//! cannot drift apart (what a transaction does with them is `crate::engine`'s).

use crate::{Error, Result};
use baton_core::model::Partition;
use jiff::Timestamp;

/// A stored value that does not read back.
pub fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Permanent(format!("stored {what} could not be read: {e}"))
}

/// A timestamp as stored.
pub fn micros(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

/// A stored timestamp.
pub fn from_micros(v: i64) -> Result<Timestamp> {
    Timestamp::from_microsecond(v).map_err(|e| corrupt("timestamp", e))
}

/// A stored partition.
pub fn partition_of(text: &str) -> Result<Partition> {
    Partition::parse(text).map_err(|e| corrupt("partition", e))
}

/// Quotes an identifier that config validation already checked (letters, digits, `_`).
pub fn quote(ident: &str) -> String {
    format!("\"{ident}\"")
}

/// A stored value of one of the closed sets in `crate::kinds`.
pub fn kind_of<T>(text: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T> {
    parse(text).ok_or_else(|| corrupt(what, format!("unknown value `{text}`")))
}
