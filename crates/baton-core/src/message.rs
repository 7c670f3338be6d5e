//! Completion messages: baton's own JSON and the original pipeline's JSON, parsed into one
//! [`CompletionMessage`], with processor names normalised. Anything that cannot be parsed,
//! or names a processor the pipeline does not have, is a [`Rejection`] with a reason, for
//! the dead-letter queue; it is never counted.

use crate::config::Pipeline;
use crate::model::{CompletionStatus, GateId, Partition, ProcessorName, RunId};
use jiff::Timestamp;
use serde_json::{Map, Value, json};

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
    /// The digest of the rows the run wrote (baton's runner always sends it): a rerun with
    /// another digest after the trigger starts a new generation, one with the same does not.
    pub digest: Option<String>,
}

/// A field of a completion message that is read from the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The processor (the original pipeline sends its class name).
    Processor,
    /// The table the processor wrote: names the processor when its name is unfamiliar.
    OutputTable,
    /// The partition's date.
    Date,
    /// The run.
    RunId,
    /// How the run ended.
    Status,
    /// Rows the run wrote.
    RecordCount,
    /// When the processor produced the message.
    ProducedAt,
    /// The gate.
    Gate,
    /// The message id.
    MessageId,
    /// Whether to start a new trigger generation.
    ForceReprocess,
    /// The digest of the rows the run wrote.
    Digest,
}

/// Every name each field is read under, tried in order (the first present wins): baton's
/// own name, then the original pipeline's. The parser and `serve`'s log lines both read
/// this one table, so that a message is read under the same names everywhere; `partition`
/// (a trigger's date, which `serve` logs through this table too) is tried last.
pub const ALIASES: &[(Field, &[&str])] = &[
    (Field::Processor, &["processor", "processor_name"]),
    (Field::OutputTable, &["output_table"]),
    (
        Field::Date,
        &["date", "game_date", "analysis_date", "partition"],
    ),
    (Field::RunId, &["run_id", "execution_id", "correlation_id"]),
    (Field::Status, &["status"]),
    (Field::RecordCount, &["record_count", "records_processed"]),
    (Field::ProducedAt, &["produced_at", "timestamp"]),
    (Field::Gate, &["gate"]),
    (Field::MessageId, &["message_id"]),
    (Field::ForceReprocess, &["force_reprocess"]),
    (Field::Digest, &["digest"]),
];

impl Field {
    /// The names this field is read under, in the order they are tried.
    pub fn aliases(self) -> &'static [&'static str] {
        ALIASES
            .iter()
            .find(|(f, _)| *f == self)
            .map_or(&[], |(_, names)| names)
    }
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
    /// The one constructor: the completion of `run_id`, with its deterministic message id,
    /// no gate named and no forced re-trigger (see [`Self::for_gate`], [`Self::forcing`]).
    pub fn new(
        processor: ProcessorName,
        partition: Partition,
        run_id: RunId,
        status: CompletionStatus,
        record_count: u64,
        produced_at: Timestamp,
    ) -> Self {
        Self {
            message_id: message_id(&processor, partition, &run_id),
            gate: None,
            processor,
            partition,
            run_id,
            status,
            record_count,
            produced_at,
            force_reprocess: false,
            digest: None,
        }
    }

    /// The same message carrying the digest of the rows its run wrote.
    pub fn with_digest(mut self, digest: Option<String>) -> Self {
        self.digest = digest;
        self
    }

    /// The same message naming its gate.
    pub fn for_gate(mut self, gate: Option<GateId>) -> Self {
        self.gate = gate;
        self
    }

    /// The same message asking (or not) for a new trigger generation.
    pub fn forcing(mut self, force_reprocess: bool) -> Self {
        self.force_reprocess = force_reprocess;
        self
    }

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
        if let Some(d) = &self.digest {
            v["digest"] = json!(d);
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
        // Fields are read in this order, so the first thing wrong is the reason given.
        let fields = Fields(&obj);
        let processor = fields.processor(pipeline)?;
        let partition = fields.partition()?;
        let (_, run) = fields
            .text(Field::RunId)
            .ok_or_else(|| Rejection("missing field `run_id` (or `execution_id`)".into()))?;
        let run_id = RunId::new(run);
        let status = fields.status()?;
        let record_count = fields.record_count()?;
        let produced_at = fields.produced_at()?;
        let gate = fields.gate(pipeline)?;
        let force_reprocess =
            matches!(fields.value(Field::ForceReprocess), Some(Value::Bool(true)));
        let message_id = match fields.text(Field::MessageId) {
            Some((_, id)) => id,
            None => message_id(&processor, partition, &run_id),
        };
        let digest = fields.text(Field::Digest).map(|(_, d)| d);
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
            digest,
        })
    }
}

/// A message's JSON object, read field by field under each field's [`ALIASES`].
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    /// The first alias holding a non-blank string or a number: the alias and the text,
    /// trimmed (the original pipeline sends some ids as numbers).
    fn text(&self, field: Field) -> Option<(&'static str, String)> {
        field.aliases().iter().find_map(|k| match self.0.get(*k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some((*k, s.trim().to_owned())),
            Some(Value::Number(n)) => Some((*k, n.to_string())),
            _ => None,
        })
    }

    /// The value of the first alias present, whatever it holds.
    fn value(&self, field: Field) -> Option<&Value> {
        field.aliases().iter().find_map(|k| self.0.get(*k))
    }

    /// The processor, by its (normalised) name, or else by the table it wrote.
    fn processor(&self, pipeline: &Pipeline) -> Result<ProcessorName, Rejection> {
        let (proc_key, raw_name) = self
            .text(Field::Processor)
            .ok_or_else(|| Rejection("missing field `processor` (or `processor_name`)".into()))?;
        let normalised = normalise_processor_name(&raw_name);
        if let Some(p) = pipeline.processor(&normalised) {
            return Ok(p.name.clone());
        }
        match self
            .text(Field::OutputTable)
            .and_then(|(_, t)| pipeline.processor_for_table(&t).map(|p| p.name.clone()))
        {
            Some(p) => Ok(p),
            None => Err(Rejection(format!(
                "unknown processor `{raw_name}` in field `{proc_key}` (normalised to `{normalised}`)"
            ))),
        }
    }

    fn partition(&self) -> Result<Partition, Rejection> {
        let (date_key, date_text) = self
            .text(Field::Date)
            .ok_or_else(|| Rejection("missing field `date` (or `game_date`)".into()))?;
        Partition::parse(&date_text).map_err(|e| Rejection(format!("field `{date_key}`: {e}")))
    }

    fn status(&self) -> Result<CompletionStatus, Rejection> {
        let (status_key, status_text) = self
            .text(Field::Status)
            .ok_or_else(|| Rejection("missing field `status`".into()))?;
        CompletionStatus::parse(&status_text).ok_or_else(|| {
            Rejection(format!("field `{status_key}`: unknown status `{status_text}` (expected success, partial, no_data or failed)"))
        })
    }

    /// Rows written; absent or null is 0 (the original pipeline omits it on failure).
    fn record_count(&self) -> Result<u64, Rejection> {
        match self.value(Field::RecordCount) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v.as_u64().ok_or_else(|| {
                Rejection(format!(
                    "field `record_count`: `{v}` is not a non-negative integer"
                ))
            }),
        }
    }

    fn produced_at(&self) -> Result<Timestamp, Rejection> {
        let (ts_key, ts_text) = self
            .text(Field::ProducedAt)
            .ok_or_else(|| Rejection("missing field `produced_at` (or `timestamp`)".into()))?;
        parse_timestamp(&ts_text)
            .ok_or_else(|| Rejection(format!("field `{ts_key}`: `{ts_text}` is not a timestamp")))
    }

    /// The gate, when named: it must be one the pipeline has.
    fn gate(&self, pipeline: &Pipeline) -> Result<Option<GateId>, Rejection> {
        match self.text(Field::Gate) {
            Some((_, g)) => {
                if pipeline.gate(&g).is_none() {
                    return Err(Rejection(format!("field `gate`: unknown gate `{g}`")));
                }
                Ok(Some(GateId::new(g)))
            }
            None => Ok(None),
        }
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

    /// A message in baton's own form, with `field`'s value under `alias` instead.
    fn with_alias(field: Field, alias: &str) -> CompletionMessage {
        let mut v = json!({
            "processor": "player_game_summary",
            "date": "2024-03-01",
            "run_id": "r1",
            "status": "success",
            "produced_at": "2024-03-01T10:00:00Z",
        });
        let Value::Object(obj) = &mut v else {
            unreachable!()
        };
        for name in field.aliases() {
            obj.remove(*name);
        }
        let value = match field {
            // An unfamiliar name, so that only the table names the processor.
            Field::OutputTable => {
                obj.insert("processor".into(), json!("PGSv2"));
                json!("player_game_summary")
            }
            Field::Processor => json!("PlayerGameSummaryProcessor"),
            Field::Date => json!("2024-03-02"),
            Field::RunId => json!("r-alias"),
            Field::Status => json!("partial"),
            Field::RecordCount => json!(7),
            Field::ProducedAt => json!("2024-03-01T11:00:00"),
            Field::Gate => json!("phase3_to_phase4"),
            Field::MessageId => json!("m-alias"),
            Field::ForceReprocess => json!(true),
            Field::Digest => json!("d-alias"),
        };
        obj.insert(alias.into(), value);
        CompletionMessage::parse(&serde_json::to_vec(&v).unwrap(), &pipeline())
            .unwrap_or_else(|e| panic!("{field:?} under `{alias}`: {e}"))
    }

    #[test]
    fn every_alias_is_read() {
        for (field, aliases) in ALIASES {
            assert_eq!(field.aliases(), *aliases);
            for alias in *aliases {
                let m = with_alias(*field, alias);
                let seen = format!("{field:?} under `{alias}`: {m:?}");
                match field {
                    Field::Processor | Field::OutputTable => {
                        assert_eq!(m.processor.as_str(), "player_game_summary", "{seen}")
                    }
                    Field::Date => assert_eq!(m.partition.to_string(), "2024-03-02", "{seen}"),
                    Field::RunId => assert_eq!(m.run_id.as_str(), "r-alias", "{seen}"),
                    Field::Status => assert_eq!(m.status, CompletionStatus::Partial, "{seen}"),
                    Field::RecordCount => assert_eq!(m.record_count, 7, "{seen}"),
                    Field::ProducedAt => assert_eq!(
                        m.produced_at,
                        "2024-03-01T11:00:00Z".parse::<Timestamp>().unwrap(),
                        "{seen}"
                    ),
                    Field::Gate => assert!(m.gate.is_some(), "{seen}"),
                    Field::MessageId => assert_eq!(m.message_id, "m-alias", "{seen}"),
                    Field::ForceReprocess => assert!(m.force_reprocess, "{seen}"),
                    Field::Digest => assert_eq!(m.digest.as_deref(), Some("d-alias"), "{seen}"),
                }
            }
        }
    }

    #[test]
    fn the_alias_table_has_every_field_once_and_both_lists_of_names() {
        let fields = [
            Field::Processor,
            Field::OutputTable,
            Field::Date,
            Field::RunId,
            Field::Status,
            Field::RecordCount,
            Field::ProducedAt,
            Field::Gate,
            Field::MessageId,
            Field::ForceReprocess,
            Field::Digest,
        ];
        for f in fields {
            assert_eq!(ALIASES.iter().filter(|(g, _)| *g == f).count(), 1, "{f:?}");
        }
        assert_eq!(ALIASES.len(), fields.len());
        // The parser's names and serve's log names, in one list (the union).
        for name in ["date", "game_date", "analysis_date", "partition"] {
            assert!(Field::Date.aliases().contains(&name), "{name}");
        }
        assert_eq!(Field::Processor.aliases(), ["processor", "processor_name"]);
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
            digest: None,
        };
        let bytes = serde_json::to_vec(&m.to_json()).unwrap();
        assert_eq!(CompletionMessage::parse(&bytes, &p).unwrap(), m);
    }
}
