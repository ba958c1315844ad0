//! Notifications (SPEC §5) as they cross the storage boundary: subscribers and topics, triggers
//! with their per-subscriber runs, the in-app feed, and the outbox of email and webhook
//! deliveries.
//!
//! A trigger is stored in one transaction: its notification record (unique by transaction id,
//! which is how a repeated trigger is recognised) and one *run* per recipient. A run walks the
//! workflow's steps. The executor *claims* due runs (status `pending` → `running`), renders their
//! steps, and commits a [`RunProgress`]: the feed entries, chat messages and outbox deliveries of
//! the steps it ran, the activity records, and where the run goes next (done, a delay, a digest,
//! a throttle). Progress is applied only while the run is still `running`, so a cancel that
//! lands first wins and nothing of the cancelled run is delivered. Runs found `running` at start
//! were claimed by a process that died: they go back to `pending` and run their steps again
//! (nothing of those steps was committed).
//!
//! Digest and throttle decisions are made inside the writing transaction, where every other
//! run of the same key is visible.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{DialogKey, StoredEvent, StoredMessage};

/// The profile fields Novu keeps on a subscriber, stored in the contact's `attributes`.
pub const PROFILE_FIELDS: &[&str] = &[
    "email",
    "firstName",
    "lastName",
    "phone",
    "locale",
    "avatar",
    "data",
];

/// A subscriber: a contact with an external `subscriber_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscriber {
    /// The contact id (`lead_id` in the Bot API).
    pub id: i64,
    pub subscriber_id: String,
    /// `email`, `firstName`, `lastName`, `phone`, `locale`, `avatar`, `data` when set.
    pub profile: serde_json::Map<String, Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Creates a subscriber or updates an existing one.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberUpsert {
    pub subscriber_id: String,
    /// Profile fields to set (only keys of [`PROFILE_FIELDS`]); a `null` value removes a field.
    /// Keys not present are left as they are.
    pub profile: serde_json::Map<String, Value>,
    /// The contact id a new subscriber gets (the engine hands out contact ids).
    pub new_id: i64,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpsertMode {
    /// Create, or update if it exists (Novu `identify`).
    CreateOrUpdate,
    /// Update only; `None` from the store when the subscriber does not exist.
    UpdateOnly,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicCreate {
    Created(i64),
    /// A topic with this key exists already (its id).
    Exists(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicDelete {
    Deleted,
    NotFound,
    /// Novu refuses to delete a topic that still has subscribers.
    HasSubscribers,
}

/// Who a trigger goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipient {
    /// A subscriber by id; with a profile it is created or updated on the fly (its `new_id` is
    /// used if it is created). Without a profile, an unknown id is created with an empty one.
    Subscriber(SubscriberUpsert),
    /// Every member of a topic; an unknown key refuses the whole trigger.
    Topic(String),
}

/// A trigger on its way into storage (SPEC §5).
#[derive(Debug, Clone)]
pub struct NewTrigger {
    pub transaction_id: String,
    pub workflow: String,
    pub payload: Value,
    pub overrides: Value,
    /// The actor as sent (a subscriber id, or a subscriber object) — skipped as a recipient.
    pub actor: Option<SubscriberUpsert>,
    pub tenant: Option<Value>,
    /// `None`: every subscriber (a broadcast).
    pub to: Option<Vec<Recipient>>,
    /// `Idempotency-Key` header: a repeat answers with the first trigger's result.
    pub idempotency: Option<crate::IdempotencyKey>,
    pub now: Timestamp,
}

/// What storing a trigger did.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerOutcome {
    /// Stored with this many runs (recipients after expansion, de-duplication and without the
    /// actor), all due now.
    Stored {
        notification_id: i64,
        transaction_id: String,
        runs: u64,
    },
    /// The transaction id (or the idempotency key) was seen: nothing was stored; this is the
    /// first trigger's record.
    Repeated { transaction_id: String, runs: u64 },
    /// A topic in `to` does not exist: nothing was stored.
    TopicNotFound(String),
}

/// A claimed run, with what its steps need to render.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    pub run_id: i64,
    /// The index of the next step to run.
    pub step: usize,
    pub notification_id: i64,
    pub transaction_id: String,
    pub workflow: String,
    pub payload: Value,
    pub overrides: Value,
    /// The actor's profile (`subscriberId` and profile fields), if the trigger had one.
    pub actor: Option<Value>,
    pub tenant: Option<Value>,
    pub subscriber: Subscriber,
    /// When the run resumes after a digest it led: the payloads of every event of the digest
    /// (its own first), oldest first. `None` otherwise.
    pub digest_events: Option<Vec<Value>>,
    /// When the run was created (its trigger's time; for a digest leader, when its digest
    /// began).
    pub created_at: Timestamp,
}

/// The activity record of one step of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `done`, `skipped`, `failed`, `pending` (waiting: a delay, a digest) or `queued` (handed
    /// to the outbox).
    pub status: String,
    /// Why it was skipped or failed, or what it waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewFeedEntry {
    pub step: String,
    pub subject: Option<String>,
    pub body: String,
    /// `{url, label?}` when the step has a call to action.
    pub cta: Option<Value>,
}

/// A `chat` step's delivery: a message (or a bot event with the payload) into the subscriber's
/// most recent dialog with `bot_id`; without one, a new `chatwidget` dialog whose chat id is
/// the subscriber id, owned by the subscriber's contact.
#[derive(Debug, Clone)]
pub struct ChatDelivery {
    pub bot_id: String,
    pub text: Option<String>,
    /// `(event name, data)` instead of a text.
    pub event: Option<(String, Value)>,
    /// The new event's id, when an event is raised.
    pub event_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    Email,
    Webhook,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Email => "email",
            DeliveryKind::Webhook => "webhook",
        }
    }
}

/// An outbox row: something to send outside, at least once, with retries.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub kind: DeliveryKind,
    pub step: String,
    /// What to send, for the channel: email `{to, subject, body}`, webhook `{url, secret?,
    /// body, contentType}`.
    pub request: Value,
}

/// Where a run goes after the steps it ran.
#[derive(Debug, Clone, PartialEq)]
pub enum RunNext {
    /// Every step ran.
    Done,
    /// A step failed in a way that stops the run (e.g. a `delayPath` date in the past).
    Failed,
    /// A delay: resume at `step` when `until` comes.
    Wait { step: usize, until: Timestamp },
    /// The run reached a digest step (`step`) and the store decides: join the open digest of
    /// `key` (the run ends, merged), or open one that closes at `closes_at` (the run resumes
    /// then, leading it), or — with `look_back_since` and no event of `key` since then — go
    /// on at once.
    Digest {
        step: usize,
        /// The step's id, for the activity record the store writes with its decision.
        step_id: String,
        key: String,
        closes_at: Timestamp,
        look_back_since: Option<Timestamp>,
    },
    /// The run reached a throttle step: it goes on (resuming at `step + 1`) if fewer than
    /// `threshold` runs of `key` passed since `window_start`, and ends as throttled otherwise.
    Throttle {
        step: usize,
        step_id: String,
        key: String,
        window_start: Timestamp,
        threshold: u32,
    },
}

/// The result of running a claimed run's steps, applied in one transaction if the run is still
/// `running`.
#[derive(Debug, Clone)]
pub struct RunProgress {
    pub run_id: i64,
    pub now: Timestamp,
    pub records: Vec<StepRecord>,
    pub feed: Vec<NewFeedEntry>,
    pub chats: Vec<ChatDelivery>,
    pub deliveries: Vec<NewDelivery>,
    pub next: RunNext,
}

/// What applying a [`RunProgress`] did.
#[derive(Debug, Clone, Default)]
pub struct ProgressApplied {
    /// `false` when the run was no longer `running` (cancelled): nothing was applied.
    pub applied: bool,
    /// Chat messages stored, per dialog, to publish to live sockets.
    pub messages: Vec<(DialogKey, Vec<StoredMessage>)>,
    /// Bot events logged by chat steps, to dispatch.
    pub events: Vec<StoredEvent>,
    /// The run is pending again, due at this time (a delay, a digest it leads, a throttle or
    /// digest that let it go on).
    pub due: Option<Timestamp>,
    /// Outbox rows were added.
    pub deliveries: usize,
}

/// Run states, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Pending,
    Running,
    /// Merged into a digest led by another run, waiting for it.
    Digested,
    Done,
    Failed,
    Cancelled,
    /// Stopped by a throttle step.
    Throttled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Digested => "digested",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Throttled => "throttled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => RunStatus::Pending,
            "running" => RunStatus::Running,
            "digested" => RunStatus::Digested,
            "done" => RunStatus::Done,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            "throttled" => RunStatus::Throttled,
            _ => return None,
        })
    }
}

/// The activity record of one trigger.
#[derive(Debug, Clone)]
pub struct NotificationRecord {
    pub id: i64,
    pub transaction_id: String,
    pub workflow: String,
    pub payload: Value,
    pub actor: Option<Value>,
    pub created_at: Timestamp,
    pub runs: Vec<RunRecord>,
}

#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: i64,
    pub subscriber_id: Option<String>,
    pub contact_id: i64,
    pub status: RunStatus,
    /// The next step to run.
    pub step: usize,
    pub next_at: Option<Timestamp>,
    /// The run whose digest this one joined.
    pub digest_of: Option<i64>,
    pub records: Vec<StepRecord>,
    pub updated_at: Timestamp,
}

/// One in-app feed entry (a Novu in-app message).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEntry {
    pub id: i64,
    pub contact_id: i64,
    pub subscriber_id: String,
    pub transaction_id: String,
    pub workflow: String,
    pub step: String,
    pub subject: Option<String>,
    pub body: String,
    pub cta: Option<Value>,
    pub payload: Value,
    pub seen: bool,
    pub read: bool,
    pub seen_at: Option<Timestamp>,
    pub read_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct FeedQuery {
    pub page: usize,
    pub limit: usize,
    pub seen: Option<bool>,
    pub read: Option<bool>,
    /// Only entries whose trigger payload contains this JSON object: every key, recursively,
    /// with an equal value (numbers compare by value; arrays as a whole).
    pub payload: Option<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct FeedPage {
    pub entries: Vec<FeedEntry>,
    /// Entries matching the query (all pages).
    pub total: u64,
    pub unseen: u64,
    pub unread: u64,
}

/// What to set on feed entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedMark {
    pub seen: Option<bool>,
    pub read: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Gave up after the last attempt: a dead letter, which can be retried by hand.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryStatus::Pending,
            "delivered" => DeliveryStatus::Delivered,
            "dead" => DeliveryStatus::Dead,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub kind: DeliveryKind,
    pub run_id: Option<i64>,
    pub step: String,
    pub request: Value,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone)]
pub enum AttemptResult {
    Delivered,
    /// Try again at this time.
    Retry {
        at: Timestamp,
        error: String,
    },
    /// No more attempts.
    Dead {
        error: String,
    },
}

/// What [`Store::purge_notify`](crate::Store::purge_notify) may delete: notification state that
/// no longer decides anything, older than each cutoff. Live runs (pending, running, digested),
/// open digests, pending deliveries and the notifications they belong to are never deleted.
#[derive(Debug, Clone)]
pub struct NotifyPurge {
    /// Throttle hits before this no longer count in any throttle window of the project.
    pub throttle_before: Timestamp,
    /// Digest arrivals before this are outside every look-back window of the project.
    pub digest_seen_before: Timestamp,
    /// Finished runs and delivered or dead deliveries last changed before this; a
    /// notification goes with the last of its runs and feed entries.
    pub finished_before: Timestamp,
    /// In-app feed entries created before this.
    pub feed_before: Timestamp,
    /// Most rows of each kind deleted by one call (one short transaction).
    pub limit: usize,
}

/// Rows one purge call deleted, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyPurged {
    pub throttle_hits: usize,
    pub digest_seen: usize,
    pub feed: usize,
    pub deliveries: usize,
    pub notifications: usize,
    pub runs: usize,
}

impl NotifyPurged {
    /// Whether some kind reached the call's limit, so that more may be left.
    pub fn more_left(&self, limit: usize) -> bool {
        [
            self.throttle_hits,
            self.digest_seen,
            self.feed,
            self.deliveries,
            self.runs,
        ]
        .iter()
        .any(|n| *n >= limit)
    }

    pub fn add(&mut self, o: NotifyPurged) {
        self.throttle_hits += o.throttle_hits;
        self.digest_seen += o.digest_seen;
        self.feed += o.feed;
        self.deliveries += o.deliveries;
        self.notifications += o.notifications;
        self.runs += o.runs;
    }
}

/// What [`Store::retry_delivery`](crate::Store::retry_delivery) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryRetry {
    /// The dead letter is pending again.
    Retried,
    /// The delivery exists but is not a dead letter: nothing changed.
    NotDead,
    /// No delivery has that id.
    Unknown,
}
