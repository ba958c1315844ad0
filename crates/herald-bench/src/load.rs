//! Closed-loop HTTP load shared by the scenarios: `--concurrency` raw keep-alive connections
//! (one task each, requests back to back on a connection) send POST requests for a fixed time,
//! and each request's latency (request handed to the connection → whole response read) goes
//! into a histogram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::client::{Conn, Response, connect, reconnect, request_head};
use crate::stats::{ErrorTally, LatencyHist, Table, Target, per_sec, round3};

/// Longest a single request may take before it counts as a `timeout` error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the load goes: the server's address and the fixed header lines of every request
/// (`Host`, `Content-Type`, an optional `Authorization`).
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub head: Arc<str>,
}

impl Endpoint {
    pub fn new(addr: SocketAddr, auth: Option<&str>) -> Result<Endpoint> {
        Ok(Endpoint {
            addr,
            head: request_head(&addr.to_string(), auth)
                .context("building the request headers")?
                .into(),
        })
    }
}

/// Result of one request.
pub enum Outcome {
    Status(u16),
    Io,
    Timeout,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(s))
    }

    /// The connection is unusable after this outcome.
    pub fn is_broken(&self) -> bool {
        matches!(self, Outcome::Io | Outcome::Timeout)
    }

    pub fn tally(&self, errors: &mut ErrorTally) {
        match self {
            Outcome::Status(s) => errors.status(*s),
            Outcome::Io => errors.kind("io"),
            Outcome::Timeout => errors.kind("timeout"),
        }
    }
}

/// Sends `POST target` with `head` (see [`request_head`]) and `body` on `conn` and reads the
/// whole response within `timeout`. Returns the response, or the failure as
/// [`Outcome::Io`] / [`Outcome::Timeout`], and the instant the request was sent.
pub async fn timed_post(
    conn: &mut Conn,
    head: &str,
    target: &str,
    body: &[u8],
    timeout: Duration,
) -> (Result<Response, Outcome>, Instant) {
    let sent = Instant::now();
    let result = match tokio::time::timeout(timeout, conn.post(target, head, body)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(_)) => Err(Outcome::Io),
        Err(_) => Err(Outcome::Timeout),
    };
    (result, sent)
}

/// Sends `POST <path>` with a JSON `body` on `conn` and reads the whole response.
/// Returns the outcome and the instant the request was sent.
pub async fn post(
    conn: &mut Conn,
    endpoint: &Endpoint,
    path: &str,
    body: Bytes,
) -> (Outcome, Instant) {
    let (result, sent) = timed_post(conn, &endpoint.head, path, &body, REQUEST_TIMEOUT).await;
    (
        result.map_or_else(|o| o, |r| Outcome::Status(r.status)),
        sent,
    )
}

/// What a closed-loop phase did.
pub struct ThroughputResult {
    /// Requests answered 2xx.
    pub ok: u64,
    pub elapsed: Duration,
    /// Latency of the 2xx requests.
    pub hist: LatencyHist,
    pub errors: ErrorTally,
}

impl ThroughputResult {
    /// Prints the phase's numbers, adds its rows to `table` (named `throughput: …`), and returns
    /// them as JSON. `what` names the requests (`activations`, `triggers`).
    pub fn report(&self, what: &str, table: &mut Table, rate: Target, p99: Target) -> Value {
        let accept = self.hist.summary();
        let per_s = per_sec(self.ok, self.elapsed);
        let goal = |t: Target, unit: &str| match t {
            Target::AtLeast(v) => format!("  (target >= {v:.0}{unit})"),
            Target::AtMost(v) => format!("  (target <= {v}{unit})"),
            Target::None => String::new(),
        };
        println!(
            "requests {}  answered 2xx {}  in {:.3} s  =>  {per_s:.0} {what}/s{}",
            self.ok + self.errors.total(),
            self.ok,
            self.elapsed.as_secs_f64(),
            goal(rate, "/s")
        );
        println!(
            "accept latency: {}{}",
            accept.line(),
            goal(p99, " ms at p99")
        );
        println!("errors: {}", self.errors.line());
        table.row(&format!("throughput: {what}/s"), per_s, "/s", rate);
        table.row("throughput: accept p50", accept.p50_ms, "ms", Target::None);
        table.row("throughput: accept p99", accept.p99_ms, "ms", p99);
        table.row("throughput: accept max", accept.max_ms, "ms", Target::None);
        table.row(
            "throughput: errors",
            self.errors.total() as f64,
            "",
            Target::AtMost(0.0),
        );
        json!({
            "requests": self.ok + self.errors.total(),
            "accepted": self.ok,
            "seconds": round3(self.elapsed.as_secs_f64()),
            format!("{what}_per_s"): round3(per_s),
            "accept_latency_ms": accept,
            "errors": self.errors,
        })
    }
}

#[derive(Default)]
struct WorkerTally {
    ok: u64,
    hist: LatencyHist,
    errors: ErrorTally,
}

/// Runs `concurrency` connections for `duration`, each sending `next()`'s path and body as fast
/// as the server answers. Prints the accepted rate once a second.
pub async fn closed_loop<F>(
    endpoint: &Endpoint,
    concurrency: u32,
    duration: Duration,
    next: F,
) -> Result<ThroughputResult>
where
    F: Fn() -> (Arc<str>, Bytes) + Send + Sync + 'static,
{
    // Open every connection before the clock starts.
    let mut senders = Vec::with_capacity(concurrency as usize);
    for _ in 0..concurrency {
        senders.push(connect(endpoint.addr).await?);
    }
    let next = Arc::new(next);
    let done_ok = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks: Vec<JoinHandle<WorkerTally>> = Vec::with_capacity(senders.len());
    for mut sender in senders {
        let endpoint = endpoint.clone();
        let next = Arc::clone(&next);
        let done_ok = Arc::clone(&done_ok);
        tasks.push(tokio::spawn(async move {
            let mut tally = WorkerTally::default();
            while Instant::now() < deadline {
                let (path, body) = next();
                let (outcome, sent) = post(&mut sender, &endpoint, &path, body).await;
                if outcome.is_success() {
                    tally.hist.record(sent.elapsed());
                    tally.ok += 1;
                    done_ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    outcome.tally(&mut tally.errors);
                    if outcome.is_broken() {
                        match reconnect(endpoint.addr, deadline).await {
                            Some(s) => sender = s,
                            None => break,
                        }
                    }
                }
            }
            tally
        }));
    }
    let progress = tokio::spawn(progress_printer(done_ok, start, "accepted"));
    let mut total = ThroughputResult {
        ok: 0,
        elapsed: Duration::ZERO,
        hist: LatencyHist::new(),
        errors: ErrorTally::default(),
    };
    for t in tasks {
        let tally = t.await.context("load task panicked")?;
        total.ok += tally.ok;
        total.hist.merge(&tally.hist);
        total.errors.merge(&tally.errors);
    }
    total.elapsed = start.elapsed();
    progress.abort();
    Ok(total)
}

/// Prints how many things got done per second, once a second, until the task is aborted.
pub(crate) async fn progress_printer(done: Arc<AtomicU64>, start: Instant, what: &'static str) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(start) + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut last = 0;
    loop {
        tick.tick().await;
        let now = done.load(Ordering::Relaxed);
        println!(
            "  t={:>6.1}s  {:>8} {what}/s  ({now} total)",
            start.elapsed().as_secs_f64(),
            now - last
        );
        last = now;
    }
}
