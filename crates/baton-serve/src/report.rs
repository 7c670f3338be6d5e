//! The reconcile and health summary over a window of dates that `baton report` prints:
//! dates checked, reconcile findings by code (report mode, nothing changed), the repairs
//! recorded in the window (`repair/...` operational records, by `serve`'s periodic
//! reconcile and by hand), each upstream job's landings judged on time, late or missing,
//! and the dead letters. `serve` sends it to the notifiers on `[report] schedule`
//! ([`send_due`]): once per due time across instances, claimed like a schedule's fire.

use crate::Error;
use crate::alerting::Notifier;
use crate::timeline::RepairRecord;
use baton_core::config::Pipeline;
use baton_core::cron::{Schedule, ScheduleDate};
use baton_core::model::Partition;
use baton_core::schedule::LandingStatus;
use baton_ports::{StateStore, Warehouse};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// One upstream job's landings over the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobLateness {
    /// Landed within the tolerance.
    pub on_time: u32,
    /// Landed after it.
    pub late: u32,
    /// Not landed and past due.
    pub missing: u32,
    /// Not landed and not yet due.
    pub not_due: u32,
}

/// The summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The first date of the window.
    pub from: Partition,
    /// The last (today in the pipeline's time zone).
    pub to: Partition,
    /// (gate, date) pairs checked.
    pub dates_checked: usize,
    /// Reconcile findings by code.
    pub findings: BTreeMap<String, usize>,
    /// Repairs recorded for dates in the window.
    pub repairs: Vec<RepairRecord>,
    /// Per upstream job.
    pub lateness: BTreeMap<String, JobLateness>,
    /// Dead letters in the store, and those naming a date in the window.
    pub dead_letters: usize,
    /// Of those, naming a date in the window.
    pub dead_letters_in_window: usize,
}

/// Builds the report of the `days` dates ending today, at `now`.
pub fn build(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    days: u32,
    now: Timestamp,
) -> Result<Report, Error> {
    let to = Partition::new(now.to_zoned(pipeline.timezone.clone()).date());
    let from = to.offset(1 - days.max(1) as i32);
    let dates = from.through(to);
    let mut findings = BTreeMap::new();
    let mut checked = 0;
    for gate in &pipeline.gates {
        for r in crate::checks::reconcile_dates(
            pipeline,
            store,
            warehouse,
            gate,
            &dates,
            now,
            crate::checks::Mode::Report,
        )? {
            checked += 1;
            for f in &r.before.findings {
                *findings.entry(f.code.to_owned()).or_insert(0) += 1;
            }
        }
    }
    let repairs = crate::timeline::repairs(store, "repair/")?
        .into_iter()
        .filter(|r| r.date >= from && r.date <= to)
        .collect();
    let mut lateness: BTreeMap<String, JobLateness> = BTreeMap::new();
    for v in crate::status::lateness(pipeline, store, &dates, now)? {
        let j = lateness.entry(v.job.clone()).or_default();
        match v.status {
            LandingStatus::OnTime => j.on_time += 1,
            LandingStatus::Late => j.late += 1,
            LandingStatus::Missing => j.missing += 1,
            LandingStatus::NotDue => j.not_due += 1,
        }
    }
    let letters = store.dead_letters()?;
    let in_window = letters
        .iter()
        .filter(|l| crate::status::dead_letter_date(l).is_some_and(|d| d >= from && d <= to))
        .count();
    Ok(Report {
        from,
        to,
        dates_checked: checked,
        findings,
        repairs,
        lateness,
        dead_letters: letters.len(),
        dead_letters_in_window: in_window,
    })
}

/// The operational record the report's last send is claimed under.
pub const RECORD_KEY: &str = "report/last-sent";

/// The report's schedule, as a [`Schedule`] with nothing to request, so it is due and
/// claimed by the same rules as `[[schedules]]`.
pub fn schedule(pipeline: &Pipeline) -> Schedule {
    Schedule {
        name: "report".into(),
        cron: pipeline.report.schedule.clone(),
        processors: Vec::new(),
        date: ScheduleDate::Today,
    }
}

/// The report in a few lines, as a notice carries it.
pub fn summary(r: &Report) -> String {
    let findings = if r.findings.is_empty() {
        "no reconcile findings".to_owned()
    } else {
        let by_code: Vec<String> = r
            .findings
            .iter()
            .map(|(c, n)| format!("{c} x{n}"))
            .collect();
        format!("reconcile findings: {}", by_code.join(", "))
    };
    let late: Vec<String> = r
        .lateness
        .iter()
        .filter(|(_, l)| l.late + l.missing > 0)
        .map(|(job, l)| format!("{job} late {} missing {}", l.late, l.missing))
        .collect();
    format!(
        "baton report {} to {}: {} gate-dates checked; {findings}; {} repairs recorded; lateness: {}; dead letters: {} ({} for dates in the window)",
        r.from,
        r.to,
        r.dates_checked,
        r.repairs.len(),
        if late.is_empty() {
            "every job on time".to_owned()
        } else {
            late.join(", ")
        },
        r.dead_letters,
        r.dead_letters_in_window,
    )
}

/// Sends the report through `notifiers` when its schedule is due at `now` and this
/// caller (`by`) wins the claim; returns the fire time sent for and the last fire time
/// the store holds. A notifier that fails is logged, not retried: the next report comes
/// on schedule, and `baton report` prints the same on demand.
pub fn send_due(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    warehouse: &dyn Warehouse,
    notifiers: &[Box<dyn Notifier>],
    by: &str,
    now: Timestamp,
) -> Result<(Option<Timestamp>, Option<Timestamp>), Error> {
    let schedule = schedule(pipeline);
    let (last, claimed) =
        crate::scheduling::claim(pipeline, store, RECORD_KEY, &schedule, by, now)?;
    let Some((fire_time, _)) = claimed else {
        return Ok((last, None));
    };
    let report = build(pipeline, store, warehouse, pipeline.report.days, now)?;
    let text = summary(&report);
    for notifier in notifiers {
        if let Err(e) = crate::alerting::send_report(notifier.as_ref(), &text, now) {
            tracing::warn!(notifier = notifier.name(), error = %e, "the report could not be delivered");
        }
    }
    tracing::info!(%fire_time, notifiers = notifiers.len(), "report sent");
    Ok((last, Some(fire_time)))
}
