//! The heartbeat rule: how often a `serve` says it is alive, and when its silence is news.
//! One place for it, so the service loop, `baton drift` and `health` (BATON-H011) agree on
//! when a `serve` is silent and when it is gone.

use jiff::{SignedDuration, Timestamp};

/// How often a running `serve` writes its heartbeat.
pub const INTERVAL: SignedDuration = SignedDuration::from_secs(30);

/// A `serve` silent for this long (four missed beats) is reported: one late beat is a slow
/// round, four are a stalled or dead process.
pub const STALE_AFTER: SignedDuration = SignedDuration::from_secs(INTERVAL.as_secs() * 4);

/// A `serve` silent for this long has been replaced, not stalled: it is left out.
pub const GONE_AFTER: SignedDuration = SignedDuration::from_hours(24);

/// Whether an instance last seen at `last` is silent at `now` (reported, not yet gone).
pub fn is_stale(last: Timestamp, now: Timestamp) -> bool {
    now.duration_since(last) >= STALE_AFTER
}

/// Whether an instance last seen at `last` is gone at `now` (no longer worth reporting).
pub fn is_gone(last: Timestamp, now: Timestamp) -> bool {
    now.duration_since(last) > GONE_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_missed_beats_are_stale_and_a_day_is_gone() {
        let t0: Timestamp = "2024-03-10T12:00:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let at = |secs: i64| {
            t0.checked_add(SignedDuration::from_secs(secs))
                .unwrap_or(t0)
        };
        assert!(!is_stale(t0, at(119)));
        assert!(is_stale(t0, at(120)));
        assert_eq!(STALE_AFTER, SignedDuration::from_mins(2));
        assert!(!is_gone(t0, at(24 * 3600)));
        assert!(is_gone(t0, at(24 * 3600 + 1)));
    }
}
