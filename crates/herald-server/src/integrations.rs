//! Integration routes (SPEC §7): the webhook `POST|GET /integrations/{name}/webhook` a platform
//! calls, and the request log with replay under `/api/v1/integrations/{name}/requests`.
//!
//! The webhook reads the body within the integration's own limit (some platforms send more than
//! the server's `body_limit`), checks its per-integration rate, and hands the request to the
//! engine, which verifies, maps and records it. The answer tells the platform what happened:
//! 200 `accepted` or `duplicate` with the event id, 202 `ignored` or `unrouted`, 401 for a
//! request that fails verification, 422 with the schema errors for an invalid payload, 400 for
//! a body that cannot be read, 503 when storage is unavailable (so the platform retries).

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::{Quota, RateLimiter, clock::Clock};
use herald_core::integration::{IntegrationDef, Scheme};
use herald_engine::ingest::{Admit, Gate, Incoming, Ingested, Open};
use herald_ingest::handshake::Answer;
use herald_store::{IngestFilter, IngestRecord, IngestStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Caller, caller};
use crate::error::{ApiError, ApiQuery, content_type, is_json};

type Direct = governor::DefaultDirectRateLimiter;

/// Rejected requests logged per second and integration (and the burst): enough to see what
/// goes wrong, too few for an anonymous sender to fill the disk. Past it they are answered the
/// same and counted in `herald_ingest_unlogged_total`.
const LOGGED_REJECTIONS: (u32, u32) = (10, 50);

/// Per integration: the rate of verified requests (`limits`, the platform's quota, `None`
/// without a limit) and the rate at which rejected ones are logged.
#[derive(Default)]
pub struct IngestLimiters(HashMap<String, (Option<Direct>, Direct)>);

impl IngestLimiters {
    pub fn new(project: &herald_core::Project) -> Self {
        let mut map = HashMap::new();
        let per_second = |rate: u32, burst: u32| {
            let rate = NonZeroU32::new(rate)?;
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            Some(RateLimiter::direct(
                Quota::per_second(rate).allow_burst(burst),
            ))
        };
        for (name, def) in &project.integrations {
            let (r, b) = LOGGED_REJECTIONS;
            if let Some(rejections) = per_second(r, b) {
                let verified = per_second(def.limits.rate, def.limits.burst);
                map.insert(name.clone(), (verified, rejections));
            }
        }
        Self(map)
    }
}

/// The gate of one request to integration `name`.
struct Limits<'a>(Option<&'a (Option<Direct>, Direct)>);

impl Gate for Limits<'_> {
    fn admit(&self, verified: bool) -> Admit {
        let Some((quota, rejections)) = self.0 else {
            return Admit::Go;
        };
        if !verified {
            if rejections.check().is_ok() {
                return Admit::Go;
            }
            metrics::counter!("herald_ingest_unlogged_total").increment(1);
            return Admit::Unlogged;
        }
        match quota.as_ref().map(|q| q.check()) {
            Some(Err(until)) => {
                Admit::Wait(until.wait_time_from(governor::clock::DefaultClock::default().now()))
            }
            _ => Admit::Go,
        }
    }
}

fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!("no integration `{name}`"))
}

fn integration(st: &AppState, name: &str) -> Result<Arc<IntegrationDef>, ApiError> {
    st.engine
        .shared()
        .project
        .integrations
        .get(name)
        .cloned()
        .ok_or_else(|| unknown(name))
}

/// `POST|GET /integrations/{name}/webhook`.
pub async fn webhook(
    State(st): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let def = integration(&st, &name)?;
    let mut resp = match receive(&st, &def, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // Slack retries whatever is not a 2xx; a permanent refusal tells it not to.
    let status = resp.status();
    if def.verify.scheme == Scheme::Slack
        && status.is_client_error()
        && status != StatusCode::TOO_MANY_REQUESTS
    {
        resp.headers_mut()
            .insert("x-slack-no-retry", HeaderValue::from_static("1"));
    }
    Ok(resp)
}

/// Reads the request within the integration's limits and runs it through the engine.
async fn receive(st: &AppState, def: &IntegrationDef, req: Request) -> Result<Response, ApiError> {
    let limit = def.limits.body_bytes.unwrap_or(st.body_limit);
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than {limit} bytes (`limits.body` of integration `{}`)",
                def.name
            ),
        )
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let has_body =
        declared.is_some_and(|n| n > 0) || parts.headers.contains_key(header::TRANSFER_ENCODING);
    if has_body
        && !is_json(&parts.headers)
        && content_type(&parts.headers).as_deref() != Some("application/x-www-form-urlencoded")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send JSON (application/json) or a form (application/x-www-form-urlencoded)",
        ));
    }
    let body = tokio::time::timeout(st.body_timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            )
        })?
        .map_err(|e| {
            // Past the limit is 413; a body that breaks off or is badly framed is the sender's
            // mistake too, but not a size problem.
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.into_inner().is::<http_body_util::LengthLimitError>();
            if over {
                too_large()
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the request body could not be read (it broke off or is badly framed)",
                )
            }
        })?;
    let mut headers = BTreeMap::new();
    for (k, v) in &parts.headers {
        if let Ok(v) = v.to_str() {
            headers
                .entry(k.as_str().to_ascii_lowercase())
                .or_insert_with(|| v.to_owned());
        }
    }
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let incoming = Incoming {
        method: parts.method.as_str().to_owned(),
        path,
        headers,
        query,
        body: body.to_vec(),
        received_at: st.engine.shared().clock.now(),
        replay_of: None,
    };
    let gate = Limits(st.ingest_limiters.0.get(&def.name));
    let done = st.engine.ingest(def, incoming, &gate).await?;
    Ok(answer(&def.name, done))
}

/// The answer to an ingested request.
fn answer(name: &str, done: Ingested) -> Response {
    if let Some(a) = done.answer {
        return match a {
            Answer::Json(v) => (StatusCode::OK, axum::Json(v)).into_response(),
            Answer::Text(t) => (StatusCode::OK, t).into_response(),
        };
    }
    let Some(o) = &done.outcome else {
        // Not recorded: over the rate, or a rejection past the rate of logged ones.
        let mut e = match done.retry_after {
            Some(wait) => {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many requests to integration `{name}`; retry later"),
                );
                e.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
                e
            }
            None => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "verification_failed",
                done.message.clone().unwrap_or_default(),
            ),
        };
        if done.retry_after.is_none() {
            e.details = Some(json!({"reason": done.reason, "requestId": null}));
        }
        return e.into_response();
    };
    let message = done.message.clone().unwrap_or_default();
    let first = o.event_ids.first().cloned();
    let ok = |status: StatusCode, body: Value| (status, axum::Json(body)).into_response();
    let refuse = |status: StatusCode, code: &'static str, details: Value| {
        let mut e = ApiError::new(status, code, message.clone());
        e.details = Some(details);
        e.into_response()
    };
    match o.status {
        IngestStatus::Accepted => ok(
            StatusCode::OK,
            json!({"status": "accepted", "eventId": first, "eventIds": o.event_ids, "requestId": o.request_id}),
        ),
        IngestStatus::Duplicate => ok(
            StatusCode::OK,
            json!({"status": "duplicate", "eventId": first, "requestId": o.request_id}),
        ),
        IngestStatus::Ignored => ok(
            StatusCode::ACCEPTED,
            json!({"status": "ignored", "requestId": o.request_id}),
        ),
        IngestStatus::Unrouted => ok(
            StatusCode::ACCEPTED,
            json!({"status": "unrouted", "requestId": o.request_id}),
        ),
        IngestStatus::Invalid => refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_payload",
            json!({"errors": done.errors, "requestId": o.request_id}),
        ),
        IngestStatus::HandlerError => refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "handler_error",
            json!({"requestId": o.request_id}),
        ),
        // A body that cannot be read is the sender's mistake (400); anything else failed
        // verification (401).
        IngestStatus::Rejected if done.reason.as_deref() == Some("malformed_body") => refuse(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            json!({"requestId": o.request_id}),
        ),
        IngestStatus::Rejected => refuse(
            StatusCode::UNAUTHORIZED,
            "verification_failed",
            json!({"reason": done.reason, "requestId": o.request_id}),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestsQuery {
    status: Option<String>,
    limit: Option<usize>,
    before: Option<i64>,
}

fn admin(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match caller(st, headers)? {
        Caller::Admin => Ok(()),
        Caller::Bot(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the integration log needs the admin token",
        )),
    }
}

fn record_json(r: &IngestRecord) -> Value {
    let mut v = json!({
        "id": r.id,
        "integration": r.integration,
        "status": r.status.as_str(),
        "reason": r.reason,
        "detail": r.detail,
        "deliveryId": r.delivery_id,
        "eventIds": r.event_ids,
        "method": r.method,
        "path": r.path,
        "headers": r.headers,
        "receivedAt": r.received_at.to_string(),
        "replayOf": r.replay_of,
    });
    if let Some(body) = &r.body {
        v["body"] = match std::str::from_utf8(body) {
            Ok(text) => Value::String(text.to_owned()),
            Err(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
        };
    }
    v
}

/// `GET /api/v1/integrations/{name}/requests?status=&limit=&before=`.
pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<RequestsQuery>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    integration(&st, &name)?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(IngestStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_field(
                "status",
                "status must be accepted, duplicate, ignored, invalid, rejected, handler_error or unrouted",
            )
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "limit must be 1–1000"));
    }
    let filter = IngestFilter {
        status,
        before_id: q.before,
        limit,
    };
    let rows = st
        .engine
        .shared()
        .store
        .list_ingest_requests(&name, &filter)
        .await?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(axum::Json(json!({
        "requests": rows.iter().map(record_json).collect::<Vec<_>>(),
        "nextBefore": next,
    }))
    .into_response())
}

/// `GET /api/v1/integrations/{name}/requests/{id}`: one request, with its body.
pub async fn show(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    integration(&st, &name)?;
    let r = st
        .engine
        .shared()
        .store
        .get_ingest_request(&name, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no request {id} of integration `{name}`")))?;
    Ok(axum::Json(record_json(&r)).into_response())
}

/// `POST /api/v1/integrations/{name}/requests/{id}/replay`: runs the integration's current
/// mapping on a recorded request, as a new request (idempotent by delivery id).
pub async fn replay(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let def = integration(&st, &name)?;
    let r = st
        .engine
        .shared()
        .store
        .get_ingest_request(&name, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no request {id} of integration `{name}`")))?;
    if r.status == IngestStatus::Rejected {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_replayable",
            "a rejected request was never verified, and its signature is not kept: it cannot be replayed",
        ));
    }
    let headers: BTreeMap<String, String> = r
        .headers
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let query: Vec<(String, String)> = r
        .path
        .split_once('?')
        .map(|(_, q)| serde_urlencoded::from_str(q).unwrap_or_default())
        .unwrap_or_default();
    let incoming = Incoming {
        method: r.method.clone(),
        path: r.path.clone(),
        headers,
        query,
        body: r.body.clone().unwrap_or_default(),
        received_at: st.engine.shared().clock.now(),
        replay_of: Some(r.id),
    };
    let done = st.engine.ingest(&def, incoming, &Open).await?;
    Ok(answer(&def.name, done))
}
