//! Notifications (SPEC §5) on SQLite: a subscriber's in-app feed — pages newest first with
//! seen/read counts, and seen/read marks (a mark sets its time once, an unmark clears it).

use std::collections::HashSet;

use herald_store::*;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, Statement, Transaction, params};
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

/// One condition of a payload filter: the value at a JSON path of the trigger payload.
#[derive(Debug, PartialEq)]
enum Leaf {
    /// An object (an empty object in the filter matches any object).
    Object,
    /// `true`, `false` or `null`: the JSON type says it all.
    Literal(&'static str),
    /// A number, by value.
    Number(String),
    Text(String),
    /// An array as a whole, by its minified JSON text.
    Array(String),
}

/// The leaves of a payload filter as `(SQLite JSON path, leaf)` pairs. Keys are quoted labels;
/// a key holding `"` cannot be written as one, so such a filter matches nothing (`None`).
fn filter_leaves(path: String, v: &Value, out: &mut Vec<(String, Leaf)>) -> Option<()> {
    let leaf = match v {
        Value::Object(m) if m.is_empty() => Leaf::Object,
        Value::Object(m) => {
            for (k, x) in m {
                if k.contains('"') {
                    return None;
                }
                filter_leaves(format!("{path}.\"{k}\""), x, out)?;
            }
            return Some(());
        }
        Value::Null => Leaf::Literal("null"),
        Value::Bool(true) => Leaf::Literal("true"),
        Value::Bool(false) => Leaf::Literal("false"),
        Value::Number(n) => Leaf::Number(n.to_string()),
        Value::String(t) => Leaf::Text(t.clone()),
        Value::Array(_) => Leaf::Array(v.to_string()),
    };
    out.push((path, leaf));
    Some(())
}

/// SQL conditions on `n.payload` for a payload filter, with their parameters numbered from
/// `first`; `None` when the filter cannot match.
fn payload_conditions(filter: &Value, first: usize) -> Option<(String, Vec<String>)> {
    let mut leaves = Vec::new();
    filter_leaves("$".to_owned(), filter, &mut leaves)?;
    let mut sql = String::new();
    let mut args = Vec::new();
    for (path, leaf) in leaves {
        let p = first + args.len();
        let v = p + 1;
        args.push(path);
        let (cond, arg) = match leaf {
            Leaf::Object => (format!("json_type(n.payload, ?{p}) = 'object'"), None),
            Leaf::Literal(t) => (format!("json_type(n.payload, ?{p}) = '{t}'"), None),
            Leaf::Number(n) => (
                format!(
                    "json_type(n.payload, ?{p}) IN ('integer', 'real') \
                     AND json_extract(n.payload, ?{p}) = json_extract(?{v}, '$')"
                ),
                Some(n),
            ),
            Leaf::Text(t) => (
                format!(
                    "json_type(n.payload, ?{p}) = 'text' AND json_extract(n.payload, ?{p}) = ?{v}"
                ),
                Some(t),
            ),
            Leaf::Array(a) => (
                format!(
                    "json_type(n.payload, ?{p}) = 'array' \
                     AND json(json_extract(n.payload, ?{p})) = json(?{v})"
                ),
                Some(a),
            ),
        };
        sql.push_str(" AND ");
        sql.push_str(&cond);
        args.extend(arg);
    }
    Some((sql, args))
}

/// Runs `f` on `sql` prepared through the connection's statement cache, or, when `once`, on a
/// statement prepared for this call only.
fn with_statement<T>(
    c: &Connection,
    sql: &str,
    once: bool,
    f: impl FnOnce(&mut Statement<'_>) -> Result<T>,
) -> Result<T> {
    if once {
        f(&mut c.prepare(sql).map_err(backend)?)
    } else {
        let mut st = c.prepare_cached(sql).map_err(backend)?;
        f(&mut st)
    }
}

pub(crate) fn feed(c: &Connection, subscriber_id: &str, q: &FeedQuery) -> Result<Option<FeedPage>> {
    let Some(contact) = contact_id(c, subscriber_id)? else {
        return Ok(None);
    };
    let (unseen, unread): (i64, i64) = c
        .prepare_cached(
            "SELECT COALESCE(SUM(seen = 0), 0), COALESCE(SUM(read = 0), 0)
             FROM feed WHERE contact_id = ?1",
        )
        .map_err(backend)?
        .query_row(params![contact], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(backend)?;
    let (filter_sql, filter_args) = match &q.payload {
        None => (String::new(), Vec::new()),
        Some(f) => match payload_conditions(f, 4) {
            Some(x) => x,
            None => {
                return Ok(Some(FeedPage {
                    entries: Vec::new(),
                    total: 0,
                    unseen: unseen.max(0) as u64,
                    unread: unread.max(0) as u64,
                }));
            }
        },
    };
    let matching = format!(
        "FROM feed f JOIN notifications n ON n.id = f.notification_id
         WHERE f.contact_id = ?1 AND (?2 IS NULL OR f.seen = ?2) AND (?3 IS NULL OR f.read = ?3)\
         {filter_sql}"
    );
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&contact, &q.seen, &q.read];
    for a in &filter_args {
        args.push(a);
    }
    // A payload filter gives the query a shape of its own: such statements are not cached, so
    // that users' filters cannot push the hot statements out of the cache.
    let once = !filter_sql.is_empty();
    let total: i64 = with_statement(c, &format!("SELECT COUNT(*) {matching}"), once, |st| {
        st.query_row(args.as_slice(), |r| r.get(0)).map_err(backend)
    })?;
    let (limit, skip) = (q.limit as i64, offset(q.page, q.limit));
    let n = args.len();
    args.push(&limit);
    args.push(&skip);
    let page = format!(
        "SELECT {FEED_COLUMNS} {matching} ORDER BY f.id DESC LIMIT ?{} OFFSET ?{}",
        n + 1,
        n + 2
    );
    let entries = with_statement(c, &page, once, |st| {
        st.query_map(args.as_slice(), feed_row(subscriber_id))
            .map_err(backend)?
            .map(|r| r.map_err(backend)?)
            .collect::<Result<Vec<_>>>()
    })?;
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
