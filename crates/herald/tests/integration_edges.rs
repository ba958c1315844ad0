//! The edges of the integration route through the real server: the per-integration rate (429
//! with Retry-After, not logged) and body limit (above the server's own), Slack's no-retry
//! header, deliveries without dedupe, an event whose contact cannot get a dialog (`unrouted`),
//! the log's admin-only access, replaying a rejected request, a workflow named after the event,
//! and the log's retention.

mod common;

use std::time::Duration;

use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const BOT: &str = r#"name: Shop
token: shop-token
channels:
  chatwidget: {}
states:
  Hello:
    q!: hello
    a: hi
  Order:
    noContext: true
    event!: [edge:order, plain:order, slow:order, big:order, loops:order]
    a: "order {{ $request.data.n }}"
"#;

/// GitHub's recipe, with `limits`/`dedupe` lines and the event's name filled in.
fn integration(extra: &str) -> String {
    format!(
        "secret: s3cret\nverify: {{scheme: github}}\n{extra}events:\n  order:\n    payload: {{n: /n}}\n    route: {{bot: shop, contact: /customer}}\n"
    )
}

const SLACK: &str = "secret: slack-secret\nverify: {scheme: slack}\ndedupe: {window: 40d}\nevents:\n  message:\n    route: {bot: shop, contact: /event/user}\n";

const NAMED_WORKFLOW: &str =
    "name: Order seen\nsteps:\n  - type: in_app\n    body: \"Order {{ payload.n }} seen\"\n";

struct Edges {
    server: TestServer,
    _project: tempfile::TempDir,
    _data: tempfile::TempDir,
}

async fn edges() -> Edges {
    let project = project_with_bot("shop", BOT);
    let files = [
        ("integrations/edge.yaml", integration("")),
        ("integrations/plain.yaml", integration("dedupe: false\n")),
        (
            "integrations/slow.yaml",
            integration("limits: {rate: 1, burst: 2}\n"),
        ),
        (
            "integrations/big.yaml",
            integration("limits: {body: 1MiB}\n"),
        ),
        ("integrations/slack.yaml", SLACK.to_owned()),
        ("workflows/edge:order.yaml", NAMED_WORKFLOW.to_owned()),
        (
            "integrations/loops.yaml",
            "secret: loop-token\nverify: {scheme: bearer}\nevents:\n  order:\n    route: {bot: shop, contact: /customer}\nhandler: loops.js\n".to_owned(),
        ),
        ("integrations/loops.js", "while (true) {}\n".to_owned()),
    ];
    for (path, text) in files {
        let p = project.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    let data = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(project.path(), data.path()).await;
    Edges {
        server,
        _project: project,
        _data: data,
    }
}

impl Edges {
    /// POSTs `body` to integration `name`, signed as GitHub signs, with `delivery` as its id.
    async fn send(&self, name: &str, delivery: &str, body: &[u8]) -> reqwest::Response {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").expect("key");
        mac.update(body);
        let sig: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.server
            .http
            .post(self.server.url(&format!("/integrations/{name}/webhook")))
            .header("content-type", "application/json")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", format!("sha256={sig}"))
            .body(body.to_vec())
            .send()
            .await
            .expect("send")
    }

    async fn order(&self, name: &str, delivery: &str, n: u64, customer: &str) -> (u16, Value) {
        let body = serde_json::to_vec(&json!({"n": n, "customer": customer})).expect("json");
        status_json(self.send(name, delivery, &body).await).await
    }

    async fn log(&self, name: &str) -> Vec<Value> {
        let (s, v) = self
            .server
            .get(&format!("/api/v1/integrations/{name}/requests"))
            .await;
        assert_eq!(s, 200, "{v}");
        v["requests"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test]
async fn over_its_rate_an_integration_answers_429_with_retry_after_and_logs_nothing() {
    let e = edges().await;
    let mut answers = Vec::new();
    for i in 0..4 {
        let body = serde_json::to_vec(&json!({"n": i, "customer": "c1"})).expect("json");
        let r = e.send("slow", &format!("s-{i}"), &body).await;
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        answers.push((r.status().as_u16(), retry_after));
    }
    assert_eq!(answers[0].0, 200, "{answers:?}");
    assert_eq!(answers[1].0, 200, "{answers:?}");
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!limited.is_empty(), "a burst of 2 at 1/s: {answers:?}");
    for (_, after) in &limited {
        let secs: u64 = after
            .as_deref()
            .and_then(|a| a.parse().ok())
            .expect("Retry-After in seconds");
        assert!(secs >= 1, "{answers:?}");
    }
    // Only what was let in is in the log; the other integrations have their own budget.
    assert_eq!(e.log("slow").await.len(), 4 - limited.len());
    assert_eq!(e.order("edge", "x-1", 1, "c1").await.0, 200);
}

#[tokio::test]
async fn an_integrations_body_limit_may_exceed_the_servers_and_is_413_past_it() {
    let e = edges().await;
    // The server's limit is 256 KiB; this integration allows 1 MiB.
    let pad = "x".repeat(600 * 1024);
    let body = serde_json::to_vec(&json!({"n": 7, "customer": "big1", "pad": pad})).expect("json");
    let (s, v) = status_json(e.send("big", "b-1", &body).await).await;
    assert_eq!((s, &v["status"]), (200, &json!("accepted")), "{v}");
    let (s, v) = status_json(e.send("edge", "b-2", &body).await).await;
    assert_eq!(s, 413, "the server's limit for the others: {v}");
    let pad = "x".repeat(1100 * 1024);
    let body = serde_json::to_vec(&json!({"n": 8, "customer": "big1", "pad": pad})).expect("json");
    let (s, v) = status_json(e.send("big", "b-3", &body).await).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
}

#[tokio::test]
async fn a_refused_slack_request_tells_slack_not_to_retry() {
    let e = edges().await;
    let r = e
        .server
        .http
        .post(e.server.url("/integrations/slack/webhook"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", "1")
        .header("x-slack-signature", "v0=00")
        .body(r#"{"type":"event_callback","event_id":"Ev1","event":{"user":"U1"}}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()
            .get("x-slack-no-retry")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Other platforms get no such header.
    let r = e.send("edge", "n-1", b"{}").await;
    assert!(r.headers().get("x-slack-no-retry").is_none());
}

#[tokio::test]
async fn without_dedupe_a_repeated_delivery_raises_its_event_again() {
    let e = edges().await;
    for _ in 0..2 {
        let (s, v) = e.order("plain", "same", 5, "p1").await;
        assert_eq!((s, &v["status"]), (200, &json!("accepted")), "{v}");
    }
    e.server.settle().await;
    let texts = e.server.texts("shop", "plain:p1").await;
    assert_eq!(texts, ["order 5", "order 5"]);
    // With dedupe (the preset's X-GitHub-Delivery) the repeat is a duplicate of the first.
    let (_, first) = e.order("edge", "same", 6, "p1").await;
    let (s, v) = e.order("edge", "same", 6, "p1").await;
    assert_eq!((s, &v["status"]), (200, &json!("duplicate")), "{v}");
    assert_eq!(v["eventId"], first["eventId"], "{v}");
}

/// The contact `plain:taken` has no dialog with the bot, and the chat id its dialog would get
/// is already someone else's: the request is recorded as unrouted (202), nothing is raised.
/// (With a workflow bound to the event, as `edge:order` has, it would still be accepted: the
/// event reaches the workflow.)
#[tokio::test]
async fn an_event_whose_dialog_belongs_to_another_contact_is_unrouted() {
    let e = edges().await;
    let replies = e.server.say("shop", "plain:taken", "hello").await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    let (s, v) = e.order("plain", "u-1", 9, "taken").await;
    assert_eq!((s, &v["status"]), (202, &json!("unrouted")), "{v}");
    let log = e.log("plain").await;
    assert_eq!(log[0]["status"], "unrouted", "{log:?}");
    assert!(
        log[0]["detail"]["unrouted"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{log:?}"
    );
    e.server.settle().await;
    let texts = e.server.texts("shop", "plain:taken").await;
    assert!(!texts.iter().any(|t| t == "order 9"), "{texts:?}");
}

#[tokio::test]
async fn the_log_is_for_the_admin_and_a_rejected_request_cannot_be_replayed() {
    let e = edges().await;
    let r = e
        .server
        .http
        .get(e.server.url("/api/v1/integrations/edge/requests"))
        .bearer_auth("shop-token")
        .send()
        .await
        .expect("send");
    let (s, v) = status_json(r).await;
    assert_eq!((s, &v["error"]["code"]), (403, &json!("forbidden")), "{v}");

    let r = e
        .server
        .http
        .post(e.server.url("/integrations/edge/webhook"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", "sha256=00")
        .body(r#"{"n": 1, "customer": "r1"}"#)
        .send()
        .await
        .expect("send");
    let (s, v) = status_json(r).await;
    assert_eq!(s, 401, "{v}");
    let id = v["error"]["details"]["requestId"].as_i64().expect("id");
    let (s, v) = e
        .server
        .post(
            &format!("/api/v1/integrations/edge/requests/{id}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (409, &json!("not_replayable")),
        "{v}"
    );
}

/// SPEC §7: the event is also raised "as a workflow trigger of the same name": the workflow
/// `workflows/edge:order.yaml` runs for the routed contact.
#[tokio::test]
async fn a_workflow_named_after_the_event_runs_for_the_routed_contact() {
    let e = edges().await;
    let (s, v) = e.order("edge", "w-1", 42, "wf1").await;
    assert_eq!(s, 200, "{v}");
    let feed = e.server.wait_for_feed("edge:wf1").await;
    assert_eq!(feed[0]["content"], "Order 42 seen", "{feed:?}");
}

/// The log is kept for `integration_retention_days` (30), or the longest dedupe window if that
/// is longer (the Slack integration's 40 days here), so that a duplicate can still name the
/// first delivery's event.
#[tokio::test]
async fn the_log_is_purged_after_the_retention_but_not_within_a_dedupe_window() {
    let e = edges().await;
    let (_, first) = e.order("edge", "r-1", 1, "ret1").await;
    assert_eq!(first["status"], "accepted", "{first}");
    let (_, second) = e.order("edge", "r-2", 2, "ret1").await;
    assert_eq!(second["status"], "accepted", "{second}");
    let engine = e
        .server
        .running
        .as_ref()
        .expect("running")
        .state()
        .engine
        .clone();
    let now = jiff::Timestamp::now();
    let day = Duration::from_secs(86_400);
    let purged = engine
        .purge_ingest(now + jiff::SignedDuration::try_from(31 * day).expect("span"))
        .await
        .expect("purge");
    assert!(
        purged <= 2,
        "at most the delivery ids (7 days) go: {purged}"
    );
    assert_eq!(
        e.log("edge").await.len(),
        2,
        "within the longest window (40 days) the log stays"
    );
    let purged = engine
        .purge_ingest(now + jiff::SignedDuration::try_from(41 * day).expect("span"))
        .await
        .expect("purge");
    assert!(purged >= 1, "the older request goes: {purged}");
    let left = e.log("edge").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        left[0]["id"], second["requestId"],
        "the newest request stays, so that request ids are never given twice"
    );
}

/// Requests that fail verification use neither the platform's quota nor the disk: they do not
/// count against `limits.rate`, at most 50 at once (then 10/s) are logged, and a logged one
/// keeps only the first KiB of its body.
#[tokio::test]
async fn unsigned_floods_neither_use_the_platforms_quota_nor_fill_the_log() {
    let e = edges().await;
    let post = |name: &'static str, body: Vec<u8>| {
        e.server
            .http
            .post(e.server.url(&format!("/integrations/{name}/webhook")))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", "sha256=00")
            .body(body)
            .send()
    };
    let mut unlogged = 0;
    for i in 0..80 {
        let r = post(
            "slow",
            format!(r#"{{"n": {i}, "customer": "f"}}"#).into_bytes(),
        )
        .await
        .expect("send");
        let (s, v) = status_json(r).await;
        assert_eq!(s, 401, "{v}");
        if v["error"]["details"]["requestId"].is_null() {
            unlogged += 1;
        }
    }
    assert!(
        unlogged >= 20,
        "past the burst, rejections go unlogged: {unlogged}"
    );
    let logged = e.log("slow").await.len();
    assert!(logged <= 60, "{logged} rejections logged");
    // The platform's own (rate 1/s, burst 2) still gets through.
    let (s, v) = e.order("slow", "after-flood", 1, "f").await;
    assert_eq!((s, &v["status"]), (200, &json!("accepted")), "{v}");

    let big = format!(
        r#"{{"n": 1, "customer": "f", "pad": "{}"}}"#,
        "x".repeat(100_000)
    );
    let r = post("big", big.into_bytes()).await.expect("send");
    let (s, v) = status_json(r).await;
    assert_eq!(s, 401, "{v}");
    let id = v["error"]["details"]["requestId"].as_i64().expect("logged");
    let (s, one) = e
        .server
        .get(&format!("/api/v1/integrations/big/requests/{id}"))
        .await;
    assert_eq!(s, 200, "{one}");
    assert_eq!(
        one["body"].as_str().map(str::len),
        Some(1024),
        "{}",
        one["detail"]
    );
    assert!(
        one["detail"]["bodyBytes"]
            .as_u64()
            .is_some_and(|n| n > 100_000),
        "{}",
        one["detail"]
    );
}

/// One thread runs every integration's handlers. When handlers that use their whole budget
/// queue up, a request that could not start within 2 s is answered 503 with Retry-After (the
/// platform retries; nothing is recorded) instead of running after the platform gave up.
#[tokio::test]
async fn a_request_whose_handler_cannot_start_in_time_is_503_and_not_recorded() {
    let e = edges().await;
    let sends = (0..6).map(|i| {
        e.server
            .http
            .post(e.server.url("/integrations/loops/webhook"))
            .bearer_auth("loop-token")
            .json(&json!({"n": i, "customer": "l1"}))
            .send()
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut statuses = Vec::new();
    for r in answers {
        let r = r.expect("send");
        let retry = r.headers().get("retry-after").is_some();
        let (s, v) = status_json(r).await;
        statuses.push((s, v["error"]["code"].clone(), retry));
    }
    let busy = statuses.iter().filter(|(s, _, _)| *s == 503).count();
    let failed = statuses.iter().filter(|(s, _, _)| *s == 422).count();
    assert!(busy >= 1, "{statuses:?}");
    assert!(
        failed >= 1,
        "the first ones ran and ran out of budget: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .filter(|(s, _, _)| *s == 503)
            .all(|(_, code, retry)| code == "unavailable" && *retry),
        "{statuses:?}"
    );
    assert_eq!(
        e.log("loops").await.len(),
        failed,
        "only the handler errors are logged: {statuses:?}"
    );
}
