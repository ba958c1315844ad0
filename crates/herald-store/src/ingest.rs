//! Integration requests (SPEC §7) as they cross the storage boundary.
//!
//! Every request to `/integrations/{name}/webhook` is recorded with its outcome, in one
//! transaction with what it raised: the typed events in their contacts' dialogs and the
//! notification triggers of the workflows bound to them. A delivery id is remembered for the
//! integration's dedupe window, so a retried delivery is recorded as a `duplicate` of the first
//! and raises nothing. The engine decides everything that needs the definitions (verification,
//! mapping, schema); the store decides what needs the data (a known delivery id, which dialog a
//! contact has with a bot).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{NewTrigger, StoredEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestStatus {
    /// Verified, mapped and raised.
    Accepted,
    /// A delivery id seen within the window: nothing raised.
    Duplicate,
    /// Verified, but no event matched.
    Ignored,
    /// The mapped payload failed its schema (errors in `detail`), or the request named no
    /// usable contact.
    Invalid,
    /// Verification failed (`reason`: `signature`, `stale`, `missing_header`, …) or the body
    /// could not be read.
    Rejected,
    /// The integration's handler threw or returned something unusable.
    HandlerError,
    /// Every event's dialog belongs to someone else (a chat id taken by another contact).
    Unrouted,
}

impl IngestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IngestStatus::Accepted => "accepted",
            IngestStatus::Duplicate => "duplicate",
            IngestStatus::Ignored => "ignored",
            IngestStatus::Invalid => "invalid",
            IngestStatus::Rejected => "rejected",
            IngestStatus::HandlerError => "handler_error",
            IngestStatus::Unrouted => "unrouted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "accepted" => IngestStatus::Accepted,
            "duplicate" => IngestStatus::Duplicate,
            "ignored" => IngestStatus::Ignored,
            "invalid" => IngestStatus::Invalid,
            "rejected" => IngestStatus::Rejected,
            "handler_error" => IngestStatus::HandlerError,
            "unrouted" => IngestStatus::Unrouted,
            _ => return None,
        })
    }
}

/// A request as the log keeps it (secrets and signatures already redacted from `headers`).
#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub integration: String,
    pub method: String,
    /// The path and query string.
    pub path: String,
    /// Header names in lower case → value.
    pub headers: Value,
    pub body: Vec<u8>,
    pub received_at: Timestamp,
    pub delivery_id: Option<String>,
}

/// Where an event goes: a bot's dialog with the contact, and the workflows bound to it.
#[derive(Debug, Clone)]
pub struct IngestEvent {
    /// Returned to the caller as `eventId`.
    pub event_id: String,
    /// `<integration>:<event>`.
    pub name: String,
    pub payload: Value,
    /// The contact's subscriber id; the contact is created when there is none.
    pub subscriber_id: String,
    /// The id the contact gets if it is created (ids are handed out by the engine).
    pub new_contact_id: i64,
    /// The bot, and the channel of the dialog created when the contact has none with it.
    pub bot: Option<(String, String)>,
    /// Triggers of the workflows bound to the event, with the contact as their recipient.
    pub triggers: Vec<NewTrigger>,
}

/// One request to record.
#[derive(Debug, Clone)]
pub struct NewIngest {
    pub request: IngestRequest,
    /// What the engine decided; `Accepted` may still become `Duplicate` or `Unrouted`.
    pub status: IngestStatus,
    pub reason: Option<String>,
    /// Schema errors, messages: anything that explains the status.
    pub detail: Value,
    pub events: Vec<IngestEvent>,
    /// Until when the delivery id is remembered (an accepted request with a delivery id).
    pub dedupe_until: Option<Timestamp>,
    /// The request this one replays.
    pub replay_of: Option<i64>,
}

/// What recording a request did.
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    pub request_id: i64,
    pub status: IngestStatus,
    /// For `duplicate`, the event ids of the first delivery.
    pub event_ids: Vec<String>,
    /// Events logged, to dispatch after the commit.
    pub events: Vec<StoredEvent>,
    /// Whether notification runs were stored (the executor is woken).
    pub triggered: bool,
}

/// A recorded request.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestRecord {
    pub id: i64,
    pub integration: String,
    pub status: IngestStatus,
    pub reason: Option<String>,
    pub detail: Value,
    pub delivery_id: Option<String>,
    pub event_ids: Vec<String>,
    pub method: String,
    pub path: String,
    pub headers: Value,
    /// Only when asked for.
    pub body: Option<Vec<u8>>,
    pub received_at: Timestamp,
    pub replay_of: Option<i64>,
}

/// Which requests to list: newest first.
#[derive(Debug, Clone, Default)]
pub struct IngestFilter {
    pub status: Option<IngestStatus>,
    pub before_id: Option<i64>,
    pub limit: usize,
}
