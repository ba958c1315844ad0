//! Integration requests: recording one (with its dedupe decision, its contacts and dialogs, its
//! events and triggers) inside the caller's transaction, and the log's read and purge queries.

use herald_store::*;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use crate::accept::Hot;
use crate::conn::backend;
use crate::rows::ts;

/// Records `n` and raises its events; an accepted request whose delivery id was seen within
/// its window is recorded as a duplicate of the first instead.
pub(crate) fn record(hot: &mut Hot<'_>, n: &NewIngest) -> Result<IngestOutcome> {
    let tx = hot.tx;
    let now = n.request.received_at.as_millisecond();
    let seen = match (&n.request.delivery_id, n.status) {
        (Some(id), IngestStatus::Accepted) => known_delivery(tx, &n.request.integration, id, now)?,
        _ => None,
    };
    if let Some(first) = seen {
        let event_ids = event_ids_of(tx, first)?;
        let request_id = insert_request(
            tx,
            n,
            IngestStatus::Duplicate,
            &event_ids,
            &serde_json::json!({"first": first}),
        )?;
        return Ok(IngestOutcome {
            request_id,
            status: IngestStatus::Duplicate,
            event_ids,
            events: Vec::new(),
            triggered: false,
        });
    }
    let mut events = Vec::new();
    let mut event_ids = Vec::new();
    let mut unrouted = Vec::new();
    let mut triggered = false;
    for e in &n.events {
        let contact = contact_of(tx, &e.subscriber_id, e.new_contact_id, now)?;
        let mut reached = e.bot.is_none();
        if let Some((bot, channel)) = &e.bot {
            match dialog_of(tx, contact, &e.subscriber_id, bot, channel, now)? {
                Some(dialog) => {
                    let event = NewEvent {
                        id: e.event_id.clone(),
                        dialog,
                        payload: EventPayload::Event {
                            name: e.name.clone(),
                            data: e.payload.clone(),
                        },
                        source: format!("integration:{}", n.request.integration),
                        accepted_at: n.request.received_at,
                    };
                    let seq = hot.insert_event(&event)?;
                    events.push(StoredEvent { seq, event });
                    reached = true;
                }
                None => unrouted.push(e.name.clone()),
            }
        }
        for t in &e.triggers {
            if let TriggerOutcome::Stored { runs, .. } = crate::notify::trigger(tx, t)? {
                triggered |= runs > 0;
                reached = true;
            }
        }
        if reached {
            event_ids.push(e.event_id.clone());
        }
    }
    let status = match n.status {
        IngestStatus::Accepted if event_ids.is_empty() && !unrouted.is_empty() => {
            IngestStatus::Unrouted
        }
        s => s,
    };
    let detail = if unrouted.is_empty() {
        n.detail.clone()
    } else {
        serde_json::json!({
            "unrouted": unrouted,
            "why": "the contact has no dialog with the bot, and the chat id it would get belongs to another contact",
        })
    };
    let request_id = insert_request(tx, n, status, &event_ids, &detail)?;
    if let (Some(id), Some(until), IngestStatus::Accepted) =
        (&n.request.delivery_id, n.dedupe_until, status)
    {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO ingest_deliveries (integration, delivery_id, request_id, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(backend)?
        .execute(params![
            n.request.integration,
            id,
            request_id,
            until.as_millisecond()
        ])
        .map_err(backend)?;
    }
    Ok(IngestOutcome {
        request_id,
        status,
        event_ids,
        events,
        triggered,
    })
}

/// The request that first delivered `delivery_id`, if it is still remembered at `now`.
fn known_delivery(
    tx: &Transaction<'_>,
    integration: &str,
    delivery_id: &str,
    now: i64,
) -> Result<Option<i64>> {
    tx.prepare_cached(
        "SELECT request_id FROM ingest_deliveries
         WHERE integration = ?1 AND delivery_id = ?2 AND expires_at > ?3",
    )
    .map_err(backend)?
    .query_row(params![integration, delivery_id, now], |r| r.get(0))
    .optional()
    .map_err(backend)
}

fn event_ids_of(tx: &Transaction<'_>, request_id: i64) -> Result<Vec<String>> {
    let text: Option<String> = tx
        .prepare_cached("SELECT event_ids FROM ingest_requests WHERE id = ?1")
        .map_err(backend)?
        .query_row(params![request_id], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

fn insert_request(
    tx: &Transaction<'_>,
    n: &NewIngest,
    status: IngestStatus,
    event_ids: &[String],
    detail: &Value,
) -> Result<i64> {
    let r = &n.request;
    tx.prepare_cached(
        "INSERT INTO ingest_requests (integration, status, reason, detail, delivery_id, event_ids,
                                      method, path, headers, body, received_at, replay_of)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .map_err(backend)?
    .execute(params![
        r.integration,
        status.as_str(),
        n.reason,
        detail.to_string(),
        r.delivery_id,
        serde_json::to_string(event_ids).map_err(backend)?,
        r.method,
        r.path,
        r.headers.to_string(),
        r.body,
        r.received_at.as_millisecond(),
        n.replay_of,
    ])
    .map_err(backend)?;
    Ok(tx.last_insert_rowid())
}

/// The contact with `subscriber_id`, created (with `new_id`) when there is none.
fn contact_of(tx: &Transaction<'_>, subscriber_id: &str, new_id: i64, now: i64) -> Result<i64> {
    if let Some(id) = crate::notify::contact_id(tx, subscriber_id)? {
        return Ok(id);
    }
    tx.prepare_cached(
        "INSERT INTO contacts (id, subscriber_id, attributes, created_at, updated_at)
         VALUES (?1, ?2, '{}', ?3, ?3)",
    )
    .map_err(backend)?
    .execute(params![new_id, subscriber_id, now])
    .map_err(backend)?;
    Ok(tx.last_insert_rowid())
}

/// The dialog an event for `contact` goes to with `bot`: the contact's most recent one, else
/// a new one on `channel` whose chat id is the subscriber id. `None` when that chat id is
/// another contact's dialog already.
fn dialog_of(
    tx: &Transaction<'_>,
    contact: i64,
    subscriber_id: &str,
    bot: &str,
    channel: &str,
    now: i64,
) -> Result<Option<DialogKey>> {
    if let Some(key) = crate::jobs::lead_dialog(tx, contact, bot)? {
        return Ok(Some(key));
    }
    tx.prepare_cached(
        "INSERT OR IGNORE INTO dialogs (channel_type, bot_id, chat_id, contact_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )
    .map_err(backend)?
    .execute(params![channel, bot, subscriber_id, contact, now])
    .map_err(backend)?;
    let owner: i64 = tx
        .prepare_cached(
            "SELECT contact_id FROM dialogs WHERE channel_type = ?1 AND bot_id = ?2 AND chat_id = ?3",
        )
        .map_err(backend)?
        .query_row(params![channel, bot, subscriber_id], |r| r.get(0))
        .map_err(backend)?;
    Ok((owner == contact).then(|| DialogKey::new(channel, bot, subscriber_id)))
}

const COLUMNS: &str = "id, integration, status, reason, detail, delivery_id, event_ids, method, path, headers, received_at, replay_of";

fn record_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<IngestRecord>> {
    let status: String = r.get(2)?;
    let detail: String = r.get(4)?;
    let event_ids: String = r.get(6)?;
    let headers: String = r.get(9)?;
    let head = (
        r.get::<_, i64>(0)?,
        r.get::<_, String>(1)?,
        r.get::<_, Option<String>>(3)?,
        r.get::<_, Option<String>>(5)?,
        r.get::<_, String>(7)?,
        r.get::<_, String>(8)?,
        r.get::<_, i64>(10)?,
        r.get::<_, Option<i64>>(11)?,
    );
    Ok((|| {
        let (id, integration, reason, delivery_id, method, path, received, replay_of) = head;
        let corrupt = |what: &str| StoreError::Corrupt(format!("ingest request {id}: {what}"));
        Ok(IngestRecord {
            id,
            integration,
            status: IngestStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
            reason,
            detail: serde_json::from_str(&detail).map_err(|_| corrupt("detail"))?,
            delivery_id,
            event_ids: serde_json::from_str(&event_ids).map_err(|_| corrupt("event ids"))?,
            method,
            path,
            headers: serde_json::from_str(&headers).map_err(|_| corrupt("headers"))?,
            body: None,
            received_at: ts(received),
            replay_of,
        })
    })())
}

pub(crate) fn list(
    c: &Connection,
    integration: &str,
    f: &IngestFilter,
) -> Result<Vec<IngestRecord>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM ingest_requests
             WHERE integration = ?1 AND id < ?2 AND (?3 IS NULL OR status = ?3)
             ORDER BY id DESC LIMIT ?4"
        ))
        .map_err(backend)?;
    let rows = st
        .query_map(
            params![
                integration,
                f.before_id.unwrap_or(i64::MAX),
                f.status.map(IngestStatus::as_str),
                f.limit as i64
            ],
            record_row,
        )
        .map_err(backend)?;
    rows.map(|r| r.map_err(backend)?).collect()
}

pub(crate) fn get(c: &Connection, integration: &str, id: i64) -> Result<Option<IngestRecord>> {
    let found = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, body FROM ingest_requests WHERE id = ?1 AND integration = ?2"
        ))
        .map_err(backend)?
        .query_row(params![id, integration], |r| {
            Ok((record_row(r)?, r.get::<_, Vec<u8>>(12)?))
        })
        .optional()
        .map_err(backend)?;
    match found {
        None => Ok(None),
        Some((rec, body)) => Ok(Some(IngestRecord {
            body: Some(body),
            ..rec?
        })),
    }
}

/// Deletes the oldest requests received before `before` and delivery ids expired at `now`.
pub(crate) fn purge(
    tx: &Transaction<'_>,
    before: Timestamp,
    now: Timestamp,
    limit: usize,
) -> Result<u64> {
    let requests = tx
        .prepare_cached(
            // The newest request always stays: request ids come from the largest one, and a
            // client or a log entry (`replayOf`, `detail.first`) may still name an old id.
            "DELETE FROM ingest_requests WHERE id IN
               (SELECT id FROM ingest_requests WHERE received_at < ?1
                  AND id < (SELECT max(id) FROM ingest_requests)
                ORDER BY id LIMIT ?2)",
        )
        .map_err(backend)?
        .execute(params![before.as_millisecond(), limit as i64])
        .map_err(backend)?;
    let deliveries = tx
        .prepare_cached(
            "DELETE FROM ingest_deliveries WHERE (integration, delivery_id) IN
               (SELECT integration, delivery_id FROM ingest_deliveries
                WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
        )
        .map_err(backend)?
        .execute(params![now.as_millisecond(), limit as i64])
        .map_err(backend)?;
    Ok((requests + deliveries) as u64)
}
