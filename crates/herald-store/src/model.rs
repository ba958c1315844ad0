//! Records that cross the storage boundary. Backends map them to rows; the engine never sees SQL.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A dialog is one conversation of a bot on one channel with one chat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DialogKey {
    pub channel_type: String,
    pub bot_id: String,
    pub chat_id: String,
}

/// The channel type of the keys bot-level job runs are logged and handled under (see
/// [`DialogKey::bot_level`]). No bot can have a channel of this name, so no dialog has it.
pub const BOT_LEVEL: &str = "bot";

impl DialogKey {
    pub fn new(channel_type: &str, bot_id: &str, chat_id: &str) -> Self {
        Self {
            channel_type: channel_type.to_owned(),
            bot_id: bot_id.to_owned(),
            chat_id: chat_id.to_owned(),
        }
    }

    /// The key the runs of a bot-level job (a trigger scheduled without a lead) go under:
    /// `("bot", botId, "job:<id>")`. It is not a dialog — it has no contact, state, session or
    /// messages — but it orders the job's runs like a dialog orders its events: one at a time,
    /// on one worker, in log order. A backend stores no dialog for it; such a run counts as
    /// handled once its run record is finished.
    pub fn bot_level(bot_id: &str, job_id: i64) -> Self {
        Self::new(BOT_LEVEL, bot_id, &format!("job:{job_id}"))
    }

    /// Whether this is a [`DialogKey::bot_level`] key rather than a dialog's.
    pub fn is_bot_level(&self) -> bool {
        self.channel_type == BOT_LEVEL
    }
}

/// What happened in a dialog: a user's text, a pressed button, or a named event with data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum EventPayload {
    Text {
        text: String,
    },
    Button {
        id: String,
        text: String,
    },
    Event {
        name: String,
        data: Value,
    },
    /// A scheduled job's run, claimed by the scheduler.
    Job {
        job: Box<crate::JobEvent>,
    },
}

/// An event on its way into the accept log.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Sortable (UUID v7), returned to the caller as `eventId`.
    pub id: String,
    pub dialog: DialogKey,
    pub payload: EventPayload,
    /// Who raised it, for the event history: `pushback:<id>`, `chatwidget`, `api`, `system`.
    pub source: String,
    pub accepted_at: Timestamp,
}

/// An event in the accept log. `seq` orders events globally; per dialog it is the handling order.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: NewEvent,
}

/// An `Idempotency-Key` scoped to what it protects (e.g. `push:<pushback id>`).
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
}

/// One write into the accept log, decided inside the batch transaction.
#[derive(Debug, Clone)]
pub enum AcceptItem {
    /// An event whose dialog is already known (chat message, API message).
    Event(NewEvent),
    /// A pushback activation: the backend checks the link (exists, not expired, not used up),
    /// counts the use, and logs the event, all in the batch transaction.
    Pushback {
        pushback_id: String,
        /// The request's data; `None` means "use the pushback's stored eventData".
        data: Option<Value>,
        event_id: String,
        source: String,
        now: Timestamp,
        idempotency: Option<IdempotencyKey>,
    },
    /// Stores a new job.
    Schedule(Box<crate::NewJob>),
    /// Cancels a job of `bot_id` unless it is finished; its runs not yet started are cancelled.
    CancelJob {
        bot_id: String,
        job_id: i64,
        now: Timestamp,
    },
    /// The chat client of `dialog` received its messages up to id `up_to`: a reconnect replays
    /// only later ones (an ack never moves backwards). Acks ride a batch's transaction like
    /// everything else rather than paying a commit each.
    Ack { dialog: DialogKey, up_to: i64 },
    /// Stores a notification trigger and its runs (see [`crate::notify`]).
    Trigger(Box<crate::NewTrigger>),
    /// Cancels what is pending of a trigger: runs not finished (waiting on a delay or digest,
    /// due, or claimed and not yet applied). A cancelled run that leads a digest hands the
    /// digest to its earliest live member.
    CancelTrigger {
        transaction_id: String,
        now: Timestamp,
    },
    /// Claims notification runs due at `now` (at most `limit`): `pending` → `running`.
    ClaimRuns { now: Timestamp, limit: usize },
    /// Applies a claimed run's progress if it is still `running`.
    RunProgress(Box<crate::RunProgress>),
    /// Records an integration request and raises what it raised (see [`crate::ingest`]).
    Ingest(Box<crate::NewIngest>),
}

#[derive(Debug, Clone)]
pub enum AcceptOutcome {
    Accepted(StoredEvent),
    /// The idempotency key was seen: the first answer's event id, nothing new was logged.
    Repeated {
        event_id: String,
    },
    NotFound,
    /// Expired or used up.
    Gone,
    /// The job as stored (after a schedule, or after a cancel: its status tells whether the cancel
    /// took effect).
    Job(Box<crate::JobRecord>),
    Trigger(crate::TriggerOutcome),
    /// A trigger cancel: whether anything pending was cancelled.
    TriggerCancelled(bool),
    /// Claimed runs and the earliest due time of a run left pending.
    Runs {
        runs: Vec<crate::ClaimedRun>,
        next_due: Option<Timestamp>,
    },
    Progress(Box<crate::ProgressApplied>),
    /// An [`AcceptItem::Ack`] was recorded.
    Acked,
    Ingest(Box<crate::IngestOutcome>),
}

/// The result of handling one event: everything is applied in one transaction with the
/// "handled" mark, so a crash either keeps all of it or replays the event.
#[derive(Debug, Clone)]
pub struct HandledEvent {
    pub seq: i64,
    pub dialog: DialogKey,
    /// The dialog's current state path after the event (`None`: no current state).
    pub state: Option<String>,
    pub session: Value,
    /// The contact's `$client` data, when the turn changed it.
    pub client: Option<Value>,
    /// The user's own message, recorded in the dialog history.
    pub incoming: Option<NewMessage>,
    pub replies: Vec<NewMessage>,
    /// Follow-up events (e.g. `scriptError`) logged in the same transaction.
    pub raise: Vec<NewEvent>,
    /// The contact's tags, when the turn changed them.
    pub tags: Option<Vec<String>>,
    /// Jobs the turn's scripts scheduled (`$jobs.schedule`).
    pub schedule: Vec<crate::NewJob>,
    /// Jobs the turn's scripts cancelled (`$jobs.cancel`): `(bot id, job id)`.
    pub cancel: Vec<(String, i64)>,
    /// When the event was a job's run: its outcome.
    pub run: Option<crate::RunResult>,
    /// Pushbacks to delete: those a failed turn created (they were stored at once, so that a
    /// link works as soon as a script hands it out).
    pub revoke_pushbacks: Vec<String>,
    /// The id the dialog's contact gets if the dialog is new (the engine hands out contact ids,
    /// so a script sees `$contact.id` in the dialog's first turn). `None`: storage picks one.
    pub contact_id: Option<i64>,
}

impl HandledEvent {
    /// A result that changes nothing but the dialog's handled mark.
    pub fn unchanged(seq: i64, dialog: DialogKey, state: Option<String>, session: Value) -> Self {
        Self {
            seq,
            dialog,
            state,
            session,
            client: None,
            incoming: None,
            replies: Vec::new(),
            raise: Vec::new(),
            tags: None,
            schedule: Vec::new(),
            cancel: Vec::new(),
            run: None,
            revoke_pushbacks: Vec::new(),
            contact_id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ButtonOut {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub text: String,
    pub buttons: Vec<ButtonOut>,
    pub ts: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub id: i64,
    pub direction: Direction,
    pub text: String,
    pub buttons: Vec<ButtonOut>,
    pub ts: Timestamp,
}

/// What applying one handled event produced, for delivery after the commit.
#[derive(Debug, Clone)]
pub struct Applied {
    pub dialog: DialogKey,
    pub replies: Vec<StoredMessage>,
    pub raised: Vec<StoredEvent>,
}

/// What one [`crate::Store::commit`] did.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub accepted: Vec<AcceptOutcome>,
    pub applied: Vec<Applied>,
    pub claimed: Option<crate::Claimed>,
}

/// One write transaction of the engine's writer. Handled events are applied first, then new
/// items accepted, then due jobs claimed.
#[derive(Debug, Default)]
pub struct Batch {
    pub accept: Vec<AcceptItem>,
    pub handled: Vec<HandledEvent>,
    /// Every event with a sequence number up to this one is handled, so that
    /// [`crate::Store::unhandled_events`] need not look further back.
    pub handled_through: Option<i64>,
    pub claim: Option<crate::ClaimRequest>,
}

#[derive(Debug, Clone)]
pub struct DialogRecord {
    pub id: i64,
    pub key: DialogKey,
    pub contact_id: i64,
    pub state: Option<String>,
    pub session: Value,
    pub client: Value,
    /// The contact's tags.
    pub tags: Vec<String>,
    /// The contact's profile (`email`, `firstName`, …), read-only for scripts.
    pub attributes: Value,
    /// The last outgoing message id the client acknowledged.
    pub acked_upto: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pushback {
    pub id: String,
    pub dialog: DialogKey,
    pub event: String,
    pub event_data: Value,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub last_used_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct Contact {
    pub id: i64,
    pub subscriber_id: Option<String>,
    pub data: Value,
    pub attributes: Value,
    pub tags: Vec<String>,
    pub created_at: Timestamp,
    pub dialogs: Vec<DialogKey>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// The highest sequence number logged (events accepted since the database was created).
    pub accepted: i64,
    pub dialogs: i64,
    pub messages: i64,
    /// The highest job id stored.
    pub jobs: i64,
    /// The highest contact id stored.
    pub contacts: i64,
    /// The highest notification (trigger) id stored.
    pub notifications: i64,
    /// The highest notification run id stored (one run per trigger and subscriber).
    pub runs: i64,
    /// Runs waiting for their next step (a delay, a digest window, or not yet claimed).
    pub runs_pending: i64,
    /// The highest in-app feed entry id stored.
    pub feed_entries: i64,
}
