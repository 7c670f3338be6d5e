//! The life of a dead letter: open until an operator replays it (its payload published back
//! to its topic once the cause is fixed) or retires it (with a reason). Both are final, so a
//! letter is never replayed twice by a repeated command. Also the cap on how much of a huge
//! field a reason or a log line repeats.
//!
//! Invariant: only an open letter changes state; BATON-H006 counts open letters only.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LetterState {
    /// Waiting for an operator (counted by BATON-H006).
    Open,
    /// Its payload was published back to its topic.
    Replayed,
    /// Closed without a replay, with a reason.
    Retired,
}

impl LetterState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Replayed => "replayed",
            Self::Retired => "retired",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(Self::Open),
            "replayed" => Some(Self::Replayed),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

impl std::fmt::Display for LetterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a letter cannot move to the state asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It was already replayed or retired: both are final.
    #[error("dead letter is already {0}")]
    AlreadySettled(LetterState),
    /// `open` is where letters start, not a state to settle into.
    #[error("a dead letter cannot be settled as open")]
    NotASettlement,
    /// Retiring needs a reason, for the next operator.
    #[error("retiring a dead letter needs a reason")]
    NoReason,
}

/// Whether a letter in `current` may move to `wanted` with `note` (the retire reason).
pub fn settle(current: LetterState, wanted: LetterState, note: &str) -> Result<(), Refusal> {
    if current != LetterState::Open {
        return Err(Refusal::AlreadySettled(current));
    }
    match wanted {
        LetterState::Open => Err(Refusal::NotASettlement),
        LetterState::Retired if note.trim().is_empty() => Err(Refusal::NoReason),
        _ => Ok(()),
    }
}

/// How many bytes of a field a reason or a log line repeats.
pub const FIELD_CAP_BYTES: usize = 200;
/// How long a stored reason may be.
pub const REASON_CAP_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes at a character boundary, saying how much was left out
/// (the whole field is in the letter's payload; a reason or a log line needs only its start).
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes in all)", &text[..end], text.len()))
}

/// The message id a replay publishes under: new to the bus (the original id was consumed
/// and would be dropped as a duplicate), and the same for every attempt at one letter, so a
/// replay retried after a crash is dropped by the bus instead of delivered twice.
pub fn replay_message_id(letter_id: i64, original: Option<&str>) -> String {
    match original {
        Some(id) => format!("replay-{letter_id}-{}", clip(id, FIELD_CAP_BYTES)),
        None => format!("replay-{letter_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_open_letter_settles_and_retiring_needs_a_reason() {
        use LetterState::*;
        assert_eq!(settle(Open, Replayed, ""), Ok(()));
        assert_eq!(settle(Open, Retired, "fixed upstream"), Ok(()));
        assert_eq!(settle(Open, Retired, "  "), Err(Refusal::NoReason));
        assert_eq!(settle(Open, Open, "x"), Err(Refusal::NotASettlement));
        assert_eq!(
            settle(Replayed, Retired, "x"),
            Err(Refusal::AlreadySettled(Replayed))
        );
        assert_eq!(
            settle(Retired, Replayed, ""),
            Err(Refusal::AlreadySettled(Retired))
        );
        for s in [Open, Replayed, Retired] {
            assert_eq!(LetterState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn clip_cuts_at_a_character_boundary_and_says_how_long_the_field_was() {
        assert_eq!(clip("short", 10), "short");
        let long = "é".repeat(300);
        let clipped = clip(&long, 5);
        assert_eq!(clipped, "éé… (600 bytes in all)");
        assert_eq!(replay_message_id(7, Some("m1")), "replay-7-m1");
        assert_eq!(replay_message_id(7, None), "replay-7");
    }
}
