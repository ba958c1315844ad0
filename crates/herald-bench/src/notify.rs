//! Scenarios `trigger` and `broadcast`: Novu-compatible notification triggers of the workflow
//! `bench-inapp` (one `in_app` step), measured from the HTTP request to the committed feed entry.
//!
//! `trigger`:
//! 1. **Subscribers**: `--subscribers` subscribers `sub-0..` created with `POST /v1/subscribers/bulk`.
//! 2. **Throughput**: `--concurrency` raw keep-alive connections send `POST /v1/events/trigger`
//!    to one subscriber each time (round-robin) as fast as the server answers, for `--duration` s.
//!    Reports triggers/s answered 201 and the accept latency.
//! 3. **Drain**: polls `GET /api/v1/admin/stats` until every accepted trigger has its feed entry
//!    (`notifications.feedEntries` grew by the accepted count); the processing rate is the
//!    accepted count over phase + drain.
//! 4. **Latency**: open-loop triggers at `--rate`/s for `--latency-duration` s, each to a new
//!    subscriber (`lat-<k>`, created by the trigger as Novu does); after the 201 the subscriber's
//!    feed (`GET /v1/subscribers/lat-<k>/notifications/feed`) is polled every `--poll-ms` until
//!    the entry is there. Trigger → feed entry latency runs from the request's send instant to the
//!    answer of the first poll that shows the entry, so it is an upper bound by up to one poll
//!    interval and one poll round trip.
//!
//! `broadcast`:
//! 1. **Subscribers**: `--subscribers` (default 100,000) created in bulks of 500.
//! 2. **Broadcast**: one `POST /v1/events/trigger/broadcast`; then `GET /api/v1/admin/stats` is
//!    polled every 10 ms until the feed has one new entry per subscriber. Reports the time to the
//!    201 and to the last feed entry committed (target ≤ 5 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::CommonArgs;
use crate::load::{Endpoint, closed_loop};
use crate::server::{ADMIN_TOKEN, Server, WORKFLOW_ID};
use crate::stats::{ErrorTally, LatencyHist, Table, Target, per_sec, round3};

const TARGET_BROADCAST_S: f64 = 5.0;
/// Subscribers per `POST /v1/subscribers/bulk` (Novu's limit).
const BULK: usize = 500;
/// Bulk requests in flight while creating subscribers.
const BULK_CONCURRENCY: usize = 2;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest a latency-phase trigger waits for its feed entry.
const FEED_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args, Debug, Clone)]
pub struct TriggerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Subscribers the throughput phase triggers, round-robin (created in bulk first).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub subscribers: u32,
    /// Concurrent keep-alive connections in the throughput phase.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Seconds of the throughput phase (0 skips it and the drain).
    #[arg(long, default_value_t = 10.0, value_parser = crate::non_negative)]
    pub duration: f64,
    /// Triggers per second in the latency phase.
    #[arg(long, default_value_t = 200.0, value_parser = crate::positive)]
    pub rate: f64,
    /// Seconds of the latency phase (0 skips it).
    #[arg(long, default_value_t = 10.0, value_parser = crate::non_negative)]
    pub latency_duration: f64,
    /// Milliseconds between two polls of a subscriber's feed in the latency phase.
    #[arg(long, default_value_t = 1.0, value_parser = crate::positive)]
    pub poll_ms: f64,
}

#[derive(Args, Debug, Clone)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Subscribers the broadcast reaches.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub subscribers: u32,
}

/// The `notifications` counters of `GET /api/v1/admin/stats`.
#[derive(Clone, Copy, Debug, Default)]
struct NotifyStats {
    triggers: u64,
    runs: u64,
    runs_pending: u64,
    feed_entries: u64,
}

async fn notify_stats(admin: &reqwest::Client, base: &str) -> Result<NotifyStats> {
    let url = format!("{base}/api/v1/admin/stats");
    let v = crate::client::get_json(admin, &url).await?;
    let n = v
        .get("notifications")
        .with_context(|| format!("GET {url}: no `notifications` object in {v}"))?;
    let num = |k: &str| {
        n.get(k)
            .and_then(Value::as_u64)
            .with_context(|| format!("GET {url}: no notifications.{k} in {v}"))
    };
    Ok(NotifyStats {
        triggers: num("triggers")?,
        runs: num("runs")?,
        runs_pending: num("runsPending")?,
        feed_entries: num("feedEntries")?,
    })
}

/// The admin client with the Novu API key (the admin token is accepted as one).
fn api_client() -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("ApiKey {ADMIN_TOKEN}"))
            .context("building the API key header")?,
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")
}

/// `POST url` with a JSON body; the answer's JSON, or an error naming the status.
async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Result<(u16, Value)> {
    let resp = client
        .post(url)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, v))
}

/// Creates `count` subscribers `<prefix><i>` with `POST /v1/subscribers/bulk`; returns the time.
async fn create_subscribers(
    api: &reqwest::Client,
    base: &str,
    prefix: &str,
    count: u32,
) -> Result<Duration> {
    let url = format!("{base}/v1/subscribers/bulk");
    let ids: Vec<u32> = (0..count).collect();
    let started = Instant::now();
    let created = AtomicU64::new(0);
    stream::iter(ids.chunks(BULK))
        .map(|chunk| {
            let (url, created) = (&url, &created);
            async move {
                let subscribers: Vec<Value> = chunk
                    .iter()
                    .map(|i| json!({"subscriberId": format!("{prefix}{i}"), "firstName": format!("S{i}")}))
                    .collect();
                let (status, v) = post_json(api, url, &json!({"subscribers": subscribers})).await?;
                if status != 201 {
                    bail!("POST {url} -> {status}: {v}");
                }
                let n = v["data"]["created"].as_array().map_or(0, Vec::len) as u64
                    + v["data"]["updated"].as_array().map_or(0, Vec::len) as u64;
                if n != chunk.len() as u64 {
                    bail!("POST {url}: {n} of {} subscribers in the answer: {v}", chunk.len());
                }
                let total = created.fetch_add(n, Ordering::Relaxed) + n;
                if total % 20_000 < n {
                    println!("  {total} subscribers");
                }
                Ok(())
            }
        })
        .buffer_unordered(BULK_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed())
}

struct Drain {
    elapsed: Duration,
    timed_out: bool,
    last: NotifyStats,
}

/// Polls the stats every `every` until the feed holds `feed_target` entries (or the timeout).
async fn wait_for_feed(
    admin: &reqwest::Client,
    base: &str,
    feed_target: u64,
    every: Duration,
) -> Result<Drain> {
    let start = Instant::now();
    loop {
        let s = notify_stats(admin, base).await?;
        let timed_out = start.elapsed() >= DRAIN_TIMEOUT;
        if s.feed_entries >= feed_target || timed_out {
            return Ok(Drain {
                elapsed: start.elapsed(),
                timed_out: s.feed_entries < feed_target,
                last: s,
            });
        }
        tokio::time::sleep(every).await;
    }
}

fn trigger_body(to: &str, n: u64) -> Value {
    json!({"name": WORKFLOW_ID, "to": to, "payload": {"n": n}})
}

// ---------------------------------------------------------------------------------------------
// Scenario `trigger`.

pub async fn run_trigger(args: &TriggerArgs, server: &mut Server) -> Result<()> {
    let api = api_client()?;
    let base = server.base_url().to_owned();
    let mut result = json!({
        "scenario": "trigger",
        "params": {
            "subscribers": args.subscribers,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "rate": args.rate,
            "latency_duration_s": args.latency_duration,
            "poll_ms": args.poll_ms,
            "client_threads": args.common.client_threads,
        },
    });
    let mut table = Table::default();

    println!("\n== create {} subscribers", args.subscribers);
    let took = create_subscribers(&api, &base, "sub-", args.subscribers).await?;
    println!(
        "created {} subscribers in {:.3} s ({:.0}/s)",
        args.subscribers,
        took.as_secs_f64(),
        per_sec(u64::from(args.subscribers), took)
    );
    result["subscribers"] = json!({
        "count": args.subscribers,
        "seconds": round3(took.as_secs_f64()),
    });

    if args.duration > 0.0 {
        let before = notify_stats(&api, &base).await?;
        println!(
            "\n== throughput: {} connections, {} s, round-robin over {} subscribers",
            args.concurrency, args.duration, args.subscribers
        );
        let endpoint = Endpoint::new(server.addr(), Some(&format!("ApiKey {ADMIN_TOKEN}")))?;
        let path: Arc<str> = "/v1/events/trigger".into();
        let counter = Arc::new(AtomicU64::new(0));
        let subscribers = u64::from(args.subscribers);
        let tp = closed_loop(
            &endpoint,
            args.concurrency,
            Duration::from_secs_f64(args.duration),
            move || {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = trigger_body(&format!("sub-{}", n % subscribers), n);
                (path.clone(), Bytes::from(body.to_string()))
            },
        )
        .await?;
        server.check_alive()?;
        result["throughput"] = tp.report("triggers", &mut table, Target::None, Target::None);

        println!("\n== drain: waiting for one feed entry per accepted trigger");
        let drain = wait_for_feed(
            &api,
            &base,
            before.feed_entries + tp.ok,
            Duration::from_millis(50),
        )
        .await?;
        let processed = drain.last.feed_entries.saturating_sub(before.feed_entries);
        let processed_rate = per_sec(processed, tp.elapsed + drain.elapsed);
        println!(
            "drained in {:.3} s{}; triggers +{} runs +{} feed entries +{} (runs pending {}); \
             feed entries/s over phase+drain: {:.0}",
            drain.elapsed.as_secs_f64(),
            if drain.timed_out { " (TIMED OUT)" } else { "" },
            drain.last.triggers.saturating_sub(before.triggers),
            drain.last.runs.saturating_sub(before.runs),
            processed,
            drain.last.runs_pending,
            processed_rate
        );
        table.row(
            "drain: feed entries/s (phase + drain)",
            processed_rate,
            "/s",
            Target::None,
        );
        table.row(
            "drain: time after phase",
            drain.elapsed.as_secs_f64(),
            "s",
            Target::None,
        );
        table.row(
            "drain: triggers without a feed entry",
            tp.ok.saturating_sub(processed) as f64,
            "",
            Target::AtMost(0.0),
        );
        result["drain"] = json!({
            "seconds": round3(drain.elapsed.as_secs_f64()),
            "timed_out": drain.timed_out,
            "feed_entries": processed,
            "feed_entries_per_s": round3(processed_rate),
        });
    }

    if args.latency_duration > 0.0 {
        println!(
            "\n== latency: {} triggers/s for {} s, each to a new subscriber whose feed is polled \
             every {} ms",
            args.rate, args.latency_duration, args.poll_ms
        );
        let lat = latency(
            &api,
            &base,
            args.rate,
            Duration::from_secs_f64(args.latency_duration),
            Duration::from_secs_f64(args.poll_ms / 1000.0),
        )
        .await?;
        server.check_alive()?;
        let accept = lat.accept.summary();
        let feed = lat.feed.summary();
        println!(
            "sent {} ({:.0}/s), accepted {}, errors: {}",
            lat.sent,
            per_sec(lat.sent, lat.elapsed),
            lat.accept.len(),
            lat.errors.line()
        );
        println!("accept latency:        {}", accept.line());
        println!("trigger->feed latency: {}", feed.line());
        println!(
            "feed entries not seen within {} s: {}",
            FEED_TIMEOUT.as_secs(),
            lat.missing
        );
        table.row(
            "latency: achieved rate",
            per_sec(lat.sent, lat.elapsed),
            "/s",
            Target::None,
        );
        table.row("latency: accept p50", accept.p50_ms, "ms", Target::None);
        table.row("latency: accept p99", accept.p99_ms, "ms", Target::None);
        table.row(
            "latency: trigger->feed p50",
            feed.p50_ms,
            "ms",
            Target::None,
        );
        table.row(
            "latency: trigger->feed p99",
            feed.p99_ms,
            "ms",
            Target::None,
        );
        table.row(
            "latency: trigger->feed max",
            feed.max_ms,
            "ms",
            Target::None,
        );
        table.row(
            "latency: entries not seen",
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
            "sent": lat.sent,
            "achieved_rate": round3(per_sec(lat.sent, lat.elapsed)),
            "errors": lat.errors,
            "accept_latency_ms": accept,
            "feed_latency_ms": feed,
            "entries_not_seen": lat.missing,
        });
    }

    server.report_memory(&mut table, &mut result);
    println!("\n== summary (trigger)\n{}", table.render());
    println!("RESULT {result}");
    Ok(())
}

struct LatencyResult {
    sent: u64,
    elapsed: Duration,
    accept: LatencyHist,
    feed: LatencyHist,
    errors: ErrorTally,
    missing: u64,
}

#[derive(Default)]
struct Shared {
    accept: LatencyHist,
    feed: LatencyHist,
    errors: ErrorTally,
    missing: u64,
}

/// Open loop: the k-th trigger is due at `start + k / rate` whatever the server does; each runs
/// in its own task (trigger, then poll the feed).
async fn latency(
    api: &reqwest::Client,
    base: &str,
    rate: f64,
    duration: Duration,
    poll: Duration,
) -> Result<LatencyResult> {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for k in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
        let (api, base, shared) = (api.clone(), base.to_owned(), Arc::clone(&shared));
        tasks.push(tokio::spawn(async move {
            let subscriber = format!("lat-{k}");
            let sent = Instant::now();
            let answer = post_json(
                &api,
                &format!("{base}/v1/events/trigger"),
                &trigger_body(&subscriber, k),
            )
            .await;
            let accepted = sent.elapsed();
            match answer {
                Ok((201, _)) => shared.lock().await.accept.record(accepted),
                Ok((status, _)) => {
                    shared.lock().await.errors.status(status);
                    return;
                }
                Err(_) => {
                    shared.lock().await.errors.kind("io");
                    return;
                }
            }
            let url = format!("{base}/v1/subscribers/{subscriber}/notifications/feed?limit=1");
            loop {
                let seen = match api.get(&url).send().await {
                    Ok(r) if r.status().is_success() => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["data"].as_array().map(|d| !d.is_empty()))
                        .unwrap_or(false),
                    _ => false,
                };
                if seen {
                    shared.lock().await.feed.record(sent.elapsed());
                    return;
                }
                if sent.elapsed() > FEED_TIMEOUT {
                    shared.lock().await.missing += 1;
                    return;
                }
                tokio::time::sleep(poll).await;
            }
        }));
    }
    let elapsed = start.elapsed().max(duration);
    for t in tasks {
        t.await.context("latency task panicked")?;
    }
    let s = std::mem::take(&mut *shared.lock().await);
    Ok(LatencyResult {
        sent: total,
        elapsed,
        accept: s.accept,
        feed: s.feed,
        errors: s.errors,
        missing: s.missing,
    })
}

// ---------------------------------------------------------------------------------------------
// Scenario `broadcast`.

pub async fn run_broadcast(args: &BroadcastArgs, server: &mut Server) -> Result<()> {
    let api = api_client()?;
    let base = server.base_url().to_owned();
    let mut result = json!({
        "scenario": "broadcast",
        "params": {"subscribers": args.subscribers},
    });
    let mut table = Table::default();

    println!(
        "\n== create {} subscribers (bulks of {BULK})",
        args.subscribers
    );
    let took = create_subscribers(&api, &base, "b-", args.subscribers).await?;
    let create_rate = per_sec(u64::from(args.subscribers), took);
    println!(
        "created {} subscribers in {:.3} s ({create_rate:.0}/s)",
        args.subscribers,
        took.as_secs_f64()
    );
    table.row(
        "subscribers created/s (bulk)",
        create_rate,
        "/s",
        Target::None,
    );
    result["subscribers"] = json!({
        "count": args.subscribers,
        "seconds": round3(took.as_secs_f64()),
        "per_s": round3(create_rate),
    });

    let before = notify_stats(&api, &base).await?;
    println!("\n== broadcast to every subscriber");
    let started = Instant::now();
    let (status, v) = post_json(
        &api,
        &format!("{base}/v1/events/trigger/broadcast"),
        &json!({"name": WORKFLOW_ID, "payload": {"n": 1}}),
    )
    .await?;
    let acked = started.elapsed();
    if status != 201 {
        bail!("POST /v1/events/trigger/broadcast -> {status}: {v}");
    }
    println!("201 after {:.3} s: {v}", acked.as_secs_f64());
    let expected = u64::from(args.subscribers);
    let drain = wait_for_feed(
        &api,
        &base,
        before.feed_entries + expected,
        Duration::from_millis(10),
    )
    .await?;
    let all = started.elapsed();
    server.check_alive()?;
    let written = drain.last.feed_entries.saturating_sub(before.feed_entries);
    println!(
        "{written} of {expected} feed entries committed {:.3} s after the request{} \
         ({:.0} entries/s); runs +{}",
        all.as_secs_f64(),
        if drain.timed_out { " (TIMED OUT)" } else { "" },
        per_sec(written, all),
        drain.last.runs.saturating_sub(before.runs)
    );
    // Spot check: the last subscriber's feed shows the rendered entry.
    let last = args.subscribers - 1;
    let feed = crate::client::get_json(
        &api,
        &format!("{base}/v1/subscribers/b-{last}/notifications/feed"),
    )
    .await?;
    let content = feed["data"][0]["content"].as_str().unwrap_or_default();
    println!("feed of b-{last}: {content:?}");
    if !content.contains(&format!("S{last}")) {
        bail!("the feed of b-{last} does not hold the rendered entry: {feed}");
    }
    table.row(
        "broadcast: 201 after",
        acked.as_secs_f64(),
        "s",
        Target::None,
    );
    table.row(
        "broadcast: all feed entries committed after",
        all.as_secs_f64(),
        "s",
        Target::AtMost(TARGET_BROADCAST_S),
    );
    table.row(
        "broadcast: feed entries/s",
        per_sec(written, all),
        "/s",
        Target::None,
    );
    table.row(
        "broadcast: missing feed entries",
        expected.saturating_sub(written) as f64,
        "",
        Target::AtMost(0.0),
    );
    result["broadcast"] = json!({
        "ack_seconds": round3(acked.as_secs_f64()),
        "all_committed_seconds": round3(all.as_secs_f64()),
        "feed_entries": written,
        "timed_out": drain.timed_out,
        "target_seconds": TARGET_BROADCAST_S,
    });
    server.report_memory(&mut table, &mut result);
    println!("\n== summary (broadcast)\n{}", table.render());
    println!("RESULT {result}");
    Ok(())
}
