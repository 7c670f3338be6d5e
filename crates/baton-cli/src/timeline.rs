//! A date's timeline, in the pipeline's time zone: its landings (first and latest batch,
//! how many), its runs (holder, token, status, rows, rows dropped by dedup) and its triggers
//! with their generations, in time order. The demo prints it for the date a late job
//! landed on.

use crate::Exit;
use baton_core::completion::Trigger;
use baton_core::config::Pipeline;
use baton_core::model::Partition;
use baton_ports::{OutboxKind, StateStore};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jiff::Timestamp;

/// One event of a date.
struct Event {
    at: Timestamp,
    what: String,
    detail: String,
}

/// The events of `date`, oldest first.
fn events(store: &dyn StateStore, date: Partition) -> Result<Vec<Event>, Exit> {
    let mut out = Vec::new();
    for l in store.landings(date)? {
        out.push(Event {
            at: l.landed_at,
            what: format!("landing {}", l.job),
            detail: format!("{} batch(es); latest recorded {}", l.batches, l.latest_at),
        });
    }
    for r in store.runs(date)? {
        out.push(Event {
            at: r.started_at,
            what: format!("run {}", r.processor),
            detail: format!(
                "{} by {} (token {}): {} rows, {} dropped by dedup{}",
                r.status,
                r.holder,
                r.token,
                r.rows_written,
                r.duplicates_dropped,
                r.error.map(|e| format!("; {e}")).unwrap_or_default()
            ),
        });
    }
    for row in store.outbox_for(OutboxKind::Trigger, date)? {
        if let Ok(t) = serde_json::from_str::<Trigger>(&row.row.payload) {
            out.push(Event {
                at: t.triggered_at,
                what: format!("trigger {} g{}", t.gate, t.generation),
                detail: format!("phase {} ({})", t.next_phase, t.reason),
            });
        }
    }
    out.sort_by_key(|e| e.at);
    Ok(out)
}

/// Prints the timeline of `date` as a table.
pub fn print(pipeline: &Pipeline, store: &dyn StateStore, date: Partition) -> Result<(), Exit> {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        format!("{} ({})", date, pipeline.timezone_name),
        "event".into(),
        "detail".into(),
    ]);
    for e in events(store, date)? {
        let local = e.at.to_zoned(pipeline.timezone.clone());
        t.add_row(vec![
            local.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            e.what,
            e.detail,
        ]);
    }
    crate::outln!("timeline of {date}:\n{t}");
    Ok(())
}
