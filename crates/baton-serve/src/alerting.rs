//! Alerting: measures each policy's figure from the ports, runs the pure incident state
//! machine (`baton_core::alert`), stores incidents as operational records with
//! compare-and-set (so only one `serve` opens, and notifies, an incident), and delivers
//! notices through notifiers (a Slack incoming webhook, a generic JSON webhook) with
//! backoff, recording every attempt on the incident.
//!
//! Invariant: a webhook URL is a secret: it is read from the environment or a file at start,
//! never logged, and scrubbed from delivery errors before they are recorded.

use crate::Error;
use crate::checks;
use baton_core::alert::{self, AlertPolicy, Incident, Notice, NotifierSpec, SecretSource, Watch};
use baton_core::config::Pipeline;
use baton_core::schedule::LandingStatus;
use baton_ports::{Bus, StateStore, Warehouse};
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// Where a notice goes.
pub trait Notifier: Send + Sync {
    /// The notifier's name from config.
    fn name(&self) -> &str;
    /// Delivers one notice; the error is recorded on the incident (it must hold no secret).
    fn send(&self, incident: &Incident, notice: &Notice) -> Result<(), String>;
}

/// What a notifier posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Slack's incoming-webhook JSON (`text` with mrkdwn).
    Slack,
    /// baton's own JSON: the incident and the notice.
    Json,
}

/// A notifier that POSTs JSON to a URL.
pub struct HttpNotifier {
    name: String,
    payload: Payload,
    url: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HttpNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL is a secret.
        f.debug_struct("HttpNotifier")
            .field("name", &self.name)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl HttpNotifier {
    /// A notifier posting `payload` to `url` with a 10 s timeout.
    pub fn new(name: &str, payload: Payload, url: String) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self {
            name: name.to_owned(),
            payload,
            url,
            agent,
        }
    }

    /// The notifier a config entry describes, its URL read from where the entry says.
    pub fn from_spec(spec: &NotifierSpec) -> Result<Self, Error> {
        let (name, payload, source) = match spec {
            NotifierSpec::Slack { name, url } => (name, Payload::Slack, url),
            NotifierSpec::Webhook { name, url } => (name, Payload::Json, url),
        };
        let url = match source {
            SecretSource::Literal(u) => u.clone(),
            SecretSource::Env(var) => std::env::var(var).map_err(|_| {
                Error::Config(format!(
                    "notifier `{name}`: environment variable {var} (its webhook URL) is not set"
                ))
            })?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| {
                    Error::Config(format!(
                        "notifier `{name}`: cannot read its webhook URL from {path}: {e}"
                    ))
                })?,
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::Config(format!(
                "notifier `{name}`: its webhook URL is not an http(s) URL"
            )));
        }
        Ok(Self::new(name, payload, url))
    }

    fn body(&self, incident: &Incident, notice: &Notice) -> serde_json::Value {
        match self.payload {
            Payload::Slack => {
                let text = if notice.kind == "opened" {
                    format!(
                        ":rotating_light: *baton alert `{}` opened*: {}",
                        incident.policy, incident.summary
                    )
                } else if notice.kind == "report" {
                    format!(":bar_chart: {}", incident.summary)
                } else if notice.kind == "test" {
                    format!(
                        "baton test notice for `{}`: {}",
                        incident.policy, incident.summary
                    )
                } else {
                    format!(
                        ":white_check_mark: *baton alert `{}` closed* (open since {}): {}",
                        incident.policy, incident.opened_at, incident.summary
                    )
                };
                serde_json::json!({ "text": text })
            }
            Payload::Json => serde_json::json!({
                "event": notice.kind,
                "policy": incident.policy,
                "summary": incident.summary,
                "value": incident.value,
                "opened_at": incident.opened_at,
                "closed_at": incident.closed_at,
            }),
        }
    }
}

impl Notifier for HttpNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, incident: &Incident, notice: &Notice) -> Result<(), String> {
        let body = self.body(incident, notice).to_string();
        self.agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string().replace(&self.url, "<webhook URL>"))
    }
}

/// The notifiers of a pipeline, built at start (a missing URL fails here, naming where it
/// was to come from).
pub fn notifiers(pipeline: &Pipeline) -> Result<Vec<Box<dyn Notifier>>, Error> {
    pipeline
        .notifiers
        .iter()
        .map(|s| HttpNotifier::from_spec(s).map(|n| Box::new(n) as Box<dyn Notifier>))
        .collect()
}

fn key(policy: &str) -> String {
    format!("alert/{policy}")
}

/// The figure a policy watches, now, and one line saying what it is.
pub fn measure(
    policy: &AlertPolicy,
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    bus: &dyn Bus,
    now: Timestamp,
) -> Result<(f64, String), Error> {
    let since = now.checked_sub(policy.window).unwrap_or(now);
    let window = format!("{}m", policy.window.as_secs() / 60);
    match policy.watch {
        Watch::ProcessorErrors => processor_errors(store, since, &window),
        Watch::OrchestratorErrors => orchestrator_errors(pipeline, store, bus, since, &window),
        Watch::DeadLetters => dead_letters(store, since, &window),
        Watch::Lateness => lateness(pipeline, store, now),
        Watch::Accuracy => accuracy(pipeline, store, warehouse, now),
        Watch::Quality => quality(pipeline, store, now),
    }
}

/// Processor runs that failed or were fenced over runs finished since `since`, naming the
/// latest failure.
fn processor_errors(
    store: &dyn StateStore,
    since: Timestamp,
    window: &str,
) -> Result<(f64, String), Error> {
    let runs = store.runs_finished_since(since)?;
    let failed: Vec<_> = runs
        .iter()
        .filter(|r| matches!(r.status.as_str(), "failed" | "fenced"))
        .collect();
    let rate = if runs.is_empty() {
        0.0
    } else {
        failed.len() as f64 / runs.len() as f64
    };
    let last = failed.last().map_or(String::new(), |r| {
        format!(
            "; latest: {} {} {}{}",
            r.processor,
            r.partition,
            r.status,
            r.error.as_ref().map_or(String::new(), |e| format!(": {e}"))
        )
    });
    Ok((
        rate,
        format!(
            "{} of {} processor runs failed in the last {window}{last}",
            failed.len(),
            runs.len()
        ),
    ))
}

/// Completion messages dead-lettered over completion messages published since `since`.
fn orchestrator_errors(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    bus: &dyn Bus,
    since: Timestamp,
    window: &str,
) -> Result<(f64, String), Error> {
    let letters = store
        .dead_letters()?
        .into_iter()
        .filter(|l| l.recorded_at >= since)
        .count();
    let mut published = 0;
    for gate in &pipeline.gates {
        published += bus.published_since(&gate.completion_topic, since)?;
    }
    // Never above 1, and no division by zero when nothing was published.
    let rate = letters as f64 / published.max(letters as u64).max(1) as f64;
    Ok((
        rate,
        format!("{letters} of {published} completion messages dead-lettered in the last {window}"),
    ))
}

/// Messages dead-lettered since `since`, naming the latest reason.
fn dead_letters(
    store: &dyn StateStore,
    since: Timestamp,
    window: &str,
) -> Result<(f64, String), Error> {
    let letters: Vec<_> = store
        .dead_letters()?
        .into_iter()
        .filter(|l| l.recorded_at >= since)
        .collect();
    let last = letters
        .last()
        .map_or(String::new(), |l| format!("; latest: {}", l.letter.reason));
    Ok((
        letters.len() as f64,
        format!(
            "{} messages dead-lettered in the last {window}{last}",
            letters.len()
        ),
    ))
}

/// Upstream jobs late or missing for their latest due date, with their evidence.
fn lateness(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    now: Timestamp,
) -> Result<(f64, String), Error> {
    let late: Vec<_> = checks::latest_landings(pipeline, store, now)?
        .into_iter()
        .filter(|v| matches!(v.status, LandingStatus::Late | LandingStatus::Missing))
        .collect();
    let text = if late.is_empty() {
        "every upstream job landed on time".to_owned()
    } else {
        late.iter()
            .map(|v| v.evidence.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    Ok((late.len() as f64, text))
}

/// Completions that ran but are not recorded, over every gate and the last 7 dates.
fn accuracy(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    now: Timestamp,
) -> Result<(f64, String), Error> {
    let today = baton_core::Partition::new(now.to_zoned(pipeline.timezone.clone()).date());
    let week = today.offset(-6).through(today);
    let (mut stored, mut actual) = (0, 0);
    for gate in &pipeline.gates {
        let (s, a) = checks::accuracy(pipeline, store, warehouse, gate, &week, now)?;
        stored += s;
        actual += a;
    }
    Ok((
        (actual - stored) as f64,
        format!(
            "{stored}/{actual} completions recorded over the last 7 dates ({} missing; `baton reconcile --fix` repairs them)",
            actual - stored
        ),
    ))
}

/// Dates of the last 7 whose trigger a quality check blocked or warned about, naming them.
fn quality(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    now: Timestamp,
) -> Result<(f64, String), Error> {
    let today = baton_core::Partition::new(now.to_zoned(pipeline.timezone.clone()).date());
    let mut found = Vec::new();
    for gate in &pipeline.gates {
        for doc in store.documents(&gate.id, today.offset(-6), today)? {
            if let Some(b) = doc.blocked.as_ref().filter(|_| !doc.triggered) {
                found.push(format!(
                    "{} blocked by `{}`: {}",
                    doc.partition, b.check, b.evidence
                ));
            }
            for w in &doc.warnings {
                found.push(format!(
                    "{} warned by `{}`: {}",
                    doc.partition, w.check, w.evidence
                ));
            }
        }
    }
    let text = if found.is_empty() {
        "no quality check blocked or warned over the last 7 dates".to_owned()
    } else {
        found.join("; ")
    };
    Ok((found.len() as f64, text))
}

/// What one alerting round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AlertRound {
    /// Incidents opened.
    pub opened: usize,
    /// Incidents closed.
    pub closed: usize,
    /// Notices delivered.
    pub delivered: usize,
    /// Delivery attempts that failed.
    pub failed: usize,
}

/// Evaluates every policy and delivers what is due.
pub fn run_alerts(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    bus: &dyn Bus,
    notifiers: &[Box<dyn Notifier>],
    now: Timestamp,
) -> Result<AlertRound, Error> {
    let mut round = AlertRound::default();
    for policy in &pipeline.alerts {
        let (value, summary) = measure(policy, pipeline, store, warehouse, bus, now)?;
        let stored = store.ops_record(&key(&policy.name))?;
        let latest: Option<Incident> = stored
            .as_ref()
            .and_then(|r| serde_json::from_str(&r.body).ok());
        if let Some(next) = alert::evaluate(policy, latest.as_ref(), value, &summary, now) {
            let body = serde_json::to_string(&next)
                .map_err(|e| Error::Config(format!("encoding an incident: {e}")))?;
            // Compare-and-set: another `serve` that got there first wins, and this one
            // sees its incident on the next round.
            if store.put_ops_record(
                &key(&policy.name),
                &body,
                stored.as_ref().map(|r| r.version),
            )? {
                let was_open = latest.as_ref().is_some_and(Incident::is_open);
                if next.is_open() && !was_open {
                    round.opened += 1;
                    tracing::warn!(policy = %policy.name, value, summary = %summary, "alert opened");
                } else if !next.is_open() && was_open {
                    round.closed += 1;
                    tracing::info!(policy = %policy.name, "alert closed");
                }
            }
        }
        deliver(policy, store, notifiers, now, &mut round)?;
    }
    Ok(round)
}

/// Delivers a policy's due notices: each is first claimed (its next attempt pushed past the
/// delivery's timeout, with compare-and-set), so two `serve` instances never both send it.
fn deliver(
    policy: &AlertPolicy,
    store: &dyn StateStore,
    notifiers: &[Box<dyn Notifier>],
    now: Timestamp,
    round: &mut AlertRound,
) -> Result<(), Error> {
    let Some(record) = store.ops_record(&key(&policy.name))? else {
        return Ok(());
    };
    let Ok(mut incident) = serde_json::from_str::<Incident>(&record.body) else {
        return Ok(());
    };
    let due = alert::due_notices(&incident, now);
    if due.is_empty() {
        return Ok(());
    }
    let claim_until = now
        .checked_add(SignedDuration::from_secs(60))
        .unwrap_or(now);
    for &i in &due {
        incident.notices[i].next_attempt_at = claim_until;
    }
    let encode = |i: &Incident| {
        serde_json::to_string(i).map_err(|e| Error::Config(format!("encoding an incident: {e}")))
    };
    if !store.put_ops_record(&record.key, &encode(&incident)?, Some(record.version))? {
        return Ok(());
    }
    for &i in &due {
        let notice = incident.notices[i].clone();
        let result = match notifiers.iter().find(|n| n.name() == notice.notifier) {
            Some(n) => n.send(&incident, &notice),
            None => Err(format!("notifier `{}` is not configured", notice.notifier)),
        };
        match &result {
            Ok(()) => {
                round.delivered += 1;
                tracing::info!(policy = %policy.name, notifier = %notice.notifier, kind = %notice.kind, "alert notice delivered");
            }
            Err(e) => {
                round.failed += 1;
                tracing::warn!(policy = %policy.name, notifier = %notice.notifier, error = %e, attempt = notice.attempts + 1, "alert notice failed; will retry with backoff");
            }
        }
        alert::record_attempt(&mut incident, i, result, now);
    }
    // Our claim holds the record's next version.
    store.put_ops_record(&record.key, &encode(&incident)?, Some(record.version + 1))?;
    Ok(())
}

/// Every policy's latest incident, open or closed.
pub fn incidents(store: &dyn StateStore) -> Result<Vec<Incident>, Error> {
    Ok(store
        .ops_records("alert/")?
        .into_iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect())
}

/// The incidents open now.
pub fn open_incidents(store: &dyn StateStore) -> Result<Vec<Incident>, Error> {
    Ok(incidents(store)?
        .into_iter()
        .filter(Incident::is_open)
        .collect())
}

/// Sends a test notice through a notifier, changing no incident.
pub fn test_notifier(notifier: &dyn Notifier, now: Timestamp) -> Result<(), String> {
    let summary = "a test notice from `baton alerts test`; nothing is wrong";
    send_outside_incidents(notifier, "test", summary, now)
}

/// Sends the periodic report's `text` through a notifier (no incident: a report is news,
/// not an alert).
pub fn send_report(notifier: &dyn Notifier, text: &str, now: Timestamp) -> Result<(), String> {
    send_outside_incidents(notifier, "report", text, now)
}

/// A notice of `kind` ("test" or "report") with `summary`, outside any incident.
fn send_outside_incidents(
    notifier: &dyn Notifier,
    kind: &str,
    summary: &str,
    now: Timestamp,
) -> Result<(), String> {
    let incident = Incident {
        policy: kind.into(),
        opened_at: now,
        last_breach_at: now,
        closed_at: None,
        opened_value: 0.0,
        value: 0.0,
        summary: summary.into(),
        notices: Vec::new(),
    };
    let notice = Notice {
        kind: kind.into(),
        notifier: notifier.name().to_owned(),
        delivered: false,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
    };
    notifier.send(&incident, &notice)
}
