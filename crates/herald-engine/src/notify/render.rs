//! Running a claimed run's steps: from its next step until the workflow ends or a step makes it
//! wait (a delay) or needs the store's decision (a digest, a throttle). Channel steps are
//! rendered here and become feed entries, chat deliveries and outbox rows of one
//! [`RunProgress`]; nothing leaves the process before that progress is committed.

use herald_core::workflow::{Delay, Step, StepKind, WorkflowDef, lookup_path};
use herald_script::{Sandbox, ScriptError, WorkflowTurn};
use herald_store::{
    ChatDelivery, ClaimedRun, DeliveryKind, NewDelivery, NewFeedEntry, RunNext, RunProgress,
    StepRecord,
};
use jiff::Timestamp;
use serde_json::{Value, json};

/// The subscriber as templates see it: `subscriberId` and the profile fields.
pub(crate) fn subscriber_json(run: &ClaimedRun) -> Value {
    let mut o = run.subscriber.profile.clone();
    o.insert(
        "subscriberId".into(),
        Value::String(run.subscriber.subscriber_id.clone()),
    );
    o.insert("id".into(), Value::from(run.subscriber.id));
    Value::Object(o)
}

/// Runs `run`'s steps of `wf` from its next step.
pub(crate) fn run_steps(
    sandbox: &mut Sandbox,
    wf: Option<&WorkflowDef>,
    run: &ClaimedRun,
    now: Timestamp,
) -> RunProgress {
    let mut p = RunProgress {
        run_id: run.run_id,
        now,
        records: Vec::new(),
        feed: Vec::new(),
        chats: Vec::new(),
        deliveries: Vec::new(),
        next: RunNext::Done,
    };
    let record = |step: &str, kind: &str, status: &str, detail: Option<String>| StepRecord {
        step: step.to_owned(),
        kind: kind.to_owned(),
        status: status.to_owned(),
        detail,
        at: now,
    };
    let Some(wf) = wf else {
        p.records.push(record(
            "-",
            "workflow",
            "failed",
            Some(format!("workflow `{}` is no longer defined", run.workflow)),
        ));
        p.next = RunNext::Failed;
        return p;
    };
    let events = run
        .digest_events
        .clone()
        .unwrap_or_else(|| vec![run.payload.clone()]);
    let scope = json!({
        "payload": run.payload,
        "subscriber": subscriber_json(run),
        "actor": run.actor,
        "tenant": run.tenant,
        "eventCount": events.len(),
        "events": events,
    });
    let mut turn = match sandbox.workflow_turn(&wf.id, scope) {
        Ok(t) => t,
        Err(e) => {
            p.records
                .push(record("-", "workflow", "failed", Some(e.message)));
            p.next = RunNext::Failed;
            return p;
        }
    };
    for (i, step) in wf.steps.iter().enumerate().skip(run.step) {
        let kind = step.kind.type_name();
        if let Some(c) = step.condition {
            match turn.condition(c) {
                Ok(true) => {}
                Ok(false) => {
                    p.records.push(record(
                        &step.id,
                        kind,
                        "skipped",
                        Some("`if` is false".into()),
                    ));
                    continue;
                }
                Err(e) => {
                    p.records.push(record(
                        &step.id,
                        kind,
                        "failed",
                        Some(format!("`if` failed: {}", e.message)),
                    ));
                    continue;
                }
            }
        }
        match run_step(&mut turn, step, i, run, now, &mut p) {
            Ok(Some(next)) => {
                p.next = next;
                return p;
            }
            Ok(None) => {}
            Err(StepFailure { detail, stop }) => {
                p.records
                    .push(record(&step.id, kind, "failed", Some(detail)));
                if stop {
                    p.next = RunNext::Failed;
                    return p;
                }
            }
        }
    }
    p
}

struct StepFailure {
    detail: String,
    /// The run cannot go on (a delay whose date is unusable).
    stop: bool,
}

impl From<ScriptError> for StepFailure {
    fn from(e: ScriptError) -> Self {
        Self {
            detail: format!("template failed: {}", e.message),
            stop: false,
        }
    }
}

/// One step: its effects go into `p`; `Some(next)` when the run stops here.
fn run_step(
    turn: &mut WorkflowTurn<'_>,
    step: &Step,
    index: usize,
    run: &ClaimedRun,
    now: Timestamp,
    p: &mut RunProgress,
) -> Result<Option<RunNext>, StepFailure> {
    let kind = step.kind.type_name();
    let done = |status: &str, detail: Option<String>| StepRecord {
        step: step.id.clone(),
        kind: kind.to_owned(),
        status: status.to_owned(),
        detail,
        at: now,
    };
    match &step.kind {
        StepKind::InApp { subject, body, cta } => {
            let subject = subject.as_ref().map(|t| turn.render(t)).transpose()?;
            let body = turn.render(body)?;
            let cta = match cta {
                Some(c) => {
                    let url = turn.render(&c.url)?;
                    let label = c.label.as_ref().map(|t| turn.render(t)).transpose()?;
                    Some(json!({"url": url, "label": label}))
                }
                None => None,
            };
            p.feed.push(NewFeedEntry {
                step: step.id.clone(),
                subject,
                body,
                cta,
            });
            p.records.push(done("done", None));
        }
        StepKind::Chat { bot, text, event } => {
            let text = text.as_ref().map(|t| turn.render(t)).transpose()?;
            let detail = match (&text, event) {
                (_, Some(e)) => format!("event `{e}` raised in bot `{bot}`"),
                _ => format!("message sent with bot `{bot}`"),
            };
            p.chats.push(ChatDelivery {
                bot_id: bot.clone(),
                text,
                event: event.as_ref().map(|e| (e.clone(), run.payload.clone())),
                event_id: uuid::Uuid::now_v7().to_string(),
            });
            p.records.push(done("done", Some(detail)));
        }
        StepKind::Email { subject, body } => {
            let to = run
                .subscriber
                .profile
                .get("email")
                .and_then(Value::as_str)
                .filter(|e| !e.trim().is_empty());
            let Some(to) = to else {
                p.records.push(done(
                    "skipped",
                    Some("the subscriber has no email address".into()),
                ));
                return Ok(None);
            };
            let request = json!({
                "to": to,
                "subject": turn.render(subject)?,
                "body": turn.render(body)?,
            });
            p.deliveries.push(NewDelivery {
                kind: DeliveryKind::Email,
                step: step.id.clone(),
                request,
            });
            p.records.push(done("queued", Some(format!("to {to}"))));
        }
        StepKind::Webhook { url, secret, body } => {
            let url = turn.render(url)?;
            let (body, content_type) = match body {
                Some(t) => (turn.render(t)?, "text/plain"),
                None => (
                    json!({
                        "type": "notification",
                        "workflow": run.workflow,
                        "step": step.id,
                        "transactionId": run.transaction_id,
                        "subscriber": subscriber_json(run),
                        "payload": run.payload,
                        "events": run.digest_events.clone().unwrap_or_else(|| vec![run.payload.clone()]),
                    })
                    .to_string(),
                    "application/json",
                ),
            };
            p.deliveries.push(NewDelivery {
                kind: DeliveryKind::Webhook,
                step: step.id.clone(),
                request: json!({
                    "url": url,
                    "secret": secret,
                    "body": body,
                    "contentType": content_type,
                }),
            });
            p.records.push(done("queued", Some(format!("POST {url}"))));
        }
        StepKind::Delay(Delay::For(amount)) => {
            let until = amount.after(now);
            p.records
                .push(done("pending", Some(format!("delayed until {until}"))));
            return Ok(Some(RunNext::Wait {
                step: index + 1,
                until,
            }));
        }
        StepKind::Delay(Delay::Until(path)) => {
            let raw = lookup_path(&run.payload, path);
            let until = raw.and_then(Value::as_str).and_then(parse_date);
            let Some(until) = until else {
                return Err(StepFailure {
                    detail: format!(
                        "`delayPath` `{path}` is {} in the payload, not a date",
                        raw.map_or("missing".to_owned(), |v| v.to_string())
                    ),
                    stop: true,
                });
            };
            if until <= now {
                return Err(StepFailure {
                    detail: format!("`delayPath` `{path}` is {until}, which is in the past"),
                    stop: true,
                });
            }
            p.records
                .push(done("pending", Some(format!("delayed until {until}"))));
            return Ok(Some(RunNext::Wait {
                step: index + 1,
                until,
            }));
        }
        StepKind::Digest {
            window,
            key,
            look_back,
        } => {
            return Ok(Some(RunNext::Digest {
                step: index,
                step_id: step.id.clone(),
                key: split_key(run, step, key.as_deref()),
                closes_at: window.after(now),
                look_back_since: look_back.map(|a| a.before(now)),
            }));
        }
        StepKind::Throttle {
            window,
            threshold,
            key,
        } => {
            return Ok(Some(RunNext::Throttle {
                step: index,
                step_id: step.id.clone(),
                key: split_key(run, step, key.as_deref()),
                window_start: window.before(now),
                threshold: *threshold,
            }));
        }
    }
    Ok(None)
}

/// The key that groups runs for a digest or a throttle: workflow, subscriber, step, and the
/// value at the step's payload path when it has one.
fn split_key(run: &ClaimedRun, step: &Step, path: Option<&str>) -> String {
    let value = path
        .map(|p| match lookup_path(&run.payload, p) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        })
        .unwrap_or_default();
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
        run.workflow, run.subscriber.id, step.id, value
    )
}

/// An RFC 3339 date-time, or a date (midnight UTC).
fn parse_date(s: &str) -> Option<Timestamp> {
    s.parse::<Timestamp>().ok().or_else(|| {
        s.parse::<jiff::civil::Date>()
            .ok()
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
    })
}
