//! What health, reconcile and accuracy read about a range of dates, read once for the
//! whole range: a constant number of queries per table and gate, whatever the number of
//! dates (one round trip per date and table took seconds for a year on PostgreSQL). The
//! verdicts are then judged date by date from memory by [`crate::checks`], with the same
//! pure functions of baton-core as for a single date.
//!
//! A range is read from its earliest to its latest date, so a sparse list of dates reads
//! the dates between them too.

use crate::Error;
use crate::checks::{NextPhaseRecord, next_phase_key};
use baton_core::completion::Document;
use baton_core::config::{Pipeline, TableSpec};
use baton_core::gate::Gate;
use baton_core::model::{GateId, Partition};
use baton_ports::{Landing, PendingRequest, RunRecord, StateStore, Warehouse};
use std::collections::BTreeMap;

/// What else a range read takes, beside every date's truth for the gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The truth reconcile compares with: runs, landings, owed runs, the watched tables'
    /// and calendars' row counts, documents, the next phase's generations.
    Truth,
    /// The truth, and what health adds: the upstream jobs' calendars and every processor
    /// table's duplicate rows.
    Health,
}

/// The facts of a range of dates, by date.
#[derive(Debug, Default)]
pub struct RangeFacts {
    runs: BTreeMap<Partition, Vec<RunRecord>>,
    landings: BTreeMap<Partition, Vec<Landing>>,
    pending: Vec<PendingRequest>,
    /// Row counts by table name, then date (absent: no rows).
    rows: BTreeMap<String, BTreeMap<Partition, u64>>,
    /// Duplicate rows by table name, then date (absent: none); read for health only.
    duplicates: BTreeMap<String, BTreeMap<Partition, u64>>,
    documents: BTreeMap<(GateId, Partition), Document>,
    next_phase: BTreeMap<(GateId, Partition), u32>,
}

impl RangeFacts {
    /// Reads the facts of `dates` for `gates`.
    pub fn read(
        pipeline: &Pipeline,
        store: &dyn StateStore,
        warehouse: &dyn Warehouse,
        gates: &[&Gate],
        dates: &[Partition],
        extent: Extent,
    ) -> Result<Self, Error> {
        let (Some(&from), Some(&to)) = (dates.iter().min(), dates.iter().max()) else {
            return Ok(Self::default());
        };
        let mut facts = Self {
            runs: by_date(store.runs_between(from, to)?, |r| r.partition),
            landings: by_date(store.landings_between(from, to)?, |l| l.partition),
            pending: store.pending_requests()?,
            ..Self::default()
        };
        for gate in gates {
            for doc in store.documents(&gate.id, from, to)? {
                facts
                    .documents
                    .insert((gate.id.clone(), doc.partition), doc);
            }
            facts.read_next_phase(store, gate, from, to)?;
        }
        for table in counted_tables(pipeline, gates, extent).into_values() {
            let counts = warehouse.row_counts(table, from, to)?;
            facts.rows.insert(table.name.clone(), counts);
        }
        if extent == Extent::Health {
            for p in &pipeline.processors {
                let name = &p.table.name;
                if !facts.duplicates.contains_key(name) {
                    let counts = warehouse.duplicate_rows_between(&p.table, from, to)?;
                    facts.duplicates.insert(name.clone(), counts);
                }
            }
        }
        Ok(facts)
    }

    /// The generations the next phase ran for, for one gate's dates in `[from, to]`: the
    /// record itself for one date, else every record of the gate, read at once by prefix
    /// (the keys end in the date).
    fn read_next_phase(
        &mut self,
        store: &dyn StateStore,
        gate: &Gate,
        from: Partition,
        to: Partition,
    ) -> Result<(), Error> {
        let records = if from == to {
            store
                .ops_record(&next_phase_key(&gate.id, from))?
                .into_iter()
                .collect()
        } else {
            store.ops_records(&format!("next_phase/{}/", gate.id))?
        };
        for r in records {
            let date = r.key.rsplit('/').next().map(Partition::parse);
            let Some(Ok(date)) = date else { continue };
            // A body that does not parse counts as never run, as for one date.
            let Ok(body) = serde_json::from_str::<NextPhaseRecord>(&r.body) else {
                continue;
            };
            if date >= from && date <= to && r.key == next_phase_key(&gate.id, date) {
                self.next_phase
                    .insert((gate.id.clone(), date), body.generation);
            }
        }
        Ok(())
    }

    /// The runs of a date, in start order.
    pub fn runs(&self, date: Partition) -> &[RunRecord] {
        self.runs.get(&date).map_or(&[], Vec::as_slice)
    }

    /// The landings of a date, by job.
    pub fn landings(&self, date: Partition) -> &[Landing] {
        self.landings.get(&date).map_or(&[], Vec::as_slice)
    }

    /// Every owed run (any date), oldest first.
    pub fn pending(&self) -> &[PendingRequest] {
        &self.pending
    }

    /// The rows of a table on a date (0 for a table that was not read).
    pub fn rows(&self, table: &str, date: Partition) -> u64 {
        count(&self.rows, table, date)
    }

    /// The duplicate rows of a table on a date.
    pub fn duplicate_rows(&self, table: &str, date: Partition) -> u64 {
        count(&self.duplicates, table, date)
    }

    /// Whether the calendar table has rows on the date, as
    /// [`baton_runner::calendar_has_rows`] answers it (`None`: no calendar, or not a
    /// table of the pipeline).
    pub fn calendar_has_rows(
        &self,
        pipeline: &Pipeline,
        calendar: Option<&str>,
        date: Partition,
    ) -> Option<bool> {
        let table = calendar.and_then(|c| pipeline.table(c))?;
        Some(self.rows(&table.name, date) > 0)
    }

    /// A gate's document for a date.
    pub fn document(&self, gate: &GateId, date: Partition) -> Option<&Document> {
        self.documents.get(&(gate.clone(), date))
    }

    /// The latest generation the next phase ran for (`None`: never).
    pub fn next_phase_generation(&self, gate: &GateId, date: Partition) -> Option<u32> {
        self.next_phase.get(&(gate.clone(), date)).copied()
    }
}

/// The tables whose rows per date a range read counts, by name: each watched processor's
/// table and calendar, and for health the upstream jobs' calendars.
fn counted_tables<'p>(
    pipeline: &'p Pipeline,
    gates: &[&Gate],
    extent: Extent,
) -> BTreeMap<&'p str, &'p TableSpec> {
    let mut tables: BTreeMap<&str, &TableSpec> = BTreeMap::new();
    let mut calendars = Vec::new();
    for p in &pipeline.processors {
        if gates.iter().any(|g| g.watches(&p.name)) {
            tables.insert(p.table.name.as_str(), &p.table);
            calendars.push(p.calendar.as_deref());
        }
    }
    if extent == Extent::Health {
        calendars.extend(pipeline.upstream.iter().map(|j| j.calendar.as_deref()));
    }
    for t in calendars
        .into_iter()
        .flatten()
        .filter_map(|c| pipeline.table(c))
    {
        tables.entry(t.name.as_str()).or_insert(t);
    }
    tables
}

fn count(map: &BTreeMap<String, BTreeMap<Partition, u64>>, table: &str, date: Partition) -> u64 {
    map.get(table)
        .and_then(|m| m.get(&date))
        .copied()
        .unwrap_or(0)
}

/// Groups rows read in date order by date, keeping their order within a date.
fn by_date<T>(rows: Vec<T>, date: impl Fn(&T) -> Partition) -> BTreeMap<Partition, Vec<T>> {
    let mut out: BTreeMap<Partition, Vec<T>> = BTreeMap::new();
    for r in rows {
        out.entry(date(&r)).or_default().push(r);
    }
    out
}
