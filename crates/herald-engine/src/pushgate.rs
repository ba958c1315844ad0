//! Pushbacks: capability links bound to one dialog and one event. Creation is shared by the
//! script API (`$pushgate.createPushback`) and the REST API, so both validate the same way.

use herald_core::Project;
use herald_core::bot::model::is_reserved_event;
use herald_store::{DialogKey, Pushback, Store, StoreError};
use jiff::Timestamp;
use rand::RngCore;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct PushbackIn {
    pub dialog: DialogKey,
    pub event: String,
    pub event_data: Value,
    pub expires_at: Option<Timestamp>,
    pub max_uses: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PushbackError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> PushbackError {
    PushbackError::Invalid {
        field,
        message: message.into(),
    }
}

/// Checks a pushback request against the loaded bots.
pub fn validate(project: &Project, p: &PushbackIn) -> Result<(), PushbackError> {
    herald_core::ident::check("event", &p.event).map_err(|m| invalid("event", m))?;
    if is_reserved_event(&p.event) {
        return Err(invalid(
            "event",
            format!(
                "`{}` is a reserved system event and cannot be raised by a pushback",
                p.event
            ),
        ));
    }
    herald_core::ident::check("chatId", &p.dialog.chat_id).map_err(|m| invalid("chatId", m))?;
    let Some(bot) = project.bots.get(&p.dialog.bot_id) else {
        return Err(invalid(
            "botId",
            format!("unknown bot `{}`", p.dialog.bot_id),
        ));
    };
    if !bot.has_channel(&p.dialog.channel_type) {
        return Err(invalid(
            "channelType",
            format!(
                "bot `{}` has no `{}` channel",
                p.dialog.bot_id, p.dialog.channel_type
            ),
        ));
    }
    if !p.event_data.is_object() {
        return Err(invalid("eventData", "eventData must be a JSON object"));
    }
    if let Some(m) = p.max_uses
        && m < 1
    {
        return Err(invalid("maxUses", "maxUses must be at least 1"));
    }
    Ok(())
}

/// A fresh capability id: 128 random bits, hex.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn create(
    store: &dyn Store,
    project: &Project,
    p: PushbackIn,
) -> Result<Pushback, PushbackError> {
    validate(project, &p)?;
    let pushback = Pushback {
        id: new_id(),
        dialog: p.dialog,
        event: p.event,
        event_data: p.event_data,
        created_at: Timestamp::now(),
        expires_at: p.expires_at,
        max_uses: p.max_uses,
        uses: 0,
        last_used_at: None,
    };
    store.create_pushback(&pushback).await?;
    Ok(pushback)
}

pub fn link(public_url: &str, id: &str) -> String {
    format!("{}/push_{id}", public_url.trim_end_matches('/'))
}

/// The pushback as the APIs and scripts see it.
pub fn to_json(p: &Pushback, public_url: &str) -> Value {
    json!({
        "id": p.id,
        "link": link(public_url, &p.id),
        "created": p.created_at.to_string(),
        "channelType": p.dialog.channel_type,
        "botId": p.dialog.bot_id,
        "chatId": p.dialog.chat_id,
        "event": p.event,
        "eventData": p.event_data,
        "expiresAt": p.expires_at.map(|t| t.to_string()),
        "maxUses": p.max_uses,
        "uses": p.uses,
        "lastUsedAt": p.last_used_at.map(|t| t.to_string()),
    })
}
