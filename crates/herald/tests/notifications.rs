//! The Novu-compatible notification API (SPEC §5) through the real server, spoken to as a Novu
//! SDK would (`Authorization: ApiKey <admin token>`): subscribers and their in-app feed, topics,
//! repeated triggers, refusals, delays, digests and throttles on a [`ManualClock`], and the chat,
//! webhook and email channels against real receivers. Every wait polls with a deadline.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use herald::Settings;
use herald_engine::ManualClock;
use reqwest::Method;
use serde_json::{Value, json};

/// Where the manual clock starts.
const START: &str = "2030-01-01T00:00:00Z";

/// A Standard Webhooks secret (the spec's example key).
const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const DESK_BOT: &str = r#"
name: Desk
channels:
  chatwidget: {}
states:
  Hello:
    q!: hi
    a: hello
"#;

/// Every workflow the suite triggers, by id.
const WORKFLOWS: &[(&str, &str)] = &[
    (
        "order-shipped",
        r#"
name: Order shipped
payloadSchema:
  type: object
  required: [orderId]
  properties:
    orderId: { type: string, minLength: 1 }
steps:
  - type: in_app
    stepId: feed
    subject: "Order {{ payload.orderId }}"
    body: "Hi {{ subscriber.firstName || 'there' }}, order {{ payload.orderId }} has shipped."
"#,
    ),
    (
        "later",
        r#"
steps:
  - type: delay
    stepId: wait
    amount: 1
    unit: hours
  - type: in_app
    stepId: feed
    body: "later {{ payload.n }}"
"#,
    ),
    (
        "digest",
        r#"
steps:
  - type: digest
    stepId: collect
    amount: 10
    unit: minutes
    digestKey: orderId
  - type: in_app
    stepId: feed
    body: "{{ eventCount }}:{{ events.map(e => e.n).join(',') }}"
"#,
    ),
    (
        "throttled",
        r#"
steps:
  - type: throttle
    stepId: limit
    amount: 1
    unit: hours
    threshold: 2
  - type: in_app
    stepId: feed
    body: "throttled {{ payload.n }}"
"#,
    ),
    (
        "until",
        r#"
steps:
  - type: delay
    stepId: wait
    delayPath: sendAt
  - type: in_app
    stepId: feed
    body: "until"
"#,
    ),
    (
        "chat",
        r#"
steps:
  - type: chat
    stepId: tell
    bot: desk
    text: "Parcel {{ payload.orderId }} is on its way"
"#,
    ),
    (
        "hook",
        r#"
steps:
  - type: webhook
    stepId: hook
    url: "{{ payload.url }}"
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
"#,
    ),
    (
        "mail",
        r#"
steps:
  - type: email
    stepId: mail
    subject: "Order {{ payload.orderId }} has shipped"
    body: "Hello {{ subscriber.firstName }}, it is on its way."
"#,
    ),
];

fn project() -> tempfile::TempDir {
    let dir = project_with_bot("desk", DESK_BOT);
    let wf = dir.path().join("workflows");
    std::fs::create_dir_all(&wf).expect("mkdir");
    for (id, yaml) in WORKFLOWS {
        std::fs::write(wf.join(format!("{id}.yaml")), yaml).expect("write");
    }
    dir
}

struct Novu {
    server: TestServer,
    clock: Option<Arc<ManualClock>>,
    _project: tempfile::TempDir,
    _data: tempfile::TempDir,
}

/// A server on a [`ManualClock`].
async fn novu() -> Novu {
    let project = project();
    let data = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::starting_at(START.parse().expect("START")));
    let server =
        TestServer::start_with_clock(project.path(), settings(data.path()), clock.clone()).await;
    Novu {
        server,
        clock: Some(clock),
        _project: project,
        _data: data,
    }
}

/// A server on the system clock (for delivery retries, which wait in real time).
async fn novu_real(tune: impl FnOnce(&mut Settings)) -> Novu {
    let project = project();
    let data = tempfile::tempdir().expect("tempdir");
    let mut s = settings(data.path());
    tune(&mut s);
    let server = TestServer::start_with(project.path(), s).await;
    Novu {
        server,
        clock: None,
        _project: project,
        _data: data,
    }
}

impl Novu {
    fn advance(&self, secs: u64) {
        self.clock.as_ref().expect("a manual clock").advance(
            Duration::from_secs(secs)
                .try_into()
                .expect("a duration the clock takes"),
        );
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .server
            .http
            .request(method, self.server.url(path))
            .header("authorization", format!("ApiKey {ADMIN}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        status_json(req.send().await.expect("send")).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    async fn identify(&self, body: Value) {
        let (s, v) = self.post("/v1/subscribers", body.clone()).await;
        assert_eq!(s, 201, "identify {body}: {v}");
    }

    /// A trigger that must be accepted; returns `data`.
    async fn trigger(&self, body: Value) -> Value {
        let (s, v) = self.post("/v1/events/trigger", body.clone()).await;
        assert_eq!(s, 201, "trigger {body}: {v}");
        assert_eq!(v["data"]["acknowledged"], true, "{v}");
        v["data"].clone()
    }

    async fn cancel(&self, tx: &str) -> Value {
        let (s, v) = self.delete(&format!("/v1/events/trigger/{tx}")).await;
        assert_eq!(s, 200, "cancel {tx}: {v}");
        v["data"].clone()
    }

    async fn feed(&self, subscriber: &str) -> Value {
        let (s, v) = self
            .get(&format!(
                "/v1/subscribers/{subscriber}/notifications/feed?limit=100"
            ))
            .await;
        assert_eq!(s, 200, "feed of {subscriber}: {v}");
        v
    }

    async fn entries(&self, subscriber: &str) -> Vec<Value> {
        self.feed(subscriber).await["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls until the feed has at least `n` entries; returns them.
    async fn wait_feed(&self, subscriber: &str, n: usize) -> Vec<Value> {
        eventually(&format!("{n} feed entries of {subscriber}"), async || {
            let e = self.entries(subscriber).await;
            (e.len() >= n).then_some(e)
        })
        .await
    }

    async fn unseen(&self, subscriber: &str) -> Value {
        let (s, v) = self
            .get(&format!(
                "/v1/subscribers/{subscriber}/notifications/unseen"
            ))
            .await;
        assert_eq!(s, 200, "{v}");
        v["data"]["count"].clone()
    }

    /// Every activity record, newest page first (up to 100).
    async fn activity_list(&self) -> Vec<Value> {
        let (s, v) = self.get("/v1/notifications?limit=100").await;
        assert_eq!(s, 200, "{v}");
        v["data"].as_array().cloned().unwrap_or_default()
    }

    async fn activity(&self, tx: &str) -> Option<Value> {
        let (s, v) = self
            .get(&format!("/v1/notifications?transactionId={tx}"))
            .await;
        assert_eq!(s, 200, "{v}");
        v["data"].as_array().and_then(|a| a.first().cloned())
    }

    /// Polls until the (single) run of `tx` has `status`; returns that run.
    async fn wait_run(&self, tx: &str, status: &str) -> Value {
        eventually(&format!("the run of {tx} to be {status}"), async || {
            let rec = self.activity(tx).await?;
            let run = rec["subscribers"][0].clone();
            (run["status"] == status).then_some(run)
        })
        .await
    }
}

impl Novu {
    /// Polls until the run of `tx` has run its steps up to a waiting one (`pending` with a
    /// step record), not merely been stored as pending.
    async fn wait_waiting(&self, tx: &str) -> Value {
        eventually(&format!("the run of {tx} to wait at a step"), async || {
            let rec = self.activity(tx).await?;
            let run = rec["subscribers"][0].clone();
            let waits = run["status"] == "pending"
                && run["steps"]
                    .as_array()
                    .and_then(|s| s.last())
                    .is_some_and(|s| s["status"] == "pending");
            waits.then_some(run)
        })
        .await
    }
}

fn steps_of(run: &Value) -> Vec<(String, String, String)> {
    run["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default().to_owned(),
                s["type"].as_str().unwrap_or_default().to_owned(),
                s["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. subscribers and the in-app feed

#[tokio::test]
async fn a_trigger_to_an_identified_subscriber_lands_rendered_in_the_feed_and_can_be_marked() {
    let n = novu().await;
    n.identify(json!({"subscriberId": "ada", "firstName": "Ada", "email": "ada@example.com"}))
        .await;

    let data = n
        .trigger(json!({"name": "order-shipped", "to": "ada", "payload": {"orderId": "A1"}, "overrides": {}}))
        .await;
    assert_eq!(data["status"], "processed", "{data}");
    assert!(
        data["transactionId"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{data}"
    );

    let entries = n.wait_feed("ada", 1).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e["content"], "Hi Ada, order A1 has shipped.");
    assert_eq!(e["subject"], "Order A1");
    assert_eq!(e["channel"], "in_app");
    assert_eq!(e["templateIdentifier"], "order-shipped");
    assert_eq!(e["transactionId"], data["transactionId"]);
    assert_eq!(e["seen"], false);
    assert_eq!(e["read"], false);
    let feed = n.feed("ada").await;
    assert_eq!(feed["unseenCount"], 1, "{feed}");
    assert_eq!(feed["unreadCount"], 1, "{feed}");
    assert_eq!(feed["totalCount"], 1, "{feed}");
    assert_eq!(n.unseen("ada").await, 1);
    let (s, v) = n
        .get(&format!(
            "/v1/subscribers/ada/notifications/feed?page={}&limit=100",
            usize::MAX
        ))
        .await;
    assert_eq!(s, 200, "a page far past the end: {v}");
    assert_eq!(v["data"], json!([]), "{v}");
    assert_eq!(v["hasMore"], false, "{v}");

    let id = e["_id"].as_str().expect("message id").to_owned();
    let (s, v) = n
        .post(
            "/v1/subscribers/ada/messages/markAs",
            json!({"messageId": id, "mark": {"seen": true}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"][0]["seen"], true, "{v}");
    assert_eq!(v["data"][0]["read"], false, "{v}");
    assert_eq!(n.unseen("ada").await, 0);
    let feed = n.feed("ada").await;
    assert_eq!(feed["unseenCount"], 0, "{feed}");
    assert_eq!(feed["unreadCount"], 1, "{feed}");

    let (s, v) = n
        .post(
            "/v1/subscribers/ada/messages/markAs",
            json!({"messageId": id, "mark": {"read": true}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"][0]["read"], true, "{v}");
    assert_eq!(n.feed("ada").await["unreadCount"], 0);

    // Two more, then mark-all read.
    n.trigger(json!({"name": "order-shipped", "to": "ada", "payload": {"orderId": "A2"}}))
        .await;
    n.trigger(json!({"name": "order-shipped", "to": "ada", "payload": {"orderId": "A3"}}))
        .await;
    n.wait_feed("ada", 3).await;
    let feed = n.feed("ada").await;
    assert_eq!(feed["unseenCount"], 2, "{feed}");
    assert_eq!(feed["unreadCount"], 2, "{feed}");
    let (s, v) = n
        .post(
            "/v1/subscribers/ada/messages/mark-all",
            json!({"markAs": "read"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"], 2, "two entries were unread: {v}");
    let feed = n.feed("ada").await;
    assert_eq!(feed["unseenCount"], 0, "{feed}");
    assert_eq!(feed["unreadCount"], 0, "{feed}");
    assert_eq!(n.unseen("ada").await, 0);

    // `payload` (base64 of a JSON object) filters in the query: totals count matches only.
    // eyJvcmRlcklkIjoiQTIifQ== is {"orderId":"A2"}, eyJvcmRlcklkIjoiQSJ9 is {"orderId":"A"}.
    let (s, v) = n
        .get("/v1/subscribers/ada/notifications/feed?limit=1&payload=eyJvcmRlcklkIjoiQTIifQ==")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["totalCount"], 1, "{v}");
    assert_eq!(v["hasMore"], false, "{v}");
    assert_eq!(v["data"][0]["payload"]["orderId"], "A2", "{v}");
    let (s, v) = n
        .get("/v1/subscribers/ada/notifications/feed?payload=eyJvcmRlcklkIjoiQSJ9")
        .await;
    assert_eq!(
        (s, &v["totalCount"], &v["data"]),
        (200, &json!(0), &json!([])),
        "{v}"
    );
    // WzFd is [1]: not an object. The third compares 65 values, one more than allowed.
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!(i))).collect();
    let many = base64_of(&Value::Object(many).to_string());
    for bad in ["WzFd", "not-base64!", many.as_str()] {
        let (s, v) = n
            .get(&format!(
                "/v1/subscribers/ada/notifications/feed?payload={bad}"
            ))
            .await;
        assert_eq!(s, 400, "payload={bad}: {v}");
    }

    // A query string that does not parse is a 400 in Novu's error shape.
    for path in [
        "/v1/subscribers/ada/notifications/feed?page=-1",
        "/v1/subscribers?limit=many",
        "/v1/topics?page=x",
    ] {
        let (s, v) = n.get(path).await;
        assert_eq!((s, &v["statusCode"]), (400, &json!(400)), "{path}: {v}");
    }

    // Lists in a request body are bounded: 501 ids to mark or to add to a topic are refused.
    let ids: Vec<String> = (1..=501).map(|i| i.to_string()).collect();
    let (s, v) = n
        .post(
            "/v1/subscribers/ada/messages/markAs",
            json!({"messageId": ids, "mark": {"seen": true}}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = n
        .post("/v1/topics", json!({"key": "crowd", "name": "Crowd"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = n
        .post("/v1/topics/crowd/subscribers", json!({"subscribers": ids}))
        .await;
    assert_eq!(s, 422, "{v}");
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

// ---------------------------------------------------------------------------------------------
// 2. topics

#[tokio::test]
async fn a_topic_trigger_reaches_its_members_but_not_the_actor_and_an_unknown_topic_stores_nothing()
{
    let n = novu().await;
    for id in ["ann", "bob", "cid"] {
        n.identify(json!({"subscriberId": id})).await;
    }
    let (s, v) = n
        .post("/v1/topics", json!({"key": "team", "name": "Team"}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["key"], "team", "{v}");
    let (s, v) = n
        .post("/v1/topics", json!({"key": "team", "name": "Team"}))
        .await;
    assert_eq!(s, 409, "a duplicate key: {v}");

    let (s, v) = n
        .post(
            "/v1/topics/team/subscribers",
            json!({"subscribers": ["ann", "bob", "ghost"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["succeeded"], json!(["ann", "bob"]), "{v}");
    assert_eq!(v["data"]["failed"]["notFound"], json!(["ghost"]), "{v}");
    let (s, v) = n.get("/v1/topics/team").await;
    assert_eq!(s, 200, "{v}");
    let mut members: Vec<String> = v["data"]["subscribers"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m.as_str().unwrap_or_default().to_owned())
        .collect();
    members.sort();
    assert_eq!(members, ["ann", "bob"]);

    let data = n
        .trigger(json!({
            "name": "order-shipped",
            "to": [{"type": "Topic", "topicKey": "team"}],
            "payload": {"orderId": "T1"},
            "actor": "ann",
        }))
        .await;
    assert_eq!(data["status"], "processed", "{data}");
    let tx = data["transactionId"].as_str().expect("tx").to_owned();
    let bob = n.wait_feed("bob", 1).await;
    assert_eq!(bob[0]["content"], "Hi there, order T1 has shipped.");
    let rec = n.activity(&tx).await.expect("activity record");
    let runs: Vec<&str> = rec["subscribers"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["subscriberId"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        runs,
        ["bob"],
        "only bob: the actor is skipped, cid is no member: {rec}"
    );
    assert!(n.entries("ann").await.is_empty(), "the actor got an entry");
    assert!(
        n.entries("cid").await.is_empty(),
        "a non-member got an entry"
    );

    let before = n.activity_list().await.len();
    let (s, v) = n
        .post(
            "/v1/events/trigger",
            json!({"name": "order-shipped", "to": [{"type": "Topic", "topicKey": "nobody"}], "payload": {"orderId": "T2"}, "transactionId": "tx-unknown-topic"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "topic_not_found", "{v}");
    assert_eq!(
        n.activity_list().await.len(),
        before,
        "an activity record was stored"
    );
    assert!(n.activity("tx-unknown-topic").await.is_none());
}

// ---------------------------------------------------------------------------------------------
// 3. repeats

#[tokio::test]
async fn a_repeated_transaction_id_or_idempotency_key_answers_the_same_and_runs_once() {
    let n = novu().await;
    let body = json!({"name": "order-shipped", "to": "rex", "payload": {"orderId": "R1"}, "transactionId": "tx-rep"});
    let first = n.trigger(body.clone()).await;
    let second = n.trigger(body.clone()).await;
    assert_eq!(first, second);
    assert_eq!(first["transactionId"], "tx-rep");
    // Even with another payload, the transaction id is what counts.
    let third = n
        .trigger(json!({"name": "order-shipped", "to": "rex", "payload": {"orderId": "R2"}, "transactionId": "tx-rep"}))
        .await;
    assert_eq!(third["transactionId"], "tx-rep");

    n.wait_feed("rex", 1).await;
    n.wait_run("tx-rep", "done").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(n.entries("rex").await.len(), 1, "one feed entry");
    assert_eq!(n.activity_list().await.len(), 1, "one activity record");

    // Idempotency-Key: no transactionId, the header decides.
    let send_to = async |path: &str, body: Value| {
        let r = n
            .server
            .http
            .post(n.server.url(path))
            .header("authorization", format!("ApiKey {ADMIN}"))
            .header("idempotency-key", "key-123")
            .json(&body)
            .send()
            .await
            .expect("send");
        let replay = r
            .headers()
            .get("idempotency-replay")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let (s, v) = status_json(r).await;
        (s, v, replay)
    };
    let send = async || {
        send_to(
            "/v1/events/trigger",
            json!({"name": "order-shipped", "to": "ida", "payload": {"orderId": "I1"}}),
        )
        .await
    };
    let (s1, v1, r1) = send().await;
    let (s2, v2, r2) = send().await;
    assert_eq!((s1, s2), (201, 201), "{v1} {v2}");
    assert_eq!(v1, v2, "the same answer");
    assert_eq!(r1, None);
    assert_eq!(r2.as_deref(), Some("true"));
    n.wait_feed("ida", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(n.entries("ida").await.len(), 1, "one feed entry");
    assert_eq!(n.activity_list().await.len(), 2, "one more activity record");

    // A bulk under the same key is its own request (its events have keys of their own); sent
    // again, it answers the same transaction ids and stores nothing new.
    let bulk = json!({"events": [
        {"name": "order-shipped", "to": "bea", "payload": {"orderId": "B1"}},
        {"name": "order-shipped", "to": "bea", "payload": {"orderId": "B2"}},
    ]});
    let (s1, v1, r1) = send_to("/v1/events/trigger/bulk", bulk.clone()).await;
    let (s2, v2, r2) = send_to("/v1/events/trigger/bulk", bulk).await;
    assert_eq!((s1, s2), (201, 201), "{v1} {v2}");
    assert_eq!(v1, v2, "the same answer");
    assert_ne!(
        v1["data"][0]["transactionId"], v1["data"][1]["transactionId"],
        "{v1}"
    );
    assert_eq!((r1, r2.as_deref()), (None, Some("true")));
    n.wait_feed("bea", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(n.entries("bea").await.len(), 2, "one feed entry per event");
    assert_eq!(
        n.activity_list().await.len(),
        4,
        "two more activity records"
    );

    // No single trigger's key names a bulk event's key, whatever it looks like.
    for key in ["bulk:key-123#0", "key-123#0"] {
        let r = n
            .server
            .http
            .post(n.server.url("/v1/events/trigger"))
            .header("authorization", format!("ApiKey {ADMIN}"))
            .header("idempotency-key", key)
            .json(&json!({"name": "order-shipped", "to": "cy", "payload": {"orderId": key}}))
            .send()
            .await
            .expect("send");
        assert!(r.headers().get("idempotency-replay").is_none(), "{key}");
        let (s, v) = status_json(r).await;
        assert_eq!(s, 201, "{v}");
        assert_ne!(
            v["data"]["transactionId"], v1["data"][0]["transactionId"],
            "{key}: {v}"
        );
    }
    assert_eq!(
        n.activity_list().await.len(),
        6,
        "two more activity records"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. refusals

#[tokio::test]
async fn bad_triggers_are_refused_with_the_reason_and_store_nothing() {
    let n = novu().await;
    let trigger = "/v1/events/trigger";

    let (s, v) = n
        .post(
            trigger,
            json!({"name": "no-such-flow", "to": "u1", "payload": {}}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["message"], "workflow_not_found", "{v}");
    assert_eq!(v["statusCode"], 422, "{v}");

    let (s, v) = n
        .post(
            trigger,
            json!({"name": "order-shipped", "to": "u1", "payload": {"orderId": 5}}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "payload_invalid", "{v}");
    assert!(
        v["details"]["errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "the schema's errors: {v}"
    );
    let (s, v) = n
        .post(
            trigger,
            json!({"name": "order-shipped", "to": "u1", "payload": {}}),
        )
        .await;
    assert_eq!(s, 422, "a missing required field: {v}");

    let ok_payload = json!({"orderId": "X"});
    let too_many: Vec<Value> = (0..101).map(|i| json!(format!("s{i}"))).collect();
    for (what, to) in [
        ("an empty list", json!([])),
        ("101 entries", Value::Array(too_many)),
        ("a list in a list", json!([["u1"]])),
        ("a topic without a key", json!({"type": "Topic"})),
        (
            "a topic without a key, in a list",
            json!([{"type": "Topic"}]),
        ),
        ("a boolean", json!(true)),
        ("an unknown type", json!({"type": "Group", "key": "x"})),
    ] {
        let (s, v) = n
            .post(
                trigger,
                json!({"name": "order-shipped", "to": to, "payload": ok_payload}),
            )
            .await;
        assert_eq!(s, 422, "`to` as {what}: {v}");
    }
    let (s, v) = n
        .post(
            trigger,
            json!({"name": "order-shipped", "payload": ok_payload}),
        )
        .await;
    assert_eq!(s, 422, "no `to`: {v}");

    let events: Vec<Value> = (0..101)
        .map(|i| json!({"name": "order-shipped", "to": format!("b{i}"), "payload": {"orderId": "B"}}))
        .collect();
    let (s, v) = n
        .post("/v1/events/trigger/bulk", json!({"events": events}))
        .await;
    assert_eq!(s, 422, "101 bulk events: {v}");
    let (s, v) = n
        .post(
            "/v1/events/trigger/bulk",
            json!({"events": [
                {"name": "order-shipped", "to": "b1", "payload": {"orderId": "B"}},
                {"name": "no-such-flow", "to": "b2"},
            ]}),
        )
        .await;
    assert_eq!(s, 422, "a bulk with one unknown workflow: {v}");
    let (s, v) = n
        .post(
            "/v1/events/trigger/bulk",
            json!({"events": [
                {"name": "order-shipped", "to": "b1", "payload": {"orderId": "B"}},
                {"name": "order-shipped", "to": "b2", "payload": {}},
            ]}),
        )
        .await;
    assert_eq!(s, 422, "a bulk with one payload failing the schema: {v}");
    assert_eq!(v["details"]["field"], "events[1].payload", "{v}");
    let (s, v) = n
        .post(
            "/v1/events/trigger/bulk",
            json!({"events": [
                {"name": "order-shipped", "to": "b1", "payload": {"orderId": "B"}},
                {"name": "order-shipped", "to": [{"type": "Topic", "topicKey": "nobody-here"}], "payload": {"orderId": "B"}},
            ]}),
        )
        .await;
    assert_eq!(s, 422, "a bulk with one unknown topic: {v}");
    assert_eq!(v["details"]["field"], "events[1].to", "{v}");

    let good = json!({"name": "order-shipped", "to": "u1", "payload": ok_payload});
    let url = n.server.url(trigger);
    for (what, auth) in [
        ("no Authorization", None),
        ("a wrong ApiKey", Some("ApiKey not-the-key".to_owned())),
        ("a wrong Bearer", Some("Bearer not-the-key".to_owned())),
        ("a bare key", Some(ADMIN.to_owned())),
    ] {
        let mut req = n.server.http.post(&url).json(&good);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let (s, v) = status_json(req.send().await.expect("send")).await;
        assert_eq!(s, 401, "{what}: {v}");
        assert_eq!(v["statusCode"], 401, "{what}: {v}");
    }

    let r = n
        .server
        .http
        .post(&url)
        .header("authorization", format!("ApiKey {ADMIN}"))
        .header("content-type", "text/plain")
        .body(good.to_string())
        .send()
        .await
        .expect("send");
    let (s, v) = status_json(r).await;
    assert_eq!(s, 415, "a text/plain body: {v}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        n.activity_list().await.is_empty(),
        "an activity record was stored"
    );
    let (s, v) = n.get("/v1/subscribers?limit=100").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"], json!([]), "a subscriber was created: {v}");
}

/// SPEC §5: `to` is a subscriberId *string*, a subscriber object, a topic, or a list of these.
#[tokio::test]
async fn a_list_of_numbers_as_to_is_refused_and_stores_nothing() {
    let n = novu().await;
    let (s, v) = n
        .post(
            "/v1/events/trigger",
            json!({"name": "order-shipped", "to": [1, 2], "payload": {"orderId": "X"}}),
        )
        .await;
    assert_eq!(s, 422, "`to` as a list of numbers: {v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        n.activity_list().await.is_empty(),
        "an activity record was stored"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. delay and cancel

#[tokio::test]
async fn a_cancelled_delay_never_delivers_and_an_uncancelled_one_delivers_when_its_time_comes() {
    let n = novu().await;
    n.trigger(json!({"name": "later", "to": "dee", "payload": {"n": 1}, "transactionId": "tx-d1"}))
        .await;
    let run = n.wait_waiting("tx-d1").await;
    assert_eq!(
        steps_of(&run),
        [("wait".into(), "delay".into(), "pending".into())],
        "{run}"
    );
    assert_eq!(n.cancel("tx-d1").await, true);
    n.wait_run("tx-d1", "cancelled").await;
    n.advance(2 * 3600);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        n.entries("dee").await.is_empty(),
        "a cancelled run delivered"
    );
    assert_eq!(n.cancel("tx-d1").await, false, "nothing left to cancel");
    assert_eq!(n.cancel("tx-never-seen").await, false);

    n.trigger(json!({"name": "later", "to": "dee", "payload": {"n": 2}, "transactionId": "tx-d2"}))
        .await;
    n.wait_waiting("tx-d2").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        n.entries("dee").await.is_empty(),
        "delivered before the delay"
    );
    n.advance(3600 + 1);
    let entries = n.wait_feed("dee", 1).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["content"], "later 2");
    n.wait_run("tx-d2", "done").await;
    assert_eq!(
        n.cancel("tx-d2").await,
        false,
        "a finished run has nothing to cancel"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. digest

#[tokio::test]
async fn a_digest_sends_one_entry_for_its_events_without_the_cancelled_one() {
    let n = novu().await;
    for (i, tx) in ["tx-g1", "tx-g2", "tx-g3"].iter().enumerate() {
        n.trigger(json!({"name": "digest", "to": "gus", "payload": {"orderId": "O1", "n": i + 1}, "transactionId": tx}))
            .await;
    }
    n.wait_waiting("tx-g1").await;
    n.wait_run("tx-g2", "digested").await;
    n.wait_run("tx-g3", "digested").await;
    assert_eq!(n.cancel("tx-g2").await, true);
    n.wait_run("tx-g2", "cancelled").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        n.entries("gus").await.is_empty(),
        "sent before the window closed"
    );

    n.advance(11 * 60);
    let entries = n.wait_feed("gus", 1).await;
    n.wait_run("tx-g1", "done").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let entries_now = n.entries("gus").await;
    assert_eq!(
        entries_now.len(),
        1,
        "exactly one digest entry: {entries_now:?}"
    );
    assert_eq!(entries[0]["content"], "2:1,3");
}

// ---------------------------------------------------------------------------------------------
// 7. throttle

#[tokio::test]
async fn a_throttle_lets_two_runs_an_hour_through_and_marks_the_third_throttled() {
    let n = novu().await;
    for i in 1..=3 {
        let tx = format!("tx-t{i}");
        n.trigger(
            json!({"name": "throttled", "to": "tom", "payload": {"n": i}, "transactionId": tx}),
        )
        .await;
        let want = if i <= 2 { "done" } else { "throttled" };
        n.wait_run(&tx, want).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bodies: Vec<String> = n
        .entries("tom")
        .await
        .iter()
        .map(|e| e["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["throttled 1", "throttled 2"]);
    let run = n.wait_run("tx-t3", "throttled").await;
    assert!(
        !steps_of(&run).iter().any(|(_, kind, _)| kind == "in_app"),
        "a throttled run went on: {run}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. delayPath in the past

#[tokio::test]
async fn a_delay_path_in_the_past_fails_the_delay_step_and_runs_nothing_after_it() {
    let n = novu().await;
    n.trigger(json!({"name": "until", "to": "pat", "payload": {"sendAt": "2029-06-01T00:00:00Z"}, "transactionId": "tx-past"}))
        .await;
    let run = n.wait_run("tx-past", "failed").await;
    let steps = run["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.len(), 1, "only the delay step ran: {run}");
    assert_eq!(steps[0]["step"], "wait");
    assert_eq!(steps[0]["type"], "delay");
    assert_eq!(steps[0]["status"], "failed");
    let detail = steps[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("past"), "the reason: {run}");
    n.advance(3600);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(n.entries("pat").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 9. chat

#[tokio::test]
async fn a_chat_step_writes_the_message_into_the_subscribers_dialog_with_the_bot() {
    let n = novu().await;
    n.trigger(json!({"name": "chat", "to": "cat", "payload": {"orderId": "C7"}, "transactionId": "tx-chat"}))
        .await;
    let msgs = n
        .server
        .wait_for_text("desk", "cat", "Parcel C7 is on its way")
        .await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let run = n.wait_run("tx-chat", "done").await;
    assert_eq!(
        steps_of(&run),
        [("tell".into(), "chat".into(), "done".into())],
        "{run}"
    );
}

/// A chat widget's chat id is chosen by the browser: when a stranger's widget dialog already
/// has the chat id that equals a subscriber's id, a chat step for that subscriber writes
/// nothing into it, and its step record says why.
#[tokio::test]
async fn a_chat_step_never_writes_into_another_contacts_widget_dialog() {
    let n = novu().await;
    let before = n.server.say("desk", "dog", "hi").await;
    assert_eq!(before.len(), 1, "{before:?}");
    n.trigger(json!({"name": "chat", "to": "dog", "payload": {"orderId": "D1"}, "transactionId": "tx-dog"}))
        .await;
    let run = eventually("the chat step of tx-dog to finish", async || {
        let rec = n.activity("tx-dog").await?;
        let run = rec["subscribers"][0].clone();
        (run["status"] != "pending" && run["status"] != "running").then_some(run)
    })
    .await;
    let failed: Vec<&Value> = run["steps"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["status"] == "failed").collect())
        .unwrap_or_default();
    assert_eq!(failed.len(), 1, "the chat step failed: {run}");
    assert!(
        failed[0].to_string().contains("belongs to another contact"),
        "{run}"
    );
    n.server.settle().await;
    let texts = n.server.texts("desk", "dog").await;
    assert_eq!(texts, ["hi", "hello"], "the stranger's dialog is untouched");
}

// ---------------------------------------------------------------------------------------------
// 10. webhooks

/// Requests a sink received: headers and body.
type Received = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A local receiver that records each request's headers and body and answers by `answer(n)`
/// (n = 1 for the first request).
#[derive(Clone)]
struct HookSink {
    url: String,
    got: Received,
}

impl HookSink {
    async fn start(answer: fn(usize) -> (u16, Option<&'static str>)) -> Self {
        let got: Received = Arc::default();
        let g = got.clone();
        let app = axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let g = g.clone();
                async move {
                    let n = {
                        let mut v = g.lock().expect("lock");
                        v.push((headers, body.to_vec()));
                        v.len()
                    };
                    let (code, retry_after) = answer(n);
                    let mut resp = axum::response::Response::new(axum::body::Body::from("{}"));
                    *resp.status_mut() = axum::http::StatusCode::from_u16(code).expect("status");
                    if let Some(r) = retry_after {
                        resp.headers_mut()
                            .insert("retry-after", axum::http::HeaderValue::from_static(r));
                    }
                    resp
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, got }
    }

    fn requests(&self) -> Vec<(axum::http::HeaderMap, Vec<u8>)> {
        self.got.lock().expect("lock").clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<(axum::http::HeaderMap, Vec<u8>)> {
        eventually(&format!("{n} webhook requests"), async || {
            let r = self.requests();
            (r.len() >= n).then_some(r)
        })
        .await
    }
}

fn header(h: &axum::http::HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn deliveries(n: &Novu) -> Vec<Value> {
    let (s, v) = n.server.get("/api/v1/deliveries").await;
    assert_eq!(s, 200, "{v}");
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

async fn wait_delivery(n: &Novu, status: &str) -> Value {
    eventually(&format!("a delivery to be {status}"), async || {
        deliveries(n)
            .await
            .into_iter()
            .find(|d| d["status"] == status)
    })
    .await
}

#[tokio::test]
async fn a_webhook_step_is_signed_retried_after_a_503_with_the_same_id_and_shown_delivered() {
    let sink = HookSink::start(|n| {
        if n == 1 {
            (503, Some("1"))
        } else {
            (200, None)
        }
    })
    .await;
    let n = novu_real(|_| {}).await;
    n.trigger(json!({"name": "hook", "to": "wes", "payload": {"url": sink.url, "orderId": "W1"}, "transactionId": "tx-hook"}))
        .await;
    let got = sink.wait_for(2).await;
    assert_eq!(got.len(), 2, "one failure, one success");
    let ids: Vec<String> = got.iter().map(|(h, _)| header(h, "webhook-id")).collect();
    assert!(!ids[0].is_empty(), "no webhook-id");
    assert_eq!(ids[0], ids[1], "the retry has another webhook-id");
    for (h, body) in &got {
        let ts: i64 = header(h, "webhook-timestamp")
            .parse()
            .expect("webhook-timestamp");
        let sig = header(h, "webhook-signature");
        assert!(
            herald_channels::verify(HOOK_SECRET, &header(h, "webhook-id"), ts, body, &sig),
            "a bad signature `{sig}`"
        );
        let v: Value = serde_json::from_slice(body).expect("a JSON body");
        assert_eq!(v["transactionId"], "tx-hook", "{v}");
        assert_eq!(v["payload"]["orderId"], "W1", "{v}");
        assert_eq!(v["subscriber"]["subscriberId"], "wes", "{v}");
    }
    let d = wait_delivery(&n, "delivered").await;
    assert_eq!(d["kind"], "webhook", "{d}");
    assert_eq!(d["attempts"], 2, "{d}");
    assert_eq!(d["request"]["secret"], "<hidden>", "{d}");
}

#[tokio::test]
async fn a_webhook_refused_with_400_becomes_a_dead_letter_that_retry_sends_again() {
    // Refused twice, then taken.
    let sink = HookSink::start(|n| if n <= 2 { (400, None) } else { (200, None) }).await;
    let n = novu_real(|_| {}).await;
    n.trigger(json!({"name": "hook", "to": "dan", "payload": {"url": sink.url}, "transactionId": "tx-dead"}))
        .await;
    let d = wait_delivery(&n, "dead").await;
    assert_eq!(sink.requests().len(), 1, "a 400 is not retried");
    assert!(
        d["lastError"].as_str().is_some_and(|e| e.contains("400")),
        "{d}"
    );
    let id = d["id"].as_i64().expect("delivery id");

    let (s, v) = n
        .server
        .post(&format!("/api/v1/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "pending", "{v}");
    sink.wait_for(2).await;
    // A retry by hand starts a fresh series of attempts; this one fails permanently again.
    let again = eventually("the retried delivery to be dead again", async || {
        deliveries(&n)
            .await
            .into_iter()
            .find(|d| d["id"] == id && d["status"] == "dead")
    })
    .await;
    assert_eq!(again["attempts"], 1, "{again}");
    assert_eq!(sink.requests().len(), 2, "sent once more, and only once");
    let (s, v) = n
        .server
        .post(&format!("/api/v1/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(s, 200, "a dead letter again: {v}");
    sink.wait_for(3).await;
    eventually("the second retry to be delivered", async || {
        deliveries(&n)
            .await
            .into_iter()
            .find(|d| d["id"] == id && d["status"] == "delivered")
    })
    .await;
    // Retrying what is not a dead letter is refused; an unknown id is not found.
    let (s, v) = n
        .server
        .post(&format!("/api/v1/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("not_dead")),
        "{v}"
    );
    let (s, v) = n
        .server
        .post("/api/v1/deliveries/999999/retry", json!({}))
        .await;
    assert_eq!(s, 404, "{v}");
}

// ---------------------------------------------------------------------------------------------
// 11. email

/// A running aiosmtpd writing to a maildir; killed when dropped.
struct SmtpSink {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl SmtpSink {
    async fn start() -> Self {
        let probe = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            matches!(probe, Ok(s) if s.success()),
            "this test needs Python's aiosmtpd (`pip install aiosmtpd`): {probe:?}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let log = std::fs::File::create(dir.path().join("aiosmtpd.log")).expect("log");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &addr.to_string()])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn aiosmtpd");
        let sink = SmtpSink { child, dir, addr };
        eventually("aiosmtpd to listen", async || {
            tokio::net::TcpStream::connect(sink.addr).await.ok()
        })
        .await;
        sink
    }

    fn messages(&self) -> Vec<String> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("new"))
            .expect("maildir")
            .map(|e| e.expect("entry").path())
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).expect("read")).into_owned())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_email_step_sends_the_rendered_mail_through_the_configured_smtp_server() {
    let smtp = SmtpSink::start().await;
    let addr = smtp.addr;
    let n = novu_real(|s| {
        s.smtp = Some(json!({
            "host": addr.ip().to_string(),
            "port": addr.port(),
            "from": "Herald <herald@example.com>",
        }));
    })
    .await;
    n.identify(json!({"subscriberId": "eve", "email": "eve@example.com", "firstName": "Eve"}))
        .await;
    n.trigger(json!({"name": "mail", "to": "eve", "payload": {"orderId": "E5"}, "transactionId": "tx-mail"}))
        .await;
    let mails = eventually("the mail in the maildir", async || {
        let m = smtp.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert!(mail.contains("Subject: Order E5 has shipped"), "{mail}");
    assert!(mail.contains("eve@example.com"), "{mail}");
    assert!(mail.contains("Hello Eve, it is on its way."), "{mail}");
    let d = wait_delivery(&n, "delivered").await;
    assert_eq!(d["kind"], "email", "{d}");
}

// ---------------------------------------------------------------------------------------------
// 12. broadcast

#[tokio::test]
async fn a_broadcast_reaches_every_subscriber() {
    let n = novu().await;
    for id in ["b1", "b2", "b3"] {
        n.identify(json!({"subscriberId": id})).await;
    }
    let (s, v) = n
        .post(
            "/v1/events/trigger/broadcast",
            json!({"name": "order-shipped", "payload": {"orderId": "ALL"}, "overrides": {}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["status"], "processed", "{v}");
    for id in ["b1", "b2", "b3"] {
        let e = n.wait_feed(id, 1).await;
        assert_eq!(e.len(), 1, "{id}: {e:?}");
        assert_eq!(e[0]["content"], "Hi there, order ALL has shipped.");
    }
    let tx = v["data"]["transactionId"].as_str().expect("tx");
    let rec = n.activity(tx).await.expect("activity");
    assert_eq!(
        rec["subscribers"].as_array().map(Vec::len),
        Some(3),
        "{rec}"
    );
}

#[tokio::test]
async fn a_webhook_to_a_metadata_address_is_refused_without_a_request() {
    let n = novu_real(|_| {}).await;
    n.trigger(json!({"name": "hook", "to": "meg", "payload": {"url": "http://169.254.169.254/latest/meta-data"}}))
        .await;
    let d = wait_delivery(&n, "dead").await;
    assert_eq!(d["attempts"], 1, "refused at once, not retried: {d}");
    assert!(
        d["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("169.254.169.254") && e.contains("refused")),
        "{d}"
    );
}

#[tokio::test]
async fn unusable_smtp_settings_stop_the_start_with_the_reason() {
    let project = project();
    let data = tempfile::tempdir().expect("tempdir");
    let mut s = settings(data.path());
    s.smtp = Some(json!({"host": "127.0.0.1", "from": "not an address"}));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let err = match herald::launch(s, project.path().to_owned(), listener).await {
        Ok(_) => panic!("herald started with an unusable [smtp] sender"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("[smtp]"), "{err}");
}
