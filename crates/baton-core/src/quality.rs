//! Quality checks on a gate: measured facts about a date's tables (rows, non-null coverage
//! of a column, coverage of a reference table's distinct values) judged against thresholds.
//! A failing check blocks the gate's trigger and is recorded on the document with the
//! measured value; it never marks the date triggered. A check below its warning threshold
//! (but not below its minimum) passes with a warning, which the document records too.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What a check measures.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// At least `min` rows in the table for the date.
    MinRows {
        /// The minimum.
        min: u64,
    },
    /// At least `min_percent`% of the table's rows for the date have `column` non-null.
    NonNullCoverage {
        /// The column.
        column: String,
        /// The minimum share, in percent.
        min_percent: f64,
        /// Below this share (and at or above the minimum) the check passes with a warning.
        warn_below_percent: Option<f64>,
    },
    /// At least `min_percent`% of the distinct values of `reference_column` in
    /// `reference_table` for the date are among the distinct values of `column` in the
    /// check's table for the date (e.g. the scheduled games a summary covers).
    Coverage {
        /// The column of the check's table.
        column: String,
        /// The table holding the values that should be covered.
        reference_table: String,
        /// Its column.
        reference_column: String,
        /// The minimum share, in percent.
        min_percent: f64,
        /// Below this share (and at or above the minimum) the check passes with a warning.
        warn_below_percent: Option<f64>,
    },
}

/// A check declared on a gate.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityCheck {
    /// Its name (unique within the gate).
    pub name: String,
    /// The table it measures.
    pub table: String,
    /// What it measures.
    pub kind: CheckKind,
    /// Only judged for dates with rows in this table (e.g. dates with games).
    pub only_when_rows_in: Option<String>,
}

impl QualityCheck {
    /// The column whose non-null count the measurement needs, if any.
    pub fn column(&self) -> Option<&str> {
        match &self.kind {
            CheckKind::NonNullCoverage { column, .. } => Some(column),
            CheckKind::MinRows { .. } | CheckKind::Coverage { .. } => None,
        }
    }
}

/// How many of a reference's distinct values an output covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Coverage {
    /// Distinct values in the reference for the date.
    pub reference: u64,
    /// Of those, the values present in the output.
    pub covered: u64,
    /// A few of the values missing from the output, in order, for the evidence.
    pub missing: Vec<String>,
}

/// How many missing values a coverage measurement names.
const MISSING_SHOWN: usize = 3;

impl Coverage {
    /// Compares the distinct values of an output with those of its reference.
    pub fn of(output: &BTreeSet<String>, reference: &BTreeSet<String>) -> Self {
        let missing: Vec<&String> = reference.difference(output).collect();
        Self {
            reference: reference.len() as u64,
            covered: (reference.len() - missing.len()) as u64,
            missing: missing.into_iter().take(MISSING_SHOWN).cloned().collect(),
        }
    }
    /// The covered share in percent: 100 when the reference has no values.
    pub fn percent(&self) -> f64 {
        if self.reference == 0 {
            100.0
        } else {
            100.0 * self.covered as f64 / self.reference as f64
        }
    }
}

/// What was measured for one check and one date.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Measurement {
    /// Rows of the table for the date.
    pub rows: u64,
    /// Of those, rows with the check's column non-null (equals `rows` for a row check).
    pub non_null: u64,
    /// Rows in the `only_when_rows_in` table for the date (None when not configured).
    pub gating_rows: Option<u64>,
    /// For a coverage check: the reference's distinct values and how many are covered.
    pub coverage: Option<Coverage>,
}

/// A check's verdict: pass, pass with a warning, or fail (which blocks the trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// At or above every threshold, or not applicable.
    Pass,
    /// At or above the minimum but below the warning threshold: triggers, and is recorded.
    Warn,
    /// Below the minimum: blocks the trigger.
    Fail,
}

/// A check's verdict for a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check.
    pub check: String,
    /// The verdict (a check that does not apply passes).
    pub outcome: Outcome,
    /// The measured value and the threshold, as a person reads them.
    pub evidence: String,
}

impl CheckResult {
    /// Whether the check lets the trigger through (it passed, perhaps with a warning).
    pub fn passed(&self) -> bool {
        self.outcome != Outcome::Fail
    }
    /// Whether it passed with a warning.
    pub fn warned(&self) -> bool {
        self.outcome == Outcome::Warn
    }
}

/// The verdict of a share against a minimum and an optional warning threshold.
fn tiered(percent: f64, min_percent: f64, warn_below: Option<f64>) -> Outcome {
    // A small tolerance, so 80 of 100 is not judged below 80% by rounding.
    if percent + 1e-9 < min_percent {
        Outcome::Fail
    } else if warn_below.is_some_and(|w| percent + 1e-9 < w) {
        Outcome::Warn
    } else {
        Outcome::Pass
    }
}

/// The thresholds as a person reads them: "minimum 80%" or "minimum 80%, warning below 85%".
fn thresholds(min_percent: f64, warn_below: Option<f64>) -> String {
    match warn_below {
        Some(w) => format!("minimum {min_percent}%, warning below {w}%"),
        None => format!("minimum {min_percent}%"),
    }
}

/// Judges a measurement.
pub fn judge(check: &QualityCheck, m: &Measurement) -> CheckResult {
    let (outcome, evidence) = if m.gating_rows == Some(0) {
        (
            Outcome::Pass,
            format!(
                "not applicable: no rows in {}",
                check.only_when_rows_in.as_deref().unwrap_or("")
            ),
        )
    } else {
        match &check.kind {
            CheckKind::MinRows { min } => (
                if m.rows >= *min {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                },
                format!("{} rows in {} (minimum {min})", m.rows, check.table),
            ),
            CheckKind::NonNullCoverage {
                column,
                min_percent,
                warn_below_percent,
            } => judge_non_null(check, m, column, *min_percent, *warn_below_percent),
            CheckKind::Coverage {
                column,
                reference_table,
                reference_column,
                min_percent,
                warn_below_percent,
            } => {
                let c = m.coverage.clone().unwrap_or_default();
                let what = format!(
                    "{reference_column} values of {reference_table} in {}.{column}",
                    check.table
                );
                judge_coverage(&c, &what, *min_percent, *warn_below_percent)
            }
        }
    };
    CheckResult {
        check: check.name.clone(),
        outcome,
        evidence,
    }
}

/// Judges a coverage measurement; the evidence names a few of the values missing.
fn judge_coverage(
    c: &Coverage,
    what: &str,
    min_percent: f64,
    warn_below: Option<f64>,
) -> (Outcome, String) {
    let pct = c.percent();
    let missing = if c.missing.is_empty() {
        String::new()
    } else {
        let more = if c.reference - c.covered > c.missing.len() as u64 {
            ", ..."
        } else {
            ""
        };
        format!("; missing {}{more}", c.missing.join(", "))
    };
    (
        tiered(pct, min_percent, warn_below),
        format!(
            "{} of {} {what} ({pct:.1}%; {}){missing}",
            c.covered,
            c.reference,
            thresholds(min_percent, warn_below)
        ),
    )
}

/// Judges a non-null coverage measurement: an empty table fails.
fn judge_non_null(
    check: &QualityCheck,
    m: &Measurement,
    column: &str,
    min_percent: f64,
    warn_below: Option<f64>,
) -> (Outcome, String) {
    let pct = if m.rows == 0 {
        0.0
    } else {
        100.0 * m.non_null as f64 / m.rows as f64
    };
    let outcome = if m.rows == 0 {
        Outcome::Fail
    } else {
        tiered(pct, min_percent, warn_below)
    };
    (
        outcome,
        format!(
            "{column} non-null in {pct:.1}% of {} rows of {} ({})",
            m.rows,
            check.table,
            thresholds(min_percent, warn_below)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(min_percent: f64) -> QualityCheck {
        QualityCheck {
            name: "minutes".into(),
            table: "player_game_summary".into(),
            kind: CheckKind::NonNullCoverage {
                column: "minutes".into(),
                min_percent,
                warn_below_percent: None,
            },
            only_when_rows_in: Some("nbac_schedule".into()),
        }
    }

    #[test]
    fn coverage_below_the_threshold_fails_with_the_measured_value() {
        let r = judge(
            &coverage(80.0),
            &Measurement {
                rows: 10,
                non_null: 7,
                gating_rows: Some(3),
                ..Default::default()
            },
        );
        assert!(!r.passed());
        assert_eq!(
            r.evidence,
            "minutes non-null in 70.0% of 10 rows of player_game_summary (minimum 80%)"
        );
        assert!(
            judge(
                &coverage(80.0),
                &Measurement {
                    rows: 10,
                    non_null: 8,
                    gating_rows: Some(3),
                    ..Default::default()
                }
            )
            .passed()
        );
    }

    #[test]
    fn a_date_without_games_is_not_judged() {
        assert!(
            judge(
                &coverage(80.0),
                &Measurement {
                    rows: 0,
                    non_null: 0,
                    gating_rows: Some(0),
                    ..Default::default()
                }
            )
            .passed()
        );
        assert!(
            !judge(
                &coverage(80.0),
                &Measurement {
                    rows: 0,
                    non_null: 0,
                    gating_rows: Some(2),
                    ..Default::default()
                }
            )
            .passed()
        );
    }

    #[test]
    fn min_rows() {
        let c = QualityCheck {
            name: "rows".into(),
            table: "t".into(),
            kind: CheckKind::MinRows { min: 5 },
            only_when_rows_in: None,
        };
        assert!(
            !judge(
                &c,
                &Measurement {
                    rows: 4,
                    non_null: 4,
                    gating_rows: None,
                    ..Default::default()
                }
            )
            .passed()
        );
        assert!(
            judge(
                &c,
                &Measurement {
                    rows: 5,
                    non_null: 5,
                    gating_rows: None,
                    ..Default::default()
                }
            )
            .passed()
        );
    }

    fn games(ids: std::ops::Range<u32>) -> BTreeSet<String> {
        ids.map(|i| format!("g{i:02}")).collect()
    }

    fn game_coverage() -> QualityCheck {
        QualityCheck {
            name: "game_coverage".into(),
            table: "player_game_summary".into(),
            kind: CheckKind::Coverage {
                column: "game_id".into(),
                reference_table: "nbac_schedule".into(),
                reference_column: "game_id".into(),
                min_percent: 80.0,
                warn_below_percent: Some(85.0),
            },
            only_when_rows_in: Some("nbac_schedule".into()),
        }
    }

    fn covered(output: &BTreeSet<String>, reference: &BTreeSet<String>) -> CheckResult {
        judge(
            &game_coverage(),
            &Measurement {
                gating_rows: Some(reference.len() as u64),
                coverage: Some(Coverage::of(output, reference)),
                ..Default::default()
            },
        )
    }

    #[test]
    fn coverage_of_the_scheduled_games_passes_warns_or_fails() {
        let scheduled = games(0..10);
        // 2 of 10 games: blocks, naming the games missing.
        let two = covered(&games(0..2), &scheduled);
        assert_eq!(two.outcome, Outcome::Fail);
        assert!(!two.passed());
        assert_eq!(
            two.evidence,
            "2 of 10 game_id values of nbac_schedule in player_game_summary.game_id (20.0%; \
             minimum 80%, warning below 85%); missing g02, g03, g04, ..."
        );
        // 8.2 of 10 (41 of 50 games): above the minimum, below the warning threshold.
        let scheduled50 = games(0..50);
        let c = Coverage::of(&games(0..41), &scheduled50);
        assert!((c.percent() - 82.0).abs() < 1e-9);
        let warned = covered(&games(0..41), &scheduled50);
        assert_eq!(warned.outcome, Outcome::Warn);
        assert!(warned.passed() && warned.warned());
        assert!(
            warned
                .evidence
                .contains("(82.0%; minimum 80%, warning below 85%)")
        );
        // 10 of 10, and extra values in the output do not matter.
        let mut extra = games(0..10);
        extra.insert("g99".into());
        let full = covered(&extra, &scheduled);
        assert_eq!(full.outcome, Outcome::Pass);
        assert_eq!(
            full.evidence,
            "10 of 10 game_id values of nbac_schedule in player_game_summary.game_id (100.0%; \
             minimum 80%, warning below 85%)"
        );
        // Exactly at the minimum fails nothing; exactly at the warning threshold warns nothing.
        assert_eq!(covered(&games(0..8), &scheduled).outcome, Outcome::Warn);
        assert_eq!(covered(&games(0..17), &games(0..20)).outcome, Outcome::Pass);
    }

    #[test]
    fn coverage_of_an_empty_reference_is_full() {
        let c = Coverage::of(&BTreeSet::new(), &BTreeSet::new());
        assert_eq!(c.percent(), 100.0);
        let r = judge(
            &QualityCheck {
                only_when_rows_in: None,
                ..game_coverage()
            },
            &Measurement {
                coverage: Some(c),
                ..Default::default()
            },
        );
        assert_eq!(r.outcome, Outcome::Pass);
        // A date without games is not judged at all.
        let r = judge(
            &game_coverage(),
            &Measurement {
                gating_rows: Some(0),
                ..Default::default()
            },
        );
        assert_eq!(r.outcome, Outcome::Pass);
        assert_eq!(r.evidence, "not applicable: no rows in nbac_schedule");
    }

    #[test]
    fn non_null_coverage_warns_between_its_thresholds() {
        let mut c = coverage(80.0);
        if let CheckKind::NonNullCoverage {
            warn_below_percent, ..
        } = &mut c.kind
        {
            *warn_below_percent = Some(85.0);
        }
        let at = |non_null| {
            judge(
                &c,
                &Measurement {
                    rows: 100,
                    non_null,
                    gating_rows: Some(3),
                    ..Default::default()
                },
            )
            .outcome
        };
        assert_eq!(at(79), Outcome::Fail);
        assert_eq!(at(80), Outcome::Warn);
        assert_eq!(at(84), Outcome::Warn);
        assert_eq!(at(85), Outcome::Pass);
    }

    #[test]
    fn only_a_non_null_check_names_the_column_whose_non_null_rows_are_counted() {
        // The adapters measure `non_null` of this column; None counts every row.
        assert_eq!(coverage(80.0).column(), Some("minutes"));
        assert_eq!(game_coverage().column(), None);
        let rows = QualityCheck {
            kind: CheckKind::MinRows { min: 1 },
            ..coverage(80.0)
        };
        assert_eq!(rows.column(), None);
    }

    #[test]
    fn the_evidence_adds_an_ellipsis_only_when_more_games_are_missing_than_it_names() {
        let scheduled = games(0..10);
        let end = |have: u32| {
            let e = covered(&games(0..have), &scheduled).evidence;
            e[e.find("; missing").unwrap()..].to_owned()
        };
        assert_eq!(end(9), "; missing g09");
        assert_eq!(
            end(7),
            "; missing g07, g08, g09",
            "all three missing are named"
        );
        assert_eq!(
            end(6),
            "; missing g06, g07, g08, ...",
            "four missing, three named"
        );
    }
}
