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

/// A completion receipt as every backend stores it: its JSON, in `body`.
pub fn receipt_body(receipt: &crate::CompletionReceipt) -> Result<String> {
    serde_json::to_string(receipt).map_err(|e| Error::Permanent(e.to_string()))
}

/// A stored completion receipt.
pub fn receipt_of(body: &str) -> Result<crate::CompletionReceipt> {
    serde_json::from_str(body).map_err(|e| corrupt("completion receipt", e))
}

/// A dead-letter row as every backend stores it, before decoding.
pub struct LetterRow {
    /// `id`.
    pub id: i64,
    /// `topic`.
    pub topic: String,
    /// `message_id`.
    pub message_id: Option<String>,
    /// `payload`, the bytes as received.
    pub payload: Vec<u8>,
    /// `reason`.
    pub reason: String,
    /// `recorded_at`, in microseconds.
    pub recorded_at: i64,
    /// `state`.
    pub state: String,
    /// `settled_at`, in microseconds.
    pub settled_at: Option<i64>,
    /// `note`.
    pub note: Option<String>,
}

impl LetterRow {
    /// Decodes the row (an unknown state or time is a corrupt row, named).
    pub fn decode(self) -> Result<crate::DeadLetter> {
        use baton_core::dead_letter::LetterState;
        Ok(crate::DeadLetter {
            id: self.id,
            recorded_at: from_micros(self.recorded_at)?,
            letter: crate::NewDeadLetter {
                topic: self.topic,
                message_id: self.message_id,
                payload: self.payload,
                reason: self.reason,
            },
            state: kind_of(&self.state, LetterState::parse, "dead letter state")?,
            settled_at: self.settled_at.map(from_micros).transpose()?,
            note: self.note,
        })
    }
}

/// What a backend does to settle `stored` as `wanted`: `Settled::Done(letter after)` to
/// write, or the answer to return with nothing written (every backend decides the same way).
pub fn settle_decision(
    stored: Option<crate::DeadLetter>,
    wanted: baton_core::dead_letter::LetterState,
    note: &str,
    now: Timestamp,
) -> crate::Settled {
    let Some(mut letter) = stored else {
        return crate::Settled::NotFound;
    };
    if let Err(refusal) = baton_core::dead_letter::settle(letter.state, wanted, note) {
        return crate::Settled::Refused(letter, refusal);
    }
    letter.state = wanted;
    letter.settled_at = Some(now);
    letter.note = Some(
        baton_core::dead_letter::clip(note, baton_core::dead_letter::REASON_CAP_BYTES).into_owned(),
    );
    crate::Settled::Done(letter)
}
