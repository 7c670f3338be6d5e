//! Landing notices: an upstream job telling baton that a batch of its data landed for a
//! date. Two shapes are read, one parser for both, so the HTTP endpoint
//! (`POST /api/v1/landings`) and `serve`'s raw-landings consumer accept exactly the same
//! messages and reject them for the same reasons:
//!
//! - baton's own: `{"job": "...", "date": "YYYY-MM-DD", "landed_at": "RFC 3339"}`;
//! - the original pipeline's Phase 2 completion: `{"output_table" | "source_table":
//!   "<table>", "game_date": "...", "status": "success"}`, where the table names the
//!   upstream job that lands it.
//!
//! A status that does not complete (`failed`) is not a landing: the data did not land, and
//! recording it would start readers on nothing. `success`, `partial` and `no_data` are
//! landings (the job finished; `no_data` is a date without games, which readers must not
//! wait for forever).

use crate::config::{Pipeline, UpstreamJob};
use crate::message::Field;
use crate::model::{CompletionStatus, Partition};
use jiff::Timestamp;
use serde_json::{Map, Value};

/// The names a landing's job is read under, in order: baton's, then the original
/// pipeline's (a table, which names the job that lands it).
pub const JOB_FIELDS: [&str; 3] = ["job", "output_table", "source_table"];
/// The names a landing's time is read under: baton's, then the original pipeline's.
pub const TIME_FIELDS: [&str; 2] = ["landed_at", "timestamp"];

/// A landing notice, read and resolved against the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandingNotice {
    /// The upstream job that landed.
    pub job: String,
    /// The date it landed data for.
    pub partition: Partition,
    /// When it landed (the notice's time, or `now` when it gave none).
    pub landed_at: Timestamp,
}

/// Why a notice is not recorded as a landing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    /// Unreadable, a field missing or of the wrong form.
    #[error("{field}: {reason}")]
    Malformed {
        /// The field at fault (`body` when the whole body is).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// It names a job (or a table) the pipeline has no upstream job for.
    #[error("{field}: {reason}")]
    Unknown {
        /// `job`, `output_table` or `source_table`.
        field: &'static str,
        /// Which name, and what is known.
        reason: String,
    },
    /// A readable notice that says the job did not land (`failed`).
    #[error("status: `{0}` is not a landing (the job did not finish; nothing was recorded)")]
    NotLanded(String),
}

impl NoticeError {
    /// The field the error names.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Malformed { field, .. } | Self::Unknown { field, .. } => field,
            Self::NotLanded(_) => "status",
        }
    }
}

fn malformed(field: &'static str, reason: impl Into<String>) -> NoticeError {
    NoticeError::Malformed {
        field,
        reason: reason.into(),
    }
}

/// The first of `names` present in `obj`, with the name it was found under.
fn first<'a>(
    obj: &'a Map<String, Value>,
    names: &[&'static str],
) -> Option<(&'static str, &'a Value)> {
    names
        .iter()
        .find_map(|n| obj.get(*n).filter(|v| !v.is_null()).map(|v| (*n, v)))
}

fn text<'a>(field: &'static str, v: &'a Value) -> Result<&'a str, NoticeError> {
    v.as_str()
        .map(str::trim)
        .ok_or_else(|| malformed(field, "expected a string"))
}

/// Parses a notice in either shape; `now` is its time when it names none.
pub fn parse(
    bytes: &[u8],
    pipeline: &Pipeline,
    now: Timestamp,
) -> Result<LandingNotice, NoticeError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| malformed("body", format!("not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(malformed("body", "not a JSON object"));
    };
    read(&obj, pipeline, now)
}

/// Reads a notice's fields in a fixed order (job, date, status, time), so the first thing
/// wrong is the reason given.
pub fn read(
    obj: &Map<String, Value>,
    pipeline: &Pipeline,
    now: Timestamp,
) -> Result<LandingNotice, NoticeError> {
    let job = job(obj, pipeline)?;
    let (date_field, date) = first(obj, Field::Date.aliases())
        .ok_or_else(|| malformed("date", "missing (or `game_date`)"))?;
    let date = text(date_field, date)?;
    let partition = Partition::parse(date)
        .map_err(|e| malformed(date_field, format!("`{date}` is not a date: {e}")))?;
    if let Some((field, status)) = first(obj, &["status"]) {
        let status = text(field, status)?;
        match CompletionStatus::parse(status) {
            Some(s) if s.completes() => {}
            Some(_) => return Err(NoticeError::NotLanded(status.to_owned())),
            None => {
                return Err(malformed(
                    "status",
                    format!("`{status}` is not success, partial, no_data or failed"),
                ));
            }
        }
    }
    let landed_at = match first(obj, &TIME_FIELDS) {
        Some((field, at)) => {
            let at = text(field, at)?;
            at.parse::<Timestamp>()
                .map_err(|e| malformed(field, format!("`{at}` is not an RFC 3339 time: {e}")))?
        }
        None => now,
    };
    Ok(LandingNotice {
        job: job.name.clone(),
        partition,
        landed_at,
    })
}

/// The upstream job a notice names: by name (`job`), or as the job whose tables include
/// the table it names (`output_table`, `source_table`).
fn job<'a>(
    obj: &Map<String, Value>,
    pipeline: &'a Pipeline,
) -> Result<&'a UpstreamJob, NoticeError> {
    let (field, v) = first(obj, &JOB_FIELDS)
        .ok_or_else(|| malformed("job", "missing (or `output_table` / `source_table`)"))?;
    let name = text(field, v)?;
    if name.is_empty() {
        return Err(malformed(field, "must not be empty"));
    }
    let known = || {
        pipeline
            .upstream
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = match field {
        "job" => pipeline.upstream_job(name),
        _ => job_landing(pipeline, name),
    };
    found.ok_or_else(|| NoticeError::Unknown {
        field,
        reason: match field {
            "job" => format!("unknown upstream job `{name}` (known: {})", known()),
            _ => format!(
                "no upstream job lands table `{name}` (upstream jobs: {})",
                known()
            ),
        },
    })
}

/// The upstream job whose tables include `table`.
pub fn job_landing<'a>(pipeline: &'a Pipeline, table: &str) -> Option<&'a UpstreamJob> {
    pipeline
        .upstream
        .iter()
        .find(|u| u.tables.iter().any(|t| t == table))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
    use super::*;

    fn now() -> Timestamp {
        "2024-03-10T12:00:00Z".parse().unwrap()
    }

    fn parse_str(s: &str) -> Result<LandingNotice, NoticeError> {
        parse(s.as_bytes(), &Pipeline::reference().unwrap(), now())
    }

    #[test]
    fn batons_shape_names_the_job_and_defaults_the_time_to_now() {
        let n = parse_str(r#"{"job":"nbac_schedule_scraper","date":"2024-03-09"}"#).unwrap();
        assert_eq!(n.job, "nbac_schedule_scraper");
        assert_eq!(n.partition.to_string(), "2024-03-09");
        assert_eq!(n.landed_at, now());
        let n = parse_str(
            r#"{"job":"nbac_schedule_scraper","date":"2024-03-09","landed_at":"2024-03-10T06:01:00Z"}"#,
        )
        .unwrap();
        assert_eq!(n.landed_at.to_string(), "2024-03-10T06:01:00Z");
    }

    #[test]
    fn the_original_phase_2_shape_names_the_job_by_any_of_its_tables() {
        for table in ["nbac_gamebook_player_stats", "nbac_team_boxscore"] {
            for key in ["output_table", "source_table"] {
                let body =
                    format!(r#"{{"{key}":"{table}","game_date":"2024-03-09","status":"success"}}"#);
                assert_eq!(parse_str(&body).unwrap().job, "nbac_gamebook_scraper");
            }
        }
    }

    #[test]
    fn a_failed_status_is_not_a_landing() {
        let e = parse_str(
            r#"{"output_table":"nbac_schedule","game_date":"2024-03-09","status":"failed"}"#,
        )
        .unwrap_err();
        assert!(matches!(e, NoticeError::NotLanded(_)), "{e}");
        assert_eq!(e.field(), "status");
        for ok in ["partial", "no_data", "Completed"] {
            let body = format!(
                r#"{{"output_table":"nbac_schedule","game_date":"2024-03-09","status":"{ok}"}}"#
            );
            assert!(parse_str(&body).is_ok(), "{ok}");
        }
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            ("[1]", "body"),
            ("not json", "body"),
            (r#"{"date":"2024-03-09"}"#, "job"),
            (r#"{"job":"nope","date":"2024-03-09"}"#, "job"),
            (
                r#"{"output_table":"player_game_summary","game_date":"2024-03-09"}"#,
                "output_table",
            ),
            (r#"{"job":"nbac_schedule_scraper"}"#, "date"),
            (
                r#"{"job":"nbac_schedule_scraper","date":"2024-13-09"}"#,
                "date",
            ),
            (
                r#"{"source_table":"nbac_schedule","game_date":"yesterday"}"#,
                "game_date",
            ),
            (
                r#"{"job":"nbac_schedule_scraper","date":"2024-03-09","landed_at":"06:00"}"#,
                "landed_at",
            ),
            (
                r#"{"job":"nbac_schedule_scraper","date":"2024-03-09","status":"meh"}"#,
                "status",
            ),
            (r#"{"job":7,"date":"2024-03-09"}"#, "job"),
        ];
        for (body, field) in cases {
            let e = parse_str(body).unwrap_err();
            assert_eq!(e.field(), field, "{body}: {e}");
        }
        let e = parse_str(r#"{"job":"nope","date":"2024-03-09"}"#).unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
    }
}
