//! The pipeline of one integration request (SPEC §7): handshakes, verification, the request's
//! content, the event it raises (declared `events:` or the integration's handler), its schema
//! and route, and the record that stores all of it with what it raised — one accept item, so a
//! 2xx means the request and its events are committed. Every request is recorded, whatever
//! its outcome, with the headers that carry secrets or signatures redacted.

use std::collections::BTreeMap;

use herald_core::integration::{EventDef, IntegrationDef};
use herald_ingest::handshake::{self, Answer};
use herald_ingest::map::{self, Content};
use herald_ingest::{Rejection, Request, verify};
use herald_store::{
    AcceptItem, AcceptOutcome, IngestEvent, IngestOutcome, IngestRequest, IngestStatus, NewIngest,
    NewTrigger, Recipient, SubscriberUpsert,
};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::{Engine, EngineError, Shared};

/// A request to `/integrations/{name}/webhook`, as the server read it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub method: String,
    /// The path and the query string, as received.
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub received_at: Timestamp,
    /// Replaying a recorded request: it was verified when it came, and its signature headers
    /// were redacted since, so it is not verified again.
    pub replay_of: Option<i64>,
}

/// What the server answers.
#[derive(Debug)]
pub struct Ingested {
    pub outcome: IngestOutcome,
    /// A handshake's answer, instead of the outcome.
    pub answer: Option<Answer>,
    /// Why the request was rejected or found invalid, for the answer's message.
    pub message: Option<String>,
    /// A rejection's reason (`signature`, `stale`, `missing_header`, `malformed_body`, …).
    pub reason: Option<String>,
    /// Schema errors of an invalid payload.
    pub errors: Vec<String>,
}

/// Headers whose values are never stored: credentials and signatures.
const REDACTED: &[&str] = &[
    "authorization",
    "cookie",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "x-shopify-hmac-sha256",
    "x-slack-signature",
    "x-twilio-signature",
    "linear-signature",
    "x-telegram-bot-api-secret-token",
    "x-signature-ed25519",
    "paddle-signature",
    "x-square-hmacsha256-signature",
    "x-twilio-email-event-webhook-signature",
    "x-zm-signature",
    "webhook-signature",
    "svix-signature",
];

fn redacted(def: &IntegrationDef, headers: &BTreeMap<String, String>) -> Value {
    let own = def.verify.header.as_deref();
    Value::Object(
        headers
            .iter()
            .map(|(k, v)| {
                let hide = REDACTED.contains(&k.as_str()) || Some(k.as_str()) == own;
                let v = if hide {
                    "[redacted]".to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), Value::String(v))
            })
            .collect(),
    )
}

/// The record of a request that raises nothing.
struct Verdict {
    status: IngestStatus,
    reason: Option<String>,
    message: Option<String>,
    detail: Value,
    errors: Vec<String>,
}

impl Verdict {
    fn rejected(r: Rejection) -> Self {
        Self {
            status: IngestStatus::Rejected,
            reason: Some(r.reason.to_owned()),
            detail: json!({"message": r.message}),
            message: Some(r.message),
            errors: Vec::new(),
        }
    }

    fn with(status: IngestStatus, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status,
            reason: None,
            detail: json!({"message": message}),
            message: Some(message),
            errors: Vec::new(),
        }
    }
}

impl Engine {
    /// Runs `inc` through `def` and records it. Storage failures are the only errors.
    pub async fn ingest(
        &self,
        def: &IntegrationDef,
        inc: Incoming,
    ) -> Result<Ingested, EngineError> {
        let shared = self.shared();
        let url = format!(
            "{}{}",
            shared.config.public_url.trim_end_matches('/'),
            inc.path
        );
        let req = Request {
            method: &inc.method,
            url: &url,
            headers: &inc.headers,
            query: &inc.query,
            body: &inc.body,
            now: inc.received_at,
        };
        let decided = decide(shared, def, &req, inc.replay_of.is_some());
        let headers = redacted(def, &inc.headers);
        let Incoming {
            method,
            path,
            body,
            received_at,
            replay_of,
            ..
        } = inc;
        let (mut verdict, events, answer, delivery_id) = match decided {
            Decided::Nothing(v, answer) => (v, Vec::new(), answer, None),
            Decided::Events(events, delivery_id) => (
                Verdict {
                    status: IngestStatus::Accepted,
                    reason: None,
                    message: None,
                    detail: Value::Null,
                    errors: Vec::new(),
                },
                events,
                None,
                delivery_id,
            ),
        };
        let until = jiff::SignedDuration::try_from(def.dedupe.window)
            .ok()
            .and_then(|w| received_at.checked_add(w).ok());
        let record = NewIngest {
            request: IngestRequest {
                integration: def.name.clone(),
                method,
                path,
                headers,
                body,
                received_at,
                delivery_id,
            },
            status: verdict.status,
            reason: verdict.reason.clone(),
            detail: std::mem::take(&mut verdict.detail),
            events,
            dedupe_until: until,
            replay_of,
        };
        let mut reason = verdict.reason.take();
        match self.accept(AcceptItem::Ingest(Box::new(record))).await? {
            AcceptOutcome::Ingest(outcome) => {
                metrics::counter!("herald_ingest_requests_total",
                    "integration" => def.name.clone(), "status" => outcome.status.as_str())
                .increment(1);
                Ok(Ingested {
                    outcome: *outcome,
                    answer,
                    message: verdict.message,
                    reason: reason.take(),
                    errors: std::mem::take(&mut verdict.errors),
                })
            }
            other => Err(EngineError::Startup(format!(
                "an integration request was answered with {other:?}"
            ))),
        }
    }
}

enum Decided {
    /// Nothing is raised: a rejection, a handshake, no matching event, an invalid payload.
    Nothing(Verdict, Option<Answer>),
    /// Events to raise, and the delivery id.
    Events(Vec<IngestEvent>, Option<String>),
}

fn decide(shared: &Shared, def: &IntegrationDef, req: &Request<'_>, replay: bool) -> Decided {
    if !replay {
        match handshake::unsigned(def, req) {
            Some(Ok(answer)) => {
                let v = Verdict::with(IngestStatus::Ignored, "a subscription handshake");
                return Decided::Nothing(v, Some(answer));
            }
            Some(Err(r)) => return Decided::Nothing(Verdict::rejected(r), None),
            None => {}
        }
        if let Err(r) = verify::verify(def, req) {
            return Decided::Nothing(Verdict::rejected(r), None);
        }
    }
    let content = match map::content(req) {
        Ok(c) => c,
        Err(r) => return Decided::Nothing(Verdict::rejected(r), None),
    };
    if let Some(answer) = handshake::signed(def, &content.body) {
        let v = Verdict::with(IngestStatus::Ignored, "a platform handshake");
        return Decided::Nothing(v, Some(answer));
    }
    let delivery_id = map::delivery_id(def, &content);
    let Some(event) = map::select(def, &content) else {
        return Decided::Nothing(
            Verdict::with(IngestStatus::Ignored, "no event of the integration matched"),
            None,
        );
    };
    match raise(shared, def, event, &content) {
        Ok(e) => Decided::Events(vec![e], delivery_id),
        Err(v) => Decided::Nothing(v, None),
    }
}

/// The event `event` raises for this request: its payload (schema-checked), its route, and
/// the triggers of the workflows bound to it.
fn raise(
    shared: &Shared,
    def: &IntegrationDef,
    event: &EventDef,
    content: &Content,
) -> Result<IngestEvent, Verdict> {
    let payload = map::payload(&event.payload, content, &def.config);
    let errors = map::schema_errors(event, &payload);
    if !errors.is_empty() {
        let mut v = Verdict::with(
            IngestStatus::Invalid,
            format!("the mapped payload of `{}` fails its schema", event.name),
        );
        v.detail = json!({"event": event.name, "errors": errors, "payload": payload});
        v.errors = errors;
        return Err(v);
    }
    let routed = map::route(def, event, content, &def.config)
        .map_err(|m| Verdict::with(IngestStatus::Invalid, m))?;
    let name = format!("{}:{}", def.name, event.name);
    let event_id = uuid::Uuid::now_v7().to_string();
    let now = shared.clock.now();
    let new_contact_id = shared.next_contact_id();
    let bot = routed.bot.as_ref().and_then(|b| {
        let def = shared.project.bots.get(b)?;
        let channel = if def.has_channel("chatwidget") {
            "chatwidget".to_owned()
        } else {
            def.channels.keys().next()?.clone()
        };
        Some((b.clone(), channel))
    });
    let triggers = shared
        .project
        .workflows
        .values()
        .filter(|w| w.on.iter().any(|(on, _)| on == &name))
        .filter(|w| {
            let ok = w.check_payload(&payload).is_ok();
            if !ok {
                tracing::warn!(workflow = %w.id, event = %name, "an integration payload fails the workflow's payloadSchema; not triggered");
            }
            ok
        })
        .map(|w| NewTrigger {
            transaction_id: format!("{event_id}:{}", w.id),
            workflow: w.id.clone(),
            payload: payload.clone(),
            overrides: json!({}),
            actor: None,
            tenant: None,
            to: Some(vec![Recipient::Subscriber(SubscriberUpsert {
                subscriber_id: routed.subscriber_id.clone(),
                profile: Default::default(),
                new_id: new_contact_id,
                now,
            })]),
            idempotency: None,
            now,
        })
        .collect();
    Ok(IngestEvent {
        event_id,
        name,
        payload,
        subscriber_id: routed.subscriber_id,
        new_contact_id,
        bot,
        triggers,
    })
}
