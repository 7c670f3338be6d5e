//! baton-conformance: the behaviour every backend must show, written once.
//!
//! `exercise_state_store`, `exercise_warehouse` and `exercise_bus` each take a constructor
//! that builds a fresh backend on a [`ManualClock`], and panic with a message naming the
//! broken rule. The SQLite backend and the simulator's in-memory backend both run them
//! (and later backends must), so a fake can never drift from the real thing.
#![deny(missing_docs)]
#![allow(clippy::unwrap_used)] // a test suite: a failed unwrap is a failed conformance check

mod consume;
mod retention;

use baton_core::ManualClock;
use baton_core::completion::{self, Outcome};
use baton_core::config::{Pipeline, TableSpec};
use baton_core::lease::Refusal;
use baton_core::message::CompletionMessage;
use baton_core::model::{
    CompletionStatus, FenceToken, GateId, Partition, ProcessorName, Row, RunId,
};
use baton_ports::{
    Acquired, Bus, FencedWrite, GroupSettings, NewDeadLetter, NewOutboxRow, OnHeld, OutboxKind,
    PendingRequest, Published, Released, RequestKind, RunEnd, RunRecord, RunStatus, StateStore,
    Warehouse, Work, WriteOutcome, engine,
};
pub use consume::{exercise_consume, exercise_relay};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The clock every exercise starts from.
pub fn start_time() -> Timestamp {
    "2024-03-02T12:00:00Z".parse().unwrap()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(start_time()))
}

pub(crate) fn day(s: &str) -> Partition {
    Partition::parse(s).unwrap()
}

/// A successful completion of `processor`'s run `run` for `date` (`YYYY-MM-DD`), produced
/// at [`start_time`].
pub fn completion(processor: &str, run: &str, date: &str) -> CompletionMessage {
    CompletionMessage::new(
        ProcessorName::from(processor),
        day(date),
        RunId::from(run),
        CompletionStatus::Success,
        3,
        start_time(),
    )
}

const TTL: SignedDuration = SignedDuration::from_secs(600);
const CLAIM: SignedDuration = SignedDuration::from_secs(30);

/// Documents, leases, runs, outbox, dead letters and landings.
pub fn exercise_state_store<S: StateStore>(make: impl Fn(Arc<ManualClock>) -> S) {
    let pipeline = Pipeline::reference().unwrap();
    let gate = pipeline.gates[0].clone();
    let clock = clock();
    let store = make(clock.clone());
    let now = clock.now_ts();
    let mut step = |doc: Option<completion::Document>, _: &GateId, m: &CompletionMessage| {
        completion::step(doc, m, &gate, now, &[])
    };

    // Documents: one entry per processor, duplicates change nothing that counts.
    let names = [
        "team_offense_game_summary",
        "team_defense_game_summary",
        "upcoming_team_game_context",
        "player_game_summary",
    ];
    let batch: Vec<Work> = names
        .iter()
        .map(|p| Work::Completion {
            gate: gate.id.clone(),
            message: completion(p, "r1", "2024-03-01"),
        })
        .chain(std::iter::once(Work::Completion {
            gate: gate.id.clone(),
            message: completion(names[0], "r1", "2024-03-01"),
        }))
        .collect();
    let outcomes = store.apply(&batch, &mut step).unwrap();
    assert_eq!(
        outcomes[..4],
        vec![Outcome::Applied; 4][..],
        "first messages apply"
    );
    assert_eq!(
        outcomes[4],
        Outcome::Duplicate,
        "a repeated run is a duplicate"
    );
    let doc = store
        .document(&gate.id, day("2024-03-01"))
        .unwrap()
        .expect("document stored");
    assert_eq!(
        doc.completed_count, 4,
        "count is derived from distinct entries"
    );
    assert!(!doc.triggered);
    assert!(doc.version >= 1, "a stored document has a version");
    assert!(
        store
            .outbox_for(OutboxKind::Trigger, day("2024-03-01"))
            .unwrap()
            .is_empty(),
        "no trigger before the policy holds"
    );

    // The last processor triggers once, with the trigger row in the same transaction.
    let last = Work::Completion {
        gate: gate.id.clone(),
        message: completion("upcoming_player_game_context", "r1", "2024-03-01"),
    };
    store.apply(std::slice::from_ref(&last), &mut step).unwrap();
    store.apply(std::slice::from_ref(&last), &mut step).unwrap();
    let triggers = store
        .outbox_for(OutboxKind::Trigger, day("2024-03-01"))
        .unwrap();
    assert_eq!(triggers.len(), 1, "exactly one trigger row");
    let doc = store
        .document(&gate.id, day("2024-03-01"))
        .unwrap()
        .unwrap();
    assert!(doc.triggered && doc.completed_count == 5);
    assert_eq!(
        store
            .documents(&gate.id, day("2024-02-01"), day("2024-03-31"))
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .documents(&gate.id, day("2024-03-02"), day("2024-03-31"))
            .unwrap()
            .is_empty()
    );

    // Outbox: claimed by one relay at a time, unpublished until marked.
    let pending = store.claim_unpublished(100, CLAIM).unwrap();
    assert_eq!(pending.len(), 1);
    assert!(
        store.claim_unpublished(100, CLAIM).unwrap().is_empty(),
        "a claimed row is not handed to a second relay"
    );
    assert_eq!(store.backlog().unwrap().pending, 1);
    clock.advance(CLAIM + SignedDuration::from_secs(1));
    let again = store.claim_unpublished(100, CLAIM).unwrap();
    assert_eq!(
        again.len(),
        1,
        "an expired claim (a relay that died) is taken over"
    );
    store.mark_published(&[pending[0].id]).unwrap();
    clock.advance(CLAIM + SignedDuration::from_secs(1));
    assert!(
        store.claim_unpublished(100, CLAIM).unwrap().is_empty(),
        "a published row is never claimed again"
    );
    assert_eq!(store.backlog().unwrap().pending, 0);
    store
        .enqueue(&NewOutboxRow {
            topic: "t".into(),
            message_id: "m".into(),
            kind: OutboxKind::Completion,
            partition: day("2024-03-01"),
            payload: "{}".into(),
        })
        .unwrap();
    assert_eq!(
        store.claim_unpublished(100, CLAIM).unwrap()[0]
            .row
            .message_id,
        "m"
    );

    // Dead letters, from a batch and directly.
    // The payload is not UTF-8: every byte must come back as it was.
    let letter = NewDeadLetter {
        topic: "t".into(),
        message_id: None,
        payload: b"{bad \xff\xfe\x00 end".to_vec(),
        reason: "not JSON".into(),
    };
    store
        .apply(&[Work::DeadLetter(letter.clone())], &mut step)
        .unwrap();
    let unknown = Work::Completion {
        gate: gate.id.clone(),
        message: completion("player_daily_cache", "r1", "2024-03-01"),
    };
    assert!(matches!(
        store.apply(&[unknown], &mut step).unwrap()[0],
        Outcome::Rejected { .. }
    ));
    let letters = store.dead_letters().unwrap();
    assert_eq!(letters.len(), 2, "both dead letters are kept");
    assert_eq!(letters[0].letter, letter);
    exercise_dead_letter_settling(&store, &letters);

    // Operational records: compare-and-set, so two writers cannot both win.
    assert!(store.ops_record("alert/x").unwrap().is_none());
    assert!(store.put_ops_record("alert/x", "{\"a\":1}", None).unwrap());
    assert!(
        !store.put_ops_record("alert/x", "{\"a\":2}", None).unwrap(),
        "a second create loses"
    );
    let rec = store.ops_record("alert/x").unwrap().unwrap();
    assert_eq!((rec.version, rec.body.as_str()), (1, "{\"a\":1}"));
    assert!(
        store
            .put_ops_record("alert/x", "{\"a\":3}", Some(1))
            .unwrap()
    );
    assert!(
        !store
            .put_ops_record("alert/x", "{\"a\":4}", Some(1))
            .unwrap(),
        "a write on a stale version loses"
    );
    assert!(store.put_ops_record("instance/a", "{}", None).unwrap());
    let alerts = store.ops_records("alert/").unwrap();
    assert_eq!(alerts.len(), 1, "by prefix");
    assert_eq!(
        (alerts[0].version, alerts[0].body.as_str()),
        (2, "{\"a\":3}")
    );

    // Edit (reconcile's path): the edit sees the stored document and writes its triggers.
    let edited = store
        .edit_document(&gate.id, day("2024-03-01"), &mut |doc| {
            let mut doc = doc.unwrap();
            let t = completion::force_trigger(&mut doc, &gate, now, "forced");
            Some((doc, vec![t]))
        })
        .unwrap()
        .unwrap();
    assert_eq!(edited.generation, 2);
    assert_eq!(
        store
            .outbox_for(OutboxKind::Trigger, day("2024-03-01"))
            .unwrap()
            .len(),
        2
    );

    exercise_leases(&store, &clock);

    // Runs.
    let run = RunRecord {
        run_id: RunId::from("run-1"),
        processor: ProcessorName::from("player_game_summary"),
        partition: day("2024-03-01"),
        holder: "w1".into(),
        token: FenceToken::new(1),
        started_at: clock.now_ts(),
        finished_at: None,
        status: RunStatus::Running,
        rows_written: 0,
        duplicates_dropped: 0,
        error: None,
    };
    store.start_run(&run).unwrap();
    store
        .finish_run(
            &run.run_id,
            &RunEnd {
                status: RunStatus::Success,
                rows_written: 7,
                duplicates_dropped: 2,
                error: None,
            },
        )
        .unwrap();
    let runs = store.runs(day("2024-03-01")).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0].status.as_str(),
            runs[0].rows_written,
            runs[0].duplicates_dropped
        ),
        ("success", 7, 2)
    );
    assert!(runs[0].finished_at.is_some());

    // Runs finished since a time.
    let since = clock.now_ts();
    assert!(
        store
            .runs_finished_since(since.checked_add(SignedDuration::from_secs(1)).unwrap())
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.runs_finished_since(since).unwrap().len(), 1);

    // Owed runs: recorded once per (processor, date), the first `since` kept, then cleared.
    let request = PendingRequest {
        processor: ProcessorName::from("player_game_summary"),
        partition: day("2024-03-01"),
        kind: RequestKind::Deferred,
        reason: "upstream job `x` has not landed".into(),
        since: start_time(),
    };
    store.record_request(&request).unwrap();
    let later = PendingRequest {
        kind: RequestKind::Partial,
        since: start_time()
            .checked_add(SignedDuration::from_hours(1))
            .unwrap(),
        ..request.clone()
    };
    store.record_request(&later).unwrap();
    let pending = store.pending_requests().unwrap();
    assert_eq!(pending.len(), 1, "one owed run per processor and date");
    assert_eq!(
        (pending[0].kind.as_str(), pending[0].since),
        ("partial", start_time())
    );
    store
        .clear_request(&request.processor, request.partition, start_time())
        .unwrap();
    assert!(store.pending_requests().unwrap().is_empty());
    exercise_abandoned_runs(&store, &clock);
    exercise_landings(&store, &clock);
    exercise_landing_history_bound(&store, &clock);
    exercise_receipts(&store, &clock, &pipeline);
    exercise_range_reads(&store, &clock);
    // Last: it moves the clock past the retention window.
    retention::exercise_store_retention(&store, &clock);
}

/// The range reads health and reconcile use answer what the per-date reads answer, date
/// by date, in the same order: runs by partition and then start order (a later date's run
/// that started first still comes after), landings by partition and then job; dates
/// outside the range are left out.
fn exercise_range_reads<S: StateStore>(store: &S, clock: &ManualClock) {
    let run = |id: &str, processor: &str, date: &str| {
        store
            .start_run(&RunRecord {
                run_id: RunId::from(id),
                processor: ProcessorName::from(processor),
                partition: day(date),
                holder: "w".into(),
                token: FenceToken::ZERO,
                started_at: clock.now_ts(),
                finished_at: None,
                status: RunStatus::Running,
                rows_written: 0,
                duplicates_dropped: 0,
                error: None,
            })
            .unwrap();
        clock.advance(SignedDuration::from_secs(1));
    };
    run("range-late-date-first", "b_proc", "2024-03-05");
    run("range-a", "b_proc", "2024-03-03");
    run("range-b", "a_proc", "2024-03-03");
    run("range-outside", "a_proc", "2024-03-07");
    run("range-before", "a_proc", "2024-01-31");
    for (job, date) in [
        ("z_job", "2024-03-03"),
        ("a_job", "2024-03-03"),
        ("a_job", "2024-03-05"),
        ("a_job", "2024-03-07"),
        ("a_job", "2024-01-31"),
    ] {
        store
            .record_landing(job, day(date), clock.now_ts(), &[])
            .unwrap();
    }
    let (from, to) = (day("2024-02-01"), day("2024-03-05"));
    let dates = from.through(to);
    let runs: Vec<RunRecord> = dates.iter().flat_map(|&d| store.runs(d).unwrap()).collect();
    assert_eq!(
        store.runs_between(from, to).unwrap(),
        runs,
        "runs_between is runs of each date, in order"
    );
    assert!(
        runs.iter()
            .any(|r| r.run_id.as_str() == "range-late-date-first")
            && !runs.iter().any(|r| r.run_id.as_str().contains("outside")),
        "the range's bounds are inclusive, dates past them are left out"
    );
    let landings: Vec<baton_ports::Landing> = dates
        .iter()
        .flat_map(|&d| store.landings(d).unwrap())
        .collect();
    assert_eq!(
        store.landings_between(from, to).unwrap(),
        landings,
        "landings_between is landings of each date, in order"
    );
    // Other exercises land their own jobs in this range too: count only this one's.
    let own = landings
        .iter()
        .filter(|l| ["a_job", "z_job"].contains(&l.job.as_str()))
        .count();
    assert_eq!(own, 3, "{landings:?}");
    assert!(
        store.runs_between(to, from).unwrap().is_empty(),
        "an empty range"
    );
}

/// A run whose process died stays `running` until its lease stops covering it; then
/// `abandon_runs` (or the next holder's `abandon_runs_of`) marks it, once, and leaves live
/// and finished runs alone.
fn exercise_abandoned_runs<S: StateStore>(store: &S, clock: &ManualClock) {
    let p = ProcessorName::from("abandon_probe");
    let d = day("2024-02-01");
    let start = |id: &str, token: FenceToken| {
        store
            .start_run(&RunRecord {
                run_id: RunId::from(id),
                processor: p.clone(),
                partition: d,
                holder: "w".into(),
                token,
                started_at: clock.now_ts(),
                finished_at: None,
                status: RunStatus::Running,
                rows_written: 0,
                duplicates_dropped: 0,
                error: None,
            })
            .unwrap()
    };
    let status_of = |id: &str| {
        let runs = store.runs(d).unwrap();
        let run = runs.iter().find(|r| r.run_id.as_str() == id).unwrap();
        (run.status, run.error.clone())
    };
    let Acquired::Granted(a) = store
        .acquire_lease(&p, d, "w", TTL, OnHeld::Report)
        .unwrap()
    else {
        panic!("a free lease is granted")
    };
    start("dies", a.token);
    assert!(
        store.abandon_runs().unwrap().is_empty(),
        "a run under its live lease is running, not abandoned"
    );
    clock.advance(SignedDuration::from_secs(601));
    let marked = store.abandon_runs_of(&p, d).unwrap();
    assert_eq!(marked.len(), 1);
    let (status, error) = status_of("dies");
    assert_eq!(status, RunStatus::Abandoned);
    assert!(error.unwrap().contains("expired"));
    assert!(store.abandon_runs().unwrap().is_empty(), "marked once");
    // A live run and a finished one are left alone; a run whose lease was taken over is not.
    let Acquired::Granted(b) = store
        .acquire_lease(&p, d, "w", TTL, OnHeld::Report)
        .unwrap()
    else {
        panic!("an expired lease can be taken over")
    };
    start("stale", a.token);
    start("live", b.token);
    start("done", b.token);
    let end = RunEnd {
        status: RunStatus::Success,
        rows_written: 1,
        duplicates_dropped: 0,
        error: None,
    };
    store.finish_run(&RunId::from("done"), &end).unwrap();
    let marked = store.abandon_runs().unwrap();
    assert_eq!(
        marked.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        ["stale"]
    );
    assert_eq!(status_of("live").0, RunStatus::Running);
    assert_eq!(status_of("done").0, RunStatus::Success);
    assert!(status_of("stale").1.unwrap().contains("stale"));
    assert!(matches!(
        store.release_lease(&p, d, b.token).unwrap(),
        Released::Released { .. }
    ));
    assert_eq!(
        store.abandon_runs().unwrap().len(),
        1,
        "released: `live` died"
    );
}

fn hours_after_start(h: i64) -> Timestamp {
    start_time()
        .checked_add(SignedDuration::from_hours(h))
        .unwrap()
}

/// Every landing batch counts (first time kept for lateness, latest for staleness), and the
/// runs a landing requests are recorded with it; a request made after a run started
/// survives that run's clear.
fn exercise_landings<S: StateStore>(store: &S, clock: &ManualClock) {
    let d = day("2024-03-02");
    let reader = |p: &str, h: i64| PendingRequest {
        processor: ProcessorName::from(p),
        partition: d,
        kind: RequestKind::Requested,
        reason: "nbac_gamebook_scraper landed".into(),
        since: hours_after_start(h),
    };
    let first = store
        .record_landing(
            "nbac_gamebook_scraper",
            d,
            hours_after_start(1),
            &[
                reader("team_offense_game_summary", 1),
                reader("team_defense_game_summary", 1),
            ],
        )
        .unwrap();
    assert_eq!(first, 1, "the first batch");
    clock.advance(SignedDuration::from_mins(15));
    let second = store
        .record_landing(
            "nbac_gamebook_scraper",
            d,
            hours_after_start(2),
            &[reader("team_offense_game_summary", 2)],
        )
        .unwrap();
    assert_eq!(second, 2, "batches are numbered");
    let landings = store.landings(d).unwrap();
    assert_eq!(landings.len(), 1);
    assert_eq!(
        (
            landings[0].landed_at,
            landings[0].latest_at,
            landings[0].batches
        ),
        (hours_after_start(1), clock.now_ts(), 2),
        "lateness keeps the first landing, staleness the time the latest was recorded"
    );
    let history: Vec<(u32, Timestamp)> = (store.landing_batches(d).unwrap().iter())
        .map(|b| (b.batch, b.landed_at))
        .collect();
    assert_eq!(
        history,
        [(1, hours_after_start(1)), (2, hours_after_start(2))],
        "each batch is in the landing's history"
    );
    let pending = store.pending_requests().unwrap();
    let owed: Vec<(&str, Timestamp)> = pending
        .iter()
        .map(|r| (r.processor.as_str(), r.since))
        .collect();
    assert_eq!(
        owed,
        [
            ("team_defense_game_summary", hours_after_start(1)),
            ("team_offense_game_summary", hours_after_start(2)),
        ],
        "each landing requests its readers once; a newer request moves its time"
    );
    // A run that started between the two landings does not clear the second's request.
    let offense = ProcessorName::from("team_offense_game_summary");
    store
        .clear_request(&offense, d, hours_after_start(1))
        .unwrap();
    assert_eq!(store.pending_requests().unwrap().len(), 2);
    store
        .clear_request(&offense, d, hours_after_start(2))
        .unwrap();
    let defense = ProcessorName::from("team_defense_game_summary");
    store
        .clear_request(&defense, d, hours_after_start(3))
        .unwrap();
    assert!(store.pending_requests().unwrap().is_empty());
}

/// A landing's batch history keeps the newest [`engine::LANDING_BATCHES_KEPT`] batches of
/// each (job, date), trimmed in the landing's transaction; the landing keeps counting.
fn exercise_landing_history_bound<S: StateStore>(store: &S, clock: &ManualClock) {
    let d = day("2024-02-20");
    let total = engine::LANDING_BATCHES_KEPT + 3;
    for _ in 0..total {
        store
            .record_landing("busy", d, clock.now_ts(), &[])
            .unwrap();
        clock.advance(SignedDuration::from_secs(1));
    }
    store
        .record_landing("quiet", d, clock.now_ts(), &[])
        .unwrap();
    let batches = store.landing_batches(d).unwrap();
    let busy: Vec<u32> = (batches.iter())
        .filter(|b| b.job == "busy")
        .map(|b| b.batch)
        .collect();
    assert_eq!(busy, (4..=total).collect::<Vec<_>>(), "the newest batches");
    let quiet: Vec<&baton_ports::LandingBatch> =
        batches.iter().filter(|b| b.job == "quiet").collect();
    assert_eq!(quiet.len(), 1, "another job's history is its own");
    assert_eq!(quiet[0].recorded_at, clock.now_ts(), "by the store's clock");
    let landings = store.landings(d).unwrap();
    assert_eq!(landings[0].batches, total, "the landing counts every batch");
    assert!(store.landing_batches(day("2024-02-21")).unwrap().is_empty());
}

/// Every completion applied to a document leaves a receipt with the step's verdict (none
/// for a rejected one: that is a dead letter), in the order applied, in the same
/// transaction; the newest [`engine::RECEIPTS_KEPT`] per (gate, date) are kept.
fn exercise_receipts<S: StateStore>(store: &S, clock: &ManualClock, pipeline: &Pipeline) {
    let gate = &pipeline.gates[0];
    let d = "2024-02-10";
    let now = clock.now_ts();
    let tog = ProcessorName::from("team_offense_game_summary");
    let facts = completion::StepFacts {
        in_flight: BTreeSet::new(),
        has_work: BTreeSet::from([tog.clone()]),
    };
    let mut step = |doc: Option<completion::Document>, _: &GateId, m: &CompletionMessage| {
        completion::step_settling(doc, m, gate, now, &[], &facts)
    };
    let work = |m: CompletionMessage| Work::Completion {
        gate: gate.id.clone(),
        message: m,
    };
    let mut conflicting = completion("player_game_summary", "r1", d);
    conflicting.record_count += 1;
    let mut stale = completion("player_game_summary", "r0", d);
    stale.status = CompletionStatus::Failed;
    stale.produced_at = hours_after_start(-1);
    let stale_id = stale.message_id.clone();
    let mut no_data = completion(tog.as_str(), "r1", d);
    no_data.status = CompletionStatus::NoData;
    let batch = [
        work(completion("player_game_summary", "r1", d)),
        work(completion("player_game_summary", "r1", d)),
        work(conflicting),
        work(stale),
        work(completion("player_daily_cache", "r1", d)),
        work(no_data),
    ];
    store.apply(&batch, &mut step).unwrap();
    let receipts = store.receipts(day(d)).unwrap();
    let seen: Vec<(&str, &str, Outcome, bool)> = (receipts.iter())
        .map(|r| {
            let p = r.processor.as_str();
            (p, r.run_id.as_str(), r.verdict.clone(), r.not_counted)
        })
        .collect();
    let conflict = Outcome::ConflictingDuplicate {
        field: "record_count".into(),
    };
    let pgs = "player_game_summary";
    assert_eq!(
        seen,
        [
            (pgs, "r1", Outcome::Applied, false),
            (pgs, "r1", Outcome::Duplicate, false),
            (pgs, "r1", conflict, false),
            (pgs, "r0", Outcome::Stale, false),
            (tog.as_str(), "r1", Outcome::Applied, true),
        ],
        "one receipt per message applied, with its verdict, in order"
    );
    let r = &receipts[3];
    assert_eq!(
        (r.gate.clone(), r.status, r.produced_at, r.applied_at),
        (
            gate.id.clone(),
            CompletionStatus::Failed,
            hours_after_start(-1),
            now
        )
    );
    assert_eq!(r.message_id, stale_id);
    // Bound: resent many times, the date keeps its newest receipts.
    let resends: Vec<Work> = (0..engine::RECEIPTS_KEPT)
        .map(|i| {
            let mut m = completion("player_game_summary", "r1", d);
            m.message_id = format!("resend-{i}");
            work(m)
        })
        .collect();
    store.apply(&resends, &mut step).unwrap();
    let receipts = store.receipts(day(d)).unwrap();
    assert_eq!(receipts.len(), engine::RECEIPTS_KEPT as usize);
    assert_eq!(
        receipts[0].message_id, "resend-0",
        "the oldest are forgotten"
    );
    assert!(receipts.iter().all(|r| r.verdict == Outcome::Duplicate));
    assert!(store.receipts(day("2024-02-11")).unwrap().is_empty());
}

fn exercise_leases<S: StateStore>(store: &S, clock: &ManualClock) {
    let p = ProcessorName::from("player_game_summary");
    let d = day("2024-03-01");
    let Acquired::Granted(a) = store
        .acquire_lease(&p, d, "a", TTL, OnHeld::Report)
        .unwrap()
    else {
        panic!("a free lease is granted")
    };
    assert_eq!(a.token, FenceToken::new(1));
    match store
        .acquire_lease(&p, d, "b", TTL, OnHeld::Coalesce)
        .unwrap()
    {
        Acquired::Held {
            lease,
            follow_up_recorded,
        } => {
            assert_eq!(lease.holder, "a");
            assert!(follow_up_recorded);
        }
        other => panic!("a live lease is not granted twice: {other:?}"),
    }
    assert!(matches!(
        store.release_lease(&p, d, FenceToken::new(9)).unwrap(),
        Released::Refused(Refusal::StaleToken { .. })
    ));
    assert_eq!(
        store.release_lease(&p, d, a.token).unwrap(),
        Released::Released { follow_up: true },
        "the coalesced request is handed to the holder"
    );
    let Acquired::Granted(b) = store
        .acquire_lease(&p, d, "b", TTL, OnHeld::Report)
        .unwrap()
    else {
        panic!("a released lease is granted")
    };
    assert_eq!(b.token, FenceToken::new(2), "tokens grow across grants");
    clock.advance(SignedDuration::from_secs(601));
    assert!(
        matches!(
            store.renew_lease(&p, d, b.token, TTL).unwrap(),
            Err(Refusal::Expired { .. })
        ),
        "expiry is judged by the store's clock"
    );
    let Acquired::Granted(c) = store
        .acquire_lease(&p, d, "c", TTL, OnHeld::Report)
        .unwrap()
    else {
        panic!("an expired lease can be taken over")
    };
    assert_eq!(c.token, FenceToken::new(3));
    assert!(store.renew_lease(&p, d, c.token, TTL).unwrap().is_ok());
    assert_eq!(
        store.release_lease(&p, d, c.token).unwrap(),
        Released::Released { follow_up: false }
    );
    assert!(
        store
            .leases()
            .unwrap()
            .iter()
            .any(|l| l.processor == p && l.released)
    );
}

fn table() -> TableSpec {
    TableSpec {
        name: "conformance_table".into(),
        primary_key: vec!["game_date".into(), "player_lookup".into()],
        partition_column: "game_date".into(),
    }
}

fn row(date: &str, player: &str, points: i64) -> Row {
    serde_json::json!({"game_date": date, "player_lookup": player, "points": points})
        .as_object()
        .unwrap()
        .clone()
}

fn outbox_row(run: &str) -> NewOutboxRow {
    NewOutboxRow {
        topic: "c".into(),
        message_id: run.into(),
        kind: OutboxKind::Completion,
        partition: day("2024-03-01"),
        payload: "{}".into(),
    }
}

/// Tables, fenced upserts with the outbox row, counts and duplicate scans.
pub fn exercise_warehouse<W: Warehouse + StateStore>(make: impl Fn(Arc<ManualClock>) -> W) {
    let clock = clock();
    let w = make(clock.clone());
    let t = table();
    w.ensure_table(&t).unwrap();
    w.ensure_table(&t).unwrap();
    let p = ProcessorName::from("player_game_summary");
    let d = day("2024-03-01");
    let Acquired::Granted(a) = w.acquire_lease(&p, d, "a", TTL, OnHeld::Report).unwrap() else {
        panic!()
    };
    let rows = vec![
        row("2024-03-01", "x", 1),
        row("2024-03-01", "y", 2),
        row("2024-03-01", "z", 3),
    ];
    // The writing run ends in the write's transaction (a kill after the commit leaves it
    // finished, not `running`).
    let run_id = RunId::from("run-w1");
    w.start_run(&RunRecord {
        run_id: run_id.clone(),
        processor: p.clone(),
        partition: d,
        holder: "a".into(),
        token: a.token,
        started_at: clock.now_ts(),
        finished_at: None,
        status: RunStatus::Running,
        rows_written: 0,
        duplicates_dropped: 0,
        error: None,
    })
    .unwrap();
    let end = RunEnd {
        status: RunStatus::Success,
        rows_written: 3,
        duplicates_dropped: 1,
        error: None,
    };
    let out = w
        .fenced_write(&FencedWrite {
            table: &t,
            processor: &p,
            partition: d,
            token: a.token,
            rows: &rows,
            completion: &outbox_row("r1"),
            run: Some((&run_id, &end)),
        })
        .unwrap();
    let ran = w.runs(d).unwrap();
    assert_eq!(
        ran.iter()
            .map(|r| (r.status, r.rows_written, r.finished_at.is_some()))
            .collect::<Vec<_>>(),
        [(RunStatus::Success, 3, true)],
        "the run ended with its write"
    );
    assert_eq!(
        out,
        WriteOutcome::Written {
            rows: 3,
            inserted: 3,
            removed: 0
        }
    );
    assert_eq!(w.row_count(&t, d).unwrap(), 3);
    assert_eq!(w.measure(&t, d, Some("points")).unwrap(), (3, 3));
    assert_eq!(
        w.measure(&t, d, Some("absent")).unwrap(),
        (3, 0),
        "a missing column counts as null"
    );
    assert_eq!(w.measure(&t, d, None).unwrap(), (3, 3));
    assert_eq!(w.duplicate_rows(&t, d).unwrap(), 0);
    assert_eq!(
        w.backlog().unwrap().pending,
        1,
        "the completion is written with the data"
    );

    // A second run for the partition replaces the first run's rows.
    w.release_lease(&p, d, a.token).unwrap();
    let Acquired::Granted(b) = w.acquire_lease(&p, d, "b", TTL, OnHeld::Report).unwrap() else {
        panic!()
    };
    let rows2 = vec![row("2024-03-01", "x", 10), row("2024-03-01", "w", 4)];
    let out = w
        .fenced_write(&FencedWrite {
            table: &t,
            processor: &p,
            partition: d,
            token: b.token,
            rows: &rows2,
            completion: &outbox_row("r2"),
            run: None,
        })
        .unwrap();
    assert_eq!(
        out,
        WriteOutcome::Written {
            rows: 2,
            inserted: 1,
            removed: 2
        }
    );
    let read = w.read(&t, d, d).unwrap();
    assert_eq!(read.len(), 2);
    assert!(
        read.iter()
            .any(|r| r["player_lookup"] == "x" && r["points"] == 10),
        "the upsert replaced the row"
    );

    // The stale holder is fenced and writes nothing, not even its completion.
    let stale = w
        .fenced_write(&FencedWrite {
            table: &t,
            processor: &p,
            partition: d,
            token: a.token,
            rows: &rows,
            completion: &outbox_row("r3"),
            run: None,
        })
        .unwrap();
    assert!(
        matches!(stale, WriteOutcome::Fenced(Refusal::StaleToken { .. })),
        "{stale:?}"
    );
    assert_eq!(w.row_count(&t, d).unwrap(), 2);
    assert_eq!(
        w.backlog().unwrap().pending,
        2,
        "a fenced write adds no outbox row"
    );

    // A holder paused past its lease cannot write, even if nobody took over.
    clock.advance(SignedDuration::from_secs(601));
    let expired = w
        .fenced_write(&FencedWrite {
            table: &t,
            processor: &p,
            partition: d,
            token: b.token,
            rows: &rows,
            completion: &outbox_row("r4"),
            run: None,
        })
        .unwrap();
    assert!(
        matches!(expired, WriteOutcome::Fenced(Refusal::Expired { .. })),
        "{expired:?}"
    );

    // Raw landings and range reads.
    let raw = TableSpec {
        name: "conformance_raw".into(),
        primary_key: vec!["game_id".into()],
        partition_column: "game_date".into(),
    };
    w.ensure_table(&raw).unwrap();
    let r = |id: &str, date: &str| {
        serde_json::json!({"game_id": id, "game_date": date})
            .as_object()
            .unwrap()
            .clone()
    };
    w.land(
        &raw,
        &[
            r("g1", "2024-03-01"),
            r("g2", "2024-03-02"),
            r("g1", "2024-03-01"),
        ],
    )
    .unwrap();
    assert_eq!(
        w.read(&raw, day("2024-03-01"), day("2024-03-02"))
            .unwrap()
            .len(),
        2,
        "landing upserts on the key"
    );
    assert_eq!(
        w.read(&raw, day("2024-03-02"), day("2024-03-02"))
            .unwrap()
            .len(),
        1
    );
    exercise_distinct_values(&w);
    exercise_partition_counts(&w, &t, &raw);
}

/// Row counts and duplicate rows over a range answer what the per-date reads answer: a
/// date with none is absent from the map and 0 by the per-date read.
fn exercise_partition_counts<W: Warehouse>(w: &W, t: &TableSpec, raw: &TableSpec) {
    let r = |id: &str, date: &str| {
        serde_json::json!({"game_id": id, "game_date": date})
            .as_object()
            .unwrap()
            .clone()
    };
    w.land(
        raw,
        &[
            r("g3", "2024-03-02"),
            r("g4", "2024-03-04"),
            r("g5", "2024-02-28"),
            r("g6", "2024-03-09"),
        ],
    )
    .unwrap();
    let (from, to) = (day("2024-02-29"), day("2024-03-08"));
    for table in [t, raw] {
        let counts = w.row_counts(table, from, to).unwrap();
        let duplicates = w.duplicate_rows_between(table, from, to).unwrap();
        for d in from.through(to) {
            assert_eq!(
                counts.get(&d).copied().unwrap_or(0),
                w.row_count(table, d).unwrap(),
                "row_counts of {} on {d}",
                table.name
            );
            assert_eq!(
                duplicates.get(&d).copied().unwrap_or(0),
                w.duplicate_rows(table, d).unwrap(),
                "duplicate_rows_between of {} on {d}",
                table.name
            );
        }
        assert!(counts.values().all(|&n| n > 0), "{counts:?}");
        assert!(counts.keys().all(|d| (from..=to).contains(d)), "{counts:?}");
    }
    let counts = w.row_counts(raw, from, to).unwrap();
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        [
            (day("2024-03-01"), 1),
            (day("2024-03-02"), 2),
            (day("2024-03-04"), 1)
        ]
    );
}

/// Distinct values of a column for a partition, as coverage checks read them: strings as
/// they are, numbers and bools as JSON text, nulls and missing columns left out, other
/// partitions and repeated values not counted.
fn exercise_distinct_values<W: Warehouse>(w: &W) {
    let t = TableSpec {
        name: "conformance_values".into(),
        primary_key: vec!["id".into()],
        partition_column: "game_date".into(),
    };
    w.ensure_table(&t).unwrap();
    let d = day("2024-03-01");
    assert!(
        w.distinct_values(&t, d, "game_id").unwrap().is_empty(),
        "an empty partition has no values"
    );
    let rows: Vec<Row> = [
        serde_json::json!({"id": 1, "game_date": "2024-03-01", "game_id": "0022300001", "n": 7}),
        serde_json::json!({"id": 2, "game_date": "2024-03-01", "game_id": "0022300001", "n": 7}),
        serde_json::json!({"id": 3, "game_date": "2024-03-01", "game_id": "0022300002", "n": true}),
        serde_json::json!({"id": 4, "game_date": "2024-03-01", "game_id": null, "n": -3}),
        serde_json::json!({"id": 5, "game_date": "2024-03-01", "n": false}),
        serde_json::json!({"id": 6, "game_date": "2024-03-01", "game_id": "it's \"quoted\""}),
        serde_json::json!({"id": 7, "game_date": "2024-03-02", "game_id": "0022300099", "n": 1}),
    ]
    .into_iter()
    .map(|v| v.as_object().unwrap().clone())
    .collect();
    w.land(&t, &rows).unwrap();
    let set = |v: &[&str]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };
    assert_eq!(
        w.distinct_values(&t, d, "game_id").unwrap(),
        set(&["0022300001", "0022300002", "it's \"quoted\""])
    );
    assert_eq!(
        w.distinct_values(&t, d, "n").unwrap(),
        set(&["-3", "7", "false", "true"]),
        "numbers and bools as their JSON text"
    );
    assert!(w.distinct_values(&t, d, "absent").unwrap().is_empty());
    assert_eq!(
        w.distinct_values(&t, day("2024-03-02"), "game_id").unwrap(),
        set(&["0022300099"])
    );
}

/// Topics, consumer groups, redelivery after the ack wait, acks and id dedup.
///
/// `pass` lets time pass for the bus: a manual clock advances, a real server's timer is
/// waited for (its ack wait is 2 s here so that costs little).
pub fn exercise_bus<B: Bus>(
    make: impl Fn(Arc<ManualClock>) -> B,
    pass: &dyn Fn(&ManualClock, SignedDuration),
) {
    let clock = clock();
    let bus = make(clock.clone());
    let ack_wait = SignedDuration::from_secs(2);
    let settings = GroupSettings { ack_wait };
    assert_eq!(bus.publish("t", "m1", b"one").unwrap(), Published::New);
    assert_eq!(bus.publish("t", "m2", b"two").unwrap(), Published::New);
    assert_eq!(
        bus.publish("t", "m1", b"one again").unwrap(),
        Published::Duplicate,
        "a replayed id is dropped"
    );
    assert_eq!(
        bus.publish("other", "m1", b"x").unwrap(),
        Published::New,
        "dedup is per topic"
    );
    assert_eq!(bus.pending("t", "g").unwrap(), 2);

    let first = bus.fetch("t", "g", 10, settings).unwrap();
    assert_eq!(
        first
            .iter()
            .map(|d| d.payload.as_slice())
            .collect::<Vec<_>>(),
        vec![b"one".as_slice(), b"two"]
    );
    assert!(first.iter().all(|d| d.attempt == 1));
    assert!(
        bus.fetch("t", "g", 10, settings).unwrap().is_empty(),
        "in-flight messages are not delivered twice"
    );
    assert_eq!(
        bus.fetch("t", "g2", 10, settings).unwrap().len(),
        2,
        "groups are independent"
    );

    bus.ack("t", "g", &[first[0].seq]).unwrap();
    pass(&clock, ack_wait + SignedDuration::from_millis(500));
    let again = bus.fetch("t", "g", 10, settings).unwrap();
    assert_eq!(
        again.len(),
        1,
        "an unacked message is redelivered after the ack wait"
    );
    assert_eq!((again[0].message_id.as_str(), again[0].attempt), ("m2", 2));
    bus.ack("t", "g", &[again[0].seq]).unwrap();
    assert_eq!(bus.pending("t", "g").unwrap(), 0);
    pass(&clock, ack_wait + SignedDuration::from_millis(500));
    assert!(
        bus.fetch("t", "g", 10, settings).unwrap().is_empty(),
        "acked messages stay acked"
    );

    let limited = bus.fetch("t", "g3", 1, settings).unwrap();
    assert_eq!(limited.len(), 1, "fetch honours its limit");
    assert_eq!(bus.messages("t").unwrap().len(), 2);
    assert_eq!(bus.published_since("t", start_time()).unwrap(), 2);
    let far_future: Timestamp = "2999-01-01T00:00:00Z".parse().unwrap();
    assert_eq!(bus.published_since("t", far_future).unwrap(), 0);
    retention::exercise_bus_retention(&bus, &clock, pass);
}

/// Reads a [`ManualClock`] without naming the trait at every call site.
pub(crate) trait NowTs {
    fn now_ts(&self) -> Timestamp;
}

impl NowTs for ManualClock {
    fn now_ts(&self) -> Timestamp {
        baton_core::Clock::now(self)
    }
}

/// Replaying and retiring dead letters: only an open letter moves, once; both states are
/// final; retiring needs a reason; an unknown id is answered as such.
fn exercise_dead_letter_settling(store: &dyn StateStore, letters: &[baton_ports::DeadLetter]) {
    use baton_core::dead_letter::{LetterState, Refusal};
    use baton_ports::Settled;
    let (first, second) = (letters[0].id, letters[1].id);
    assert!(
        letters
            .iter()
            .all(|l| l.state == LetterState::Open && l.settled_at.is_none())
    );
    assert_eq!(
        store.dead_letter_by_id(first).unwrap().as_ref(),
        Some(&letters[0])
    );
    assert_eq!(store.dead_letter_by_id(first + second + 100).unwrap(), None);
    match store
        .settle_dead_letter(first, LetterState::Replayed, "replay-1")
        .unwrap()
    {
        Settled::Done(l) => {
            assert_eq!(l.state, LetterState::Replayed);
            assert!(l.settled_at.is_some());
            assert_eq!(l.note.as_deref(), Some("replay-1"));
            assert_eq!(l.letter, letters[0].letter, "settling keeps the payload");
        }
        other => panic!("an open letter replays: {other:?}"),
    }
    let stored = store.dead_letter_by_id(first).unwrap().unwrap();
    assert_eq!(stored.state, LetterState::Replayed, "the state is stored");
    match store
        .settle_dead_letter(first, LetterState::Retired, "late")
        .unwrap()
    {
        Settled::Refused(l, Refusal::AlreadySettled(LetterState::Replayed)) => {
            assert_eq!(l, stored, "a refused settle changes nothing")
        }
        other => panic!("a replayed letter is final: {other:?}"),
    }
    assert!(matches!(
        store
            .settle_dead_letter(second, LetterState::Retired, " ")
            .unwrap(),
        Settled::Refused(_, Refusal::NoReason)
    ));
    assert!(matches!(
        store.settle_dead_letter(second, LetterState::Retired, "fixed upstream").unwrap(),
        Settled::Done(ref l) if l.state == LetterState::Retired && l.note.as_deref() == Some("fixed upstream")
    ));
    assert_eq!(
        store
            .settle_dead_letter(first + second + 100, LetterState::Retired, "x")
            .unwrap(),
        Settled::NotFound
    );
    let states: Vec<_> = store
        .dead_letters()
        .unwrap()
        .iter()
        .map(|l| l.state)
        .collect();
    assert_eq!(states, [LetterState::Replayed, LetterState::Retired]);
}

/// The wake signal ([`baton_ports::Wake`]) of a backend whose store is `store` and whose bus
/// is `bus`: each kind of commit that creates work (an outbox row, a publish, a landing
/// with the runs it requests, an owed run) ends a wait of a minute with a signal, not by
/// timing out. A wake may be spurious, so nothing here asserts a wait that times out.
pub fn exercise_wake(store: &dyn StateStore, bus: &dyn Bus, wake: &dyn baton_ports::Wake) {
    let minute = SignedDuration::from_secs(60);
    let settle = || while wake.wait(SignedDuration::from_millis(200)).unwrap() {};
    let request = PendingRequest {
        processor: ProcessorName::from("player_daily_cache"),
        partition: day("2024-03-01"),
        kind: RequestKind::Requested,
        reason: "wake".into(),
        since: start_time(),
    };
    let steps: [(&str, &dyn Fn()); 4] = [
        ("an outbox row", &|| {
            store
                .enqueue(&NewOutboxRow::for_completion(
                    "phase3-completions".into(),
                    &completion("team_offense_game_summary", "wake", "2024-03-01"),
                ))
                .unwrap()
        }),
        ("a publish", &|| {
            bus.publish("wake-topic", "wake-1", b"{}").unwrap();
        }),
        ("a landing", &|| {
            store
                .record_landing(
                    "nbac_gamebook_scraper",
                    day("2024-03-01"),
                    start_time(),
                    std::slice::from_ref(&request),
                )
                .map(|_| ())
                .unwrap()
        }),
        ("an owed run", &|| store.record_request(&request).unwrap()),
    ];
    for (what, commit) in steps {
        settle();
        commit();
        assert!(
            wake.wait(minute).unwrap(),
            "{what} committed in this process wakes a waiter"
        );
    }
}
