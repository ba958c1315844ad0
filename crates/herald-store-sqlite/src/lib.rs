//! The embedded default backend: SQLite in WAL mode through rusqlite, on blocking threads.
//! Each trait call is one transaction; the engine batches, so one call carries many events.

mod accept;
mod chain;
mod conn;
mod ingest;
mod jobs;
mod migrations;
mod notify;
mod notify_feed;
mod notify_outbox;
mod notify_progress;
mod notify_purge;
mod notify_runs;
mod rows;

use std::path::Path;
use std::sync::Arc;

use herald_store::*;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

pub use conn::Synchronous;
use conn::{Pool, backend};
use rows::*;

pub struct SqliteStore {
    pool: Arc<Pool>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub fn open(path: &Path, sync: Synchronous) -> Result<Self> {
        Ok(Self {
            pool: Pool::open(path, sync)?,
        })
    }

    fn write_batch(tx: &rusqlite::Transaction<'_>, batch: Batch) -> Result<Committed> {
        let Batch {
            accept,
            handled,
            handled_through,
            claim,
        } = batch;
        if let Some(w) = handled_through {
            tx.prepare_cached(
                "UPDATE meta SET value = MAX(value, ?1) WHERE key = 'handled_through'",
            )
            .map_err(backend)?
            .execute(params![w])
            .map_err(backend)?;
        }
        let mut hot = accept::Hot::new(tx);
        let applied = accept::apply_batch(&mut hot, handled)?;
        let accepted = accept::accept_batch(&mut hot, accept)?;
        drop(hot);
        let claimed = claim.map(|c| jobs::claim(tx, &c)).transpose()?;
        Ok(Committed {
            accepted,
            applied,
            claimed,
        })
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.pool
            .read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }

    async fn commit(&self, batch: Batch) -> Result<Committed> {
        self.pool
            .write(move |tx| Self::write_batch(tx, batch))
            .await
    }

    fn commit_unflushed_blocking(&self, batch: Batch) -> Result<Committed> {
        self.pool
            .write_now(|tx| Self::write_batch(tx, batch), false)
    }

    fn flush_blocking(&self) -> Result<()> {
        self.pool.flush_now()
    }

    async fn unhandled_events(&self, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.pool
            .read(move |c| {
                let mut st = c
                    .prepare_cached(
                        "SELECT e.seq, e.id, e.channel_type, e.bot_id, e.chat_id, e.payload, e.source, e.accepted_at
                         FROM events e
                         LEFT JOIN dialogs d
                           ON d.channel_type = e.channel_type AND d.bot_id = e.bot_id AND d.chat_id = e.chat_id
                         WHERE e.seq > MAX(?1, (SELECT value FROM meta WHERE key = 'handled_through'))
                           AND e.seq > COALESCE(d.handled_seq, 0)
                           AND (e.channel_type <> 'bot' OR EXISTS (
                                 SELECT 1 FROM job_runs r
                                 WHERE r.id = json_extract(e.payload, '$.job.run_id')
                                   AND r.finished_at IS NULL))
                         ORDER BY e.seq LIMIT ?2",
                    )
                    .map_err(backend)?;
                let rows = st
                    .query_map(params![after_seq, limit as i64], event_row)
                    .map_err(backend)?;
                rows.map(|r| r.map_err(backend)?).collect()
            })
            .await
    }

    async fn load_dialog(&self, key: &DialogKey) -> Result<Option<DialogRecord>> {
        let key = key.clone();
        self.pool
            .read(move |c| {
                c.prepare_cached(
                    "SELECT d.id, d.contact_id, d.state, d.session, c.data, d.acked_upto, d.created_at, d.updated_at, c.tags, c.attributes
                     FROM dialogs d JOIN contacts c ON c.id = d.contact_id
                     WHERE d.channel_type = ?1 AND d.bot_id = ?2 AND d.chat_id = ?3",
                )
                .map_err(backend)?
                .query_row(params![key.channel_type, key.bot_id, key.chat_id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, String>(8)?,
                        r.get::<_, String>(9)?,
                    ))
                })
                .optional()
                .map_err(backend)?
                .map(|(id, contact_id, state, session, client, acked_upto, created, updated, tags, attributes)| {
                    Ok(DialogRecord {
                        id,
                        key: key.clone(),
                        contact_id,
                        state,
                        session: json(&session)?,
                        client: json(&client)?,
                        tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        attributes: json(&attributes)?,
                        acked_upto,
                        created_at: ts(created),
                        updated_at: ts(updated),
                    })
                })
                .transpose()
            })
            .await
    }

    async fn list_messages(
        &self,
        key: &DialogKey,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let key = key.clone();
        self.pool
            .read(move |c| {
                let tx = c.unchecked_transaction().map_err(backend)?;
                match chain::Chain::find(&tx, &key)? {
                    Some((chain, _)) => chain.read(&tx, after, limit, false),
                    None => Ok(Vec::new()),
                }
            })
            .await
    }

    async fn unacked_messages(&self, key: &DialogKey, limit: usize) -> Result<Vec<StoredMessage>> {
        let key = key.clone();
        self.pool
            .read(move |c| {
                let tx = c.unchecked_transaction().map_err(backend)?;
                match chain::Chain::find(&tx, &key)? {
                    Some((chain, acked_upto)) => chain.read(&tx, acked_upto, limit, true),
                    None => Ok(Vec::new()),
                }
            })
            .await
    }

    async fn create_pushback(&self, p: &Pushback) -> Result<()> {
        let p = p.clone();
        self.pool
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO pushbacks (id, channel_type, bot_id, chat_id, event, event_data, created_at, expires_at, max_uses, uses, last_used_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(backend)?
                .execute(params![
                    p.id,
                    p.dialog.channel_type,
                    p.dialog.bot_id,
                    p.dialog.chat_id,
                    p.event,
                    p.event_data.to_string(),
                    p.created_at.as_millisecond(),
                    p.expires_at.map(|t| t.as_millisecond()),
                    p.max_uses,
                    p.uses,
                    p.last_used_at.map(|t| t.as_millisecond()),
                ])
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn get_pushback(&self, id: &str) -> Result<Option<Pushback>> {
        let id = id.to_owned();
        self.pool
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {PUSHBACK_COLUMNS} FROM pushbacks WHERE id = ?1"
                ))
                .map_err(backend)?
                .query_row(params![id], pushback_row)
                .optional()
                .map_err(backend)?
                .transpose()
            })
            .await
    }

    async fn list_pushbacks(
        &self,
        bot_id: Option<&str>,
        chat_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Pushback>> {
        let (bot_id, chat_id) = (bot_id.map(str::to_owned), chat_id.map(str::to_owned));
        self.pool
            .read(move |c| {
                let mut st = c
                    .prepare_cached(&format!(
                        "SELECT {PUSHBACK_COLUMNS} FROM pushbacks
                         WHERE (?1 IS NULL OR bot_id = ?1) AND (?2 IS NULL OR chat_id = ?2)
                         ORDER BY created_at, id LIMIT ?3"
                    ))
                    .map_err(backend)?;
                let rows = st
                    .query_map(params![bot_id, chat_id, limit as i64], pushback_row)
                    .map_err(backend)?;
                rows.map(|r| r.map_err(backend)?).collect()
            })
            .await
    }

    async fn delete_pushback(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.pool
            .write(move |tx| {
                let n = tx
                    .prepare_cached("DELETE FROM pushbacks WHERE id = ?1")
                    .map_err(backend)?
                    .execute(params![id])
                    .map_err(backend)?;
                Ok(n > 0)
            })
            .await
    }

    async fn get_contact(&self, id: i64) -> Result<Option<Contact>> {
        self.pool
            .read(move |c| {
                let Some((subscriber_id, data, tags, created, attributes)) = c
                    .prepare_cached("SELECT subscriber_id, data, tags, created_at, attributes FROM contacts WHERE id = ?1")
                    .map_err(backend)?
                    .query_row(params![id], |r| {
                        Ok((
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    })
                    .optional()
                    .map_err(backend)?
                else {
                    return Ok(None);
                };
                let mut st = c
                    .prepare_cached(
                        "SELECT channel_type, bot_id, chat_id FROM dialogs WHERE contact_id = ?1 ORDER BY id",
                    )
                    .map_err(backend)?;
                let dialogs = st
                    .query_map(params![id], |r| {
                        Ok(DialogKey {
                            channel_type: r.get(0)?,
                            bot_id: r.get(1)?,
                            chat_id: r.get(2)?,
                        })
                    })
                    .map_err(backend)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(backend)?;
                Ok(Some(Contact {
                    id,
                    subscriber_id,
                    data: json(&data)?,
                    attributes: json(&attributes)?,
                    tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    created_at: ts(created),
                    dialogs,
                }))
            })
            .await
    }

    async fn lead_dialog(&self, lead_id: i64, bot_id: &str) -> Result<Option<DialogKey>> {
        let bot_id = bot_id.to_owned();
        self.pool
            .read(move |c| jobs::lead_dialog(c, lead_id, &bot_id))
            .await
    }

    async fn get_job(
        &self,
        bot_id: &str,
        id: i64,
        runs: usize,
    ) -> Result<Option<(JobRecord, Vec<JobRun>)>> {
        let bot_id = bot_id.to_owned();
        self.pool
            .read(move |c| {
                // One snapshot: a claim committing between the two reads must not show a run
                // the job record does not count yet.
                let snapshot = c.unchecked_transaction().map_err(backend)?;
                let Some(job) = jobs::load_job(&snapshot, &bot_id, id)? else {
                    return Ok(None);
                };
                let runs = jobs::job_runs(&snapshot, id, runs)?;
                Ok(Some((job, runs)))
            })
            .await
    }

    async fn list_jobs(&self, bot_id: &str, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        let (bot_id, filter) = (bot_id.to_owned(), filter.clone());
        self.pool
            .read(move |c| jobs::list_jobs(c, &bot_id, &filter))
            .await
    }

    async fn next_job_due(&self) -> Result<Option<Timestamp>> {
        self.pool.read(jobs::next_due).await
    }

    async fn cancelled_queued_jobs(&self) -> Result<Vec<i64>> {
        self.pool.read(jobs::cancelled_queued).await
    }

    async fn upsert_subscriber(
        &self,
        upsert: SubscriberUpsert,
        mode: UpsertMode,
    ) -> Result<Option<(Subscriber, bool)>> {
        self.pool
            .write(move |tx| notify::upsert_subscriber(tx, &upsert, &mode))
            .await
    }

    async fn upsert_subscribers(
        &self,
        upserts: Vec<SubscriberUpsert>,
    ) -> Result<Vec<(Subscriber, bool)>> {
        self.pool
            .write(move |tx| {
                upserts
                    .iter()
                    .filter_map(|u| {
                        notify::upsert_subscriber(tx, u, &UpsertMode::CreateOrUpdate).transpose()
                    })
                    .collect()
            })
            .await
    }

    async fn get_subscriber(&self, subscriber_id: &str) -> Result<Option<Subscriber>> {
        let id = subscriber_id.to_owned();
        self.pool
            .read(move |c| notify::get_subscriber(c, &id))
            .await
    }

    async fn list_subscribers(&self, page: usize, limit: usize) -> Result<Vec<Subscriber>> {
        self.pool
            .read(move |c| notify::list_subscribers(c, page, limit))
            .await
    }

    async fn delete_subscriber(&self, subscriber_id: &str) -> Result<bool> {
        let id = subscriber_id.to_owned();
        self.pool
            .write(move |tx| notify::delete_subscriber(tx, &id))
            .await
    }

    async fn create_topic(&self, key: &str, name: &str, now: Timestamp) -> Result<TopicCreate> {
        let (key, name) = (key.to_owned(), name.to_owned());
        self.pool
            .write(move |tx| notify::create_topic(tx, &key, &name, now))
            .await
    }

    async fn get_topic(&self, key: &str) -> Result<Option<(Topic, Vec<String>)>> {
        let key = key.to_owned();
        self.pool.read(move |c| notify::get_topic(c, &key)).await
    }

    async fn list_topics(
        &self,
        page: usize,
        page_size: usize,
        key: Option<&str>,
    ) -> Result<(Vec<Topic>, u64)> {
        let key = key.map(str::to_owned);
        self.pool
            .read(move |c| notify::list_topics(c, page, page_size, key.as_deref()))
            .await
    }

    async fn add_topic_subscribers(
        &self,
        key: &str,
        subscriber_ids: &[String],
    ) -> Result<Option<(Vec<String>, Vec<String>)>> {
        let (key, ids) = (key.to_owned(), subscriber_ids.to_vec());
        self.pool
            .write(move |tx| notify::add_topic_subscribers(tx, &key, &ids))
            .await
    }

    async fn remove_topic_subscribers(&self, key: &str, subscriber_ids: &[String]) -> Result<bool> {
        let (key, ids) = (key.to_owned(), subscriber_ids.to_vec());
        self.pool
            .write(move |tx| notify::remove_topic_subscribers(tx, &key, &ids))
            .await
    }

    async fn delete_topic(&self, key: &str) -> Result<TopicDelete> {
        let key = key.to_owned();
        self.pool
            .write(move |tx| notify::delete_topic(tx, &key))
            .await
    }

    async fn feed(&self, subscriber_id: &str, query: &FeedQuery) -> Result<Option<FeedPage>> {
        let (id, query) = (subscriber_id.to_owned(), query.clone());
        self.pool
            .read(move |c| {
                // One snapshot: the counts and the page must describe the same feed.
                let snapshot = c.unchecked_transaction().map_err(backend)?;
                notify_feed::feed(&snapshot, &id, &query)
            })
            .await
    }

    async fn mark_feed(
        &self,
        subscriber_id: &str,
        ids: &[i64],
        mark: FeedMark,
        now: Timestamp,
    ) -> Result<Option<Vec<FeedEntry>>> {
        let (id, ids) = (subscriber_id.to_owned(), ids.to_vec());
        self.pool
            .write(move |tx| notify_feed::mark_feed(tx, &id, &ids, mark, now))
            .await
    }

    async fn mark_all_feed(
        &self,
        subscriber_id: &str,
        mark: FeedMark,
        now: Timestamp,
    ) -> Result<Option<u64>> {
        let id = subscriber_id.to_owned();
        self.pool
            .write(move |tx| notify_feed::mark_all_feed(tx, &id, mark, now))
            .await
    }

    async fn get_notification(&self, transaction_id: &str) -> Result<Option<NotificationRecord>> {
        let id = transaction_id.to_owned();
        self.pool
            .read(move |c| {
                // One snapshot: the notification and its runs as of one commit.
                let snapshot = c.unchecked_transaction().map_err(backend)?;
                notify_runs::get_notification(&snapshot, &id)
            })
            .await
    }

    async fn list_notifications(
        &self,
        page: usize,
        limit: usize,
    ) -> Result<Vec<NotificationRecord>> {
        self.pool
            .read(move |c| notify_runs::list_notifications(c, page, limit))
            .await
    }

    async fn reset_running_runs(&self) -> Result<u64> {
        self.pool.write(notify_runs::reset_running).await
    }

    async fn next_run_due(&self) -> Result<Option<Timestamp>> {
        self.pool.read(notify_runs::next_due).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        self.pool
            .write(move |tx| notify_outbox::claim_deliveries(tx, now, lease_until, limit))
            .await
    }

    async fn finish_delivery(&self, id: i64, result: AttemptResult, now: Timestamp) -> Result<()> {
        self.pool
            .write(move |tx| notify_outbox::finish_delivery(tx, id, &result, now))
            .await
    }

    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        self.pool
            .read(move |c| notify_outbox::list_deliveries(c, status, limit))
            .await
    }

    async fn retry_delivery(&self, id: i64, now: Timestamp) -> Result<DeliveryRetry> {
        self.pool
            .write(move |tx| notify_outbox::retry_delivery(tx, id, now))
            .await
    }

    async fn next_delivery_due(&self) -> Result<Option<Timestamp>> {
        self.pool.read(notify_outbox::next_delivery_due).await
    }

    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64> {
        self.pool
            .write(move |tx| {
                let n = tx
                    .execute(
                        "DELETE FROM idempotency WHERE created_at < ?1",
                        params![before.as_millisecond()],
                    )
                    .map_err(backend)?;
                Ok(n as u64)
            })
            .await
    }

    async fn purge_notify(&self, purge: NotifyPurge) -> Result<NotifyPurged> {
        self.pool
            .write(move |tx| notify_purge::purge(tx, &purge))
            .await
    }

    async fn stats(&self) -> Result<Stats> {
        self.pool
            .read(|c| {
                let q = |sql: &str| -> Result<i64> {
                    c.query_row(sql, [], |r| r.get(0)).map_err(backend)
                };
                Ok(Stats {
                    accepted: q("SELECT COALESCE(MAX(seq), 0) FROM events")?,
                    dialogs: q("SELECT COALESCE(MAX(id), 0) FROM dialogs")?,
                    messages: q("SELECT COALESCE(MAX(id), 0) FROM messages")?,
                    jobs: q("SELECT COALESCE(MAX(id), 0) FROM jobs")?,
                    contacts: q("SELECT COALESCE(MAX(id), 0) FROM contacts")?,
                    notifications: q("SELECT COALESCE(MAX(id), 0) FROM notifications")?,
                    runs: q("SELECT COALESCE(MAX(id), 0) FROM notification_runs")?,
                    runs_pending: q(
                        "SELECT COUNT(*) FROM notification_runs WHERE status = 'pending'",
                    )?,
                    feed_entries: q("SELECT COALESCE(MAX(id), 0) FROM feed")?,
                })
            })
            .await
    }

    async fn list_ingest_requests(
        &self,
        integration: &str,
        filter: &IngestFilter,
    ) -> Result<Vec<IngestRecord>> {
        let (integration, filter) = (integration.to_owned(), filter.clone());
        self.pool
            .read(move |c| ingest::list(c, &integration, &filter))
            .await
    }

    async fn get_ingest_request(&self, integration: &str, id: i64) -> Result<Option<IngestRecord>> {
        let integration = integration.to_owned();
        self.pool
            .read(move |c| ingest::get(c, &integration, id))
            .await
    }

    async fn purge_ingest(&self, before: Timestamp, now: Timestamp, limit: usize) -> Result<u64> {
        self.pool
            .write(move |tx| ingest::purge(tx, before, now, limit))
            .await
    }
}
