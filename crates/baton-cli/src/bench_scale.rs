//! `baton bench --scale`: how the time and the resident memory of the main operations grow
//! with the work: processor runs writing their rows, the service loop ingesting their
//! completions (relay, orchestrator, trigger relay), health and reconcile, along three axes
//! (dates, processors per gate, rows per date), each step on a fresh database. It states
//! each operation's growth (its exponent in the axis); it asserts nothing.

use crate::bench::record_run;
use crate::{Cli, Exit, Outcome};
use anyhow::anyhow;
use baton_core::clock::{Clock, SystemClock};
use baton_core::config::Pipeline;
use baton_core::model::Partition;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use std::sync::Arc;

/// What grows in a series of steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    /// Dates handled (each with every processor's run and completion).
    Dates,
    /// Processors the gate expects per date.
    ProcessorsPerGate,
    /// Rows each processor run writes.
    RowsPerDate,
}

impl Axis {
    fn label(self) -> &'static str {
        match self {
            Axis::Dates => "dates",
            Axis::ProcessorsPerGate => "processors per gate",
            Axis::RowsPerDate => "rows per run",
        }
    }
}

/// An operation measured at each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Every processor run of every date: lease, run record, the fenced write of its rows
    /// with its completion's outbox row, finish, release.
    Runs,
    /// The service loop until idle: the outbox relayed, every completion applied by the
    /// orchestrator, the triggers it decides relayed.
    Ingest,
    /// `health` over every date.
    Health,
    /// `reconcile` (report mode) over every date.
    Reconcile,
}

impl Op {
    const ALL: [Op; 4] = [Op::Runs, Op::Ingest, Op::Health, Op::Reconcile];

    fn label(self) -> &'static str {
        match self {
            Op::Runs => "processor runs writing rows",
            Op::Ingest => "service loop ingest",
            Op::Health => "health",
            Op::Reconcile => "reconcile",
        }
    }
}

/// The shape of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Dates.
    pub dates: usize,
    /// Processors per gate.
    pub processors: usize,
    /// Rows per run.
    pub rows: usize,
}

impl Shape {
    fn size(&self, axis: Axis) -> usize {
        match axis {
            Axis::Dates => self.dates,
            Axis::ProcessorsPerGate => self.processors,
            Axis::RowsPerDate => self.rows,
        }
    }
}

/// One operation at one step.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    /// The axis of the series.
    pub axis: Axis,
    /// The step's shape.
    pub shape: Shape,
    /// The operation.
    pub op: Op,
    /// Seconds it took.
    pub secs: f64,
    /// The process's peak resident memory during it (MiB; none where the kernel does not
    /// let the peak be reset).
    pub peak_mib: Option<f64>,
}

/// How one operation grew along one axis.
#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    /// The axis.
    pub axis: Axis,
    /// The operation.
    pub op: Op,
    /// The exponent k of time ~ size^k between the smallest and the largest step.
    pub exponent: f64,
    /// In words: flat, sublinear, linear, or superlinear.
    pub verdict: String,
    /// Peak resident memory at the smallest and the largest step (MiB).
    pub peak_mib: (Option<f64>, Option<f64>),
}

/// The exponent k of `secs ~ size^k` from the first to the last of `points` (size, secs).
pub fn exponent(points: &[(usize, f64)]) -> Option<f64> {
    let (&(n0, t0), &(n1, t1)) = (points.first()?, points.last()?);
    if n1 <= n0 || t0 <= 0.0 || t1 <= 0.0 {
        return None;
    }
    Some((t1 / t0).ln() / (n1 as f64 / n0 as f64).ln())
}

/// An exponent in words.
pub fn verdict(exponent: f64) -> String {
    if exponent < 0.2 {
        "flat".to_owned()
    } else if exponent < 0.8 {
        "sublinear".to_owned()
    } else if exponent <= 1.25 {
        "linear".to_owned()
    } else {
        format!("superlinear (size^{exponent:.1})")
    }
}

/// The series of a run: for each axis, its shapes (the other two at their base).
pub fn series(quick: bool) -> Vec<(Axis, Vec<Shape>)> {
    let shape = |dates, processors, rows| Shape {
        dates,
        processors,
        rows,
    };
    if quick {
        vec![
            (Axis::Dates, vec![shape(30, 5, 10), shape(120, 5, 10)]),
            (
                Axis::ProcessorsPerGate,
                vec![shape(5, 5, 10), shape(5, 50, 10)],
            ),
            (
                Axis::RowsPerDate,
                vec![shape(3, 5, 500), shape(3, 5, 5_000)],
            ),
        ]
    } else {
        vec![
            (
                Axis::Dates,
                vec![shape(365, 5, 10), shape(1_095, 5, 10), shape(3_650, 5, 10)],
            ),
            (
                Axis::ProcessorsPerGate,
                vec![shape(30, 5, 10), shape(30, 50, 10), shape(30, 500, 10)],
            ),
            (
                Axis::RowsPerDate,
                vec![shape(10, 5, 500), shape(10, 5, 5_000), shape(10, 5, 50_000)],
            ),
        ]
    }
}

/// A pipeline of `processors` Phase 3 processors behind one gate (all expected, none
/// critical) and one Phase 4 processor, on SQLite with `synchronous=NORMAL`: the scale
/// bench measures growth, and an fsync per commit is a constant factor.
pub fn pipeline(processors: usize) -> Result<Pipeline, Exit> {
    let names: Vec<String> = (0..processors).map(|i| format!("p{i:03}")).collect();
    let mut toml = String::from(
        "[pipeline]\nname = \"scale\"\ntimezone = \"UTC\"\n\n\
         [backend]\nkind = \"sqlite\"\nsynchronous = \"normal\"\n\n\
         [[tables]]\nname = \"scale_raw\"\nprimary_key = [\"id\"]\npartition_column = \"game_date\"\n\n",
    );
    for name in &names {
        toml.push_str(&format!(
            "[[processors]]\nname = \"{name}\"\nphase = 3\ntable = \"{name}\"\n\
             primary_key = [\"game_date\", \"id\"]\ninputs = [\"scale_raw\"]\n\n"
        ));
    }
    toml.push_str(
        "[[processors]]\nname = \"sink\"\nphase = 4\ntable = \"sink\"\n\
         primary_key = [\"game_date\", \"id\"]\ninputs = [\"p000\"]\n\n\
         [[gates]]\nname = \"scale_gate\"\ncompletion_topic = \"scale-completions\"\n\
         trigger_topic = \"scale-trigger\"\nnext_phase = 4\n\n[gates.overnight]\n",
    );
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    toml.push_str(&format!(
        "expected = [{}]\ncritical = []\nrules = [\"all_complete\"]\n",
        quoted.join(", ")
    ));
    Pipeline::from_toml(&toml).map_err(|e| Exit::from(anyhow!("the scale pipeline: {e}")))
}

/// Resets the process's peak resident memory (`/proc/self/clear_refs`); false where the
/// kernel does not allow it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak resident memory since the last reset, in MiB.
fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Times `f`, with the peak resident memory while it ran.
fn measured(f: impl FnOnce() -> Result<(), Exit>) -> Result<(f64, Option<f64>), Exit> {
    let resettable = reset_peak();
    let start = SystemClock.now();
    f()?;
    let secs = SystemClock
        .now()
        .duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    Ok((secs, peak_mib().filter(|_| resettable)))
}

/// Every operation at one step, on a fresh SQLite file in a temp dir.
fn step(cli: &Cli, axis: Axis, shape: Shape) -> Result<Vec<Measure>, Exit> {
    let pipeline = Arc::new(pipeline(shape.processors)?);
    let dir = tempfile::Builder::new()
        .prefix("baton-scale-")
        .tempdir()
        .map_err(|e| Exit::usage(anyhow!("cannot make a temp dir: {e}")))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let b = crate::open_backend_at(
        cli,
        &dir.path().join("scale.db"),
        &pipeline,
        clock.clone(),
        false,
        false,
    )?;
    crate::demo::reset_distributed(&pipeline, &b, "bench --scale")?;
    for t in &pipeline.tables {
        b.warehouse.ensure_table(t)?;
    }
    let gate = &pipeline.gates[0];
    let first =
        Partition::parse("2001-01-01").map_err(|e| Exit::from(anyhow!("a literal date: {e}")))?;
    let dates: Vec<Partition> = (0..shape.dates).map(|i| first.offset(i as i32)).collect();
    let now = clock.now();
    let mut out = Vec::new();
    let mut record = |op: Op, (secs, peak_mib): (f64, Option<f64>)| {
        out.push(Measure {
            axis,
            shape,
            op,
            secs,
            peak_mib,
        });
    };
    record(
        Op::Runs,
        measured(|| {
            for &d in &dates {
                for p in pipeline.processors.iter().filter(|p| gate.watches(&p.name)) {
                    record_run(&b, gate, p, d, now, shape.rows)?;
                }
            }
            Ok(())
        })?,
    );
    record(Op::Ingest, measured(|| ingest(&pipeline, &b, &clock))?);
    record(
        Op::Health,
        measured(|| {
            baton_serve::checks::health(
                &pipeline,
                b.store.as_ref(),
                b.warehouse.as_ref(),
                b.bus.as_ref(),
                &dates,
                SystemClock.now(),
            )?;
            Ok(())
        })?,
    );
    record(
        Op::Reconcile,
        measured(|| {
            for &d in &dates {
                baton_serve::checks::reconcile_date(
                    &pipeline,
                    b.store.as_ref(),
                    b.warehouse.as_ref(),
                    gate,
                    d,
                    SystemClock.now(),
                    false,
                )?;
            }
            Ok(())
        })?,
    );
    Ok(out)
}

/// The service loop's drain (relay, orchestrator, trigger relay; no Phase 4 runner) until
/// nothing is pending.
fn ingest(
    pipeline: &Arc<Pipeline>,
    b: &crate::Backends,
    clock: &Arc<dyn Clock>,
) -> Result<(), Exit> {
    let report = crate::bench::drain_backlog(
        pipeline,
        b,
        clock,
        &mut || SystemClock.sleep(jiff::SignedDuration::from_millis(10)),
        100_000,
    )?;
    let applied = report.outcomes.get("applied").copied().unwrap_or(0);
    if applied == 0 && !pipeline.processors.is_empty() {
        return Err(Exit::from(anyhow!(
            "the service loop applied no completion: {:?}",
            report.outcomes
        )));
    }
    Ok(())
}

/// How each operation grew along each axis.
pub fn growth(measures: &[Measure]) -> Vec<Growth> {
    let mut out = Vec::new();
    for (axis, _) in series(false) {
        for op in Op::ALL {
            let points: Vec<&Measure> = measures
                .iter()
                .filter(|m| m.axis == axis && m.op == op)
                .collect();
            let sizes: Vec<(usize, f64)> = points
                .iter()
                .map(|m| (m.shape.size(axis), m.secs))
                .collect();
            let Some(k) = exponent(&sizes) else {
                continue;
            };
            out.push(Growth {
                axis,
                op,
                exponent: k,
                verdict: verdict(k),
                peak_mib: (
                    points.first().and_then(|m| m.peak_mib),
                    points.last().and_then(|m| m.peak_mib),
                ),
            });
        }
    }
    out
}

/// `baton bench --scale`: every series, then the growth of each operation.
pub fn run(cli: &Cli, quick: bool, json: bool) -> Outcome {
    if crate::backend_kind(cli, &pipeline(1)?) != crate::BackendKind::Sqlite {
        return Err(Exit::usage(anyhow!(
            "bench --scale runs on SQLite only (it opens a fresh file per step)"
        )));
    }
    let mut measures = Vec::new();
    for (axis, shapes) in series(quick) {
        for shape in shapes {
            crate::errln!(
                "baton bench --scale: {} dates x {} processors x {} rows per run",
                shape.dates,
                shape.processors,
                shape.rows
            );
            measures.extend(step(cli, axis, shape)?);
        }
    }
    let growth = growth(&measures);
    if json {
        let doc = serde_json::json!({ "steps": measures, "growth": growth });
        crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        crate::outln!("{}", steps_table(&measures));
        crate::outln!("{}", growth_table(&growth));
    }
    Ok(0)
}

fn mib(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |m| format!("{m:.1}"))
}

fn steps_table(measures: &[Measure]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header([
        "axis",
        "dates",
        "processors",
        "rows/run",
        "operation",
        "seconds",
        "peak RSS MiB",
    ]);
    for m in measures {
        t.add_row([
            m.axis.label().to_owned(),
            m.shape.dates.to_string(),
            m.shape.processors.to_string(),
            m.shape.rows.to_string(),
            m.op.label().to_owned(),
            format!("{:.3}", m.secs),
            mib(m.peak_mib),
        ]);
    }
    t
}

fn growth_table(growth: &[Growth]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header([
        "axis",
        "operation",
        "time ~ size^k",
        "growth",
        "peak RSS MiB, smallest -> largest",
    ]);
    for g in growth {
        t.add_row([
            g.axis.label().to_owned(),
            g.op.label().to_owned(),
            format!("{:.2}", g.exponent),
            g.verdict.clone(),
            format!("{} -> {}", mib(g.peak_mib.0), mib(g.peak_mib.1)),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exponent_is_the_slope_in_log_log() {
        let k = exponent(&[(10, 1.0), (100, 10.0)]).unwrap();
        assert!((k - 1.0).abs() < 1e-9);
        let k = exponent(&[(10, 1.0), (20, 1.5), (100, 100.0)]).unwrap();
        assert!((k - 2.0).abs() < 1e-9);
        assert_eq!(exponent(&[(10, 1.0)]), None);
        assert_eq!(exponent(&[(10, 0.0), (100, 1.0)]), None);
    }

    #[test]
    fn verdicts_name_the_growth() {
        assert_eq!(verdict(0.05), "flat");
        assert_eq!(verdict(0.5), "sublinear");
        assert_eq!(verdict(1.0), "linear");
        assert_eq!(verdict(2.04), "superlinear (size^2.0)");
    }

    #[test]
    fn the_scale_pipeline_has_its_processors_behind_one_gate() {
        let p = pipeline(50).unwrap();
        assert_eq!(p.gates.len(), 1);
        assert_eq!(p.gates[0].overnight.expected.len(), 50);
        assert_eq!(p.phase(3).count(), 50);
    }

    #[test]
    fn each_axis_grows_one_dimension_of_the_shape() {
        for quick in [true, false] {
            for (axis, shapes) in series(quick) {
                let sizes: Vec<usize> = shapes.iter().map(|s| s.size(axis)).collect();
                assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{axis:?}: {sizes:?}");
                for s in &shapes {
                    for other in [Axis::Dates, Axis::ProcessorsPerGate, Axis::RowsPerDate] {
                        if other != axis {
                            assert_eq!(s.size(other), shapes[0].size(other));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn growth_is_stated_per_axis_and_operation() {
        let m = |axis, dates, op, secs| Measure {
            axis,
            shape: Shape {
                dates,
                processors: 5,
                rows: 10,
            },
            op,
            secs,
            peak_mib: Some(10.0),
        };
        let g = growth(&[
            m(Axis::Dates, 365, Op::Health, 1.0),
            m(Axis::Dates, 3_650, Op::Health, 10.0),
            m(Axis::Dates, 365, Op::Ingest, 1.0),
            m(Axis::Dates, 3_650, Op::Ingest, 100.0),
        ]);
        assert_eq!(g.len(), 2);
        let health = g.iter().find(|g| g.op == Op::Health).unwrap();
        assert_eq!(health.verdict, "linear");
        let ingest = g.iter().find(|g| g.op == Op::Ingest).unwrap();
        assert_eq!(ingest.verdict, "superlinear (size^2.0)");
    }
}
