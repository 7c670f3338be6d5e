//! The reconcile and health summary over a window of dates that `baton report` prints:
//! dates checked, reconcile findings by code (report mode, nothing changed), the repairs
//! recorded in the window (`repair/...` operational records, by `serve`'s periodic
//! reconcile and by hand), each upstream job's landings judged on time, late or missing,
//! and the dead letters. Sending it from `serve` on a schedule is not built yet.

use crate::Error;
use crate::timeline::RepairRecord;
use baton_core::config::Pipeline;
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
        for &d in &dates {
            let r = crate::checks::reconcile_date(pipeline, store, warehouse, gate, d, now, false)?;
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
