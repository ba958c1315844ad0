//! Scenario `ingest`: signed GitHub-style deliveries to an integration (`gh`: signature check,
//! delivery id, a mapped payload checked against a JSON Schema, routed to the sender's dialog
//! with the bench bot, which answers `pushed`).
//!
//! 1. **Throughput**: `--concurrency` keep-alive connections send deliveries back to back for
//!    `--duration` s; every other request of a connection repeats its previous delivery (same
//!    body, signature and `X-GitHub-Delivery`), so half are duplicates. Reports verified
//!    deliveries/s answered 2xx and the accept latency; then waits until every event is handled
//!    and checks that exactly one event was raised per unique delivery.
//! 2. **Latency**: chat sockets for `--latency-senders` senders, then unique deliveries
//!    open-loop at `--rate`/s for `--latency-duration` s, round-robin over those senders. The
//!    n-th accepted delivery of a sender is matched with the n-th `message` frame on its socket:
//!    accept latency, and accept → bot reply (stored, then pushed to the socket).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use futures_util::{StreamExt, TryStreamExt, stream};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

use crate::CommonArgs;
use crate::client::{Conn, connect};
use crate::load::{Outcome, REQUEST_TIMEOUT, timed_post};
use crate::pushback::{drain_backlog, open_chat, read_replies};
use crate::server::{BOT_ID, INGEST_INTEGRATION, INGEST_SECRET, Server, event_stats};
use crate::stats::{ErrorTally, LatencyHist, Table, Target, per_sec, round3};

const TARGET_RATE: f64 = 15_000.0;
const TARGET_P99_MS: f64 = 10.0;
const TARGET_LOW_ACCEPT_P99_MS: f64 = 3.0;
const TARGET_REPLY_P99_MS: f64 = 10.0;

#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Concurrent keep-alive connections in the throughput phase.
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
    /// Seconds of the throughput phase (0 skips it).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Senders (contacts, dialogs) the throughput phase's deliveries come from.
    #[arg(long, default_value_t = 1000)]
    pub senders: u64,
    /// Deliveries per second in the latency phase.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of the latency phase (0 skips it).
    #[arg(long, default_value_t = 10)]
    pub latency_duration: u64,
    /// Senders with an open chat socket in the latency phase.
    #[arg(long, default_value_t = 200)]
    pub latency_senders: u64,
}

/// One signed delivery: its header lines and body.
struct Delivery {
    head: String,
    body: Vec<u8>,
}

fn delivery(host: &str, n: u64, sender: u64) -> Delivery {
    let body = json!({
        "ref": "refs/heads/main",
        "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": format!("{n:040x}"),
        "repository": {"id": 1296269, "full_name": "octo/hello-world", "private": false},
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"id": sender, "login": format!("user{sender}")},
        "commits": [{"id": format!("{n:040x}"), "message": "Update README", "author": {"name": "octocat"}}],
    })
    .to_string()
    .into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(INGEST_SECRET.as_bytes()).expect("any key");
    mac.update(&body);
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let head = format!(
        "Host: {host}\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\n\
         X-GitHub-Delivery: bench-{n}\r\nX-Hub-Signature-256: sha256={sig}\r\n"
    );
    Delivery { head, body }
}

fn path() -> String {
    format!("/integrations/{INGEST_INTEGRATION}/webhook")
}

/// What one request got: its outcome and whether it was accepted (not a duplicate).
async fn send(conn: &mut Conn, d: &Delivery) -> (Outcome, bool, Instant) {
    let (r, sent) = timed_post(conn, &d.head, &path(), &d.body, REQUEST_TIMEOUT).await;
    match r {
        Ok(resp) => {
            let accepted = resp.body.windows(10).any(|w| w == b"\"accepted\"");
            (Outcome::Status(resp.status), accepted, sent)
        }
        Err(o) => (o, false, sent),
    }
}

pub async fn run(args: &IngestArgs, server: &mut Server) -> Result<()> {
    let admin = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = server.base_url().to_owned();
    let host = server.addr().to_string();
    let mut table = Table::default();
    let mut result = json!({"scenario": "ingest", "params": {
        "concurrency": args.concurrency, "duration_s": args.duration, "senders": args.senders,
        "rate": args.rate, "latency_duration_s": args.latency_duration,
        "latency_senders": args.latency_senders}});
    let counter = Arc::new(AtomicU64::new(0));

    if args.duration > 0 {
        println!(
            "\n== throughput: {} connections, {} s, half of the deliveries repeated",
            args.concurrency, args.duration
        );
        let before = event_stats(&admin, &base).await?;
        let cpu_before = server.cpu();
        let deadline = Instant::now() + Duration::from_secs(args.duration);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency {
            let mut conn = connect(server.addr()).await?;
            let (host, counter, senders) = (host.clone(), counter.clone(), args.senders.max(1));
            tasks.push(tokio::spawn(async move {
                let mut hist = LatencyHist::new();
                let mut errors = ErrorTally::default();
                let (mut ok, mut accepted, mut duplicates) = (0u64, 0u64, 0u64);
                let mut last: Option<Delivery> = None;
                while Instant::now() < deadline {
                    let d = match last.take() {
                        // Every other request repeats the previous delivery.
                        Some(d) => d,
                        None => {
                            let n = counter.fetch_add(1, Ordering::Relaxed);
                            let d = delivery(&host, n, n % senders);
                            let (o, acc, sent) = send(&mut conn, &d).await;
                            if o.is_success() {
                                hist.record(sent.elapsed());
                                ok += 1;
                                accepted += u64::from(acc);
                            } else {
                                o.tally(&mut errors);
                                if o.is_broken() {
                                    break;
                                }
                            }
                            last = Some(d);
                            continue;
                        }
                    };
                    let (o, acc, sent) = send(&mut conn, &d).await;
                    if o.is_success() {
                        hist.record(sent.elapsed());
                        ok += 1;
                        duplicates += u64::from(!acc);
                    } else {
                        o.tally(&mut errors);
                        if o.is_broken() {
                            break;
                        }
                    }
                }
                (hist, errors, ok, accepted, duplicates)
            }));
        }
        let mut hist = LatencyHist::new();
        let mut errors = ErrorTally::default();
        let (mut ok, mut accepted, mut duplicates) = (0u64, 0u64, 0u64);
        for t in tasks {
            let (h, e, o, a, d) = t.await.context("load task panicked")?;
            hist.merge(&h);
            errors.merge(&e);
            ok += o;
            accepted += a;
            duplicates += d;
        }
        let elapsed = start.elapsed();
        let cpu = cpu_before.cost(&server.cpu(), ok);
        let rate = per_sec(ok, elapsed);
        let s = hist.summary();
        println!(
            "requests answered 2xx {ok} in {:.3} s  =>  {rate:.0} deliveries/s  (target >= {TARGET_RATE:.0}/s)",
            elapsed.as_secs_f64()
        );
        println!(
            "  accepted {accepted}, duplicates {duplicates}; errors: {}",
            errors.line()
        );
        println!(
            "accept latency: {}  (target p99 <= {TARGET_P99_MS} ms)",
            s.line()
        );
        println!(
            "CPU per delivery: server {:.1} µs, load generator {:.1} µs; machine idle {:.0} %, iowait {:.0} %",
            cpu.server_us_per_op, cpu.bench_us_per_op, cpu.idle_pct, cpu.iowait_pct
        );
        // Every accepted delivery's event is handled, and no duplicate raised one.
        let t = Instant::now();
        let after = loop {
            let st = event_stats(&admin, &base).await?;
            if st.pending == 0 {
                break st;
            }
            ensure!(
                t.elapsed() < Duration::from_secs(120),
                "events still pending after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let raised = after.accepted - before.accepted;
        println!(
            "events raised {raised} for {accepted} accepted deliveries (drained in {:.3} s)",
            t.elapsed().as_secs_f64()
        );
        if raised != accepted {
            println!("  MISMATCH: every unique delivery must raise exactly one event");
        }
        table.row(
            "throughput: deliveries/s",
            rate,
            "/s",
            Target::AtLeast(TARGET_RATE),
        );
        table.row(
            "throughput: accept p99",
            s.p99_ms,
            "ms",
            Target::AtMost(TARGET_P99_MS),
        );
        table.row("throughput: accept max", s.max_ms, "ms", Target::None);
        table.row(
            "throughput: server CPU/delivery",
            cpu.server_us_per_op,
            "us",
            Target::None,
        );
        table.row(
            "throughput: errors",
            errors.total() as f64,
            "",
            Target::AtMost(0.0),
        );
        table.row(
            "throughput: events - unique deliveries",
            (raised as f64 - accepted as f64).abs(),
            "",
            Target::AtMost(0.0),
        );
        result["throughput"] = json!({"per_s": round3(rate), "ok": ok, "accepted": accepted,
            "duplicates": duplicates, "raised": raised, "accept_latency_ms": s, "errors": errors});
    }

    if args.latency_duration > 0 {
        let senders = args.latency_senders.max(1);
        println!(
            "\n== latency: {} deliveries/s for {} s over {senders} senders with open chat sockets",
            args.rate, args.latency_duration
        );
        // Senders far above the throughput phase's, so their dialogs start empty.
        let first = 1_000_000_000u64;
        let sockets: Vec<_> = stream::iter(0..senders)
            .map(|i| {
                let addr = server.addr();
                async move {
                    let ws =
                        open_chat(addr, BOT_ID, &format!("{INGEST_INTEGRATION}:{}", first + i))
                            .await?;
                    drain_backlog(ws).await
                }
            })
            .buffered(16)
            .try_collect()
            .await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let arrived = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = sockets
            .into_iter()
            .enumerate()
            .map(|(i, (ws, _))| {
                let first_ack = Duration::from_millis(500).mul_f64(i as f64 / senders as f64);
                tokio::spawn(read_replies(
                    ws,
                    first_ack,
                    arrived.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        let (job_tx, job_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
        let job_rx = Arc::new(tokio::sync::Mutex::new(job_rx));
        let conns = ((args.rate / 50.0).ceil() as usize).clamp(4, 64);
        let mut workers = Vec::new();
        for _ in 0..conns {
            let mut conn = connect(server.addr()).await?;
            let (job_rx, host, counter) = (job_rx.clone(), host.clone(), counter.clone());
            workers.push(tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let job = { job_rx.lock().await.recv().await };
                    let Some((k, _due)) = job else { break };
                    let n = counter.fetch_add(1, Ordering::Relaxed) + 10_000_000_000;
                    let d = delivery(&host, n, first + k % senders);
                    let (o, acc, sent) = send(&mut conn, &d).await;
                    done.push((k, o.is_success() && acc, sent, Instant::now()));
                    if o.is_broken() {
                        break;
                    }
                }
                done
            }));
        }
        let total = (args.rate * args.latency_duration as f64) as u64;
        let period = Duration::from_secs_f64(1.0 / args.rate).max(Duration::from_millis(1));
        let mut tick = tokio::time::interval(period);
        let start = Instant::now();
        let mut queued = 0u64;
        while queued < total {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * args.rate) as u64 + 1).min(total);
            while queued < due {
                if job_tx.send((queued, Instant::now())).is_err() {
                    bail!("every delivery connection failed");
                }
                queued += 1;
            }
        }
        drop(job_tx);
        let mut results = Vec::new();
        for w in workers {
            results.extend(w.await.context("delivery worker panicked")?);
        }
        let accepted = results.iter().filter(|r| r.1).count() as u64;
        let grace = Instant::now() + Duration::from_secs(5);
        while arrived.load(Ordering::Relaxed) < accepted && Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop_tx.send(true);
        let mut arrivals = Vec::new();
        for r in readers {
            arrivals.push(r.await.context("socket reader panicked")??);
        }
        let mut accept = LatencyHist::new();
        let mut per_sender: Vec<Vec<(u64, Instant)>> = vec![Vec::new(); senders as usize];
        for (k, ok, sent, answered) in &results {
            if *ok {
                accept.record(answered.saturating_duration_since(*sent));
                per_sender[(k % senders) as usize].push((*k, *sent));
            }
        }
        let mut reply = LatencyHist::new();
        let mut missing = 0u64;
        for (i, sends) in per_sender.iter_mut().enumerate() {
            sends.sort_unstable_by_key(|(k, _)| *k);
            for ((_, sent), at) in sends.iter().zip(&arrivals[i]) {
                reply.record(at.saturating_duration_since(*sent));
            }
            missing += sends.len().saturating_sub(arrivals[i].len()) as u64;
        }
        let (a, r) = (accept.summary(), reply.summary());
        println!("sent {queued}, accepted {accepted}, replies missing {missing}");
        println!(
            "accept latency:        {}  (target p99 <= {TARGET_LOW_ACCEPT_P99_MS} ms)",
            a.line()
        );
        println!(
            "accept->reply latency: {}  (target p99 <= {TARGET_REPLY_P99_MS} ms)",
            r.line()
        );
        table.row(
            "latency: accept p99",
            a.p99_ms,
            "ms",
            Target::AtMost(TARGET_LOW_ACCEPT_P99_MS),
        );
        table.row("latency: accept max", a.max_ms, "ms", Target::None);
        table.row(
            "latency: accept->reply p99",
            r.p99_ms,
            "ms",
            Target::AtMost(TARGET_REPLY_P99_MS),
        );
        table.row("latency: accept->reply max", r.max_ms, "ms", Target::None);
        table.row(
            "latency: missing replies",
            missing as f64,
            "",
            Target::AtMost(0.0),
        );
        result["latency"] = json!({"sent": queued, "accepted": accepted, "missing": missing,
            "accept_latency_ms": a, "reply_latency_ms": r});
    }
    server.check_alive()?;
    server.report_memory(&mut table, &mut result);
    println!("\n== summary (ingest)\n{}", table.render());
    println!("RESULT {result}");
    Ok(())
}
