//! The Novu-compatible notification API (SPEC §5), mounted under `/v1` so that Novu's SDKs work
//! with Herald's URL as their backend. Authentication is `Authorization: ApiKey <key>` (the
//! admin token or a key from `api_keys` in herald.toml); bodies are wrapped as `{"data": …}`
//! and errors have Novu's shape (`statusCode`, `message`, `error`) plus Herald's `code`.

mod events;
mod parse;
mod subscribers;
mod topics;

use crate::auth::same;
use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::routes::{Routes, Takes};

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const DELETE: Method = Method::DELETE;

/// A Herald error in Novu's error shape.
pub struct NovuError(pub ApiError);

impl From<ApiError> for NovuError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<herald_engine::EngineError> for NovuError {
    fn from(e: herald_engine::EngineError) -> Self {
        Self(e.into())
    }
}

impl From<herald_store::StoreError> for NovuError {
    fn from(e: herald_store::StoreError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for NovuError {
    fn into_response(self) -> Response {
        let e = self.0;
        let mut body = json!({
            "statusCode": e.status.as_u16(),
            "message": e.message,
            "error": e.status.canonical_reason().unwrap_or("Error"),
            "code": e.code,
        });
        if let Some(d) = e.details {
            body["details"] = d;
        }
        (e.status, Json(body)).into_response()
    }
}

pub type NovuResult<T> = Result<T, NovuError>;

/// `{"data": value}` with a status.
pub fn data(status: StatusCode, value: Value) -> Response {
    (status, Json(json!({ "data": value }))).into_response()
}

/// 401 unless the request carries `ApiKey <key>` (or `Bearer <admin token>`).
fn check_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key: send `Authorization: ApiKey <key>`",
        )
    };
    let (scheme, key) = crate::auth::credential(headers).ok_or_else(unauthorized)?;
    let ok = if scheme.eq_ignore_ascii_case("apikey") {
        same(key, &state.admin_token) || state.api_keys.iter().any(|k| same(key, k))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        same(key, &state.admin_token)
    } else {
        false
    };
    if ok { Ok(()) } else { Err(unauthorized()) }
}

async fn require_key(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match check_key(&state, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => NovuError(e).into_response(),
    }
}

/// The Novu-compatible routes (see [`crate::routes`]), behind the API key check.
pub fn routes(state: AppState) -> Routes {
    use Takes::{Json, Nothing};
    Routes::new()
        .add(POST, "/v1/events/trigger", Json, events::trigger)
        .add(POST, "/v1/events/trigger/bulk", Json, events::bulk)
        .add(
            POST,
            "/v1/events/trigger/broadcast",
            Json,
            events::broadcast,
        )
        .add(
            DELETE,
            "/v1/events/trigger/{transaction_id}",
            Nothing,
            events::cancel,
        )
        .add(GET, "/v1/notifications", Nothing, events::activity)
        .add(POST, "/v1/subscribers", Json, subscribers::identify)
        .add(GET, "/v1/subscribers", Nothing, subscribers::list)
        .add(POST, "/v1/subscribers/bulk", Json, subscribers::bulk)
        .add(
            GET,
            "/v1/subscribers/{subscriber_id}",
            Nothing,
            subscribers::show,
        )
        .add(
            PUT,
            "/v1/subscribers/{subscriber_id}",
            Json,
            subscribers::update,
        )
        .add(
            DELETE,
            "/v1/subscribers/{subscriber_id}",
            Nothing,
            subscribers::remove,
        )
        .add(
            GET,
            "/v1/subscribers/{subscriber_id}/notifications/feed",
            Nothing,
            subscribers::feed,
        )
        .add(
            GET,
            "/v1/subscribers/{subscriber_id}/notifications/unseen",
            Nothing,
            subscribers::unseen,
        )
        .add(
            POST,
            "/v1/subscribers/{subscriber_id}/messages/markAs",
            Json,
            subscribers::mark,
        )
        .add(
            POST,
            "/v1/subscribers/{subscriber_id}/messages/mark-all",
            Json,
            subscribers::mark_all,
        )
        .add(POST, "/v1/topics", Json, topics::create)
        .add(GET, "/v1/topics", Nothing, topics::list)
        .add(GET, "/v1/topics/{key}", Nothing, topics::show)
        .add(DELETE, "/v1/topics/{key}", Nothing, topics::remove)
        .add(POST, "/v1/topics/{key}/subscribers", Json, topics::add)
        .add(
            POST,
            "/v1/topics/{key}/subscribers/removal",
            Json,
            topics::remove_subscribers,
        )
        .map(|r| r.route_layer(axum::middleware::from_fn_with_state(state, require_key)))
}
