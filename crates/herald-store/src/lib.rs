//! Storage for Herald behind one trait, [`Store`], so that the engine runs unchanged on the
//! embedded SQLite backend and on PostgreSQL. Writes come in batches (the engine group-commits:
//! many requests, one transaction, one fsync), and a method returns only after its transaction
//! is committed. [`conformance`] holds the behaviour every backend must show.

pub mod conformance;
mod jobs;
mod model;

pub use jobs::*;
pub use model::*;

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

    /// Moves the acknowledgement cursor forward (never back).
    async fn ack_messages(&self, key: &DialogKey, up_to: i64) -> Result<()>;

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

    /// Deletes idempotency keys older than `before`.
    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64>;

    async fn stats(&self) -> Result<Stats>;
}
