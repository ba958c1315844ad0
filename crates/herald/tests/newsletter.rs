//! The newsletter story from the README, end to end through the real server: over the dialog
//! HTTP API, over the chat WebSocket (with offline replay), and across a restart.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn texts(replies: &[Value]) -> Vec<String> {
    replies
        .iter()
        .map(|r| r["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_newsletter_story_works_over_http() {
    let (server, sink, _p, _d) = newsletter().await;
    let offer = server.say("newsletter", "u1", "hi").await;
    assert_eq!(
        texts(&offer),
        ["Do you want to subscribe to our newsletter?"]
    );
    assert_eq!(
        offer[0]["buttons"],
        json!([{"id": "Yes", "text": "Yes"}, {"id": "No", "text": "No"}])
    );
    let hooray = server.say("newsletter", "u1", "Yes").await;
    assert_eq!(
        texts(&hooray),
        ["Hooray! Now you'll be the first to know about all our sales and promotions."]
    );

    let got = sink.wait_for(1).await;
    let link = got[0]["link"]
        .as_str()
        .expect("the subscribe service got a link")
        .to_owned();
    assert!(
        link.starts_with(&format!("{}/push_", server.base)),
        "{link}"
    );

    let (status, body) = server.activate(&link, json!({"text": "20% off"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "accepted");
    assert!(body["eventId"].is_string());
    let msgs = server
        .wait_for_text(
            "newsletter",
            "u1",
            "We have a unique offer just for you! 20% off",
        )
        .await;
    // history keeps both directions in order
    let all: Vec<(String, String)> = msgs
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap_or("").into(),
                m["text"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(all[0], ("in".into(), "hi".into()));
    assert_eq!(
        all.last().map(|m| m.1.as_str()),
        Some("We have a unique offer just for you! 20% off")
    );
}

#[tokio::test]
async fn a_get_activation_uses_the_default_event_data() {
    let (server, _sink, _p, _d) = newsletter().await;
    let (s, p) = server
        .post(
            "/api/v1/pushbacks",
            json!({"channelType": "chatwidget", "botId": "newsletter", "chatId": "g1", "event": "newNotification", "eventData": {"text": "default deal"}}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let r = server
        .http
        .get(p["link"].as_str().expect("link"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    server
        .wait_for_text(
            "newsletter",
            "g1",
            "We have a unique offer just for you! default deal",
        )
        .await;
}

#[tokio::test]
async fn unknown_text_gets_the_no_match_answer_and_no_leaves_the_offer() {
    let (server, _sink, _p, _d) = newsletter().await;
    assert_eq!(
        texts(&server.say("newsletter", "u2", "what is this").await),
        ["Sorry, I did not get that."]
    );
    server.say("newsletter", "u2", "hello").await;
    assert_eq!(
        texts(&server.say("newsletter", "u2", "no thanks").await),
        ["OK, maybe later."]
    );
    let (_, d) = server.get("/api/v1/bots/newsletter/dialogs/u2").await;
    assert_eq!(d["state"], "/SubscribeOffer/Decline");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &str, chat: Option<&str>) -> (Ws, String) {
    let ws_base = base.replacen("http://", "ws://", 1);
    let url = match chat {
        Some(c) => format!("{ws_base}/chat/newsletter/ws?chatId={c}"),
        None => format!("{ws_base}/chat/newsletter/ws"),
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    let hello = next_frame(&mut ws).await.expect("hello");
    assert_eq!(hello["type"], "hello");
    let chat = hello["chatId"].as_str().expect("chatId").to_owned();
    (ws, chat)
}

async fn next_frame(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

#[tokio::test]
async fn the_newsletter_story_works_over_the_websocket_with_offline_replay() {
    let (server, sink, _p, _d) = newsletter().await;
    let (mut ws, chat) = connect(&server.base, None).await;
    assert!(!chat.is_empty(), "a new chat id is issued");
    send(&mut ws, json!({"type": "text", "text": "hi"})).await;
    let offer = next_frame(&mut ws).await.expect("offer");
    assert_eq!(offer["type"], "message");
    assert_eq!(offer["text"], "Do you want to subscribe to our newsletter?");
    assert_eq!(offer["buttons"][0]["id"], "Yes");
    send(
        &mut ws,
        json!({"type": "button", "id": "Yes", "text": "Yes"}),
    )
    .await;
    let hooray = next_frame(&mut ws).await.expect("hooray");
    assert!(
        hooray["text"].as_str().unwrap_or("").starts_with("Hooray!"),
        "{hooray}"
    );
    send(&mut ws, json!({"type": "ack", "upTo": hooray["id"]})).await;
    // the browser tab closes
    ws.close(None).await.ok();
    drop(ws);

    let link = sink.wait_for(1).await[0]["link"]
        .as_str()
        .expect("link")
        .to_owned();
    for text in ["20% off", "30% off"] {
        assert_eq!(server.activate(&link, json!({"text": text})).await.0, 200);
    }
    server.settle().await;

    // the tab opens again: the offers wait for it, in order
    let (mut ws, same) = connect(&server.base, Some(&chat)).await;
    assert_eq!(same, chat);
    let a = next_frame(&mut ws).await.expect("first offline message");
    let b = next_frame(&mut ws).await.expect("second offline message");
    assert_eq!(a["text"], "We have a unique offer just for you! 20% off");
    assert_eq!(b["text"], "We have a unique offer just for you! 30% off");
    send(&mut ws, json!({"type": "ack", "upTo": b["id"]})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ws.close(None).await.ok();

    // acknowledged messages are not replayed again
    let (mut ws, _) = connect(&server.base, Some(&chat)).await;
    let extra = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
    assert!(extra.is_err(), "nothing more to replay, got {extra:?}");
}

#[tokio::test]
async fn bad_websocket_frames_get_an_error_frame_and_the_socket_stays_open() {
    let (server, _sink, _p, _d) = newsletter().await;
    let (mut ws, _) = connect(&server.base, Some("frames")).await;
    for bad in [
        json!("x"),
        json!({"type": "nope"}),
        json!({"type": "text", "text": ""}),
        json!({"type": "ack"}),
    ] {
        send(&mut ws, bad).await;
        let e = next_frame(&mut ws).await.expect("error frame");
        assert_eq!(e["type"], "error", "{e}");
    }
    send(&mut ws, json!({"type": "text", "text": "hi"})).await;
    assert_eq!(next_frame(&mut ws).await.expect("offer")["type"], "message");
}

#[tokio::test]
async fn links_and_queued_replies_survive_a_restart() {
    let (mut server, sink, project, data) = newsletter().await;
    server.say("newsletter", "r1", "hi").await;
    server.say("newsletter", "r1", "Yes").await;
    let link_before = sink.wait_for(1).await[0]["link"]
        .as_str()
        .expect("link")
        .to_owned();
    let id = link_before.rsplit("push_").next().expect("id").to_owned();
    let r = server
        .http
        .post(&link_before)
        .json(&json!({"text": "before restart"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    server.stop().await;

    let server = TestServer::start(project.path(), data.path()).await;
    // the same link on the new server (port may differ; the id is what counts)
    let link = server.url(&format!("/push_{id}"));
    assert_eq!(
        server
            .activate(&link, json!({"text": "after restart"}))
            .await
            .0,
        200,
        "the link still works after a restart"
    );
    server
        .wait_for_text(
            "newsletter",
            "r1",
            "We have a unique offer just for you! after restart",
        )
        .await;

    // nothing was acknowledged by a chat client: everything queued is replayed on connect, in order
    let ws_base = server.base.replacen("http://", "ws://", 1);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{ws_base}/chat/newsletter/ws?chatId=r1"))
            .await
            .expect("ws");
    let mut got = Vec::new();
    while let Some(f) = next_frame(&mut ws).await {
        if f["type"] == "message" {
            got.push(f["text"].as_str().unwrap_or_default().to_owned());
        }
        if got.len() == 4 {
            break;
        }
    }
    assert_eq!(
        got,
        [
            "Do you want to subscribe to our newsletter?",
            "Hooray! Now you'll be the first to know about all our sales and promotions.",
            "We have a unique offer just for you! before restart",
            "We have a unique offer just for you! after restart",
        ]
    );
    let _ = data;
}
