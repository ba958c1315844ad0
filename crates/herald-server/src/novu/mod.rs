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
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

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

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/events/trigger", post(events::trigger))
        .route("/v1/events/trigger/bulk", post(events::bulk))
        .route("/v1/events/trigger/broadcast", post(events::broadcast))
        .route(
            "/v1/events/trigger/{transaction_id}",
            axum::routing::delete(events::cancel),
        )
        .route("/v1/notifications", get(events::activity))
        .route(
            "/v1/subscribers",
            post(subscribers::identify).get(subscribers::list),
        )
        .route("/v1/subscribers/bulk", post(subscribers::bulk))
        .route(
            "/v1/subscribers/{subscriber_id}",
            get(subscribers::show)
                .put(subscribers::update)
                .delete(subscribers::remove),
        )
        .route(
            "/v1/subscribers/{subscriber_id}/notifications/feed",
            get(subscribers::feed),
        )
        .route(
            "/v1/subscribers/{subscriber_id}/notifications/unseen",
            get(subscribers::unseen),
        )
        .route(
            "/v1/subscribers/{subscriber_id}/messages/markAs",
            post(subscribers::mark),
        )
        .route(
            "/v1/subscribers/{subscriber_id}/messages/mark-all",
            post(subscribers::mark_all),
        )
        .route("/v1/topics", post(topics::create).get(topics::list))
        .route("/v1/topics/{key}", get(topics::show).delete(topics::remove))
        .route("/v1/topics/{key}/subscribers", post(topics::add))
        .route(
            "/v1/topics/{key}/subscribers/removal",
            post(topics::remove_subscribers),
        )
        .route_layer(axum::middleware::from_fn_with_state(state, require_key))
}
