//! Row ↔ record conversions. Times are stored as milliseconds since the epoch, JSON as text.

use herald_store::*;
use jiff::Timestamp;
use rusqlite::Row;

pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(crate) fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) const PUSHBACK_COLUMNS: &str = "id, channel_type, bot_id, chat_id, event, event_data, created_at, expires_at, max_uses, uses, last_used_at";

pub(crate) fn pushback_row(r: &Row<'_>) -> rusqlite::Result<Result<Pushback>> {
    let data: String = r.get(5)?;
    let p = Pushback {
        id: r.get(0)?,
        dialog: DialogKey {
            channel_type: r.get(1)?,
            bot_id: r.get(2)?,
            chat_id: r.get(3)?,
        },
        event: r.get(4)?,
        event_data: serde_json::Value::Null,
        created_at: ts(r.get(6)?),
        expires_at: r.get::<_, Option<i64>>(7)?.map(ts),
        max_uses: r.get(8)?,
        uses: r.get(9)?,
        last_used_at: r.get::<_, Option<i64>>(10)?.map(ts),
    };
    Ok(json(&data).map(|event_data| Pushback { event_data, ..p }))
}

pub(crate) fn event_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredEvent>> {
    let payload: String = r.get(5)?;
    let seq: i64 = r.get(0)?;
    let id: String = r.get(1)?;
    let dialog = DialogKey {
        channel_type: r.get(2)?,
        bot_id: r.get(3)?,
        chat_id: r.get(4)?,
    };
    let source: String = r.get(6)?;
    let accepted_at = ts(r.get(7)?);
    Ok(serde_json::from_str::<EventPayload>(&payload)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
        .map(|payload| StoredEvent {
            seq,
            event: NewEvent {
                id,
                dialog,
                payload,
                source,
                accepted_at,
            },
        }))
}

pub(crate) fn message_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredMessage>> {
    let direction: String = r.get(1)?;
    let buttons: String = r.get(3)?;
    let id: i64 = r.get(0)?;
    let text: String = r.get(2)?;
    let when = ts(r.get(4)?);
    Ok(serde_json::from_str(&buttons)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
        .map(|buttons| StoredMessage {
            id,
            direction: if direction == "in" {
                Direction::In
            } else {
                Direction::Out
            },
            text,
            buttons,
            ts: when,
        }))
}
