//! The dead-letter endpoints (`/api/v1/dead-letters...`: reads open, replay and retire need
//! the token) and the Pub/Sub push endpoint (`POST /api/v1/push/{topic}`, token), so a push
//! subscription can point at `serve`. The logic is `baton_serve::dead_letters` and
//! `baton_core::push`, shared with the CLI.

use crate::{ApiError, ApiResult, Shared, authorize, blocking, date_param};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use baton_core::dead_letter::{LetterState, Refusal};
use baton_serve::dead_letters::{self, Filter, View};
use serde_json::json;
use std::collections::HashMap;

impl From<dead_letters::Error> for ApiError {
    fn from(e: dead_letters::Error) -> Self {
        match e {
            dead_letters::Error::NotFound(_) => ApiError::NotFound(e.to_string()),
            dead_letters::Error::Refused {
                refusal: Refusal::NoReason,
                ..
            } => ApiError::BadRequest {
                field: "reason",
                message: e.to_string(),
            },
            dead_letters::Error::Backend(b) => ApiError::Backend(b),
            other => ApiError::Conflict(other.to_string()),
        }
    }
}

fn letter_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().map_err(|_| ApiError::BadRequest {
        field: "id",
        message: format!(
            "`{}` is not a dead letter id",
            baton_core::dead_letter::clip(text, 64)
        ),
    })
}

fn filter(params: &HashMap<String, String>) -> Result<Filter, ApiError> {
    let state = match params.get("state").map(String::as_str) {
        None | Some("open") => Some(LetterState::Open),
        Some("all") => None,
        Some(s) => Some(LetterState::parse(s).ok_or_else(|| ApiError::BadRequest {
            field: "state",
            message: "expected open, replayed, retired or all".into(),
        })?),
    };
    let since = params
        .get("since")
        .map(|s| {
            s.parse::<jiff::Timestamp>()
                .map_err(|e| ApiError::BadRequest {
                    field: "since",
                    message: format!("not an RFC 3339 time: {e}"),
                })
        })
        .transpose()?;
    let undated = match params.get("undated").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::BadRequest {
                field: "undated",
                message: "expected true or false".into(),
            });
        }
    };
    Ok(Filter {
        state,
        topic: params.get("topic").cloned(),
        since,
        date: date_param(params, "date")?,
        undated,
    })
}

/// `GET /api/v1/dead-letters`: counts by state and the letters the filter admits.
pub async fn list(
    State(api): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let filter = filter(&params)?;
    let body = blocking(move || {
        let all = api.store.dead_letters()?;
        let letters: Vec<View> = all
            .iter()
            .filter(|l| filter.admits(l))
            .map(View::of)
            .collect();
        Ok(json!({"counts": dead_letters::counts(&all), "letters": letters}))
    })
    .await?;
    Ok(Json(body).into_response())
}

/// `GET /api/v1/dead-letters/{id}`.
pub async fn show(State(api): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let id = letter_id(&id)?;
    let view = blocking(move || {
        let letter = api
            .store
            .dead_letter_by_id(id)?
            .ok_or(dead_letters::Error::NotFound(id))?;
        Ok(View::of(&letter))
    })
    .await?;
    Ok(Json(view).into_response())
}

/// `POST /api/v1/dead-letters/{id}/replay` (token).
pub async fn replay(
    State(api): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    authorize(&api, &headers)?;
    let id = letter_id(&id)?;
    let replay = blocking(move || {
        Ok(dead_letters::replay(
            &api.pipeline,
            api.store.as_ref(),
            api.bus.as_ref(),
            id,
        )?)
    })
    .await?;
    Ok(Json(replay).into_response())
}

/// `POST /api/v1/dead-letters/{id}/retire?reason=...` (token).
pub async fn retire(
    State(api): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    authorize(&api, &headers)?;
    let id = letter_id(&id)?;
    let reason = params.get("reason").cloned().unwrap_or_default();
    let view = blocking(move || Ok(dead_letters::retire(api.store.as_ref(), id, &reason)?)).await?;
    Ok(Json(view).into_response())
}

/// `POST /api/v1/push/{topic}` (token): a Pub/Sub push envelope; its decoded data is
/// published on `topic` (a completion topic, or the raw landings topic) for the consumer,
/// which dead-letters it if it is not a valid message. A broken envelope is a 400 naming
/// the field; nothing is published.
pub async fn push(
    State(api): State<Shared>,
    headers: HeaderMap,
    Path(topic): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    authorize(&api, &headers)?;
    let known = api
        .pipeline
        .gates
        .iter()
        .any(|g| g.completion_topic == topic)
        || api.pipeline.raw_landings_topic == topic;
    if !known {
        return Err(ApiError::NotFound(format!(
            "topic `{}` is not a completion or landings topic of this config",
            baton_core::dead_letter::clip(&topic, 200)
        )));
    }
    let message = baton_core::push::unwrap(&body).map_err(|e| ApiError::BadRequest {
        field: e.field,
        message: e.reason,
    })?;
    // Pub/Sub redelivers a push it did not see acknowledged: its id makes the bus drop it.
    let message_id = match &message.message_id {
        Some(id) => format!("push/{}", baton_core::dead_letter::clip(id, 200)),
        None => format!("push/{}", uuid::Uuid::now_v7()),
    };
    let out = blocking(move || {
        let published = api.bus.publish(&topic, &message_id, &message.data)?;
        tracing::info!(topic, message_id, bytes = message.data.len(), "push message accepted");
        Ok(json!({"topic": topic, "message_id": message_id, "published": published == baton_ports::Published::New}))
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(out)).into_response())
}
