//! How every SQL adapter stores baton's values: timestamps as microseconds since the epoch,
//! partitions as `YYYY-MM-DD` text, identifiers quoted, and completion documents as
//! versioned JSON. One definition, so the backends cannot drift apart.

use crate::{Error, Result};
use baton_core::completion::Document;
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

/// A document ready to be written over `expected_version` (`None`: a new one): its next
/// version and its JSON body.
pub fn document_for_write(
    mut doc: Document,
    expected_version: Option<u64>,
) -> Result<(Document, String)> {
    // Pair assertion with the step: the count written is the count derived.
    assert_eq!(
        doc.completed_count,
        doc.derived_count(),
        "invariant: completed_count is derived from entries"
    );
    doc.version = expected_version.map_or(1, |v| v + 1);
    let body = serde_json::to_string(&doc).map_err(|e| Error::Permanent(e.to_string()))?;
    Ok((doc, body))
}

/// The error when a document's version moved under a write (the transaction is retried).
pub fn changed_concurrently(doc: &Document) -> Error {
    Error::Retryable(format!(
        "document {}/{} changed concurrently",
        doc.gate, doc.partition
    ))
}
