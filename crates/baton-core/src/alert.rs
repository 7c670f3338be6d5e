//! Alert policies and the incident state machine: a policy watches one figure over a
//! window; when it reaches the threshold an incident opens (and is notified once); while it
//! stays there the incident stays open (no further notices); once the figure has stayed
//! below the threshold for the quiet period the incident closes (and that is notified once).
//!
//! Pure: the figure is measured by the caller, time comes in as `now`, and the caller
//! stores the incident with compare-and-set, so two `serve` instances cannot both open (and
//! notify) the same incident.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// What a policy watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Watch {
    /// Messages the orchestrator dead-lettered over messages published, in the window.
    OrchestratorErrors,
    /// Processor runs that failed (or were fenced) over runs finished, in the window.
    ProcessorErrors,
    /// Upstream jobs late or missing for their latest due date.
    Lateness,
    /// Messages dead-lettered in the window.
    DeadLetters,
    /// Completions that ran but are not recorded, over the last 7 dates (accuracy below 100%).
    Accuracy,
    /// Dates of the last 7 whose trigger a quality check blocked, or let through with a
    /// warning (e.g. Phase 3 covering 8 of 10 scheduled games).
    Quality,
}

impl Watch {
    /// Parses a config value.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "orchestrator_errors" => Self::OrchestratorErrors,
            "processor_errors" => Self::ProcessorErrors,
            "lateness" => Self::Lateness,
            "dead_letters" => Self::DeadLetters,
            "accuracy" => Self::Accuracy,
            "quality" => Self::Quality,
            _ => return None,
        })
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrchestratorErrors => "orchestrator_errors",
            Self::ProcessorErrors => "processor_errors",
            Self::Lateness => "lateness",
            Self::DeadLetters => "dead_letters",
            Self::Accuracy => "accuracy",
            Self::Quality => "quality",
        }
    }
}

/// An alert policy from config.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertPolicy {
    /// Its name (unique).
    pub name: String,
    /// What it watches.
    pub watch: Watch,
    /// The window the figure is measured over.
    pub window: SignedDuration,
    /// The figure at or above which the incident opens (a rate for the `*_errors` watches,
    /// a count for the others).
    pub threshold: f64,
    /// How long the figure must stay below the threshold before the incident closes.
    pub quiet: SignedDuration,
    /// The notifiers it notifies, by name.
    pub notify: Vec<String>,
}

/// A notifier from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifierSpec {
    /// A Slack incoming webhook; its URL is a secret, read from an environment variable or
    /// a file at start, never from the config itself.
    Slack {
        /// The notifier's name.
        name: String,
        /// Where the URL comes from.
        url: SecretSource,
    },
    /// A generic JSON webhook.
    Webhook {
        /// The notifier's name.
        name: String,
        /// Where the URL comes from.
        url: SecretSource,
    },
}

impl NotifierSpec {
    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            Self::Slack { name, .. } | Self::Webhook { name, .. } => name,
        }
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's name.
    Env(String),
    /// A file's path.
    File(String),
    /// Written in the config (allowed for plain webhooks, not for Slack).
    Literal(String),
}

/// One notice of an incident to one notifier, and its delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// `opened` or `closed`.
    pub kind: String,
    /// The notifier.
    pub notifier: String,
    /// Delivered yet.
    pub delivered: bool,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this (backoff).
    pub next_attempt_at: Timestamp,
    /// The last failure.
    pub last_error: Option<String>,
}

/// An incident of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The policy.
    pub policy: String,
    /// When it opened.
    pub opened_at: Timestamp,
    /// The last time the figure was at or above the threshold.
    pub last_breach_at: Timestamp,
    /// When it closed, if it did.
    pub closed_at: Option<Timestamp>,
    /// The figure when it opened.
    pub opened_value: f64,
    /// The figure at the latest evaluation.
    pub value: f64,
    /// One line for a person.
    pub summary: String,
    /// Notices to deliver or delivered.
    pub notices: Vec<Notice>,
}

impl Incident {
    /// Whether it is open.
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }
}

/// Deliveries are tried this many times, then given up (and recorded so).
pub const NOTICE_ATTEMPTS_MAX: u32 = 8;

fn notices(policy: &AlertPolicy, kind: &str, now: Timestamp) -> Vec<Notice> {
    policy
        .notify
        .iter()
        .map(|n| Notice {
            kind: kind.to_owned(),
            notifier: n.clone(),
            delivered: false,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
        })
        .collect()
}

/// The next state of a policy's latest incident, given the figure measured now; `None`
/// when nothing changes (so nothing is written).
pub fn evaluate(
    policy: &AlertPolicy,
    latest: Option<&Incident>,
    value: f64,
    summary: &str,
    now: Timestamp,
) -> Option<Incident> {
    let breach = value >= policy.threshold;
    match latest.filter(|i| i.is_open()) {
        None if breach => Some(Incident {
            policy: policy.name.clone(),
            opened_at: now,
            last_breach_at: now,
            closed_at: None,
            opened_value: value,
            value,
            summary: summary.to_owned(),
            notices: notices(policy, "opened", now),
        }),
        None => None,
        Some(open) if breach => {
            let mut next = open.clone();
            next.last_breach_at = now;
            next.value = value;
            next.summary = summary.to_owned();
            (next != *open).then_some(next)
        }
        Some(open) => {
            let quiet_since = open.last_breach_at.checked_add(policy.quiet).ok()?;
            if now < quiet_since {
                return None;
            }
            let mut next = open.clone();
            next.closed_at = Some(now);
            next.value = value;
            next.notices.extend(notices(policy, "closed", now));
            Some(next)
        }
    }
}

/// The backoff after `attempts` failed deliveries: 30 s doubling, at most an hour.
pub fn backoff(attempts: u32) -> SignedDuration {
    let secs = 30i64.saturating_mul(1i64 << attempts.min(7));
    SignedDuration::from_secs(secs.min(3600))
}

/// Records a delivery attempt's result on the notice at `index`.
pub fn record_attempt(
    incident: &mut Incident,
    index: usize,
    result: Result<(), String>,
    now: Timestamp,
) {
    let Some(n) = incident.notices.get_mut(index) else {
        return;
    };
    n.attempts += 1;
    match result {
        Ok(()) => {
            n.delivered = true;
            n.last_error = None;
        }
        Err(e) => {
            n.last_error = Some(e);
            n.next_attempt_at = now.checked_add(backoff(n.attempts)).unwrap_or(now);
        }
    }
}

/// Indexes of notices due for delivery now.
pub fn due_notices(incident: &Incident, now: Timestamp) -> Vec<usize> {
    incident
        .notices
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            !n.delivered && n.attempts < NOTICE_ATTEMPTS_MAX && n.next_attempt_at <= now
        })
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AlertPolicy {
        AlertPolicy {
            name: "processor-errors".into(),
            watch: Watch::ProcessorErrors,
            window: SignedDuration::from_hours(1),
            threshold: 0.2,
            quiet: SignedDuration::from_hours(1),
            notify: vec!["slack".into(), "hook".into()],
        }
    }

    fn at(mins: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + mins * 60).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn an_incident_opens_once_notifies_once_and_closes_after_the_quiet_period() {
        let p = policy();
        assert_eq!(
            evaluate(&p, None, 0.1, "fine", at(0)),
            None,
            "below threshold: nothing"
        );
        let opened = evaluate(&p, None, 0.5, "3 of 6 runs failed", at(0)).unwrap();
        assert!(opened.is_open());
        assert_eq!(opened.notices.len(), 2, "one notice per notifier");
        assert!(opened.notices.iter().all(|n| n.kind == "opened"));

        // Still breaching: the incident stays open, no new notice.
        let still = evaluate(&p, Some(&opened), 0.6, "4 of 6 runs failed", at(10)).unwrap();
        assert_eq!(still.notices.len(), 2);
        assert_eq!(still.opened_at, opened.opened_at);
        assert_eq!(still.last_breach_at, at(10));
        assert_eq!(
            evaluate(&p, Some(&still), 0.6, "4 of 6 runs failed", at(10)),
            None,
            "no change, no write"
        );

        // Quiet, but not long enough.
        assert_eq!(evaluate(&p, Some(&still), 0.0, "ok", at(69)), None);
        // Quiet for the whole period: closes, and the close is notified once per notifier.
        let closed = evaluate(&p, Some(&still), 0.0, "ok", at(70)).unwrap();
        assert_eq!(closed.closed_at, Some(at(70)));
        assert_eq!(
            closed.notices.iter().filter(|n| n.kind == "closed").count(),
            2
        );
        assert_eq!(
            evaluate(&p, Some(&closed), 0.0, "ok", at(200)),
            None,
            "closed stays closed"
        );

        // A new breach opens a new incident.
        let again = evaluate(&p, Some(&closed), 0.9, "bad again", at(300)).unwrap();
        assert_eq!(again.opened_at, at(300));
        assert!(again.is_open());
    }

    #[test]
    fn failed_deliveries_back_off_and_stop_after_the_limit() {
        let p = policy();
        let mut i = evaluate(&p, None, 1.0, "x", at(0)).unwrap();
        assert_eq!(due_notices(&i, at(0)), vec![0, 1]);
        record_attempt(&mut i, 0, Err("503".into()), at(0));
        record_attempt(&mut i, 1, Ok(()), at(0));
        assert_eq!(
            due_notices(&i, at(0)),
            Vec::<usize>::new(),
            "backing off; the other delivered"
        );
        assert_eq!(i.notices[0].next_attempt_at, at(1), "30 s doubled once");
        assert_eq!(due_notices(&i, at(1)), vec![0]);
        for _ in 1..NOTICE_ATTEMPTS_MAX {
            record_attempt(&mut i, 0, Err("503".into()), at(0));
        }
        assert!(
            due_notices(&i, at(10_000)).is_empty(),
            "given up after the limit"
        );
        assert_eq!(
            i.notices[0].last_error.as_deref(),
            Some("503"),
            "the failure is recorded"
        );
    }
}
