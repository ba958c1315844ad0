//! Integrations: `integrations/<name>.yaml` (SPEC §7), compiled into an [`IntegrationDef`].
//!
//! An integration declares one external platform that POSTs webhooks to
//! `/integrations/<name>/webhook`: how a request proves where it comes from ([`Verify`], a
//! platform preset or a generic recipe), which delivery id makes a retry recognisable
//! ([`DeliveryId`]), and which typed events a request raises ([`EventDef`]: a condition, a
//! payload mapped from the request, a JSON Schema, and a route to a bot's dialog and to the
//! workflows bound to the event). Everything here is a definition; verifying and mapping a
//! request is `herald-ingest`'s, storing it the store's.

mod parse;
pub mod pointer;
mod presets;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::bot::model::{Code, Origin};

pub use parse::{parse_integration, parse_integration_checked};
pub use pointer::Pointer;
pub use presets::{Encoding, HmacAlgorithm, Scheme};

/// One compiled `integrations/<name>.yaml`.
#[derive(Debug, Clone)]
pub struct IntegrationDef {
    /// The file name without `.yaml` (and `name:` if given, which must match it): the
    /// `{name}` of the webhook URL and the prefix of its event names.
    pub name: String,
    pub file: PathBuf,
    /// Every active secret (`secret:` may be a list, for rotation); empty for `none`.
    pub secrets: Vec<Secret>,
    pub verify: Verify,
    /// `config:`: values templates read as `config.<key>`.
    pub config: Value,
    pub dedupe: Dedupe,
    pub limits: IngestLimits,
    /// In file order; a request raises the first event whose `when` matches, unless a
    /// `handler` decides instead.
    pub events: Vec<EventDef>,
    /// `handler:`: JavaScript that receives `{req, config}` and returns the events to raise.
    pub handler: Option<Code>,
}

impl IntegrationDef {
    /// The event `name` (without the `<integration>:` prefix).
    pub fn event(&self, name: &str) -> Option<&EventDef> {
        self.events.iter().find(|e| e.name == name)
    }
}

/// A secret; its value never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

/// How a request proves where it comes from.
#[derive(Debug, Clone)]
pub struct Verify {
    pub scheme: Scheme,
    /// The header carrying the signature or token (a preset's own when absent).
    pub header: Option<String>,
    /// How the signature is written (generic `hmac`; presets know theirs).
    pub encoding: Encoding,
    pub algorithm: HmacAlgorithm,
    /// Text before the signature in its header (`sha256=`).
    pub prefix: String,
    /// What is signed, for generic `hmac`: a template over `{id}`, `{timestamp}`, `{url}` and
    /// `{body}`; the body alone when absent.
    pub content: Option<String>,
    /// Where the timestamp is, for generic `hmac` with a timestamp.
    pub timestamp_header: Option<String>,
    /// Where the delivery id is, for generic `hmac` content with `{id}`.
    pub id_header: Option<String>,
    /// How far a timestamp may be from now, either way.
    pub tolerance: Duration,
    /// `basic`: the user name.
    pub username: Option<String>,
    /// `meta`: the token of the subscription handshake (`hub.verify_token`).
    pub verify_token: Option<Secret>,
}

/// Where a platform puts the id that stays the same across retries of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryId {
    Header(String),
    /// The first of these headers the request has (Standard Webhooks' `webhook-id`, or Svix's
    /// `svix-id` from senders that use Svix's own header names).
    FirstHeader(Vec<String>),
    Pointer(Pointer),
}

#[derive(Debug, Clone)]
pub struct Dedupe {
    /// `None`: deliveries are not deduplicated.
    pub id: Option<DeliveryId>,
    /// How long a delivery id is remembered.
    pub window: Duration,
}

/// Per-integration bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Requests per second (0: no limit) and the burst allowed.
    pub rate: u32,
    pub burst: u32,
    /// Largest body in bytes (`None`: the server's `body_limit`).
    pub body_bytes: Option<usize>,
}

/// One typed event of an integration.
#[derive(Debug, Clone)]
pub struct EventDef {
    /// As written under `events:`; raised as `<integration>:<name>`.
    pub name: String,
    /// Every condition must hold.
    pub when: Vec<Condition>,
    pub payload: Mapping,
    pub schema: Option<Arc<jsonschema::Validator>>,
    pub route: Route,
    pub origin: Origin,
}

/// What part of the request a condition or template looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A header (name in lower case) equal to one of the values.
    Header(String, Vec<String>),
    /// A query parameter equal to one of the values.
    Query(String, Vec<String>),
    /// The body's value at a pointer equal to one of the values (`null`: absent or null).
    Body(Pointer, Vec<Value>),
}

/// How an event's payload is built from the request.
#[derive(Debug, Clone)]
pub enum Mapping {
    /// The body's value at a pointer (`null` when absent).
    Pointer(Pointer),
    /// Text with `{{ root.path }}` holes.
    Template(Vec<TemplatePart>),
    /// A value as written.
    Literal(Value),
    /// An object of mappings, in order.
    Object(Vec<(String, Mapping)>),
    /// A list of mappings.
    Array(Vec<Mapping>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    Text(String),
    /// `{{ body.customer.id }}`: a root and a path of keys and indexes.
    Path(Root, Vec<String>),
}

/// What a template reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Body,
    Headers,
    Query,
    Config,
}

/// Who receives an event.
#[derive(Debug, Clone)]
pub struct Route {
    /// The bot whose dialog with the contact gets the event; `None`: only the workflows bound
    /// to the event run.
    pub bot: Option<String>,
    pub who: Who,
    /// Where `route:` is written, for the project's checks.
    pub origin: Origin,
}

/// How the request names the person.
#[derive(Debug, Clone)]
pub enum Who {
    /// `contact: <pointer>`: the platform's customer id; the contact is the subscriber
    /// `<integration>:<id>`.
    Contact(Pointer),
    /// `subscriber: <mapping>`: a subscriber id as it is (an e-mail, the id a shop also uses
    /// with the notification API).
    Subscriber(Mapping),
}

/// The defaults a platform preset brings.
impl Scheme {
    /// The header the delivery id is in, or the body pointer, by default.
    pub fn default_delivery_id(self) -> Option<DeliveryId> {
        presets::default_delivery_id(self)
    }
}
