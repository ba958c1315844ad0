//! Notification workflows: `workflows/<id>.yaml` (SPEC §5), compiled into a [`WorkflowDef`].
//!
//! A workflow is a list of steps run in order for each subscriber of a trigger. Channel steps
//! (`chat`, `in_app`, `email`, `webhook`) deliver; `delay`, `digest` and `throttle` decide when,
//! and whether, the later steps run. Every step may carry an `if` (a JavaScript expression over
//! `payload`, `subscriber`, `actor`, `events`, `eventCount`), and texts are `{{ js }}` templates
//! as in bot.yaml. The code table and templates reuse the bot model's types, so the sandbox
//! compiles a workflow's snippets the same way it compiles a bot's.

mod parse;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use jiff::{Span, Timestamp, ToSpan, Zoned, tz::TimeZone};
use serde_json::Value;

use crate::bot::model::{Code, CodeId, Origin, Template};

pub use parse::parse_workflow;

/// One compiled `workflows/<id>.yaml`.
#[derive(Debug, Clone)]
pub struct WorkflowDef {
    /// The file name without `.yaml`: the `name` a trigger uses.
    pub id: String,
    /// Human-readable name (`name:`), the id when absent.
    pub name: String,
    /// JSON Schema every trigger's payload must satisfy (`payloadSchema:`), compiled at load.
    pub payload_schema: Option<Arc<jsonschema::Validator>>,
    pub steps: Vec<Step>,
    /// `on:`: the integration events (`shopify:newOrderCreated`) that start this workflow,
    /// with where each is written.
    pub on: Vec<(String, Origin)>,
    /// Every JavaScript snippet (`if:` conditions and template holes), indexed by [`CodeId`].
    pub code: Vec<Code>,
    pub file: PathBuf,
}

impl WorkflowDef {
    /// Checks a trigger's payload against `payloadSchema`: every error, each prefixed with the
    /// JSON pointer of the offending value.
    pub fn check_payload(&self, payload: &Value) -> Result<(), Vec<String>> {
        let Some(schema) = &self.payload_schema else {
            return Ok(());
        };
        let errors: Vec<String> = schema
            .iter_errors(payload)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    /// `stepId:` (or `name:`) as written, else `<type>-<n>` (1-based position).
    pub id: String,
    pub kind: StepKind,
    /// `if:`: the step runs only when the expression is truthy.
    pub condition: Option<CodeId>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    /// A message into the subscriber's dialog with `bot`, or a bot event with the payload.
    Chat {
        bot: String,
        text: Option<Template>,
        event: Option<String>,
    },
    /// An entry in the subscriber's in-app feed.
    InApp {
        subject: Option<Template>,
        body: Template,
        cta: Option<Cta>,
    },
    /// A mail to the subscriber's `email` through the SMTP server of herald.toml.
    Email {
        subject: Template,
        body: Template,
    },
    /// A signed POST of the rendered step to `url`.
    Webhook {
        url: Template,
        /// Standard Webhooks secret (`whsec_<base64>`), or a plain string used as the key.
        secret: Option<String>,
        /// A body template; by default the step is sent as JSON.
        body: Option<Template>,
    },
    Delay(Delay),
    Digest {
        window: Amount,
        /// Payload path (`a.b`) whose value splits digests of one subscriber.
        key: Option<String>,
        /// When no event of the same digest came within this window before, the event is sent
        /// at once instead of waiting for company.
        look_back: Option<Amount>,
    },
    Throttle {
        window: Amount,
        /// Most runs that pass within one window; the others skip the remaining steps.
        threshold: u32,
        /// Payload path whose value splits throttles of one subscriber.
        key: Option<String>,
    },
}

impl StepKind {
    /// The `type:` word of the step.
    pub fn type_name(&self) -> &'static str {
        match self {
            StepKind::Chat { .. } => "chat",
            StepKind::InApp { .. } => "in_app",
            StepKind::Email { .. } => "email",
            StepKind::Webhook { .. } => "webhook",
            StepKind::Delay(_) => "delay",
            StepKind::Digest { .. } => "digest",
            StepKind::Throttle { .. } => "throttle",
        }
    }
}

/// A call to action of an in-app entry: a URL (template) and an optional button label.
#[derive(Debug, Clone)]
pub struct Cta {
    pub url: Template,
    pub label: Option<Template>,
}

#[derive(Debug, Clone)]
pub enum Delay {
    For(Amount),
    /// A payload path holding an RFC 3339 date.
    Until(String),
}

/// `{amount, unit}` as Novu writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    pub amount: u32,
    pub unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
}

impl Unit {
    pub const NAMES: &'static [&'static str] =
        &["seconds", "minutes", "hours", "days", "weeks", "months"];

    pub fn parse(word: &str) -> Option<Unit> {
        Some(match word.trim_end_matches('s') {
            "second" => Unit::Seconds,
            "minute" => Unit::Minutes,
            "hour" => Unit::Hours,
            "day" => Unit::Days,
            "week" => Unit::Weeks,
            "month" => Unit::Months,
            _ => return None,
        })
    }
}

impl Amount {
    fn span(&self) -> Span {
        let n = i64::from(self.amount);
        match self.unit {
            Unit::Seconds => n.seconds(),
            Unit::Minutes => n.minutes(),
            Unit::Hours => n.hours(),
            Unit::Days => n.days(),
            Unit::Weeks => n.weeks(),
            Unit::Months => n.months(),
        }
    }

    /// `from` moved forward by this amount (days, weeks and months on the UTC calendar).
    pub fn after(&self, from: Timestamp) -> Timestamp {
        let zoned: Zoned = from.to_zoned(TimeZone::UTC);
        zoned
            .checked_add(self.span())
            .map(|z| z.timestamp())
            .unwrap_or(Timestamp::MAX)
    }

    /// `from` moved back by this amount.
    pub fn before(&self, from: Timestamp) -> Timestamp {
        let zoned: Zoned = from.to_zoned(TimeZone::UTC);
        zoned
            .checked_sub(self.span())
            .map(|z| z.timestamp())
            .unwrap_or(Timestamp::MIN)
    }
}

/// The value at a dotted path (`order.id`) of a JSON value.
pub fn lookup_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |v, part| match v {
        Value::Object(m) => m.get(part),
        Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Whether a file stem can be a workflow id: `[A-Za-z0-9_.-]+`, or an integration event's
/// name (`shopify:newOrderCreated`: one `:` between two such parts), which the event starts.
pub fn is_valid_workflow_id(id: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    match id.split_once(':') {
        Some((integration, event)) => part(integration) && part(event),
        None => part(id),
    }
}

impl WorkflowDef {
    /// Whether the integration event `event` (`shopify:newOrderCreated`) starts this workflow:
    /// it is named in `on:`, or it is the workflow's id (the trigger of the same name).
    pub fn listens_to(&self, event: &str) -> bool {
        self.id == event || self.on.iter().any(|(on, _)| on == event)
    }
}
