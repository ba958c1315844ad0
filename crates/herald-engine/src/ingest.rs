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

/// What the sender's standing allows, decided once verification has spoken: the server's
/// rate limits, kept apart for verified requests (the platform's quota) and for rejected ones
/// (which must not use up that quota, nor fill the log).
pub trait Gate: Send + Sync {
    fn admit(&self, verified: bool) -> Admit;
}

/// A [`Gate`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go on, and record the request.
    Go,
    /// Over the rate: answer 429, record nothing.
    Wait(std::time::Duration),
    /// A rejection past the rate of rejections worth logging: answer it, record nothing.
    Unlogged,
}

/// Admits everything (a replay, which an admin started).
pub struct Open;

impl Gate for Open {
    fn admit(&self, _verified: bool) -> Admit {
        Admit::Go
    }
}

/// The most of a rejected request's body the log keeps: enough to see what was sent, too
/// little for anonymous senders to fill the disk.
const REJECTED_BODY_KEPT: usize = 1024;

/// What the server answers.
#[derive(Debug)]
pub struct Ingested {
    /// What was recorded; `None` when the gate said not to record.
    pub outcome: Option<IngestOutcome>,
    /// Over the rate: retry after this long (nothing was recorded).
    pub retry_after: Option<std::time::Duration>,
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

/// The path as recorded: a secret in the query (Meta's `hub.verify_token`) is hidden.
fn redacted_path(path: String) -> String {
    let Some((route, query)) = path.split_once('?') else {
        return path;
    };
    if !query
        .split('&')
        .any(|kv| kv.starts_with("hub.verify_token="))
    {
        return path;
    }
    let query: Vec<&str> = query
        .split('&')
        .map(|kv| {
            if kv.starts_with("hub.verify_token=") {
                "hub.verify_token=[redacted]"
            } else {
                kv
            }
        })
        .collect();
    format!("{route}?{}", query.join("&"))
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
        gate: &dyn Gate,
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
        let decided = match decide(shared, def, &req, inc.replay_of.is_some(), gate) {
            Decided::Handler(body, delivery_id) => {
                let content = Content {
                    body,
                    headers: &inc.headers,
                    query: &inc.query,
                };
                self.handle(def, &inc, content, delivery_id).await
            }
            d => d,
        };
        let headers = redacted(def, &inc.headers);
        let Incoming {
            method,
            path,
            mut body,
            received_at,
            replay_of,
            ..
        } = inc;
        let (mut verdict, events, answer, delivery_id) = match decided {
            Decided::Busy(m) => return Err(EngineError::Busy(m)),
            Decided::Refused(admit, verdict) => {
                return Ok(Ingested {
                    outcome: None,
                    retry_after: match admit {
                        Admit::Wait(d) => Some(d),
                        Admit::Go | Admit::Unlogged => None,
                    },
                    answer: None,
                    message: verdict.message,
                    reason: verdict.reason,
                    errors: Vec::new(),
                });
            }
            Decided::Nothing(v, answer) => (v, Vec::new(), answer, None),
            Decided::Handler(..) => (
                Verdict::with(IngestStatus::HandlerError, "the handler did not run"),
                Vec::new(),
                None,
                None,
            ),
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
        if verdict.status == IngestStatus::Rejected
            && verdict.reason.as_deref() != Some("malformed_body")
            && body.len() > REJECTED_BODY_KEPT
        {
            if let Value::Object(d) = &mut verdict.detail {
                d.insert("bodyBytes".into(), json!(body.len()));
            }
            body.truncate(REJECTED_BODY_KEPT);
        }
        let until = jiff::SignedDuration::try_from(def.dedupe.window)
            .ok()
            .and_then(|w| received_at.checked_add(w).ok());
        let record = NewIngest {
            request: IngestRequest {
                integration: def.name.clone(),
                method,
                path: redacted_path(path),
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
                    outcome: Some(*outcome),
                    retry_after: None,
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
    /// The handler could not run in time: nothing is recorded, the sender retries (503).
    Busy(String),
    /// The gate refused: nothing is recorded (why, for the answer).
    Refused(Admit, Verdict),
    /// Nothing is raised: a rejection, a handshake, no matching event, an invalid payload.
    Nothing(Verdict, Option<Answer>),
    /// Events to raise, and the delivery id.
    Events(Vec<IngestEvent>, Option<String>),
    /// The integration's handler decides: the request's body, and the delivery id.
    Handler(Value, Option<String>),
}

fn decide(
    shared: &Shared,
    def: &IntegrationDef,
    req: &Request<'_>,
    replay: bool,
    gate: &dyn Gate,
) -> Decided {
    // The gate hears whether the sender proved itself; a rejection it will not log, or a
    // request over the rate, ends here.
    let refused = |verified: bool, v: Verdict| match gate.admit(verified) {
        Admit::Go => None,
        a => Some(Decided::Refused(a, v)),
    };
    let mut verified = None;
    if replay && handshake::is_subscription(def, req) {
        let v = Verdict::with(IngestStatus::Ignored, "a subscription handshake");
        return Decided::Nothing(v, None);
    }
    if !replay {
        match handshake::unsigned(def, req) {
            Some(Ok(answer)) => {
                let v = Verdict::with(IngestStatus::Ignored, "a subscription handshake");
                return refused(true, Verdict::with(IngestStatus::Ignored, ""))
                    .unwrap_or(Decided::Nothing(v, Some(answer)));
            }
            Some(Err(r)) => {
                return refused(false, Verdict::rejected(r.clone()))
                    .unwrap_or(Decided::Nothing(Verdict::rejected(r), None));
            }
            None => {}
        }
        match verify::verify(def, req) {
            Ok(secret) => verified = secret,
            Err(r) => {
                return refused(false, Verdict::rejected(r.clone()))
                    .unwrap_or(Decided::Nothing(Verdict::rejected(r), None));
            }
        }
        if let Some(d) = refused(true, Verdict::with(IngestStatus::Accepted, "")) {
            return d;
        }
    }
    let content = match map::content(req) {
        Ok(c) => c,
        Err(r) => return Decided::Nothing(Verdict::rejected(r), None),
    };
    if let Some(answer) = handshake::signed(def, verified, &content.body) {
        let v = Verdict::with(IngestStatus::Ignored, "a platform handshake");
        return Decided::Nothing(v, Some(answer));
    }
    let delivery_id = map::delivery_id(def, &content);
    if def.handler.is_some() {
        return Decided::Handler(content.body, delivery_id);
    }
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
    Ok(event_for(
        shared,
        format!("{}:{}", def.name, event.name),
        payload,
        routed,
    ))
}

/// The event `name` with `payload` for `routed`, with the triggers of the workflows bound to
/// it.
fn event_for(shared: &Shared, name: String, payload: Value, routed: map::Routed) -> IngestEvent {
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
        .filter(|w| w.listens_to(&name))
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
    IngestEvent {
        event_id,
        name,
        payload,
        subscriber_id: routed.subscriber_id,
        new_contact_id,
        bot,
        triggers,
    }
}

/// Most events one handler call may return.
const MAX_HANDLER_EVENTS: usize = 100;

impl Engine {
    /// Runs the integration's handler on the request and turns what it returns into events.
    async fn handle(
        &self,
        def: &IntegrationDef,
        inc: &Incoming,
        content: Content<'_>,
        delivery_id: Option<String>,
    ) -> Decided {
        let shared = self.shared();
        let Some(handlers) = &shared.handlers else {
            let v = Verdict::with(
                IngestStatus::HandlerError,
                "no JavaScript engine for handlers",
            );
            return Decided::Nothing(v, None);
        };
        let path = inc.path.split('?').next().unwrap_or_default();
        let mut query = serde_json::Map::new();
        for (k, v) in &inc.query {
            query
                .entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        let req = json!({
            "method": inc.method,
            "path": path,
            "query": query,
            "headers": inc.headers,
            "body": content.body,
            "rawBody": String::from_utf8_lossy(&inc.body),
        });
        let returned = match handlers.run(&def.name, req, def.config.clone()).await {
            Ok(v) => v,
            Err(crate::ingest_js::Failure::Busy(m)) => return Decided::Busy(m),
            Err(crate::ingest_js::Failure::Script(m)) => {
                let v = Verdict::with(
                    IngestStatus::HandlerError,
                    format!("the handler failed: {m}"),
                );
                return Decided::Nothing(v, None);
            }
        };
        match handler_events(shared, def, returned, &content) {
            Ok(events) if events.is_empty() => Decided::Nothing(
                Verdict::with(IngestStatus::Ignored, "the handler returned no event"),
                None,
            ),
            Ok(events) => Decided::Events(events, delivery_id),
            Err(v) => Decided::Nothing(v, None),
        }
    }
}

/// The events a handler returned: `[{type, payload, route}]` (or one such object, or nothing).
/// A `type` declared under `events:` is checked against its schema and, without a `route`,
/// routed as declared.
fn handler_events(
    shared: &Shared,
    def: &IntegrationDef,
    returned: Value,
    content: &Content<'_>,
) -> Result<Vec<IngestEvent>, Verdict> {
    let fail = |m: String| Verdict::with(IngestStatus::HandlerError, m);
    let list = match returned {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list,
        one @ Value::Object(_) => vec![one],
        other => {
            return Err(fail(format!(
                "the handler must return a list of events, not {}",
                herald_core::text::json_kind(&other)
            )));
        }
    };
    if list.len() > MAX_HANDLER_EVENTS {
        return Err(fail(format!(
            "the handler returned {} events; at most {MAX_HANDLER_EVENTS} are raised",
            list.len()
        )));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, e) in list.into_iter().enumerate() {
        let at = |m: &str| fail(format!("event {i} of the handler: {m}"));
        let Value::Object(mut e) = e else {
            return Err(at("must be an object `{type, payload, route}`"));
        };
        let Some(Value::String(kind)) = e.remove("type") else {
            return Err(at("needs `type`, the event's name"));
        };
        let name = kind
            .strip_prefix(&format!("{}:", def.name))
            .unwrap_or(&kind)
            .to_owned();
        let full = format!("{}:{name}", def.name);
        if name.contains(':') || !herald_core::ident::is_valid(&full) {
            return Err(at(&format!("`{kind}` is not a valid event name")));
        }
        let payload = match e.remove("payload") {
            None | Some(Value::Null) => json!({}),
            Some(p @ Value::Object(_)) => p,
            Some(_) => return Err(at("`payload` must be an object")),
        };
        let declared = def.event(&name);
        if let Some(d) = declared {
            let errors = map::schema_errors(d, &payload);
            if !errors.is_empty() {
                let mut v = Verdict::with(
                    IngestStatus::Invalid,
                    format!("the handler's `{name}` fails its schema"),
                );
                v.detail = json!({"event": name, "errors": errors, "payload": payload});
                v.errors = errors;
                return Err(v);
            }
        }
        let routed = match (e.remove("route"), declared) {
            (Some(Value::Object(r)), _) => handler_route(shared, def, &r).map_err(|m| at(&m))?,
            (None | Some(Value::Null), Some(d)) => {
                map::route(def, d, content, &def.config).map_err(|m| at(&m))?
            }
            (None | Some(Value::Null), None) => {
                return Err(at(
                    "needs `route` (the event is not declared under `events:`)",
                ));
            }
            (Some(_), _) => return Err(at("`route` must be an object")),
        };
        out.push(event_for(shared, full, payload, routed));
    }
    Ok(out)
}

/// A handler's `route: {bot?, subscriber | contact}`.
fn handler_route(
    shared: &Shared,
    def: &IntegrationDef,
    r: &serde_json::Map<String, Value>,
) -> Result<map::Routed, String> {
    let text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let bot = match r.get("bot") {
        None | Some(Value::Null) => None,
        Some(Value::String(b)) if shared.project.bots.contains_key(b) => Some(b.clone()),
        Some(b) => return Err(format!("`route.bot` {b} is not a bot of the project")),
    };
    let subscriber_id = match (r.get("subscriber"), r.get("contact")) {
        (Some(s), None) => text(s).ok_or("`route.subscriber` must be a string or a number")?,
        (None, Some(c)) => format!(
            "{}:{}",
            def.name,
            text(c).ok_or("`route.contact` must be a string or a number")?
        ),
        _ => return Err("`route` needs one of `subscriber` and `contact`".to_owned()),
    };
    herald_core::ident::check("route.subscriber", &subscriber_id)?;
    Ok(map::Routed { bot, subscriber_id })
}
