//! Retention: which history may be removed so that nothing grows without bound for a date
//! rerun many times, and which must stay because a verdict reads it.
//!
//! Three stores grow by a row per rerun: run history, relayed completion rows of the outbox,
//! and consumed messages of the SQLite table bus. This module decides, purely, what of each
//! may go ([`RetentionPolicy`]); the adapters express the same rules in their SQL and delete
//! in bounded batches (`baton_ports::retention::prune`).
//!
//! What stays, and why (removing history must not change a verdict of health, reconcile,
//! explain or status):
//! - Runs: the newest `keep_runs` of each (processor, date) by start (explain's latest run
//!   and last error, health's "abandoned with nothing run since", a date having begun), any
//!   run still `running`, and the latest completing run by finish (reconcile's truth, stale
//!   output, a dependency's newest run, status's "succeeded"); and every run that finished
//!   within the window (the alert windows and health's last hour count runs by finish).
//! - Outbox: only completion rows already relayed and older than the window go. Trigger rows
//!   stay: status's exactly-once audit reads them, and they grow per generation (a change of
//!   data), not per rerun; an unpublished row is work.
//! - Bus: a message goes once every consumer group of its topic has passed it (at or
//!   before the group's cursor, with no delivery outstanding) and it is older than the
//!   window. The window keeps a replay of its message id (a relay's retry, a Pub/Sub push's
//!   redelivery) dropped as a duplicate, and the alert windows' "messages published" whole.
//!
//! The window is at least [`MIN_OLDER_THAN_DAYS`] days: the longest alert window a config
//! allows (10,080 minutes), so no alert's figure loses a row it counts.

use jiff::{SignedDuration, Timestamp};

/// The shortest window a policy may have, in days (the longest alert window).
pub const MIN_OLDER_THAN_DAYS: i64 = 7;

/// What retention keeps (`[retention]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Runs kept per (processor, date), newest by start, whatever their age (at least 1).
    pub keep_runs: u32,
    /// History younger than this is kept (at least [`MIN_OLDER_THAN_DAYS`] days).
    pub older_than: SignedDuration,
    /// Rows removed per transaction, so a prune never holds a long lock.
    pub batch: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            keep_runs: 20,
            older_than: SignedDuration::from_hours(24 * 30),
            batch: 500,
        }
    }
}

/// What a run is, as far as retention cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// Still recorded `running`: never removed (its process may be writing).
    Running,
    /// Ended in a way that completes its processor (success, partial, no data).
    Completing,
    /// Ended otherwise (failed, fenced, abandoned).
    Ended,
}

/// One run of a (processor, date), for [`RetentionPolicy::runs_to_remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAge {
    /// What it is.
    pub kind: RunKind,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
}

impl RetentionPolicy {
    /// History at or after this time is kept.
    pub fn cutoff(&self, now: Timestamp) -> Timestamp {
        now.checked_sub(self.older_than).unwrap_or(Timestamp::MIN)
    }

    /// The runs of one (processor, date), in start order (ties in recording order), that
    /// may be removed at `now`: indices into `runs`, ascending.
    pub fn runs_to_remove(&self, runs: &[RunAge], now: Timestamp) -> Vec<usize> {
        let cutoff = self.cutoff(now);
        let keep = self.keep_runs.max(1) as usize;
        // Reconcile's truth takes the completing run with the latest finish; every run
        // sharing that finish is kept so a tie cannot move the choice.
        let best = runs
            .iter()
            .filter(|r| r.kind == RunKind::Completing)
            .map(|r| r.finished_at.unwrap_or(r.started_at))
            .max();
        let older = runs.len().saturating_sub(keep);
        (0..older)
            .filter(|&i| {
                let r = &runs[i];
                let finished = r.finished_at.unwrap_or(r.started_at);
                let is_best = r.kind == RunKind::Completing && Some(finished) == best;
                r.kind != RunKind::Running && !is_best && finished < cutoff
            })
            .collect()
    }

    /// Whether an outbox row may be removed: a relayed completion older than the window.
    pub fn removes_outbox_row(
        &self,
        is_trigger: bool,
        published_at: Option<Timestamp>,
        now: Timestamp,
    ) -> bool {
        !is_trigger && published_at.is_some_and(|at| at < self.cutoff(now))
    }

    /// Whether a bus message may be removed: every group of its topic has passed it (and
    /// the topic has a group) and it was published before the window.
    pub fn removes_bus_message(
        &self,
        passed_by_every_group: bool,
        published_at: Timestamp,
        now: Timestamp,
    ) -> bool {
        passed_by_every_group && published_at < self.cutoff(now)
    }
}

/// What a prune removed (or, dry, would remove).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct PruneReport {
    /// Runs of run history.
    pub runs: u64,
    /// Relayed completion rows of the outbox.
    pub outbox: u64,
    /// Consumed bus messages; `None` when the bus keeps its own retention (NATS JetStream).
    pub bus_messages: Option<u64>,
    /// Nothing was removed: the figures say what would be.
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_hours(24 * days)
    }

    fn run(kind: RunKind, day: i64) -> RunAge {
        RunAge {
            kind,
            started_at: at(day),
            finished_at: (kind != RunKind::Running).then(|| at(day)),
        }
    }

    fn policy(keep: u32) -> RetentionPolicy {
        RetentionPolicy {
            keep_runs: keep,
            older_than: SignedDuration::from_hours(24 * 7),
            batch: 10,
        }
    }

    #[test]
    fn only_old_runs_beyond_the_newest_n_go() {
        let runs: Vec<RunAge> = (0..10).map(|d| run(RunKind::Ended, d)).collect();
        // At day 14 the window keeps days 7.. and the newest 3 are days 7, 8, 9.
        assert_eq!(
            policy(3).runs_to_remove(&runs, at(14)),
            vec![0, 1, 2, 3, 4, 5, 6]
        );
        // At day 6 everything is within the window.
        assert!(policy(3).runs_to_remove(&runs, at(6)).is_empty());
        // Never fewer than one run kept, whatever the policy says.
        assert_eq!(policy(0).runs_to_remove(&runs, at(100)).len(), 9);
    }

    #[test]
    fn the_best_completing_run_and_running_runs_are_never_removed() {
        let runs = vec![
            run(RunKind::Running, 0),
            run(RunKind::Completing, 1),
            run(RunKind::Completing, 2),
            run(RunKind::Ended, 3),
            run(RunKind::Ended, 4),
        ];
        // Index 2 is the latest completing run; index 0 is still running.
        assert_eq!(policy(1).runs_to_remove(&runs, at(100)), vec![1, 3]);
    }

    #[test]
    fn outbox_and_bus_rules() {
        let p = policy(1);
        assert!(p.removes_outbox_row(false, Some(at(0)), at(8)));
        assert!(
            !p.removes_outbox_row(true, Some(at(0)), at(8)),
            "triggers stay"
        );
        assert!(
            !p.removes_outbox_row(false, None, at(8)),
            "unpublished is work"
        );
        assert!(
            !p.removes_outbox_row(false, Some(at(2)), at(8)),
            "within the window"
        );
        assert!(p.removes_bus_message(true, at(0), at(8)));
        assert!(!p.removes_bus_message(false, at(0), at(8)));
        assert!(!p.removes_bus_message(true, at(2), at(8)));
    }
}
