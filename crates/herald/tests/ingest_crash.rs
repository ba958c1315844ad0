//! Integration deliveries when the machine fails, through the real `herald` binary on
//! `examples/orders`:
//! - killed with SIGKILL in the middle of a burst of signed Shopify orders from many clients, then
//!   restarted on the same data directory, after which the platform retries every delivery (as
//!   Shopify does for any not answered 2xx, and sometimes for ones that were). A delivery answered
//!   2xx is committed (its retry is a `duplicate`), and every order, acknowledged or retried,
//!   raises its event exactly once: one bot message in its customer's dialog;
//! - its database locked by another process: a delivery is answered 503 (the platform retries; a
//!   4xx would make it give up), leaves nothing behind, and its retry is the first delivery.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::process::{self, Load, Rig};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "shpss_kill_secret";
const CUSTOMERS: usize = 40;
const TASKS: usize = 16;

fn signed(http: &reqwest::Client, base: &str, customer: usize, n: u64) -> reqwest::RequestBuilder {
    let body = serde_json::to_vec(&json!({
        "id": n,
        "confirmation_number": format!("C{n}"),
        "created_at": "2030-01-01T10:00:00Z",
        "currency": "EUR",
        "customer": {"id": customer},
    }))
    .expect("json");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(&body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    http.post(format!("{base}/integrations/shopify/webhook"))
        .header("content-type", "application/json")
        .header("x-shopify-topic", "orders/create")
        .header("x-shopify-event-id", format!("evt-{n}"))
        .header("x-shopify-hmac-sha256", signature)
        .body(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_delivery_raises_its_event_exactly_once_after_kill_9() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the kill -9 scenario took longer than 240 s");
}

/// The example with a test secret and no rate limit (the burst is faster than the default).
/// Requests may take long: with the database locked, each writer batch waits out SQLite's busy
/// timeout (10 s) before it fails, and a batch of other work may be ahead of the delivery.
fn shop_rig() -> Rig {
    let project = common::project_copy(
        &common::examples_dir("orders"),
        &[
            ("${SHOPIFY_WEBHOOK_SECRET:-shpss_example_secret}", SECRET),
            (
                "dedupe:\n  header: X-Shopify-Event-Id",
                "limits: { rate: 0 }\ndedupe:\n  header: X-Shopify-Event-Id",
            ),
        ],
    );
    Rig::new(project, &[], Duration::from_secs(120))
}

async fn scenario() {
    let rig = shop_rig();
    let http = rig.http.clone();
    let mut first = rig.start("first").await;

    let load = Load::new();
    let base = Arc::new(first.base.clone());
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let customers = (t..CUSTOMERS).step_by(TASKS).collect();
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(load.clone().run(customers, 200, "customer ", move |c, n| {
                signed(&http, &base, c, n).send()
            }))
        })
        .collect();
    let killed_after = first.kill_under_load(&load.acked, &load.stop).await;
    let issued = process::gather(tasks, "200").await;

    // The platform retries everything: what was acknowledged must be a duplicate now.
    let second = rig.start("second").await;
    let mut retried_accepted = 0;
    for x in &issued {
        let r = signed(&http, &second.base, x.target, x.n)
            .send()
            .await
            .expect("retry");
        let (s, v) = common::status_json(r).await;
        assert_eq!(s, 200, "retry of order {}: {v}", x.n);
        if x.acked {
            assert_eq!(
                v["status"], "duplicate",
                "order {} was acknowledged before the kill, its retry must be a duplicate: {v}",
                x.n
            );
        } else if v["status"] == "accepted" {
            retried_accepted += 1;
        }
    }

    settle(&second, &http).await;
    let replies = replies_by_order(&second, &http).await;
    let acked = issued.iter().filter(|x| x.acked).count();
    println!(
        "killed after {killed_after:?}: issued {}, acked {acked}, accepted only on retry \
         {retried_accepted}, orders replied {}",
        issued.len(),
        replies.len()
    );
    assert!(acked > 0, "no delivery was acknowledged before the kill");
    // Every order, acknowledged or only retried, is thanked for exactly once, by its customer.
    let all: Vec<u64> = issued.iter().map(|x| x.n).collect();
    process::assert_exactly_once(&issued, &all, &replies, "thank-you message");
}

#[tokio::test]
async fn a_delivery_while_another_process_locks_the_database_is_503_and_its_retry_is_accepted() {
    let rig = shop_rig();
    let http = rig.http.clone();
    let server = rig.start("locked").await;
    let db = rusqlite::Connection::open(rig.data.path().join("herald.db")).expect("open db");
    db.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let started = Instant::now();
    let r = signed(&http, &server.base, 7, 4242)
        .send()
        .await
        .expect("send");
    let (s, v) = common::status_json(r).await;
    println!("answered {s} after {:?} of lock", started.elapsed());
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    db.execute_batch("ROLLBACK").expect("release the lock");
    drop(db);
    let (s, v) = server
        .get(&http, "/api/v1/integrations/shopify/requests")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["requests"], serde_json::json!([]), "a 503 left a record");

    let r = signed(&http, &server.base, 7, 4242)
        .send()
        .await
        .expect("send");
    let (s, v) = common::status_json(r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["status"], "accepted",
        "the retry is the first delivery: {v}"
    );
    settle(&server, &http).await;
    let replies = replies_by_order(&server, &http).await;
    assert_eq!(replies.get(&4242), Some(&vec![7]), "{replies:?}");
}

/// Waits until no event is pending.
async fn settle(server: &process::ChildServer, http: &reqwest::Client) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (s, v) = server.get(http, "/api/v1/admin/stats").await;
        assert_eq!(s, 200, "stats: {v}");
        if v["events"]["pending"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "events still pending 90 s after the restart: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Order number → the customers whose dialogs thanked for it (one entry per message).
async fn replies_by_order(
    server: &process::ChildServer,
    http: &reqwest::Client,
) -> BTreeMap<u64, Vec<usize>> {
    let mut seen: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for c in 0..CUSTOMERS {
        let mut after: Option<String> = None;
        loop {
            let q = after
                .as_ref()
                .map(|a| format!("&after={a}"))
                .unwrap_or_default();
            let path = format!("/api/v1/bots/shop/dialogs/shopify:{c}/messages?limit=1000{q}");
            let (s, v) = server.get(http, &path).await;
            if s == 404 {
                break; // no order of this customer was ever committed
            }
            assert_eq!(s, 200, "messages of customer {c}: {v}");
            let page: Vec<Value> = v["messages"].as_array().cloned().unwrap_or_default();
            for m in &page {
                let Some(text) = m["text"].as_str() else {
                    continue;
                };
                if let Some(rest) = text.split_once("order #C").map(|(_, r)| r) {
                    let n: u64 = rest
                        .split(' ')
                        .next()
                        .and_then(|d| d.parse().ok())
                        .unwrap_or_else(|| panic!("customer {c}: unexpected message {m}"));
                    seen.entry(n).or_default().push(c);
                }
            }
            if page.len() < 1000 {
                break;
            }
            after = page
                .last()
                .and_then(|m| m["id"].as_str())
                .map(str::to_owned);
        }
    }
    seen
}
