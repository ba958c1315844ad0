//! Storage for Herald behind one trait, [`Store`], so that the engine runs unchanged on the
//! embedded SQLite backend and on PostgreSQL. Writes come in batches (the engine group-commits:
//! many requests, one transaction, one fsync), and a method returns only after its transaction
//! is committed. [`conformance`] holds the behaviour every backend must show.

pub mod conformance;
mod conformance_ingest;
mod conformance_jobs;
mod conformance_notify;
mod ingest;
mod jobs;
mod model;
mod notify;

pub use ingest::*;
pub use jobs::*;
pub use model::*;
pub use notify::*;

use jiff::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Backend(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap check that storage answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    /// One transaction (one commit, one fsync) for a [`Batch`]: handled events — their state,
    /// replies, follow-up events, job effects and handled marks —, newly accepted items, and a
    /// claim of due jobs. One result per item, in order.
    async fn commit(&self, batch: Batch) -> Result<Committed>;

    /// Like [`commit`](Store::commit), on the calling thread, which it blocks, and the batch
    /// may not be durable yet when this returns: it is visible to readers, and durable once a
    /// later [`flush_blocking`](Store::flush_blocking) returns. The engine's writer, on a thread
    /// of its own, uses it to run the next batch while the disk flushes this one; nothing of the
    /// batch is acknowledged, dispatched or published before the flush. The default, for a
    /// backend whose commit is durable by itself, drives [`commit`](Store::commit) on that thread.
    fn commit_unflushed_blocking(&self, batch: Batch) -> Result<Committed> {
        futures_executor::block_on(self.commit(batch))
    }

    /// Makes every batch committed so far durable, blocking the calling thread (the engine's
    /// finisher has a thread of its own). The default has nothing to flush.
    fn flush_blocking(&self) -> Result<()> {
        Ok(())
    }

    /// Logs a batch of events in one transaction; one outcome per item, in order.
    async fn accept(&self, items: Vec<AcceptItem>) -> Result<Vec<AcceptOutcome>> {
        let batch = Batch {
            accept: items,
            ..Batch::default()
        };
        Ok(self.commit(batch).await?.accepted)
    }

    /// Applies handled events in one transaction; one result per item, in order.
    async fn apply(&self, handled: Vec<HandledEvent>) -> Result<Vec<Applied>> {
        let batch = Batch {
            handled,
            ..Batch::default()
        };
        Ok(self.commit(batch).await?.applied)
    }

    /// Claims the jobs due at `claim.now` in one transaction.
    async fn claim_jobs(&self, claim: ClaimRequest) -> Result<Claimed> {
        let batch = Batch {
            claim: Some(claim),
            ..Batch::default()
        };
        Ok(self.commit(batch).await?.claimed.unwrap_or_default())
    }

    /// Events accepted but not handled, in accept order, starting after `after_seq`.
    async fn unhandled_events(&self, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>>;

    async fn load_dialog(&self, key: &DialogKey) -> Result<Option<DialogRecord>>;

    /// Messages of a dialog (both directions), oldest first, with `id > after`.
    async fn list_messages(
        &self,
        key: &DialogKey,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>>;

    /// Outgoing messages the client has not acknowledged, oldest first.
    async fn unacked_messages(&self, key: &DialogKey, limit: usize) -> Result<Vec<StoredMessage>>;

    async fn create_pushback(&self, pushback: &Pushback) -> Result<()>;
    async fn get_pushback(&self, id: &str) -> Result<Option<Pushback>>;
    async fn list_pushbacks(
        &self,
        bot_id: Option<&str>,
        chat_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Pushback>>;
    /// Revokes; `false` if it did not exist.
    async fn delete_pushback(&self, id: &str) -> Result<bool>;

    async fn get_contact(&self, id: i64) -> Result<Option<Contact>>;

    /// The dialog a job for contact `lead_id` runs in with `bot_id`: its most recent one.
    async fn lead_dialog(&self, lead_id: i64, bot_id: &str) -> Result<Option<DialogKey>>;

    /// A job of `bot_id` with its most recent runs (newest first, at most `runs`).
    async fn get_job(
        &self,
        bot_id: &str,
        id: i64,
        runs: usize,
    ) -> Result<Option<(JobRecord, Vec<JobRun>)>>;

    /// Jobs of `bot_id`, newest first.
    async fn list_jobs(&self, bot_id: &str, filter: &JobFilter) -> Result<Vec<JobRecord>>;

    /// The earliest due time of a pending job.
    async fn next_job_due(&self) -> Result<Option<Timestamp>>;

    /// Jobs that were cancelled while a run of theirs was queued and not started: those runs
    /// must be skipped when their events replay.
    async fn cancelled_queued_jobs(&self) -> Result<Vec<i64>>;

    // Notifications (SPEC §5); see [`notify`]. Subscribers are contacts with a subscriber id.

    /// Creates or updates a subscriber; `Ok(None)` for [`UpsertMode::UpdateOnly`] of an unknown
    /// one. The flag tells whether it was created.
    async fn upsert_subscriber(
        &self,
        upsert: SubscriberUpsert,
        mode: UpsertMode,
    ) -> Result<Option<(Subscriber, bool)>>;
    /// Creates or updates many subscribers in one transaction (all or none), in order; the flag
    /// tells whether each was created.
    async fn upsert_subscribers(
        &self,
        upserts: Vec<SubscriberUpsert>,
    ) -> Result<Vec<(Subscriber, bool)>>;
    async fn get_subscriber(&self, subscriber_id: &str) -> Result<Option<Subscriber>>;
    /// Subscribers in creation order.
    async fn list_subscribers(&self, page: usize, limit: usize) -> Result<Vec<Subscriber>>;
    /// Removes the subscriber id and profile from the contact (its dialogs stay), its topic
    /// memberships and its feed. `false` if unknown.
    async fn delete_subscriber(&self, subscriber_id: &str) -> Result<bool>;

    async fn create_topic(&self, key: &str, name: &str, now: Timestamp) -> Result<TopicCreate>;
    /// A topic with the subscriber ids of its members.
    async fn get_topic(&self, key: &str) -> Result<Option<(Topic, Vec<String>)>>;
    /// Topics by key, with the total count.
    async fn list_topics(
        &self,
        page: usize,
        page_size: usize,
        key: Option<&str>,
    ) -> Result<(Vec<Topic>, u64)>;
    /// Adds known subscribers; `None` if the topic is unknown, else (added or already members,
    /// unknown subscriber ids).
    async fn add_topic_subscribers(
        &self,
        key: &str,
        subscriber_ids: &[String],
    ) -> Result<Option<(Vec<String>, Vec<String>)>>;
    /// `false` if the topic is unknown.
    async fn remove_topic_subscribers(&self, key: &str, subscriber_ids: &[String]) -> Result<bool>;
    async fn delete_topic(&self, key: &str) -> Result<TopicDelete>;

    /// A page of a subscriber's in-app feed, newest first; `None` for an unknown subscriber.
    async fn feed(&self, subscriber_id: &str, query: &FeedQuery) -> Result<Option<FeedPage>>;
    /// Marks entries of the subscriber's feed; returns them as they are now (unknown ids are
    /// left out). `None` for an unknown subscriber.
    async fn mark_feed(
        &self,
        subscriber_id: &str,
        ids: &[i64],
        mark: FeedMark,
        now: Timestamp,
    ) -> Result<Option<Vec<FeedEntry>>>;
    /// Marks every entry of the feed; the number changed. `None` for an unknown subscriber.
    async fn mark_all_feed(
        &self,
        subscriber_id: &str,
        mark: FeedMark,
        now: Timestamp,
    ) -> Result<Option<u64>>;

    /// The activity record of a trigger, with every run.
    async fn get_notification(&self, transaction_id: &str) -> Result<Option<NotificationRecord>>;
    /// Triggers, newest first, without their runs.
    async fn list_notifications(
        &self,
        page: usize,
        limit: usize,
    ) -> Result<Vec<NotificationRecord>>;
    /// Runs left `running` by a process that stopped go back to `pending`; the count.
    async fn reset_running_runs(&self) -> Result<u64>;
    async fn next_run_due(&self) -> Result<Option<Timestamp>>;

    /// Claims outbox deliveries due at `now` (at most `limit`): each attempt is counted and
    /// the row is not due again before `lease_until` (so a crash mid-send retries it then).
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>>;
    async fn finish_delivery(&self, id: i64, result: AttemptResult, now: Timestamp) -> Result<()>;
    /// Deliveries, newest first, optionally of one status.
    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<Delivery>>;
    /// A dead letter goes back to pending, due now.
    async fn retry_delivery(&self, id: i64, now: Timestamp) -> Result<DeliveryRetry>;
    async fn next_delivery_due(&self) -> Result<Option<Timestamp>>;

    /// Deletes idempotency keys older than `before`.
    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64>;

    /// Deletes notification state past its use (see [`NotifyPurge`]), at most `limit` rows of
    /// each kind, in one transaction; call again while [`NotifyPurged::more_left`].
    async fn purge_notify(&self, purge: NotifyPurge) -> Result<NotifyPurged>;

    async fn stats(&self) -> Result<Stats>;

    // Integrations (SPEC §7); see [`ingest`]. Requests are recorded through
    // [`AcceptItem::Ingest`].

    /// Requests to `integration`, newest first, without their bodies.
    async fn list_ingest_requests(
        &self,
        integration: &str,
        filter: &IngestFilter,
    ) -> Result<Vec<IngestRecord>>;

    /// One request of `integration`, with its body.
    async fn get_ingest_request(&self, integration: &str, id: i64) -> Result<Option<IngestRecord>>;

    /// Deletes requests received before `before` and delivery ids expired at `now`, at most
    /// `limit` of each; how many were deleted (call again while it returns `limit` or more).
    async fn purge_ingest(&self, before: Timestamp, now: Timestamp, limit: usize) -> Result<u64>;
}
