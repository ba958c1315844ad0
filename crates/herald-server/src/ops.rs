//! Operations routes: liveness, readiness, Prometheus metrics, and engine counters.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
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

/// The request metrics of one route: its latency histogram and a counter per method and
/// status. Handles are looked up once and kept, so that a request costs a map lookup rather
/// than building, hashing and registering a labelled key (and its allocations) each time.
struct RouteMetrics {
    seconds: metrics::Histogram,
    counts: Mutex<Vec<(&'static str, u16, metrics::Counter)>>,
}

impl RouteMetrics {
    fn of(route: &str) -> Arc<RouteMetrics> {
        static ROUTES: LazyLock<RwLock<HashMap<Box<str>, Arc<RouteMetrics>>>> =
            LazyLock::new(Default::default);
        if let Some(m) = ROUTES.read().unwrap_or_else(|e| e.into_inner()).get(route) {
            return m.clone();
        }
        ROUTES
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route.into())
            .or_insert_with(|| {
                Arc::new(RouteMetrics {
                    seconds: metrics::histogram!("herald_http_request_seconds", "route" => route.to_owned()),
                    counts: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    fn count(&self, route: &str, method: &'static str, status: u16) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, c)) = counts.iter().find(|(m, s, _)| *m == method && *s == status) {
            c.increment(1);
            return;
        }
        let c = metrics::counter!(
            "herald_http_requests_total",
            "route" => route.to_owned(),
            "method" => method,
            "status" => status.to_string()
        );
        c.increment(1);
        counts.push((method, status, c));
    }
}

/// Counts requests by matched route and status, and times them; applies the request guards of
/// [`crate::guard`] around the route.
pub async fn track(
    State(guard): State<crate::guard::GuardConfig>,
    req: Request,
    next: Next,
) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", |p| p.as_str());
    let metrics = RouteMetrics::of(route);
    // Clients may send any method name; labels (and the handles kept per label) must not grow
    // with them.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let started = std::time::Instant::now();
    let novu = crate::guard::is_novu(&req);
    let mut resp = match crate::guard::admit(&guard, req) {
        Ok(req) => crate::guard::as_json(next.run(req).await, novu).await,
        Err(refused) => refused,
    };
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
    metrics.seconds.record(started.elapsed().as_secs_f64());
    metrics.count(route, method, resp.status().as_u16());
    resp
}
