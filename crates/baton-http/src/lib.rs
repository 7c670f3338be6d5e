//! baton-http: what `baton serve` answers over HTTP: the JSON API (`/api/v1/...`),
//! liveness and readiness, Prometheus metrics (`/metrics`) and the dashboard (`/`).
//!
//! The ports are synchronous, so every handler that reads or writes the store runs on
//! tokio's blocking pool; the server owns its runtime on its own thread, so the rest of
//! `serve` stays synchronous. Verdicts come from the same functions `baton status`,
//! `health` and `reconcile` use (`baton_serve::status`, `baton_serve::checks`), so the API
//! and the CLI never disagree.
//!
//! Invariant: a mutating endpoint (every `POST`) changes nothing unless the request carries
//! the configured bearer token; with no token configured, every `POST` answers 401. The
//! token is checked first, by a layer over every route (`guard_posts`), before any path,
//! query or body is read: an unauthenticated request learns nothing about its parameters.
//! Every refused `POST` is logged (method, path, status, reason; never the token).
#![deny(missing_docs)]

pub mod dashboard;
pub mod letters;
pub mod metrics;
pub mod pages;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use baton_core::clock::Clock;
use baton_core::completion;
use baton_core::config::Pipeline;
use baton_core::gate::Gate;
use baton_core::model::Partition;
use baton_ports::{Bus, StateStore, Warehouse};
use jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub use metrics::Metrics;

/// The OpenAPI document of this API, kept in the repository (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// The most dates the dashboard renders at once.
pub const DASHBOARD_DATES_MAX: usize = 366;

/// What the handlers share.
pub struct Api {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The state store.
    pub store: Arc<dyn StateStore>,
    /// The warehouse.
    pub warehouse: Arc<dyn Warehouse>,
    /// The bus.
    pub bus: Arc<dyn Bus>,
    /// The clock verdicts are judged by.
    pub clock: Arc<dyn Clock>,
    /// The bearer token mutating endpoints require; `None` disables them.
    pub token: Option<String>,
    /// The service's metrics.
    pub metrics: Arc<Metrics>,
}

/// An API failure, answered as JSON with its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter was missing or malformed.
    #[error("{field}: {message}")]
    BadRequest {
        /// The parameter.
        field: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A readable request the endpoint declines (a landing notice whose status says the
    /// job failed): 422, naming the field.
    #[error("{field}: {message}")]
    Unprocessable {
        /// The field.
        field: &'static str,
        /// Why it is declined.
        message: String,
    },
    /// No or a wrong bearer token on a mutating endpoint.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Nothing there.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the stored state (a dead letter already settled).
    #[error("{0}")]
    Conflict(String),
    /// A backend failed.
    #[error(transparent)]
    Backend(#[from] baton_ports::Error),
    /// A service task failed.
    #[error(transparent)]
    Serve(#[from] baton_serve::Error),
    /// The blocking task died.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, field) = match &self {
            Self::BadRequest { field, .. } => (StatusCode::BAD_REQUEST, Some(*field)),
            Self::Unprocessable { field, .. } => (StatusCode::UNPROCESSABLE_ENTITY, Some(*field)),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, None),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, None),
            Self::Conflict(_) => (StatusCode::CONFLICT, None),
            Self::Backend(e) if e.is_retryable() => (StatusCode::SERVICE_UNAVAILABLE, None),
            Self::Serve(e) if e.is_retryable() => (StatusCode::SERVICE_UNAVAILABLE, None),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let mut body = json!({ "error": self.to_string() });
        if let Some(f) = field {
            body["field"] = json!(f);
        }
        let mut response = (status, Json(body)).into_response();
        // For the log of refused POSTs (`guard_posts`).
        response.extensions_mut().insert(Refusal(self.to_string()));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

type Shared = Arc<Api>;
type ApiResult = Result<Response, ApiError>;

/// Runs `f` on the blocking pool: the ports block.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// The router of every endpoint.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(dashboard_page))
        .route("/dates/{date}", get(date_page))
        .route("/lateness", get(lateness_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/dates", get(dates))
        .route("/api/v1/dates/{date}", get(date_detail))
        .route("/api/v1/dates/{date}/trigger", post(force_trigger))
        .route("/api/v1/dates/{date}/explain", get(explain))
        .route("/api/v1/health", get(health))
        .route("/api/v1/reconcile", post(reconcile))
        .route("/api/v1/landings", post(record_landing))
        .route("/api/v1/dead-letters", get(letters::list))
        .route("/api/v1/dead-letters/{id}", get(letters::show))
        .route("/api/v1/dead-letters/{id}/replay", post(letters::replay))
        .route("/api/v1/dead-letters/{id}/retire", post(letters::retire))
        .route(
            "/api/v1/push/{topic}",
            post(letters::push).layer(axum::extract::DefaultBodyLimit::max(
                baton_core::push::ENVELOPE_MAX_BYTES,
            )),
        )
        // Last, so that it wraps every route above: a POST without the token is refused
        // before its parameters are read.
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            guard_posts,
        ))
        .with_state(api)
}

/// Why a request was refused, carried on the response for `guard_posts` to log.
#[derive(Clone)]
struct Refusal(String);

/// Every `POST`: the token is checked before the route's extractors run (so a malformed
/// unauthenticated request is 401, not 400), and a refused one is logged without the
/// token, so an operator sees probing and misconfigured clients.
async fn guard_posts(
    State(api): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let response = match authorize(&api, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    };
    let status = response.status();
    if status.is_client_error() {
        let reason = response
            .extensions()
            .get::<Refusal>()
            .map_or_else(|| status.to_string(), |r| r.0.clone());
        tracing::warn!(method = "POST", %path, status = status.as_u16(), %reason, "API request refused");
    }
    response
}

/// A running HTTP server; dropped, it stops.
pub struct Server {
    /// The address it listens on (the port is real when `:0` was asked for).
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `addr` now (so a taken port fails at start, naming it) and serves on a thread.
pub fn spawn(addr: &str, api: Api) -> std::io::Result<Server> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(Arc::new(api));
    let thread = std::thread::Builder::new()
        .name("baton-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "HTTP listener failed");
                        return;
                    }
                };
                let shutdown = async move {
                    let _ = stopped.await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(error = %e, "HTTP server stopped");
                }
            });
        })?;
    tracing::info!(addr = %bound, "HTTP API, /metrics and the dashboard are up");
    Ok(Server {
        addr: bound,
        stop: Some(stop),
        thread: Some(thread),
    })
}

fn today(api: &Api, now: Timestamp) -> Partition {
    Partition::new(now.to_zoned(api.pipeline.timezone.clone()).date())
}

fn date_param(
    params: &HashMap<String, String>,
    field: &'static str,
) -> Result<Option<Partition>, ApiError> {
    params
        .get(field)
        .map(|v| {
            Partition::parse(v).map_err(|e| ApiError::BadRequest {
                field,
                message: e.to_string(),
            })
        })
        .transpose()
}

/// `from`/`to`, or `days` (the N dates ending today in the pipeline's zone), or 7 days.
fn date_range(
    api: &Api,
    params: &HashMap<String, String>,
    now: Timestamp,
) -> Result<Vec<Partition>, ApiError> {
    let today = today(api, now);
    let from = date_param(params, "from")?;
    let to = date_param(params, "to")?;
    let days = params
        .get("days")
        .map(|v| match v.parse::<u32>() {
            Ok(n) if (1..=3660).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest {
                field: "days",
                message: format!("`{v}` is not a number of days from 1 to 3660"),
            }),
        })
        .transpose()?;
    match (from, to) {
        (Some(from), Some(to)) if from > to => Err(ApiError::BadRequest {
            field: "from",
            message: format!("{from} is after to={to}"),
        }),
        (Some(from), Some(to)) => {
            if from.through(to).len() > 3660 {
                return Err(ApiError::BadRequest {
                    field: "to",
                    message: "a range is at most 3660 dates".into(),
                });
            }
            Ok(from.through(to))
        }
        (Some(_), None) => Err(ApiError::BadRequest {
            field: "to",
            message: "`from` needs `to`".into(),
        }),
        (None, Some(_)) => Err(ApiError::BadRequest {
            field: "from",
            message: "`to` needs `from`".into(),
        }),
        (None, None) => {
            let days = days.unwrap_or(7);
            Ok(today.offset(1 - days as i32).through(today))
        }
    }
}

fn gate_param<'a>(
    api: &'a Api,
    params: &HashMap<String, String>,
) -> Result<Vec<&'a Gate>, ApiError> {
    match params.get("gate") {
        Some(g) => api
            .pipeline
            .gate(g)
            .map(|g| vec![g])
            .ok_or_else(|| ApiError::BadRequest {
                field: "gate",
                message: format!("unknown gate `{g}`"),
            }),
        None => Ok(api.pipeline.gates.iter().collect()),
    }
}

fn path_date(text: &str) -> Result<Partition, ApiError> {
    Partition::parse(text).map_err(|e| ApiError::BadRequest {
        field: "date",
        message: e.to_string(),
    })
}

/// Checks the bearer token in constant time (for equal lengths).
fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = api.token.as_deref() else {
        return Err(ApiError::Unauthorized(
            "mutating endpoints are disabled: no API token is configured (BATON_API_TOKEN or api.token_file)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("a valid bearer token is required"))
    }
}

async fn readyz(State(api): State<Shared>) -> Response {
    let checked = blocking(move || {
        api.store.backlog()?;
        if let Some(gate) = api.pipeline.gates.first() {
            api.bus
                .pending(&gate.completion_topic, baton_serve::ORCHESTRATOR_GROUP)?;
        }
        Ok(())
    })
    .await;
    match checked {
        Ok(()) => (StatusCode::OK, Json(json!({"ready": true}))).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics_page(State(api): State<Shared>) -> ApiResult {
    let text = blocking(move || Ok(api.metrics.render(&api)?)).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn dashboard_page(
    State(api): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let html = blocking(move || {
        let now = api.clock.now();
        let days = page_dates(&api, &params, now)?;
        Ok(dashboard::render(&api, &days, now)?)
    })
    .await?;
    Ok(Html(html).into_response())
}

/// The dates an HTML page shows: the range asked for (`from`, `to`, `days`), or the last
/// 14 dates, at most [`DASHBOARD_DATES_MAX`]: a page renders a row per date, and a decade
/// took 16 s (found by schemathesis).
fn page_dates(
    api: &Api,
    params: &HashMap<String, String>,
    now: Timestamp,
) -> Result<Vec<Partition>, ApiError> {
    let ranged = ["from", "to", "days"]
        .iter()
        .any(|k| params.contains_key(*k));
    let dates = match ranged {
        true => date_range(api, params, now)?,
        false => {
            let today = today(api, now);
            today.offset(-13).through(today)
        }
    };
    if dates.len() > DASHBOARD_DATES_MAX {
        return Err(ApiError::BadRequest {
            field: if params.contains_key("days") {
                "days"
            } else {
                "from"
            },
            message: format!(
                "a page shows at most {DASHBOARD_DATES_MAX} dates; use /api/v1/dates for more"
            ),
        });
    }
    Ok(dates)
}

async fn dates(
    State(api): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let body = blocking(move || {
        let now = api.clock.now();
        let dates = date_range(&api, &params, now)?;
        let verdicts = baton_serve::status::verdicts(
            &api.pipeline,
            api.store.as_ref(),
            api.warehouse.as_ref(),
            &dates,
            now,
        )?;
        let mut out = Vec::new();
        for (gate, verdict) in verdicts {
            let document = api.pipeline.gate(&gate).map(|g| api.store.document(&g.id, verdict.date)).transpose()?.flatten();
            out.push(json!({"gate": gate, "date": verdict.date.to_string(), "exact": verdict.problems.is_empty(), "verdict": verdict, "document": document}));
        }
        Ok(Value::Array(out))
    })
    .await?;
    Ok(Json(body).into_response())
}

async fn date_detail(State(api): State<Shared>, Path(date): Path<String>) -> ApiResult {
    let date = path_date(&date)?;
    let body = blocking(move || {
        let mut documents = Vec::new();
        for gate in &api.pipeline.gates {
            documents.push(json!({"gate": gate.id.to_string(), "document": api.store.document(&gate.id, date)?}));
        }
        let runs = api.store.runs(date)?;
        let leases: Vec<_> = api.store.leases()?.into_iter().filter(|l| l.partition == date).collect();
        let owed: Vec<_> = api.store.pending_requests()?.into_iter().filter(|r| r.partition == date).collect();
        let landings = baton_serve::status::landings(&api.pipeline, api.store.as_ref(), date)?;
        Ok(json!({"date": date.to_string(), "documents": documents, "runs": runs, "leases": leases, "owed_runs": owed, "landings": landings}))
    })
    .await?;
    Ok(Json(body).into_response())
}

/// The dashboard's page of one date: `baton_serve::explain` rendered.
async fn date_page(
    State(api): State<Shared>,
    Path(date): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let date = path_date(&date)?;
    let html = blocking(move || {
        let gates = gate_param(&api, &params)?;
        let e = baton_serve::explain::explain(
            &api.pipeline,
            api.store.as_ref(),
            api.warehouse.as_ref(),
            &gates,
            date,
            api.clock.now(),
        )?;
        Ok(pages::date_page(&api, &e))
    })
    .await?;
    Ok(Html(html).into_response())
}

/// The lateness view: each upstream job's expected and actual landings over a range
/// (default the last 14 dates).
async fn lateness_page(
    State(api): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let html = blocking(move || {
        let now = api.clock.now();
        let dates = page_dates(&api, &params, now)?;
        let verdicts =
            baton_serve::status::lateness(&api.pipeline, api.store.as_ref(), &dates, now)?;
        Ok(pages::lateness_page(&api, &dates, &verdicts))
    })
    .await?;
    Ok(Html(html).into_response())
}

/// Why a date stands where it does, with its timeline (`baton_serve::explain`, the same
/// function `baton explain` and the date page call).
async fn explain(
    State(api): State<Shared>,
    Path(date): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let date = path_date(&date)?;
    let body = blocking(move || {
        let gates = gate_param(&api, &params)?;
        Ok(baton_serve::explain::explain(
            &api.pipeline,
            api.store.as_ref(),
            api.warehouse.as_ref(),
            &gates,
            date,
            api.clock.now(),
        )?)
    })
    .await?;
    Ok(Json(body).into_response())
}

async fn health(
    State(api): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let report = blocking(move || {
        let now = api.clock.now();
        let dates = date_range(&api, &params, now)?;
        Ok(baton_serve::checks::health(
            &api.pipeline,
            api.store.as_ref(),
            api.warehouse.as_ref(),
            api.bus.as_ref(),
            &dates,
            now,
        )?)
    })
    .await?;
    Ok(Json(report).into_response())
}

async fn reconcile(
    State(api): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    authorize(&api, &headers)?;
    let fix = match params.get("fix").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::BadRequest {
                field: "fix",
                message: format!("`{other}` is not true or false"),
            });
        }
    };
    let body = blocking(move || {
        let now = api.clock.now();
        let dates = date_range(&api, &params, now)?;
        let gates = gate_param(&api, &params)?;
        let mut mismatched = Vec::new();
        let mut remaining = 0;
        for gate in gates {
            let mode = if fix {
                baton_serve::checks::Mode::Fix { by: "api" }
            } else {
                baton_serve::checks::Mode::Report
            };
            // Each date's repair is recorded as it is made.
            let reconciled = baton_serve::checks::reconcile_dates(
                &api.pipeline,
                api.store.as_ref(),
                api.warehouse.as_ref(),
                gate,
                &dates,
                now,
                mode,
            )?;
            for r in reconciled {
                let d = r.before.date;
                remaining += r.after.findings.len();
                if !r.before.findings.is_empty() {
                    mismatched.push(json!({"gate": r.gate, "date": d.to_string(), "stored": r.before.stored, "stored_count": r.before.stored_count, "triggered": r.before.triggered, "actual": r.before.actual, "expected": r.before.expected, "findings": r.before.findings, "changes": r.changes, "remaining": r.after.findings}));
                }
            }
        }
        if fix {
            tracing::warn!(dates = mismatched.len(), "reconcile --fix through the API");
        }
        Ok(json!({"dates_checked": dates.len(), "fix": fix, "mismatched_dates": mismatched, "remaining_findings": remaining}))
    })
    .await?;
    Ok(Json(body).into_response())
}

async fn force_trigger(
    State(api): State<Shared>,
    headers: HeaderMap,
    Path(date): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    authorize(&api, &headers)?;
    let date = path_date(&date)?;
    let body = blocking(move || {
        let gates = gate_param(&api, &params)?;
        let [gate] = gates.as_slice() else {
            return Err(ApiError::BadRequest {
                field: "gate",
                message: "this pipeline has several gates: name one".into(),
            });
        };
        let now = api.clock.now();
        let reason = params
            .get("reason")
            .cloned()
            .unwrap_or_else(|| "forced through the API".into());
        let written = api.store.edit_document(&gate.id, date, &mut |stored| {
            let mut doc = stored?;
            let trigger = completion::force_trigger(&mut doc, gate, now, &reason);
            Some((doc, vec![trigger]))
        })?;
        let doc = written.ok_or_else(|| {
            ApiError::NotFound(format!("no completion document for gate `{}` on {date}", gate.id))
        })?;
        tracing::warn!(gate = %gate.id, date = %date, generation = doc.generation, "forced re-trigger through the API");
        Ok(json!({"gate": gate.id.to_string(), "date": date.to_string(), "generation": doc.generation, "document": doc}))
    })
    .await?;
    Ok(Json(body).into_response())
}

/// `POST /api/v1/landings`: an upstream job's batch landed (baton's
/// `{"job","date","landed_at"}` or the original Phase 2 completion), recorded with run
/// requests for its readers, which `serve` runs. Authorized before the body is read, so
/// without the token nothing is parsed or changed.
async fn record_landing(
    State(api): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    use baton_core::landing::{self, NoticeError};
    authorize(&api, &headers)?;
    let notice = landing::parse(&body, &api.pipeline, api.clock.now()).map_err(|e| match e {
        NoticeError::NotLanded(_) => ApiError::Unprocessable {
            field: e.field(),
            message: e.to_string(),
        },
        NoticeError::Malformed { field, reason } | NoticeError::Unknown { field, reason } => {
            ApiError::BadRequest {
                field,
                message: reason,
            }
        }
    })?;
    let body = blocking(move || {
        let recorded = baton_serve::landings::record(
            Arc::new(api.pipeline.clone()),
            api.store.clone(),
            api.warehouse.clone(),
            api.clock.clone(),
            &notice,
        )?;
        tracing::info!(job = %notice.job, date = %notice.partition, batch = recorded.batch, landed_at = %notice.landed_at, "landing recorded through the API");
        Ok(json!({
            "job": notice.job,
            "date": notice.partition.to_string(),
            "landed_at": notice.landed_at.to_string(),
            "batch": recorded.batch,
            "requested": recorded.requested,
        }))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_down_under_a_service_task_answers_503_and_a_declined_notice_422() {
        let down = ApiError::Serve(baton_serve::Error::Backend(baton_ports::Error::Retryable(
            "connection refused".into(),
        )));
        assert_eq!(
            down.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let broken = ApiError::Serve(baton_serve::Error::Backend(baton_ports::Error::Permanent(
            "schema".into(),
        )));
        assert_eq!(
            broken.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let declined = ApiError::Unprocessable {
            field: "status",
            message: "failed".into(),
        };
        assert_eq!(
            declined.into_response().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
