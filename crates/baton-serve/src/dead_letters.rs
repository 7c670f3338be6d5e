//! What operators do with dead letters, shared by `baton dead-letters`, the HTTP API and the
//! dashboard: list them (filtered by state, topic, time, date, undated), show one whole,
//! replay one (its original payload published back to its topic once the cause is fixed)
//! and retire one with a reason.
//!
//! Invariant: a replay publishes under a message id derived from the letter's id, so a
//! replay repeated after a crash between the publish and the settle is dropped by the bus;
//! the letter is marked replayed only after the publish succeeded.

use crate::status::dead_letter_date;
use baton_core::config::Pipeline;
use baton_core::dead_letter::{LetterState, Refusal, replay_message_id};
use baton_core::model::Partition;
use baton_ports::{Bus, DeadLetter, Published, Settled, StateStore};
use jiff::Timestamp;
use serde::Serialize;

/// Why an operator's request about a letter was not carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No letter has this id.
    #[error("no dead letter with id {0}")]
    NotFound(i64),
    /// The letter cannot move (already settled, or no retire reason).
    #[error("dead letter {id}: {refusal}")]
    Refused {
        /// The letter.
        id: i64,
        /// Why.
        refusal: Refusal,
    },
    /// The letter's topic is not one this config publishes or consumes.
    #[error(
        "dead letter {id}: topic `{topic}` is not in this config; fix the config or retire the letter"
    )]
    UnknownTopic {
        /// The letter.
        id: i64,
        /// Its topic.
        topic: String,
    },
    /// A backend failed.
    #[error(transparent)]
    Backend(#[from] baton_ports::Error),
}

/// Which letters to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only in this state (`None`: every state).
    pub state: Option<LetterState>,
    /// Only from this topic.
    pub topic: Option<String>,
    /// Only recorded at or after this.
    pub since: Option<Timestamp>,
    /// Only naming this date.
    pub date: Option<Partition>,
    /// Only letters whose payload names no date that parses.
    pub undated: bool,
}

impl Filter {
    /// Whether `letter` passes.
    pub fn admits(&self, letter: &DeadLetter) -> bool {
        let date = dead_letter_date(letter);
        self.state.is_none_or(|s| letter.state == s)
            && self
                .topic
                .as_ref()
                .is_none_or(|t| &letter.letter.topic == t)
            && self.since.is_none_or(|t| letter.recorded_at >= t)
            && self.date.is_none_or(|d| date == Some(d))
            && (!self.undated || date.is_none())
    }
}

/// The letters `filter` admits, oldest first.
pub fn list(store: &dyn StateStore, filter: &Filter) -> Result<Vec<DeadLetter>, Error> {
    Ok(store
        .dead_letters()?
        .into_iter()
        .filter(|l| filter.admits(l))
        .collect())
}

/// How many letters are in each state, and how many open ones name no date.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Open (what BATON-H006 counts).
    pub open: usize,
    /// Open and naming no date that parses (no per-date view shows them).
    pub open_undated: usize,
    /// Replayed.
    pub replayed: usize,
    /// Retired.
    pub retired: usize,
}

/// Counts `letters` by state.
pub fn counts(letters: &[DeadLetter]) -> Counts {
    let mut c = Counts::default();
    for l in letters {
        match l.state {
            LetterState::Open => {
                c.open += 1;
                c.open_undated += usize::from(dead_letter_date(l).is_none());
            }
            LetterState::Replayed => c.replayed += 1,
            LetterState::Retired => c.retired += 1,
        }
    }
    c
}

/// A letter as the CLI's `--json`, the API and the dashboard show it.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// Its id.
    pub id: i64,
    /// Its state.
    pub state: LetterState,
    /// The topic it came from (empty: rejected by the orchestrator step).
    pub topic: String,
    /// Its message id on the bus.
    pub message_id: Option<String>,
    /// The date its payload names, if one parses.
    pub date: Option<String>,
    /// Why it was dead-lettered.
    pub reason: String,
    /// When it was first recorded.
    pub recorded_at: Timestamp,
    /// When it was replayed or retired.
    pub settled_at: Option<Timestamp>,
    /// The retire reason, or where the replay went.
    pub note: Option<String>,
    /// The payload's length in bytes.
    pub payload_bytes: usize,
    /// The payload as text, when it is UTF-8.
    pub payload: Option<String>,
    /// The payload byte for byte, in standard base64.
    pub payload_base64: String,
    /// How to replay it (open letters), as a command.
    pub replay_with: Option<String>,
}

impl View {
    /// The view of `letter`.
    pub fn of(letter: &DeadLetter) -> Self {
        let payload = &letter.letter.payload;
        Self {
            id: letter.id,
            state: letter.state,
            topic: letter.letter.topic.clone(),
            message_id: letter.letter.message_id.clone(),
            date: dead_letter_date(letter).map(|d| d.to_string()),
            reason: letter.letter.reason.clone(),
            recorded_at: letter.recorded_at,
            settled_at: letter.settled_at,
            note: letter.note.clone(),
            payload_bytes: payload.len(),
            payload: String::from_utf8(payload.clone()).ok(),
            payload_base64: baton_core::push::encode(payload),
            replay_with: (letter.state == LetterState::Open)
                .then(|| format!("baton dead-letters replay {}", letter.id)),
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    /// The topic it was published to.
    pub topic: String,
    /// The message id it was published under.
    pub message_id: String,
    /// False when the bus already had this replay (a repeated replay after a crash).
    pub published: bool,
    /// The letter as stored now.
    pub letter: View,
}

/// Where a letter is replayed: its own topic, or, for a completion the orchestrator step
/// rejected (stored without a topic), the completion topic of the gate it names or its
/// processor's gate, else the first gate's.
fn replay_topic(pipeline: &Pipeline, letter: &DeadLetter) -> Result<String, Error> {
    let topic = &letter.letter.topic;
    if topic.is_empty() {
        let v: serde_json::Value =
            serde_json::from_slice(&letter.letter.payload).unwrap_or_default();
        let named = v
            .get("gate")
            .and_then(|g| g.as_str())
            .and_then(|g| pipeline.gate(g));
        let by_processor = v
            .get("processor")
            .and_then(|p| p.as_str())
            .and_then(|p| pipeline.processor(p))
            .and_then(|p| pipeline.gate_for_processor(&p.name));
        return named
            .or(by_processor)
            .or(pipeline.gates.first())
            .map(|g| g.completion_topic.clone())
            .ok_or_else(|| Error::UnknownTopic {
                id: letter.id,
                topic: String::new(),
            });
    }
    let known = pipeline
        .gates
        .iter()
        .any(|g| &g.completion_topic == topic || &g.trigger_topic == topic)
        || &pipeline.raw_landings_topic == topic;
    if known {
        Ok(topic.clone())
    } else {
        Err(Error::UnknownTopic {
            id: letter.id,
            topic: topic.clone(),
        })
    }
}

fn open_letter(store: &dyn StateStore, id: i64) -> Result<DeadLetter, Error> {
    let letter = store.dead_letter_by_id(id)?.ok_or(Error::NotFound(id))?;
    if letter.state != LetterState::Open {
        return Err(Error::Refused {
            id,
            refusal: Refusal::AlreadySettled(letter.state),
        });
    }
    Ok(letter)
}

fn settled(answer: Settled, id: i64) -> Result<DeadLetter, Error> {
    match answer {
        Settled::Done(l) => Ok(l),
        Settled::Refused(_, refusal) => Err(Error::Refused { id, refusal }),
        Settled::NotFound => Err(Error::NotFound(id)),
    }
}

/// Publishes an open letter's payload back to its topic, then marks it replayed.
pub fn replay(
    pipeline: &Pipeline,
    store: &dyn StateStore,
    bus: &dyn Bus,
    id: i64,
) -> Result<Replay, Error> {
    let letter = open_letter(store, id)?;
    let topic = replay_topic(pipeline, &letter)?;
    let message_id = replay_message_id(id, letter.letter.message_id.as_deref());
    let published = bus.publish(&topic, &message_id, &letter.letter.payload)? == Published::New;
    let note = format!("published to {topic} as {message_id}");
    let letter = settled(
        store.settle_dead_letter(id, LetterState::Replayed, &note)?,
        id,
    )?;
    tracing::warn!(id, topic, message_id, published, "dead letter replayed");
    Ok(Replay {
        topic,
        message_id,
        published,
        letter: View::of(&letter),
    })
}

/// Marks an open letter retired with `reason`.
pub fn retire(store: &dyn StateStore, id: i64, reason: &str) -> Result<View, Error> {
    open_letter(store, id)?;
    let letter = settled(
        store.settle_dead_letter(id, LetterState::Retired, reason)?,
        id,
    )?;
    tracing::warn!(id, reason = %baton_core::dead_letter::clip(reason, baton_core::dead_letter::FIELD_CAP_BYTES), "dead letter retired");
    Ok(View::of(&letter))
}
