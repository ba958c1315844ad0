//! Novu request bodies → the engine's typed requests. Every refusal is a 422 naming the field
//! (`to[3].topicKey: …`), decided before anything is stored.

use axum::extract::FromRequest;
use herald_core::text::json_kind;
use herald_engine::{RecipientIn, SubscriberIn, TriggerRequest};
use herald_store::PROFILE_FIELDS;
use serde_json::{Map, Value};

use super::NovuError;
use crate::error::{ApiError, ApiJson, ApiQuery};

/// Most entries of `to`, and most events of a bulk trigger.
pub const MAX_RECIPIENTS: usize = 100;

/// A JSON object body, with errors in Novu's shape.
pub struct NovuJson(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for NovuJson {
    type Rejection = NovuError;

    async fn from_request(req: axum::extract::Request, s: &S) -> Result<Self, NovuError> {
        let ApiJson(v) = ApiJson::<Value>::from_request(req, s).await?;
        match v {
            Value::Object(m) => Ok(NovuJson(m)),
            _ => Err(ApiError::bad_request("body: must be a JSON object").into()),
        }
    }
}

/// A query string, with errors in Novu's shape.
pub struct NovuQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for NovuQuery<T>
{
    type Rejection = NovuError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &S,
    ) -> Result<Self, NovuError> {
        let ApiQuery(q) = ApiQuery::<T>::from_request_parts(parts, s).await?;
        Ok(NovuQuery(q))
    }
}

fn bad(field: &str, msg: impl std::fmt::Display) -> ApiError {
    ApiError::unprocessable(field, msg)
}

/// 422 unless `id` follows [`herald_core::ident`]'s rule.
pub fn ident(field: &str, id: &str) -> Result<(), ApiError> {
    herald_core::ident::check(field, id).map_err(|m| bad(field, m))
}

/// An optional string field (`null` counts as absent).
pub fn opt_str(o: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(
            field,
            format!("must be a string, not {}", json_kind(other)),
        )),
    }
}

/// A subscriber id or topic key: [`herald_core::ident`]'s rule (a subscriber id also names
/// the chat a workflow's chat step opens for it).
fn subscriber_id(v: Option<&Value>, field: &str) -> Result<String, ApiError> {
    match v {
        Some(Value::String(s)) => {
            ident(field, s)?;
            Ok(s.clone())
        }
        None | Some(Value::Null) => Err(bad(field, "is required")),
        Some(other) => Err(bad(
            field,
            format!("must be a string, not {}", json_kind(other)),
        )),
    }
}

/// The profile fields of a subscriber object (others, such as `channels`, are ignored).
pub fn profile(o: &Map<String, Value>, prefix: &str) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for f in PROFILE_FIELDS {
        let Some(v) = o.get(*f) else { continue };
        let ok = match (*f, v) {
            (_, Value::Null) => true,
            ("data", Value::Object(_)) => true,
            ("data", _) => false,
            (_, Value::String(_)) => true,
            _ => false,
        };
        if !ok {
            let want = if *f == "data" {
                "an object"
            } else {
                "a string"
            };
            return Err(bad(
                &format!("{prefix}{f}"),
                format!("must be {want}, not {}", json_kind(v)),
            ));
        }
        out.insert((*f).to_owned(), v.clone());
    }
    Ok(out)
}

/// A subscriber given as an id or as an object with `subscriberId`.
pub fn subscriber_in(v: &Value, field: &str) -> Result<SubscriberIn, ApiError> {
    match v {
        Value::Object(o) => Ok(SubscriberIn {
            subscriber_id: subscriber_id(o.get("subscriberId"), &format!("{field}.subscriberId"))?,
            profile: profile(o, &format!("{field}."))?,
        }),
        other => Ok(SubscriberIn {
            subscriber_id: subscriber_id(Some(other), field)?,
            profile: Map::new(),
        }),
    }
}

fn recipient(v: &Value, field: &str) -> Result<RecipientIn, ApiError> {
    if let Value::Object(o) = v
        && let Some(t) = o.get("type")
    {
        match t.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("topic") => {
                let key = subscriber_id(o.get("topicKey"), &format!("{field}.topicKey"))?;
                return Ok(RecipientIn::Topic(key));
            }
            Some("subscriber") => {}
            _ => {
                return Err(bad(
                    &format!("{field}.type"),
                    "must be `Topic` or `Subscriber`",
                ));
            }
        }
    }
    if matches!(v, Value::Array(_) | Value::Bool(_)) {
        return Err(bad(
            field,
            "must be a subscriber id, a subscriber object or `{type: \"Topic\", topicKey}`",
        ));
    }
    subscriber_in(v, field).map(RecipientIn::Subscriber)
}

/// `to`: one recipient or a list of 1–100.
pub fn recipients(v: Option<&Value>) -> Result<Vec<RecipientIn>, ApiError> {
    match v {
        None | Some(Value::Null) => Err(bad("to", "is required")),
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err(bad("to", "must name at least one recipient"));
            }
            if list.len() > MAX_RECIPIENTS {
                return Err(bad(
                    "to",
                    format!(
                        "has {} entries; at most {MAX_RECIPIENTS} are allowed",
                        list.len()
                    ),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, r)| recipient(r, &format!("to[{i}]")))
                .collect()
        }
        Some(one) => Ok(vec![recipient(one, "to")?]),
    }
}

fn object_or_empty(o: &Map<String, Value>, field: &str) -> Result<Value, ApiError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(other) => Err(bad(
            field,
            format!("must be an object, not {}", json_kind(other)),
        )),
    }
}

/// A trigger body (`broadcast`: no `to`, every subscriber).
pub fn trigger_request(
    o: &Map<String, Value>,
    broadcast: bool,
    idempotency: Option<herald_store::IdempotencyKey>,
) -> Result<TriggerRequest, ApiError> {
    let workflow = match o.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(bad("name", "is required: the workflow id"));
        }
        Some(other) => {
            return Err(bad(
                "name",
                format!("must be a string, not {}", json_kind(other)),
            ));
        }
    };
    let to = if broadcast {
        None
    } else {
        Some(recipients(o.get("to"))?)
    };
    let transaction_id = opt_str(o, "transactionId")?;
    if let Some(t) = &transaction_id {
        ident("transactionId", t)?;
    }
    let actor = match o.get("actor") {
        None | Some(Value::Null) => None,
        Some(v) => Some(subscriber_in(v, "actor")?),
    };
    let tenant = match o.get("tenant") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::String(_) | Value::Object(_))) => Some(v.clone()),
        Some(other) => {
            return Err(bad(
                "tenant",
                format!("must be a string or an object, not {}", json_kind(other)),
            ));
        }
    };
    Ok(TriggerRequest {
        workflow,
        to,
        payload: object_or_empty(o, "payload")?,
        overrides: object_or_empty(o, "overrides")?,
        transaction_id,
        actor,
        tenant,
        idempotency,
    })
}
