//! baton-runner: runs a processor for a partition under a lease.
//!
//! A run checks its dependencies (upstream landings, same-phase processors), takes the
//! lease (or coalesces into the holder's follow-up), loads its inputs, computes (built-in
//! or an external command printing JSON Lines), deduplicates on the primary key, and
//! writes through the fenced upsert together with its completion's outbox row; then it
//! records the run and releases, running once more if requests were coalesced meanwhile.
//!
//! Invariant: a run writes nothing unless it holds the live current lease at commit (the
//! warehouse checks, not the runner). Invariant: a request that finds the lease held is
//! never dropped: it is recorded atomically with the failed acquire and the holder runs
//! once more after it releases.
#![deny(missing_docs)]

mod external;
/// The external processor's JSON Lines reader (for the fuzz target `fuzz/fuzz_targets/jsonl.rs`).
pub use external::parse_lines as parse_json_lines;

pub use external::kill_running_commands;

use baton_core::clock::Clock;
use baton_core::config::{MissingInput, Pipeline, Processor};
use baton_core::dedup;
use baton_core::ids::IdSource;
use baton_core::lease::Lease;
use baton_core::message::CompletionMessage;
use baton_core::model::{CompletionStatus, FenceToken, Partition, ProcessorName, Row, RunId};
use baton_core::schedule;
use baton_ports::{
    Acquired, FencedWrite, NewOutboxRow, OnHeld, PendingRequest, Released, RequestKind, RunEnd,
    RunRecord, RunStatus, StateStore, Warehouse, WriteOutcome,
};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a run could not be carried out at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The processor is not in the pipeline.
    #[error("unknown processor `{0}`")]
    UnknownProcessor(String),
    /// The store or warehouse failed.
    #[error(transparent)]
    Backend(#[from] baton_ports::Error),
}

/// How a run waits for a held lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseWait {
    /// Do not wait: coalesce into the holder's follow-up run at once.
    Skip,
    /// Wait up to this long for the lease, then coalesce.
    UpTo(SignedDuration),
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Who runs (host, process, instance): recorded on the lease and the run.
    pub holder: String,
    /// Waiting for a held lease.
    pub lease_wait: LeaseWait,
    /// Attempts when the lease is lost mid-run (fenced), before giving up.
    pub attempts_max: u32,
}

impl RunOptions {
    /// Defaults for a holder: no wait, three attempts.
    pub fn new(holder: impl Into<String>) -> Self {
        Self {
            holder: holder.into(),
            lease_wait: LeaseWait::Skip,
            attempts_max: 3,
        }
    }
}

/// When an owed run becomes ready (`Runner::owed_due`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Ready now.
    Now,
    /// Ready from this time on, whatever else happens.
    At(Timestamp),
    /// Ready only after something the backend signals (a landing, a completion).
    OnEvent,
}

/// What a run still waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    /// Upstream jobs that have not landed for the date.
    pub upstream: Vec<String>,
    /// Same-phase processors without a successful run for the date.
    pub processors: Vec<ProcessorName>,
}

impl Missing {
    /// One line per missing dependency.
    pub fn lines(&self) -> Vec<String> {
        self.upstream
            .iter()
            .map(|j| format!("upstream job `{j}` has not landed"))
            .chain(
                self.processors
                    .iter()
                    .map(|p| format!("processor `{p}` has no successful run")),
            )
            .collect()
    }
    /// Everything missing, in one line.
    pub fn describe(&self) -> String {
        self.lines().join("; ")
    }
}

/// Points where a test or the demo can inject a fault (a paused holder).
pub trait RunHooks: Send + Sync {
    /// Called after computing and before the fenced write.
    fn before_write(&self, _lease: &Lease) {}
}

/// No faults.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;
impl RunHooks for NoHooks {}

/// One attempt that reached the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The run id.
    pub run_id: RunId,
    /// The lease token it ran under.
    pub token: FenceToken,
    /// `success`, `partial`, `no_data`, `failed` or `fenced`.
    pub status: RunStatus,
    /// Rows written.
    pub rows_written: u64,
    /// Rows dropped by dedup.
    pub duplicates_dropped: u64,
    /// Why it failed or was fenced.
    pub error: Option<String>,
}

/// How a request to run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The last attempt wrote its data (or failed to compute); see `attempts`.
    Ran,
    /// The lease was held; the request was coalesced into the holder's follow-up run.
    Coalesced {
        /// Who holds it.
        holder: String,
        /// Until when (unless renewed).
        until: Timestamp,
    },
    /// Dependencies are not met; nothing ran.
    Deferred {
        /// What is missing.
        missing: Vec<String>,
    },
}

/// The report of a request to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The processor.
    pub processor: String,
    /// The partition.
    pub partition: Partition,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The attempts made, including coalesced follow-ups.
    pub attempts: Vec<Attempt>,
}

impl RunReport {
    /// Whether the request ended with data written (or nothing to write).
    pub fn succeeded(&self) -> bool {
        self.outcome == RunOutcome::Ran
            && self.attempts.last().is_some_and(|a| a.status.completes())
    }
}

/// Whether `calendar` has rows for the date, i.e. the date has work (`None` without a
/// calendar): the one rule the runner, reconcile's truth, the consumer and the landing
/// checks read a calendar by.
pub fn calendar_has_rows(
    pipeline: &Pipeline,
    warehouse: &dyn Warehouse,
    calendar: Option<&str>,
    partition: Partition,
) -> Result<Option<bool>, baton_ports::Error> {
    let Some(table) = calendar.and_then(|c| pipeline.table(c)) else {
        return Ok(None);
    };
    Ok(Some(warehouse.row_count(table, partition)? > 0))
}

/// Whether a processor `proc` depends on has a rerun requested (or coalesced) for the date.
fn dependency_owed(proc: &Processor, partition: Partition, owed: &[PendingRequest]) -> bool {
    owed.iter().any(|r| {
        r.partition == partition
            && proc.depends_on.contains(&r.processor)
            && matches!(r.kind, RequestKind::Requested | RequestKind::Coalesced)
    })
}

/// Runs processors for partitions.
pub struct Runner {
    pipeline: Arc<Pipeline>,
    store: Arc<dyn StateStore>,
    warehouse: Arc<dyn Warehouse>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
}

/// Run ids with random bits from the operating system (the service's default), timed by
/// the runner's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn run_id(&self, now: Timestamp) -> RunId {
        RunId::new(baton_core::ids::uuid_v7(
            now,
            uuid::Uuid::new_v4().as_u128(),
        ))
    }
}

enum Computed {
    Rows(Vec<Row>),
    Failed(String),
}

impl Attempt {
    /// An attempt just started under `token`, before anything was computed or written.
    fn started(run_id: RunId, token: FenceToken) -> Self {
        Self {
            run_id,
            token,
            status: RunStatus::Running,
            rows_written: 0,
            duplicates_dropped: 0,
            error: None,
        }
    }
}

/// Whether the dependency gate holds a run back: a same-phase processor has not succeeded,
/// or an upstream job has not landed and the processor waits for its inputs.
fn gate_closed(proc: &Processor, missing: &Missing) -> bool {
    !missing.processors.is_empty()
        || (!missing.upstream.is_empty() && proc.on_missing_input == MissingInput::Wait)
}

/// The completion a written run publishes: partial when it ran without some inputs, no
/// data when nothing was computed.
fn completion_status(partial_inputs: &[String], rows: &[Row]) -> CompletionStatus {
    if !partial_inputs.is_empty() {
        CompletionStatus::Partial
    } else if rows.is_empty() {
        CompletionStatus::NoData
    } else {
        CompletionStatus::Success
    }
}

impl Runner {
    /// A runner over a store and a warehouse (one backend may be both).
    pub fn new(
        pipeline: Arc<Pipeline>,
        store: Arc<dyn StateStore>,
        warehouse: Arc<dyn Warehouse>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            pipeline,
            store,
            warehouse,
            clock,
            ids: Arc::new(RandomIds),
        }
    }

    /// The same runner taking its run ids from `ids` (the demo's and the simulator's seeded
    /// source, so that a replay is byte for byte the same).
    pub fn with_ids(mut self, ids: Arc<dyn IdSource>) -> Self {
        self.ids = ids;
        self
    }

    /// Records a batch of upstream job `job`'s landing for `partition` (landed at `at`) and,
    /// in the same transaction, a run request for each of its readers; `serve` runs them
    /// (`retry_pending`) through the lease and coalescing path. Returns the batch number.
    pub fn record_landing(
        &self,
        job: &str,
        partition: Partition,
        at: Timestamp,
    ) -> Result<u32, Error> {
        let now = self.clock.now();
        let requests: Vec<PendingRequest> = self
            .pipeline
            .readers_of(job)
            .into_iter()
            .map(|p| PendingRequest {
                processor: p.name.clone(),
                partition,
                kind: RequestKind::Requested,
                reason: format!("{job} landed"),
                since: now,
            })
            .collect();
        Ok(self.store.record_landing(job, partition, at, &requests)?)
    }

    /// The runner's clock's time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The state store runs are recorded in.
    pub fn store(&self) -> &dyn StateStore {
        self.store.as_ref()
    }

    /// Creates every table of the pipeline that is missing.
    pub fn ensure_tables(&self) -> Result<(), Error> {
        for t in &self.pipeline.tables {
            self.warehouse.ensure_table(t)?;
        }
        Ok(())
    }

    /// What `processor` still waits for on `partition`: upstream landings and same-phase
    /// processors without a successful run.
    pub fn missing_dependencies(
        &self,
        processor: &Processor,
        partition: Partition,
    ) -> Result<Missing, Error> {
        let mut missing = Missing::default();
        if !processor.upstream.is_empty() {
            let landed = self.store.landings(partition)?;
            missing.upstream = processor
                .upstream
                .iter()
                .filter(|job| !landed.iter().any(|l| &l.job == *job))
                .cloned()
                .collect();
        }
        if !processor.depends_on.is_empty() {
            let runs = self.store.runs(partition)?;
            for dep in &processor.depends_on {
                let done = runs
                    .iter()
                    .any(|r| &r.processor == dep && r.status.completes());
                if !done {
                    missing.processors.push(dep.clone());
                }
            }
        }
        Ok(missing)
    }

    /// When a run waiting for `missing` upstream jobs passes its processor's wait deadline
    /// (strictly after the latest expected landing plus the deadline); `None` without one.
    fn wait_deadline(
        &self,
        processor: &Processor,
        partition: Partition,
        missing: &Missing,
    ) -> Option<Timestamp> {
        let deadline = processor.wait_deadline?;
        let latest = missing
            .upstream
            .iter()
            .filter_map(|j| self.pipeline.upstream_job(j))
            .map(|job| schedule::expected_at(job, partition, &self.pipeline.timezone))
            .max()?;
        let at = latest.checked_add(deadline).unwrap_or(latest);
        Some(at.checked_add(SignedDuration::from_nanos(1)).unwrap_or(at))
    }

    /// Whether a run waiting for `missing` upstream jobs is past its processor's deadline.
    fn wait_deadline_passed(
        &self,
        processor: &Processor,
        partition: Partition,
        missing: &Missing,
    ) -> bool {
        self.wait_deadline(processor, partition, missing)
            .is_some_and(|at| self.clock.now() >= at)
    }

    /// When an owed run becomes ready, the one rule `retry_pending` runs it by and `serve`
    /// waits by: now, at a time (a coalesced holder's live lease lapses, a wait deadline
    /// passes), or on an event the backend signals (a landing, a dependency's completion).
    /// `leases` are the store's leases (read only when a coalesced run is owed).
    fn owed_due(
        &self,
        proc: &Processor,
        request: &PendingRequest,
        missing: &Missing,
        leases: &[Lease],
    ) -> Due {
        if !missing.processors.is_empty() {
            return Due::OnEvent;
        }
        match request.kind {
            RequestKind::Partial if missing.upstream.is_empty() => Due::Now,
            RequestKind::Partial => Due::OnEvent,
            // Owed to a holder that may have died: due once no live lease covers the
            // (processor, date): released, or lapsed with its process. A live holder runs
            // the follow-up itself and clears the request when it writes. (Counting a lease
            // TTL from the request instead kept a run owed after a dead holder's lease had
            // lapsed, when the request came late in that lease.)
            RequestKind::Coalesced => {
                let now = self.clock.now();
                leases
                    .iter()
                    .filter(|l| l.processor == proc.name && l.partition == request.partition)
                    .find(|l| l.is_live(now))
                    .map_or(Due::Now, |l| Due::At(l.expires_at))
            }
            RequestKind::Deferred | RequestKind::Requested => {
                if missing.upstream.is_empty() || proc.on_missing_input == MissingInput::Partial {
                    Due::Now
                } else {
                    (self.wait_deadline(proc, request.partition, missing))
                        .map_or(Due::OnEvent, Due::At)
                }
            }
        }
    }

    /// The store's leases when a coalesced run is owed (its due time depends on them).
    fn leases_for(&self, owed: &[PendingRequest]) -> Result<Vec<Lease>, Error> {
        if owed.iter().any(|r| r.kind == RequestKind::Coalesced) {
            Ok(self.store.leases()?)
        } else {
            Ok(Vec::new())
        }
    }

    /// Every owed run with when it becomes due by [`Runner::owed_due`] (`None`: its
    /// processor is no longer in the pipeline). One read of the requests, and of the leases
    /// when a coalesced run is owed, for both questions asked of them below.
    fn owed_with_due(&self) -> Result<Vec<(PendingRequest, Option<Due>)>, Error> {
        let owed = self.store.pending_requests()?;
        let leases = self.leases_for(&owed)?;
        let mut out = Vec::with_capacity(owed.len());
        for request in &owed {
            let due = match self.pipeline.processor(request.processor.as_str()) {
                None => None,
                // A dependency owed a rerun first: this one would read output about to
                // change, so it waits for that run (whose own due time counts).
                Some(proc) if dependency_owed(proc, request.partition, &owed) => Some(Due::OnEvent),
                Some(proc) => {
                    let missing = self.missing_dependencies(proc, request.partition)?;
                    Some(self.owed_due(proc, request, &missing, &leases))
                }
            };
            out.push((request.clone(), due));
        }
        Ok(out)
    }

    /// The earliest time an owed run becomes ready through time alone (`None`: every owed
    /// run waits for an event the backend signals, or none is owed). A run owed for a
    /// processor this pipeline no longer has, or ready now, is due now.
    pub fn next_owed_due(&self) -> Result<Option<Timestamp>, Error> {
        let now = self.clock.now();
        let earliest = (self.owed_with_due()?.into_iter())
            .filter_map(|(_, due)| match due {
                None | Some(Due::Now) => Some(now),
                Some(Due::At(at)) => Some(at),
                Some(Due::OnEvent) => None,
            })
            .min();
        Ok(earliest)
    }

    /// Runs every owed run whose inputs have now landed (and fails deferred runs past their
    /// deadline); `serve` calls this on every round.
    pub fn retry_pending(
        &self,
        options: &RunOptions,
        hooks: &dyn RunHooks,
    ) -> Result<Vec<RunReport>, Error> {
        let mut reports = Vec::new();
        for request in self.owed_runs_due()? {
            tracing::info!(processor = %request.processor, date = %request.partition, kind = %request.kind, "running an owed run: its inputs have landed");
            reports.push(self.run(
                request.processor.as_str(),
                request.partition,
                options,
                hooks,
            )?);
        }
        Ok(reports)
    }

    /// The owed runs due now, the ones `retry_pending` would run (an owed run of a processor
    /// the pipeline no longer has is cleared instead).
    pub fn owed_runs_due(&self) -> Result<Vec<PendingRequest>, Error> {
        let now = self.clock.now();
        let mut due = Vec::new();
        for (request, when) in self.owed_with_due()? {
            match when {
                None => self
                    .store
                    .clear_request(&request.processor, request.partition, now)?,
                Some(Due::Now) => due.push(request),
                Some(Due::At(at)) if now >= at => due.push(request),
                Some(Due::At(_) | Due::OnEvent) => {}
            }
        }
        Ok(due)
    }

    /// Runs `processor` for `partition`: the dependency gate first, then the lease loop.
    pub fn run(
        &self,
        processor: &str,
        partition: Partition,
        options: &RunOptions,
        hooks: &dyn RunHooks,
    ) -> Result<RunReport, Error> {
        let proc = self
            .pipeline
            .processor(processor)
            .ok_or_else(|| Error::UnknownProcessor(processor.to_owned()))?
            .clone();
        let report = RunReport {
            processor: processor.to_owned(),
            partition,
            outcome: RunOutcome::Ran,
            attempts: Vec::new(),
        };
        let missing = self.missing_dependencies(&proc, partition)?;
        if gate_closed(&proc, &missing) {
            return self.hold_at_gate(&proc, partition, options, &missing, report);
        }
        // Upstream still missing past an open gate is allowed (`on_missing_input =
        // partial`): the run goes ahead and its completion is marked partial.
        self.run_under_lease(&proc, partition, options, hooks, &missing.upstream, report)
    }

    /// The gate is closed: fails the run when its inputs missed the wait deadline (so the
    /// date does not wait forever), or else defers it, recorded so `retry_pending` runs it
    /// once the dependencies are met.
    fn hold_at_gate(
        &self,
        proc: &Processor,
        partition: Partition,
        options: &RunOptions,
        missing: &Missing,
        mut report: RunReport,
    ) -> Result<RunReport, Error> {
        if missing.processors.is_empty() && self.wait_deadline_passed(proc, partition, missing) {
            let reason = format!(
                "inputs not landed by the wait deadline: {}",
                missing.describe()
            );
            report
                .attempts
                .push(self.fail_unleased(proc, partition, options, reason)?);
            self.store
                .clear_request(&proc.name, partition, self.clock.now())?;
            return Ok(report);
        }
        tracing::info!(processor = proc.name.as_str(), date = %partition, missing = %missing.describe(), "deferred: dependencies not met");
        self.store.record_request(&PendingRequest {
            processor: proc.name.clone(),
            partition,
            kind: RequestKind::Deferred,
            reason: missing.describe(),
            since: self.clock.now(),
        })?;
        report.outcome = RunOutcome::Deferred {
            missing: missing.lines(),
        };
        Ok(report)
    }

    /// The lease loop: takes the lease (or coalesces into the holder's follow-up), makes
    /// one attempt, releases, and goes round again for a coalesced follow-up or, up to
    /// `attempts_max`, after being fenced.
    fn run_under_lease(
        &self,
        proc: &Processor,
        partition: Partition,
        options: &RunOptions,
        hooks: &dyn RunHooks,
        partial_inputs: &[String],
        mut report: RunReport,
    ) -> Result<RunReport, Error> {
        let mut fenced_attempts = 0;
        loop {
            let lease = match self.acquire(proc, partition, options)? {
                Ok(lease) => lease,
                Err((holder, until)) => {
                    self.coalesce(proc, partition, holder, until, &mut report)?;
                    return Ok(report);
                }
            };
            let attempt =
                match self.attempt(proc, partition, &lease, options, hooks, partial_inputs) {
                    Ok(attempt) => attempt,
                    Err(e) => {
                        // A backend error mid-run: hand the lease back now rather than leave
                        // it held for its whole TTL (a retry can take it at once).
                        self.release_after_error(proc, partition, lease.token);
                        return Err(e);
                    }
                };
            let fenced = attempt.status == RunStatus::Fenced;
            report.attempts.push(attempt);
            if self.release_for_follow_up(proc, partition, lease.token)? {
                continue;
            }
            if fenced {
                fenced_attempts += 1;
                if fenced_attempts < options.attempts_max {
                    continue;
                }
            }
            return Ok(report);
        }
    }

    /// The lease is held by `holder`: the request is coalesced into its follow-up run.
    fn coalesce(
        &self,
        proc: &Processor,
        partition: Partition,
        holder: String,
        until: Timestamp,
        report: &mut RunReport,
    ) -> Result<(), Error> {
        tracing::info!(processor = proc.name.as_str(), date = %partition, %holder, %until, "lease held; coalesced into the holder's follow-up run");
        // Only a first request reports coalescing; a follow-up that finds the lease taken
        // by someone else has handed its duty to that holder.
        if report.attempts.is_empty() {
            // Also owed in the store: if the holder dies before it runs the follow-up,
            // `retry_pending` (in every `serve`) runs it once the lease is free. The
            // holder's next successful write clears it.
            self.store.record_request(&PendingRequest {
                processor: proc.name.clone(),
                partition,
                kind: RequestKind::Coalesced,
                reason: format!("requested while {holder} held the lease until {until}"),
                since: self.clock.now(),
            })?;
            report.outcome = RunOutcome::Coalesced { holder, until };
        }
        Ok(())
    }

    /// Releases the lease after an attempt failed on a backend error, best effort: when the
    /// backend is still down the release fails too, and the lease expires by its TTL (and
    /// the run is marked abandoned by whoever comes next).
    fn release_after_error(&self, proc: &Processor, partition: Partition, token: FenceToken) {
        match self.store.release_lease(&proc.name, partition, token) {
            Ok(_) => {
                tracing::warn!(processor = %proc.name, date = %partition, %token, "released the lease after a backend error mid-run");
            }
            Err(e) => {
                tracing::warn!(processor = %proc.name, date = %partition, %token, error = %e, "could not release the lease after a backend error; it expires by its TTL");
            }
        }
    }

    /// Releases the lease; true when requests were coalesced meanwhile, so the caller
    /// runs once more for them.
    fn release_for_follow_up(
        &self,
        proc: &Processor,
        partition: Partition,
        token: FenceToken,
    ) -> Result<bool, Error> {
        match self.store.release_lease(&proc.name, partition, token)? {
            Released::Released { follow_up: true } => {
                tracing::info!(processor = proc.name.as_str(), date = %partition, "running the coalesced follow-up");
                Ok(true)
            }
            Released::Released { follow_up: false } | Released::Refused(_) => Ok(false),
        }
    }

    /// Takes the lease, waiting for it as `options` say; the holder and its expiry when it
    /// stays held.
    fn acquire(
        &self,
        proc: &Processor,
        partition: Partition,
        options: &RunOptions,
    ) -> Result<Result<Lease, (String, Timestamp)>, Error> {
        let ttl = self.pipeline.lease_ttl;
        let deadline = match options.lease_wait {
            LeaseWait::Skip => None,
            LeaseWait::UpTo(d) => self.clock.now().checked_add(d).ok(),
        };
        loop {
            let waiting = deadline.is_some_and(|d| self.clock.now() < d);
            let on_held = if waiting {
                OnHeld::Report
            } else {
                OnHeld::Coalesce
            };
            match self
                .store
                .acquire_lease(&proc.name, partition, &options.holder, ttl, on_held)?
            {
                Acquired::Granted(lease) => return Ok(Ok(lease)),
                Acquired::Held { lease, .. } if !waiting => {
                    return Ok(Err((lease.holder, lease.expires_at)));
                }
                Acquired::Held { .. } => self.clock.sleep(SignedDuration::from_millis(250)),
            }
        }
    }

    /// One attempt under `lease`: records the run's start, computes and deduplicates, then
    /// writes through the fence and records how the run finished.
    fn attempt(
        &self,
        proc: &Processor,
        partition: Partition,
        lease: &Lease,
        options: &RunOptions,
        hooks: &dyn RunHooks,
        partial_inputs: &[String],
    ) -> Result<Attempt, Error> {
        // The run this lease was taken over from (its process died) ends as abandoned
        // before this one starts.
        for run in self.store.abandon_runs_of(&proc.name, partition)? {
            tracing::warn!(processor = %proc.name, date = %partition, run_id = %run.run_id, holder = %run.holder, token = %run.token, "marked the previous run abandoned: its process died before finishing it");
        }
        let (run_id, started_at) = self.start_run(proc, partition, options, lease.token)?;
        let attempt = Attempt::started(run_id, lease.token);
        let result = self.attempt_started(
            proc,
            partition,
            lease,
            hooks,
            partial_inputs,
            started_at,
            attempt.clone(),
        );
        if let Err(e) = &result {
            // Recorded as failed where the backend still answers, so run history does not
            // keep it `running`; otherwise it is marked abandoned once its lease lapses.
            let end = RunEnd {
                status: RunStatus::Failed,
                rows_written: 0,
                duplicates_dropped: 0,
                error: Some(format!("backend error mid-run; nothing was written: {e}")),
            };
            if let Err(again) = self.store.finish_run(&attempt.run_id, &end) {
                tracing::warn!(processor = %proc.name, date = %partition, error = %again, "could not record the run's failure");
            }
        }
        result
    }

    /// The rest of an attempt once its start is recorded: computes and deduplicates, then
    /// writes through the fence and records how the run finished.
    #[allow(clippy::too_many_arguments)] // the attempt's context, passed on unchanged
    fn attempt_started(
        &self,
        proc: &Processor,
        partition: Partition,
        lease: &Lease,
        hooks: &dyn RunHooks,
        partial_inputs: &[String],
        started_at: Timestamp,
        mut attempt: Attempt,
    ) -> Result<Attempt, Error> {
        let computed = self.compute(proc, partition, lease)?;
        let rows = match computed {
            Computed::Rows(rows) => rows,
            Computed::Failed(error) => return self.fail(proc, partition, attempt, error),
        };
        let deduped = match self.dedup_for_date(proc, partition, rows) {
            Ok(deduped) => deduped,
            Err(error) => return self.fail(proc, partition, attempt, error),
        };
        let status = completion_status(partial_inputs, &deduped.rows);
        if status == CompletionStatus::NoData && self.has_work(proc, partition)? {
            // `no_data` means no work: on a date its calendar has rows for, no rows is a
            // failure, not a completion.
            let calendar = proc.calendar.as_deref().unwrap_or_default();
            let error = format!("no rows on a date with work (rows in {calendar})");
            return self.fail(proc, partition, attempt, error);
        }
        // What the rows are, for the orchestrator to tell changed output from a rerun of
        // the same (G9).
        let digest = baton_core::digest::of_rows(&deduped.rows, &proc.volatile_columns);
        // Built before the hook: a paused holder's completion keeps the time it computed.
        let completion = self.completion_row(
            proc,
            partition,
            &attempt.run_id,
            (status, deduped.rows.len() as u64),
            Some(digest),
        )?;
        // How the run ends if the write commits, recorded in the write's transaction.
        let end = RunEnd {
            status: status.into(),
            rows_written: deduped.rows.len() as u64,
            duplicates_dropped: deduped.dropped as u64,
            error: (!partial_inputs.is_empty())
                .then(|| format!("partial: ran without {}", partial_inputs.join(", "))),
        };
        hooks.before_write(lease);
        let outcome = self.write_fenced(
            proc,
            partition,
            lease,
            &deduped.rows,
            &completion,
            (&attempt.run_id, &end),
        )?;
        attempt.duplicates_dropped = end.duplicates_dropped;
        match outcome {
            WriteOutcome::Written { rows, .. } => {
                attempt.status = end.status;
                attempt.rows_written = rows;
                attempt.error = end.error;
                // The run ended in the write's transaction; what follows is owed-run
                // bookkeeping, which reconcile repairs if the process dies here.
                self.request_dependents(proc, partition)?;
                self.settle_requests(proc, partition, partial_inputs, started_at)?;
            }
            WriteOutcome::Fenced(refusal) => {
                tracing::warn!(processor = %proc.name, date = %partition, token = %lease.token, %refusal, "write fenced: this run lost its lease and wrote nothing");
                attempt.status = RunStatus::Fenced;
                attempt.error = Some(refusal.to_string());
                self.finish_run(&attempt)?;
            }
        }
        Ok(attempt)
    }

    /// Records the start of a run under `token` and returns its id and start time.
    fn start_run(
        &self,
        proc: &Processor,
        partition: Partition,
        options: &RunOptions,
        token: FenceToken,
    ) -> Result<(RunId, Timestamp), Error> {
        let started_at = self.clock.now();
        let run_id = self.ids.run_id(started_at);
        self.store.start_run(&RunRecord {
            run_id: run_id.clone(),
            processor: proc.name.clone(),
            partition,
            holder: options.holder.clone(),
            token,
            started_at,
            finished_at: None,
            status: RunStatus::Running,
            rows_written: 0,
            duplicates_dropped: 0,
            error: None,
        })?;
        Ok((run_id, started_at))
    }

    /// Records how an attempt finished.
    fn finish_run(&self, attempt: &Attempt) -> Result<(), Error> {
        self.store.finish_run(
            &attempt.run_id,
            &RunEnd {
                status: attempt.status,
                rows_written: attempt.rows_written,
                duplicates_dropped: attempt.duplicates_dropped,
                error: attempt.error.clone(),
            },
        )?;
        Ok(())
    }

    /// Deduplicates computed rows on the primary key and checks every row belongs to the
    /// run's date (a run may only replace its own partition); the error fails the run.
    fn dedup_for_date(
        &self,
        proc: &Processor,
        partition: Partition,
        rows: Vec<Row>,
    ) -> Result<dedup::Deduped, String> {
        let deduped = dedup::dedup(rows, &proc.table.primary_key).map_err(|e| e.to_string())?;
        let day = partition.to_string();
        if let Some((i, _)) = deduped.rows.iter().enumerate().find(|(_, r)| {
            r.get(&proc.table.partition_column).and_then(|v| v.as_str()) != Some(day.as_str())
        }) {
            return Err(format!(
                "row {i} has `{}` other than the run's date {day}",
                proc.table.partition_column
            ));
        }
        if deduped.dropped > 0 {
            tracing::warn!(processor = %proc.name, date = %partition, dropped = deduped.dropped, "pre-write dedup dropped rows with a repeated primary key");
        }
        Ok(deduped)
    }

    /// The fenced write: the rows, the completion's outbox row and the run's end in one
    /// transaction, which the warehouse refuses unless `lease` is still the live current one.
    fn write_fenced(
        &self,
        proc: &Processor,
        partition: Partition,
        lease: &Lease,
        rows: &[Row],
        completion: &NewOutboxRow,
        run: (&RunId, &RunEnd),
    ) -> Result<WriteOutcome, Error> {
        Ok(self.warehouse.fenced_write(&FencedWrite {
            table: &proc.table,
            processor: &proc.name,
            partition,
            token: lease.token,
            rows,
            completion,
            run: Some(run),
        })?)
    }

    /// After a write: a complete run clears what was owed for the date; a partial one
    /// records a request to rerun with every input once the late ones land
    /// (`retry_pending`).
    fn settle_requests(
        &self,
        proc: &Processor,
        partition: Partition,
        partial_inputs: &[String],
        started_at: Timestamp,
    ) -> Result<(), Error> {
        if partial_inputs.is_empty() {
            // Only what was requested before this run started: a landing during the run
            // keeps its request, and the rerun reads the new batch.
            self.store
                .clear_request(&proc.name, partition, started_at)?;
            return Ok(());
        }
        self.store.record_request(&PendingRequest {
            processor: proc.name.clone(),
            partition,
            kind: RequestKind::Partial,
            reason: format!(
                "ran without {}; reruns when it lands",
                partial_inputs.join(", ")
            ),
            since: self.clock.now(),
        })?;
        Ok(())
    }

    /// Records a run that failed before it could take a lease (its inputs never landed).
    fn fail_unleased(
        &self,
        proc: &Processor,
        partition: Partition,
        options: &RunOptions,
        error: String,
    ) -> Result<Attempt, Error> {
        let (run_id, _) = self.start_run(proc, partition, options, FenceToken::ZERO)?;
        let attempt = Attempt::started(run_id, FenceToken::ZERO);
        self.fail(proc, partition, attempt, error)
    }

    /// Fails an attempt that wrote nothing: records it and publishes the failure.
    fn fail(
        &self,
        proc: &Processor,
        partition: Partition,
        mut attempt: Attempt,
        error: String,
    ) -> Result<Attempt, Error> {
        tracing::error!(processor = %proc.name, date = %partition, %error, "run failed; nothing was written");
        attempt.status = RunStatus::Failed;
        attempt.error = Some(error);
        // Nothing was counted yet: a failed run records no rows and no duplicates.
        self.finish_run(&attempt)?;
        // The failure is published too, so the orchestrator's document shows it.
        self.store.enqueue(&self.completion_row(
            proc,
            partition,
            &attempt.run_id,
            (CompletionStatus::Failed, 0),
            None,
        )?)?;
        Ok(attempt)
    }

    /// Whether `proc` has work on the date by its calendar (rows there); without a calendar,
    /// a date without rows is a legitimate `no_data`.
    fn has_work(&self, proc: &Processor, partition: Partition) -> Result<bool, Error> {
        let says = calendar_has_rows(
            &self.pipeline,
            self.warehouse.as_ref(),
            proc.calendar.as_deref(),
            partition,
        )?;
        Ok(says == Some(true))
    }

    /// Requests a run of every processor that depends on `proc` for the date: their output
    /// was computed from `proc`'s previous output, or waited for it (G9, staleness).
    fn request_dependents(&self, proc: &Processor, partition: Partition) -> Result<(), Error> {
        for dependent in self.pipeline.dependents_of(&proc.name) {
            self.store.record_request(&PendingRequest {
                processor: dependent.name.clone(),
                partition,
                kind: RequestKind::Requested,
                reason: format!("{} has new output", proc.name),
                since: self.clock.now(),
            })?;
        }
        Ok(())
    }

    /// The outbox row carrying a run's completion message (to its gate, if any).
    fn completion_row(
        &self,
        proc: &Processor,
        partition: Partition,
        run_id: &RunId,
        (status, record_count): (CompletionStatus, u64),
        digest: Option<String>,
    ) -> Result<NewOutboxRow, Error> {
        let gate = self
            .pipeline
            .gate_for_processor(&proc.name)
            .map(|g| g.id.clone());
        let message = CompletionMessage::new(
            proc.name.clone(),
            partition,
            run_id.clone(),
            status,
            record_count,
            self.clock.now(),
        )
        .for_gate(gate)
        .with_digest(digest);
        Ok(NewOutboxRow::for_completion(
            self.pipeline.completion_topic(proc),
            &message,
        ))
    }

    /// Computes the rows of a run: the external command when configured, else the
    /// built-in processor over its input tables.
    fn compute(
        &self,
        proc: &Processor,
        partition: Partition,
        lease: &Lease,
    ) -> Result<Computed, Error> {
        if let Some(command) = &proc.command {
            let renew = || {
                self.store
                    .renew_lease(&proc.name, partition, lease.token, self.pipeline.lease_ttl)
                    .map(|r| r.map(|_| ()))
            };
            return Ok(
                match external::run(
                    command,
                    &proc.name,
                    partition,
                    self.pipeline.lease_ttl,
                    &proc.limits,
                    &renew,
                ) {
                    Ok(rows) => Computed::Rows(rows),
                    Err(e) => Computed::Failed(e),
                },
            );
        }
        let from = partition.offset(-(proc.history_days as i32));
        let mut inputs = BTreeMap::new();
        for table in &proc.inputs {
            let spec = self.pipeline.table(table).ok_or_else(|| {
                baton_ports::Error::Permanent(format!(
                    "invariant: input table `{table}` was validated"
                ))
            })?;
            inputs.insert(table.clone(), self.warehouse.read(spec, from, partition)?);
        }
        // Built-in processors finish well inside a third of the lease; renew once anyway
        // when due, so a slow read does not cost the lease.
        if self.clock.now() >= lease.renew_due_at()
            && let Err(refusal) = self.store.renew_lease(
                &proc.name,
                partition,
                lease.token,
                self.pipeline.lease_ttl,
            )?
        {
            tracing::warn!(processor = %proc.name, date = %partition, %refusal, "lease renewal refused");
        }
        Ok(
            match baton_reference::compute(proc.name.as_str(), partition, &inputs, self.clock.now())
            {
                Some(Ok(rows)) => Computed::Rows(rows),
                Some(Err(e)) => Computed::Failed(e),
                None => Computed::Failed(format!(
                    "processor `{}` has no built-in implementation and no `command` in the config",
                    proc.name
                )),
            },
        )
    }
}
