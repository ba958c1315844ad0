//! Retention of notification state (`Store::purge_notify`): each call deletes at most `limit`
//! rows of each kind in the caller's transaction, looking at no more than `limit` rows of the
//! big tables (oldest first by id, which grows with time), so a purge never holds the writer
//! for long, however large the tables are. A notification row goes with the last of its runs
//! and feed entries (a trigger that reached nobody keeps its small row).

use herald_store::{NotifyPurge, NotifyPurged, Result};
use rusqlite::{Transaction, params};

use crate::conn::backend;

pub(crate) fn purge(tx: &Transaction<'_>, p: &NotifyPurge) -> Result<NotifyPurged> {
    let limit = p.limit.max(1) as i64;
    let run = |sql: &str, before: jiff::Timestamp| -> Result<usize> {
        tx.prepare_cached(sql)
            .map_err(backend)?
            .execute(params![before.as_millisecond(), limit])
            .map_err(backend)
    };
    let throttle_hits = run(
        "DELETE FROM throttle_hits WHERE rowid IN
           (SELECT rowid FROM throttle_hits WHERE at < ?1 LIMIT ?2)",
        p.throttle_before,
    )?;
    let digest_seen = run(
        "DELETE FROM digest_seen WHERE key IN
           (SELECT key FROM digest_seen WHERE last_at < ?1 LIMIT ?2)",
        p.digest_seen_before,
    )?;
    // Oldest first, among the first `limit` rows only: ids grow with time, so the rows old
    // enough are at the head. Returns the notification of each row deleted.
    let delete_old = |sql: &str, before: jiff::Timestamp| -> Result<Vec<i64>> {
        let mut st = tx.prepare_cached(sql).map_err(backend)?;
        st.query_map(params![before.as_millisecond(), limit], |r| r.get(0))
            .map_err(backend)?
            .collect::<rusqlite::Result<_>>()
            .map_err(backend)
    };
    let old_feed = delete_old(
        "DELETE FROM feed WHERE id IN
           (SELECT id FROM (SELECT id, created_at FROM feed ORDER BY id LIMIT ?2)
            WHERE created_at < ?1)
         RETURNING notification_id",
        p.feed_before,
    )?;
    let old_runs = delete_old(
        // Finished runs only in the window: a run waiting months on a delay never blocks it.
        "DELETE FROM notification_runs WHERE id IN
           (SELECT id FROM (SELECT id, updated_at FROM notification_runs
                            WHERE status NOT IN ('pending', 'running', 'digested') ORDER BY id LIMIT ?2)
            WHERE updated_at < ?1)
         RETURNING notification_id",
        p.finished_before,
    )?;
    let touched: std::collections::BTreeSet<i64> =
        old_feed.iter().chain(&old_runs).copied().collect();
    let deliveries = run(
        "DELETE FROM deliveries WHERE id IN
           (SELECT id FROM (SELECT id, updated_at FROM deliveries
                            WHERE status IN ('delivered', 'dead') ORDER BY id LIMIT ?2)
            WHERE updated_at < ?1)",
        p.finished_before,
    )?;
    // A notification goes with the last of its runs and feed entries.
    let mut notifications = 0;
    for id in touched {
        notifications += tx
            .prepare_cached(
                "DELETE FROM notifications WHERE id = ?1
                   AND NOT EXISTS (SELECT 1 FROM notification_runs WHERE notification_id = ?1)
                   AND NOT EXISTS (SELECT 1 FROM feed WHERE notification_id = ?1)",
            )
            .map_err(backend)?
            .execute(params![id])
            .map_err(backend)?;
    }
    Ok(NotifyPurged {
        throttle_hits,
        digest_seen,
        feed: old_feed.len(),
        deliveries,
        notifications,
        runs: old_runs.len(),
    })
}
