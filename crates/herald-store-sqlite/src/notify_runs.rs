//! Notifications (SPEC §5) on SQLite: a trigger's runs after they are stored. A run is claimed
//! (`pending` → `running`), its progress applied ([`crate::notify_progress`]) only while it is
//! still `running`, and cancelled while it is not finished. A digest has one leader run (the
//! row in `digests` while it is open); the runs that join it wait as `digested` with
//! `digest_of` pointing at the leader. Claiming the leader closes the digest and hands it
//! the members' events; the members stay `digested` until the leader finishes (and finish as
//! it does, in [`crate::notify_progress`]), so that a leader cancelled while it runs or waits
//! on a later delay hands them to the earliest of them instead of taking them down with it.
//! Also here: the activity reads. Write functions run inside the caller's transaction.

use std::collections::HashMap;

use herald_store::*;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::Value;

use crate::conn::backend;
use crate::rows::{json, ts};

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(crate) fn record(
    step: &str,
    kind: &str,
    status: &str,
    detail: Option<String>,
    at: Timestamp,
) -> StepRecord {
    StepRecord {
        step: step.to_owned(),
        kind: kind.to_owned(),
        status: status.to_owned(),
        detail,
        at,
    }
}

fn record_json(r: &StepRecord) -> Result<String> {
    serde_json::to_string(r).map_err(backend)
}

/// Appends `r` to the activity of the runs `filter` selects (`?1` is bound to `arg`). With
/// `same_step`, the record takes the step id of each run's last record (a digest step's).
fn push_record(
    tx: &Transaction<'_>,
    filter: &str,
    arg: i64,
    r: &StepRecord,
    same_step: bool,
) -> Result<()> {
    let value = if same_step {
        "json_set(json(?2), '$.step', COALESCE(json_extract(steps, '$[#-1].step'), '-'))"
    } else {
        "json(?2)"
    };
    tx.prepare_cached(&format!(
        "UPDATE notification_runs SET steps = json_insert(steps, '$[#]', {value}) WHERE {filter}"
    ))
    .map_err(backend)?
    .execute(params![arg, record_json(r)?])
    .map_err(backend)?;
    Ok(())
}

// Cancelling.

/// Where a leader's digest stands when it is cancelled, for the member taking over.
struct Leader {
    run: i64,
    key: String,
    step: i64,
    next_at: Option<i64>,
}

/// Whether run `?2` leads a digest of key `?1`: it holds the open digest, or it was claimed
/// with members that wait for its delivery.
const LEADS: &str = "EXISTS (SELECT 1 FROM digests WHERE key = ?1 AND leader = ?2)
     OR EXISTS (SELECT 1 FROM notification_runs WHERE digest_of = ?2 AND status = 'digested')";

/// Cancels a run (unless it is finished) and returns it if it led a digest.
fn cancel_run(tx: &Transaction<'_>, run: i64, r: &StepRecord) -> Result<Option<Leader>> {
    let row: Option<(i64, Option<i64>, Option<String>)> = tx
        .prepare_cached(
            "SELECT step, next_at, digest_key FROM notification_runs
             WHERE id = ?1 AND status IN ('pending', 'running', 'digested')",
        )
        .map_err(backend)?
        .query_row(params![run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(backend)?;
    let Some((step, next_at, digest_key)) = row else {
        return Ok(None);
    };
    tx.prepare_cached(
        "UPDATE notification_runs SET status = 'cancelled', next_at = NULL, updated_at = ?2
         WHERE id = ?1",
    )
    .map_err(backend)?
    .execute(params![run, r.at.as_millisecond()])
    .map_err(backend)?;
    push_record(tx, "id = ?1", run, r, false)?;
    let Some(key) = digest_key else {
        return Ok(None);
    };
    let leads: Option<i64> = tx
        .prepare_cached(&format!("SELECT 1 WHERE {LEADS}"))
        .map_err(backend)?
        .query_row(params![key, run], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    Ok(leads.map(|_| Leader {
        run,
        key,
        step,
        next_at,
    }))
}

/// A cancelled leader's digest goes to its earliest live member, or closes without one.
fn hand_over(tx: &Transaction<'_>, old: Leader, now: Timestamp) -> Result<()> {
    let now_ms = now.as_millisecond();
    let member: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM notification_runs WHERE digest_of = ?1 AND status = 'digested'
             ORDER BY id LIMIT 1",
        )
        .map_err(backend)?
        .query_row(params![old.run], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    let Some(new) = member else {
        tx.prepare_cached("DELETE FROM digests WHERE key = ?1 AND leader = ?2")
            .map_err(backend)?
            .execute(params![old.key, old.run])
            .map_err(backend)?;
        return Ok(());
    };
    let took = record(
        "-",
        "digest",
        "pending",
        Some(format!("took over the digest of run {}", old.run)),
        now,
    );
    push_record(tx, "id = ?1", new, &took, true)?;
    tx.prepare_cached(
        "UPDATE notification_runs SET status = 'pending', step = ?2, next_at = ?3, digest_key = ?4,
                digest_of = NULL, updated_at = ?5
         WHERE id = ?1",
    )
    .map_err(backend)?
    .execute(params![new, old.step, old.next_at, old.key, now_ms])
    .map_err(backend)?;
    tx.prepare_cached(
        "UPDATE notification_runs SET digest_of = ?2, updated_at = ?3
         WHERE digest_of = ?1 AND status = 'digested'",
    )
    .map_err(backend)?
    .execute(params![old.run, new, now_ms])
    .map_err(backend)?;
    // Only a digest still open passes on; a claimed leader's is closed, and a newer digest of
    // the same key belongs to its own leader.
    tx.prepare_cached("UPDATE digests SET leader = ?2 WHERE key = ?1 AND leader = ?3")
        .map_err(backend)?
        .execute(params![old.key, new, old.run])
        .map_err(backend)?;
    Ok(())
}

/// Cancels every unfinished run of a trigger; `true` if there was one.
pub(crate) fn cancel_trigger(
    tx: &Transaction<'_>,
    transaction_id: &str,
    now: Timestamp,
) -> Result<bool> {
    let Some(notification) = tx
        .prepare_cached("SELECT id FROM notifications WHERE transaction_id = ?1")
        .map_err(backend)?
        .query_row(params![transaction_id], |r| r.get::<_, i64>(0))
        .optional()
        .map_err(backend)?
    else {
        return Ok(false);
    };
    const LIVE: &str = "notification_id = ?1 AND status IN ('pending', 'running', 'digested')";
    let leaders: Vec<Leader> = {
        let mut st = tx
            .prepare_cached(&format!(
                "SELECT r.id, r.digest_key, r.step, r.next_at FROM notification_runs r
                 WHERE r.{LIVE} AND r.digest_key IS NOT NULL
                   AND (EXISTS (SELECT 1 FROM digests d WHERE d.key = r.digest_key AND d.leader = r.id)
                        OR EXISTS (SELECT 1 FROM notification_runs m
                                   WHERE m.digest_of = r.id AND m.status = 'digested'))"
            ))
            .map_err(backend)?;
        st.query_map(params![notification], |r| {
            Ok(Leader {
                run: r.get(0)?,
                key: r.get(1)?,
                step: r.get(2)?,
                next_at: r.get(3)?,
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)?
    };
    // One statement, however many runs a broadcast has.
    let r = record("-", "cancel", "cancelled", None, now);
    let n = tx
        .prepare_cached(&format!(
            "UPDATE notification_runs SET status = 'cancelled', next_at = NULL,
                    steps = json_insert(steps, '$[#]', json(?2)), updated_at = ?3
             WHERE {LIVE}"
        ))
        .map_err(backend)?
        .execute(params![
            notification,
            record_json(&r)?,
            now.as_millisecond()
        ])
        .map_err(backend)?;
    // After every run of the trigger is cancelled, so that none of them takes a digest over.
    for leader in leaders {
        hand_over(tx, leader, now)?;
    }
    Ok(n > 0)
}

// Claiming.

/// A notification as its runs need it.
#[derive(Clone)]
struct Notification {
    transaction_id: String,
    workflow: String,
    payload: Value,
    overrides: Value,
    actor: Option<Value>,
    tenant: Option<Value>,
}

fn load_notification(c: &Connection, id: i64) -> Result<Notification> {
    let (transaction_id, workflow, payload, overrides, actor, tenant): (
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    ) = c
        .prepare_cached(
            "SELECT transaction_id, workflow, payload, overrides, actor, tenant
             FROM notifications WHERE id = ?1",
        )
        .map_err(backend)?
        .query_row(params![id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .map_err(backend)?;
    Ok(Notification {
        transaction_id,
        workflow,
        payload: json(&payload)?,
        overrides: json(&overrides)?,
        actor: actor.as_deref().map(json).transpose()?,
        tenant: tenant.as_deref().map(json).transpose()?,
    })
}

/// Claims due runs: `running`, with their notification, subscriber, and — for a run that
/// leads a digest — the digest's events (its members are delivered with it).
pub(crate) fn claim_runs(
    tx: &Transaction<'_>,
    now: Timestamp,
    limit: usize,
) -> Result<(Vec<ClaimedRun>, Option<Timestamp>)> {
    let now_ms = now.as_millisecond();
    let due: Vec<(i64, i64, i64, i64, Option<String>, i64)> = {
        let mut st = tx
            .prepare_cached(
                "SELECT id, notification_id, contact_id, step, digest_key, created_at
                 FROM notification_runs WHERE status = 'pending' AND next_at <= ?1
                 ORDER BY next_at, id LIMIT ?2",
            )
            .map_err(backend)?;
        st.query_map(params![now_ms, limit as i64], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)?
    };
    let mut notifications: HashMap<i64, Notification> = HashMap::new();
    let mut claimed = Vec::with_capacity(due.len());
    for (run_id, notification_id, contact, step, digest_key, created) in due {
        let Some(subscriber) = crate::notify::subscriber_by_contact(tx, contact)? else {
            // The subscriber was deleted since the trigger: nobody to deliver to.
            let r = record(
                "-",
                "cancel",
                "cancelled",
                Some("the subscriber was deleted".into()),
                now,
            );
            if let Some(leader) = cancel_run(tx, run_id, &r)? {
                hand_over(tx, leader, now)?;
            }
            continue;
        };
        tx.prepare_cached(
            "UPDATE notification_runs SET status = 'running', updated_at = ?2 WHERE id = ?1",
        )
        .map_err(backend)?
        .execute(params![run_id, now_ms])
        .map_err(backend)?;
        let n = match notifications.get(&notification_id) {
            Some(n) => n.clone(),
            None => {
                let n = load_notification(tx, notification_id)?;
                notifications.insert(notification_id, n.clone());
                n
            }
        };
        let digest_events = match &digest_key {
            Some(key) => Some(digest_events(tx, run_id, key, &n.payload)?),
            None => None,
        };
        claimed.push(ClaimedRun {
            run_id,
            step: step.max(0) as usize,
            notification_id,
            transaction_id: n.transaction_id,
            workflow: n.workflow,
            payload: n.payload,
            overrides: n.overrides,
            actor: n.actor,
            tenant: n.tenant,
            subscriber,
            digest_events,
            created_at: ts(created),
        });
    }
    Ok((claimed, next_due(tx)?))
}

/// Closes the digest `run` leads and returns the events it delivers, its own first. The
/// members stay `digested` until the leader finishes ([`members_finished`]).
fn digest_events(tx: &Transaction<'_>, run: i64, key: &str, own: &Value) -> Result<Vec<Value>> {
    tx.prepare_cached("DELETE FROM digests WHERE key = ?1 AND leader = ?2")
        .map_err(backend)?
        .execute(params![key, run])
        .map_err(backend)?;
    let mut events = vec![own.clone()];
    let mut st = tx
        .prepare_cached(
            "SELECT n.payload FROM notification_runs r JOIN notifications n ON n.id = r.notification_id
             WHERE r.digest_of = ?1 AND r.status IN ('digested', 'done') ORDER BY r.id",
        )
        .map_err(backend)?;
    let rows = st
        .query_map(params![run], |r| r.get::<_, String>(0))
        .map_err(backend)?;
    for payload in rows {
        events.push(json(&payload.map_err(backend)?)?);
    }
    Ok(events)
}

/// The leader `run` finished with `status`: the members it carried finish the same way.
pub(crate) fn members_finished(
    tx: &Transaction<'_>,
    run: i64,
    status: RunStatus,
    now: Timestamp,
) -> Result<()> {
    let detail = match status {
        RunStatus::Done => format!("delivered in the digest of run {run}"),
        other => format!("the digest of run {run} ended {}", other.as_str()),
    };
    let r = record("-", "digest", status.as_str(), Some(detail), now);
    push_record(tx, "digest_of = ?1 AND status = 'digested'", run, &r, true)?;
    tx.prepare_cached(
        "UPDATE notification_runs SET status = ?3, next_at = NULL, updated_at = ?2
         WHERE digest_of = ?1 AND status = 'digested'",
    )
    .map_err(backend)?
    .execute(params![run, now.as_millisecond(), status.as_str()])
    .map_err(backend)?;
    Ok(())
}

pub(crate) fn next_due(c: &Connection) -> Result<Option<Timestamp>> {
    c.prepare_cached("SELECT MIN(next_at) FROM notification_runs WHERE status = 'pending'")
        .map_err(backend)?
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .map_err(backend)
        .map(|t| t.map(ts))
}

pub(crate) fn reset_running(tx: &Transaction<'_>) -> Result<u64> {
    let n = tx
        .execute(
            "UPDATE notification_runs SET status = 'pending', updated_at = ?1 WHERE status = 'running'",
            params![Timestamp::now().as_millisecond()],
        )
        .map_err(backend)?;
    Ok(n as u64)
}

// Activity.

const NOTIFICATION_COLUMNS: &str = "id, transaction_id, workflow, payload, actor, created_at";

fn notification_row(r: &Row<'_>) -> rusqlite::Result<Result<NotificationRecord>> {
    let payload: String = r.get(3)?;
    let actor: Option<String> = r.get(4)?;
    let n = NotificationRecord {
        id: r.get(0)?,
        transaction_id: r.get(1)?,
        workflow: r.get(2)?,
        payload: Value::Null,
        actor: None,
        created_at: ts(r.get(5)?),
        runs: Vec::new(),
    };
    Ok((|| {
        Ok(NotificationRecord {
            payload: json(&payload)?,
            actor: actor.as_deref().map(json).transpose()?,
            ..n
        })
    })())
}

fn run_row(r: &Row<'_>) -> rusqlite::Result<Result<RunRecord>> {
    let status: String = r.get(3)?;
    let steps: String = r.get(7)?;
    let run = RunRecord {
        id: r.get(0)?,
        subscriber_id: r.get(1)?,
        contact_id: r.get(2)?,
        status: RunStatus::Pending,
        step: r.get::<_, i64>(4)?.max(0) as usize,
        next_at: r.get::<_, Option<i64>>(5)?.map(ts),
        digest_of: r.get(6)?,
        records: Vec::new(),
        updated_at: ts(r.get(8)?),
    };
    Ok((|| {
        Ok(RunRecord {
            status: RunStatus::parse(&status)
                .ok_or_else(|| corrupt(format!("run status `{status}`")))?,
            records: serde_json::from_str(&steps).map_err(corrupt)?,
            ..run
        })
    })())
}

pub(crate) fn get_notification(
    c: &Connection,
    transaction_id: &str,
) -> Result<Option<NotificationRecord>> {
    let Some(mut n) = c
        .prepare_cached(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE transaction_id = ?1"
        ))
        .map_err(backend)?
        .query_row(params![transaction_id], notification_row)
        .optional()
        .map_err(backend)?
        .transpose()?
    else {
        return Ok(None);
    };
    let mut st = c
        .prepare_cached(
            "SELECT r.id, c.subscriber_id, r.contact_id, r.status, r.step, r.next_at, r.digest_of, r.steps, r.updated_at
             FROM notification_runs r LEFT JOIN contacts c ON c.id = r.contact_id
             WHERE r.notification_id = ?1 ORDER BY r.id",
        )
        .map_err(backend)?;
    n.runs = st
        .query_map(params![n.id], run_row)
        .map_err(backend)?
        .map(|r| r.map_err(backend)?)
        .collect::<Result<_>>()?;
    Ok(Some(n))
}

pub(crate) fn list_notifications(
    c: &Connection,
    page: usize,
    limit: usize,
) -> Result<Vec<NotificationRecord>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications ORDER BY id DESC LIMIT ?1 OFFSET ?2"
        ))
        .map_err(backend)?;
    st.query_map(
        params![limit as i64, crate::notify::offset(page, limit)],
        notification_row,
    )
    .map_err(backend)?
    .map(|r| r.map_err(backend)?)
    .collect()
}
