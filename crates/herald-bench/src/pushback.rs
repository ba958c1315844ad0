//! Scenario `pushback`: how fast Herald accepts pushback activations, how fast it handles the
//! queued events, and how long an activation takes to come back as a chatwidget reply.
//!
//! Phases:
//! 1. **Create** one pushback per dialog `c0..c{N-1}` (`POST /api/v1/pushbacks`, event `ping`).
//! 2. **Throughput**: `--concurrency` HTTP/1.1 keep-alive connections (bare sockets, see
//!    `client::Conn`, one task each, requests sequential per connection) fire `POST <link>` with a
//!    tiny JSON body as fast as they can for `--duration` s, round-robin over the links.
//!    Accept latency (request written → response body read) goes into a histogram.
//! 3. **Drain**: poll `GET /api/v1/admin/stats` until `events.pending == 0`; the handling rate is
//!    the accepted count over (throughput phase + drain time).
//! 4. **Latency**: open chatwidget WebSockets for `--latency-dialogs` dialogs, wait for `hello`
//!    and drain the replayed backlog, then fire activations open-loop at `--rate`/s for
//!    `--latency-duration` s over a few connections (the pacer never waits for responses).
//!    The n-th accepted activation of dialog `c<i>` is matched with the n-th `message` frame on
//!    that dialog's socket; accept→reply latency runs from the request send instant to the
//!    frame's arrival.
//! 5. **Report**: a summary table with the targets and one `RESULT {json}` line.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use clap::Args;
use futures_util::{SinkExt, StreamExt, TryStreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::CommonArgs;
use crate::client::{Conn, connect, reconnect};
use crate::load::{Endpoint, Outcome, REQUEST_TIMEOUT, ThroughputResult, closed_loop, post};
use crate::server::{ADMIN_TOKEN, BOT_ID, EventStats, Server, event_stats};
use crate::stats::{ErrorTally, LatencyHist, Table, Target, per_sec, round3};

/// Targets the server must hit (printed next to the measurements, never asserted).
const TARGET_ACCEPT_RATE: f64 = 25_000.0;
const TARGET_ACCEPT_P99_MS: f64 = 5.0;
const TARGET_REPLY_P99_MS: f64 = 10.0;
const TARGET_REPLY_RATE: f64 = 1_000.0;

/// Concurrent requests while creating pushbacks.
const CREATE_CONCURRENCY: usize = 8;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Time to wait for missing replies after the last activation answered.
const REPLY_GRACE: Duration = Duration::from_secs(5);
/// A socket's replayed backlog is considered drained after this long without a frame.
const BACKLOG_QUIET: Duration = Duration::from_secs(1);
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes a WebSocket reads per syscall.
const WS_READ_BUFFER: usize = 8 * 1024;
/// How often a socket sends an `ack` for the messages received since the last one (acks only
/// stop replays on reconnect, so they need not be prompt; fewer acks = less load on both sides).
const ACK_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Args, Debug, Clone)]
pub struct PushbackArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Dialogs (and pushbacks, one each) to create: c0..c<N-1>.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub dialogs: u32,
    /// Concurrent keep-alive connections in the throughput phase.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Seconds of the throughput phase (0 skips it and the drain).
    #[arg(long, default_value_t = 10.0, value_parser = crate::non_negative)]
    pub duration: f64,
    /// Activations per second in the latency phase.
    #[arg(long, default_value_t = 1000.0, value_parser = crate::positive)]
    pub rate: f64,
    /// Seconds of the latency phase (0 skips it).
    #[arg(long, default_value_t = 10.0, value_parser = crate::non_negative)]
    pub latency_duration: f64,
    /// Dialogs with an open WebSocket in the latency phase (the first K of --dialogs).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub latency_dialogs: u32,
}

/// A created pushback, ready to be activated over a raw HTTP/1.1 connection.
#[derive(Clone)]
struct Link {
    /// Origin-form request target, e.g. `/push_abc`.
    path: Arc<str>,
}

/// Everything the activation clients share.
#[derive(Clone)]
struct Links {
    endpoint: Endpoint,
    links: Arc<Vec<Link>>,
}

pub async fn run(args: &PushbackArgs, server: &mut Server) -> Result<()> {
    let admin = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the admin HTTP client")?;
    let base = server.base_url().to_owned();
    let mut result = json!({
        "scenario": "pushback",
        "params": {
            "dialogs": args.dialogs,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "rate": args.rate,
            "latency_duration_s": args.latency_duration,
            "latency_dialogs": args.latency_dialogs.min(args.dialogs),
            "client_threads": args.common.client_threads,
        },
    });
    let mut table = Table::default();

    // 1. Create the pushbacks.
    println!("\n== create {} pushbacks", args.dialogs);
    let t = Instant::now();
    let links = create_pushbacks(&admin, server, args.dialogs).await?;
    let create_time = t.elapsed();
    println!(
        "created {} pushbacks in {:.3} s ({:.0}/s)",
        links.len(),
        create_time.as_secs_f64(),
        per_sec(links.len() as u64, create_time)
    );
    result["create"] = json!({
        "count": links.len(),
        "seconds": round3(create_time.as_secs_f64()),
        "per_s": round3(per_sec(links.len() as u64, create_time)),
    });
    let target = Links {
        endpoint: Endpoint::new(server.addr(), None)?,
        links: Arc::new(links),
    };
    let counter = Arc::new(AtomicU64::new(0));

    // 2. Throughput, 3. drain.
    if args.duration > 0.0 {
        let before = event_stats(&admin, &base).await?;
        println!(
            "\n== throughput: {} connections, {} s, round-robin over {} links",
            args.concurrency,
            args.duration,
            target.links.len()
        );
        let cpu_before = server.cpu();
        let tp = throughput(
            &target,
            args.concurrency,
            Duration::from_secs_f64(args.duration),
            &counter,
        )
        .await?;
        let cpu = cpu_before.cost(&server.cpu(), tp.ok);
        server.check_alive()?;
        let mut throughput = tp.report(
            "activations",
            &mut table,
            Target::AtLeast(TARGET_ACCEPT_RATE),
            Target::AtMost(TARGET_ACCEPT_P99_MS),
        );
        // CPU per activation is steadier from run to run than the rate on a shared machine:
        // compare builds by it.
        println!(
            "CPU per activation: server {:.1} µs, load generator {:.1} µs; machine idle {:.0} %, iowait {:.0} %, steal {:.0} %",
            cpu.server_us_per_op, cpu.bench_us_per_op, cpu.idle_pct, cpu.iowait_pct, cpu.steal_pct
        );
        table.row(
            "throughput: server CPU/activation",
            cpu.server_us_per_op,
            "us",
            Target::None,
        );
        table.row(
            "throughput: machine idle + iowait",
            cpu.idle_pct + cpu.iowait_pct,
            "%",
            Target::None,
        );
        throughput["cpu"] = json!({
            "server_us_per_activation": round3(cpu.server_us_per_op),
            "bench_us_per_activation": round3(cpu.bench_us_per_op),
            "idle_pct": round3(cpu.idle_pct),
            "iowait_pct": round3(cpu.iowait_pct),
            "steal_pct": round3(cpu.steal_pct),
        });
        throughput["target_activations_per_s"] = json!(TARGET_ACCEPT_RATE);
        throughput["target_accept_p99_ms"] = json!(TARGET_ACCEPT_P99_MS);
        result["throughput"] = throughput;

        println!("\n== drain: waiting for events.pending == 0");
        let drain = drain(&admin, &base).await?;
        let after = drain.last;
        let handled_rate = per_sec(tp.ok, tp.elapsed + drain.elapsed);
        println!(
            "drained in {:.3} s{}; server accepted +{} handled +{} (pending {}); \
             handled/s over phase+drain: {:.0}",
            drain.elapsed.as_secs_f64(),
            if drain.timed_out { " (TIMED OUT)" } else { "" },
            after.accepted.saturating_sub(before.accepted),
            after.handled.saturating_sub(before.handled),
            after.pending,
            handled_rate
        );
        table.row(
            "drain: handled/s (phase + drain)",
            handled_rate,
            "/s",
            Target::None,
        );
        table.row(
            "drain: time after phase",
            drain.elapsed.as_secs_f64(),
            "s",
            Target::None,
        );
        result["drain"] = json!({
            "seconds": round3(drain.elapsed.as_secs_f64()),
            "timed_out": drain.timed_out,
            "handled_per_s": round3(handled_rate),
            "server_accepted_delta": after.accepted.saturating_sub(before.accepted),
            "server_handled_delta": after.handled.saturating_sub(before.handled),
            "pending_left": after.pending,
        });
    }

    // 4. Latency.
    if args.latency_duration > 0.0 {
        let k = args.latency_dialogs.min(args.dialogs) as usize;
        println!(
            "\n== latency: {} activations/s for {} s over {} dialogs with open WebSockets",
            args.rate, args.latency_duration, k
        );
        // Replies to still-pending events would be mistaken for replies to this phase.
        let settled = drain(&admin, &base).await?;
        if settled.timed_out {
            eprintln!(
                "warning: {} events still pending after {} s; accept->reply matching will be off",
                settled.last.pending,
                DRAIN_TIMEOUT.as_secs()
            );
        }
        let lat = latency(
            &target,
            k,
            args.rate,
            Duration::from_secs_f64(args.latency_duration),
            &counter,
        )
        .await?;
        server.check_alive()?;
        let accept = lat.accept.summary();
        let reply = lat.reply.summary();
        let lag = lat.lag.summary();
        println!(
            "sent {} in {:.3} s ({:.0}/s, target rate {}), accepted {}, errors: {}",
            lat.sent,
            lat.pacing_elapsed.as_secs_f64(),
            per_sec(lat.sent, lat.pacing_elapsed),
            args.rate,
            lat.accepted,
            lat.errors.line()
        );
        println!("client send lag behind schedule: {}", lag.line());
        println!(
            "accept latency:       {}  (target p99 <= {TARGET_ACCEPT_P99_MS} ms)",
            accept.line()
        );
        println!(
            "accept->reply latency: {}  (target p99 <= {TARGET_REPLY_P99_MS} ms at {TARGET_REPLY_RATE}/s)",
            reply.line()
        );
        println!(
            "replies: matched {}, missing after {} s grace {}, unexpected extra {}",
            lat.reply.len(),
            REPLY_GRACE.as_secs(),
            lat.missing,
            lat.extra
        );
        table.row(
            "latency: achieved rate",
            per_sec(lat.sent, lat.pacing_elapsed),
            "/s",
            Target::None,
        );
        table.row("latency: accept p50", accept.p50_ms, "ms", Target::None);
        table.row(
            "latency: accept p99",
            accept.p99_ms,
            "ms",
            Target::AtMost(TARGET_ACCEPT_P99_MS),
        );
        table.row(
            "latency: accept->reply p50",
            reply.p50_ms,
            "ms",
            Target::None,
        );
        table.row(
            "latency: accept->reply p99",
            reply.p99_ms,
            "ms",
            Target::AtMost(TARGET_REPLY_P99_MS),
        );
        table.row(
            "latency: accept->reply max",
            reply.max_ms,
            "ms",
            Target::None,
        );
        table.row(
            "latency: missing replies",
            lat.missing as f64,
            "",
            Target::AtMost(0.0),
        );
        table.row(
            "latency: errors",
            lat.errors.total() as f64,
            "",
            Target::AtMost(0.0),
        );
        result["latency"] = json!({
            "rate": args.rate,
            "dialogs": k,
            "backlog_replayed": lat.backlog,
            "backlog_seconds": round3(lat.backlog_elapsed.as_secs_f64()),
            "sent": lat.sent,
            "achieved_rate": round3(per_sec(lat.sent, lat.pacing_elapsed)),
            "accepted": lat.accepted,
            "errors": lat.errors,
            "send_lag_ms": lag,
            "accept_latency_ms": accept,
            "reply_latency_ms": reply,
            "replies_matched": lat.reply.len(),
            "replies_missing": lat.missing,
            "replies_extra": lat.extra,
            "target_accept_p99_ms": TARGET_ACCEPT_P99_MS,
            "target_reply_p99_ms": TARGET_REPLY_P99_MS,
        });
    }

    // 5. Report.
    server.report_memory(&mut table, &mut result);
    println!("\n== summary (pushback)\n{}", table.render());
    println!("RESULT {result}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 1: create pushbacks.

#[derive(Deserialize)]
struct CreatedPushback {
    link: String,
}

async fn create_pushbacks(
    admin: &reqwest::Client,
    server: &Server,
    dialogs: u32,
) -> Result<Vec<Link>> {
    let url = format!("{}/api/v1/pushbacks", server.base_url());
    let expected_authority = server.addr().to_string();
    let warned = AtomicBool::new(false);
    stream::iter(0..dialogs)
        .map(|i| {
            let (url, expected_authority, warned) = (&url, &expected_authority, &warned);
            async move {
                let body = json!({
                    "channelType": "chatwidget",
                    "botId": BOT_ID,
                    "chatId": format!("c{i}"),
                    "event": "ping",
                    "eventData": {},
                });
                let resp = admin
                    .post(url)
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("POST {url} (c{i})"))?;
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                if status.as_u16() != 201 {
                    bail!("POST {url} (c{i}) -> {status}, expected 201: {text}");
                }
                let created: CreatedPushback = serde_json::from_str(&text)
                    .with_context(|| format!("POST {url} (c{i}): unexpected body {text}"))?;
                let link = reqwest::Url::parse(&created.link)
                    .with_context(|| format!("pushback link {:?} is not a URL", created.link))?;
                if link.authority() != expected_authority.as_str()
                    && !warned.swap(true, Ordering::Relaxed)
                {
                    eprintln!(
                        "warning: pushback link {} does not point at {expected_authority}; \
                         activating its path on {expected_authority} anyway",
                        created.link
                    );
                }
                let path = match link.query() {
                    Some(q) => format!("{}?{q}", link.path()),
                    None => link.path().to_owned(),
                };
                Ok(Link { path: path.into() })
            }
        })
        .buffered(CREATE_CONCURRENCY)
        .try_collect()
        .await
}

// ---------------------------------------------------------------------------------------------
// Activations.

/// Sends `POST <path>` with body `{"n":<n>}` and reads the whole response.
async fn activate(sender: &mut Conn, target: &Endpoint, path: &str, n: u64) -> (Outcome, Instant) {
    post(sender, target, path, Bytes::from(format!("{{\"n\":{n}}}"))).await
}

// ---------------------------------------------------------------------------------------------
// Phase 2: throughput.

async fn throughput(
    target: &Links,
    concurrency: u32,
    duration: Duration,
    counter: &Arc<AtomicU64>,
) -> Result<ThroughputResult> {
    let links = Arc::clone(&target.links);
    let counter = Arc::clone(counter);
    closed_loop(&target.endpoint, concurrency, duration, move || {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let link = &links[(n % links.len() as u64) as usize];
        (link.path.clone(), Bytes::from(format!("{{\"n\":{n}}}")))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Phase 3: drain.

struct Drain {
    elapsed: Duration,
    timed_out: bool,
    last: EventStats,
}

async fn drain(admin: &reqwest::Client, base: &str) -> Result<Drain> {
    let start = Instant::now();
    loop {
        let s = event_stats(admin, base).await?;
        if s.pending == 0 || start.elapsed() >= DRAIN_TIMEOUT {
            return Ok(Drain {
                elapsed: start.elapsed(),
                timed_out: s.pending != 0,
                last: s,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 4: latency.

struct LatencyResult {
    backlog: u64,
    backlog_elapsed: Duration,
    sent: u64,
    accepted: u64,
    pacing_elapsed: Duration,
    errors: ErrorTally,
    accept: LatencyHist,
    reply: LatencyHist,
    lag: LatencyHist,
    missing: u64,
    extra: u64,
}

/// One activation to send, as scheduled by the pacer.
struct Job {
    dialog: usize,
    seq: u32,
    n: u64,
    due: Instant,
}

/// What happened to one activation.
struct Done {
    dialog: usize,
    seq: u32,
    due: Instant,
    sent: Instant,
    outcome: Outcome,
    answered: Instant,
}

#[derive(Deserialize)]
pub(crate) struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default, rename = "chatId")]
    chat_id: Option<String>,
}

pub(crate) type Ws = WebSocketStream<TcpStream>;

async fn latency(
    target: &Links,
    dialogs: usize,
    rate: f64,
    duration: Duration,
    counter: &Arc<AtomicU64>,
) -> Result<LatencyResult> {
    // Open the sockets and wait for `hello`.
    let t = Instant::now();
    let sockets: Vec<Ws> = stream::iter(0..dialogs)
        .map(|i| open_socket(target.endpoint.addr, i))
        .buffered(16)
        .try_collect()
        .await?;
    println!(
        "opened {} WebSockets in {:.3} s",
        sockets.len(),
        t.elapsed().as_secs_f64()
    );

    // Drain whatever the server replays (replies to the throughput phase).
    let t = Instant::now();
    let drained: Vec<(Ws, u64)> = stream::iter(sockets)
        .map(drain_backlog)
        .buffered(dialogs.max(1))
        .try_collect()
        .await?;
    let backlog_elapsed = t.elapsed();
    let backlog: u64 = drained.iter().map(|(_, n)| n).sum();
    println!(
        "drained {backlog} replayed messages in {:.3} s",
        backlog_elapsed.as_secs_f64()
    );

    // Readers: record each `message` frame's arrival, ack in batches.
    let arrived = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let readers: Vec<JoinHandle<Result<Vec<Instant>>>> = drained
        .into_iter()
        .enumerate()
        .map(|(i, (ws, _))| {
            // Stagger the sockets' ack timers so they don't all fire in the same instant.
            let first_ack = ACK_INTERVAL.mul_f64(i as f64 / dialogs as f64);
            tokio::spawn(read_replies(
                ws,
                first_ack,
                Arc::clone(&arrived),
                stop_rx.clone(),
            ))
        })
        .collect();

    // Senders: a few keep-alive connections pulling from one queue.
    let conns = ((rate / 50.0).ceil() as usize).clamp(4, 64);
    let (job_tx, job_rx) = mpsc::unbounded_channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let mut workers: Vec<JoinHandle<Vec<Done>>> = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut sender = connect(target.endpoint.addr).await?;
        let target = target.clone();
        let job_rx = Arc::clone(&job_rx);
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let job = { job_rx.lock().await.recv().await };
                let Some(job) = job else { break };
                let path = &target.links[job.dialog].path;
                let (outcome, sent) = activate(&mut sender, &target.endpoint, path, job.n).await;
                let answered = Instant::now();
                let broken = outcome.is_broken();
                done.push(Done {
                    dialog: job.dialog,
                    seq: job.seq,
                    due: job.due,
                    sent,
                    outcome,
                    answered,
                });
                if broken {
                    match reconnect(target.endpoint.addr, Instant::now() + REQUEST_TIMEOUT).await {
                        Some(s) => sender = s,
                        None => break,
                    }
                }
            }
            done
        }));
    }

    // Open-loop pacer (its own task, so it shares the workers' thread): every tick, queue
    // everything due by now; it never waits for responses.
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let pacer = tokio::spawn(pace(job_tx, Arc::clone(counter), dialogs, rate, total));
    let (sent, pacing_elapsed) = pacer.await.context("pacer panicked")??;
    // The last activation is due 1/rate before the end of the phase.
    let pacing_elapsed = pacing_elapsed.max(duration);

    let mut results: Vec<Done> = Vec::with_capacity(total as usize);
    for w in workers {
        results.extend(w.await.context("activation worker panicked")?);
    }
    let accepted = results.iter().filter(|d| d.outcome.is_success()).count() as u64;

    // Grace period for the last replies.
    let grace_end = Instant::now() + REPLY_GRACE;
    while arrived.load(Ordering::Relaxed) < accepted && Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    let mut arrivals: Vec<Vec<Instant>> = Vec::with_capacity(dialogs);
    for r in readers {
        arrivals.push(r.await.context("WebSocket reader panicked")??);
    }

    // Match the n-th accepted activation of a dialog with the n-th reply on its socket.
    let mut errors = ErrorTally::default();
    let mut accept = LatencyHist::new();
    let mut lag = LatencyHist::new();
    let mut per_dialog: HashMap<usize, Vec<(u32, Instant)>> = HashMap::new();
    for d in &results {
        lag.record(d.sent.saturating_duration_since(d.due));
        if d.outcome.is_success() {
            accept.record(d.answered - d.sent);
            per_dialog
                .entry(d.dialog)
                .or_default()
                .push((d.seq, d.sent));
        } else {
            d.outcome.tally(&mut errors);
        }
    }
    let mut reply = LatencyHist::new();
    let (mut missing, mut extra) = (0u64, 0u64);
    for (dialog, replies) in arrivals.iter().enumerate() {
        let mut sends = per_dialog.remove(&dialog).unwrap_or_default();
        sends.sort_unstable_by_key(|(seq, _)| *seq);
        for ((_, sent), arrived) in sends.iter().zip(replies) {
            reply.record(arrived.saturating_duration_since(*sent));
        }
        missing += sends.len().saturating_sub(replies.len()) as u64;
        extra += replies.len().saturating_sub(sends.len()) as u64;
    }

    Ok(LatencyResult {
        backlog,
        backlog_elapsed,
        sent,
        accepted,
        pacing_elapsed,
        errors,
        accept,
        reply,
        lag,
        missing,
        extra,
    })
}

/// Queues `total` jobs at `rate`/s, round-robin over `dialogs`; returns how many were queued
/// and how long it took.
async fn pace(
    jobs: mpsc::UnboundedSender<Job>,
    counter: Arc<AtomicU64>,
    dialogs: usize,
    rate: f64,
    total: u64,
) -> Result<(u64, Duration)> {
    let mut seqs = vec![0u32; dialogs];
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        tick.tick().await;
        let due_count = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        while sent < due_count {
            let dialog = (sent % dialogs as u64) as usize;
            let job = Job {
                dialog,
                seq: seqs[dialog],
                n: counter.fetch_add(1, Ordering::Relaxed),
                due: start + Duration::from_secs_f64(sent as f64 / rate),
            };
            seqs[dialog] += 1;
            if jobs.send(job).is_err() {
                bail!("all activation connections failed");
            }
            sent += 1;
        }
    }
    Ok((sent, start.elapsed()))
}

async fn open_socket(addr: SocketAddr, dialog: usize) -> Result<Ws> {
    open_chat(addr, BOT_ID, &format!("c{dialog}")).await
}

/// Opens the chat socket of `chat_id` with `bot` and waits for its `hello`.
pub(crate) async fn open_chat(addr: SocketAddr, bot: &str, chat_id: &str) -> Result<Ws> {
    let url = format!("ws://{addr}/chat/{bot}/ws?chatId={chat_id}");
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    // tungstenite zero-fills `read_buffer_size` bytes before every read (128 KiB by default),
    // which dominated the client's CPU time; replies are tiny, so read in small chunks.
    let config = WebSocketConfig::default().read_buffer_size(WS_READ_BUFFER);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(config))
        .await
        .with_context(|| format!("WebSocket handshake {url}"))?;
    let first = tokio::time::timeout(Duration::from_secs(10), next_text(&mut ws))
        .await
        .with_context(|| format!("{url}: no hello within 10 s"))??
        .with_context(|| format!("{url}: closed before hello"))?;
    let frame: Frame = serde_json::from_str(&first)
        .with_context(|| format!("{url}: first frame is not JSON: {first}"))?;
    ensure!(
        frame.kind == "hello",
        "{url}: first frame should be hello, got {first}"
    );
    if frame.chat_id.as_deref() != Some(chat_id) {
        eprintln!("warning: {url}: hello carries chatId {:?}", frame.chat_id);
    }
    Ok(ws)
}

/// Next text frame, or `None` when the socket closed.
async fn next_text(ws: &mut Ws) -> Result<Option<String>> {
    while let Some(msg) = ws.next().await {
        match msg.context("WebSocket read")? {
            Message::Text(t) => return Ok(Some(t.as_str().to_owned())),
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// Reads replayed messages until the socket has been quiet for a while, acking them.
pub(crate) async fn drain_backlog(mut ws: Ws) -> Result<(Ws, u64)> {
    let start = Instant::now();
    let mut count = 0u64;
    let mut last_id: Option<Value> = None;
    while start.elapsed() < BACKLOG_TIMEOUT {
        match tokio::time::timeout(BACKLOG_QUIET, next_text(&mut ws)).await {
            Err(_) => break,
            Ok(r) => {
                let text = r?.context("WebSocket closed while draining the backlog")?;
                if let Ok(f) = serde_json::from_str::<Frame>(&text)
                    && f.kind == "message"
                {
                    count += 1;
                    last_id = f.id;
                    if count.is_multiple_of(256) {
                        send_ack(&mut ws, last_id.take()).await?;
                    }
                }
            }
        }
    }
    send_ack(&mut ws, last_id).await?;
    Ok((ws, count))
}

async fn send_ack(ws: &mut Ws, up_to: Option<Value>) -> Result<()> {
    if let Some(id) = up_to {
        let frame = json!({"type": "ack", "upTo": id}).to_string();
        ws.send(Message::text(frame)).await.context("sending ack")?;
    }
    Ok(())
}

/// Records the arrival instant of every `message` frame until told to stop.
pub(crate) async fn read_replies(
    mut ws: Ws,
    first_ack: Duration,
    arrived: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<Instant>> {
    let mut arrivals = Vec::new();
    let mut unacked: Option<Value> = None;
    let mut ack_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + first_ack, ACK_INTERVAL);
    ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = ws.next() => {
                let now = Instant::now();
                let Some(msg) = msg else { break };
                if let Message::Text(t) = msg.context("WebSocket read")?
                    && let Ok(f) = serde_json::from_str::<Frame>(t.as_str())
                    && f.kind == "message"
                {
                    arrivals.push(now);
                    arrived.fetch_add(1, Ordering::Relaxed);
                    unacked = f.id;
                }
            }
            _ = ack_tick.tick() => send_ack(&mut ws, unacked.take()).await?,
            _ = stop.changed() => break,
        }
    }
    send_ack(&mut ws, unacked.take()).await?;
    let _ = ws.close(None).await;
    Ok(arrivals)
}
