//! Notifications (SPEC §5) on SQLite: subscribers (contacts with a `subscriber_id`, their
//! profile inside `attributes`), topics, and storing a trigger with one run per recipient. The
//! runs' lifecycle is in [`crate::notify_runs`] and [`crate::notify_progress`], the feed in
//! [`crate::notify_feed`], the outbox in [`crate::notify_outbox`]. Write functions run inside
//! the caller's transaction.

use std::collections::{HashMap, HashSet};

use herald_store::*;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::{Map, Value};

use crate::accept;
use crate::conn::backend;
use crate::rows::{json, ts};

/// A contact row as read for the subscriber API.
struct ContactRow {
    id: i64,
    subscriber_id: Option<String>,
    attributes: Value,
    created: i64,
    updated: Option<i64>,
}

const CONTACT_COLUMNS: &str = "id, subscriber_id, attributes, created_at, updated_at";

fn contact_row(r: &Row<'_>) -> rusqlite::Result<Result<ContactRow>> {
    let attributes: String = r.get(2)?;
    let row = ContactRow {
        id: r.get(0)?,
        subscriber_id: r.get(1)?,
        attributes: Value::Null,
        created: r.get(3)?,
        updated: r.get(4)?,
    };
    Ok(json(&attributes).map(|attributes| ContactRow { attributes, ..row }))
}

impl ContactRow {
    fn into_subscriber(self) -> Subscriber {
        Subscriber {
            id: self.id,
            subscriber_id: self.subscriber_id.unwrap_or_default(),
            profile: profile_of(&self.attributes),
            created_at: ts(self.created),
            updated_at: ts(self.updated.unwrap_or(self.created)),
        }
    }
}

/// The profile fields set in a contact's attributes.
fn profile_of(attributes: &Value) -> Map<String, Value> {
    PROFILE_FIELDS
        .iter()
        .filter_map(|k| {
            let v = attributes.get(*k).filter(|v| !v.is_null())?;
            Some(((*k).to_owned(), v.clone()))
        })
        .collect()
}

/// Sets (or, for `null`, removes) the given profile fields; other keys are ignored.
fn apply_profile(attributes: &mut Value, profile: &Map<String, Value>) {
    if !attributes.is_object() {
        *attributes = Value::Object(Map::new());
    }
    let Some(obj) = attributes.as_object_mut() else {
        return;
    };
    for (k, v) in profile {
        if !PROFILE_FIELDS.contains(&k.as_str()) {
            continue;
        }
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
}

fn contact_by_subscriber(c: &Connection, subscriber_id: &str) -> Result<Option<ContactRow>> {
    c.prepare_cached(&format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts WHERE subscriber_id = ?1"
    ))
    .map_err(backend)?
    .query_row(params![subscriber_id], contact_row)
    .optional()
    .map_err(backend)?
    .transpose()
}

/// The contact `id` as a subscriber; `None` if it is unknown or not a subscriber (any more).
pub(crate) fn subscriber_by_contact(c: &Connection, id: i64) -> Result<Option<Subscriber>> {
    let row = c
        .prepare_cached(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = ?1 AND subscriber_id IS NOT NULL"
        ))
        .map_err(backend)?
        .query_row(params![id], contact_row)
        .optional()
        .map_err(backend)?
        .transpose()?;
    Ok(row.map(ContactRow::into_subscriber))
}

/// The contact id of a subscriber.
pub(crate) fn contact_id(c: &Connection, subscriber_id: &str) -> Result<Option<i64>> {
    c.prepare_cached("SELECT id FROM contacts WHERE subscriber_id = ?1")
        .map_err(backend)?
        .query_row(params![subscriber_id], |r| r.get(0))
        .optional()
        .map_err(backend)
}

pub(crate) fn get_subscriber(c: &Connection, subscriber_id: &str) -> Result<Option<Subscriber>> {
    Ok(contact_by_subscriber(c, subscriber_id)?.map(ContactRow::into_subscriber))
}

pub(crate) fn upsert_subscriber(
    tx: &Transaction<'_>,
    u: &SubscriberUpsert,
    mode: &UpsertMode,
) -> Result<Option<(Subscriber, bool)>> {
    let now = u.now.as_millisecond();
    match contact_by_subscriber(tx, &u.subscriber_id)? {
        Some(mut row) => {
            if !u.profile.is_empty() {
                apply_profile(&mut row.attributes, &u.profile);
                tx.prepare_cached(
                    "UPDATE contacts SET attributes = ?2, updated_at = ?3 WHERE id = ?1",
                )
                .map_err(backend)?
                .execute(params![row.id, row.attributes.to_string(), now])
                .map_err(backend)?;
                row.updated = Some(now);
            }
            Ok(Some((row.into_subscriber(), false)))
        }
        None if *mode == UpsertMode::UpdateOnly => Ok(None),
        None => {
            let mut attributes = Value::Object(Map::new());
            apply_profile(&mut attributes, &u.profile);
            tx.prepare_cached(
                "INSERT INTO contacts (id, subscriber_id, attributes, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )
            .map_err(backend)?
            .execute(params![
                u.new_id,
                u.subscriber_id,
                attributes.to_string(),
                now
            ])
            .map_err(backend)?;
            let row = ContactRow {
                id: u.new_id,
                subscriber_id: Some(u.subscriber_id.clone()),
                attributes,
                created: now,
                updated: Some(now),
            };
            Ok(Some((row.into_subscriber(), true)))
        }
    }
}

pub(crate) fn list_subscribers(
    c: &Connection,
    page: usize,
    limit: usize,
) -> Result<Vec<Subscriber>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE subscriber_id IS NOT NULL
             ORDER BY id LIMIT ?1 OFFSET ?2"
        ))
        .map_err(backend)?;
    let rows = st
        .query_map(params![limit as i64, offset(page, limit)], contact_row)
        .map_err(backend)?;
    rows.map(|r| Ok(r.map_err(backend)??.into_subscriber()))
        .collect()
}

pub(crate) fn delete_subscriber(tx: &Transaction<'_>, subscriber_id: &str) -> Result<bool> {
    let Some(id) = contact_id(tx, subscriber_id)? else {
        return Ok(false);
    };
    let paths: Vec<String> = PROFILE_FIELDS.iter().map(|k| format!("'$.{k}'")).collect();
    tx.prepare_cached(&format!(
        "UPDATE contacts SET subscriber_id = NULL, attributes = json_remove(attributes, {}),
                updated_at = ?2
         WHERE id = ?1",
        paths.join(", ")
    ))
    .map_err(backend)?
    .execute(params![id, Timestamp::now().as_millisecond()])
    .map_err(backend)?;
    for sql in [
        "DELETE FROM topic_members WHERE contact_id = ?1",
        "DELETE FROM feed WHERE contact_id = ?1",
    ] {
        tx.prepare_cached(sql)
            .map_err(backend)?
            .execute(params![id])
            .map_err(backend)?;
    }
    Ok(true)
}

pub(crate) fn offset(page: usize, limit: usize) -> i64 {
    i64::try_from(page.saturating_mul(limit)).unwrap_or(i64::MAX)
}

// Topics.

fn topic_row(r: &Row<'_>) -> rusqlite::Result<Topic> {
    Ok(Topic {
        id: r.get(0)?,
        key: r.get(1)?,
        name: r.get(2)?,
        created_at: ts(r.get(3)?),
    })
}

fn topic_id(c: &Connection, key: &str) -> Result<Option<i64>> {
    c.prepare_cached("SELECT id FROM topics WHERE key = ?1")
        .map_err(backend)?
        .query_row(params![key], |r| r.get(0))
        .optional()
        .map_err(backend)
}

pub(crate) fn create_topic(
    tx: &Transaction<'_>,
    key: &str,
    name: &str,
    now: Timestamp,
) -> Result<TopicCreate> {
    if let Some(id) = topic_id(tx, key)? {
        return Ok(TopicCreate::Exists(id));
    }
    tx.prepare_cached("INSERT INTO topics (key, name, created_at) VALUES (?1, ?2, ?3)")
        .map_err(backend)?
        .execute(params![key, name, now.as_millisecond()])
        .map_err(backend)?;
    Ok(TopicCreate::Created(tx.last_insert_rowid()))
}

pub(crate) fn get_topic(c: &Connection, key: &str) -> Result<Option<(Topic, Vec<String>)>> {
    let Some(topic) = c
        .prepare_cached("SELECT id, key, name, created_at FROM topics WHERE key = ?1")
        .map_err(backend)?
        .query_row(params![key], topic_row)
        .optional()
        .map_err(backend)?
    else {
        return Ok(None);
    };
    let mut st = c
        .prepare_cached(
            "SELECT c.subscriber_id FROM topic_members m JOIN contacts c ON c.id = m.contact_id
             WHERE m.topic_id = ?1 AND c.subscriber_id IS NOT NULL ORDER BY m.contact_id",
        )
        .map_err(backend)?;
    let members = st
        .query_map(params![topic.id], |r| r.get::<_, String>(0))
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    Ok(Some((topic, members)))
}

pub(crate) fn list_topics(
    c: &Connection,
    page: usize,
    page_size: usize,
    key: Option<&str>,
) -> Result<(Vec<Topic>, u64)> {
    let total: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM topics WHERE (?1 IS NULL OR key = ?1)")
        .map_err(backend)?
        .query_row(params![key], |r| r.get(0))
        .map_err(backend)?;
    let mut st = c
        .prepare_cached(
            "SELECT id, key, name, created_at FROM topics WHERE (?1 IS NULL OR key = ?1)
             ORDER BY key LIMIT ?2 OFFSET ?3",
        )
        .map_err(backend)?;
    let topics = st
        .query_map(
            params![key, page_size as i64, offset(page, page_size)],
            topic_row,
        )
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    Ok((topics, total.max(0) as u64))
}

pub(crate) fn add_topic_subscribers(
    tx: &Transaction<'_>,
    key: &str,
    subscriber_ids: &[String],
) -> Result<Option<(Vec<String>, Vec<String>)>> {
    let Some(topic) = topic_id(tx, key)? else {
        return Ok(None);
    };
    let (mut added, mut unknown) = (Vec::new(), Vec::new());
    let mut seen = HashSet::new();
    for sid in subscriber_ids {
        if !seen.insert(sid.as_str()) {
            continue;
        }
        match contact_id(tx, sid)? {
            Some(contact) => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO topic_members (topic_id, contact_id) VALUES (?1, ?2)",
                )
                .map_err(backend)?
                .execute(params![topic, contact])
                .map_err(backend)?;
                added.push(sid.clone());
            }
            None => unknown.push(sid.clone()),
        }
    }
    Ok(Some((added, unknown)))
}

pub(crate) fn remove_topic_subscribers(
    tx: &Transaction<'_>,
    key: &str,
    subscriber_ids: &[String],
) -> Result<bool> {
    let Some(topic) = topic_id(tx, key)? else {
        return Ok(false);
    };
    for sid in subscriber_ids {
        tx.prepare_cached(
            "DELETE FROM topic_members WHERE topic_id = ?1
               AND contact_id = (SELECT id FROM contacts WHERE subscriber_id = ?2)",
        )
        .map_err(backend)?
        .execute(params![topic, sid])
        .map_err(backend)?;
    }
    Ok(true)
}

pub(crate) fn delete_topic(tx: &Transaction<'_>, key: &str) -> Result<TopicDelete> {
    let Some(topic) = topic_id(tx, key)? else {
        return Ok(TopicDelete::NotFound);
    };
    let members: Option<i64> = tx
        .prepare_cached("SELECT 1 FROM topic_members WHERE topic_id = ?1 LIMIT 1")
        .map_err(backend)?
        .query_row(params![topic], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    if members.is_some() {
        return Ok(TopicDelete::HasSubscribers);
    }
    tx.prepare_cached("DELETE FROM topics WHERE id = ?1")
        .map_err(backend)?
        .execute(params![topic])
        .map_err(backend)?;
    Ok(TopicDelete::Deleted)
}

// Triggers.

fn stored_runs(c: &Connection, transaction_id: &str) -> Result<Option<u64>> {
    c.prepare_cached("SELECT runs FROM notifications WHERE transaction_id = ?1")
        .map_err(backend)?
        .query_row(params![transaction_id], |r| r.get::<_, i64>(0))
        .optional()
        .map_err(backend)
        .map(|n| n.map(|n| n.max(0) as u64))
}

/// Stores a trigger: decides (repeat, unknown topic) before writing anything, then upserts the
/// actor and the recipients, and writes the notification with one run per recipient.
pub(crate) fn trigger(tx: &Transaction<'_>, t: &NewTrigger) -> Result<TriggerOutcome> {
    let now = t.now.as_millisecond();
    if let Some(k) = &t.idempotency
        && let Some(transaction_id) = accept::seen_key(tx, k)?
    {
        let runs = stored_runs(tx, &transaction_id)?.unwrap_or(0);
        return Ok(TriggerOutcome::Repeated {
            transaction_id,
            runs,
        });
    }
    if let Some(runs) = stored_runs(tx, &t.transaction_id)? {
        return Ok(TriggerOutcome::Repeated {
            transaction_id: t.transaction_id.clone(),
            runs,
        });
    }
    let mut topics = HashMap::new();
    for r in t.to.iter().flatten() {
        if let Recipient::Topic(key) = r {
            match topic_id(tx, key)? {
                Some(id) => topics.insert(key.as_str(), id),
                None => return Ok(TriggerOutcome::TopicNotFound(key.clone())),
            };
        }
    }

    let (actor_contact, actor) = match &t.actor {
        None => (None, None),
        Some(a) => {
            let found = if a.profile.is_empty() {
                get_subscriber(tx, &a.subscriber_id)?
            } else {
                upsert_subscriber(tx, a, &UpsertMode::CreateOrUpdate)?.map(|(s, _)| s)
            };
            let mut obj = Map::new();
            obj.insert(
                "subscriberId".into(),
                Value::String(a.subscriber_id.clone()),
            );
            if let Some(s) = &found {
                obj.extend(s.profile.clone());
            }
            (found.map(|s| s.id), Some(Value::Object(obj)))
        }
    };

    tx.prepare_cached(
        "INSERT INTO notifications (transaction_id, workflow, payload, overrides, actor, tenant, runs, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)",
    )
    .map_err(backend)?
    .execute(params![
        t.transaction_id,
        t.workflow,
        t.payload.to_string(),
        t.overrides.to_string(),
        actor.as_ref().map(Value::to_string),
        t.tenant.as_ref().map(Value::to_string),
        now
    ])
    .map_err(backend)?;
    let notification_id = tx.last_insert_rowid();

    let runs = match &t.to {
        // A broadcast: one statement, however many subscribers there are.
        None => tx
            .prepare_cached(
                "INSERT INTO notification_runs (notification_id, contact_id, step, status, next_at, created_at, updated_at)
                 SELECT ?1, id, 0, 'pending', ?2, ?2, ?2 FROM contacts
                 WHERE subscriber_id IS NOT NULL AND id IS NOT ?3 ORDER BY id",
            )
            .map_err(backend)?
            .execute(params![notification_id, now, actor_contact])
            .map_err(backend)?,
        Some(to) => {
            let actor_id = t.actor.as_ref().map(|a| a.subscriber_id.as_str());
            let mut seen: HashSet<i64> = actor_contact.into_iter().collect();
            let mut contacts = Vec::new();
            for r in to {
                match r {
                    Recipient::Subscriber(u) => {
                        if Some(u.subscriber_id.as_str()) == actor_id {
                            continue;
                        }
                        if let Some((s, _)) =
                            upsert_subscriber(tx, u, &UpsertMode::CreateOrUpdate)?
                            && seen.insert(s.id)
                        {
                            contacts.push(s.id);
                        }
                    }
                    Recipient::Topic(key) => {
                        let topic = topics.get(key.as_str()).copied().unwrap_or_default();
                        let mut st = tx
                            .prepare_cached(
                                "SELECT contact_id FROM topic_members WHERE topic_id = ?1 ORDER BY contact_id",
                            )
                            .map_err(backend)?;
                        let members = st
                            .query_map(params![topic], |r| r.get::<_, i64>(0))
                            .map_err(backend)?;
                        for m in members {
                            let m = m.map_err(backend)?;
                            if seen.insert(m) {
                                contacts.push(m);
                            }
                        }
                    }
                }
            }
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO notification_runs (notification_id, contact_id, step, status, next_at, created_at, updated_at)
                     VALUES (?1, ?2, 0, 'pending', ?3, ?3, ?3)",
                )
                .map_err(backend)?;
            for contact in &contacts {
                st.execute(params![notification_id, contact, now])
                    .map_err(backend)?;
            }
            contacts.len()
        }
    };
    tx.prepare_cached("UPDATE notifications SET runs = ?2 WHERE id = ?1")
        .map_err(backend)?
        .execute(params![notification_id, runs as i64])
        .map_err(backend)?;
    if let Some(k) = &t.idempotency {
        accept::remember_key(tx, k, &t.transaction_id, now)?;
    }
    Ok(TriggerOutcome::Stored {
        notification_id,
        transaction_id: t.transaction_id.clone(),
        runs: runs as u64,
    })
}
