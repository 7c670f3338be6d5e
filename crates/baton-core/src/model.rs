//! Newtypes for the domain's identifiers: partitions (dates), processors, gates, runs,
//! fencing tokens. Each validates on construction so that a value in hand is well formed.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A row of a table: column name to JSON value.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// A partition: the calendar date (game date) that all state is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Partition(jiff::civil::Date);

impl Partition {
    /// Wraps a civil date.
    pub fn new(date: jiff::civil::Date) -> Self {
        Self(date)
    }
    /// Parses `YYYY-MM-DD`; the error names the text that did not parse.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        // jiff accepts more than a bare date (e.g. datetimes); a partition is a date only.
        if trimmed.len() != 10 {
            return Err(format!("`{text}` is not a date of the form YYYY-MM-DD"));
        }
        trimmed
            .parse::<jiff::civil::Date>()
            .map(Self)
            .map_err(|e| format!("`{text}` is not a date of the form YYYY-MM-DD: {e}"))
    }
    /// The civil date.
    pub fn date(self) -> jiff::civil::Date {
        self.0
    }
    /// The partition `days` later (negative: earlier). Saturates at jiff's date range.
    pub fn offset(self, days: i32) -> Self {
        Self(
            self.0
                .checked_add(jiff::Span::new().days(days))
                .unwrap_or(self.0),
        )
    }
    /// Whole days from `earlier` to `self` (negative when `earlier` is later).
    pub fn days_since(self, earlier: Partition) -> i64 {
        self.0.duration_since(earlier.0).as_hours() / 24
    }
    /// The partitions from `self` to `last`, both included.
    pub fn through(self, last: Partition) -> Vec<Partition> {
        let mut out = Vec::new();
        let mut d = self;
        while d <= last {
            out.push(d);
            let next = d.offset(1);
            if next == d {
                break;
            }
            d = next;
        }
        out
    }
    /// The date in a compact `YYYYMMDD` form, used in game ids.
    pub fn compact(self) -> String {
        format!(
            "{:04}{:02}{:02}",
            self.0.year(),
            self.0.month(),
            self.0.day()
        )
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! name_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a name that the caller has validated (config validation or message
            /// normalisation).
            pub fn new(name: impl Into<String>) -> Self {
                Self(name.into())
            }
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

name_newtype!(
    /// The name of a processor: one job of a phase that writes one table per partition.
    ProcessorName
);
name_newtype!(
    /// The name of a gate: the hand-over from one phase to the next.
    GateId
);
name_newtype!(
    /// The id of one run of a processor for a partition.
    RunId
);

/// A fencing token: grows by one with every lease granted for a (processor, partition),
/// so that a write carrying an older token can be recognised and refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FenceToken(u64);

impl FenceToken {
    /// The token before any lease was granted.
    pub const ZERO: FenceToken = FenceToken(0);
    /// Wraps a stored token.
    pub fn new(value: u64) -> Self {
        Self(value)
    }
    /// The raw value, for storage.
    pub fn get(self) -> u64 {
        self.0
    }
    /// The next token; tokens only grow.
    #[must_use]
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for FenceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The status a processor reports for a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletionStatus {
    /// The run wrote all its data.
    Success,
    /// The run wrote data from incomplete inputs (by policy); it completes the processor.
    Partial,
    /// There was nothing to compute for the date (no games); it completes the processor.
    NoData,
    /// The run failed; it does not complete the processor.
    Failed,
}

impl CompletionStatus {
    /// Whether this status completes a processor for a partition.
    pub fn completes(self) -> bool {
        !matches!(self, CompletionStatus::Failed)
    }
    /// Parses the statuses of baton and of the original pipeline (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "success" | "succeeded" | "complete" | "completed" => Some(Self::Success),
            "partial" => Some(Self::Partial),
            "no_data" | "nodata" | "skipped_no_data" => Some(Self::NoData),
            "failed" | "failure" | "error" => Some(Self::Failed),
            _ => None,
        }
    }
    /// The canonical lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Partial => "partial",
            Self::NoData => "no_data",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for CompletionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_parses_only_plain_dates() {
        assert!(Partition::parse("2024-03-01").is_ok());
        assert!(Partition::parse("2024-3-1").is_err());
        assert!(Partition::parse("2024-02-30").is_err());
        assert!(Partition::parse("2024-03-01T00:00").is_err());
    }

    #[test]
    fn partition_arithmetic_crosses_months() {
        let d = Partition::parse("2024-02-28").unwrap();
        assert_eq!(d.offset(2).to_string(), "2024-03-01");
        assert_eq!(d.offset(2).days_since(d), 2);
        assert_eq!(d.through(d.offset(3)).len(), 4);
    }

    #[test]
    fn fence_tokens_only_grow() {
        assert!(FenceToken::ZERO.next() > FenceToken::ZERO);
    }
}
