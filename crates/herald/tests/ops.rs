//! Operations and channel routes as a user or a load balancer meets them: health, readiness,
//! Prometheus metrics, the chat page and its assets, and their 4xx answers. Also a graceful stop
//! under load: every activation answered 200 before the stop is handled by the next start.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let (server, _s, _p, _d) = newsletter().await;
    let (s, h) = server.get("/healthz").await;
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
    let (s, r) = server.get("/readyz").await;
    assert_eq!(
        (s, r["status"].as_str(), r["bots"].as_u64()),
        (200, Some("ready"), Some(1))
    );
    server.say("newsletter", "m", "hi").await;
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains("herald_http_requests_total"), "{text}");
    assert!(text.contains("herald_events_accepted_total"), "{text}");
    assert!(text.contains("herald_events_handled_total"), "{text}");
    let (s, st) = server.get("/api/v1/admin/stats").await;
    assert_eq!(s, 200);
    assert_eq!(st["events"]["pending"], 0);
    assert!(st["events"]["accepted"].as_i64().unwrap_or(0) >= 1);
}

#[tokio::test]
async fn the_chat_page_and_its_assets_are_served() {
    let (server, _s, _p, _d) = newsletter().await;
    let r = server
        .http
        .get(server.url("/chat/newsletter?embed=1"))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("html");
    assert!(html.contains("Newsletter bot"), "bot name in the page");
    assert!(!html.contains("__HERALD_BOT_ID__"), "placeholders replaced");
    let r = server
        .http
        .get(server.url("/chat/widget.js"))
        .send()
        .await
        .expect("widget");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/javascript")
    );
    for asset in ["chat.js", "chat.css"] {
        let r = server
            .http
            .get(server.url(&format!("/chat/assets/{asset}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(r.status(), 200, "{asset}");
    }
    assert_eq!(server.status_of("/chat/assets/secret.txt").await, 404);
    assert_eq!(server.status_of("/chat/nobot").await, 404);
    assert_eq!(server.status_of("/chat/nobot/ws").await, 404);
    assert_eq!(
        server
            .status_of("/chat/newsletter/ws?chatId=has%20space")
            .await,
        400,
        "bad chatId"
    );
    assert_eq!(
        server.status_of("/chat/newsletter/ws?chatId=ok").await,
        400,
        "not a WebSocket upgrade"
    );
    let r = server
        .http
        .put(server.url("/healthz"))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 405);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("application/json")
    );
}

#[tokio::test]
async fn a_graceful_stop_under_load_loses_no_acknowledged_activation() {
    let (mut server, _sink, project, data) = newsletter().await;
    let mut links = Vec::new();
    for i in 0..8 {
        let (s, p) = server
            .post(
                "/api/v1/pushbacks",
                json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": format!("g{i}"), "event": "newNotification"}),
            )
            .await;
        assert_eq!(s, 201);
        links.push(p["link"].as_str().expect("link").to_owned());
    }
    let http = server.http.clone();
    let firing = tokio::spawn(async move {
        let mut acked = Vec::new();
        for n in 0..400 {
            let link = &links[n % links.len()];
            match http
                .post(link)
                .json(&json!({"text": format!("n{n}")}))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => acked.push((n % 8, n)),
                _ => break,
            }
        }
        acked
    });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    server.stop().await;
    let acked = firing.await.expect("firing task");
    assert!(
        !acked.is_empty(),
        "some activations were answered before the stop"
    );

    let server = TestServer::start(project.path(), data.path()).await;
    server.settle().await;
    for (chat, n) in acked {
        let msgs = server.messages("newsletter", &format!("g{chat}")).await;
        let want = format!("We have a unique offer just for you! n{n}");
        let count = msgs.iter().filter(|m| m["text"] == want.as_str()).count();
        assert_eq!(
            count, 1,
            "activation n{n} in g{chat} must have exactly one reply"
        );
    }
}
