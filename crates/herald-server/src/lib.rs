//! Herald's HTTP surface: one router, one module per API family. Handlers validate and
//! authenticate, then hand work to the engine; they never answer 2xx before a write commits.

pub mod auth;
pub mod chat;
pub mod deliveries;
pub mod dialogs;
pub mod error;
pub mod guard;
pub mod integrations;
pub mod jobs;
pub mod json;
pub mod listen;
pub mod novu;
pub mod ops;
pub mod pushgate;
pub mod routes;

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const DELETE: Method = Method::DELETE;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use herald_engine::Engine;
pub use routes::{RouteInfo, Routes, Takes};
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub admin_token: Arc<str>,
    pub push_limiter: Option<Arc<pushgate::Limiter>>,
    /// Keys accepted as `Authorization: ApiKey <key>` on the notification API (besides the
    /// admin token).
    pub api_keys: Arc<[String]>,
    /// Open sockets against the connection cap (WebSockets take a slot here).
    pub connections: listen::Connections,
    /// Per-integration rate limits.
    pub ingest_limiters: Arc<integrations::IngestLimiters>,
    /// The server's body limit and body timeout, for routes that read bodies themselves.
    pub body_limit: usize,
    pub body_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub body_limit: usize,
    /// Per-link activations per second (0 disables the limit) and burst.
    pub push_rate: u32,
    pub push_burst: u32,
    /// Notification API keys (`api_keys` in herald.toml).
    pub api_keys: Vec<String>,
    /// How long a client may take to send its request headers, and its body.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Most open sockets (HTTP connections and WebSockets), lowered to fit the open-file limit.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 256 * 1024,
            push_rate: 100,
            push_burst: 200,
            api_keys: Vec::new(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

pub fn app_state(engine: Arc<Engine>, admin_token: &str, cfg: &HttpConfig) -> AppState {
    let ingest_limiters = Arc::new(integrations::IngestLimiters::new(&engine.shared().project));
    AppState {
        engine,
        admin_token: admin_token.into(),
        push_limiter: pushgate::limiter(cfg.push_rate, cfg.push_burst).map(Arc::new),
        api_keys: cfg.api_keys.clone().into(),
        connections: listen::Connections::new(cfg.max_connections),
        ingest_limiters,
        body_limit: cfg.body_limit,
        body_timeout: cfg.body_timeout,
    }
}

/// Every route Herald serves, with what its body must be (see [`routes`]). The guard layers
/// are added by [`router`].
pub fn routes(state: &AppState) -> Routes {
    use Takes::{Json, JsonOrForm, Nothing, Raw};
    // Management routes: a valid token is checked before the body is read, so a caller without
    // one learns nothing about the body's validity. Handlers then check which bot it may manage.
    let api = Routes::new()
        .add(GET, "/api/v1/admin/stats", Nothing, ops::stats)
        .add(POST, "/api/v1/pushbacks", Json, pushgate::create)
        .add(GET, "/api/v1/pushbacks", Nothing, pushgate::list)
        .add(GET, "/api/v1/pushbacks/{id}", Nothing, pushgate::show)
        .add(DELETE, "/api/v1/pushbacks/{id}", Nothing, pushgate::revoke)
        .add(
            POST,
            "/api/v1/bots/{bot_id}/dialogs/{chat_id}/messages",
            Json,
            dialogs::post_message,
        )
        .add(
            GET,
            "/api/v1/bots/{bot_id}/dialogs/{chat_id}/messages",
            Nothing,
            dialogs::list_messages,
        )
        .add(
            GET,
            "/api/v1/bots/{bot_id}/dialogs/{chat_id}",
            Nothing,
            dialogs::show_dialog,
        )
        .add(GET, "/api/v1/contacts/{id}", Nothing, dialogs::show_contact)
        .add(
            GET,
            "/api/v1/integrations/{name}/requests",
            Nothing,
            integrations::list,
        )
        .add(
            GET,
            "/api/v1/integrations/{name}/requests/{id}",
            Nothing,
            integrations::show,
        )
        .add(
            POST,
            "/api/v1/integrations/{name}/requests/{id}/replay",
            Nothing,
            integrations::replay,
        )
        .add(GET, "/api/v1/deliveries", Nothing, deliveries::list)
        .add(
            POST,
            "/api/v1/deliveries/{id}/retry",
            Nothing,
            deliveries::retry,
        )
        .add(POST, "/bots/{bot_id}/jobs/schedule", Json, jobs::schedule)
        .add(GET, "/bots/{bot_id}/jobs", Nothing, jobs::list)
        .add(GET, "/bots/{bot_id}/jobs/{id}", Nothing, jobs::show)
        .add(DELETE, "/bots/{bot_id}/jobs/{id}", Nothing, jobs::cancel)
        .map(|r| {
            r.route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::require_token,
            ))
        });
    Routes::new()
        .add(GET, "/healthz", Nothing, ops::healthz)
        .add(GET, "/readyz", Nothing, ops::readyz)
        .add(GET, "/metrics", Nothing, ops::metrics)
        .merge(api)
        .merge(novu::routes(state.clone()))
        .add(
            POST,
            "/integrations/{name}/webhook",
            Raw,
            integrations::webhook,
        )
        .add(
            GET,
            "/integrations/{name}/webhook",
            Nothing,
            integrations::webhook,
        )
        .add(GET, "/chat/widget.js", Nothing, chat::widget_js)
        .add(GET, "/chat/assets/{file}", Nothing, chat::assets)
        .add(GET, "/chat/{bot_id}", Nothing, chat::page)
        .add(GET, "/chat/{bot_id}/ws", Nothing, chat::ws)
        .add(GET, "/{segment}", Nothing, pushgate::activate)
        .add(POST, "/{segment}", JsonOrForm, pushgate::activate)
}

/// The table of [`routes`], for tests and docs.
pub fn route_table(state: &AppState) -> Vec<RouteInfo> {
    routes(state).into_parts().1
}

pub fn router(state: AppState, cfg: &HttpConfig) -> Router {
    let _ = ops::prometheus();
    let (app, _) = routes(&state).into_parts();
    app.fallback(|| async { error::ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            guard::GuardConfig {
                body_limit: cfg.body_limit,
                body_timeout: cfg.body_timeout,
            },
            ops::track,
        ))
        .layer(DefaultBodyLimit::max(cfg.body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(error::ApiError::internal(
                "a request handler panicked",
            ))
        }))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and finishes in-flight requests (see
/// [`listen`]: the connection cap, the header timeout).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    state: &AppState,
    cfg: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve(
        listener,
        app,
        state.connections.clone(),
        cfg.header_timeout,
        shutdown,
    )
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
            match engine.purge_ingest(now).await {
                Ok(n) => tracing::debug!(purged = n, "integration log retention"),
                Err(e) => tracing::warn!(error = %e, "cannot purge old integration requests"),
            }
        }
    });
}
