//! Notifications (SPEC §5) on SQLite: the outbox of email and webhook deliveries. A claim
//! counts the attempt and leases the row until `lease_until`, so a crash mid-send retries it
//! then; a delivery given up on is a dead letter until retried by hand.

use herald_store::*;
use jiff::Timestamp;
use rusqlite::{Connection, Row, Transaction, params};
use serde_json::Value;

use crate::conn::backend;
use crate::notify_runs::corrupt;
use crate::rows::{json, ts};

const DELIVERY_COLUMNS: &str = "id, kind, run_id, step, request, status, attempts, next_attempt_at, last_error, created_at, updated_at";

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<Result<Delivery>> {
    let kind: String = r.get(1)?;
    let request: String = r.get(4)?;
    let status: String = r.get(5)?;
    let d = Delivery {
        id: r.get(0)?,
        kind: DeliveryKind::Email,
        run_id: r.get(2)?,
        step: r.get(3)?,
        request: Value::Null,
        status: DeliveryStatus::Pending,
        attempts: r.get(6)?,
        next_attempt_at: r.get::<_, Option<i64>>(7)?.map(ts),
        last_error: r.get(8)?,
        created_at: ts(r.get(9)?),
        updated_at: ts(r.get(10)?),
    };
    Ok((|| {
        Ok(Delivery {
            kind: match kind.as_str() {
                "email" => DeliveryKind::Email,
                "webhook" => DeliveryKind::Webhook,
                other => return Err(corrupt(format!("delivery kind `{other}`"))),
            },
            request: json(&request)?,
            status: DeliveryStatus::parse(&status)
                .ok_or_else(|| corrupt(format!("delivery status `{status}`")))?,
            ..d
        })
    })())
}

pub(crate) fn claim_deliveries(
    tx: &Transaction<'_>,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
) -> Result<Vec<Delivery>> {
    let due: Vec<Delivery> = {
        let mut st = tx
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries
                 WHERE status = 'pending' AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ))
            .map_err(backend)?;
        st.query_map(params![now.as_millisecond(), limit as i64], delivery_row)
            .map_err(backend)?
            .map(|r| r.map_err(backend)?)
            .collect::<Result<_>>()?
    };
    let mut st = tx
        .prepare_cached(
            "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?2, updated_at = ?3
             WHERE id = ?1",
        )
        .map_err(backend)?;
    due.into_iter()
        .map(|d| {
            st.execute(params![
                d.id,
                lease_until.as_millisecond(),
                now.as_millisecond()
            ])
            .map_err(backend)?;
            Ok(Delivery {
                attempts: d.attempts + 1,
                next_attempt_at: Some(lease_until),
                updated_at: now,
                ..d
            })
        })
        .collect()
}

pub(crate) fn finish_delivery(
    tx: &Transaction<'_>,
    id: i64,
    result: &AttemptResult,
    now: Timestamp,
) -> Result<()> {
    let (status, next, error) = match result {
        AttemptResult::Delivered => (DeliveryStatus::Delivered, None, None),
        AttemptResult::Retry { at, error } => (
            DeliveryStatus::Pending,
            Some(at.as_millisecond()),
            Some(error),
        ),
        AttemptResult::Dead { error } => (DeliveryStatus::Dead, None, Some(error)),
    };
    tx.prepare_cached(
        "UPDATE deliveries SET status = ?2, next_attempt_at = ?3, last_error = ?4, updated_at = ?5
         WHERE id = ?1",
    )
    .map_err(backend)?
    .execute(params![
        id,
        status.as_str(),
        next,
        error,
        now.as_millisecond()
    ])
    .map_err(backend)?;
    Ok(())
}

pub(crate) fn list_deliveries(
    c: &Connection,
    status: Option<DeliveryStatus>,
    limit: usize,
) -> Result<Vec<Delivery>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE (?1 IS NULL OR status = ?1)
             ORDER BY id DESC LIMIT ?2"
        ))
        .map_err(backend)?;
    st.query_map(
        params![status.map(DeliveryStatus::as_str), limit as i64],
        delivery_row,
    )
    .map_err(backend)?
    .map(|r| r.map_err(backend)?)
    .collect()
}

pub(crate) fn retry_delivery(
    tx: &Transaction<'_>,
    id: i64,
    now: Timestamp,
) -> Result<DeliveryRetry> {
    let n = tx
        .prepare_cached(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?2, updated_at = ?2
             WHERE id = ?1 AND status = 'dead'",
        )
        .map_err(backend)?
        .execute(params![id, now.as_millisecond()])
        .map_err(backend)?;
    if n > 0 {
        return Ok(DeliveryRetry::Retried);
    }
    let exists = tx
        .prepare_cached("SELECT 1 FROM deliveries WHERE id = ?1")
        .map_err(backend)?
        .exists(params![id])
        .map_err(backend)?;
    Ok(if exists {
        DeliveryRetry::NotDead
    } else {
        DeliveryRetry::Unknown
    })
}

pub(crate) fn next_delivery_due(c: &Connection) -> Result<Option<Timestamp>> {
    c.prepare_cached("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'")
        .map_err(backend)?
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .map_err(backend)
        .map(|t| t.map(ts))
}
