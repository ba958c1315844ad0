//! A `herald serve` child process for crash tests: the real binary, killed with SIGKILL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ADMIN;

/// What outlives the server processes of a crash test: the project, the data and log
/// directories, the settings every process gets, and an HTTP client.
pub struct Rig {
    pub project: tempfile::TempDir,
    pub data: tempfile::TempDir,
    logs: tempfile::TempDir,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

impl Rig {
    /// `timeout` bounds each HTTP request of the test.
    pub fn new(project: tempfile::TempDir, env: &[(&str, &str)], timeout: Duration) -> Self {
        Self {
            project,
            data: tempfile::tempdir().expect("tempdir"),
            logs: tempfile::tempdir().expect("tempdir"),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("client"),
        }
    }

    /// Starts `herald serve` on the rig's project and data, logging to `<name>.log`, and waits
    /// until it is ready.
    pub async fn start(&self, name: &str) -> ChildServer {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut server = ChildServer::spawn(
            self.project.path(),
            self.data.path(),
            &self.logs.path().join(format!("{name}.log")),
            &env,
        );
        server.wait_ready(&self.http).await;
        server
    }
}

/// A `herald serve` child process; SIGKILLed and reaped on drop.
pub struct ChildServer {
    /// The process; tests SIGKILL it with `child.kill()`.
    pub child: Child,
    pub base: String,
    log: PathBuf,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildServer {
    /// Starts `herald serve` on a free port with the admin token [`ADMIN`], logging to `log`;
    /// `env` adds settings (`HERALD_*`).
    pub fn spawn(project: &Path, data: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn_with(
            Command::new(env!("CARGO_BIN_EXE_herald")),
            project,
            data,
            log,
            env,
        )
    }

    /// [`ChildServer::spawn`] with at most `files` open files (`ulimit -n`, through `sh`).
    pub fn spawn_with_open_files(
        files: u32,
        project: &Path,
        data: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_herald"));
        Self::spawn_with(cmd, project, data, log, env)
    }

    fn spawn_with(
        mut cmd: Command,
        project: &Path,
        data: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log");
        let err = out.try_clone().expect("clone log");
        // Settings reject unknown HERALD_* variables: start from a clean slate.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HERALD_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg("serve")
            .arg("--project")
            .arg(project)
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_DATA_DIR", data)
            .env("HERALD_ADMIN_TOKEN", ADMIN)
            .env("HERALD_LOG", "warn")
            .envs(env.iter().copied())
            .current_dir(data)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn herald");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_owned(),
        }
    }

    /// Lets the load run for about a second (up to 20 s while fewer than 50 requests were
    /// acknowledged, on a slow machine), then SIGKILLs the server, reaps it and raises `stop`.
    /// Panics if the server had exited on its own. Returns how long the load ran.
    pub async fn kill_under_load(&mut self, acked: &AtomicU64, stop: &AtomicBool) -> Duration {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(1)
            || (acked.load(Ordering::SeqCst) < 50 && started.elapsed() < Duration::from_secs(20))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.child.kill().expect("SIGKILL herald"); // Child::kill sends SIGKILL on Unix
        let status = self.child.wait().expect("reap herald");
        stop.store(true, Ordering::SeqCst);
        assert!(
            status.code().is_none(),
            "herald had exited on its own ({status}) before the kill; log:\n{}",
            self.log_text()
        );
        started.elapsed()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "herald exited ({status}) before it was ready; its log:\n{}",
                    self.log_text()
                );
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "herald not ready after 60 s; its log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get(&self, http: &reqwest::Client, path: &str) -> (u16, Value) {
        let r = http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}; herald log:\n{}", self.log_text()));
        super::status_json(r).await
    }

    pub async fn post(&self, http: &reqwest::Client, path: &str, body: &Value) -> (u16, Value) {
        let r = http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}; herald log:\n{}", self.log_text()));
        super::status_json(r).await
    }
}

/// One request of a load task as the client saw it: its target (a dialog, a subscriber), its
/// number, and whether it was acknowledged.
pub struct Issued {
    pub target: usize,
    pub n: u64,
    pub acked: bool,
}

/// What the load tasks of a crash test share: the next request number, the count of
/// acknowledged requests, and the flag that stops them.
#[derive(Clone)]
pub struct Load {
    pub counter: Arc<AtomicU64>,
    pub acked: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
}

impl Load {
    pub fn new() -> Self {
        Self {
            counter: Arc::new(AtomicU64::new(1)),
            acked: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sends `send(target, n)` to `targets` round-robin, one request at a time, until `stop` or
    /// the first request not answered `ok` (after the kill every request fails). Returns what
    /// it issued and the answers other than `ok` (`label` names a target in them).
    pub async fn run<F, Fut>(
        self,
        targets: Vec<usize>,
        ok: u16,
        label: &'static str,
        send: F,
    ) -> (Vec<Issued>, Vec<String>)
    where
        F: Fn(usize, u64) -> Fut,
        Fut: Future<Output = reqwest::Result<reqwest::Response>>,
    {
        let mut issued = Vec::new();
        let mut odd = Vec::new();
        'outer: loop {
            for &target in &targets {
                if self.stop.load(Ordering::SeqCst) {
                    break 'outer;
                }
                let n = self.counter.fetch_add(1, Ordering::SeqCst);
                let answer = match send(target, n).await {
                    Ok(r) if r.status() == ok => Ok(()),
                    Ok(r) => {
                        let status = r.status();
                        Err(Some(format!(
                            "{status} {}",
                            r.text().await.unwrap_or_default()
                        )))
                    }
                    // No answer: the connection died with the server.
                    Err(_) => Err(None),
                };
                issued.push(Issued {
                    target,
                    n,
                    acked: answer.is_ok(),
                });
                if let Err(other) = answer {
                    odd.extend(other.map(|a| format!("n={n} {label}{target}: {a}")));
                    break 'outer;
                }
                self.acked.fetch_add(1, Ordering::SeqCst);
            }
        }
        (issued, odd)
    }
}

/// Waits for load tasks, each reporting what it issued and the answers it did not expect, and
/// returns everything issued. Panics if any task got an unexpected answer before the kill.
pub async fn gather<T>(
    tasks: Vec<tokio::task::JoinHandle<(Vec<T>, Vec<String>)>>,
    expected: &str,
) -> Vec<T> {
    let mut issued = Vec::new();
    let mut odd = Vec::new();
    for t in tasks {
        let (i, o) = t.await.expect("load task");
        issued.extend(i);
        odd.extend(o);
    }
    assert!(
        odd.is_empty(),
        "before the kill, requests were answered with something other than {expected}:\n{}",
        odd.join("\n")
    );
    issued
}

/// The exactly-once checks of a crash test: every request in `required` (by number) left its
/// trace, none left two, and each trace is in the target it was sent to. `seen` maps a request's
/// number to the targets where its trace was found; `what` names a trace in messages.
pub fn assert_exactly_once(
    issued: &[Issued],
    required: &[u64],
    seen: &BTreeMap<u64, Vec<usize>>,
    what: &str,
) {
    let missing: Vec<u64> = required
        .iter()
        .copied()
        .filter(|n| !seen.contains_key(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} requests have no {what} after the restart (first: {:?})",
        missing.len(),
        required.len(),
        &missing[..missing.len().min(20)]
    );
    let twice: Vec<(&u64, &Vec<usize>)> = seen.iter().filter(|(_, t)| t.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "requests with more than one {what} (n → targets): {twice:?}"
    );
    let sent_to: BTreeMap<u64, usize> = issued.iter().map(|x| (x.n, x.target)).collect();
    for (n, targets) in seen {
        let to = sent_to
            .get(n)
            .unwrap_or_else(|| panic!("a {what} for n {n}, which was never sent"));
        assert_eq!(
            targets[0], *to,
            "the {what} of n {n} is in target {}, but n {n} was sent to {to}",
            targets[0]
        );
    }
}
