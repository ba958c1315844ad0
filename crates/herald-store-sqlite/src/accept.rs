//! The two hot write paths: logging a batch of accepted events, and applying a batch of handled
//! events. Both run inside one transaction opened by the caller.

use herald_store::*;
use rusqlite::{CachedStatement, OptionalExtension, Transaction, params};

use crate::chain::Chain;
use crate::conn::backend;
use crate::rows::{PUSHBACK_COLUMNS, pushback_row};

const INSERT_EVENT: &str =
    "INSERT INTO events (id, channel_type, bot_id, chat_id, payload, source, accepted_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const INSERT_MESSAGE: &str =
    "INSERT INTO messages (dialog_id, direction, text, buttons, ts, prev_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const FIND_DIALOG: &str = "SELECT id, last_message_id, message_count, contact_id FROM dialogs
     WHERE channel_type = ?1 AND bot_id = ?2 AND chat_id = ?3";
const UPDATE_DIALOG: &str = "UPDATE dialogs SET state = ?2, session = ?3, updated_at = ?4, handled_seq = MAX(handled_seq, ?5),
     last_message_id = ?6, message_count = ?7
     WHERE id = ?1";
const USE_PUSHBACK: &str =
    "UPDATE pushbacks SET uses = uses + 1, last_used_at = ?2 WHERE rowid = ?1";
// A lookup and an update by rowid rather than `UPDATE … RETURNING`: SQLite runs RETURNING
// through a temporary b-tree, opened and torn down on every execution.
static FIND_PUSHBACK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {PUSHBACK_COLUMNS}, rowid FROM pushbacks WHERE id = ?1")
});

/// The statements run once or more per item of a batch, each taken from the connection's
/// statement cache once per batch and kept for the batch's items: a cache lookup hashes the
/// SQL text, and returning a statement resets and re-files it, per execution otherwise.
pub(crate) struct Hot<'t> {
    pub(crate) tx: &'t Transaction<'t>,
    event: Option<CachedStatement<'t>>,
    message: Option<CachedStatement<'t>>,
    find_dialog: Option<CachedStatement<'t>>,
    update_dialog: Option<CachedStatement<'t>>,
    find_pushback: Option<CachedStatement<'t>>,
    use_pushback: Option<CachedStatement<'t>>,
}

/// The statement in `slot`, prepared (from the cache) on first use.
fn stmt<'s, 't>(
    tx: &'t Transaction<'t>,
    slot: &'s mut Option<CachedStatement<'t>>,
    sql: &str,
) -> Result<&'s mut CachedStatement<'t>> {
    if slot.is_none() {
        *slot = Some(tx.prepare_cached(sql).map_err(backend)?);
    }
    slot.as_mut()
        .ok_or_else(|| StoreError::Backend("statement not prepared".into()))
}

impl<'t> Hot<'t> {
    pub(crate) fn new(tx: &'t Transaction<'t>) -> Self {
        Self {
            tx,
            event: None,
            message: None,
            find_dialog: None,
            update_dialog: None,
            find_pushback: None,
            use_pushback: None,
        }
    }

    pub(crate) fn insert_event(&mut self, e: &NewEvent) -> Result<i64> {
        let payload = serde_json::to_string(&e.payload).map_err(backend)?;
        stmt(self.tx, &mut self.event, INSERT_EVENT)?
            .execute(params![
                e.id,
                e.dialog.channel_type,
                e.dialog.bot_id,
                e.dialog.chat_id,
                payload,
                e.source,
                e.accepted_at.as_millisecond()
            ])
            .map_err(backend)?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Appends a message to a dialog's chain; the caller writes the chain's new end into the
    /// dialog row before the transaction commits.
    pub(crate) fn append_message(
        &mut self,
        chain: &mut Chain,
        dir: Direction,
        m: &NewMessage,
    ) -> Result<StoredMessage> {
        let buttons = serde_json::to_string(&m.buttons).map_err(backend)?;
        stmt(self.tx, &mut self.message, INSERT_MESSAGE)?
            .execute(params![
                chain.dialog_id,
                if dir == Direction::In { "in" } else { "out" },
                m.text,
                buttons,
                m.ts.as_millisecond(),
                chain.last
            ])
            .map_err(backend)?;
        let id = self.tx.last_insert_rowid();
        chain.linked(self.tx, id)?;
        Ok(StoredMessage {
            id,
            direction: dir,
            text: m.text.clone(),
            buttons: m.buttons.clone(),
            ts: m.ts,
        })
    }
}

pub(crate) fn insert_event(tx: &Transaction<'_>, e: &NewEvent) -> Result<i64> {
    Hot::new(tx).insert_event(e)
}

pub(crate) fn accept_batch(
    hot: &mut Hot<'_>,
    items: Vec<AcceptItem>,
) -> Result<Vec<AcceptOutcome>> {
    let tx = hot.tx;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(match item {
            AcceptItem::Event(e) => {
                let seq = hot.insert_event(&e)?;
                AcceptOutcome::Accepted(StoredEvent { seq, event: e })
            }
            AcceptItem::Pushback {
                pushback_id,
                data,
                event_id,
                source,
                now,
                idempotency,
            } => activate(hot, pushback_id, data, event_id, source, now, idempotency)?,
            AcceptItem::Schedule(job) => {
                crate::jobs::insert_job(tx, &job)?;
                match crate::jobs::load_job(tx, &job.bot_id, job.id)? {
                    Some(record) => AcceptOutcome::Job(Box::new(record)),
                    None => return Err(StoreError::Backend("a job just stored is missing".into())),
                }
            }
            AcceptItem::CancelJob {
                bot_id,
                job_id,
                now,
            } => match crate::jobs::cancel_job(tx, &bot_id, job_id, now)? {
                Some(record) => AcceptOutcome::Job(Box::new(record)),
                None => AcceptOutcome::NotFound,
            },
            AcceptItem::Ack { dialog, up_to } => {
                tx.prepare_cached(
                    "UPDATE dialogs SET acked_upto = MAX(acked_upto, ?4)
                     WHERE channel_type = ?1 AND bot_id = ?2 AND chat_id = ?3",
                )
                .map_err(backend)?
                .execute(params![
                    dialog.channel_type,
                    dialog.bot_id,
                    dialog.chat_id,
                    up_to
                ])
                .map_err(backend)?;
                AcceptOutcome::Acked
            }
            AcceptItem::Trigger(t) => AcceptOutcome::Trigger(crate::notify::trigger(tx, &t)?),
            AcceptItem::CancelTrigger {
                transaction_id,
                now,
            } => AcceptOutcome::TriggerCancelled(crate::notify_runs::cancel_trigger(
                tx,
                &transaction_id,
                now,
            )?),
            AcceptItem::ClaimRuns { now, limit } => {
                let (runs, next_due) = crate::notify_runs::claim_runs(tx, now, limit)?;
                AcceptOutcome::Runs { runs, next_due }
            }
            AcceptItem::RunProgress(p) => {
                AcceptOutcome::Progress(Box::new(crate::notify_progress::apply_progress(hot, &p)?))
            }
            AcceptItem::Ingest(n) => {
                AcceptOutcome::Ingest(Box::new(crate::ingest::record(hot, &n)?))
            }
        });
    }
    Ok(out)
}

fn activate(
    hot: &mut Hot<'_>,
    pushback_id: String,
    data: Option<serde_json::Value>,
    event_id: String,
    source: String,
    now: jiff::Timestamp,
    idempotency: Option<IdempotencyKey>,
) -> Result<AcceptOutcome> {
    let tx = hot.tx;
    if let Some(k) = &idempotency
        && let Some(event_id) = seen_key(tx, k)?
    {
        return Ok(AcceptOutcome::Repeated { event_id });
    }
    let now_ms = now.as_millisecond();
    let row = stmt(tx, &mut hot.find_pushback, &FIND_PUSHBACK)?
        .query_row(params![pushback_id], |r| {
            Ok((r.get::<_, i64>(11)?, pushback_row(r)?))
        })
        .optional()
        .map_err(backend)?;
    let Some((rowid, pushback)) = row else {
        return Ok(AcceptOutcome::NotFound);
    };
    let p = pushback?;
    let expired = p.expires_at.is_some_and(|t| t.as_millisecond() <= now_ms);
    if expired || p.max_uses.is_some_and(|m| p.uses >= m) {
        return Ok(AcceptOutcome::Gone);
    }
    stmt(tx, &mut hot.use_pushback, USE_PUSHBACK)?
        .execute(params![rowid, now_ms])
        .map_err(backend)?;
    let event = NewEvent {
        id: event_id,
        dialog: p.dialog,
        payload: EventPayload::Event {
            name: p.event,
            data: data.unwrap_or(p.event_data),
        },
        source,
        accepted_at: now,
    };
    let seq = hot.insert_event(&event)?;
    if let Some(k) = &idempotency {
        remember_key(tx, k, &event.id, now_ms)?;
    }
    Ok(AcceptOutcome::Accepted(StoredEvent { seq, event }))
}

/// What an `Idempotency-Key` answered the first time (an event or transaction id), if seen.
pub(crate) fn seen_key(tx: &Transaction<'_>, k: &IdempotencyKey) -> Result<Option<String>> {
    tx.prepare_cached("SELECT event_id FROM idempotency WHERE scope = ?1 AND key = ?2")
        .map_err(backend)?
        .query_row(params![k.scope, k.key], |r| r.get(0))
        .optional()
        .map_err(backend)
}

/// Records what an `Idempotency-Key` answered, for repeats.
pub(crate) fn remember_key(
    tx: &Transaction<'_>,
    k: &IdempotencyKey,
    answer: &str,
    now_ms: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO idempotency (scope, key, event_id, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(backend)?
    .execute(params![k.scope, k.key, answer, now_ms])
    .map_err(backend)?;
    Ok(())
}

/// The dialog an event was handled in, created with its contact on first sight; returns its
/// chain and contact id. [`save_dialog`] writes its new state once its messages are stored.
fn open_dialog(hot: &mut Hot<'_>, h: &HandledEvent, now_ms: i64) -> Result<(Chain, i64)> {
    let tx = hot.tx;
    let key = &h.dialog;
    let found = stmt(tx, &mut hot.find_dialog, FIND_DIALOG)?
        .query_row(params![key.channel_type, key.bot_id, key.chat_id], |r| {
            Ok((Chain::from_row(r)?, r.get(3)?))
        })
        .optional()
        .map_err(backend)?;
    if let Some(found) = found {
        return Ok(found);
    }
    tx.prepare_cached("INSERT INTO contacts (id, created_at) VALUES (?1, ?2)")
        .map_err(backend)?
        .execute(params![h.contact_id, now_ms])
        .map_err(backend)?;
    let contact_id = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT INTO dialogs (channel_type, bot_id, chat_id, contact_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )
    .map_err(backend)?
    .execute(params![
        key.channel_type,
        key.bot_id,
        key.chat_id,
        contact_id,
        now_ms
    ])
    .map_err(backend)?;
    let chain = Chain {
        dialog_id: tx.last_insert_rowid(),
        last: 0,
        count: 0,
    };
    Ok((chain, contact_id))
}

/// Writes the dialog's state after handling `h`, with the end of its message chain.
fn save_dialog(hot: &mut Hot<'_>, h: &HandledEvent, chain: &Chain, now_ms: i64) -> Result<()> {
    // An update by rowid after a lookup rather than `UPDATE … RETURNING` (see `FIND_PUSHBACK`).
    stmt(hot.tx, &mut hot.update_dialog, UPDATE_DIALOG)?
        .execute(params![
            chain.dialog_id,
            h.state,
            h.session.to_string(),
            now_ms,
            h.seq,
            chain.last,
            chain.count
        ])
        .map_err(backend)?;
    Ok(())
}

pub(crate) fn apply_batch(hot: &mut Hot<'_>, handled: Vec<HandledEvent>) -> Result<Vec<Applied>> {
    let tx = hot.tx;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let mut out = Vec::with_capacity(handled.len());
    for h in handled {
        if h.dialog.is_bot_level() {
            out.push(apply_bot_level(hot, h, now_ms)?);
            continue;
        }
        let (mut chain, contact_id) = open_dialog(hot, &h, now_ms)?;
        if let Some(client) = &h.client {
            tx.prepare_cached("UPDATE contacts SET data = ?2 WHERE id = ?1")
                .map_err(backend)?
                .execute(params![contact_id, client.to_string()])
                .map_err(backend)?;
        }
        if let Some(tags) = &h.tags {
            let tags = serde_json::to_string(tags).map_err(backend)?;
            tx.prepare_cached("UPDATE contacts SET tags = ?2 WHERE id = ?1")
                .map_err(backend)?
                .execute(params![contact_id, tags])
                .map_err(backend)?;
        }
        apply_jobs(tx, &h, Some(contact_id), now_ms)?;
        if let Some(m) = &h.incoming {
            hot.append_message(&mut chain, Direction::In, m)?;
        }
        let mut replies = Vec::with_capacity(h.replies.len());
        for m in &h.replies {
            replies.push(hot.append_message(&mut chain, Direction::Out, m)?);
        }
        save_dialog(hot, &h, &chain, now_ms)?;
        out.push(Applied {
            raised: log_raised(hot, h.raise)?,
            dialog: h.dialog,
            replies,
        });
    }
    Ok(out)
}

/// A job run's outcome, the jobs its scripts scheduled or cancelled, and the pushbacks it
/// revokes. A job scheduled for the dialog's own lead before the lead was stored gets
/// `contact_id`.
fn apply_jobs(
    tx: &Transaction<'_>,
    h: &HandledEvent,
    contact_id: Option<i64>,
    now_ms: i64,
) -> Result<()> {
    if let Some(run) = &h.run {
        crate::jobs::apply_run(tx, run)?;
    }
    for job in &h.schedule {
        let mut job = job.clone();
        if job.spec.lead_id.is_none() && job.dialog.as_ref() == Some(&h.dialog) {
            job.spec.lead_id = contact_id;
        }
        crate::jobs::insert_job(tx, &job)?;
    }
    for (bot_id, job_id) in &h.cancel {
        crate::jobs::cancel_job(
            tx,
            bot_id,
            *job_id,
            jiff::Timestamp::from_millisecond(now_ms).unwrap_or_default(),
        )?;
    }
    for id in &h.revoke_pushbacks {
        tx.prepare_cached("DELETE FROM pushbacks WHERE id = ?1")
            .map_err(backend)?
            .execute(params![id])
            .map_err(backend)?;
    }
    Ok(())
}

/// A bot-level job run (see [`DialogKey::bot_level`]): no dialog, contact or messages, only its
/// job effects and follow-up events. Finishing its run record is its handled mark.
fn apply_bot_level(hot: &mut Hot<'_>, h: HandledEvent, now_ms: i64) -> Result<Applied> {
    apply_jobs(hot.tx, &h, None, now_ms)?;
    Ok(Applied {
        raised: log_raised(hot, h.raise)?,
        dialog: h.dialog,
        replies: Vec::new(),
    })
}

/// Logs a handled event's follow-up events.
fn log_raised(hot: &mut Hot<'_>, raise: Vec<NewEvent>) -> Result<Vec<StoredEvent>> {
    let mut raised = Vec::with_capacity(raise.len());
    for e in raise {
        let seq = hot.insert_event(&e)?;
        raised.push(StoredEvent { seq, event: e });
    }
    Ok(raised)
}
