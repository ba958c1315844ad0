//! Scenario `jobs`: how fast Herald schedules one-shot trigger jobs through the Bot API, how
//! late it runs them, how fast it works off a backlog that falls due at once, and how much memory
//! the server holds with many jobs pending.
//!
//! Every phase starts its own server (fresh database, fresh process, so memory readings are not
//! polluted by an earlier phase), creates `--leads` leads (a dialog `l<i>` with the `jobs` bot
//! via `POST /api/v1/bots/jobs/dialogs/l<i>/messages {"text":"hi","wait":true}`, its contact id
//! read from `GET /api/v1/bots/jobs/dialogs/l<i>`), and then schedules jobs with `--concurrency`
//! HTTP/1.1 keep-alive connections (bare sockets, see `client::Conn`, one task each, requests
//! sequential per connection): `POST /bots/jobs/jobs/schedule` with the admin token and
//! `{"trigger_code": "tick", "lead_id": <lead i mod leads>, ...}`. The trigger's script only
//! bumps a counter in the session. Schedule latency (request written → response body read) goes
//! into a histogram.
//!
//! Phases:
//! 1. **Spread** (`--spread-jobs`): each job is due a uniformly random time after it is sent,
//!    `--spread-min-sec` … `--spread-max-sec`. With `--spread-due run-at` (default) the bench
//!    sends `run_at` = its clock at send time + uniform [min, max) s as RFC 3339 with
//!    milliseconds, so due times are truly uniform; with `run-after-sec` it sends a whole number
//!    of seconds uniform in [min, max] (the server's clock at accept time is the base).
//! 2. **Backlog** (`--backlog-jobs`): every job gets the same `run_at` T, far enough ahead that
//!    scheduling finishes first (`--backlog-lead-sec`; by default derived from the scheduling
//!    rate the spread phase measured). Execution rate = jobs / (latest `finished_at` − T).
//! 3. **Memory** (`--pending`): jobs due in one day; the server's VmRSS and VmHWM
//!    (`/proc/<pid>/status`) are read before scheduling, right after, and after `--idle-sec`
//!    idle seconds. The data directory's size on disk is reported too.
//!
//! After the spread and backlog phases the bench waits until the server's
//! `herald_job_runs_total` (summed over outcomes, from `/metrics`) has grown by the number of jobs
//! scheduled, then reads every job of the phase back through `GET /bots/jobs/jobs?limit=1000&
//! before=<id>` (all statuses, newest first, paged with `next_before`, stopping below the
//! phase's lowest job id): the statuses, each run's outcome, and its `lateness_ms`
//! (`started_at − due_at`, which the server stores with millisecond resolution). Execution rates
//! come from the runs' own timestamps.
//!
//! Wall-clock timestamps in the API (`due_at`, `started_at`, `finished_at`) are compared with
//! the bench's system clock only in the backlog phase (T is the bench's); the server runs on the
//! same machine, so both read the same clock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::client::{connect, get_json, reconnect, request_head};
use crate::load::timed_post;
use crate::server::{ADMIN_TOKEN, JOBS_BOT_ID, JOBS_TRIGGER, Server};
use crate::stats::{ErrorTally, LatencyHist, LatencySummary, Table, Target, per_sec, round3};
use crate::{CommonArgs, with_server};

/// Targets the server must hit (printed next to the measurements, never asserted).
const TARGET_LATENESS_P99_MS: f64 = 50.0;
const TARGET_BACKLOG_RATE: f64 = 30_000.0;
/// "RSS ≤ 100 MB with 1M pending", read as MiB like every other RSS the bench prints.
const TARGET_PENDING_RSS_MIB: f64 = 100.0;

/// Concurrent requests while creating leads.
const LEAD_CONCURRENCY: usize = 8;
/// Longest a single schedule request may take before it counts as a `timeout` error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Jobs per page when reading them back (the API's maximum).
const PAGE: usize = 1000;
/// How often the bench polls `/metrics` while waiting for runs.
const POLL: Duration = Duration::from_millis(250);
/// Scheduling rate assumed for the backlog's lead time when no spread phase measured one.
const ASSUMED_SCHEDULE_RATE: f64 = 2_000.0;
/// Most rows of the lateness-by-due-time table.
const TIMELINE_ROWS: usize = 40;
/// Error response bodies kept to show what went wrong.
const ERROR_SAMPLES: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    Spread,
    Backlog,
    Memory,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DueMode {
    /// `run_at` = send time + uniform [min, max) seconds, RFC 3339 with milliseconds.
    RunAt,
    /// `run_after_sec` = a whole number of seconds, uniform in [min, max].
    RunAfterSec,
}

#[derive(Args, Debug, Clone)]
pub struct JobsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Phase to run (each phase gets a freshly started server).
    #[arg(long, value_enum, default_value_t = Phase::All)]
    pub phase: Phase,
    /// Leads (contacts with a dialog with the `jobs` bot) the jobs go to, round-robin.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub leads: u32,
    /// Concurrent keep-alive connections scheduling jobs.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Jobs in the spread phase.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub spread_jobs: u64,
    /// How spread jobs say when they are due.
    #[arg(long, value_enum, default_value_t = DueMode::RunAt)]
    pub spread_due: DueMode,
    /// Earliest due time of a spread job, in seconds after it is sent.
    #[arg(long, default_value_t = 1.0, value_parser = crate::non_negative)]
    pub spread_min_sec: f64,
    /// Latest due time of a spread job, in seconds after it is sent.
    #[arg(long, default_value_t = 5.0, value_parser = crate::non_negative)]
    pub spread_max_sec: f64,
    /// Jobs in the backlog phase, all due at the same instant.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub backlog_jobs: u64,
    /// Seconds from the start of the backlog's scheduling to its due instant [default:
    /// 5 + 1.5 × jobs / the scheduling rate of the spread phase (or 2,000/s without one)].
    #[arg(long, value_parser = crate::positive)]
    pub backlog_lead_sec: Option<f64>,
    /// Jobs in the memory phase, all due one day ahead.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub pending: u64,
    /// Idle seconds after scheduling before the last memory reading.
    #[arg(long, default_value_t = 10.0, value_parser = crate::non_negative)]
    pub idle_sec: f64,
    /// Stop waiting for runs when none finished for this many seconds after the last job was
    /// due (the jobs not done are then reported).
    #[arg(long, default_value_t = 60.0, value_parser = crate::positive)]
    pub stall_timeout_sec: f64,
}

/// What one phase hands back for the summary.
struct PhaseReport {
    json: Value,
    table: Table,
    schedule_rate: f64,
}

pub async fn run(args: &JobsArgs) -> Result<()> {
    ensure!(
        args.spread_max_sec >= args.spread_min_sec,
        "--spread-min-sec must not be above --spread-max-sec"
    );
    if args.spread_due == DueMode::RunAfterSec {
        ensure!(
            args.spread_min_sec.fract() == 0.0 && args.spread_max_sec.fract() == 0.0,
            "with --spread-due run-after-sec, --spread-min-sec and --spread-max-sec must be whole"
        );
    }
    let all = args.phase == Phase::All;
    let mut result = json!({
        "scenario": "jobs",
        "params": {
            "phase": format!("{:?}", args.phase).to_lowercase(),
            "leads": args.leads,
            "concurrency": args.concurrency,
            "spread_jobs": args.spread_jobs,
            "spread_due": match args.spread_due {
                DueMode::RunAt => "run_at",
                DueMode::RunAfterSec => "run_after_sec",
            },
            "spread_min_sec": args.spread_min_sec,
            "spread_max_sec": args.spread_max_sec,
            "backlog_jobs": args.backlog_jobs,
            "backlog_lead_sec": args.backlog_lead_sec,
            "pending": args.pending,
            "idle_sec": args.idle_sec,
            "client_threads": args.common.client_threads,
        },
    });
    let mut table = Table::default();
    let mut rate_hint = None;
    if all || args.phase == Phase::Spread {
        let r = with_server(&args.common, async |server| spread(args, server).await).await?;
        rate_hint = Some(r.schedule_rate).filter(|r| *r > 0.0);
        result["spread"] = r.json;
        table.extend(r.table);
    }
    if all || args.phase == Phase::Backlog {
        let r = with_server(&args.common, async |server| {
            backlog(args, server, rate_hint).await
        })
        .await?;
        result["backlog"] = r.json;
        table.extend(r.table);
    }
    if all || args.phase == Phase::Memory {
        let r = with_server(&args.common, async |server| memory(args, server).await).await?;
        result["memory"] = r.json;
        table.extend(r.table);
    }
    println!("\n== summary (jobs)\n{}", table.render());
    println!("RESULT {result}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phases.

async fn spread(args: &JobsArgs, server: &mut Server) -> Result<PhaseReport> {
    let bench = Bench::setup(args, server).await?;
    let (due, how) = match args.spread_due {
        DueMode::RunAt => (
            Due::RandomAt {
                min: args.spread_min_sec,
                max: args.spread_max_sec,
            },
            format!(
                "run_at = send time + uniform [{}, {}) s, RFC 3339 with ms",
                args.spread_min_sec, args.spread_max_sec
            ),
        ),
        DueMode::RunAfterSec => (
            Due::RandomAfter {
                min: args.spread_min_sec as u64,
                max: args.spread_max_sec as u64,
            },
            format!(
                "run_after_sec = whole seconds uniform in [{}, {}]",
                args.spread_min_sec, args.spread_max_sec
            ),
        ),
    };
    println!(
        "\n== spread: {} jobs over {} connections, {how}",
        args.spread_jobs, args.concurrency
    );
    let runs_before = bench.runs_total().await?;
    let sched = bench
        .schedule(args.concurrency, args.spread_jobs, due)
        .await?;
    server.check_alive()?;
    sched.print();
    println!("\n== spread: waiting for the runs");
    let wait = bench
        .wait_runs(server, runs_before, sched.ok, sched.max_due_ms, args)
        .await?;
    let runs = bench.collect(&sched).await?;
    runs.print(sched.ok, Some(TARGET_LATENESS_P99_MS));
    runs.print_timeline();
    let server_lateness = bench.server_lateness().await.unwrap_or(Value::Null);

    let sched_rate = sched.rate();
    let accept = sched.hist.summary();
    let lateness = runs.lateness.summary();
    let exec_window_ms = runs
        .max_finished
        .zip(runs.min_started)
        .map_or(0, |(f, s)| f - s);
    let exec_rate = per_ms(runs.ran, exec_window_ms);
    let mut table = Table::default();
    table.row("spread: scheduled/s", sched_rate, "/s", Target::None);
    table.row("spread: schedule p50", accept.p50_ms, "ms", Target::None);
    table.row("spread: schedule p99", accept.p99_ms, "ms", Target::None);
    table.row(
        "spread: schedule errors",
        sched.errors.total() as f64,
        "",
        Target::AtMost(0.0),
    );
    table.row(
        "spread: executed/s (first start..last finish)",
        exec_rate,
        "/s",
        Target::None,
    );
    table.row("spread: lateness p50", lateness.p50_ms, "ms", Target::None);
    table.row(
        "spread: lateness p99",
        lateness.p99_ms,
        "ms",
        Target::AtMost(TARGET_LATENESS_P99_MS),
    );
    table.row("spread: lateness max", lateness.max_ms, "ms", Target::None);
    table.row(
        "spread: jobs not done",
        sched.ok.saturating_sub(runs.done) as f64,
        "",
        Target::AtMost(0.0),
    );
    Ok(PhaseReport {
        json: json!({
            "due": how,
            "schedule": sched.json(),
            "wait": wait.json(),
            "runs": runs.json(),
            "executed_per_s": round3(exec_rate),
            "exec_window_s": round3(exec_window_ms as f64 / 1000.0),
            "lateness_ms": lateness,
            "server_metrics_lateness_s": server_lateness,
            "target_lateness_p99_ms": TARGET_LATENESS_P99_MS,
        }),
        table,
        schedule_rate: sched_rate,
    })
}

async fn backlog(
    args: &JobsArgs,
    server: &mut Server,
    rate_hint: Option<f64>,
) -> Result<PhaseReport> {
    let bench = Bench::setup(args, server).await?;
    let n = args.backlog_jobs;
    let lead = args
        .backlog_lead_sec
        .unwrap_or_else(|| 5.0 + 1.5 * n as f64 / rate_hint.unwrap_or(ASSUMED_SCHEDULE_RATE));
    let due_ms = now_ms() + (lead * 1000.0).round() as i64;
    let run_at = rfc3339_ms(due_ms);
    println!(
        "\n== backlog: {n} jobs over {} connections, all due at {run_at} ({lead:.1} s from now{})",
        args.concurrency,
        match (args.backlog_lead_sec, rate_hint) {
            (Some(_), _) => String::new(),
            (None, Some(r)) => format!("; from the spread phase's {r:.0} scheduled/s"),
            (None, None) => format!("; assuming {ASSUMED_SCHEDULE_RATE:.0} scheduled/s"),
        }
    );
    let runs_before = bench.runs_total().await?;
    let sched = bench
        .schedule(args.concurrency, n, Due::At(Arc::from(run_at.as_str())))
        .await?;
    server.check_alive()?;
    sched.print();
    let overran = sched.ended_ms > due_ms;
    if overran {
        eprintln!(
            "warning: scheduling ended {:.3} s after the due instant: the backlog was not complete \
             when it fell due; pass a larger --backlog-lead-sec",
            (sched.ended_ms - due_ms) as f64 / 1000.0
        );
    } else {
        println!(
            "scheduling ended {:.3} s before the due instant",
            (due_ms - sched.ended_ms) as f64 / 1000.0
        );
    }
    println!("\n== backlog: waiting for the runs");
    let wait = bench
        .wait_runs(server, runs_before, sched.ok, due_ms, args)
        .await?;
    let runs = bench.collect(&sched).await?;
    runs.print(sched.ok, None);
    let server_lateness = bench.server_lateness().await.unwrap_or(Value::Null);

    let lateness = runs.lateness.summary();
    let drain_ms = runs.max_finished.map_or(0, |f| f - due_ms);
    let exec_rate = per_ms(runs.ran, drain_ms);
    println!(
        "executed {} runs in {:.3} s after the due instant => {:.0} jobs/s (target >= {:.0})",
        runs.ran,
        drain_ms as f64 / 1000.0,
        exec_rate,
        TARGET_BACKLOG_RATE
    );
    let mut table = Table::default();
    table.row("backlog: scheduled/s", sched.rate(), "/s", Target::None);
    table.row(
        "backlog: schedule errors",
        sched.errors.total() as f64,
        "",
        Target::AtMost(0.0),
    );
    table.row(
        "backlog: executed/s (N / (last finish - T))",
        exec_rate,
        "/s",
        Target::AtLeast(TARGET_BACKLOG_RATE),
    );
    table.row("backlog: lateness p50", lateness.p50_ms, "ms", Target::None);
    table.row("backlog: lateness p99", lateness.p99_ms, "ms", Target::None);
    table.row("backlog: lateness max", lateness.max_ms, "ms", Target::None);
    table.row(
        "backlog: jobs not done",
        sched.ok.saturating_sub(runs.done) as f64,
        "",
        Target::AtMost(0.0),
    );
    Ok(PhaseReport {
        json: json!({
            "run_at": run_at,
            "lead_s": round3(lead),
            "scheduling_overran_due": overran,
            "schedule": sched.json(),
            "wait": wait.json(),
            "runs": runs.json(),
            "drain_s": round3(drain_ms as f64 / 1000.0),
            "executed_per_s": round3(exec_rate),
            "lateness_ms": lateness,
            "server_metrics_lateness_s": server_lateness,
            "target_executed_per_s": TARGET_BACKLOG_RATE,
        }),
        table,
        schedule_rate: sched.rate(),
    })
}

async fn memory(args: &JobsArgs, server: &mut Server) -> Result<PhaseReport> {
    let bench = Bench::setup(args, server).await?;
    let n = args.pending;
    let run_at = rfc3339_ms(now_ms() + 86_400_000);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let read = |server: &Server, when: &str| -> Result<crate::server::Memory> {
        let m = server
            .memory()
            .with_context(|| format!("reading /proc/<pid>/status of the server ({when})"))?;
        println!(
            "server memory {when}: RSS {:.1} MiB (anon {:.1}, file {:.1}, shmem {:.1}), \
             peak (VmHWM) {:.1} MiB; data dir {:.1} MiB",
            mib(m.rss_kib),
            mib(m.anon_kib),
            mib(m.file_kib),
            mib(m.shmem_kib),
            mib(m.peak_rss_kib),
            server.data_bytes() as f64 / 1048576.0
        );
        Ok(m)
    };
    println!(
        "\n== memory: {n} jobs over {} connections, all due at {run_at}",
        args.concurrency
    );
    let before = read(server, "before scheduling")?;
    let disk_before = server.data_bytes();
    let sched = bench
        .schedule(args.concurrency, n, Due::At(Arc::from(run_at.as_str())))
        .await?;
    server.check_alive()?;
    sched.print();
    let after = read(server, "right after scheduling")?;
    let disk_after = server.data_bytes();
    println!("idle for {} s", args.idle_sec);
    tokio::time::sleep(Duration::from_secs_f64(args.idle_sec)).await;
    server.check_alive()?;
    let idle = read(server, &format!("after {} s idle", args.idle_sec))?;
    let disk_idle = server.data_bytes();

    let mut table = Table::default();
    table.row("memory: scheduled/s", sched.rate(), "/s", Target::None);
    table.row(
        "memory: schedule errors",
        sched.errors.total() as f64,
        "",
        Target::AtMost(0.0),
    );
    table.row(
        "memory: RSS before scheduling",
        mib(before.rss_kib),
        "MiB",
        Target::None,
    );
    table.row(
        "memory: RSS right after scheduling",
        mib(after.rss_kib),
        "MiB",
        Target::AtMost(TARGET_PENDING_RSS_MIB),
    );
    table.row(
        "memory: RSS after idle",
        mib(idle.rss_kib),
        "MiB",
        Target::AtMost(TARGET_PENDING_RSS_MIB),
    );
    table.row(
        "memory: anonymous RSS after idle",
        mib(idle.anon_kib),
        "MiB",
        Target::None,
    );
    table.row(
        "memory: peak RSS (VmHWM)",
        mib(idle.peak_rss_kib),
        "MiB",
        Target::None,
    );
    table.row(
        "memory: data dir after idle",
        disk_idle as f64 / 1048576.0,
        "MiB",
        Target::None,
    );
    let mem = |m: crate::server::Memory, disk: u64| {
        json!({
            "rss_kib": m.rss_kib,
            "peak_rss_kib": m.peak_rss_kib,
            "rss_anon_kib": m.anon_kib,
            "rss_file_kib": m.file_kib,
            "rss_shmem_kib": m.shmem_kib,
            "data_dir_bytes": disk,
        })
    };
    Ok(PhaseReport {
        json: json!({
            "run_at": run_at,
            "schedule": sched.json(),
            "before": mem(before, disk_before),
            "after_scheduling": mem(after, disk_after),
            "after_idle": mem(idle, disk_idle),
            "target_rss_mib": TARGET_PENDING_RSS_MIB,
        }),
        table,
        schedule_rate: sched.rate(),
    })
}

// ---------------------------------------------------------------------------------------------
// Setup: the leads and the connections' shared parts.

/// One phase's client side: an admin client for the slow paths, the raw-connection endpoint
/// for scheduling, and the leads.
struct Bench {
    admin: reqwest::Client,
    base: String,
    endpoint: Endpoint,
}

/// Everything the scheduling connections share.
#[derive(Clone)]
struct Endpoint {
    addr: SocketAddr,
    /// Fixed header lines of every request (see [`request_head`]).
    head: Arc<str>,
    path: Arc<str>,
    leads: Arc<Vec<i64>>,
}

impl Bench {
    async fn setup(args: &JobsArgs, server: &Server) -> Result<Bench> {
        let admin = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the admin HTTP client")?;
        let base = server.base_url().to_owned();
        println!("\n== create {} leads", args.leads);
        let t = Instant::now();
        let leads = create_leads(&admin, &base, args.leads).await?;
        println!(
            "created {} leads in {:.3} s ({:.0}/s)",
            leads.len(),
            t.elapsed().as_secs_f64(),
            per_sec(leads.len() as u64, t.elapsed())
        );
        let endpoint = Endpoint {
            addr: server.addr(),
            head: request_head(
                &server.addr().to_string(),
                Some(&format!("Bearer {ADMIN_TOKEN}")),
            )
            .context("building the request headers")?
            .into(),
            path: format!("/bots/{JOBS_BOT_ID}/jobs/schedule").into(),
            leads: Arc::new(leads),
        };
        Ok(Bench {
            admin,
            base,
            endpoint,
        })
    }

    async fn metrics(&self) -> Result<String> {
        let url = format!("{}/metrics", self.base);
        let resp = self
            .admin
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp.text().await.with_context(|| format!("GET {url}"))?;
        if !status.is_success() {
            bail!("GET {url} -> {status}: {body}");
        }
        Ok(body)
    }

    /// `herald_job_runs_total`, summed over outcomes (0 before the first run).
    async fn runs_total(&self) -> Result<u64> {
        Ok(metric_sum(&self.metrics().await?, "herald_job_runs_total") as u64)
    }

    /// The server's own view of lateness: `herald_job_lateness_seconds` quantiles, count and sum
    /// (its quantiles cover a recent window only, not the whole phase).
    async fn server_lateness(&self) -> Result<Value> {
        let text = self.metrics().await?;
        let mut out = serde_json::Map::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("herald_job_lateness_seconds") else {
                continue;
            };
            let Some((key, value)) = rest.rsplit_once(' ') else {
                continue;
            };
            let key = key.trim();
            let key = match key.strip_prefix("{quantile=\"") {
                Some(q) => format!("q{}", q.trim_end_matches("\"}")),
                None => key.trim_start_matches('_').to_owned(),
            };
            if let Ok(v) = value.trim().parse::<f64>() {
                out.insert(key, json!(round6(v)));
            }
        }
        if !out.is_empty() {
            println!(
                "server /metrics herald_job_lateness_seconds (count and sum since start; \
                 quantiles over the exporter's recent window only): {}",
                Value::Object(out.clone())
            );
        }
        Ok(Value::Object(out))
    }
}

async fn create_leads(admin: &reqwest::Client, base: &str, n: u32) -> Result<Vec<i64>> {
    stream::iter(0..n)
        .map(|i| async move {
            let chat = format!("l{i}");
            let url = format!("{base}/api/v1/bots/{JOBS_BOT_ID}/dialogs/{chat}/messages");
            let resp = admin
                .post(&url)
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"text": "hi", "wait": true}))
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = resp.status();
            if !status.is_success() {
                let body = resp.text().await.unwrap_or_default();
                bail!("POST {url} -> {status}: {body}");
            }
            let url = format!("{base}/api/v1/bots/{JOBS_BOT_ID}/dialogs/{chat}");
            let v = get_json(admin, &url).await?;
            v.get("contactId")
                .and_then(Value::as_i64)
                .with_context(|| format!("GET {url}: no numeric contactId in {v}"))
        })
        .buffered(LEAD_CONCURRENCY)
        .try_collect()
        .await
}

// ---------------------------------------------------------------------------------------------
// Scheduling load.

/// When the scheduled jobs are due.
#[derive(Clone)]
enum Due {
    /// The same `run_at` for every job.
    At(Arc<str>),
    /// `run_at` = the bench's clock when the body is built + uniform [min, max) seconds.
    RandomAt { min: f64, max: f64 },
    /// `run_after_sec` uniform in min..=max.
    RandomAfter { min: u64, max: u64 },
}

impl Due {
    /// The request body for a job of `lead`, and when the job is due (ms since the epoch, by the
    /// bench's clock).
    fn body(&self, lead: i64, rng: &mut Rng) -> (String, i64) {
        match self {
            Due::At(at) => (
                format!(r#"{{"trigger_code":"{JOBS_TRIGGER}","lead_id":{lead},"run_at":"{at}"}}"#),
                parse_rfc3339_ms(at).unwrap_or(0),
            ),
            Due::RandomAt { min, max } => {
                let due = now_ms() + ((min + (max - min) * rng.unit()) * 1000.0).round() as i64;
                (
                    format!(
                        r#"{{"trigger_code":"{JOBS_TRIGGER}","lead_id":{lead},"run_at":"{}"}}"#,
                        rfc3339_ms(due)
                    ),
                    due,
                )
            }
            Due::RandomAfter { min, max } => {
                let secs = min + rng.next_u64() % (max - min + 1);
                (
                    format!(
                        r#"{{"trigger_code":"{JOBS_TRIGGER}","lead_id":{lead},"run_after_sec":{secs}}}"#
                    ),
                    now_ms() + secs as i64 * 1000,
                )
            }
        }
    }
}

/// What a scheduling run did.
struct Scheduled {
    ok: u64,
    errors: ErrorTally,
    error_samples: Vec<String>,
    hist: LatencyHist,
    elapsed: Duration,
    /// Lowest and highest job id the server answered with.
    min_id: i64,
    max_id: i64,
    /// Latest due time of a scheduled job (ms since the epoch, bench clock).
    max_due_ms: i64,
    /// When the last answer arrived (ms since the epoch, bench clock).
    ended_ms: i64,
}

impl Scheduled {
    fn rate(&self) -> f64 {
        per_sec(self.ok, self.elapsed)
    }

    fn print(&self) {
        println!(
            "scheduled {} jobs in {:.3} s => {:.0} jobs/s; ids {}..={}",
            self.ok,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.min_id,
            self.max_id
        );
        println!("schedule latency: {}", self.hist.summary().line());
        println!("errors: {}", self.errors.line());
        for s in &self.error_samples {
            println!("  e.g. {s}");
        }
    }

    fn json(&self) -> Value {
        json!({
            "scheduled": self.ok,
            "seconds": round3(self.elapsed.as_secs_f64()),
            "jobs_per_s": round3(self.rate()),
            "latency_ms": self.hist.summary(),
            "errors": self.errors,
            "error_samples": self.error_samples,
            "min_id": self.min_id,
            "max_id": self.max_id,
        })
    }
}

#[derive(Default)]
struct WorkerTally {
    ok: u64,
    hist: LatencyHist,
    errors: ErrorTally,
    error_samples: Vec<String>,
    min_id: Option<i64>,
    max_id: Option<i64>,
    max_due_ms: i64,
}

#[derive(Deserialize)]
struct ScheduleAnswer {
    job: ScheduledJob,
}

#[derive(Deserialize)]
struct ScheduledJob {
    id: i64,
}

impl Bench {
    /// Schedules `count` jobs over `concurrency` connections as fast as the server answers.
    async fn schedule(&self, concurrency: u32, count: u64, due: Due) -> Result<Scheduled> {
        let mut senders = Vec::with_capacity(concurrency as usize);
        for _ in 0..concurrency {
            senders.push(connect(self.endpoint.addr).await?);
        }
        let next = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks: Vec<JoinHandle<WorkerTally>> = Vec::with_capacity(senders.len());
        for (w, mut sender) in senders.into_iter().enumerate() {
            let ep = self.endpoint.clone();
            let (next, done, due) = (Arc::clone(&next), Arc::clone(&done), due.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(0x5eed_0000 + w as u64);
                let mut tally = WorkerTally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let lead = ep.leads[(i % ep.leads.len() as u64) as usize];
                    let (body, due_ms) = due.body(lead, &mut rng);
                    let (result, sent) = timed_post(
                        &mut sender,
                        &ep.head,
                        &ep.path,
                        body.as_bytes(),
                        REQUEST_TIMEOUT,
                    )
                    .await;
                    let answered = sent.elapsed();
                    match result.map(|r| (r.status, r.body)) {
                        Ok((201, bytes)) => {
                            match serde_json::from_slice::<ScheduleAnswer>(&bytes) {
                                Ok(a) => {
                                    tally.hist.record(answered);
                                    tally.ok += 1;
                                    tally.min_id =
                                        Some(tally.min_id.map_or(a.job.id, |m| m.min(a.job.id)));
                                    tally.max_id =
                                        Some(tally.max_id.map_or(a.job.id, |m| m.max(a.job.id)));
                                    tally.max_due_ms = tally.max_due_ms.max(due_ms);
                                    done.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(_) => {
                                    tally.errors.kind("unexpected_body");
                                    sample(&mut tally.error_samples, 201, &bytes);
                                }
                            }
                        }
                        Ok((status, bytes)) => {
                            tally.errors.status(status);
                            sample(&mut tally.error_samples, status, &bytes);
                        }
                        Err(failure) => {
                            failure.tally(&mut tally.errors);
                            match reconnect(ep.addr, Instant::now() + REQUEST_TIMEOUT).await {
                                Some(s) => sender = s,
                                None => break,
                            }
                        }
                    }
                }
                tally
            }));
        }
        let progress = tokio::spawn(crate::load::progress_printer(
            Arc::clone(&done),
            start,
            "scheduled",
        ));
        let mut total = Scheduled {
            ok: 0,
            errors: ErrorTally::default(),
            error_samples: Vec::new(),
            hist: LatencyHist::new(),
            elapsed: Duration::ZERO,
            min_id: i64::MAX,
            max_id: i64::MIN,
            max_due_ms: 0,
            ended_ms: 0,
        };
        for t in tasks {
            let tally = t.await.context("scheduling task panicked")?;
            total.ok += tally.ok;
            total.hist.merge(&tally.hist);
            total.errors.merge(&tally.errors);
            for s in tally.error_samples {
                if total.error_samples.len() < ERROR_SAMPLES {
                    total.error_samples.push(s);
                }
            }
            total.min_id = total.min_id.min(tally.min_id.unwrap_or(i64::MAX));
            total.max_id = total.max_id.max(tally.max_id.unwrap_or(i64::MIN));
            total.max_due_ms = total.max_due_ms.max(tally.max_due_ms);
        }
        total.elapsed = start.elapsed();
        total.ended_ms = now_ms();
        progress.abort();
        ensure!(
            total.ok > 0,
            "no job was scheduled; errors: {}{}",
            total.errors.line(),
            total
                .error_samples
                .first()
                .map(|s| format!(" (e.g. {s})"))
                .unwrap_or_default()
        );
        Ok(total)
    }
}

fn sample(samples: &mut Vec<String>, status: u16, body: &[u8]) {
    if samples.len() < ERROR_SAMPLES {
        let text = String::from_utf8_lossy(body);
        samples.push(format!(
            "{status}: {}",
            text.chars().take(300).collect::<String>()
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting for the runs and reading them back.

struct Wait {
    runs: u64,
    elapsed: Duration,
    timed_out: bool,
}

impl Wait {
    fn json(&self) -> Value {
        json!({
            "server_runs_delta": self.runs,
            "seconds": round3(self.elapsed.as_secs_f64()),
            "timed_out": self.timed_out,
        })
    }
}

impl Bench {
    /// Polls `/metrics` until `expected` more runs finished than `before`, or none finished for
    /// `--stall-timeout-sec` after `last_due_ms`.
    async fn wait_runs(
        &self,
        server: &mut Server,
        before: u64,
        expected: u64,
        last_due_ms: i64,
        args: &JobsArgs,
    ) -> Result<Wait> {
        let stall = Duration::from_secs_f64(args.stall_timeout_sec);
        let start = Instant::now();
        let mut last_print = start;
        let first = self.runs_total().await?.saturating_sub(before);
        let (mut printed, mut seen) = (first, first);
        let mut last_change = Instant::now();
        loop {
            server.check_alive()?;
            let runs = self.runs_total().await?.saturating_sub(before);
            // Before the last due time nothing counts as a stall: the stall clock starts then.
            if runs != seen || now_ms() <= last_due_ms {
                seen = runs;
                last_change = Instant::now();
            }
            if runs >= expected {
                println!(
                    "all {expected} runs finished {:.3} s after scheduling ended",
                    start.elapsed().as_secs_f64()
                );
                return Ok(Wait {
                    runs,
                    elapsed: start.elapsed(),
                    timed_out: false,
                });
            }
            if now_ms() > last_due_ms && last_change.elapsed() >= stall {
                eprintln!(
                    "warning: {runs} of {expected} runs finished; none for {} s after the last \
                     job was due: giving up waiting",
                    stall.as_secs_f64()
                );
                return Ok(Wait {
                    runs,
                    elapsed: start.elapsed(),
                    timed_out: true,
                });
            }
            // Every second while runs finish; every 5 s while waiting for the due time.
            let every = if runs == printed { 5 } else { 1 };
            if last_print.elapsed() >= Duration::from_secs(every) {
                let secs = last_print.elapsed().as_secs_f64();
                println!(
                    "  t={:>6.1}s  {:>8.0} runs/s  ({runs} of {expected} finished{})",
                    start.elapsed().as_secs_f64(),
                    (runs - printed) as f64 / secs,
                    if now_ms() < last_due_ms {
                        format!(
                            "; last due in {:.1} s",
                            (last_due_ms - now_ms()) as f64 / 1000.0
                        )
                    } else {
                        String::new()
                    }
                );
                printed = runs;
                last_print = Instant::now();
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Reads back every job of `sched` (ids `min_id..=max_id`) with its last run.
    async fn collect(&self, sched: &Scheduled) -> Result<Runs> {
        let t = Instant::now();
        let mut runs = Runs::default();
        let mut before = sched.max_id.saturating_add(1);
        'pages: loop {
            let url = format!(
                "{}/bots/{JOBS_BOT_ID}/jobs?limit={PAGE}&before={before}",
                self.base
            );
            let page: JobPage = serde_json::from_value(get_json(&self.admin, &url).await?)
                .with_context(|| format!("GET {url}: unexpected shape"))?;
            runs.pages += 1;
            for job in &page.jobs {
                if job.id < sched.min_id {
                    break 'pages;
                }
                runs.add(job)?;
            }
            match page.next_before {
                Some(n) if n < before => before = n,
                _ => break,
            }
        }
        println!(
            "read back {} jobs in {} pages in {:.3} s",
            runs.jobs,
            runs.pages,
            t.elapsed().as_secs_f64()
        );
        Ok(runs)
    }
}

#[derive(Deserialize)]
struct JobPage {
    jobs: Vec<JobView>,
    next_before: Option<i64>,
}

#[derive(Deserialize)]
struct JobView {
    id: i64,
    status: String,
    #[serde(default)]
    last_run: Option<RunView>,
}

#[derive(Deserialize)]
struct RunView {
    due_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    lateness_ms: Option<f64>,
    outcome: String,
}

/// The runs of one phase as the jobs API reports them.
#[derive(Default)]
struct Runs {
    pages: u64,
    jobs: u64,
    /// Jobs with status `done`.
    done: u64,
    /// Runs that started (have a `lateness_ms`).
    ran: u64,
    /// Runs that started before they were due.
    early: u64,
    statuses: BTreeMap<String, u64>,
    outcomes: BTreeMap<String, u64>,
    lateness: LatencyHist,
    /// (due_at ms, lateness) of every started run, for the timeline.
    samples: Vec<(i64, Duration)>,
    min_due: Option<i64>,
    max_due: Option<i64>,
    min_started: Option<i64>,
    max_finished: Option<i64>,
}

impl Runs {
    fn add(&mut self, job: &JobView) -> Result<()> {
        self.jobs += 1;
        *self.statuses.entry(job.status.clone()).or_default() += 1;
        if job.status == "done" {
            self.done += 1;
        }
        let Some(run) = &job.last_run else {
            return Ok(());
        };
        *self.outcomes.entry(run.outcome.clone()).or_default() += 1;
        let due = parse_rfc3339_ms(&run.due_at)
            .with_context(|| format!("job {}: due_at {:?}", job.id, run.due_at))?;
        self.min_due = Some(self.min_due.map_or(due, |m| m.min(due)));
        self.max_due = Some(self.max_due.map_or(due, |m| m.max(due)));
        if let Some(s) = &run.started_at {
            let s =
                parse_rfc3339_ms(s).with_context(|| format!("job {}: started_at {s:?}", job.id))?;
            self.min_started = Some(self.min_started.map_or(s, |m| m.min(s)));
        }
        if let Some(f) = &run.finished_at {
            let f = parse_rfc3339_ms(f)
                .with_context(|| format!("job {}: finished_at {f:?}", job.id))?;
            self.max_finished = Some(self.max_finished.map_or(f, |m| m.max(f)));
        }
        if let Some(ms) = run.lateness_ms {
            self.ran += 1;
            if ms < 0.0 {
                self.early += 1;
            }
            let late = Duration::from_secs_f64(ms.max(0.0) / 1000.0);
            self.lateness.record(late);
            self.samples.push((due, late));
        }
        Ok(())
    }

    fn print(&self, scheduled: u64, target_p99_ms: Option<f64>) {
        let line = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "jobs read back {} of {scheduled}; status {}; last-run outcome {}",
            self.jobs,
            line(&self.statuses),
            line(&self.outcomes)
        );
        println!(
            "lateness (started_at - due_at, 1 ms resolution): {}{}{}",
            self.lateness.summary().line(),
            target_p99_ms
                .map(|t| format!("  (target p99 <= {t} ms)"))
                .unwrap_or_default(),
            if self.early > 0 {
                format!("; {} started before due (counted as 0)", self.early)
            } else {
                String::new()
            }
        );
        if let (Some(d0), Some(d1), Some(s0), Some(f1)) = (
            self.min_due,
            self.max_due,
            self.min_started,
            self.max_finished,
        ) {
            println!(
                "due window {:.3} s; first start → last finish {:.3} s => {:.0} runs/s",
                (d1 - d0) as f64 / 1000.0,
                (f1 - s0) as f64 / 1000.0,
                per_ms(self.ran, f1 - s0)
            );
        }
    }

    /// Lateness by due time: at most `TIMELINE_ROWS` buckets of at least one second.
    fn timeline(&self) -> Vec<TimelineRow> {
        let (Some(d0), Some(d1)) = (self.min_due, self.max_due) else {
            return Vec::new();
        };
        let width = ((d1 - d0) / TIMELINE_ROWS as i64 + 1).max(1000);
        let mut buckets: BTreeMap<i64, LatencyHist> = BTreeMap::new();
        for (due, late) in &self.samples {
            buckets.entry((due - d0) / width).or_default().record(*late);
        }
        buckets
            .into_iter()
            .map(|(i, h)| TimelineRow {
                from_s: round3((i * width) as f64 / 1000.0),
                to_s: round3(((i + 1) * width) as f64 / 1000.0),
                lateness_ms: h.summary(),
            })
            .collect()
    }

    fn print_timeline(&self) {
        let rows = self.timeline();
        if rows.len() < 2 {
            return;
        }
        println!("lateness by due time (seconds after the first due time):");
        for r in &rows {
            println!(
                "  {:>7.1}..{:<7.1} runs {:>7}  p50 {:>9.3} ms  p99 {:>9.3} ms  max {:>9.3} ms",
                r.from_s,
                r.to_s,
                r.lateness_ms.count,
                r.lateness_ms.p50_ms,
                r.lateness_ms.p99_ms,
                r.lateness_ms.max_ms
            );
        }
    }

    fn json(&self) -> Value {
        json!({
            "timeline": self.timeline(),
            "jobs_read": self.jobs,
            "pages": self.pages,
            "done": self.done,
            "ran": self.ran,
            "started_early": self.early,
            "statuses": self.statuses,
            "outcomes": self.outcomes,
            "due_window_s": self.min_due.zip(self.max_due).map(|(a, b)| round3((b - a) as f64 / 1000.0)),
        })
    }
}

/// A bucket of [`Runs::timeline`].
#[derive(Serialize)]
struct TimelineRow {
    from_s: f64,
    to_s: f64,
    lateness_ms: LatencySummary,
}

/// Sum of every sample of the metric `name` (all label sets) in a Prometheus text exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            rest.rsplit_once(' ')?.1.trim().parse::<f64>().ok()
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Small helpers: clock, RFC 3339, random numbers.

/// `count` per second over `ms` milliseconds (0 when no time passed).
fn per_ms(count: u64, ms: i64) -> f64 {
    if ms > 0 {
        count as f64 * 1000.0 / ms as f64
    } else {
        0.0
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// The system clock in milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `2026-11-22T10:00:00.123Z` for a time in ms since the epoch.
fn rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Parses RFC 3339 (`Z` or a `±hh:mm` offset, any number of fractional digits; digits past
/// milliseconds are truncated) into ms since the epoch.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i];
        let first3: String = digits.chars().chain("000".chars()).take(3).collect();
        frac_ms = first3.parse().ok()?;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let v = num(i + 1, 2)? * 60 + num(i + 4, 2)?;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(
        days * 86_400_000 + h * 3_600_000 + mi * 60_000 + sec * 1000 + frac_ms
            - offset_min * 60_000,
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01, proleptic Gregorian.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// SplitMix64: a small, seeded generator, good enough to spread due times.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            parse_rfc3339_ms("2026-07-01T10:00:00Z"),
            Some(1_782_900_000_000)
        );
        for ms in [
            -1i64,
            1,
            86_399_999,
            951_868_799_999,
            1_782_900_000_123,
            4_102_444_800_000,
        ] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            parse_rfc3339_ms("2026-07-01T12:00:00.5+02:00"),
            Some(1_782_900_000_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-07-01T10:00:00.123456789Z"),
            Some(1_782_900_000_123)
        );
        assert_eq!(parse_rfc3339_ms("2026-07-01 10:00:00"), None);
        assert_eq!(parse_rfc3339_ms("2026-07-01T10:00:00.Z"), None);
    }

    #[test]
    fn metric_sum_adds_label_sets() {
        let text = "# TYPE herald_job_runs_total counter\n\
                    herald_job_runs_total{outcome=\"ok\"} 10\n\
                    herald_job_runs_total{outcome=\"error\"} 2\n\
                    herald_job_runs_total_other 7\n";
        assert_eq!(metric_sum(text, "herald_job_runs_total"), 12.0);
        assert_eq!(metric_sum("", "herald_job_runs_total"), 0.0);
    }

    #[test]
    fn random_due_within_bounds() {
        let mut rng = Rng(1);
        let due = Due::RandomAfter { min: 1, max: 5 };
        let mut seen = [false; 6];
        for _ in 0..1000 {
            let (body, _) = due.body(7, &mut rng);
            let v: Value = serde_json::from_str(&body).expect("the body is JSON");
            let s = v["run_after_sec"]
                .as_u64()
                .expect("run_after_sec is a number");
            assert!((1..=5).contains(&s), "{body}");
            seen[s as usize] = true;
            assert_eq!(v["lead_id"], 7);
        }
        assert!(seen[1..].iter().all(|s| *s));
        let (body, due_ms) = Due::RandomAt { min: 1.0, max: 5.0 }.body(1, &mut rng);
        let v: Value = serde_json::from_str(&body).expect("the body is JSON");
        let at = v["run_at"]
            .as_str()
            .and_then(parse_rfc3339_ms)
            .expect("run_at is RFC 3339");
        assert_eq!(at, due_ms);
        let ahead = due_ms - now_ms();
        assert!((900..=5000).contains(&ahead), "{ahead}");
    }
}
