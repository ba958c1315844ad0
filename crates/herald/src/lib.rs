//! The `herald` program as a library: loading and checking a project, and launching the server
//! on a given listener, so integration tests run the real thing on port 0.

pub mod config;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use herald_core::{Diagnostic, Project};
use herald_engine::{Clock, Engine, EngineConfig, SystemClock};
use herald_server::HttpConfig;
use herald_store_sqlite::{SqliteStore, Synchronous};
use tokio::net::TcpListener;

pub use config::Settings;

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads every definition and compiles every script: what `herald check` reports and what
/// `herald serve` refuses to start on.
pub fn load_checked_project(dir: &Path) -> Result<Project, Vec<Diagnostic>> {
    if !dir.is_dir() {
        return Err(vec![
            Diagnostic::new(dir, 0, 0, "project directory not found")
                .with_hint("pass --project DIR or set HERALD_PROJECT"),
        ]);
    }
    let checker = herald_script::SyntaxChecker::new().map_err(|e| {
        vec![Diagnostic::new(
            dir,
            0,
            0,
            format!("cannot start the JavaScript engine: {e}"),
        )]
    })?;
    herald_core::load_project_checked(dir, &env_lookup, &|code| checker.check(code)).map_err(
        |mut diags| {
            diags.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
            diags
        },
    )
}

pub fn format_diagnostics(diags: &[Diagnostic]) -> String {
    let mut s: String = diags.iter().map(|d| format!("{d}\n")).collect();
    s.push_str(&format!(
        "{} error{} found\n",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    ));
    s
}

/// The admin token: configured, or read from / generated into the data directory.
pub fn admin_token(settings: &Settings) -> anyhow::Result<String> {
    if let Some(t) = settings.admin_token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(t.clone());
    }
    let path = settings.data_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create {}", settings.data_dir.display()))?;
    let token = {
        use rand::RngCore;
        let mut b = [0u8; 24];
        rand::rng().fill_bytes(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::warn!(path = %path.display(), "no admin token configured: generated one and stored it in this file");
    eprintln!(
        "herald: generated an admin token; it is in {}",
        path.display()
    );
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// A running server: its address and how to stop it.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub admin_token: String,
    state: herald_server::AppState,
    stop: tokio::sync::watch::Sender<bool>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// The HTTP layer's state (for [`herald_server::route_table`], say).
    pub fn state(&self) -> &herald_server::AppState {
        &self.state
    }

    /// Graceful stop: no new connections, in-flight requests and events finish, results commit.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.done
            .await
            .map_err(|e| anyhow!("server task failed: {e}"))?
    }
}

/// Loads and checks the project in `project_dir`, then [`launch_project`].
pub async fn launch(
    settings: Settings,
    project_dir: PathBuf,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    let project = load_checked_project(&project_dir)
        .map_err(|d| anyhow!("the project has errors:\n{}", format_diagnostics(&d)))?;
    launch_project(settings, project, listener).await
}

/// Opens storage, starts the engine (replaying unhandled events) and serves `project` on
/// `listener`. The project must come from [`load_checked_project`].
pub async fn launch_project(
    settings: Settings,
    project: Project,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    launch_project_with_clock(settings, project, listener, Arc::new(SystemClock)).await
}

/// [`launch`] with the clock jobs are scheduled by: tests pass a
/// [`herald_engine::ManualClock`] and move it instead of sleeping.
pub async fn launch_with_clock(
    settings: Settings,
    project_dir: PathBuf,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    let project = load_checked_project(&project_dir)
        .map_err(|d| anyhow!("the project has errors:\n{}", format_diagnostics(&d)))?;
    launch_project_with_clock(settings, project, listener, clock).await
}

/// [`launch_project`] with the clock jobs are scheduled by.
pub async fn launch_project_with_clock(
    settings: Settings,
    project: Project,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    let sync = match settings.sqlite_synchronous.to_ascii_lowercase().as_str() {
        "full" => Synchronous::Full,
        "normal" => Synchronous::Normal,
        other => bail!("sqlite_synchronous must be `full` or `normal`, not `{other}`"),
    };
    let db = settings.sqlite_path().map_err(|e| anyhow!(e))?;
    let store = Arc::new(
        SqliteStore::open(&db, sync).with_context(|| format!("cannot open {}", db.display()))?,
    );
    let admin = admin_token(&settings)?;
    let addr = listener.local_addr()?;
    let mut settings = settings;
    if settings.public_url.is_none() {
        settings.public_url = Some(format!("http://{addr}"));
    }
    let engine_cfg = EngineConfig {
        workers: settings.workers(),
        script_limits: herald_script::Limits {
            time: Duration::from_millis(settings.script_timeout_ms.max(1)),
            memory_bytes: settings.script_memory_mb.max(1) << 20,
            max_replies: settings.script_max_replies,
            max_reply_bytes: settings.script_max_reply_bytes,
            max_host_calls: settings.script_max_host_calls,
            max_state_bytes: settings.script_max_state_bytes,
            max_log_lines: settings.script_max_log_lines,
        },
        public_url: settings.public_url(),
        http_allow_link_local: settings.http_allow_link_local,
        http_timeout: Duration::from_millis(settings.http_timeout_ms.max(1)),
        smtp: settings.smtp().map_err(anyhow::Error::msg)?,
        notification_retention: days(settings.notification_retention_days),
        feed_retention: days(settings.feed_retention_days),
        integration_retention: days(settings.integration_retention_days),
        ..EngineConfig::default()
    };
    let engine = Engine::start_with_clock(store, Arc::new(project), engine_cfg, clock).await?;
    let http = HttpConfig {
        body_limit: settings.body_limit,
        push_rate: settings.pushback_rate_limit,
        push_burst: settings.pushback_rate_burst,
        api_keys: settings.api_keys.clone(),
        header_timeout: Duration::from_secs(settings.header_timeout_secs.max(1)),
        body_timeout: Duration::from_secs(settings.body_timeout_secs.max(1)),
        max_connections: settings.max_connections.max(1),
    };
    let state = herald_server::app_state(engine.clone(), &admin, &http);
    herald_server::spawn_housekeeping(&state);
    let app = herald_server::router(state.clone(), &http);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let grace = Duration::from_secs(settings.shutdown_timeout_secs);
    let serve_state = state.clone();
    let done = tokio::spawn(async move {
        let state = serve_state;
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        herald_server::serve(listener, app, &state, &http, shutdown).await?;
        if tokio::time::timeout(grace, engine.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "in-flight work did not finish in time; it will replay at the next start"
            );
        }
        Ok(())
    });
    tracing::info!(%addr, public_url = %settings.public_url(), "herald is listening");
    Ok(Running {
        addr,
        admin_token: admin,
        state,
        stop,
        done,
    })
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n.max(1)) * 86_400)
}
