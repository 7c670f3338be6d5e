//! Quality checks on a gate: measured facts about a date's tables (rows, non-null coverage
//! of a column) judged against thresholds. A failing check blocks the gate's trigger and is
//! recorded on the document with the measured value; it never marks the date triggered.

use serde::{Deserialize, Serialize};

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
            CheckKind::MinRows { .. } => None,
        }
    }
}

/// What was measured for one check and one date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Measurement {
    /// Rows of the table for the date.
    pub rows: u64,
    /// Of those, rows with the check's column non-null (equals `rows` for a row check).
    pub non_null: u64,
    /// Rows in the `only_when_rows_in` table for the date (None when not configured).
    pub gating_rows: Option<u64>,
}

/// A check's verdict for a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check.
    pub check: String,
    /// Whether it passed (a check that does not apply passes).
    pub passed: bool,
    /// The measured value and the threshold, as a person reads them.
    pub evidence: String,
}

/// Judges a measurement.
pub fn judge(check: &QualityCheck, m: Measurement) -> CheckResult {
    if m.gating_rows == Some(0) {
        return CheckResult {
            check: check.name.clone(),
            passed: true,
            evidence: format!(
                "not applicable: no rows in {}",
                check.only_when_rows_in.as_deref().unwrap_or("")
            ),
        };
    }
    let (passed, evidence) = match &check.kind {
        CheckKind::MinRows { min } => (
            m.rows >= *min,
            format!("{} rows in {} (minimum {min})", m.rows, check.table),
        ),
        CheckKind::NonNullCoverage {
            column,
            min_percent,
        } => {
            let pct = if m.rows == 0 {
                0.0
            } else {
                100.0 * m.non_null as f64 / m.rows as f64
            };
            (
                m.rows > 0 && pct + 1e-9 >= *min_percent,
                format!(
                    "{column} non-null in {pct:.1}% of {} rows of {} (minimum {min_percent}%)",
                    m.rows, check.table
                ),
            )
        }
    };
    CheckResult {
        check: check.name.clone(),
        passed,
        evidence,
    }
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
            },
            only_when_rows_in: Some("nbac_schedule".into()),
        }
    }

    #[test]
    fn coverage_below_the_threshold_fails_with_the_measured_value() {
        let r = judge(
            &coverage(80.0),
            Measurement {
                rows: 10,
                non_null: 7,
                gating_rows: Some(3),
            },
        );
        assert!(!r.passed);
        assert_eq!(
            r.evidence,
            "minutes non-null in 70.0% of 10 rows of player_game_summary (minimum 80%)"
        );
        assert!(
            judge(
                &coverage(80.0),
                Measurement {
                    rows: 10,
                    non_null: 8,
                    gating_rows: Some(3)
                }
            )
            .passed
        );
    }

    #[test]
    fn a_date_without_games_is_not_judged() {
        assert!(
            judge(
                &coverage(80.0),
                Measurement {
                    rows: 0,
                    non_null: 0,
                    gating_rows: Some(0)
                }
            )
            .passed
        );
        assert!(
            !judge(
                &coverage(80.0),
                Measurement {
                    rows: 0,
                    non_null: 0,
                    gating_rows: Some(2)
                }
            )
            .passed
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
                Measurement {
                    rows: 4,
                    non_null: 4,
                    gating_rows: None
                }
            )
            .passed
        );
        assert!(
            judge(
                &c,
                Measurement {
                    rows: 5,
                    non_null: 5,
                    gating_rows: None
                }
            )
            .passed
        );
    }
}
