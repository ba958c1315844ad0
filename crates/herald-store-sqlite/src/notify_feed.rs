//! Notifications (SPEC §5) on SQLite: a subscriber's in-app feed — pages newest first with
//! seen/read counts, and seen/read marks (a mark sets its time once, an unmark clears it).

use std::collections::HashSet;

use herald_store::*;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::Value;

use crate::conn::backend;
use crate::notify::{contact_id, offset};
use crate::rows::{json, ts};

const FEED_COLUMNS: &str = "f.id, f.contact_id, n.transaction_id, n.workflow, f.step, f.subject, f.body, f.cta, n.payload, \
     f.seen, f.read, f.seen_at, f.read_at, f.created_at";

fn feed_row(subscriber_id: &str) -> impl Fn(&Row<'_>) -> rusqlite::Result<Result<FeedEntry>> {
    move |r| {
        let cta: Option<String> = r.get(7)?;
        let payload: String = r.get(8)?;
        let entry = FeedEntry {
            id: r.get(0)?,
            contact_id: r.get(1)?,
            subscriber_id: subscriber_id.to_owned(),
            transaction_id: r.get(2)?,
            workflow: r.get(3)?,
            step: r.get(4)?,
            subject: r.get(5)?,
            body: r.get(6)?,
            cta: None,
            payload: Value::Null,
            seen: r.get(9)?,
            read: r.get(10)?,
            seen_at: r.get::<_, Option<i64>>(11)?.map(ts),
            read_at: r.get::<_, Option<i64>>(12)?.map(ts),
            created_at: ts(r.get(13)?),
        };
        Ok((|| {
            Ok(FeedEntry {
                cta: cta.as_deref().map(json).transpose()?,
                payload: json(&payload)?,
                ..entry
            })
        })())
    }
}

pub(crate) fn feed(c: &Connection, subscriber_id: &str, q: &FeedQuery) -> Result<Option<FeedPage>> {
    let Some(contact) = contact_id(c, subscriber_id)? else {
        return Ok(None);
    };
    let (total, unseen, unread): (i64, i64, i64) = c
        .prepare_cached(
            "SELECT COALESCE(SUM((?2 IS NULL OR seen = ?2) AND (?3 IS NULL OR read = ?3)), 0),
                    COALESCE(SUM(seen = 0), 0), COALESCE(SUM(read = 0), 0)
             FROM feed WHERE contact_id = ?1",
        )
        .map_err(backend)?
        .query_row(params![contact, q.seen, q.read], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(backend)?;
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {FEED_COLUMNS} FROM feed f JOIN notifications n ON n.id = f.notification_id
             WHERE f.contact_id = ?1 AND (?2 IS NULL OR f.seen = ?2) AND (?3 IS NULL OR f.read = ?3)
             ORDER BY f.id DESC LIMIT ?4 OFFSET ?5"
        ))
        .map_err(backend)?;
    let entries = st
        .query_map(
            params![
                contact,
                q.seen,
                q.read,
                q.limit as i64,
                offset(q.page, q.limit)
            ],
            feed_row(subscriber_id),
        )
        .map_err(backend)?
        .map(|r| r.map_err(backend)?)
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(FeedPage {
        entries,
        total: total.max(0) as u64,
        unseen: unseen.max(0) as u64,
        unread: unread.max(0) as u64,
    }))
}

/// Sets the marks on the subscriber's entries (all, or the one `id`) whose marks differ.
fn mark(
    tx: &Transaction<'_>,
    contact: i64,
    id: Option<i64>,
    mark: FeedMark,
    now: Timestamp,
) -> Result<u64> {
    let n = tx
        .prepare_cached(
            "UPDATE feed SET
                seen = COALESCE(?3, seen),
                seen_at = CASE WHEN ?3 IS NULL THEN seen_at WHEN ?3 THEN COALESCE(seen_at, ?5) END,
                read = COALESCE(?4, read),
                read_at = CASE WHEN ?4 IS NULL THEN read_at WHEN ?4 THEN COALESCE(read_at, ?5) END
             WHERE contact_id = ?1 AND (?2 IS NULL OR id = ?2)
               AND ((?3 IS NOT NULL AND seen != ?3) OR (?4 IS NOT NULL AND read != ?4))",
        )
        .map_err(backend)?
        .execute(params![
            contact,
            id,
            mark.seen,
            mark.read,
            now.as_millisecond()
        ])
        .map_err(backend)?;
    Ok(n as u64)
}

pub(crate) fn mark_feed(
    tx: &Transaction<'_>,
    subscriber_id: &str,
    ids: &[i64],
    marks: FeedMark,
    now: Timestamp,
) -> Result<Option<Vec<FeedEntry>>> {
    let Some(contact) = contact_id(tx, subscriber_id)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(ids.len());
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(*id) {
            continue;
        }
        mark(tx, contact, Some(*id), marks, now)?;
        let entry = tx
            .prepare_cached(&format!(
                "SELECT {FEED_COLUMNS} FROM feed f JOIN notifications n ON n.id = f.notification_id
                 WHERE f.id = ?1 AND f.contact_id = ?2"
            ))
            .map_err(backend)?
            .query_row(params![id, contact], feed_row(subscriber_id))
            .optional()
            .map_err(backend)?
            .transpose()?;
        out.extend(entry);
    }
    Ok(Some(out))
}

pub(crate) fn mark_all_feed(
    tx: &Transaction<'_>,
    subscriber_id: &str,
    marks: FeedMark,
    now: Timestamp,
) -> Result<Option<u64>> {
    let Some(contact) = contact_id(tx, subscriber_id)? else {
        return Ok(None);
    };
    mark(tx, contact, None, marks, now).map(Some)
}
