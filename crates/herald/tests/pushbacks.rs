//! Every status code of the pushback API and its activation link, and the bad input each route
//! must refuse with a 4xx that names the problem (never a 5xx, never anything half-stored).

mod common;

use common::*;
use serde_json::{Value, json};

fn create_body(chat: &str) -> Value {
    json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": chat, "event": "newNotification", "eventData": {"text": "x"}})
}

async fn create(server: &TestServer, body: Value) -> (u16, Value) {
    server.post("/api/v1/pushbacks", body).await
}

#[tokio::test]
async fn creating_answers_201_with_every_field() {
    let (server, _s, _p, _d) = newsletter().await;
    let (s, p) = create(&server, json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": "c", "event": "newNotification", "eventData": {"a": 1}, "expiresAt": "2099-01-01T00:00:00Z", "maxUses": 3})).await;
    assert_eq!(s, 201, "{p}");
    for f in [
        "id",
        "link",
        "created",
        "channelType",
        "botId",
        "chatId",
        "event",
        "eventData",
        "expiresAt",
        "maxUses",
    ] {
        assert!(p.get(f).is_some(), "missing {f} in {p}");
    }
    let id = p["id"].as_str().expect("id");
    assert!(id.len() >= 32, "at least 122 random bits: {id}");
    assert_eq!(p["link"], format!("{}/push_{id}", server.base));
    assert_eq!(p["maxUses"], 3);
    assert_eq!(p["expiresAt"], "2099-01-01T00:00:00Z");
}

#[tokio::test]
async fn bad_create_requests_are_400_naming_the_field() {
    let (server, _s, _p, _d) = newsletter().await;
    let cases = [
        (
            json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": "c", "event": "noMatch"}),
            "event",
        ),
        (
            json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": "c", "event": ""}),
            "event",
        ),
        (
            json!({"channelType": "chatwidget", "botId": "nobot", "chatId": "c", "event": "e"}),
            "botId",
        ),
        (
            json!({"channelType": "telegram", "botId": "newsletter", "chatId": "c", "event": "e"}),
            "channelType",
        ),
        (
            json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": "c", "event": "e", "maxUses": "3"}),
            "maxUses",
        ),
        (
            json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": "c", "event": "e", "maxUses": 0}),
            "maxUses",
        ),
        (
            json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": "c", "event": "e", "expiresAt": "tomorrow"}),
            "expiresAt",
        ),
        (
            json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": "c", "event": "e", "eventData": [1]}),
            "eventData",
        ),
        (
            json!({"channelType": "chatwidget", "botId": "newsletter", "event": "e"}),
            "chatId",
        ),
        (
            json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": "c", "event": "e", "colour": 1}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let (s, e) = create(&server, body.clone()).await;
        assert_eq!(s, 400, "{body} → {e}");
        assert!(
            e["error"]["message"].as_str().unwrap_or("").contains(field),
            "{body}: message should name `{field}`: {e}"
        );
    }
    let (_, list) = server.get("/api/v1/pushbacks").await;
    assert_eq!(list["pushbacks"], json!([]), "nothing stored on error");
}

#[tokio::test]
async fn malformed_bodies_and_wrong_content_types_are_refused() {
    let (server, _s, _p, _d) = newsletter().await;
    let url = server.url("/api/v1/pushbacks");
    let r = server
        .http
        .post(&url)
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("send");
    let (s, e) = status_json(r).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("malformed_json")),
        "{e}"
    );
    let r = server
        .http
        .post(&url)
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 415);
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(300 * 1024));
    let r = server
        .http
        .post(&url)
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn management_routes_need_a_valid_token() {
    let (server, _s, _p, _d) = newsletter().await;
    let url = server.url("/api/v1/pushbacks");
    let r = server
        .http
        .post(&url)
        .json(&create_body("c"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = server
        .http
        .post(&url)
        .bearer_auth("wrong")
        .json(&create_body("c"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = server.http.get(&url).send().await.expect("send");
    assert_eq!(r.status(), 401);
    let r = server
        .http
        .get(server.url("/api/v1/bots/newsletter/dialogs/c/messages"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = server
        .http
        .get(server.url("/api/v1/admin/stats"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn list_show_and_revoke() {
    let (server, _s, _p, _d) = newsletter().await;
    let (_, a) = create(&server, create_body("list-a")).await;
    let (_, _b) = create(&server, create_body("list-b")).await;
    let (s, l) = server
        .get("/api/v1/pushbacks?botId=newsletter&chatId=list-a")
        .await;
    assert_eq!(s, 200);
    assert_eq!(l["pushbacks"].as_array().map(Vec::len), Some(1));
    let id = a["id"].as_str().expect("id");
    let link = a["link"].as_str().expect("link");
    assert_eq!(server.activate(link, json!({"text": "t"})).await.0, 200);
    let (s, shown) = server.get(&format!("/api/v1/pushbacks/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(shown["uses"], 1);
    assert!(shown["lastUsedAt"].is_string());
    let r = server
        .http
        .delete(server.url(&format!("/api/v1/pushbacks/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let r = server
        .http
        .delete(server.url(&format!("/api/v1/pushbacks/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 404);
    assert_eq!(server.get(&format!("/api/v1/pushbacks/{id}")).await.0, 404);
    assert_eq!(
        server.http.post(link).send().await.expect("post").status(),
        404,
        "a revoked link is 404"
    );
}

#[tokio::test]
async fn activation_status_codes() {
    let (server, _s, _p, _d) = newsletter().await;
    let (_, p) = create(&server, create_body("codes")).await;
    let link = p["link"].as_str().expect("link").to_owned();
    let post = |ct: &'static str, body: &'static str| {
        let (http, link) = (server.http.clone(), link.clone());
        async move {
            http.post(&link)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .expect("post")
        }
    };
    assert_eq!(
        post("application/json", r#"{"text":"ok"}"#).await.status(),
        200
    );
    assert_eq!(
        post("application/json", "").await.status(),
        200,
        "empty body uses the default data"
    );
    assert_eq!(post("application/json", "[1,2]").await.status(), 400);
    assert_eq!(post("application/json", "\"text\"").await.status(), 400);
    assert_eq!(post("application/json", "{broken").await.status(), 400);
    assert_eq!(post("text/plain", "hello").await.status(), 415);
    assert_eq!(
        post("application/x-www-form-urlencoded", "text=from+a+form")
            .await
            .status(),
        200
    );
    server
        .wait_for_text(
            "newsletter",
            "codes",
            "We have a unique offer just for you! from a form",
        )
        .await;
    let big = "{\"text\":\"".to_owned() + &"a".repeat(300 * 1024) + "\"}";
    let r = server
        .http
        .post(&link)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    assert_eq!(
        server
            .status_of("/push_0123456789abcdef0123456789abcdef")
            .await,
        404
    );
    assert_eq!(server.status_of("/push_").await, 404);
    assert_eq!(server.status_of("/nothing-here").await, 404);

    let (_, once) = create(&server, json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": "codes", "event": "e1", "maxUses": 1})).await;
    let once = once["link"].as_str().expect("link");
    assert_eq!(
        server.http.get(once).send().await.expect("get").status(),
        200
    );
    let r = server.http.get(once).send().await.expect("get");
    assert_eq!(r.status(), 410, "used up");
    let (_, old) = create(&server, json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": "codes", "event": "e1", "expiresAt": "2001-01-01T00:00:00Z"})).await;
    assert_eq!(
        server
            .http
            .get(old["link"].as_str().expect("link"))
            .send()
            .await
            .expect("get")
            .status(),
        410,
        "expired"
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_answer_without_a_second_event() {
    let (server, _s, _p, _d) = newsletter().await;
    let (_, p) = create(&server, create_body("idem")).await;
    let link = p["link"].as_str().expect("link");
    let send = || {
        server
            .http
            .post(link)
            .header("Idempotency-Key", "order-42")
            .json(&json!({"text": "once"}))
            .send()
    };
    let first: Value = send().await.expect("post").json().await.expect("json");
    let second = send().await.expect("post");
    assert_eq!(
        second
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap_or("")),
        Some("true")
    );
    let second: Value = second.json().await.expect("json");
    assert_eq!(first, second);
    server.settle().await;
    let offers = server
        .messages("newsletter", "idem")
        .await
        .into_iter()
        .filter(|m| m["text"] == "We have a unique offer just for you! once")
        .count();
    assert_eq!(offers, 1);
    let (_, shown) = server
        .get(&format!(
            "/api/v1/pushbacks/{}",
            p["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(shown["uses"], 1);
}

#[tokio::test]
async fn over_the_per_link_rate_limit_answers_429_with_retry_after() {
    let (server, _sink, _p, _d) = newsletter_with(|s| {
        s.pushback_rate_limit = 1;
        s.pushback_rate_burst = 2;
    })
    .await;
    let (_, p) = create(&server, create_body("rl")).await;
    let link = p["link"].as_str().expect("link");
    let mut codes = Vec::new();
    for _ in 0..4 {
        let r = server.http.get(link).send().await.expect("get");
        if r.status() == 429 {
            let retry: u64 = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("Retry-After");
            assert!(retry >= 1);
        }
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [200, 200, 429, 429]);
    let (_, other) = create(&server, create_body("rl2")).await;
    assert_eq!(
        server
            .http
            .get(other["link"].as_str().expect("link"))
            .send()
            .await
            .expect("get")
            .status(),
        200,
        "limits are per link"
    );
}

#[tokio::test]
async fn the_dialog_api_refuses_bad_messages() {
    let (server, _s, _p, _d) = newsletter().await;
    let path = "/api/v1/bots/newsletter/dialogs/bad/messages";
    for (body, needle) in [
        (json!({}), "exactly one"),
        (json!({"text": "a", "event": "b"}), "exactly one"),
        (json!({"text": ""}), "text"),
        (json!({"text": 5}), "text"),
        (json!({"event": "noMatch"}), "event"),
        (json!({"event": "x", "data": 3}), "data"),
        (
            json!({"text": "hi", "channelType": "telegram"}),
            "channelType",
        ),
        (json!({"text": "hi", "wait": "soon"}), "wait"),
    ] {
        let (s, e) = server.post(path, body.clone()).await;
        assert_eq!(s, 400, "{body}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(needle),
            "{body}: {e}"
        );
    }
    assert_eq!(
        server
            .post(
                "/api/v1/bots/nobot/dialogs/x/messages",
                json!({"text": "hi"})
            )
            .await
            .0,
        404
    );
    assert_eq!(
        server
            .post(
                "/api/v1/bots/newsletter/dialogs/a%20b/messages",
                json!({"text": "hi"})
            )
            .await
            .0,
        400
    );
    assert_eq!(
        server.get("/api/v1/bots/newsletter/dialogs/never").await.0,
        404
    );
    assert_eq!(server.get("/api/v1/contacts/999").await.0, 404);
    assert_eq!(server.get("/api/v1/contacts/abc").await.0, 404);
    assert!(
        server.messages("newsletter", "bad").await.is_empty(),
        "nothing stored"
    );
}
