//! Herald's HTTP surface: one router, one module per API family. Handlers validate and
//! authenticate, then hand work to the engine; they never answer 2xx before a write commits.

pub mod auth;
pub mod chat;
pub mod deliveries;
pub mod dialogs;
pub mod error;
pub mod jobs;
pub mod novu;
pub mod ops;
pub mod pushgate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use herald_engine::Engine;
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub admin_token: Arc<str>,
    pub push_limiter: Option<Arc<pushgate::Limiter>>,
    /// Keys accepted as `Authorization: ApiKey <key>` on the notification API (besides the
    /// admin token).
    pub api_keys: Arc<[String]>,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub body_limit: usize,
    /// Per-link activations per second (0 disables the limit) and burst.
    pub push_rate: u32,
    pub push_burst: u32,
    /// Notification API keys (`api_keys` in herald.toml).
    pub api_keys: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 256 * 1024,
            push_rate: 100,
            push_burst: 200,
            api_keys: Vec::new(),
        }
    }
}

pub fn app_state(engine: Arc<Engine>, admin_token: &str, cfg: &HttpConfig) -> AppState {
    AppState {
        engine,
        admin_token: admin_token.into(),
        push_limiter: pushgate::limiter(cfg.push_rate, cfg.push_burst).map(Arc::new),
        api_keys: cfg.api_keys.clone().into(),
    }
}

pub fn router(state: AppState, cfg: &HttpConfig) -> Router {
    let _ = ops::prometheus();
    // Management routes: a valid token is checked before the body is read, so a caller without
    // one learns nothing about the body's validity. Handlers then check which bot it may manage.
    let api = Router::new()
        .route("/api/v1/admin/stats", get(ops::stats))
        .route(
            "/api/v1/pushbacks",
            post(pushgate::create).get(pushgate::list),
        )
        .route(
            "/api/v1/pushbacks/{id}",
            get(pushgate::show).delete(pushgate::revoke),
        )
        .route(
            "/api/v1/bots/{bot_id}/dialogs/{chat_id}/messages",
            post(dialogs::post_message).get(dialogs::list_messages),
        )
        .route(
            "/api/v1/bots/{bot_id}/dialogs/{chat_id}",
            get(dialogs::show_dialog),
        )
        .route("/api/v1/contacts/{id}", get(dialogs::show_contact))
        .route("/api/v1/deliveries", get(deliveries::list))
        .route("/api/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route("/bots/{bot_id}/jobs/schedule", post(jobs::schedule))
        .route("/bots/{bot_id}/jobs", get(jobs::list))
        .route(
            "/bots/{bot_id}/jobs/{id}",
            get(jobs::show).merge(delete(jobs::cancel)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(api)
        .merge(novu::router(state.clone()))
        .route("/chat/widget.js", get(chat::widget_js))
        .route("/chat/assets/{file}", get(chat::assets))
        .route("/chat/{bot_id}", get(chat::page))
        .route("/chat/{bot_id}/ws", get(chat::ws))
        .route(
            "/{segment}",
            get(pushgate::activate).post(pushgate::activate),
        )
        .fallback(|| async { error::ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn(ops::track))
        .layer(DefaultBodyLimit::max(cfg.body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(error::ApiError::internal(
                "a request handler panicked",
            ))
        }))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Answers and WebSocket frames are small and written whole: send them at once rather than
    // letting Nagle's algorithm hold one back until the peer acknowledges the previous one.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Drops idle per-link rate-limit state now and then, so the limiter does not grow forever.
pub fn spawn_housekeeping(state: &AppState) {
    if let Some(lim) = state.push_limiter.clone() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                lim.retain_recent();
                lim.shrink_to_fit();
            }
        });
    }
    // The recorder buffers histogram samples until upkeep folds them into its summaries; without
    // it every recorded sample stays in memory.
    if let Some(handle) = ops::prometheus().clone() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }
    let engine = state.engine.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = jiff::Timestamp::now();
            let cutoff = now - jiff::SignedDuration::from_hours(24);
            if let Err(e) = engine.shared().store.purge_idempotency(cutoff).await {
                tracing::warn!(error = %e, "cannot purge old idempotency keys");
            }
            match engine.purge_notify(now).await {
                Ok(n) => tracing::debug!(purged = ?n, "notification retention"),
                Err(e) => tracing::warn!(error = %e, "cannot purge old notification state"),
            }
        }
    });
}
