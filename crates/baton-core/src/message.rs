//! Completion messages: baton's own JSON and the original pipeline's JSON, parsed into one
//! [`CompletionMessage`], with processor names normalised. Anything that cannot be parsed,
//! or names a processor the pipeline does not have, is a [`Rejection`] with a reason, for
//! the dead-letter queue; it is never counted.

use crate::config::Pipeline;
use crate::model::{CompletionStatus, GateId, Partition, ProcessorName, RunId};
use jiff::Timestamp;
use serde_json::{Value, json};

/// A processor's report that it finished a run for a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionMessage {
    /// Deterministic per (processor, partition, run): `processor/date/run_id`.
    pub message_id: String,
    /// The gate, when the sender named one.
    pub gate: Option<GateId>,
    /// The processor.
    pub processor: ProcessorName,
    /// The partition.
    pub partition: Partition,
    /// The run.
    pub run_id: RunId,
    /// How the run ended.
    pub status: CompletionStatus,
    /// Rows the run wrote.
    pub record_count: u64,
    /// When the processor produced the message.
    pub produced_at: Timestamp,
    /// Start a new trigger generation (re-run downstream) once the gate is satisfied.
    pub force_reprocess: bool,
}

/// Why a message was rejected (it goes to the dead-letter queue with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

/// The deterministic message id of a completion.
pub fn message_id(processor: &ProcessorName, partition: Partition, run_id: &RunId) -> String {
    format!("{processor}/{partition}/{run_id}")
}

impl CompletionMessage {
    /// baton's own JSON form.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "message_id": self.message_id,
            "processor": self.processor,
            "date": self.partition.to_string(),
            "run_id": self.run_id,
            "status": self.status,
            "record_count": self.record_count,
            "produced_at": self.produced_at.to_string(),
        });
        if let Some(g) = &self.gate {
            v["gate"] = json!(g);
        }
        if self.force_reprocess {
            v["force_reprocess"] = json!(true);
        }
        v
    }

    /// Parses a message in baton's or the original pipeline's form.
    pub fn parse(bytes: &[u8], pipeline: &Pipeline) -> Result<Self, Rejection> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| Rejection(format!("not JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(Rejection("not a JSON object".into()));
        };
        let text = |keys: &[&str]| -> Option<(String, String)> {
            keys.iter().find_map(|k| match obj.get(*k) {
                Some(Value::String(s)) if !s.trim().is_empty() => {
                    Some((k.to_string(), s.trim().to_owned()))
                }
                Some(Value::Number(n)) => Some((k.to_string(), n.to_string())),
                _ => None,
            })
        };

        let (proc_key, raw_name) = text(&["processor", "processor_name"])
            .ok_or_else(|| Rejection("missing field `processor` (or `processor_name`)".into()))?;
        let normalised = normalise_processor_name(&raw_name);
        let processor = match pipeline.processor(&normalised) {
            Some(p) => p.name.clone(),
            None => match text(&["output_table"])
                .and_then(|(_, t)| pipeline.processor_for_table(&t).map(|p| p.name.clone()))
            {
                Some(p) => p,
                None => {
                    return Err(Rejection(format!(
                        "unknown processor `{raw_name}` in field `{proc_key}` (normalised to `{normalised}`)"
                    )));
                }
            },
        };

        let (date_key, date_text) = text(&["date", "game_date", "analysis_date"])
            .ok_or_else(|| Rejection("missing field `date` (or `game_date`)".into()))?;
        let partition = Partition::parse(&date_text)
            .map_err(|e| Rejection(format!("field `{date_key}`: {e}")))?;

        let (_, run) = text(&["run_id", "execution_id", "correlation_id"])
            .ok_or_else(|| Rejection("missing field `run_id` (or `execution_id`)".into()))?;
        let run_id = RunId::new(run);

        let (status_key, status_text) =
            text(&["status"]).ok_or_else(|| Rejection("missing field `status`".into()))?;
        let status = CompletionStatus::parse(&status_text).ok_or_else(|| {
            Rejection(format!("field `{status_key}`: unknown status `{status_text}` (expected success, partial, no_data or failed)"))
        })?;

        let record_count = match obj
            .get("record_count")
            .or_else(|| obj.get("records_processed"))
        {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                Rejection(format!(
                    "field `record_count`: `{v}` is not a non-negative integer"
                ))
            })?,
        };

        let (ts_key, ts_text) = text(&["produced_at", "timestamp"])
            .ok_or_else(|| Rejection("missing field `produced_at` (or `timestamp`)".into()))?;
        let produced_at = parse_timestamp(&ts_text).ok_or_else(|| {
            Rejection(format!("field `{ts_key}`: `{ts_text}` is not a timestamp"))
        })?;

        let gate = match text(&["gate"]) {
            Some((_, g)) => {
                if pipeline.gate(&g).is_none() {
                    return Err(Rejection(format!("field `gate`: unknown gate `{g}`")));
                }
                Some(GateId::new(g))
            }
            None => None,
        };
        let force_reprocess = matches!(obj.get("force_reprocess"), Some(Value::Bool(true)));
        let message_id = match text(&["message_id"]) {
            Some((_, id)) => id,
            None => message_id(&processor, partition, &run_id),
        };
        Ok(Self {
            message_id,
            gate,
            processor,
            partition,
            run_id,
            status,
            record_count,
            produced_at,
            force_reprocess,
        })
    }
}

/// Accepts RFC 3339, or a naive datetime (the original pipeline's `isoformat()`) as UTC.
fn parse_timestamp(text: &str) -> Option<Timestamp> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Some(ts);
    }
    let dt = text.parse::<jiff::civil::DateTime>().ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// `AsyncPlayerGameSummaryProcessor` -> `player_game_summary`; snake_case names pass through.
pub fn normalise_processor_name(raw: &str) -> String {
    let mut name = raw.trim();
    if let Some(rest) = name.strip_prefix("Async")
        && rest.starts_with(|c: char| c.is_ascii_uppercase())
    {
        name = rest;
    }
    if let Some(rest) = name.strip_suffix("Processor")
        && !rest.is_empty()
    {
        name = rest;
    }
    let mut out = String::with_capacity(name.len() + 8);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '-' || c == ' ' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> Pipeline {
        Pipeline::reference().unwrap()
    }

    #[test]
    fn class_names_are_normalised() {
        assert_eq!(
            normalise_processor_name("PlayerGameSummaryProcessor"),
            "player_game_summary"
        );
        assert_eq!(
            normalise_processor_name("AsyncUpcomingPlayerGameContextProcessor"),
            "upcoming_player_game_context"
        );
        assert_eq!(
            normalise_processor_name("team_offense_game_summary"),
            "team_offense_game_summary"
        );
    }

    #[test]
    fn the_original_pipeline_json_is_accepted_as_is() {
        let raw = br#"{"processor_name": "AsyncUpcomingPlayerGameContextProcessor", "phase": "phase_3_analytics",
            "execution_id": "exec-1", "correlation_id": "corr-1", "game_date": "2024-03-01",
            "output_table": "upcoming_player_game_context", "status": "success", "record_count": 412,
            "timestamp": "2024-03-02T06:12:03.123456", "metadata": {"x": 1}}"#;
        let m = CompletionMessage::parse(raw, &pipeline()).unwrap();
        assert_eq!(m.processor.as_str(), "upcoming_player_game_context");
        assert_eq!(m.run_id.as_str(), "exec-1");
        assert_eq!(m.record_count, 412);
        assert_eq!(
            m.message_id,
            "upcoming_player_game_context/2024-03-01/exec-1"
        );
    }

    #[test]
    fn output_table_rescues_an_unfamiliar_class_name() {
        let raw = br#"{"processor_name": "PGSv2", "output_table": "player_game_summary", "game_date": "2024-03-01",
            "execution_id": "e", "status": "success", "timestamp": "2024-03-02T06:00:00Z"}"#;
        assert_eq!(
            CompletionMessage::parse(raw, &pipeline())
                .unwrap()
                .processor
                .as_str(),
            "player_game_summary"
        );
    }

    #[test]
    fn rejections_say_what_was_wrong() {
        let p = pipeline();
        let cases: [(&[u8], &str); 5] = [
            (b"{not json", "not JSON"),
            (br#"{"processor": "mystery", "date": "2024-03-01", "run_id": "r", "status": "success", "produced_at": "2024-03-01T00:00:00Z"}"#, "unknown processor `mystery`"),
            (br#"{"processor": "player_game_summary", "date": "03/01/2024", "run_id": "r", "status": "success", "produced_at": "2024-03-01T00:00:00Z"}"#, "field `date`"),
            (br#"{"processor": "player_game_summary", "date": "2024-03-01", "run_id": "r", "status": "meh", "produced_at": "2024-03-01T00:00:00Z"}"#, "unknown status `meh`"),
            (br#"{"processor": "player_game_summary", "date": "2024-03-01", "status": "success", "produced_at": "2024-03-01T00:00:00Z"}"#, "missing field `run_id`"),
        ];
        for (raw, expected) in cases {
            let err = CompletionMessage::parse(raw, &p).unwrap_err();
            assert!(
                err.0.contains(expected),
                "{} should contain {expected}",
                err.0
            );
        }
    }

    #[test]
    fn own_json_round_trips() {
        let p = pipeline();
        let m = CompletionMessage {
            message_id: "x".into(),
            gate: Some(GateId::from("phase3_to_phase4")),
            processor: ProcessorName::from("player_game_summary"),
            partition: Partition::parse("2024-03-01").unwrap(),
            run_id: RunId::from("r1"),
            status: CompletionStatus::Partial,
            record_count: 3,
            produced_at: "2024-03-01T10:00:00Z".parse().unwrap(),
            force_reprocess: true,
        };
        let bytes = serde_json::to_vec(&m.to_json()).unwrap();
        assert_eq!(CompletionMessage::parse(&bytes, &p).unwrap(), m);
    }
}
