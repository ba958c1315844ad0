//! Integrations (SPEC §7) through the real server: the `examples/orders` project's Shopify
//! integration end to end (a signed order → the bot's message in the customer's dialog), the
//! answers for bad signatures, unmatched and invalid requests, delivery dedupe under
//! concurrency, the request log and its replay, and a workflow bound to the event with `on:`.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use futures_util::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "shpss_test_secret";

/// `base64(HMAC-SHA256(secret, body))`, Shopify's recipe.
fn shopify_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn order(id: u64, customer: u64) -> Value {
    json!({
        "id": id,
        "confirmation_number": format!("C{id}"),
        "created_at": "2030-01-01T10:00:00Z",
        "currency": "EUR",
        "customer": {"id": customer, "email": "ann@example.com"},
        "line_items": [{"sku": "TEA-1", "quantity": 2}],
    })
}

struct Shop {
    server: TestServer,
    _project: tempfile::TempDir,
    _data: tempfile::TempDir,
}

/// `examples/orders` with a test secret (and, when `extra` is given, more files).
async fn shop(extra: &[(&str, &str)]) -> Shop {
    let project = project_copy(
        &examples_dir("orders"),
        &[("${SHOPIFY_WEBHOOK_SECRET:-shpss_example_secret}", SECRET)],
    );
    for (path, text) in extra {
        let p = project.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    let data = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(project.path(), data.path()).await;
    Shop {
        server,
        _project: project,
        _data: data,
    }
}

impl Shop {
    /// POSTs a Shopify delivery; `sign` with this secret (`None`: no signature header).
    async fn deliver(
        &self,
        topic: &str,
        event_id: &str,
        body: &Value,
        sign: Option<&str>,
    ) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        let mut req = self
            .server
            .http
            .post(self.server.url("/integrations/shopify/webhook"))
            .header("content-type", "application/json")
            .header("x-shopify-topic", topic)
            .header("x-shopify-event-id", event_id);
        if let Some(secret) = sign {
            req = req.header("x-shopify-hmac-sha256", shopify_signature(secret, &bytes));
        }
        status_json(req.body(bytes).send().await.expect("send")).await
    }

    async fn log(&self, query: &str) -> Vec<Value> {
        let (s, v) = self
            .server
            .get(&format!("/api/v1/integrations/shopify/requests{query}"))
            .await;
        assert_eq!(s, 200, "{v}");
        v["requests"].as_array().cloned().unwrap_or_default()
    }
}

/// The story of the example: a signed Shopify order raises `shopify:newOrderCreated` in the
/// customer's dialog with the shop bot, whose answer is readable through the dialog API, and the
/// request is in the log as accepted, with its signature redacted.
#[tokio::test]
async fn a_signed_shopify_order_reaches_the_customers_dialog() {
    let shop = shop(&[]).await;
    let (s, v) = shop
        .deliver("orders/create", "ev-1", &order(1001, 77), Some(SECRET))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "accepted", "{v}");
    let event_id = v["eventId"].as_str().expect("eventId").to_owned();
    let msgs = shop
        .server
        .wait_for_text(
            "shop",
            "shopify:77",
            "🛍️ Thanks for your order #C1001 at Example Shop! We will tell you here when it ships.",
        )
        .await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let log = shop.log("").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "accepted");
    assert_eq!(log[0]["eventIds"], json!([event_id]));
    assert_eq!(log[0]["deliveryId"], "ev-1");
    assert_eq!(log[0]["headers"]["x-shopify-hmac-sha256"], "[redacted]");
    let id = log[0]["id"].as_i64().expect("id");
    let (s, one) = shop
        .server
        .get(&format!("/api/v1/integrations/shopify/requests/{id}"))
        .await;
    assert_eq!(s, 200, "{one}");
    let body: Value = serde_json::from_str(one["body"].as_str().expect("body")).expect("json");
    assert_eq!(body, order(1001, 77));
}

/// A wrong secret, a tampered body or no signature: 401, recorded as rejected, nothing raised.
/// Another topic: 202 ignored. A payload that fails its schema: 422 with the errors.
#[tokio::test]
async fn bad_signatures_unmatched_topics_and_invalid_payloads_raise_nothing() {
    let shop = shop(&[]).await;
    let (s, v) = shop
        .deliver("orders/create", "a", &order(1, 5), Some("wrong"))
        .await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "verification_failed", "{v}");
    let (s, v) = shop.deliver("orders/create", "b", &order(1, 5), None).await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("missing"),
        "{v}"
    );
    let (s, v) = shop
        .deliver("products/update", "c", &json!({"id": 3}), Some(SECRET))
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["status"], "ignored");
    let mut broken = order(2, 5);
    broken["id"] = json!("not-a-number");
    broken.as_object_mut().expect("object").remove("created_at");
    let (s, v) = shop
        .deliver("orders/create", "d", &broken, Some(SECRET))
        .await;
    assert_eq!(s, 422, "{v}");
    let errors = v["error"]["details"]["errors"].to_string();
    assert!(
        errors.contains("order_id") && errors.contains("created_at"),
        "{v}"
    );
    // A malformed body: 400 once signed, 401 from someone who cannot sign.
    for raw in [&b"{\"id\": 1} trailing"[..], b"{\"id\":", b"\xff\xfe"] {
        let signed = shop
            .server
            .http
            .post(shop.server.url("/integrations/shopify/webhook"))
            .header("content-type", "application/json")
            .header("x-shopify-topic", "orders/create")
            .header("x-shopify-hmac-sha256", shopify_signature(SECRET, raw))
            .body(raw.to_vec())
            .send()
            .await
            .expect("send");
        let (s, v) = status_json(signed).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["code"], "malformed_body", "{v}");
    }
    // Unknown integration, wrong content type.
    let (s, _) = shop
        .server
        .post("/integrations/nope/webhook", json!({}))
        .await;
    assert_eq!(s, 404);
    let r = shop
        .server
        .http
        .post(shop.server.url("/integrations/shopify/webhook"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 415);

    shop.server.settle().await;
    let (_, stats) = shop.server.get("/api/v1/admin/stats").await;
    assert_eq!(
        stats["events"]["accepted"], 0,
        "nothing was raised: {stats}"
    );
    let statuses: Vec<String> = shop
        .log("")
        .await
        .iter()
        .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        statuses,
        [
            "rejected", "rejected", "rejected", "invalid", "ignored", "rejected", "rejected"
        ]
    );
    assert_eq!(shop.log("?status=rejected").await.len(), 5);
}

/// 64 identical deliveries at once raise exactly one event; every answer is 200 and names that
/// event.
#[tokio::test]
async fn sixty_four_identical_deliveries_at_once_raise_one_event() {
    let shop = shop(&[]).await;
    let body = order(3003, 88);
    let answers: Vec<(u16, Value)> = futures_util::stream::iter(0..64)
        .map(|_| shop.deliver("orders/create", "same-delivery", &body, Some(SECRET)))
        .buffer_unordered(64)
        .collect()
        .await;
    let mut ids: Vec<String> = answers
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, 200, "{v}");
            v["eventId"].as_str().expect("eventId").to_owned()
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one event id in every answer: {ids:?}");
    let accepted = answers
        .iter()
        .filter(|(_, v)| v["status"] == "accepted")
        .count();
    assert_eq!(accepted, 1, "one accepted, the rest duplicates");
    shop.server.settle().await;
    let msgs = shop.server.messages("shop", "shopify:88").await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(shop.log("?status=duplicate&limit=100").await.len(), 63);
}

/// A request found invalid under one mapping is accepted when replayed after the mapping is
/// fixed (the server restarted on the fixed project), and replaying it again is a duplicate.
#[tokio::test]
async fn replaying_a_recorded_request_runs_the_current_mapping() {
    let project = project_copy(
        &examples_dir("orders"),
        &[
            ("${SHOPIFY_WEBHOOK_SECRET:-shpss_example_secret}", SECRET),
            // A mapping mistake: the customer's id is read from the wrong place.
            ("contact: /customer/id", "contact: /customer/uid"),
        ],
    );
    let data = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start(project.path(), data.path()).await;
    let shop = Shop {
        server,
        _project: tempfile::tempdir().expect("tempdir"),
        _data: tempfile::tempdir().expect("tempdir"),
    };
    let (s, v) = shop
        .deliver("orders/create", "r-1", &order(4004, 99), Some(SECRET))
        .await;
    assert_eq!(s, 422, "{v}");
    let id = v["error"]["details"]["requestId"]
        .as_i64()
        .expect("requestId");
    server = shop.server;
    server.stop().await;

    let fixed = project.path().join("integrations/shopify.yaml");
    let text = std::fs::read_to_string(&fixed).expect("read");
    std::fs::write(&fixed, text.replace("/customer/uid", "/customer/id")).expect("write");
    let server = TestServer::start(project.path(), data.path()).await;
    let path = format!("/api/v1/integrations/shopify/requests/{id}/replay");
    let (s, v) = server.post(&path, json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "accepted", "{v}");
    server
        .wait_for_text(
            "shop",
            "shopify:99",
            "🛍️ Thanks for your order #C4004 at Example Shop! We will tell you here when it ships.",
        )
        .await;
    let (s, v) = server.post(&path, json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["status"], "duplicate",
        "replay is idempotent by delivery id: {v}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A workflow with `on: shopify:newOrderCreated` runs for the routed contact, with the mapped
/// payload.
#[tokio::test]
async fn a_workflow_bound_to_the_event_runs_for_the_routed_contact() {
    let shop = shop(&[(
        "workflows/order-received.yaml",
        "name: Order received\non: shopify:newOrderCreated\nsteps:\n  - type: in_app\n    body: \"Order {{ payload.order_id }} received\"\n",
    )])
    .await;
    let (s, v) = shop
        .deliver("orders/create", "w-1", &order(5005, 55), Some(SECRET))
        .await;
    assert_eq!(s, 200, "{v}");
    let feed = shop.server.wait_for_feed("shopify:55").await;
    assert_eq!(feed[0]["content"], "Order 5005 received", "{feed:?}");
}

const FORMS_YAML: &str = r#"
secret: forms-token
verify: {scheme: bearer}
config: {source: website}
events:
  submitted:
    schema:
      type: object
      required: [email]
      properties:
        email: {type: string}
    route: {bot: shop, subscriber: /email}
handler: forms.js
"#;

const FORMS_JS: &str = r#"
var b = req.body;
if (b.kind === "throw") throw new Error("cannot read this form");
if (b.kind === "loop") { while (true) {} }
if (b.kind === "nothing") return [];
if (b.kind === "bad") return [{type: "submitted", payload: {email: 42}}];
return [
  {type: "submitted", payload: {email: b.email, from: config.source, path: req.path}},
  {type: "forms:noted", payload: {q: req.query.q || null}, route: {subscriber: b.email}}
];
"#;

/// An integration's JavaScript handler decides what a request raises: its events are checked
/// against the declared schema and routed as declared (or as they say); a handler that throws,
/// loops or returns a payload its schema refuses raises nothing.
#[tokio::test]
async fn a_handler_decides_the_events_and_its_failures_raise_nothing() {
    let shop = shop(&[
        ("integrations/forms.yaml", FORMS_YAML),
        ("integrations/forms.js", FORMS_JS),
    ])
    .await;
    let post = |body: Value| {
        let r = shop
            .server
            .http
            .post(shop.server.url("/integrations/forms/webhook?q=42"))
            .bearer_auth("forms-token")
            .json(&body);
        async move { status_json(r.send().await.expect("send")).await }
    };
    let (s, v) = post(json!({"email": "ann@example.com"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["eventIds"].as_array().map(Vec::len), Some(2), "{v}");
    for (kind, code, status) in [
        ("throw", "handler_error", 422),
        ("loop", "handler_error", 422),
        ("bad", "invalid_payload", 422),
    ] {
        let (s, v) = post(json!({"kind": kind, "email": "x@example.com"})).await;
        assert_eq!(s, status, "{kind}: {v}");
        assert_eq!(v["error"]["code"], code, "{kind}: {v}");
    }
    let (s, v) = post(json!({"kind": "nothing"})).await;
    assert_eq!(s, 202, "{v}");
    let (s, _) = shop
        .server
        .http
        .post(shop.server.url("/integrations/forms/webhook"))
        .bearer_auth("wrong")
        .json(&json!({}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("send");
    assert_eq!(s, 401);
    shop.server.settle().await;
    let (_, stats) = shop.server.get("/api/v1/admin/stats").await;
    assert_eq!(
        stats["events"]["accepted"], 1,
        "only the first request's dialog event: {stats}"
    );
    let (_, log) = shop
        .server
        .get("/api/v1/integrations/forms/requests?status=handler_error")
        .await;
    let detail = log["requests"][1]["detail"]["message"].to_string();
    assert!(detail.contains("cannot read this form"), "{log}");
}
