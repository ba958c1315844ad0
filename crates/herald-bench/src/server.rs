//! Starting, probing and stopping a real `herald serve` process for a benchmark.
//!
//! [`Server::start`] writes a throwaway project into a temporary directory (two bots on the
//! `chatwidget` channel: `bench`, answering the event `ping` with `pong`, and `jobs`, answering
//! `hi` and defining the trigger `tick` that scheduled jobs run; and the workflow `bench-inapp`
//! with one `in_app` step for the notification scenarios), picks a free local port,
//! starts `herald serve --project <dir>` with its data directory inside the temporary directory,
//! per-link rate limiting disabled and an admin token known to the bench, and waits until
//! `GET /readyz` answers 200. The child is killed when the [`Server`] is dropped (on normal exit,
//! on an error, on Ctrl-C handled by `main`, and while a panic unwinds). Its stdout and stderr go
//! to `herald.log` in the temporary directory, which is kept (and its path printed) when the
//! server fails to start or the benchmark fails.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// Admin token passed to the server as `HERALD_ADMIN_TOKEN`.
pub const ADMIN_TOKEN: &str = "bench-admin-token";
/// Bot id of the benchmark bot.
pub const BOT_ID: &str = "bench";

const BOT_YAML: &str = "\
name: Bench
channels:
  chatwidget: {}
states:
  Ping:
    noContext: true
    event!: ping
    a: pong
  Push:
    noContext: true
    event!: gh:push
    a: pushed
";

/// Name of the integration the `ingest` benchmark delivers to, and its secret.
pub const INGEST_INTEGRATION: &str = "gh";
pub const INGEST_SECRET: &str = "bench-webhook-secret";

/// A GitHub-style integration: signature, delivery id, a mapped and schema-checked payload
/// routed to the sender's dialog with the bench bot.
const INGEST_YAML: &str = "\
secret: bench-webhook-secret
verify: {scheme: github}
limits: {rate: 0}
events:
  push:
    when: {header: {x-github-event: push}}
    payload:
      repo: /repository/full_name
      ref: /ref
      commits: /commits
      pusher: \"{{ body.pusher.name }}\"
    schema:
      type: object
      required: [repo, ref, commits]
      properties:
        repo: {type: string}
        ref: {type: string}
        commits: {type: array}
    route: {bot: bench, contact: /sender/id}
";

/// Bot id of the scheduled-jobs benchmark bot.
pub const JOBS_BOT_ID: &str = "jobs";
/// Trigger code the jobs benchmark schedules: a trivial script that counts its runs per dialog.
pub const JOBS_TRIGGER: &str = "tick";

const JOBS_BOT_YAML: &str = "\
name: Bench jobs
channels:
  chatwidget: {}
states:
  Hello:
    q!: [hi]
    a: hello
triggers:
  tick:
    id: 1
    script: |
      $session.ticks = ($session.ticks || 0) + 1;
";

/// Bot id of the hostile-scripts benchmark bot: `hi` is answered at once, `loop` runs until the
/// script budget stops it.
pub const HOSTILE_BOT_ID: &str = "hostile";

const HOSTILE_BOT_YAML: &str = "\
name: Bench hostile
channels:
  chatwidget: {}
states:
  Hello:
    q!: [hi]
    a: hello
  Loop:
    q!: [loop]
    script: while (true) {}
";

/// Workflow the notification benchmarks trigger: one `in_app` step rendered from the payload and
/// the subscriber.
pub const WORKFLOW_ID: &str = "bench-inapp";

const WORKFLOW_YAML: &str = "\
name: Bench in-app
steps:
  - type: in_app
    subject: \"Update {{ payload.n }}\"
    body: \"Hi {{ subscriber.firstName || 'there' }}, this is update {{ payload.n }}.\"
";

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to find and run the server.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Path of the `herald` executable; defaults to the one next to this executable.
    pub herald_bin: Option<PathBuf>,
    /// Keep the temporary directory (project, data, log) after exit.
    pub keep_data: bool,
}

/// A running `herald serve` child process with its temporary project and data directory.
pub struct Server {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    addr: SocketAddr,
    base_url: String,
    keep_data: bool,
}

impl Server {
    /// Creates the project, starts the server and waits until it is ready.
    pub async fn start(opts: &ServerOptions) -> Result<Server> {
        let bin = resolve_bin(opts.herald_bin.as_deref())?;
        let dir = tempfile::Builder::new()
            .prefix("herald-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let root = dir.path().to_path_buf();
        let project = root.join("project");
        for (id, yaml) in [
            (BOT_ID, BOT_YAML),
            (JOBS_BOT_ID, JOBS_BOT_YAML),
            (HOSTILE_BOT_ID, HOSTILE_BOT_YAML),
        ] {
            let bot_dir = project.join("bots").join(id);
            fs::create_dir_all(&bot_dir)
                .with_context(|| format!("creating {}", bot_dir.display()))?;
            fs::write(bot_dir.join("bot.yaml"), yaml)
                .with_context(|| format!("writing {}/bot.yaml", bot_dir.display()))?;
        }
        let integrations = project.join("integrations");
        fs::create_dir_all(&integrations)
            .with_context(|| format!("creating {}", integrations.display()))?;
        fs::write(
            integrations.join(format!("{INGEST_INTEGRATION}.yaml")),
            INGEST_YAML,
        )
        .context("writing the integration")?;
        let workflows = project.join("workflows");
        fs::create_dir_all(&workflows)
            .with_context(|| format!("creating {}", workflows.display()))?;
        let wf_path = workflows.join(format!("{WORKFLOW_ID}.yaml"));
        fs::write(&wf_path, WORKFLOW_YAML)
            .with_context(|| format!("writing {}", wf_path.display()))?;
        let data = root.join("data");
        let log_path = root.join("herald.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicating the log file handle")?;

        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(&bin)
            .arg("serve")
            .arg("--project")
            .arg(&project)
            .env("HERALD_LISTEN", addr.to_string())
            .env("HERALD_DATA_DIR", &data)
            .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("HERALD_PUSHBACK_RATE_LIMIT", "0")
            .env("HERALD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;

        let mut server = Server {
            child: Some(child),
            dir: Some(dir),
            root,
            addr,
            base_url: format!("http://{addr}"),
            keep_data: opts.keep_data,
        };
        println!(
            "server: {} serve (pid {}) on {} — log {}",
            bin.display(),
            server.pid().unwrap_or(0),
            server.base_url,
            server.log_path().display()
        );
        let started = Instant::now();
        if let Err(e) = server.wait_ready().await {
            server.keep_for_inspection();
            return Err(anyhow!(
                "herald did not become ready: {e:#}; log: {}{}",
                server.log_path().display(),
                server.log_tail_block()
            ));
        }
        println!(
            "server: ready after {:.2} s",
            started.elapsed().as_secs_f64()
        );
        Ok(server)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("herald.log")
    }

    /// The server's data directory (`HERALD_DATA_DIR`).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Bytes of all files under the data directory (the SQLite database with its WAL).
    pub fn data_bytes(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            let Ok(entries) = fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.data_dir())
    }

    /// Keeps the temporary directory after exit (so the log can be read) and says where it is.
    pub fn keep_for_inspection(&mut self) {
        self.keep_data = true;
    }

    /// Fails if the server process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait().context("polling the herald process")?
        {
            bail!("herald exited unexpectedly ({status})");
        }
        Ok(())
    }

    /// CPU time so far (Linux `/proc`); zeros where it cannot be read.
    pub fn cpu(&self) -> CpuSample {
        let server = self
            .pid()
            .and_then(|pid| process_ticks(&pid.to_string()))
            .unwrap_or(0);
        let bench = process_ticks("self").unwrap_or(0);
        let machine: Vec<u64> = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
            .map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        // user nice system idle iowait irq softirq steal …
        let at = |i: usize| machine.get(i).copied().unwrap_or(0);
        CpuSample {
            server,
            bench,
            total: machine.iter().take(8).sum(),
            idle: at(3),
            iowait: at(4),
            steal: at(7),
        }
    }

    /// Resident and peak resident memory of the server process, from `/proc/<pid>/status`.
    pub fn memory(&self) -> Option<Memory> {
        let pid = self.pid()?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        };
        Some(Memory {
            rss_kib: field("VmRSS:")?,
            peak_rss_kib: field("VmHWM:").unwrap_or(0),
            anon_kib: field("RssAnon:").unwrap_or(0),
            file_kib: field("RssFile:").unwrap_or(0),
            shmem_kib: field("RssShmem:").unwrap_or(0),
        })
    }

    /// Prints the server's resident memory and adds it to a scenario's summary and `RESULT`.
    pub fn report_memory(&self, table: &mut crate::stats::Table, result: &mut Value) {
        let Some(mem) = self.memory() else {
            return;
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "\nserver memory: RSS {:.1} MiB, peak {:.1} MiB",
            mib(mem.rss_kib),
            mib(mem.peak_rss_kib)
        );
        let none = crate::stats::Target::None;
        table.row("server RSS at end", mib(mem.rss_kib), "MiB", none);
        table.row("server peak RSS", mib(mem.peak_rss_kib), "MiB", none);
        result["server_rss_kib"] = serde_json::json!(mem.rss_kib);
        result["server_peak_rss_kib"] = serde_json::json!(mem.peak_rss_kib);
    }

    /// The last lines of the server log, formatted for an error message.
    pub fn log_tail_block(&self) -> String {
        let Ok(text) = fs::read_to_string(self.log_path()) else {
            return String::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(30)..];
        if tail.is_empty() {
            return " (empty)".to_owned();
        }
        format!("\n--- last lines of the log ---\n{}", tail.join("\n"))
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the HTTP client")?;
        let url = format!("{}/readyz", self.base_url);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive()?;
            let last = match client.get(&url).send().await {
                Ok(resp) if resp.status().as_u16() == 200 => return Ok(()),
                Ok(resp) => format!("GET /readyz -> {}", resp.status()),
                Err(e) => format!("GET /readyz: {e}"),
            };
            if Instant::now() >= deadline {
                bail!("not ready after {} s ({last})", READY_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server (SIGKILL) and removes or keeps the temporary directory.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.dir.take() {
            if self.keep_data {
                let path = dir.keep();
                eprintln!("server: kept {}", path.display());
            } else {
                drop(dir);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPU time used so far, in clock ticks (`USER_HZ`, 100 per second on Linux): the server's, the
/// bench's own, and the whole machine's by kind (`/proc/stat`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSample {
    pub server: u64,
    pub bench: u64,
    /// Every tick of every CPU, and the idle, iowait and steal ticks among them.
    pub total: u64,
    pub idle: u64,
    pub iowait: u64,
    pub steal: u64,
}

/// What a phase cost: CPU per operation and how busy the machine was.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    pub server_us_per_op: f64,
    pub bench_us_per_op: f64,
    /// Shares of the machine's time, in percent.
    pub idle_pct: f64,
    pub iowait_pct: f64,
    pub steal_pct: f64,
}

const TICKS_PER_S: f64 = 100.0;

fn process_ticks(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields start after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

impl CpuSample {
    /// `ops` operations happened between `self` and `later`.
    pub fn cost(&self, later: &CpuSample, ops: u64) -> CpuUse {
        let per_op = |ticks: u64| ticks as f64 / TICKS_PER_S * 1e6 / ops.max(1) as f64;
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let pct = |a: u64, b: u64| 100.0 * b.saturating_sub(a) as f64 / total;
        CpuUse {
            server_us_per_op: per_op(later.server.saturating_sub(self.server)),
            bench_us_per_op: per_op(later.bench.saturating_sub(self.bench)),
            idle_pct: pct(self.idle, later.idle),
            iowait_pct: pct(self.iowait, later.iowait),
            steal_pct: pct(self.steal, later.steal),
        }
    }
}

/// Memory of the server process in KiB.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    /// The parts of `rss_kib`: anonymous memory (heap, stacks), file-backed mappings, and
    /// shared memory (such as SQLite's WAL index).
    pub anon_kib: u64,
    pub file_kib: u64,
    pub shmem_kib: u64,
}

/// GET `/api/v1/admin/stats`, reduced to the event counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct EventStats {
    pub accepted: u64,
    pub handled: u64,
    pub pending: u64,
}

/// Fetches the server's event counters (`pending` defaults to `accepted - handled`).
pub async fn event_stats(client: &reqwest::Client, base_url: &str) -> Result<EventStats> {
    let url = format!("{base_url}/api/v1/admin/stats");
    let v = crate::client::get_json(client, &url).await?;
    let events = v
        .get("events")
        .with_context(|| format!("GET {url}: no `events` object in {v}"))?;
    let num = |k: &str| events.get(k).and_then(Value::as_u64);
    let accepted = num("accepted").with_context(|| format!("no events.accepted in {v}"))?;
    let handled = num("handled").with_context(|| format!("no events.handled in {v}"))?;
    let pending = num("pending").unwrap_or(accepted.saturating_sub(handled));
    Ok(EventStats {
        accepted,
        handled,
        pending,
    })
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(l.local_addr()?.port())
}

fn resolve_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    const HINT: &str = "build it: cargo build --release -p herald (or pass --herald-bin PATH)";
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let me = std::env::current_exe().context("locating the bench executable")?;
            let dir = me
                .parent()
                .context("the bench executable has no parent directory")?;
            dir.join(format!("herald{}", std::env::consts::EXE_SUFFIX))
        }
    };
    if !path.is_file() {
        bail!("herald executable not found at {}; {HINT}", path.display());
    }
    Ok(path)
}
