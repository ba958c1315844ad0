//! Notifications (SPEC §5) on SQLite: applying a claimed run's progress, only while the run is
//! still `running` — its feed entries, chat messages and bot events, outbox rows and activity
//! records — and deciding where it goes next. Digest and throttle decisions are made here,
//! inside the writing transaction, where every other run of the same key is visible.

use herald_store::*;
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::Value;

use crate::accept::Hot;
use crate::chain::Chain;
use crate::conn::backend;
use crate::notify_runs::{corrupt, record};
use crate::rows::ts;

/// A run's row after its progress: the columns the update writes.
struct After {
    status: RunStatus,
    step: i64,
    next_at: Option<i64>,
    digest_key: Option<String>,
    digest_of: Option<i64>,
}

/// A `running` run as its progress needs it.
struct Running {
    contact: i64,
    notification_id: i64,
    step: i64,
    steps: String,
    transaction_id: String,
    subscriber_id: Option<String>,
}

/// Applies a run's progress if it is still `running`.
pub(crate) fn apply_progress(hot: &mut Hot<'_>, p: &RunProgress) -> Result<ProgressApplied> {
    let tx = hot.tx;
    let now = p.now.as_millisecond();
    let run = tx
        .prepare_cached(
            "SELECT r.contact_id, r.notification_id, r.step, r.steps, n.transaction_id, c.subscriber_id
             FROM notification_runs r JOIN notifications n ON n.id = r.notification_id
             LEFT JOIN contacts c ON c.id = r.contact_id
             WHERE r.id = ?1 AND r.status = 'running'",
        )
        .map_err(backend)?
        .query_row(params![p.run_id], |r| {
            Ok(Running {
                contact: r.get(0)?,
                notification_id: r.get(1)?,
                step: r.get(2)?,
                steps: r.get(3)?,
                transaction_id: r.get(4)?,
                subscriber_id: r.get(5)?,
            })
        })
        .optional()
        .map_err(backend)?;
    // Cancelled (or never claimed): nothing is applied.
    let Some(Running {
        contact,
        notification_id,
        step,
        steps,
        transaction_id,
        subscriber_id,
    }) = run
    else {
        return Ok(ProgressApplied::default());
    };
    let mut records: Vec<Value> = serde_json::from_str(&steps).map_err(corrupt)?;
    for r in &p.records {
        records.push(serde_json::to_value(r).map_err(backend)?);
    }
    let mut out = ProgressApplied {
        applied: true,
        ..ProgressApplied::default()
    };

    for f in &p.feed {
        tx.prepare_cached(
            "INSERT INTO feed (contact_id, notification_id, run_id, step, subject, body, cta, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(backend)?
        .execute(params![
            contact,
            notification_id,
            p.run_id,
            f.step,
            f.subject,
            f.body,
            f.cta.as_ref().map(Value::to_string),
            now
        ])
        .map_err(backend)?;
    }

    for chat in &p.chats {
        let (mut chain, key) = match chat_dialog(
            tx,
            contact,
            subscriber_id.as_deref(),
            &chat.bot_id,
            now,
        )? {
            ChatTarget::Dialog(chain, key) => (chain, key),
            ChatTarget::Nowhere => continue,
            ChatTarget::Taken(chat_id) => {
                let r = crate::notify_runs::record(
                    "-",
                    "chat",
                    "failed",
                    Some(format!(
                        "the chatwidget dialog {chat_id:?} of bot {:?} belongs to another contact; nothing was written into it",
                        chat.bot_id
                    )),
                    p.now,
                );
                records.push(serde_json::to_value(&r).map_err(backend)?);
                continue;
            }
        };
        if let Some(text) = &chat.text {
            let m = NewMessage {
                text: text.clone(),
                buttons: Vec::new(),
                ts: p.now,
            };
            let stored = hot.append_message(&mut chain, Direction::Out, &m)?;
            chain.save(tx)?;
            match out.messages.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(stored),
                None => out.messages.push((key.clone(), vec![stored])),
            }
        }
        if let Some((name, data)) = &chat.event {
            let event = NewEvent {
                id: chat.event_id.clone(),
                dialog: key,
                payload: EventPayload::Event {
                    name: name.clone(),
                    data: data.clone(),
                },
                source: format!("notification:{transaction_id}"),
                accepted_at: p.now,
            };
            let seq = hot.insert_event(&event)?;
            out.events.push(StoredEvent { seq, event });
        }
    }

    for d in &p.deliveries {
        tx.prepare_cached(
            "INSERT INTO deliveries (kind, run_id, step, request, status, next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
        )
        .map_err(backend)?
        .execute(params![
            d.kind.as_str(),
            p.run_id,
            d.step,
            d.request.to_string(),
            now
        ])
        .map_err(backend)?;
    }
    out.deliveries = p.deliveries.len();

    let (after, decision) = next(tx, p, p.run_id, step)?;
    // A leader's members finish with it: until then (a delay after the digest step, say) the
    // leader may still be cancelled and hand them on, and a re-claim reads their events again.
    if matches!(
        after.status,
        RunStatus::Done | RunStatus::Failed | RunStatus::Throttled
    ) {
        crate::notify_runs::members_finished(tx, p.run_id, after.status, p.now)?;
    }
    if let Some(r) = decision {
        records.push(serde_json::to_value(&r).map_err(backend)?);
    }
    if after.status == RunStatus::Pending {
        out.due = after.next_at.map(ts);
    }
    tx.prepare_cached(
        "UPDATE notification_runs SET status = ?2, step = ?3, next_at = ?4,
                digest_key = COALESCE(?5, digest_key), digest_of = COALESCE(?6, digest_of),
                steps = ?7, updated_at = ?8
         WHERE id = ?1",
    )
    .map_err(backend)?
    .execute(params![
        p.run_id,
        after.status.as_str(),
        after.step,
        after.next_at,
        after.digest_key,
        after.digest_of,
        serde_json::to_string(&records).map_err(backend)?,
        now
    ])
    .map_err(backend)?;
    Ok(out)
}

/// Where a chat step writes.
enum ChatTarget {
    Dialog(Chain, DialogKey),
    /// No dialog with the bot, and no subscriber id to open one with.
    Nowhere,
    /// The subscriber id names a widget dialog of another contact.
    Taken(String),
}

/// The dialog a chat step writes into: the contact's most recent one with the bot, else a new
/// `chatwidget` dialog whose chat id is the subscriber id.
fn chat_dialog(
    tx: &Transaction<'_>,
    contact: i64,
    subscriber_id: Option<&str>,
    bot_id: &str,
    now: i64,
) -> Result<ChatTarget> {
    let found: Option<(Chain, String, String)> = tx
        .prepare_cached(
            "SELECT id, last_message_id, message_count, channel_type, chat_id FROM dialogs
             WHERE contact_id = ?1 AND bot_id = ?2
             ORDER BY id DESC LIMIT 1",
        )
        .map_err(backend)?
        .query_row(params![contact, bot_id], |r| {
            Ok((Chain::from_row(r)?, r.get(3)?, r.get(4)?))
        })
        .optional()
        .map_err(backend)?;
    if let Some((chain, channel_type, chat_id)) = found {
        return Ok(ChatTarget::Dialog(
            chain,
            DialogKey::new(&channel_type, bot_id, &chat_id),
        ));
    }
    let Some(chat_id) = subscriber_id else {
        return Ok(ChatTarget::Nowhere);
    };
    tx.prepare_cached(
        "INSERT OR IGNORE INTO dialogs (channel_type, bot_id, chat_id, contact_id, created_at, updated_at)
         VALUES ('chatwidget', ?1, ?2, ?3, ?4, ?4)",
    )
    .map_err(backend)?
    .execute(params![bot_id, chat_id, contact, now])
    .map_err(backend)?;
    let (chain, owner): (Chain, i64) = tx
        .prepare_cached(
            "SELECT id, last_message_id, message_count, contact_id FROM dialogs
             WHERE channel_type = 'chatwidget' AND bot_id = ?1 AND chat_id = ?2",
        )
        .map_err(backend)?
        .query_row(params![bot_id, chat_id], |r| {
            Ok((Chain::from_row(r)?, r.get(3)?))
        })
        .map_err(backend)?;
    if owner != contact {
        // A widget chat id is chosen by the browser: a dialog of that id that belongs to
        // someone else is never written into.
        return Ok(ChatTarget::Taken(chat_id.to_owned()));
    }
    Ok(ChatTarget::Dialog(
        chain,
        DialogKey::new("chatwidget", bot_id, chat_id),
    ))
}

/// Where the run goes next, with the activity record of a digest or throttle decision.
fn next(
    tx: &Transaction<'_>,
    p: &RunProgress,
    run: i64,
    step: i64,
) -> Result<(After, Option<StepRecord>)> {
    let now = p.now.as_millisecond();
    let stay = |status| After {
        status,
        step,
        next_at: None,
        digest_key: None,
        digest_of: None,
    };
    let go_on = |step: usize, at: i64| After {
        status: RunStatus::Pending,
        step: step as i64 + 1,
        next_at: Some(at),
        digest_key: None,
        digest_of: None,
    };
    Ok(match &p.next {
        RunNext::Done => (stay(RunStatus::Done), None),
        RunNext::Failed => (stay(RunStatus::Failed), None),
        RunNext::Wait { step, until } => (
            After {
                status: RunStatus::Pending,
                step: *step as i64,
                next_at: Some(until.as_millisecond()),
                digest_key: None,
                digest_of: None,
            },
            None,
        ),
        RunNext::Digest {
            step,
            step_id,
            key,
            closes_at,
            look_back_since,
        } => {
            let leader: Option<i64> = tx
                .prepare_cached("SELECT leader FROM digests WHERE key = ?1")
                .map_err(backend)?
                .query_row(params![key], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            let last_seen: Option<i64> = tx
                .prepare_cached("SELECT last_at FROM digest_seen WHERE key = ?1")
                .map_err(backend)?
                .query_row(params![key], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            tx.prepare_cached(
                "INSERT INTO digest_seen (key, last_at) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET last_at = excluded.last_at",
            )
            .map_err(backend)?
            .execute(params![key, now])
            .map_err(backend)?;
            let quiet = match look_back_since {
                Some(since) => last_seen.is_none_or(|t| t < since.as_millisecond()),
                None => false,
            };
            let digest = |status: &str, detail: String| {
                record(step_id, "digest", status, Some(detail), p.now)
            };
            if let Some(leader) = leader {
                let r = digest("pending", format!("joined the digest of run {leader}"));
                let after = After {
                    status: RunStatus::Digested,
                    step: *step as i64,
                    next_at: None,
                    digest_key: None,
                    digest_of: Some(leader),
                };
                (after, Some(r))
            } else if quiet {
                let r = digest(
                    "done",
                    "no event within the look-back window: sent at once".into(),
                );
                (go_on(*step, now), Some(r))
            } else {
                let closes = closes_at.as_millisecond();
                tx.prepare_cached(
                    "INSERT INTO digests (key, leader, closes_at) VALUES (?1, ?2, ?3)",
                )
                .map_err(backend)?
                .execute(params![key, run, closes])
                .map_err(backend)?;
                let r = digest("pending", format!("digest open until {closes_at}"));
                let after = After {
                    digest_key: Some(key.clone()),
                    ..go_on(*step, closes)
                };
                (after, Some(r))
            }
        }
        RunNext::Throttle {
            step,
            step_id,
            key,
            window_start,
            threshold,
        } => {
            let since = window_start.as_millisecond();
            // Hits before the window count for nothing any more.
            tx.prepare_cached("DELETE FROM throttle_hits WHERE key = ?1 AND at < ?2")
                .map_err(backend)?
                .execute(params![key, since])
                .map_err(backend)?;
            let hits: i64 = tx
                .prepare_cached("SELECT COUNT(*) FROM throttle_hits WHERE key = ?1 AND at >= ?2")
                .map_err(backend)?
                .query_row(params![key, since], |r| r.get(0))
                .map_err(backend)?;
            if hits < i64::from(*threshold) {
                tx.prepare_cached("INSERT INTO throttle_hits (key, at) VALUES (?1, ?2)")
                    .map_err(backend)?
                    .execute(params![key, now])
                    .map_err(backend)?;
                let r = record(step_id, "throttle", "done", None, p.now);
                (go_on(*step, now), Some(r))
            } else {
                let detail =
                    format!("throttled: {hits} runs in the window (threshold {threshold})");
                let r = record(step_id, "throttle", "skipped", Some(detail), p.now);
                (stay(RunStatus::Throttled), Some(r))
            }
        }
    })
}
