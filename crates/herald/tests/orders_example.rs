//! The other two integrations of `examples/orders`, as a user would wire them up: a Stripe
//! payment lands in the dialog of the Shopify customer its metadata names (the same dialog as the
//! order), and a closed GitHub issue starts the workflow bound to it for the issue's author.
//! The recipes themselves are proven against the platforms' own libraries in
//! `ingest_presets.rs`; here the signatures follow the platforms' documentation.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SHOPIFY: &str = "shpss_test";
const STRIPE: &str = "whsec_test";
const GITHUB: &str = "gh_test";

struct Example {
    server: TestServer,
    _project: tempfile::TempDir,
    _data: tempfile::TempDir,
}

async fn example() -> Example {
    let project = project_copy(
        &examples_dir("orders"),
        &[
            ("${SHOPIFY_WEBHOOK_SECRET:-shpss_example_secret}", SHOPIFY),
            ("${STRIPE_WEBHOOK_SECRET:-whsec_example_secret}", STRIPE),
            ("${GITHUB_WEBHOOK_SECRET:-github_example_secret}", GITHUB),
        ],
    );
    let data = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(project.path(), data.path()).await;
    Example {
        server,
        _project: project,
        _data: data,
    }
}

fn hex_hmac(secret: &str, content: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(content);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Example {
    /// A Stripe event, signed as Stripe documents: `t=<unix>,v1=<hex HMAC of "<t>.<body>">`.
    async fn stripe(&self, event: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(event).expect("json");
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(&body);
        let header = format!("t={t},v1={}", hex_hmac(STRIPE, &signed));
        let r = self
            .server
            .http
            .post(self.server.url("/integrations/stripe/webhook"))
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body)
            .send()
            .await
            .expect("send");
        status_json(r).await
    }

    /// A GitHub delivery: `X-Hub-Signature-256: sha256=<hex HMAC of the body>`.
    async fn github(&self, event: &str, delivery: &str, payload: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(payload).expect("json");
        let r = self
            .server
            .http
            .post(self.server.url("/integrations/github/webhook"))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header(
                "x-hub-signature-256",
                format!("sha256={}", hex_hmac(GITHUB, &body)),
            )
            .body(body)
            .send()
            .await
            .expect("send");
        status_json(r).await
    }
}

fn payment_intent(id: &str, kind: &str, metadata: Value) -> Value {
    json!({
        "id": id,
        "object": "event",
        "type": kind,
        "data": {"object": {
            "id": "pi_1", "object": "payment_intent", "amount": 4250, "currency": "eur",
            "metadata": metadata,
            "last_payment_error": {"message": "Your card was declined."},
        }},
    })
}

#[tokio::test]
async fn a_stripe_payment_reaches_the_dialog_of_the_shopify_customer_it_names() {
    let ex = example().await;
    let meta = json!({"shopify_customer_id": "77", "order_number": "C1001"});
    let (s, v) = ex
        .stripe(&payment_intent(
            "evt_1",
            "payment_intent.payment_failed",
            meta.clone(),
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "accepted", "{v}");
    ex.server
        .wait_for_text(
            "shop",
            "shopify:77",
            "⚠️ Your payment of 42.50 EUR for order #C1001 did not go through: Your card was declined. You can try again from the link in your order e-mail.",
        )
        .await;
    let (s, v) = ex
        .stripe(&payment_intent("evt_2", "payment_intent.succeeded", meta))
        .await;
    assert_eq!((s, &v["status"]), (200, &json!("accepted")), "{v}");
    ex.server
        .wait_for_text(
            "shop",
            "shopify:77",
            "✅ We received your payment of 42.50 EUR for order #C1001.",
        )
        .await;

    // Stripe retries with the same event id: nothing more is said.
    let (s, v) = ex
        .stripe(&payment_intent(
            "evt_2",
            "payment_intent.succeeded",
            json!({"shopify_customer_id": "77"}),
        ))
        .await;
    assert_eq!((s, &v["status"]), (200, &json!("duplicate")), "{v}");

    // Without the customer in the metadata the payment names no one: invalid, not a stranger.
    let (s, v) = ex
        .stripe(&payment_intent(
            "evt_3",
            "payment_intent.succeeded",
            json!({}),
        ))
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("shopify_customer_id")),
        "{v}"
    );
    ex.server.settle().await;
    let texts: Vec<Value> = ex
        .server
        .messages("shop", "shopify:77")
        .await
        .into_iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        ex.server.messages("shop", "shopify:").await.is_empty(),
        "a message went to an empty customer id"
    );
}

#[tokio::test]
async fn a_closed_github_issue_lands_in_its_authors_feed_and_the_setup_ping_is_ignored() {
    let ex = example().await;
    let (s, v) = ex
        .github(
            "ping",
            "d-0",
            &json!({"zen": "Design for failure.", "hook_id": 1}),
        )
        .await;
    assert_eq!((s, &v["status"]), (202, &json!("ignored")), "{v}");

    let issue = json!({
        "action": "closed",
        "issue": {
            "number": 12, "title": "Tea arrives cold", "state_reason": "completed",
            "html_url": "https://github.com/example/shop/issues/12",
            "user": {"login": "octocat"},
        },
        "repository": {"full_name": "example/shop"},
    });
    let (s, v) = ex.github("issues", "d-1", &issue).await;
    assert_eq!((s, &v["status"]), (200, &json!("accepted")), "{v}");
    let feed = ex.server.wait_for_feed("github:octocat").await;
    assert_eq!(feed[0]["subject"], "Issue #12 was closed", "{feed:?}");
    assert_eq!(
        feed[0]["content"],
        "\"Tea arrives cold\" in example/shop was closed (completed). Thank you for reporting it.",
        "{feed:?}"
    );

    // An opened issue matches no event.
    let mut opened = issue.clone();
    opened["action"] = json!("opened");
    let (s, v) = ex.github("issues", "d-2", &opened).await;
    assert_eq!((s, &v["status"]), (202, &json!("ignored")), "{v}");
}
