//! Test harness: the real server on port 0 with a temporary data directory, an HTTP client that
//! speaks to it as a user would, and a sink server that records what Herald calls out to.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod process;

use herald::{Running, Settings, launch};
use serde_json::{Value, json};

pub const ADMIN: &str = "test-admin-token";

/// How long [`eventually`] waits.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Polls `probe` until it yields a value; panics with `what` after [`DEADLINE`].
pub async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Copies a project into a temp dir, replacing text (e.g. a default URL) in every bot.yaml.
pub fn project_copy(src: &Path, replace: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(src, dir.path(), replace);
    dir
}

fn copy_dir(src: &Path, dst: &Path, replace: &[(&str, &str)]) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read_dir") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to, replace);
        } else {
            let mut text = std::fs::read_to_string(entry.path()).expect("read");
            for (a, b) in replace {
                text = text.replace(a, b);
            }
            std::fs::write(to, text).expect("write");
        }
    }
}

/// Writes a one-bot project from bot.yaml text.
pub fn project_with_bot(bot_id: &str, yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let bot = dir.path().join("bots").join(bot_id);
    std::fs::create_dir_all(&bot).expect("mkdir");
    std::fs::write(bot.join("bot.yaml"), yaml).expect("write");
    dir
}

pub fn examples_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

pub struct TestServer {
    pub running: Option<Running>,
    pub base: String,
    pub http: reqwest::Client,
    pub data_dir: PathBuf,
}

pub fn settings(data_dir: &Path) -> Settings {
    Settings {
        data_dir: data_dir.to_owned(),
        admin_token: Some(ADMIN.into()),
        log: "warn".into(),
        ..Settings::default()
    }
}

impl TestServer {
    pub async fn start(project: &Path, data_dir: &Path) -> Self {
        Self::start_with(project, settings(data_dir)).await
    }

    pub async fn start_with(project: &Path, settings: Settings) -> Self {
        let data_dir = settings.data_dir.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let running = launch(settings, project.to_owned(), listener)
            .await
            .expect("launch");
        let base = format!("http://{}", running.addr);
        Self {
            running: Some(running),
            base,
            http: reqwest::Client::new(),
            data_dir,
        }
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("send");
        status_json(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("send");
        status_json(r).await
    }

    /// The status of an unauthenticated GET, as a browser or a link follower would send it.
    pub async fn status_of(&self, path: &str) -> u16 {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("get")
            .status()
            .as_u16()
    }

    /// POSTs JSON to a pushback link (no token: links are capabilities).
    pub async fn activate(&self, link: &str, body: Value) -> (u16, Value) {
        status_json(self.http.post(link).json(&body).send().await.expect("post")).await
    }

    /// Sends a user message and waits for the bot's replies; returns their texts.
    pub async fn say(&self, bot: &str, chat: &str, text: &str) -> Vec<Value> {
        let (s, v) = self
            .post(
                &format!("/api/v1/bots/{bot}/dialogs/{chat}/messages"),
                json!({"text": text, "wait": 10000}),
            )
            .await;
        assert_eq!(s, 200, "message not handled: {v}");
        v["replies"].as_array().cloned().unwrap_or_default()
    }

    pub async fn messages(&self, bot: &str, chat: &str) -> Vec<Value> {
        let (s, v) = self
            .get(&format!(
                "/api/v1/bots/{bot}/dialogs/{chat}/messages?limit=1000"
            ))
            .await;
        assert_eq!(s, 200, "{v}");
        v["messages"].as_array().cloned().unwrap_or_default()
    }

    /// Polls until every accepted event is handled.
    pub async fn settle(&self) {
        for _ in 0..500 {
            let (_, v) = self.get("/api/v1/admin/stats").await;
            if v["events"]["pending"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("events still pending after 10 s");
    }

    /// Polls the in-app feed of `subscriber` (notification API) until it has an entry; returns
    /// its entries, newest first.
    pub async fn wait_for_feed(&self, subscriber: &str) -> Vec<Value> {
        eventually(&format!("a feed entry for {subscriber}"), async || {
            let r = self
                .http
                .get(self.url(&format!("/v1/subscribers/{subscriber}/notifications/feed")))
                .header("authorization", format!("ApiKey {ADMIN}"))
                .send()
                .await
                .expect("feed");
            let (_, v) = status_json(r).await;
            let data = v["data"].as_array().cloned().unwrap_or_default();
            (!data.is_empty()).then_some(data)
        })
        .await
    }

    /// Polls a dialog until a reply with `text` shows up.
    pub async fn wait_for_text(&self, bot: &str, chat: &str, text: &str) -> Vec<Value> {
        for _ in 0..250 {
            let msgs = self.messages(bot, chat).await;
            if msgs.iter().any(|m| m["text"] == text) {
                return msgs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "`{text}` never arrived in {bot}/{chat}: {:?}",
            self.messages(bot, chat).await
        );
    }
}

pub async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A local HTTP server that records every request body and answers with a switchable status.
#[derive(Clone)]
pub struct Sink {
    pub url: String,
    pub received: Arc<Mutex<Vec<Value>>>,
    pub status: Arc<Mutex<u16>>,
}

impl Sink {
    pub async fn start() -> Self {
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let status = Arc::new(Mutex::new(200u16));
        let (r, s) = (received.clone(), status.clone());
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let (r, s) = (r.clone(), s.clone());
            async move {
                let v = serde_json::from_slice(&body)
                    .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
                r.lock().expect("lock").push(v);
                let code = *s.lock().expect("lock");
                (
                    axum::http::StatusCode::from_u16(code).expect("status"),
                    "{\"ok\":true}",
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            received,
            status,
        }
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..250 {
            let got = self.received.lock().expect("lock").clone();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "sink got {:?}, wanted {n} requests",
            self.received.lock().expect("lock")
        );
    }
}

/// The newsletter example wired to a sink, running on a fresh data dir.
pub async fn newsletter() -> (TestServer, Sink, tempfile::TempDir, tempfile::TempDir) {
    newsletter_with(|_| {}).await
}

/// [`newsletter`] with settings changed by `tune`.
pub async fn newsletter_with(
    tune: impl FnOnce(&mut Settings),
) -> (TestServer, Sink, tempfile::TempDir, tempfile::TempDir) {
    let sink = Sink::start().await;
    let subscribe = format!("{}/subscribe", sink.url);
    let project = project_copy(
        &examples_dir("newsletter"),
        &[("http://127.0.0.1:9000/subscribe", &subscribe)],
    );
    let data = tempfile::tempdir().expect("tempdir");
    let mut settings = settings(data.path());
    tune(&mut settings);
    let server = TestServer::start_with(project.path(), settings).await;
    (server, sink, project, data)
}

/// Additions for the scheduled-jobs suites: a server on an injected clock, requests with any
/// token (or none), and the reads a job test needs.
impl TestServer {
    /// [`TestServer::start_with`] with the clock jobs are scheduled by (a
    /// [`herald_engine::ManualClock`] that a test moves instead of sleeping).
    pub async fn start_with_clock(
        project: &Path,
        settings: Settings,
        clock: Arc<dyn herald_engine::Clock>,
    ) -> Self {
        let data_dir = settings.data_dir.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let running = herald::launch_with_clock(settings, project.to_owned(), listener, clock)
            .await
            .expect("launch");
        let base = format!("http://{}", running.addr);
        Self {
            running: Some(running),
            base,
            http: reqwest::Client::new(),
            data_dir,
        }
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(self.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("send");
        status_json(r).await
    }

    /// POSTs `body` (JSON) with `Authorization: Bearer <token>`, or with no such header.
    pub async fn post_as(&self, token: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        status_json(req.send().await.expect("send")).await
    }

    /// POSTs raw bytes as `application/json` (for malformed bodies).
    pub async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        status_json(r).await
    }

    /// The contact id (Metabot's `lead_id`) of a dialog.
    pub async fn contact_id(&self, bot: &str, chat: &str) -> i64 {
        let (s, v) = self
            .get(&format!("/api/v1/bots/{bot}/dialogs/{chat}"))
            .await;
        assert_eq!(s, 200, "dialog {bot}/{chat}: {v}");
        v["contactId"]
            .as_i64()
            .unwrap_or_else(|| panic!("dialog {bot}/{chat} has no contactId: {v}"))
    }

    /// The texts of a dialog's messages, oldest first (both directions).
    pub async fn texts(&self, bot: &str, chat: &str) -> Vec<String> {
        self.messages(bot, chat)
            .await
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}
