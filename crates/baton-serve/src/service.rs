//! The long-running service: what `baton serve` does between start and stop, as a library
//! type so it can be tested without the binary. It owns the loop of rounds (the schedules
//! due, then one [`crate::drain`] pass each), the heartbeat that says this instance is alive (and which
//! backend errors it retried through), the periodic alert evaluation, the periodic
//! reconcile of the last dates and the periodic prune of history (`[retention]`). The binary only parses, wires (HTTP, notifiers, token) and
//! calls [`Service::run`].
//!
//! Invariant: a retryable backend error never ends the service: the round reports it, the
//! error is kept for the next heartbeat (and so for `health`), and the loop pauses and
//! retries. Any other error ends [`Service::run`].
//!
//! Pacing ([`baton_core::pacing`]): a round that moved anything is followed by the next at
//! once; an idle loop waits for the backend's wake signal ([`Wake`], when the binary gave
//! one) until the earliest of its own deadlines (heartbeat, alerts, reconcile, prune,
//! schedules, report) or an owed run's due time, and polls every [`ServeOptions::poll`] only for what
//! cannot signal (a backend without a wake, deliveries in flight).
//!
//! Every wait without a wake signal goes through the injected [`Clock`], so a manual clock
//! drives the loop in tests without sleeping; a wake signal is a real wait, bounded by a
//! duration computed from the clock.

use crate::alerting::{AlertRound, Notifier};
use crate::checks::Reconciled;
use crate::landings::LandingConsumer;
use crate::scheduling::{Fired, Scheduler};
use crate::status::Heartbeat;
use crate::{Consumer, DrainReport, Error, NoFaults, Services, TriggerConsumer, drain};
use baton_core::clock::Clock;
use baton_core::config::Pipeline;
use baton_core::heartbeat;
use baton_core::model::Partition;
use baton_core::pacing::{self, Facts, Pause};
use baton_ports::{Bus, StateStore, Wake, Warehouse};
use baton_runner::{NoHooks, Runner};
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;

/// The pause after a round that hit a retryable backend error, before the next try.
pub const RETRY_PAUSE: SignedDuration = SignedDuration::from_secs(1);
/// The longest stretch a wait for the wake signal goes without checking for a stop request.
pub const STOP_CHECK: SignedDuration = SignedDuration::from_secs(1);

/// How a [`Service`] runs; [`ServeOptions::default`] is what `baton serve` does unasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// The fallback poll: the longest wait between idle rounds when the backend cannot
    /// signal new work (no wake), or while deliveries are in flight;
    /// with a wake signal an idle loop waits for it (or its next deadline) instead.
    pub poll: SignedDuration,
    /// Whether this process runs the phases that triggers start (else another one does).
    pub phase_runner: bool,
    /// How often the last [`ServeOptions::reconcile_days`] dates are reconciled and fixed;
    /// `None` turns it off. The bus is not the source of truth: this repairs what it lost.
    pub reconcile_every: Option<SignedDuration>,
    /// How many dates, ending today, the periodic reconcile covers.
    pub reconcile_days: u32,
    /// How often alert policies are evaluated.
    pub alert_every: SignedDuration,
    /// How often history is pruned by the pipeline's `[retention]` policy
    /// (`baton_ports::retention::prune`); `None` turns it off.
    pub retention_every: Option<SignedDuration>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            poll: SignedDuration::from_millis(200),
            phase_runner: true,
            reconcile_every: Some(SignedDuration::from_secs(300)),
            reconcile_days: 7,
            alert_every: SignedDuration::from_secs(30),
            retention_every: Some(SignedDuration::from_hours(1)),
        }
    }
}

impl ServeOptions {
    /// Checks the options are in the ranges `baton serve` accepts.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = |d: SignedDuration| d.is_positive();
        if !positive(self.poll) || self.poll > SignedDuration::from_secs(60) {
            return Err(Error::Config(format!(
                "poll pause {} is not between 1 ms and 60 s",
                self.poll
            )));
        }
        if self.reconcile_every.is_some_and(|d| !positive(d)) {
            return Err(Error::Config(
                "reconcile interval must be positive (or off)".into(),
            ));
        }
        if self.retention_every.is_some_and(|d| !positive(d)) {
            return Err(Error::Config(
                "retention interval must be positive (or off)".into(),
            ));
        }
        if !(1..=366).contains(&self.reconcile_days) {
            return Err(Error::Config(format!(
                "reconcile days {} is not between 1 and 366",
                self.reconcile_days
            )));
        }
        if !positive(self.alert_every) || self.alert_every > SignedDuration::from_hours(1) {
            return Err(Error::Config(format!(
                "alert interval {} is not between 1 s and 1 h",
                self.alert_every
            )));
        }
        Ok(())
    }
}

/// Who is heartbeating: the role, where it runs and what build it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `serve` or `worker`.
    pub role: String,
    /// The host.
    pub host: String,
    /// The process.
    pub pid: u32,
    /// The build's version.
    pub version: String,
    /// The build's commit.
    pub commit: String,
}

impl Identity {
    /// This process on this host, in `role`, at the given build.
    pub fn of_this_process(role: &str, version: &str, commit: &str) -> Self {
        Self {
            role: role.to_owned(),
            host: host(),
            pid: std::process::id(),
            version: version.to_owned(),
            commit: commit.to_owned(),
        }
    }

    /// The operational record its heartbeat is written under.
    pub fn key(&self) -> String {
        match self.role.as_str() {
            // Workers are short-lived processes: one record per host.
            "worker" => format!("instance/worker/{}", self.host),
            _ => format!("instance/{}/{}/{}", self.role, self.host, self.pid),
        }
    }

    /// The lease holder name its phase runs are recorded under.
    pub fn holder(&self) -> String {
        format!("{}-{}", self.role, self.pid)
    }
}

/// The host name, for heartbeats.
fn host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Records that an instance (a `serve` or a worker) is alive, at its version and commit,
/// with the backend errors it retried through. A lost compare-and-set (another write at
/// the same instant) is harmless: the next beat writes again.
pub fn write_heartbeat(
    store: &dyn StateStore,
    identity: &Identity,
    started_at: Timestamp,
    backend_errors: &[Timestamp],
    last_error: Option<&str>,
) -> Result<(), baton_ports::Error> {
    put_heartbeat(
        store,
        identity,
        started_at,
        backend_errors,
        last_error,
        None,
    )
}

/// Writes the heartbeat record; `stopped_at` marks the last one of a `serve` stopped on
/// request.
fn put_heartbeat(
    store: &dyn StateStore,
    identity: &Identity,
    started_at: Timestamp,
    backend_errors: &[Timestamp],
    last_error: Option<&str>,
    stopped_at: Option<Timestamp>,
) -> Result<(), baton_ports::Error> {
    let key = identity.key();
    let beat = Heartbeat {
        role: identity.role.clone(),
        host: identity.host.clone(),
        pid: identity.pid,
        version: identity.version.clone(),
        commit: identity.commit.clone(),
        started_at,
        backend_errors: backend_errors.to_vec(),
        last_error: last_error.map(str::to_owned),
        stopped_at,
    };
    let body = serde_json::to_string(&beat)
        .map_err(|e| baton_ports::Error::Permanent(format!("encoding a heartbeat: {e}")))?;
    let current = store.ops_record(&key)?.map(|r| r.version);
    store.put_ops_record(&key, &body, current)?;
    Ok(())
}

/// The ports a service drives, and its clock.
#[derive(Clone)]
pub struct Ports {
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// The store.
    pub store: Arc<dyn StateStore>,
    /// The warehouse.
    pub warehouse: Arc<dyn Warehouse>,
    /// The bus.
    pub bus: Arc<dyn Bus>,
    /// The clock every wait goes through.
    pub clock: Arc<dyn Clock>,
}

/// Told what each round's drain did (the HTTP side's metrics), without this crate knowing
/// who listens.
pub type DrainObserver = Box<dyn Fn(&DrainReport) + Send>;

/// What one [`Service::round`] did.
#[derive(Debug, Default, Clone)]
pub struct RoundReport {
    /// The schedules this instance fired (their runs are requested before the drain, which
    /// runs them when the phase runner is on).
    pub fired: Vec<Fired>,
    /// What the drain did (empty when the round failed before it finished).
    pub drain: DrainReport,
    /// Whether a heartbeat was written.
    pub heartbeat: bool,
    /// The alert evaluation, when one was due (and policies exist).
    pub alerts: Option<AlertRound>,
    /// The periodic reconcile, when one was due: every (gate, date) it covered.
    pub reconciled: Option<Vec<Reconciled>>,
    /// The prune of history, when one was due.
    pub pruned: Option<baton_core::retention::PruneReport>,
    /// The report's scheduled time, when this round sent it to the notifiers.
    pub report_sent: Option<Timestamp>,
    /// A retryable backend error that cut the round short; it is kept for the next
    /// heartbeat, and [`Service::run`] pauses [`RETRY_PAUSE`] before the next round.
    pub backend_error: Option<String>,
}

/// What [`Service::until_idle`] did.
#[derive(Debug, Clone)]
pub struct IdleReport {
    /// What the drain did in total.
    pub drain: DrainReport,
    /// Messages still not acked at the end.
    pub pending: u64,
    /// Owed runs due now that the drain left owed (they failed again): not idle.
    pub owed_due: usize,
}

/// The running service: consumer, relay, trigger consumer, heartbeats, alerts, reconcile.
pub struct Service {
    options: ServeOptions,
    ports: Ports,
    identity: Identity,
    notifiers: Vec<Box<dyn Notifier>>,
    observer: Option<DrainObserver>,
    wake: Option<Arc<dyn Wake>>,
    consumer: Consumer,
    triggers: TriggerConsumer,
    landings: LandingConsumer,
    scheduler: Scheduler,
    started_at: Timestamp,
    next_beat: Timestamp,
    next_alerts: Timestamp,
    next_reconcile: Timestamp,
    next_prune: Timestamp,
    /// The report's last send this instance saw, so a round with nothing due reads nothing.
    report_seen: Option<Timestamp>,
    /// Backend errors retried through in the last hour, reported in the heartbeat (and so
    /// by `health`).
    backend_errors: Vec<Timestamp>,
    last_error: Option<String>,
}

impl Service {
    /// A service over `ports`, heartbeating as `identity`; creates the pipeline's tables.
    /// Heartbeat, alerts and reconcile are all due at the first round.
    pub fn new(options: ServeOptions, ports: Ports, identity: Identity) -> Result<Self, Error> {
        options.validate()?;
        let runner = Arc::new(Runner::new(
            ports.pipeline.clone(),
            ports.store.clone(),
            ports.warehouse.clone(),
            ports.clock.clone(),
        ));
        runner.ensure_tables()?;
        let consumer = Consumer::new(
            ports.pipeline.clone(),
            ports.store.clone(),
            ports.warehouse.clone(),
            ports.bus.clone(),
            ports.clock.clone(),
        );
        let landings =
            LandingConsumer::new(ports.pipeline.clone(), ports.bus.clone(), runner.clone());
        let triggers = TriggerConsumer::new(
            ports.pipeline.clone(),
            ports.bus.clone(),
            runner,
            identity.holder(),
        );
        let now = ports.clock.now();
        Ok(Self {
            options,
            ports,
            identity,
            notifiers: Vec::new(),
            observer: None,
            wake: None,
            consumer,
            triggers,
            landings,
            scheduler: Scheduler::default(),
            started_at: now,
            next_beat: now,
            next_alerts: now,
            next_reconcile: now,
            next_prune: now,
            report_seen: None,
            backend_errors: Vec::new(),
            last_error: None,
        })
    }

    /// Delivers alert notices through `notifiers`.
    pub fn with_notifiers(mut self, notifiers: Vec<Box<dyn Notifier>>) -> Self {
        self.notifiers = notifiers;
        self
    }

    /// Tells `observer` what every round's drain did.
    pub fn with_observer(mut self, observer: DrainObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Waits for `wake` between idle rounds instead of polling the backend for new work.
    pub fn with_wake(mut self, wake: Arc<dyn Wake>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// The options it runs with.
    pub fn options(&self) -> &ServeOptions {
        &self.options
    }

    /// The drain's view of this service's tasks.
    fn services(&self) -> Services<'_> {
        Services {
            pipeline: &self.ports.pipeline,
            store: self.ports.store.as_ref(),
            bus: self.ports.bus.as_ref(),
            consumer: &self.consumer,
            triggers: self.options.phase_runner.then_some(&self.triggers),
            landings: Some(&self.landings),
        }
    }

    /// Drains what is pending (outbox, completions, triggers) and stops, for scripts
    /// (`serve --until-idle`). In-flight deliveries come back after the ack wait; waiting
    /// for them is bounded by a number of rounds.
    pub fn until_idle(&self) -> Result<IdleReport, Error> {
        let clock = self.ports.clock.clone();
        let pause = self.options.poll;
        let mut wait = || clock.sleep(pause);
        let poll_ms = (pause.as_millis().max(1)) as usize;
        let rounds = 10 + (self.ports.pipeline.ack_wait.as_millis() as usize / poll_ms) * 3;
        let services = self.services();
        let drain = drain(
            &services,
            &mut NoFaults,
            &mut NoFaults,
            &NoHooks,
            &mut wait,
            rounds,
        )?;
        let pending = crate::pending(&services)?;
        let owed_due = match services.triggers {
            Some(tc) => tc.runner.owed_runs_due()?.len(),
            None => 0,
        };
        Ok(IdleReport {
            drain,
            pending,
            owed_due,
        })
    }

    /// One round: fires the schedules due, drains once, then writes the heartbeat, evaluates alerts and reconciles
    /// when each is due. A retryable backend error is recorded (and reported in the next
    /// heartbeat) and returned in the report, not as an error; any other error is returned.
    pub fn round(&mut self) -> Result<RoundReport, Error> {
        let mut report = RoundReport::default();
        match self.work(&mut report) {
            Ok(()) => Ok(report),
            // A backend restarting, a lost connection: keep serving, and say so.
            Err(e) if e.is_retryable() => {
                tracing::error!(error = %e, "backend unavailable; retrying in 1s");
                self.backend_errors.push(self.ports.clock.now());
                self.last_error = Some(e.to_string());
                // Say so at the next heartbeat that gets through.
                self.next_beat = self.ports.clock.now();
                report.backend_error = Some(e.to_string());
                Ok(report)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs rounds until `shutdown` says stop (checked before each round and after each
    /// pause) or an error that is not retryable ends it. Waits between rounds through the
    /// clock. Stopped on request, it writes a last heartbeat that says so.
    pub fn run(mut self, shutdown: &dyn Fn() -> bool) -> Result<(), Error> {
        while !shutdown() {
            let report = self.round()?;
            match self.pause(&report) {
                Pause::None => {}
                Pause::Sleep(d) => self.ports.clock.sleep(d),
                Pause::Wait(d) => self.wait(d, shutdown)?,
            }
        }
        self.stopped()
    }

    /// What to do before the next round, after `report` ([`pacing::next_pause`]).
    pub fn pause(&self, report: &RoundReport) -> Pause {
        let now = self.ports.clock.now();
        let progressed = report.drain.progressed || !report.fired.is_empty();
        // Only an idle round asks: after progress the next round starts at once anyway.
        let owed = if progressed {
            Ok(None)
        } else {
            self.owed_due()
        };
        let facts = Facts {
            progressed,
            backend_error: report.backend_error.is_some(),
            in_flight: report.drain.in_flight || owed.is_err(),
            owed_due: owed.unwrap_or(None),
            can_wake: self.wake.is_some(),
            deadlines: self.deadlines(now),
        };
        pacing::next_pause(&facts, now, self.options.poll, RETRY_PAUSE)
    }

    /// When the earliest run this process would carry out becomes due through time alone
    /// ([`Runner::next_owed_due`]); a new owed run, a landing or a completion that readies
    /// one is a commit the wake signal reports. An error means the store could not say (the
    /// loop polls).
    fn owed_due(&self) -> Result<Option<Timestamp>, baton_runner::Error> {
        if !self.options.phase_runner {
            return Ok(None);
        }
        self.triggers.runner().next_owed_due()
    }

    /// When each periodic task is due next: heartbeat, alerts, reconcile, schedules, report.
    fn deadlines(&self, now: Timestamp) -> Vec<Timestamp> {
        let pipeline = &self.ports.pipeline;
        let mut out = vec![self.next_beat];
        if !pipeline.alerts.is_empty() {
            out.push(self.next_alerts);
        }
        if self.options.reconcile_every.is_some() {
            out.push(self.next_reconcile);
        }
        if self.options.retention_every.is_some() {
            out.push(self.next_prune);
        }
        let tz = &pipeline.timezone;
        out.extend((pipeline.schedules.iter()).filter_map(|s| s.cron.next_after(now, tz)));
        if !self.notifiers.is_empty() {
            out.extend(crate::report::schedule(pipeline).cron.next_after(now, tz));
        }
        out
    }

    /// Waits up to `timeout` for the wake signal (in stretches of [`STOP_CHECK`], so a stop
    /// request is seen), or sleeps it on the clock without one. A wake that fails for a
    /// passing reason (a lost connection) falls back to the poll.
    fn wait(&self, timeout: SignedDuration, shutdown: &dyn Fn() -> bool) -> Result<(), Error> {
        let Some(wake) = &self.wake else {
            self.ports.clock.sleep(timeout);
            return Ok(());
        };
        let mut left = timeout;
        while left.is_positive() && !shutdown() {
            let stretch = left.min(STOP_CHECK);
            match wake.wait(stretch) {
                Ok(true) => return Ok(()),
                Ok(false) => left -= stretch,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "wake signal unavailable; polling");
                    self.ports.clock.sleep(left.min(self.options.poll));
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The last heartbeat of a `serve` stopped on request, so that it is not reported as
    /// silent. Every round's work is transactional, so nothing else needs finishing.
    fn stopped(&self) -> Result<(), Error> {
        put_heartbeat(
            self.ports.store.as_ref(),
            &self.identity,
            self.started_at,
            &self.backend_errors,
            self.last_error.as_deref(),
            Some(self.ports.clock.now()),
        )?;
        tracing::info!(instance = %self.identity.key(), "stopped on request");
        Ok(())
    }

    /// The round's work; its first error stops the rest of the round.
    fn work(&mut self, report: &mut RoundReport) -> Result<(), Error> {
        let clock = self.ports.clock.clone();
        report.fired = self.scheduler.fire_due(
            &self.ports.pipeline,
            self.ports.store.as_ref(),
            &self.identity.holder(),
            clock.now(),
        )?;
        // One pass: the loop, not the drain, decides whether and how long to wait.
        report.drain = drain(
            &self.services(),
            &mut NoFaults,
            &mut NoFaults,
            &NoHooks,
            &mut || {},
            1,
        )?;
        if let Some(observe) = &self.observer {
            observe(&report.drain);
        }
        let now = clock.now();
        if now >= self.next_beat {
            self.beat(now)?;
            report.heartbeat = true;
        }
        if now >= self.next_alerts && !self.ports.pipeline.alerts.is_empty() {
            report.alerts = Some(crate::alerting::run_alerts(
                &self.ports.pipeline,
                self.ports.store.as_ref(),
                self.ports.warehouse.as_ref(),
                self.ports.bus.as_ref(),
                &self.notifiers,
                now,
            )?);
            self.next_alerts = now.checked_add(self.options.alert_every).unwrap_or(now);
        }
        report.report_sent = self.send_report(now)?;
        if let Some(every) = self.options.reconcile_every
            && self.reconcile_due(report, every, clock.now())
        {
            report.reconciled = Some(self.reconcile(clock.now())?);
            self.next_reconcile = clock
                .now()
                .checked_add(every)
                .unwrap_or(self.next_reconcile);
        }
        if let Some(every) = self.options.retention_every
            && clock.now() >= self.next_prune
        {
            report.pruned = Some(self.prune(clock.now())?);
            self.next_prune = clock.now().checked_add(every).unwrap_or(self.next_prune);
        }
        Ok(())
    }

    /// Removes the history the pipeline's `[retention]` policy lets go, in bounded batches
    /// (several instances may prune at once: a delete of what another removed removes
    /// nothing).
    fn prune(&self, now: Timestamp) -> Result<baton_core::retention::PruneReport, Error> {
        let pruned = baton_ports::retention::prune(
            self.ports.store.as_ref(),
            self.ports.bus.as_ref(),
            &self.ports.pipeline.retention.policy,
            now,
            baton_ports::retention::Mode::Delete,
        )?;
        if pruned.runs + pruned.outbox + pruned.bus_messages.unwrap_or(0) > 0 {
            tracing::info!(runs = pruned.runs, outbox = pruned.outbox, bus_messages = ?pruned.bus_messages, "pruned history");
        }
        Ok(pruned)
    }

    /// Whether the periodic reconcile runs this round: when it is due and the round moved
    /// nothing. A round that ran or relayed something may have left completions on their way
    /// (a run's completion waits in the outbox for the next round's relay); reconciling then
    /// would "repair" what was never lost, record a false repair, and make the completion a
    /// duplicate when it arrives. A loop kept busy for a whole interval past the due time
    /// reconciles anyway, so a steady stream of work cannot put the repair off for ever.
    fn reconcile_due(&self, report: &RoundReport, every: SignedDuration, now: Timestamp) -> bool {
        let moved = report.drain.progressed || !report.fired.is_empty();
        let overdue = self
            .next_reconcile
            .checked_add(every)
            .is_ok_and(|late| now >= late);
        now >= self.next_reconcile && (!moved || overdue)
    }

    /// Writes the heartbeat with the backend errors of the last hour.
    fn beat(&mut self, now: Timestamp) -> Result<(), Error> {
        let hour_ago = now
            .checked_sub(SignedDuration::from_hours(1))
            .unwrap_or(now);
        self.backend_errors.retain(|t| *t >= hour_ago);
        write_heartbeat(
            self.ports.store.as_ref(),
            &self.identity,
            self.started_at,
            &self.backend_errors,
            self.last_error.as_deref(),
        )?;
        self.next_beat = now.checked_add(heartbeat::INTERVAL).unwrap_or(now);
        Ok(())
    }

    /// Sends the report when it is due (and there is a notifier to send it to); the store
    /// is read only when the last send this instance saw leaves a fire due.
    fn send_report(&mut self, now: Timestamp) -> Result<Option<Timestamp>, Error> {
        let pipeline = &self.ports.pipeline;
        let schedule = crate::report::schedule(pipeline);
        if self.notifiers.is_empty()
            || baton_core::cron::due(&schedule, self.report_seen, now, &pipeline.timezone).is_none()
        {
            return Ok(None);
        }
        let (last, sent) = crate::report::send_due(
            pipeline,
            self.ports.store.as_ref(),
            self.ports.warehouse.as_ref(),
            &self.notifiers,
            &self.identity.holder(),
            now,
        )?;
        self.report_seen = sent.or(last);
        Ok(sent)
    }

    /// Repairs the last `reconcile_days` dates of every gate; what it changes is logged as
    /// a warning, because a repair means something upstream of baton lost a message, and
    /// recorded as an operational record (`repair/<date>/...`) for the timeline and report.
    fn reconcile(&self, now: Timestamp) -> Result<Vec<Reconciled>, Error> {
        let pipeline = &self.ports.pipeline;
        // Runs whose process died: marked here for every backend, so run history never
        // keeps a `running` run that no lease covers (BATON-H013 shows them).
        for run in self.ports.store.abandon_runs()? {
            tracing::warn!(processor = %run.processor, date = %run.partition, run_id = %run.run_id, holder = %run.holder, token = %run.token, "marked a run abandoned: its process died before finishing it");
        }
        let today = Partition::new(now.to_zoned(pipeline.timezone.clone()).date());
        let first = today.offset(1 - self.options.reconcile_days as i32);
        let mut out = Vec::new();
        let dates = first.through(today);
        let by = self.identity.holder();
        for gate in &pipeline.gates {
            // Each date's repair is recorded as it is made, for the date's timeline and the
            // report, not only in the log.
            let reconciled = crate::checks::reconcile_dates(
                pipeline,
                self.ports.store.as_ref(),
                self.ports.warehouse.as_ref(),
                gate,
                &dates,
                now,
                crate::checks::Mode::Fix { by: &by },
            )?;
            for r in reconciled {
                let date = r.before.date;
                if !r.changes.is_empty() {
                    tracing::warn!(gate = %gate.id, %date, changes = ?r.changes, "periodic reconcile repaired a date");
                }
                for f in r.after.findings.iter().filter(|f| !f.fixable) {
                    tracing::error!(gate = %gate.id, %date, code = f.code, detail = %f.detail, "reconcile finding needs a person");
                }
                out.push(r);
            }
        }
        Ok(out)
    }
}
