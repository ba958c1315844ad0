//! Operations routes: liveness, readiness, Prometheus metrics, and engine counters.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::AppState;
use crate::auth::{Caller, caller};
use crate::error::ApiError;

/// The process-wide Prometheus recorder (installed once, shared by every server in the process).
pub fn prometheus() -> &'static Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(st): State<AppState>) -> Response {
    match st.engine.shared().store.ping().await {
        Ok(()) => Json(json!({"status": "ready", "bots": st.engine.shared().project.bots.len()}))
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": e.to_string()})),
        )
            .into_response(),
    }
}

pub async fn metrics() -> Response {
    match prometheus() {
        Some(h) => ([("content-type", "text/plain; version=0.0.4")], h.render()).into_response(),
        None => ApiError::unavailable("metrics recorder not installed").into_response(),
    }
}

pub async fn stats(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    if caller(&st, &headers)? != Caller::Admin {
        return Err(ApiError::unauthorized());
    }
    let s = st.engine.shared().store.stats().await?;
    let pending = st.engine.pending() as i64;
    Ok(Json(json!({
        "events": {"accepted": s.accepted, "handled": s.accepted - pending, "pending": pending},
        "dialogs": s.dialogs,
        "messages": s.messages,
        "notifications": {
            "triggers": s.notifications,
            "runs": s.runs,
            "runsPending": s.runs_pending,
            "feedEntries": s.feed_entries,
        },
    })))
}

/// Counts requests by matched route and status, and times them.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    // JSON bodies are UTF-8; say so, as the API contract promises.
    if resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json")
    {
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    let status = resp.status().as_u16().to_string();
    metrics::counter!("herald_http_requests_total", "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!("herald_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}
