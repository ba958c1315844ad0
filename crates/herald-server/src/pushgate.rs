//! Pushback routes: the REST API (create, list, show, revoke) and the public activation link
//! `GET|POST /push_{id}`, which answers 200 only once its event is committed.

use std::num::NonZeroU32;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::{Quota, RateLimiter, clock::Clock};
use herald_engine::pushgate::{self, PushbackError, PushbackIn};
use herald_store::{AcceptItem, AcceptOutcome, DialogKey, IdempotencyKey};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::auth::{Caller, caller};
use crate::error::{ApiError, ApiJson, ApiQuery, content_type, is_json, read_body};

pub type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// Per-link limiter; `None` when the rate is 0 (disabled).
pub fn limiter(per_second: u32, burst: u32) -> Option<Limiter> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushbackCreate {
    channel_type: String,
    bot_id: String,
    chat_id: String,
    event: String,
    #[serde(default)]
    event_data: Option<Value>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    max_uses: Option<i64>,
}

fn map_err(e: PushbackError) -> ApiError {
    match e {
        PushbackError::Invalid { field, message } => ApiError::invalid_field(field, message),
        PushbackError::Store(e) => ApiError::internal(e),
    }
}

pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PushbackCreate>,
) -> Result<Response, ApiError> {
    let who = caller(&st, &headers)?;
    if !who.may_manage(&body.bot_id) {
        return Err(ApiError::unauthorized());
    }
    let expires_at = match body.expires_at.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<Timestamp>().map_err(|e| {
            ApiError::invalid_field(
                "expiresAt",
                format!("expiresAt must be an RFC 3339 timestamp: {e}"),
            )
        })?),
    };
    let input = PushbackIn {
        dialog: DialogKey {
            channel_type: body.channel_type,
            bot_id: body.bot_id,
            chat_id: body.chat_id,
        },
        event: body.event,
        event_data: body.event_data.unwrap_or_else(|| json!({})),
        expires_at,
        max_uses: body.max_uses,
    };
    let shared = st.engine.shared();
    let p = pushgate::create(shared.store.as_ref(), &shared.project, input)
        .await
        .map_err(map_err)?;
    Ok((
        StatusCode::CREATED,
        Json(pushgate::to_json(&p, &shared.config.public_url)),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    bot_id: Option<String>,
    chat_id: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&st, &headers)?;
    let bot_id = match (&who, q.bot_id) {
        (Caller::Admin, b) => b,
        (Caller::Bot(own), None) => Some(own.clone()),
        (Caller::Bot(own), Some(b)) if &b == own => Some(b),
        _ => return Err(ApiError::unauthorized()),
    };
    let shared = st.engine.shared();
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let items = shared
        .store
        .list_pushbacks(bot_id.as_deref(), q.chat_id.as_deref(), limit)
        .await?;
    let url = &shared.config.public_url;
    Ok(Json(
        json!({"pushbacks": items.iter().map(|p| pushgate::to_json(p, url)).collect::<Vec<_>>()}),
    ))
}

async fn owned(
    st: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<herald_store::Pushback, ApiError> {
    let who = caller(st, headers)?;
    let p = st
        .engine
        .shared()
        .store
        .get_pushback(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no pushback `{id}`")))?;
    if !who.may_manage(&p.dialog.bot_id) {
        return Err(ApiError::not_found(format!("no pushback `{id}`")));
    }
    Ok(p)
}

pub async fn show(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = owned(&st, &headers, &id).await?;
    Ok(Json(pushgate::to_json(
        &p,
        &st.engine.shared().config.public_url,
    )))
}

pub async fn revoke(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    owned(&st, &headers, &id).await?;
    st.engine.shared().store.delete_pushback(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

const MAX_IDEMPOTENCY_KEY: usize = 255;

/// `GET|POST /push_{id}`.
pub async fn activate(
    State(st): State<AppState>,
    Path(segment): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("no such pushback link");
    let id = segment.strip_prefix("push_").ok_or_else(not_found)?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(not_found());
    }
    if let Some(lim) = &st.push_limiter
        && let Err(until) = lim.check_key(&id.to_owned())
    {
        let wait = until.wait_time_from(governor::clock::DefaultClock::default().now());
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many activations of this link; retry later",
        );
        e.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        return Err(e);
    }
    let method = req.method().clone();
    let (headers, body) = read_body(req).await?;
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "Idempotency-Key",
                        "Idempotency-Key must be 1–255 visible ASCII characters",
                    )
                })?;
            Some(IdempotencyKey {
                scope: format!("push:{id}"),
                key: key.to_owned(),
            })
        }
    };
    let data = if method == Method::GET || body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(event_data(&headers, &body)?)
    };
    let item = AcceptItem::Pushback {
        pushback_id: id.to_owned(),
        data,
        event_id: uuid::Uuid::now_v7().to_string(),
        source: format!("pushback:{id}"),
        now: Timestamp::now(),
        idempotency,
    };
    match st.engine.accept(item).await? {
        AcceptOutcome::Accepted(e) => Ok(accepted(&e.event.id)),
        AcceptOutcome::Repeated { event_id } => {
            let mut r = accepted(&event_id);
            r.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            Ok(r)
        }
        AcceptOutcome::NotFound => Err(not_found()),
        AcceptOutcome::Gone => Err(ApiError::new(
            StatusCode::GONE,
            "gone",
            "this pushback link has expired or is used up",
        )),
        other => Err(ApiError::internal(format!(
            "a pushback activation was answered with {other:?}"
        ))),
    }
}

/// `{"status":"accepted","eventId":…}`, written directly: the hottest answer Herald gives.
fn accepted(event_id: &str) -> Response {
    let mut body = Vec::with_capacity(40 + event_id.len());
    body.extend_from_slice(br#"{"status":"accepted","eventId":"#);
    // Event ids are Herald's own UUIDs, but serialise rather than assume.
    let _ = serde_json::to_writer(&mut body, event_id);
    body.push(b'}');
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// The event data of a POST: a JSON object, or a form turned into an object of strings.
fn event_data(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type(headers);
    if ct.as_deref() == Some("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::bad_request(format!("body is not a valid form: {e}")))?;
        return Ok(Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect::<Map<_, _>>(),
        ));
    }
    if ct.is_some() && !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send a JSON object (application/json) or a form (application/x-www-form-urlencoded)",
        ));
    }
    match crate::json::parse_value(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_an_object",
            "body must be a JSON object",
        )),
        Err(e) => Err(crate::error::malformed_json(&e)),
    }
}
