//! From a verified request to typed events: the request's content (a JSON body, or a form as
//! an object of strings), its delivery id, the first event whose `when` holds, the mapped
//! payload, its schema errors, and who receives it.

use herald_core::integration::{
    Condition, DeliveryId, EventDef, IntegrationDef, Mapping, Root, TemplatePart, Who,
};
use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Rejection, Request};

/// What mappings and conditions read.
#[derive(Debug, Clone)]
pub struct Content<'r> {
    pub body: Value,
    /// Header names in lower case → value.
    pub headers: &'r BTreeMap<String, String>,
    pub query: &'r [(String, String)],
}

impl Content<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The request's content. A JSON body must be well-formed; a form becomes an object of
/// strings; an empty body is `null`.
pub fn content<'r>(req: &Request<'r>) -> Result<Content<'r>, Rejection> {
    let body = if req.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else if req.is_form() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(req.body).map_err(|e| {
            Rejection::new("malformed_body", format!("the form cannot be read: {e}"))
        })?;
        Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    } else {
        serde_json::from_slice(req.body)
            .map_err(|e| Rejection::new("malformed_body", format!("the body is not JSON: {e}")))?
    };
    Ok(Content {
        body,
        headers: req.headers,
        query: req.query,
    })
}

/// The delivery id, when the integration deduplicates and the request carries one.
pub fn delivery_id(def: &IntegrationDef, c: &Content) -> Option<String> {
    let v = match def.dedupe.id.as_ref()? {
        DeliveryId::Header(h) => return c.header(h).filter(|s| !s.is_empty()).map(str::to_owned),
        DeliveryId::FirstHeader(hs) => {
            return hs
                .iter()
                .find_map(|h| c.header(h).filter(|s| !s.is_empty()))
                .map(str::to_owned);
        }
        DeliveryId::Pointer(p) => p.resolve(&c.body)?,
    };
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first event whose conditions all hold.
pub fn select<'d>(def: &'d IntegrationDef, c: &Content) -> Option<&'d EventDef> {
    def.events
        .iter()
        .find(|e| e.when.iter().all(|cond| holds(cond, c)))
}

fn holds(cond: &Condition, c: &Content) -> bool {
    match cond {
        Condition::Header(name, values) => c
            .header(name)
            .is_some_and(|v| values.iter().any(|w| w == v)),
        Condition::Query(name, values) => c
            .query_param(name)
            .is_some_and(|v| values.iter().any(|w| w == v)),
        Condition::Body(pointer, values) => {
            let at = pointer.resolve(&c.body).unwrap_or(&Value::Null);
            values.iter().any(|w| w == at)
        }
    }
}

/// Builds a payload from the request.
pub fn payload(m: &Mapping, c: &Content, config: &Value) -> Value {
    match m {
        Mapping::Pointer(p) => p.resolve(&c.body).cloned().unwrap_or(Value::Null),
        Mapping::Literal(v) => v.clone(),
        Mapping::Template(parts) => render(parts, c, config),
        Mapping::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, m)| (k.clone(), payload(m, c, config)))
                .collect(),
        ),
        Mapping::Array(items) => {
            Value::Array(items.iter().map(|m| payload(m, c, config)).collect())
        }
    }
}

/// A template's value: a template that is one hole and nothing else keeps the value's type
/// (`"{{ body.id }}"` stays a number); otherwise the text, with absent values as empty text
/// and objects as JSON.
fn render(parts: &[TemplatePart], c: &Content, config: &Value) -> Value {
    if let [TemplatePart::Path(root, path)] = parts {
        return lookup(root, path, c, config);
    }
    let mut out = String::new();
    for p in parts {
        match p {
            TemplatePart::Text(t) => out.push_str(t),
            TemplatePart::Path(root, path) => match lookup(root, path, c, config) {
                Value::Null => {}
                Value::String(s) => out.push_str(&s),
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Value::String(out)
}

/// The value a template hole names (`null` when absent).
fn lookup(root: &Root, path: &[String], c: &Content, config: &Value) -> Value {
    let text = |v: Option<&str>| v.map_or(Value::Null, |s| Value::String(s.to_owned()));
    let mut at = match root {
        Root::Body => &c.body,
        Root::Config => config,
        // A header or query value is text: one name, nothing below it.
        Root::Headers if path.len() == 1 => return text(c.header(&path[0])),
        Root::Query if path.len() == 1 => return text(c.query_param(&path[0])),
        Root::Headers | Root::Query => return Value::Null,
    };
    for seg in path {
        at = match at {
            Value::Object(m) => match m.get(seg) {
                Some(v) => v,
                None => return Value::Null,
            },
            Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get(i)) {
                Some(v) => v,
                None => return Value::Null,
            },
            _ => return Value::Null,
        };
    }
    at.clone()
}

/// The first hole of a template that names nothing (or empty text) in the request, as written.
fn absent_hole(parts: &[TemplatePart], c: &Content, config: &Value) -> Option<String> {
    parts.iter().find_map(|p| {
        let TemplatePart::Path(root, path) = p else {
            return None;
        };
        let v = lookup(root, path, c, config);
        if !(v.is_null() || v == "") {
            return None;
        }
        let root = match root {
            Root::Body => "body",
            Root::Headers => "headers",
            Root::Query => "query",
            Root::Config => "config",
        };
        Some(format!("{{{{ {root}.{} }}}}", path.join(".")))
    })
}

/// Every error of `payload` against the event's schema, each prefixed with the JSON pointer
/// of the offending value; empty when it is valid (or there is no schema).
pub fn schema_errors(event: &EventDef, payload: &Value) -> Vec<String> {
    let Some(schema) = &event.schema else {
        return Vec::new();
    };
    schema
        .iter_errors(payload)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect()
}

/// Who receives an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub bot: Option<String>,
    /// The contact's subscriber id.
    pub subscriber_id: String,
}

/// The route of `event` for this request; why not when the request names no one usable.
pub fn route(
    def: &IntegrationDef,
    event: &EventDef,
    c: &Content,
    config: &Value,
) -> Result<Routed, String> {
    let (value, what, namespaced) = match &event.route.who {
        Who::Contact(p) => (
            p.resolve(&c.body).cloned().unwrap_or(Value::Null),
            format!("route.contact `{p}`"),
            true,
        ),
        Who::Subscriber(Mapping::Template(parts)) => {
            // An id built from a text with a hole the request leaves empty names someone else.
            if let Some(hole) = absent_hole(parts, c, config) {
                return Err(format!(
                    "route.subscriber: {hole} is absent from the request"
                ));
            }
            (
                render(parts, c, config),
                "route.subscriber".to_owned(),
                false,
            )
        }
        Who::Subscriber(m) => (payload(m, c, config), "route.subscriber".to_owned(), false),
    };
    let id = match value {
        Value::String(s) if !s.is_empty() => s,
        Value::Number(n) => n.to_string(),
        Value::Null => return Err(format!("{what} is absent from the request")),
        other => return Err(format!("{what} is not a string or a number: {other}")),
    };
    let subscriber_id = if namespaced {
        format!("{}:{id}", def.name)
    } else {
        id
    };
    herald_core::ident::check(&what, &subscriber_id)?;
    Ok(Routed {
        bot: event.route.bot.clone(),
        subscriber_id,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use herald_core::integration::parse_integration;
    use serde_json::{Value, json};

    use super::{Content, payload, route, select};

    const PAYMENTS: &str = r#"
secret: s
verify: { scheme: stripe }
config: { shop: Tea }
events:
  paid:
    when: { body: { /type: payment_intent.succeeded } }
    payload:
      amount: /data/object/amount
      text: "{{ config.shop }}: {{ body.data.object.amount }} {{ body.data.object.currency }}"
      topic: "{{ headers.x-topic }}"
    route: { bot: shop, subscriber: "shop:{{ body.data.object.metadata.customer }}" }
  other:
    route: { contact: /data/object/customer }
"#;

    fn body(metadata: Value) -> Value {
        json!({"type": "payment_intent.succeeded", "data": {"object": {
            "amount": 1250, "currency": "eur", "customer": "cus_1", "metadata": metadata,
        }}})
    }

    #[test]
    fn a_payload_keeps_the_type_of_a_lone_pointer_and_renders_templates_as_text() {
        let def =
            parse_integration("pay", Path::new("pay.yaml"), PAYMENTS, &|_| None).expect("parses");
        let headers = BTreeMap::from([("x-topic".to_owned(), "t1".to_owned())]);
        let c = Content {
            body: body(json!({"customer": "77"})),
            headers: &headers,
            query: &[],
        };
        let event = select(&def, &c).expect("an event matches");
        assert_eq!(event.name, "paid");
        assert_eq!(
            payload(&event.payload, &c, &def.config),
            json!({"amount": 1250, "text": "Tea: 1250 eur", "topic": "t1"})
        );
        let routed = route(&def, event, &c, &def.config).expect("routed");
        assert_eq!(routed.subscriber_id, "shop:77");
        assert_eq!(routed.bot.as_deref(), Some("shop"));
    }

    #[test]
    fn a_subscriber_template_with_an_absent_hole_routes_nowhere_instead_of_to_a_stranger() {
        let def =
            parse_integration("pay", Path::new("pay.yaml"), PAYMENTS, &|_| None).expect("parses");
        let headers = BTreeMap::new();
        let c = Content {
            body: body(json!({})),
            headers: &headers,
            query: &[],
        };
        let event = select(&def, &c).expect("an event matches");
        let err = route(&def, event, &c, &def.config).expect_err("no subscriber");
        assert!(
            err.contains("{{ body.data.object.metadata.customer }} is absent"),
            "{err}"
        );
    }

    #[test]
    fn a_contact_pointer_is_namespaced_by_the_integration() {
        let def =
            parse_integration("pay", Path::new("pay.yaml"), PAYMENTS, &|_| None).expect("parses");
        let headers = BTreeMap::new();
        let c = Content {
            body: json!({"type": "charge.refunded", "data": {"object": {"customer": "cus_9"}}}),
            headers: &headers,
            query: &[],
        };
        let event = select(&def, &c).expect("the catch-all matches");
        assert_eq!(event.name, "other");
        let routed = route(&def, event, &c, &def.config).expect("routed");
        assert_eq!(routed.subscriber_id, "pay:cus_9");
        assert_eq!(routed.bot, None);
    }
}
