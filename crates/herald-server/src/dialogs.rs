//! The dialog API: inject a user message or an event into a dialog and read its messages back,
//! so tests and custom front ends need no WebSocket. Also the contact view.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::bot::model::is_reserved_event;
use herald_store::{AcceptItem, AcceptOutcome, DialogKey, EventPayload, NewEvent, StoredMessage};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{caller, require_bot};
use crate::error::{ApiError, ApiJson, ApiQuery};

pub fn message_json(m: &StoredMessage) -> Value {
    json!({
        "id": m.id.to_string(),
        "direction": m.direction,
        "text": m.text,
        "buttons": m.buttons,
        "ts": m.ts.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonIn {
    id: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageIn {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    button: Option<ButtonIn>,
    #[serde(default)]
    channel_type: Option<String>,
    /// Wait for the replies (up to this many milliseconds, or 10 s for `true`).
    #[serde(default)]
    wait: Option<Value>,
}

const MAX_WAIT: Duration = Duration::from_secs(30);

/// The dialog's channel: the one asked for, else the bot's only one (preferring `webhook`).
fn channel_of(st: &AppState, bot_id: &str, asked: Option<String>) -> Result<String, ApiError> {
    let bot = st
        .engine
        .shared()
        .project
        .bots
        .get(bot_id)
        .ok_or_else(|| ApiError::not_found(format!("unknown bot `{bot_id}`")))?;
    match asked {
        Some(c) if bot.has_channel(&c) => Ok(c),
        Some(c) => Err(ApiError::invalid_field(
            "channelType",
            format!("bot `{bot_id}` has no `{c}` channel"),
        )),
        None if bot.has_channel("webhook") => Ok("webhook".into()),
        None => bot.channels.keys().next().cloned().ok_or_else(|| {
            ApiError::invalid_field("channelType", format!("bot `{bot_id}` has no channels"))
        }),
    }
}

/// A chat id from a path or query: [`herald_core::ident`]'s rule, or 400 naming `chatId`.
pub fn check_chat_id(chat_id: &str) -> Result<(), ApiError> {
    herald_core::ident::check("chatId", chat_id).map_err(|m| ApiError::invalid_field("chatId", m))
}

pub async fn post_message(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((bot_id, chat_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<MessageIn>,
) -> Result<Response, ApiError> {
    require_bot(&st, &headers, &bot_id)?;
    check_chat_id(&chat_id)?;
    let channel = channel_of(&st, &bot_id, body.channel_type)?;
    let payload = match (body.text, body.event, body.button) {
        (Some(text), None, None) => {
            if text.trim().is_empty() {
                return Err(ApiError::invalid_field("text", "text must not be empty"));
            }
            if body.data.is_some() {
                return Err(ApiError::invalid_field(
                    "data",
                    "data goes with `event`, not with `text`",
                ));
            }
            EventPayload::Text { text }
        }
        (None, Some(name), None) => {
            herald_core::ident::check("event", &name)
                .map_err(|m| ApiError::invalid_field("event", m))?;
            if is_reserved_event(&name) {
                return Err(ApiError::invalid_field(
                    "event",
                    format!("`{name}` is a reserved system event"),
                ));
            }
            let data = body.data.unwrap_or_else(|| json!({}));
            if !data.is_object() {
                return Err(ApiError::invalid_field(
                    "data",
                    "data must be a JSON object",
                ));
            }
            EventPayload::Event { name, data }
        }
        (None, None, Some(b)) => EventPayload::Button {
            text: b.text.unwrap_or_else(|| b.id.clone()),
            id: b.id,
        },
        _ => {
            return Err(ApiError::bad_request(
                "send exactly one of `text`, `event` or `button`",
            ));
        }
    };
    let wait = match body.wait {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(Duration::from_secs(10)),
        Some(Value::Number(n)) if n.as_u64().is_some() => {
            n.as_u64().map(|ms| Duration::from_millis(ms).min(MAX_WAIT))
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                "wait",
                "wait must be true, false or milliseconds",
            ));
        }
    };
    let event = NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        dialog: DialogKey::new(&channel, &bot_id, &chat_id),
        payload,
        source: "api".into(),
        accepted_at: Timestamp::now(),
    };
    let id = event.id.clone();
    let watch = wait.map(|_| st.engine.watch(&id));
    let outcome = st.engine.accept(AcceptItem::Event(event)).await;
    if !matches!(outcome, Ok(AcceptOutcome::Accepted(_))) {
        st.engine.unwatch(&id);
        outcome?;
        return Err(ApiError::internal("event was not accepted"));
    }
    if let (Some(rx), Some(wait)) = (watch, wait) {
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(replies)) => {
                let replies: Vec<Value> = replies.iter().map(message_json).collect();
                return Ok(
                    Json(json!({"status": "handled", "eventId": id, "replies": replies}))
                        .into_response(),
                );
            }
            _ => st.engine.unwatch(&id),
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "accepted", "eventId": id})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesQuery {
    after: Option<i64>,
    limit: Option<usize>,
    channel_type: Option<String>,
}

/// The query and the dialog a read route is about, once the caller may read that bot.
fn dialog_read(
    st: &AppState,
    headers: &HeaderMap,
    bot_id: &str,
    chat_id: &str,
    mut q: MessagesQuery,
) -> Result<(MessagesQuery, DialogKey), ApiError> {
    require_bot(st, headers, bot_id)?;
    let channel = channel_of(st, bot_id, q.channel_type.take())?;
    Ok((q, DialogKey::new(&channel, bot_id, chat_id)))
}

pub async fn list_messages(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((bot_id, chat_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> Result<Json<Value>, ApiError> {
    let (q, key) = dialog_read(&st, &headers, &bot_id, &chat_id, q)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let msgs = st
        .engine
        .shared()
        .store
        .list_messages(&key, q.after.unwrap_or(0), limit)
        .await?;
    let next = msgs.last().map(|m| m.id.to_string());
    Ok(Json(
        json!({"messages": msgs.iter().map(message_json).collect::<Vec<_>>(), "next": next}),
    ))
}

pub async fn show_dialog(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((bot_id, chat_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> Result<Json<Value>, ApiError> {
    let (_, key) = dialog_read(&st, &headers, &bot_id, &chat_id, q)?;
    let d = st
        .engine
        .shared()
        .store
        .load_dialog(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no dialog `{chat_id}` with bot `{bot_id}`")))?;
    Ok(Json(json!({
        "channelType": d.key.channel_type, "botId": d.key.bot_id, "chatId": d.key.chat_id,
        "state": d.state, "session": d.session, "contactId": d.contact_id,
        "createdAt": d.created_at.to_string(), "updatedAt": d.updated_at.to_string(),
    })))
}

pub async fn show_contact(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&st, &headers)?;
    let not_found = || ApiError::not_found(format!("no contact `{id}`"));
    let num: i64 = id.parse().map_err(|_| not_found())?;
    let c = st
        .engine
        .shared()
        .store
        .get_contact(num)
        .await?
        .ok_or_else(not_found)?;
    if !c.dialogs.iter().any(|d| who.may_manage(&d.bot_id)) && who != crate::auth::Caller::Admin {
        return Err(not_found());
    }
    Ok(Json(json!({
        "id": c.id, "subscriberId": c.subscriber_id, "data": c.data, "attributes": c.attributes, "tags": c.tags,
        "createdAt": c.created_at.to_string(),
        "dialogs": c.dialogs.iter().map(|d| json!({"channelType": d.channel_type, "botId": d.bot_id, "chatId": d.chat_id})).collect::<Vec<_>>(),
    })))
}
