//! When the `serve` loop runs its next round: at once while work is moving, else after a
//! wait that a backend's wake signal may cut short, bounded by the earliest thing only time
//! can bring (a heartbeat, an alert evaluation, a reconcile, a schedule, the report, an
//! owed run's due time, a delivery's ack wait). Pure: the service gathers the facts and
//! obeys the answer.
//!
//! Invariant: the loop never waits after a round that moved something; and a wait that no
//! signal can end is never longer than the fallback poll while anything is in flight.

use jiff::{SignedDuration, Timestamp};

/// What the last round found, and what is due next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The round moved something (fetched, relayed, ran): more may be waiting.
    pub progressed: bool,
    /// The round was cut short by a retryable backend error.
    pub backend_error: bool,
    /// Something is pending that only time releases and whose time is not known: deliveries
    /// in flight until their ack wait passes, outbox rows claimed by another relay, owed
    /// runs the store could not say about.
    pub in_flight: bool,
    /// The earliest time an owed run becomes ready through time alone (a coalesced holder's
    /// lease lapsing, a wait deadline passing); owed runs that wait for a landing or a
    /// completion are woken by the backend's signal and set no time.
    pub owed_due: Option<Timestamp>,
    /// The backend signals new work (so the wait need not poll for it).
    pub can_wake: bool,
    /// The times of the periodic tasks that are due next (heartbeat, alerts, reconcile,
    /// schedules, report); past ones mean due now.
    pub deadlines: Vec<Timestamp>,
}

/// What the loop does before its next round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// The next round starts at once.
    None,
    /// Sleep this long, whatever arrives (the backend failed: give it time).
    Sleep(SignedDuration),
    /// Wait at most this long; new work signalled by the backend ends the wait early.
    Wait(SignedDuration),
}

/// The pause before the next round, at `now`: none after progress; `retry` after a backend
/// error; otherwise a wait until the earliest deadline or owed run's due time, no longer
/// than `poll` when the backend cannot signal new work or something is in flight.
pub fn next_pause(
    facts: &Facts,
    now: Timestamp,
    poll: SignedDuration,
    retry: SignedDuration,
) -> Pause {
    if facts.backend_error {
        return Pause::Sleep(retry);
    }
    if facts.progressed {
        return Pause::None;
    }
    let until_deadline = (facts.deadlines.iter().chain(&facts.owed_due))
        .map(|d| d.duration_since(now))
        .min();
    let mut wait = until_deadline.unwrap_or(poll);
    if !facts.can_wake || facts.in_flight {
        wait = wait.min(poll);
    }
    if wait.is_positive() {
        Pause::Wait(wait)
    } else {
        Pause::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: SignedDuration = SignedDuration::from_millis(200);
    const RETRY: SignedDuration = SignedDuration::from_secs(1);

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn idle(can_wake: bool, deadlines: Vec<Timestamp>) -> Facts {
        Facts {
            can_wake,
            deadlines,
            ..Facts::default()
        }
    }

    #[test]
    fn progress_means_the_next_round_at_once_even_without_a_wake_signal() {
        for can_wake in [false, true] {
            let facts = Facts {
                progressed: true,
                in_flight: true,
                can_wake,
                ..Facts::default()
            };
            assert_eq!(next_pause(&facts, t(0), POLL, RETRY), Pause::None);
        }
    }

    #[test]
    fn a_backend_error_sleeps_the_retry_pause_whatever_else_holds() {
        let facts = Facts {
            progressed: true,
            backend_error: true,
            can_wake: true,
            ..Facts::default()
        };
        assert_eq!(next_pause(&facts, t(0), POLL, RETRY), Pause::Sleep(RETRY));
    }

    #[test]
    fn idle_with_a_wake_signal_waits_until_the_earliest_deadline() {
        let facts = idle(true, vec![t(30), t(12), t(300)]);
        assert_eq!(
            next_pause(&facts, t(0), POLL, RETRY),
            Pause::Wait(SignedDuration::from_secs(12))
        );
    }

    #[test]
    fn idle_without_a_wake_signal_polls() {
        let facts = idle(false, vec![t(30)]);
        assert_eq!(next_pause(&facts, t(0), POLL, RETRY), Pause::Wait(POLL));
        // A deadline sooner than the poll still wins.
        let soon = vec![t(0).checked_add(SignedDuration::from_millis(50)).unwrap()];
        assert_eq!(
            next_pause(&idle(false, soon), t(0), POLL, RETRY),
            Pause::Wait(SignedDuration::from_millis(50))
        );
    }

    #[test]
    fn work_in_flight_is_polled_for_even_with_a_wake_signal() {
        let facts = Facts {
            in_flight: true,
            ..idle(true, vec![t(30)])
        };
        assert_eq!(next_pause(&facts, t(0), POLL, RETRY), Pause::Wait(POLL));
    }

    #[test]
    fn an_owed_run_is_waited_for_until_its_due_time_not_polled() {
        let facts = Facts {
            owed_due: Some(t(5)),
            ..idle(true, vec![t(30)])
        };
        assert_eq!(
            next_pause(&facts, t(0), POLL, RETRY),
            Pause::Wait(SignedDuration::from_secs(5))
        );
        // Due later than the next deadline: the deadline comes first.
        let later = Facts {
            owed_due: Some(t(300)),
            ..idle(true, vec![t(30)])
        };
        assert_eq!(
            next_pause(&later, t(0), POLL, RETRY),
            Pause::Wait(SignedDuration::from_secs(30))
        );
        // Due already: no wait.
        let due = Facts {
            owed_due: Some(t(0)),
            ..idle(true, vec![t(30)])
        };
        assert_eq!(next_pause(&due, t(0), POLL, RETRY), Pause::None);
    }

    #[test]
    fn a_deadline_already_passed_means_no_wait() {
        assert_eq!(
            next_pause(&idle(true, vec![t(-1), t(30)]), t(0), POLL, RETRY),
            Pause::None
        );
        assert_eq!(
            next_pause(&idle(true, vec![t(0)]), t(0), POLL, RETRY),
            Pause::None
        );
    }

    #[test]
    fn no_deadline_at_all_falls_back_to_the_poll() {
        assert_eq!(
            next_pause(&idle(true, vec![]), t(0), POLL, RETRY),
            Pause::Wait(POLL)
        );
    }
}
