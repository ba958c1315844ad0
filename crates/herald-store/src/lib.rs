//! Storage for Herald behind one trait, [`Store`], so that the engine runs unchanged on the
//! embedded SQLite backend and on PostgreSQL. Writes come in batches (the engine group-commits:
//! many requests, one transaction, one fsync), and a method returns only after its transaction
//! is committed. [`conformance`] holds the behaviour every backend must show.

pub mod conformance;
mod model;

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

    /// One transaction (one commit, one fsync) that applies handled events — their state,
    /// replies, follow-up events and handled marks — and logs newly accepted events. Handled
    /// events are applied first. One result per item, in order.
    /// `handled_through`, when given, records that every event with a sequence number up to it
    /// is handled, so that [`Store::unhandled_events`] need not look further back.
    async fn commit(
        &self,
        accept: Vec<AcceptItem>,
        handled: Vec<HandledEvent>,
        handled_through: Option<i64>,
    ) -> Result<Committed>;

    /// Logs a batch of events in one transaction; one outcome per item, in order.
    async fn accept(&self, items: Vec<AcceptItem>) -> Result<Vec<AcceptOutcome>> {
        Ok(self.commit(items, Vec::new(), None).await?.accepted)
    }

    /// Applies handled events in one transaction; one result per item, in order.
    async fn apply(&self, handled: Vec<HandledEvent>) -> Result<Vec<Applied>> {
        Ok(self.commit(Vec::new(), handled, None).await?.applied)
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

    /// Deletes idempotency keys older than `before`.
    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64>;

    async fn stats(&self) -> Result<Stats>;
}
