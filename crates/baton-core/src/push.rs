//! The Pub/Sub push envelope the original pipeline's push subscriptions POST:
//! `{"message":{"data":"<base64>","attributes":{...},"messageId":"..."},"subscription":"..."}`.
//! [`unwrap`] takes the message out (its data decoded, byte for byte) or says which field is
//! wrong, so `publish completion` and `POST /api/v1/push/{topic}` accept what a push
//! subscription sends.

use base64::Engine as _;
use std::collections::BTreeMap;

/// The longest envelope read (a message's data is at most 10 MB on Pub/Sub; base64 and the
/// envelope add a third).
pub const ENVELOPE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// A message taken out of its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    /// `message.data`, decoded.
    pub data: Vec<u8>,
    /// `message.attributes` (string values).
    pub attributes: BTreeMap<String, String>,
    /// `message.messageId` (or `message_id`), when given.
    pub message_id: Option<String>,
    /// `subscription`, when given.
    pub subscription: Option<String>,
}

/// Why an envelope was refused: the field (a JSON path) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EnvelopeError {
    /// The field, as a path (`message.data`).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> EnvelopeError {
    EnvelopeError {
        field,
        reason: reason.into(),
    }
}

/// Whether `bytes` look like a push envelope (a JSON object with a `message` object), as
/// opposed to a bare completion message.
pub fn is_envelope(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("message").map(serde_json::Value::is_object))
        .unwrap_or(false)
}

/// Takes the message out of a push envelope.
pub fn unwrap(bytes: &[u8]) -> Result<PushMessage, EnvelopeError> {
    if bytes.len() > ENVELOPE_MAX_BYTES {
        return Err(refuse(
            "message",
            format!(
                "envelope of {} bytes is over the {ENVELOPE_MAX_BYTES}-byte limit",
                bytes.len()
            ),
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| refuse("message", format!("the envelope is not JSON: {e}")))?;
    let message = v
        .get("message")
        .ok_or_else(|| refuse("message", "missing"))?
        .as_object()
        .ok_or_else(|| refuse("message", "not an object"))?;
    let data = match message.get("data") {
        Some(serde_json::Value::String(text)) => decode(text)?,
        Some(_) => return Err(refuse("message.data", "not a base64 string")),
        None => return Err(refuse("message.data", "missing")),
    };
    let mut attributes = BTreeMap::new();
    match message.get("attributes") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for (k, v) in map {
                let text = v.as_str().ok_or_else(|| {
                    refuse(
                        "message.attributes",
                        format!(
                            "`{}` is not a string",
                            crate::dead_letter::clip(k, crate::dead_letter::FIELD_CAP_BYTES)
                        ),
                    )
                })?;
                attributes.insert(k.clone(), text.to_owned());
            }
        }
        Some(_) => return Err(refuse("message.attributes", "not an object")),
    }
    let message_id = match message
        .get("messageId")
        .or_else(|| message.get("message_id"))
    {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) if !id.is_empty() => Some(id.clone()),
        Some(_) => return Err(refuse("message.messageId", "not a non-empty string")),
    };
    let subscription = match v.get("subscription") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(refuse("subscription", "not a string")),
    };
    Ok(PushMessage {
        data,
        attributes,
        message_id,
        subscription,
    })
}

/// Standard base64, padded or not (Pub/Sub pads; hand-written envelopes may not).
fn decode(text: &str) -> Result<Vec<u8>, EnvelopeError> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(text.trim())
        .map_err(|e| refuse("message.data", format!("not base64: {e}")))
}

/// Standard padded base64 of `bytes` (how a dead letter's payload is shown whole).
pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_envelope_gives_its_data_attributes_and_ids() {
        let body = br#"{"message":{"data":"eyJhIjoxfQ==","attributes":{"k":"v"},"messageId":"42"},"subscription":"projects/p/subscriptions/s"}"#;
        let m = unwrap(body).unwrap();
        assert_eq!(m.data, br#"{"a":1}"#);
        assert_eq!(m.attributes.get("k").map(String::as_str), Some("v"));
        assert_eq!(m.message_id.as_deref(), Some("42"));
        assert_eq!(
            m.subscription.as_deref(),
            Some("projects/p/subscriptions/s")
        );
        assert!(is_envelope(body));
        assert!(!is_envelope(br#"{"processor":"x"}"#));
        // Unpadded base64 is read too.
        assert_eq!(
            unwrap(br#"{"message":{"data":"eyJhIjoxfQ"}}"#)
                .unwrap()
                .data,
            br#"{"a":1}"#
        );
    }

    #[test]
    fn a_bad_envelope_names_the_field() {
        let field = |body: &[u8]| unwrap(body).unwrap_err().field;
        assert_eq!(field(b"nope"), "message");
        assert_eq!(field(br#"{"subscription":"s"}"#), "message");
        assert_eq!(field(br#"{"message":"x"}"#), "message");
        assert_eq!(field(br#"{"message":{}}"#), "message.data");
        assert_eq!(field(br#"{"message":{"data":"!!!"}}"#), "message.data");
        assert_eq!(field(br#"{"message":{"data":5}}"#), "message.data");
        assert_eq!(
            field(br#"{"message":{"data":"","attributes":[1]}}"#),
            "message.attributes"
        );
        assert_eq!(
            field(br#"{"message":{"data":"","attributes":{"a":1}}}"#),
            "message.attributes"
        );
        assert_eq!(
            field(br#"{"message":{"data":"","messageId":7}}"#),
            "message.messageId"
        );
        assert_eq!(
            field(br#"{"message":{"data":""},"subscription":1}"#),
            "subscription"
        );
    }
}
