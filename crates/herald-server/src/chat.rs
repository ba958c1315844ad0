//! The chat widget channel: the page, its assets, `widget.js`, and the WebSocket protocol.
//! A socket first gets every stored reply its chat has not acknowledged, then live replies;
//! ids let the client drop duplicates, and acks move the replay cursor.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use herald_store::{AcceptItem, DialogKey, EventPayload, NewEvent, StoredMessage};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::dialogs::check_chat_id;
use crate::error::{ApiError, ApiQuery};

const CHANNEL: &str = "chatwidget";
const PAGE: &str = include_str!("../assets/chat.html");
const MAX_FRAME: usize = 16 * 1024;
/// Bytes a chat socket reads at a time. The WebSocket codec zero-fills its whole read buffer
/// before every read (128 KiB by default), which cost the server 8 % of its CPU with 200 open
/// sockets; chat frames are small, and a larger one is simply read in several calls.
const READ_BUFFER: usize = 8 * 1024;
const REPLAY_LIMIT: usize = 1000;

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn chat_bot<'a>(st: &'a AppState, bot_id: &str) -> Result<&'a herald_core::BotDef, ApiError> {
    st.engine
        .shared()
        .project
        .bots
        .get(bot_id)
        .map(|b| b.as_ref())
        .filter(|b| b.has_channel(CHANNEL))
        .ok_or_else(|| ApiError::not_found(format!("no chat for bot `{bot_id}`")))
}

pub async fn page(
    State(st): State<AppState>,
    Path(bot_id): Path<String>,
) -> Result<Response, ApiError> {
    let bot = chat_bot(&st, &bot_id)?;
    let html = PAGE
        .replace("__HERALD_BOT_ID__", &escape_html(&bot.id))
        .replace("__HERALD_BOT_NAME__", &escape_html(&bot.name));
    Ok(Html(html).into_response())
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

pub async fn widget_js() -> Response {
    asset(
        include_str!("../assets/widget.js"),
        "text/javascript; charset=utf-8",
    )
}

pub async fn assets(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "chat.js" => asset(
            include_str!("../assets/chat.js"),
            "text/javascript; charset=utf-8",
        ),
        "chat.css" => asset(
            include_str!("../assets/chat.css"),
            "text/css; charset=utf-8",
        ),
        _ => ApiError::not_found("no such asset").into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsQuery {
    chat_id: Option<String>,
}

pub async fn ws(
    State(st): State<AppState>,
    Path(bot_id): Path<String>,
    ApiQuery(q): ApiQuery<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    chat_bot(&st, &bot_id)?;
    let chat_id = match q.chat_id.filter(|c| !c.is_empty()) {
        Some(c) => {
            check_chat_id(&c)?;
            c
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let upgrade = upgrade
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "websocket_required", e.body_text()))?;
    // The socket stays open after the upgrade: it keeps a slot of the connection cap.
    let slot = st.connections.socket_slot().ok_or_else(|| {
        ApiError::unavailable("the server has no room for another connection; retry later")
    })?;
    let key = DialogKey::new(CHANNEL, &bot_id, &chat_id);
    // A frame's header tells its length: one over the limit is refused before its payload is
    // read, so a client cannot make the server buffer more than `MAX_FRAME` per socket.
    Ok(upgrade
        .max_frame_size(MAX_FRAME)
        .max_message_size(MAX_FRAME)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            let hub_owner = st.engine.shared().clone();
            if let Err(e) = session(st, key.clone(), socket).await {
                tracing::debug!(error = %e, "chat socket closed");
            }
            // The session's receiver is gone now; drop the dialog's entry if it was the last.
            hub_owner.hub.prune(&key);
        }))
}

fn frame(m: &StoredMessage) -> Message {
    Message::Text(
        json!({
            "type": "message",
            "id": m.id.to_string(),
            "text": m.text,
            "buttons": m.buttons,
            "form": null,
            "ts": m.ts.to_string(),
        })
        .to_string()
        .into(),
    )
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn error_frame(message: &str) -> Message {
    Message::Text(
        json!({"type": "error", "message": message})
            .to_string()
            .into(),
    )
}

async fn session(st: AppState, key: DialogKey, mut socket: WebSocket) -> Result<(), axum::Error> {
    let shared = st.engine.shared().clone();
    socket
        .send(Message::Text(
            json!({"type": "hello", "chatId": key.chat_id})
                .to_string()
                .into(),
        ))
        .await?;
    // Subscribe before reading the backlog so nothing falls between the two.
    let mut live = shared.hub.subscribe(&key);
    let mut last_sent = 0i64;
    match shared.store.unacked_messages(&key, REPLAY_LIMIT).await {
        Ok(backlog) => {
            for m in backlog {
                last_sent = m.id;
                socket.send(frame(&m)).await?;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the chat backlog");
            socket
                .send(error_frame("cannot load earlier messages; reconnect later"))
                .await?;
        }
    }
    loop {
        tokio::select! {
            msg = live.recv() => match msg {
                Ok(m) => if m.id > last_sent {
                    last_sent = m.id;
                    socket.send(frame(&m)).await?;
                },
                Err(RecvError::Lagged(_)) => {
                    // Too far behind the live feed: catch up from storage.
                    if let Ok(missed) = shared.store.list_messages(&key, last_sent, REPLAY_LIMIT).await {
                        for m in missed.iter().filter(|m| m.direction == herald_store::Direction::Out) {
                            last_sent = m.id;
                            socket.send(frame(m)).await?;
                        }
                    }
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            incoming = socket.recv() => match incoming {
                None => return Ok(()),
                Some(Err(e)) => {
                    // Most often a frame over the limit; say so before closing, if the socket
                    // still takes a frame.
                    let (code, reason) = if e.to_string().to_ascii_lowercase().contains("too long") {
                        (close_code::SIZE, "frames are at most 16 KiB")
                    } else {
                        (close_code::PROTOCOL, "malformed WebSocket frame")
                    };
                    let _ = socket.send(close(code, reason)).await;
                    return Err(e);
                }
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = client_frame(&st, &key, &text).await {
                        socket.send(reply).await?;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    socket
                        .send(close(close_code::UNSUPPORTED, "send JSON in text frames"))
                        .await?;
                    return Ok(());
                }
                Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Handles one client frame; returns a frame to send back when there is something to say.
async fn client_frame(st: &AppState, key: &DialogKey, text: &str) -> Option<Message> {
    let Ok(v @ Value::Object(_)) = crate::json::parse_value(text.as_bytes()) else {
        return Some(error_frame("frames must be JSON objects"));
    };
    let str_field = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    let payload = match v.get("type").and_then(Value::as_str) {
        Some("text") => match str_field("text") {
            Some(t) if !t.trim().is_empty() => EventPayload::Text { text: t },
            _ => return Some(error_frame("a text frame needs a non-empty `text`")),
        },
        Some("button") => {
            let id = str_field("id");
            let text = str_field("text");
            match (id, text) {
                (Some(id), Some(text)) => EventPayload::Button { id, text },
                (Some(id), None) => EventPayload::Button {
                    text: id.clone(),
                    id,
                },
                (None, Some(text)) => EventPayload::Button {
                    id: text.clone(),
                    text,
                },
                (None, None) => return Some(error_frame("a button frame needs `id` or `text`")),
            }
        }
        Some("ack") => {
            let up_to = match v.get("upTo") {
                Some(Value::String(s)) => s.parse::<i64>().ok(),
                Some(Value::Number(n)) => n.as_i64(),
                _ => None,
            };
            let Some(up_to) = up_to else {
                return Some(error_frame(
                    "an ack frame needs `upTo`: the id of the last message received",
                ));
            };
            let ack = AcceptItem::Ack {
                dialog: key.clone(),
                up_to,
            };
            if let Err(e) = st.engine.accept(ack).await {
                tracing::error!(error = %e, "cannot store an ack");
            }
            return None;
        }
        Some("form") => return Some(error_frame("this bot does not use forms")),
        _ => {
            return Some(error_frame(
                "unknown frame type; expected text, button, form or ack",
            ));
        }
    };
    let event = NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        dialog: key.clone(),
        payload,
        source: CHANNEL.into(),
        accepted_at: Timestamp::now(),
    };
    match st.engine.accept(AcceptItem::Event(event)).await {
        Ok(_) => None,
        Err(e) => Some(error_frame(&format!("message not accepted: {e}"))),
    }
}
