//! Scenario `hostile`: what healthy dialogs see while hostile dialogs run scripts that loop
//! until the script budget stops them (`while (true) {}` on the bot `hostile`).
//!
//! 1. **Baseline**: `--healthy` dialogs each send `hi` and wait for the reply, one message after
//!    another, for `--seconds` s. Reports the message → reply latency.
//! 2. **Under attack**: the same, while `--hostile` dialogs each keep `--backlog` endless turns
//!    queued (a feeder sends `loop` again as soon as its previous one was handled). Reports the
//!    healthy latency, how many healthy messages went unanswered within 30 s, and how many
//!    hostile turns ran.
//!
//! Each hostile turn takes the whole budget (default 1 s); without fair scheduling, a healthy
//! message on a hostile dialog's worker would wait for every queued hostile turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;
use tokio::sync::Mutex;

use crate::CommonArgs;
use crate::server::{ADMIN_TOKEN, HOSTILE_BOT_ID, Server};
use crate::stats::{LatencyHist, Table, Target};

#[derive(Args, Debug, Clone)]
pub struct HostileArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Hostile dialogs.
    #[arg(long, default_value_t = 8)]
    pub hostile: usize,
    /// Endless turns each hostile dialog keeps queued.
    #[arg(long, default_value_t = 2)]
    pub backlog: usize,
    /// Healthy dialogs, each sending one message after another.
    #[arg(long, default_value_t = 8)]
    pub healthy: usize,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
}

/// How long a healthy message may wait for its reply before it counts as unanswered.
const WAIT_MS: u64 = 30_000;

async fn say(http: &reqwest::Client, base: &str, chat: &str, text: &str) -> Result<bool> {
    let r = http
        .post(format!(
            "{base}/api/v1/bots/{HOSTILE_BOT_ID}/dialogs/{chat}/messages"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"text": text, "wait": WAIT_MS}))
        .send()
        .await?;
    // 200: handled within the wait; 202: accepted, not handled in time.
    Ok(r.status().as_u16() == 200)
}

/// Healthy dialogs talking for `secs`; their latencies and unanswered count.
async fn healthy_phase(
    http: &reqwest::Client,
    base: &str,
    dialogs: usize,
    secs: u64,
    tag: &str,
) -> Result<(LatencyHist, u64)> {
    let hist = Arc::new(Mutex::new(LatencyHist::new()));
    let unanswered = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for d in 0..dialogs {
        let (http, base, hist, unanswered) = (
            http.clone(),
            base.to_owned(),
            hist.clone(),
            unanswered.clone(),
        );
        let chat = format!("{tag}-healthy-{d}");
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let sent = Instant::now();
                match say(&http, &base, &chat, "hi").await {
                    Ok(true) => hist.lock().await.record(sent.elapsed()),
                    Ok(false) => {
                        unanswered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let hist = Arc::try_unwrap(hist)
        .map(Mutex::into_inner)
        .unwrap_or_else(|_| LatencyHist::new());
    Ok((hist, unanswered.load(Ordering::Relaxed)))
}

pub async fn run(args: &HostileArgs, server: &mut Server) -> Result<()> {
    if args.healthy == 0 || args.seconds == 0 {
        bail!("--healthy and --seconds must be at least 1");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(WAIT_MS + 10_000))
        .build()?;
    let base = server.base_url().to_owned();
    println!(
        "baseline: {} healthy dialogs for {} s",
        args.healthy, args.seconds
    );
    let (baseline, _) = healthy_phase(&http, &base, args.healthy, args.seconds, "base").await?;
    println!("  healthy message → reply: {}", baseline.summary().line());

    let stop = Arc::new(AtomicBool::new(false));
    let hostile_turns = Arc::new(AtomicU64::new(0));
    let mut feeders = Vec::new();
    for d in 0..args.hostile {
        for _ in 0..args.backlog {
            let (http, base, stop, turns) = (
                http.clone(),
                base.clone(),
                stop.clone(),
                hostile_turns.clone(),
            );
            let chat = format!("hostile-{d}");
            feeders.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if say(&http, &base, &chat, "loop").await.is_err() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    turns.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    // Let the hostile dialogs fill their queues (and show they are slow) first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "under attack: {} hostile dialogs x {} endless turns queued, {} healthy dialogs for {} s",
        args.hostile, args.backlog, args.healthy, args.seconds
    );
    let (attacked, unanswered) =
        healthy_phase(&http, &base, args.healthy, args.seconds, "attacked").await?;
    stop.store(true, Ordering::Relaxed);
    let turns = hostile_turns.load(Ordering::Relaxed);
    println!("  healthy message → reply: {}", attacked.summary().line());
    println!(
        "  healthy messages unanswered within {WAIT_MS} ms: {unanswered}; hostile turns: {turns}"
    );
    server.check_alive()?;

    let mut table = Table::default();
    let b = baseline.summary();
    let a = attacked.summary();
    table.row("healthy p50, baseline", b.p50_ms, "ms", Target::None);
    table.row("healthy p99, baseline", b.p99_ms, "ms", Target::None);
    table.row("healthy p50, under attack", a.p50_ms, "ms", Target::None);
    table.row("healthy p99, under attack", a.p99_ms, "ms", Target::None);
    table.row("healthy max, under attack", a.max_ms, "ms", Target::None);
    table.row(
        "healthy unanswered",
        unanswered as f64,
        "",
        Target::AtMost(0.0),
    );
    println!("{}", table.render());
    println!(
        "RESULT {}",
        json!({"scenario": "hostile", "baseline": b, "attacked": a,
               "unanswered": unanswered, "hostile_turns": turns,
               "hostile": args.hostile, "backlog": args.backlog, "healthy": args.healthy})
    );
    // The feeders' requests in flight end with the server.
    for f in feeders {
        f.abort();
    }
    Ok(())
}
