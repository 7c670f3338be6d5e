//! The `serve` loop as a library type, without the binary: rounds over the in-memory
//! backend, driven by a manual clock (the service waits through the clock, so nothing here
//! sleeps).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::{Clock, ManualClock};
use baton_core::config::Pipeline;
use baton_core::health::Level;
use baton_core::message::CompletionMessage;
use baton_core::model::{CompletionStatus, FenceToken, Partition, ProcessorName, RunId};
use baton_ports::{Bus, Delivery, GroupSettings, Published, RunEnd, RunRecord, StateStore};
use baton_serve::service::{Identity, Ports, RETRY_PAUSE, ServeOptions, Service};
use baton_serve::status::Heartbeat;
use baton_sim::mem::MemBackend;
use jiff::{SignedDuration, Timestamp};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

const PHASE3: [&str; 5] = [
    "team_offense_game_summary",
    "team_defense_game_summary",
    "upcoming_team_game_context",
    "player_game_summary",
    "upcoming_player_game_context",
];

/// A bus whose `fetch` fails with the errors queued on it, then delegates again: a backend
/// restarting (retryable) or broken (permanent) under a running service.
struct FlakyBus {
    inner: Arc<MemBackend>,
    failures: Mutex<VecDeque<baton_ports::Error>>,
}

impl FlakyBus {
    fn fail_next(&self, error: baton_ports::Error) {
        self.failures.lock().unwrap().push_back(error);
    }
}

impl Bus for FlakyBus {
    fn publish(
        &self,
        topic: &str,
        message_id: &str,
        payload: &[u8],
    ) -> baton_ports::Result<Published> {
        self.inner.publish(topic, message_id, payload)
    }
    fn fetch(
        &self,
        topic: &str,
        group: &str,
        max: usize,
        settings: GroupSettings,
    ) -> baton_ports::Result<Vec<Delivery>> {
        if let Some(e) = self.failures.lock().unwrap().pop_front() {
            return Err(e);
        }
        self.inner.fetch(topic, group, max, settings)
    }
    fn ack(&self, topic: &str, group: &str, seqs: &[i64]) -> baton_ports::Result<()> {
        self.inner.ack(topic, group, seqs)
    }
    fn pending(&self, topic: &str, group: &str) -> baton_ports::Result<u64> {
        self.inner.pending(topic, group)
    }
    fn published_since(&self, topic: &str, since: Timestamp) -> baton_ports::Result<u64> {
        self.inner.published_since(topic, since)
    }
    fn messages(&self, topic: &str) -> baton_ports::Result<Vec<Delivery>> {
        self.inner.messages(topic)
    }
}

struct Env {
    pipeline: Arc<Pipeline>,
    clock: Arc<ManualClock>,
    backend: Arc<MemBackend>,
    bus: Arc<FlakyBus>,
    t0: Timestamp,
    /// Yesterday in the pipeline's time zone: every Phase 3 processor is expected.
    date: Partition,
}

fn env() -> Env {
    // 08:00 in New York on 2024-03-10.
    let t0: Timestamp = "2024-03-10T12:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let backend = Arc::new(MemBackend::new(clock.clone()));
    let bus = Arc::new(FlakyBus {
        inner: backend.clone(),
        failures: Mutex::new(VecDeque::new()),
    });
    Env {
        pipeline: Arc::new(Pipeline::reference().unwrap()),
        clock,
        backend,
        bus,
        t0,
        date: Partition::parse("2024-03-09").unwrap(),
    }
}

impl Env {
    fn service(&self, options: ServeOptions) -> Service {
        let ports = Ports {
            pipeline: self.pipeline.clone(),
            store: self.backend.clone(),
            warehouse: self.backend.clone(),
            bus: self.bus.clone(),
            clock: self.clock.clone(),
        };
        let identity = Identity {
            role: "serve".into(),
            host: "h1".into(),
            pid: 7,
            version: "0.1.0".into(),
            commit: "abc".into(),
        };
        Service::new(options, ports, identity).unwrap()
    }

    fn at(&self, secs: i64) -> Timestamp {
        self.t0
            .checked_add(SignedDuration::from_secs(secs))
            .unwrap()
    }

    /// The service's heartbeat record: its version (how many beats) and what it says.
    fn heartbeat(&self) -> Option<(i64, Heartbeat)> {
        let r = self.backend.ops_record("instance/serve/h1/7").unwrap()?;
        Some((r.version, serde_json::from_str(&r.body).unwrap()))
    }

    fn publish_completion(&self, processor: &str) {
        let m = CompletionMessage::new(
            ProcessorName::from(processor),
            self.date,
            RunId::from("run-1"),
            CompletionStatus::Success,
            10,
            self.clock.now(),
        );
        self.backend
            .publish(
                "phase3-completions",
                &m.message_id,
                m.to_json().to_string().as_bytes(),
            )
            .unwrap();
    }

    /// A run that finished (finding no data) but whose completion never reached the bus.
    fn record_run_without_completion(&self, processor: &str) {
        let run_id = RunId::from(format!("lost-{processor}").as_str());
        self.backend
            .start_run(&RunRecord {
                run_id: run_id.clone(),
                processor: ProcessorName::from(processor),
                partition: self.date,
                holder: "w1".into(),
                token: FenceToken::new(1),
                started_at: self.clock.now(),
                finished_at: None,
                status: baton_ports::RunStatus::Running,
                rows_written: 0,
                duplicates_dropped: 0,
                error: None,
            })
            .unwrap();
        self.backend
            .finish_run(
                &run_id,
                &RunEnd {
                    status: baton_ports::RunStatus::NoData,
                    rows_written: 0,
                    duplicates_dropped: 0,
                    error: None,
                },
            )
            .unwrap();
    }

    fn gate_triggered(&self) -> bool {
        self.backend
            .document(&self.pipeline.gates[0].id, self.date)
            .unwrap()
            .is_some_and(|d| d.triggered)
    }
}

/// Only the loop under test: no periodic reconcile, no phase runs.
fn quiet() -> ServeOptions {
    ServeOptions {
        phase_runner: false,
        reconcile_every: None,
        ..ServeOptions::default()
    }
}

#[test]
fn rounds_apply_completions_trigger_and_relay_the_trigger() {
    let e = env();
    let mut service = e.service(quiet());
    for p in PHASE3 {
        e.publish_completion(p);
    }
    let first = service.round().unwrap();
    assert_eq!(first.drain.outcomes.get("applied"), Some(&5), "{first:?}");
    assert_eq!(first.drain.triggers, 1);
    assert!(first.backend_error.is_none());
    assert!(e.gate_triggered());
    assert_eq!(
        e.backend
            .outbox_for(baton_ports::OutboxKind::Trigger, e.date)
            .unwrap()
            .len(),
        1
    );

    // The trigger the consumer wrote goes out in the same round (before the trigger
    // consumer, which would run it), not at the next round's relay.
    assert_eq!(first.drain.relayed, 1, "{first:?}");
    assert_eq!(e.backend.messages("phase4-trigger").unwrap().len(), 1);
    let second = service.round().unwrap();
    assert_eq!(second.drain.relayed, 0, "{second:?}");
    assert_eq!(e.backend.messages("phase4-trigger").unwrap().len(), 1);
}

#[test]
fn the_observer_sees_every_rounds_drain() {
    let e = env();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut service = e
        .service(quiet())
        .with_observer(Box::new(move |r| log.lock().unwrap().push(r.clone())));
    e.publish_completion(PHASE3[0]);
    service.round().unwrap();
    service.round().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].outcomes.get("applied"), Some(&1));
}

#[test]
fn a_heartbeat_is_written_once_per_interval() {
    let e = env();
    let mut service = e.service(quiet());
    assert!(service.round().unwrap().heartbeat, "due at the first round");
    let (version, beat) = e.heartbeat().unwrap();
    assert_eq!(version, 1);
    assert_eq!((beat.role.as_str(), beat.pid), ("serve", 7));
    assert_eq!(beat.started_at, e.t0);
    assert!(beat.backend_errors.is_empty());

    e.clock.set(e.at(29));
    assert!(!service.round().unwrap().heartbeat);
    e.clock.set(e.at(30));
    assert!(service.round().unwrap().heartbeat);
    assert_eq!(e.heartbeat().unwrap().0, 2);

    // Run for five minutes of the manual clock (each pause advances it): a beat at 0, 30,
    // ... 270 s, ten in all, however many rounds ran in between.
    let e = env();
    let service = e.service(quiet());
    let end = e.at(300);
    let clock = e.clock.clone();
    service.run(&|| clock.now() >= end).unwrap();
    // Ten beats, then the last record saying it stopped on request.
    let (version, last) = e.heartbeat().unwrap();
    assert_eq!(version, 11);
    assert_eq!(last.stopped_at, Some(e.clock.now()));
    assert!(!baton_core::heartbeat::is_stale(
        e.backend
            .ops_record("instance/serve/h1/7")
            .unwrap()
            .unwrap()
            .updated_at,
        e.clock.now()
    ));
}

#[test]
fn the_periodic_reconcile_runs_when_due_and_repairs_a_lost_document() {
    let e = env();
    let mut service = e.service(ServeOptions {
        phase_runner: false,
        reconcile_every: Some(SignedDuration::from_secs(300)),
        reconcile_days: 7,
        ..ServeOptions::default()
    });
    let first = service.round().unwrap();
    let covered = first.reconciled.expect("due at the first round");
    assert_eq!(covered.len(), 7, "one gate, the last seven dates");
    assert!(covered.iter().all(|r| r.changes.is_empty()));

    // Every Phase 3 processor ran for the date, but its completions were lost on the way:
    // no completion document exists.
    for p in PHASE3 {
        e.record_run_without_completion(p);
    }
    e.clock.set(e.at(60));
    assert!(service.round().unwrap().reconciled.is_none(), "not due yet");
    assert!(
        e.backend
            .document(&e.pipeline.gates[0].id, e.date)
            .unwrap()
            .is_none()
    );

    e.clock.set(e.at(300));
    let due = service.round().unwrap();
    let repaired: Vec<_> = due
        .reconciled
        .expect("due again")
        .into_iter()
        .filter(|r| !r.changes.is_empty())
        .collect();
    assert_eq!(repaired.len(), 1, "{repaired:?}");
    assert_eq!(repaired[0].before.date, e.date);
    assert!(
        repaired[0].after.findings.is_empty(),
        "{:?}",
        repaired[0].after
    );
    let doc = e
        .backend
        .document(&e.pipeline.gates[0].id, e.date)
        .unwrap()
        .unwrap();
    assert_eq!(doc.completed_count, 5);
    assert!(doc.triggered, "the repair triggers through the gate's rule");
    // The repair is recorded for the date's timeline and the report, by this serve.
    let repairs =
        baton_serve::timeline::repairs(e.backend.as_ref(), &format!("repair/{}/", e.date)).unwrap();
    assert_eq!(repairs.len(), 1, "{repairs:?}");
    assert_eq!(repairs[0].at, e.at(300));
    assert!(repairs[0].by.starts_with("serve-"), "{:?}", repairs[0]);
    assert_eq!(repairs[0].changes, repaired[0].changes);
    let timeline = baton_serve::timeline::build(&e.pipeline, e.backend.as_ref(), e.date).unwrap();
    assert!(
        timeline
            .events
            .iter()
            .any(|ev| ev.kind == baton_serve::timeline::EventKind::Repair),
        "{timeline:?}"
    );
    // The report over the window counts it; nothing is left to find after the repair.
    let report = baton_serve::report::build(
        &e.pipeline,
        e.backend.as_ref(),
        e.backend.as_ref(),
        7,
        e.at(300),
    )
    .unwrap();
    assert_eq!(report.dates_checked, 7);
    assert_eq!(report.repairs.len(), 1, "{report:?}");
    assert!(report.findings.is_empty(), "{report:?}");
    assert_eq!(report.lateness.len(), e.pipeline.upstream.len());
}

#[test]
fn a_retryable_error_is_recorded_and_reported_in_the_next_heartbeat() {
    let e = env();
    let mut service = e.service(quiet());
    assert!(service.round().unwrap().heartbeat);

    e.bus
        .fail_next(baton_ports::Error::Retryable("connection refused".into()));
    e.clock.set(e.at(5));
    let failed = service.round().unwrap();
    let error = failed.backend_error.expect("the round reports the error");
    assert!(error.contains("connection refused"), "{error}");
    assert!(!failed.heartbeat);

    // The next round beats at once, well inside the 30 s interval, to say so.
    e.clock.advance(RETRY_PAUSE);
    let next = service.round().unwrap();
    assert!(next.heartbeat && next.backend_error.is_none(), "{next:?}");
    let (version, beat) = e.heartbeat().unwrap();
    assert_eq!(version, 2);
    assert_eq!(beat.backend_errors, vec![e.at(5)]);
    assert!(
        beat.last_error
            .as_deref()
            .is_some_and(|m| m.contains("connection refused")),
        "{beat:?}"
    );
    // And `health` shows it, from the heartbeat.
    let h011 = baton_serve::checks::health(
        &e.pipeline,
        e.backend.as_ref(),
        e.backend.as_ref(),
        e.backend.as_ref(),
        &[],
        e.clock.now(),
    )
    .unwrap()
    .checks
    .into_iter()
    .find(|c| c.code == "BATON-H011")
    .unwrap();
    assert_eq!(h011.level, Level::Warn);
    assert!(
        h011.evidence.contains("retried 1 backend errors"),
        "{}",
        h011.evidence
    );
}

/// BATON-H011 of the service's store at the clock's now.
fn h011(e: &Env) -> baton_core::health::Check {
    baton_serve::checks::health(
        &e.pipeline,
        e.backend.as_ref(),
        e.backend.as_ref(),
        e.backend.as_ref(),
        &[],
        e.clock.now(),
    )
    .unwrap()
    .checks
    .into_iter()
    .find(|c| c.code == "BATON-H011")
    .unwrap()
}

#[test]
fn a_serve_stopped_on_request_is_not_reported_silent_but_one_that_died_is() {
    // Stopped on request (SIGTERM under systemd): its last heartbeat says so, and ten
    // minutes later health does not call it silent.
    let e = env();
    let end = e.at(60);
    let clock = e.clock.clone();
    e.service(quiet()).run(&|| clock.now() >= end).unwrap();
    e.clock.advance(SignedDuration::from_mins(10));
    let check = h011(&e);
    assert_eq!(check.level, Level::Pass, "{}", check.evidence);

    // Died (its rounds simply stop): after four missed beats it is reported.
    let e = env();
    let mut service = e.service(quiet());
    assert!(service.round().unwrap().heartbeat);
    drop(service);
    e.clock.advance(SignedDuration::from_mins(10));
    let check = h011(&e);
    assert_eq!(check.level, Level::Warn);
    assert!(
        check.evidence.contains("last heartbeat"),
        "{}",
        check.evidence
    );
}

#[test]
fn run_retries_through_retryable_errors_and_ends_on_a_permanent_one() {
    let e = env();
    for _ in 0..3 {
        e.bus
            .fail_next(baton_ports::Error::Retryable("connection reset".into()));
    }
    let end = e.at(60);
    let clock = e.clock.clone();
    e.service(quiet()).run(&|| clock.now() >= end).unwrap();
    let (_, beat) = e.heartbeat().unwrap();
    assert_eq!(beat.backend_errors.len(), 3, "{beat:?}");

    // A permanent error ends `run` (the bound only stops a broken loop from hanging).
    let e = env();
    e.bus
        .fail_next(baton_ports::Error::Permanent("schema mismatch".into()));
    let end = e.at(3600);
    let clock = e.clock.clone();
    let result = e.service(quiet()).run(&|| clock.now() >= end);
    let error = result.expect_err("a permanent error ends run");
    assert!(error.to_string().contains("schema mismatch"), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(e.clock.now(), e.t0, "it ended at once, without retrying");
}

/// The reference pipeline with a schedule: the upcoming-game context at 07:00 New York
/// time, for today. The clock starts at 06:30 EDT on 2024-06-03, and every upstream job
/// has landed for that date and the next, so a requested run can run at once.
fn scheduled_env() -> Env {
    let config = format!(
        "{}\n[[schedules]]\nname = \"morning-context\"\ncron = \"0 7 * * *\"\nprocessors = [\"upcoming_player_game_context\"]\ndate = \"today\"\n",
        baton_core::config::REFERENCE_TOML
    );
    let t0: Timestamp = "2024-06-03T10:30:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let backend = Arc::new(MemBackend::new(clock.clone()));
    let bus = Arc::new(FlakyBus {
        inner: backend.clone(),
        failures: Mutex::new(VecDeque::new()),
    });
    let pipeline = Arc::new(Pipeline::from_toml(&config).unwrap());
    let date = Partition::parse("2024-06-03").unwrap();
    for day in [date, date.offset(1)] {
        for job in &pipeline.upstream {
            backend.record_landing(&job.name, day, t0, &[]).unwrap();
        }
    }
    Env {
        pipeline,
        clock,
        backend,
        bus,
        t0,
        date,
    }
}

impl Env {
    /// A service of its own (another `serve` process) on the same backend.
    fn instance(&self, pid: u32) -> Service {
        let ports = Ports {
            pipeline: self.pipeline.clone(),
            store: self.backend.clone(),
            warehouse: self.backend.clone(),
            bus: self.bus.clone(),
            clock: self.clock.clone(),
        };
        let identity = Identity {
            role: "serve".into(),
            host: "h1".into(),
            pid,
            version: "0.1.0".into(),
            commit: "abc".into(),
        };
        let options = ServeOptions {
            reconcile_every: None,
            ..ServeOptions::default()
        };
        Service::new(options, ports, identity).unwrap()
    }

    /// The finished runs of a processor for a date.
    fn finished_runs(&self, processor: &str, date: Partition) -> usize {
        self.backend
            .runs(date)
            .unwrap()
            .iter()
            .filter(|r| r.processor.as_str() == processor && r.finished_at.is_some())
            .count()
    }
}

#[test]
fn a_schedule_requests_and_runs_its_processor_once_across_two_instances() {
    let e = scheduled_env();
    let context = "upcoming_player_game_context";
    let (mut a, mut b) = (e.instance(7), e.instance(8));
    let both = |a: &mut Service, b: &mut Service| {
        let (ra, rb) = (a.round().unwrap(), b.round().unwrap());
        assert!(ra.backend_error.is_none() && rb.backend_error.is_none());
        (ra.fired, rb.fired)
    };

    // 06:30 and 06:59:59 EDT: not yet.
    assert_eq!(both(&mut a, &mut b), (vec![], vec![]));
    e.clock.set("2024-06-03T10:59:59Z".parse().unwrap());
    assert_eq!(both(&mut a, &mut b), (vec![], vec![]));
    assert_eq!(e.finished_runs(context, e.date), 0);

    // 07:00 EDT: the first instance fires, requests today's run and runs it in the same
    // round; the second finds the fire claimed.
    let seven: Timestamp = "2024-06-03T11:00:00Z".parse().unwrap();
    e.clock.set(seven);
    let (fa, fb) = both(&mut a, &mut b);
    assert_eq!(fa.len(), 1, "{fa:?}");
    assert!(fb.is_empty(), "{fb:?}");
    assert_eq!(fa[0].schedule, "morning-context");
    assert_eq!(fa[0].fire_time, seven);
    assert_eq!(fa[0].partition, e.date);
    assert_eq!(fa[0].processors, vec![ProcessorName::from(context)]);
    assert_eq!(e.finished_runs(context, e.date), 1);
    assert!(
        e.backend.pending_requests().unwrap().is_empty(),
        "the run cleared the request"
    );
    let record = e
        .backend
        .ops_record("schedule/morning-context")
        .unwrap()
        .unwrap();
    let body: baton_core::cron::FireRecord = serde_json::from_str(&record.body).unwrap();
    assert_eq!((body.last_fired, body.partition), (seven, e.date));
    assert_eq!(body.by, "serve-7");

    // Later the same day (and a service started afresh): nothing more.
    let mut fresh = e.instance(9);
    for at in [
        "2024-06-03T11:00:30Z",
        "2024-06-03T11:59:00Z",
        "2024-06-03T16:00:00Z",
        "2024-06-04T10:59:59Z",
    ] {
        e.clock.set(at.parse().unwrap());
        assert_eq!(both(&mut a, &mut b), (vec![], vec![]), "at {at}");
        assert!(fresh.round().unwrap().fired.is_empty(), "at {at}");
    }
    assert_eq!(e.finished_runs(context, e.date), 1, "once for today");

    // 07:00 the next day: once more, for the next date, whichever instance gets there first.
    e.clock.set("2024-06-04T11:00:00Z".parse().unwrap());
    let (fb, fa) = (b.round().unwrap().fired, a.round().unwrap().fired);
    assert_eq!(fb.len(), 1, "{fb:?}");
    assert!(fa.is_empty(), "{fa:?}");
    assert_eq!(fb[0].partition, e.date.offset(1));
    assert_eq!(e.finished_runs(context, e.date.offset(1)), 1);
    assert_eq!(e.finished_runs(context, e.date), 1);
}

#[test]
fn a_service_started_long_after_the_cron_time_does_not_fire_it() {
    let e = scheduled_env();
    // Started at 09:30 EDT: 07:00 is more than the catch-up hour ago.
    e.clock.set("2024-06-03T13:30:00Z".parse().unwrap());
    let mut service = e.instance(7);
    assert!(service.round().unwrap().fired.is_empty());
    assert!(
        e.backend
            .ops_record("schedule/morning-context")
            .unwrap()
            .is_none()
    );
    // Started at 07:40 EDT: within the hour, so today's 07:00 fires.
    let e = scheduled_env();
    e.clock.set("2024-06-03T11:40:00Z".parse().unwrap());
    let fired = e.instance(7).round().unwrap().fired;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        fired[0].fire_time,
        "2024-06-03T11:00:00Z".parse::<Timestamp>().unwrap()
    );
}

/// A notifier that keeps what it was sent: (kind, summary).
struct Recording(Arc<Mutex<Vec<(String, String)>>>);

impl baton_serve::alerting::Notifier for Recording {
    fn name(&self) -> &str {
        "recording"
    }
    fn send(
        &self,
        incident: &baton_core::alert::Incident,
        notice: &baton_core::alert::Notice,
    ) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push((notice.kind.clone(), incident.summary.clone()));
        Ok(())
    }
}

#[test]
fn the_report_is_sent_once_per_monday_morning_by_one_of_two_serves() {
    let e = env();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let recording = || -> Vec<Box<dyn baton_serve::alerting::Notifier>> {
        vec![Box::new(Recording(sent.clone()))]
    };
    let mut a = e.service(quiet()).with_notifiers(recording());
    let mut b = e.service(quiet()).with_notifiers(recording());
    // Sunday 08:00 in New York: last Monday's 09:00 is long past, nothing is sent.
    assert_eq!(a.round().unwrap().report_sent, None);
    // Monday 2024-03-11 09:00 EDT is 13:00 UTC, 25 hours after t0.
    e.clock.set(e.at(25 * 3600 + 30));
    let first = a.round().unwrap().report_sent;
    assert_eq!(first, Some("2024-03-11T13:00:00Z".parse().unwrap()));
    assert_eq!(
        b.round().unwrap().report_sent,
        None,
        "the other serve lost the claim"
    );
    assert_eq!(a.round().unwrap().report_sent, None, "once per due time");
    {
        let sent = sent.lock().unwrap();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].0, "report");
        assert!(
            sent[0].1.contains("2024-02-11 to 2024-03-11")
                && sent[0].1.contains("gate-dates checked"),
            "{}",
            sent[0].1
        );
    }
    // The next Monday, once more.
    e.clock.set(e.at((25 + 7 * 24) * 3600 + 5));
    assert!(b.round().unwrap().report_sent.is_some());
    assert_eq!(a.round().unwrap().report_sent, None);
    assert_eq!(sent.lock().unwrap().len(), 2);
}

#[test]
fn without_a_notifier_no_report_is_claimed() {
    let e = env();
    let mut a = e.service(quiet());
    e.clock.set(e.at(25 * 3600 + 30));
    assert_eq!(a.round().unwrap().report_sent, None);
    assert!(
        e.backend
            .ops_record(baton_serve::report::RECORD_KEY)
            .unwrap()
            .is_none()
    );
}

impl Env {
    /// A completion of `processor` for `date` under its own run id.
    fn publish_completion_for(&self, processor: &str, date: Partition, run: usize) {
        let m = CompletionMessage::new(
            ProcessorName::from(processor),
            date,
            RunId::from(format!("run-{run}").as_str()),
            CompletionStatus::Success,
            10,
            self.clock.now(),
        );
        self.backend
            .publish(
                "phase3-completions",
                &m.message_id,
                m.to_json().to_string().as_bytes(),
            )
            .unwrap();
    }

    fn orchestrator_pending(&self) -> u64 {
        self.backend
            .pending("phase3-completions", baton_serve::ORCHESTRATOR_GROUP)
            .unwrap()
    }
}

#[test]
fn a_backlog_larger_than_a_batch_is_drained_without_waiting_between_rounds() {
    let e = env();
    let backlog = baton_serve::BATCH_MAX * 2 + 100;
    for i in 0..backlog {
        let date = e.date.offset(-((i / PHASE3.len()) as i32));
        e.publish_completion_for(PHASE3[i % PHASE3.len()], date, i);
    }
    let backend = e.backend.clone();
    let service = e.service(quiet());
    // Stops as soon as the orchestrator has taken everything (or after a day of the manual
    // clock, so a loop that keeps waiting ends the test instead of hanging it).
    let clock = e.clock.clone();
    let end = e.at(86_400);
    service
        .run(&|| {
            clock.now() >= end
                || backend
                    .pending("phase3-completions", baton_serve::ORCHESTRATOR_GROUP)
                    .unwrap()
                    == 0
        })
        .unwrap();
    assert_eq!(e.orchestrator_pending(), 0);
    assert_eq!(
        e.clock.now(),
        e.t0,
        "the loop went from batch to batch without asking the clock to wait"
    );
}

#[test]
fn an_idle_loop_with_a_wake_waits_until_its_next_deadline_not_the_poll() {
    let e = env();
    let mut service = e.service(quiet()).with_wake(e.backend.clone());
    let report = service.round().unwrap();
    // Nothing pending, the heartbeat just written: the next thing due is the next beat.
    assert_eq!(
        service.pause(&report),
        baton_core::pacing::Pause::Wait(baton_core::heartbeat::INTERVAL)
    );
    // Without a wake, the same loop polls.
    let mut polling = e.service(quiet());
    let report = polling.round().unwrap();
    assert_eq!(
        polling.pause(&report),
        baton_core::pacing::Pause::Wait(ServeOptions::default().poll)
    );
}

#[test]
fn a_publish_in_process_wakes_a_waiting_loop() {
    let e = env();
    let (tx, rx) = std::sync::mpsc::channel();
    let options = ServeOptions {
        // A fallback poll far longer than the test's patience: only the wake can end it.
        poll: SignedDuration::from_secs(60),
        ..quiet()
    };
    let service = e
        .service(options)
        .with_wake(e.backend.clone())
        .with_observer(Box::new(move |r| tx.send(r.clone()).unwrap_or_default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let handle = std::thread::spawn(move || {
        service.run(&|| stopped.load(std::sync::atomic::Ordering::SeqCst))
    });
    let patience = std::time::Duration::from_secs(60);
    // The first round finds nothing; the loop then waits (a 30 s heartbeat away).
    let first = rx.recv_timeout(patience).unwrap();
    assert!(first.outcomes.is_empty(), "{first:?}");
    for p in PHASE3 {
        e.publish_completion(p);
    }
    let mut applied = 0;
    while applied < PHASE3.len() {
        let r = rx
            .recv_timeout(patience)
            .expect("the publish woke the loop");
        applied += r.outcomes.get("applied").copied().unwrap_or(0);
    }
    assert!(e.gate_triggered());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    // Another publish wakes it to see the stop.
    e.publish_completion_for(PHASE3[0], e.date.offset(-1), 99);
    handle.join().unwrap().unwrap();
    assert_eq!(e.clock.now(), e.t0, "no wait went through the manual clock");
}

/// Issue 14: an idle loop with runs owed waits until the earliest one is due (or the next
/// deadline), not the fallback poll.
#[test]
fn an_idle_loop_with_owed_runs_waits_until_one_is_due_not_the_poll() {
    let e = env();
    let options = ServeOptions {
        reconcile_every: None,
        ..ServeOptions::default()
    };
    let owe = |processor: &str, kind, since| {
        e.backend
            .record_request(&baton_ports::PendingRequest {
                processor: ProcessorName::from(processor),
                partition: e.date,
                kind,
                reason: "test".into(),
                since,
            })
            .unwrap();
    };
    // Waits for a landing that has not come (its wait deadline hours away): the landing
    // will wake the loop, so the wait runs to the next heartbeat.
    owe(
        "team_defense_game_summary",
        baton_ports::RequestKind::Requested,
        e.t0,
    );
    let mut service = e.service(options.clone()).with_wake(e.backend.clone());
    let report = service.round().unwrap();
    assert_eq!(
        service.pause(&report),
        baton_core::pacing::Pause::Wait(baton_core::heartbeat::INTERVAL)
    );
    // Coalesced into the lease of a holder that died, which lapses in 5 s: due then,
    // whatever signals (the lease's own expiry, not the request's time, decides).
    e.backend
        .acquire_lease(
            &ProcessorName::from("team_offense_game_summary"),
            e.date,
            "dead-worker",
            SignedDuration::from_secs(5),
            baton_ports::OnHeld::Report,
        )
        .unwrap();
    owe(
        "team_offense_game_summary",
        baton_ports::RequestKind::Coalesced,
        e.t0,
    );
    let report = service.round().unwrap();
    assert_eq!(report.drain.owed_runs, 0, "{report:?}");
    assert_eq!(
        service.pause(&report),
        baton_core::pacing::Pause::Wait(SignedDuration::from_secs(5))
    );
}
