//! Retrying a backend that is unavailable at the start of a run: a bounded budget with
//! exponential backoff. The policy is pure (time is passed in); the caller classifies the
//! error (only a retryable backend error is retried) and waits through its `Clock`.
//!
//! Invariant: the pauses never add up past the budget: the last pause is cut to what is
//! left of it, and once the budget is spent the answer is to give up.

use jiff::{SignedDuration, Timestamp};

/// The first pause after a failed try.
pub const FIRST_PAUSE: SignedDuration = SignedDuration::from_millis(250);
/// The longest pause between two tries.
pub const MAX_PAUSE: SignedDuration = SignedDuration::from_secs(4);

/// How long to keep retrying, and from when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// When the first try started.
    pub started: Timestamp,
    /// How long tries may go on; zero: one try only.
    pub budget: SignedDuration,
}

impl Budget {
    /// A budget starting at `started`.
    pub fn new(started: Timestamp, budget: SignedDuration) -> Self {
        Self { started, budget }
    }

    /// The pause before the next try after `failed` tries (1 after the first failure), or
    /// `None` when the budget is spent: pauses double from [`FIRST_PAUSE`] up to
    /// [`MAX_PAUSE`], and never reach past the budget's end.
    pub fn next_pause(&self, failed: u32, now: Timestamp) -> Option<SignedDuration> {
        let end = self.started.checked_add(self.budget).ok()?;
        let left = end.duration_since(now);
        if left <= SignedDuration::ZERO {
            return None;
        }
        let doublings = failed.saturating_sub(1).min(16);
        let pause = FIRST_PAUSE
            .checked_mul(1 << doublings)
            .unwrap_or(MAX_PAUSE)
            .min(MAX_PAUSE);
        Some(pause.min(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn pauses_double_up_to_the_cap_and_stop_at_the_budget() {
        let start = at("2026-11-20T10:00:00Z");
        let b = Budget::new(start, SignedDuration::from_secs(10));
        let ms = |p: Option<SignedDuration>| p.map(|d| d.as_millis());
        assert_eq!(ms(b.next_pause(1, start)), Some(250));
        assert_eq!(ms(b.next_pause(2, start)), Some(500));
        assert_eq!(ms(b.next_pause(3, start)), Some(1000));
        assert_eq!(ms(b.next_pause(9, start)), Some(4000), "capped");
        assert_eq!(ms(b.next_pause(40, start)), Some(4000), "no overflow");
        // Near the end, the pause is cut to what is left of the budget.
        let late = at("2026-11-20T10:00:09.100Z");
        assert_eq!(ms(b.next_pause(9, late)), Some(900));
        assert_eq!(b.next_pause(1, at("2026-11-20T10:00:10Z")), None);
        assert_eq!(b.next_pause(1, at("2026-11-20T10:01:00Z")), None);
    }

    #[test]
    fn a_zero_budget_never_retries() {
        let start = at("2026-11-20T10:00:00Z");
        assert_eq!(
            Budget::new(start, SignedDuration::ZERO).next_pause(1, start),
            None
        );
    }
}
