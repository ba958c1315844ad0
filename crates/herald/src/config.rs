//! Settings: built-in defaults, then `herald.toml` in the project directory, then `HERALD_*`
//! environment variables, then command-line flags. Secrets never appear in `Debug` output.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    #[serde(deserialize_with = "text")]
    pub listen: String,
    /// Base of links Herald hands out (pushbacks); defaults to `http://{listen}`.
    #[serde(default, deserialize_with = "opt_text")]
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// `sqlite://PATH`; defaults to `sqlite://{data_dir}/herald.db`.
    #[serde(default, deserialize_with = "opt_text")]
    pub database_url: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub admin_token: Option<String>,
    pub project: Option<PathBuf>,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Seconds a client may take to send its request headers, and its request body.
    pub header_timeout_secs: u64,
    pub body_timeout_secs: u64,
    /// Most open sockets (HTTP connections and chat WebSockets); lowered at start to what the
    /// process's open-file limit allows.
    pub max_connections: usize,
    /// Activations per second per pushback link (0 disables) and the burst allowed.
    pub pushback_rate_limit: u32,
    pub pushback_rate_burst: u32,
    /// Script time budget per run (a turn, a job condition, a workflow run), wall clock, host
    /// calls included, in milliseconds, and memory cap per worker, in MiB.
    pub script_timeout_ms: u64,
    pub script_memory_mb: usize,
    /// Replies one turn may send, and their bytes (texts and buttons).
    pub script_max_replies: usize,
    pub script_max_reply_bytes: usize,
    /// `$http`, `$pushgate` and `$jobs` calls one run may make.
    pub script_max_host_calls: usize,
    /// Largest `$session`, `$client` and tag list a turn may store, each, as JSON bytes.
    pub script_max_state_bytes: usize,
    /// `log(...)` lines one run may write; later ones are dropped.
    pub script_max_log_lines: usize,
    /// Let `$http` reach link-local / cloud-metadata addresses.
    pub http_allow_link_local: bool,
    pub http_timeout_ms: u64,
    /// Worker threads running scenarios (0: two per CPU, at least 4).
    pub workers: usize,
    /// `full` (fsync each commit batch; survives power loss) or `normal` (survives a crash).
    #[serde(deserialize_with = "text")]
    pub sqlite_synchronous: String,
    /// Log filter (`info`, `herald=debug`, …) and format (`text` or `json`).
    #[serde(deserialize_with = "text")]
    pub log: String,
    #[serde(deserialize_with = "text")]
    pub log_format: String,
    /// Seconds to wait for in-flight work at shutdown.
    pub shutdown_timeout_secs: u64,
    /// Threads of the async runtime (HTTP, WebSocket, the commit loop); 0: one per CPU.
    pub runtime_threads: usize,
    /// Days finished notification runs and sent or dead deliveries are kept.
    pub notification_retention_days: u32,
    /// Days in-app feed entries are kept.
    pub feed_retention_days: u32,
    /// Days integration requests are kept in the log.
    pub integration_retention_days: u32,
    /// Keys accepted as `Authorization: ApiKey <key>` by the notification API (`/v1`), besides
    /// the admin token.
    pub api_keys: Vec<String>,
    /// `[smtp]`: the server email steps go through (host, port, username, password, from, tls,
    /// timeout); read into `herald_channels::SmtpConfig` at start.
    pub smtp: Option<serde_json::Value>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<hidden>"),
            )
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            data_dir: "./herald-data".into(),
            database_url: None,
            admin_token: None,
            project: None,
            body_limit: 256 * 1024,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 4096,
            pushback_rate_limit: 100,
            pushback_rate_burst: 200,
            script_timeout_ms: 1000,
            script_memory_mb: 32,
            script_max_replies: 100,
            script_max_reply_bytes: 256 << 10,
            script_max_host_calls: 1000,
            script_max_state_bytes: 64 << 10,
            script_max_log_lines: 100,
            http_allow_link_local: false,
            http_timeout_ms: 10_000,
            workers: 0,
            sqlite_synchronous: "full".into(),
            log: "info".into(),
            log_format: "text".into(),
            shutdown_timeout_secs: 10,
            runtime_threads: 0,
            notification_retention_days: 30,
            feed_retention_days: 365,
            integration_retention_days: 30,
            api_keys: Vec::new(),
            smtp: None,
        }
    }
}

impl Settings {
    /// Layers defaults, `{project}/herald.toml`, and `HERALD_*` variables.
    pub fn load(project: &Path) -> Result<Self, String> {
        let toml = project.join("herald.toml");
        // Only known keys are read from the environment: other HERALD_* variables (a test
        // switch, a deploy script's own) must not stop the server. Typos in herald.toml still do.
        let known: Vec<String> = match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(&toml))
            .merge(
                Env::prefixed("HERALD_")
                    .filter(move |k| known.iter().any(|n| k.as_str().eq_ignore_ascii_case(n))),
            )
            .extract()
            .map_err(|e| {
                format!(
                    "invalid settings ({}, HERALD_* variables): {e}",
                    toml.display()
                )
            })
    }

    /// The `[smtp]` section, checked.
    pub fn smtp(&self) -> Result<Option<herald_channels::SmtpConfig>, String> {
        self.smtp
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("invalid [smtp] settings: {e}"))
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    pub fn sqlite_path(&self) -> Result<PathBuf, String> {
        match &self.database_url {
            None => Ok(self.data_dir.join("herald.db")),
            Some(url) => {
                if let Some(p) = url.strip_prefix("sqlite://") {
                    Ok(PathBuf::from(p.split('?').next().unwrap_or(p)))
                } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    Err("the PostgreSQL backend is not available in this version; use sqlite:// (the default)".into())
                } else {
                    Err(format!(
                        "HERALD_DATABASE_URL must start with sqlite:// (got `{}`)",
                        url.split(':').next().unwrap_or("")
                    ))
                }
            }
        }
    }

    pub fn workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get() * 2)
                .unwrap_or(4)
                .max(4)
        }
    }
}

/// Environment values are parsed like TOML, so `HERALD_ADMIN_TOKEN=123456` arrives as a number;
/// settings that are text take numbers and booleans as their text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
}

impl From<Scalar> for String {
    fn from(s: Scalar) -> String {
        match s {
            Scalar::Text(t) => t,
            Scalar::Int(i) => i.to_string(),
            Scalar::Uint(u) => u.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Scalar::deserialize(d).map(String::from)
}

fn opt_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<Scalar>::deserialize(d).map(|o| o.map(String::from))
}
