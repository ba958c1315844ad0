//! Subscribers (`/v1/subscribers…`) and their in-app feed. A subscriber is a contact with a
//! subscriber id; its Novu profile lives in the contact's attributes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use herald_engine::SubscriberIn;
use herald_store::{FeedEntry, FeedMark, FeedQuery, Subscriber, UpsertMode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::parse::{NovuJson, NovuQuery, profile, subscriber_in};
use super::{NovuResult, data};
use crate::AppState;
use crate::error::ApiError;

/// Most subscribers in one bulk create.
const MAX_BULK: usize = 500;

pub fn subscriber_json(s: &Subscriber) -> Value {
    let mut o = Map::new();
    o.insert("_id".into(), Value::String(s.id.to_string()));
    o.insert(
        "subscriberId".into(),
        Value::String(s.subscriber_id.clone()),
    );
    for (k, v) in &s.profile {
        o.insert(k.clone(), v.clone());
    }
    o.insert("channels".into(), json!([]));
    o.insert("deleted".into(), Value::Bool(false));
    o.insert("createdAt".into(), Value::String(s.created_at.to_string()));
    o.insert("updatedAt".into(), Value::String(s.updated_at.to_string()));
    Value::Object(o)
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("Subscriber not found for id {id}"))
}

pub async fn identify(
    State(st): State<AppState>,
    NovuJson(body): NovuJson,
) -> NovuResult<Response> {
    let s = subscriber_in(&Value::Object(body), "body")?;
    let (sub, _) = st
        .engine
        .upsert_subscriber(s, UpsertMode::CreateOrUpdate)
        .await?
        .ok_or_else(|| ApiError::internal("an upsert returned nothing"))?;
    Ok(data(StatusCode::CREATED, subscriber_json(&sub)))
}

pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    NovuJson(body): NovuJson,
) -> NovuResult<Response> {
    let s = SubscriberIn {
        subscriber_id: id.clone(),
        profile: profile(&body, "")?,
    };
    match st
        .engine
        .upsert_subscriber(s, UpsertMode::UpdateOnly)
        .await?
    {
        Some((sub, _)) => Ok(data(StatusCode::OK, subscriber_json(&sub))),
        None => Err(unknown(&id).into()),
    }
}

pub async fn show(State(st): State<AppState>, Path(id): Path<String>) -> NovuResult<Response> {
    match st.engine.shared().store.get_subscriber(&id).await? {
        Some(sub) => Ok(data(StatusCode::OK, subscriber_json(&sub))),
        None => Err(unknown(&id).into()),
    }
}

pub async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> NovuResult<Response> {
    if st.engine.shared().store.delete_subscriber(&id).await? {
        Ok(data(
            StatusCode::OK,
            json!({"acknowledged": true, "status": "deleted"}),
        ))
    } else {
        Err(unknown(&id).into())
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<usize>,
    limit: Option<usize>,
}

pub async fn list(
    State(st): State<AppState>,
    NovuQuery(q): NovuQuery<PageQuery>,
) -> NovuResult<Response> {
    let page = q.page.unwrap_or(0);
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let subs = st
        .engine
        .shared()
        .store
        .list_subscribers(page, limit)
        .await?;
    let body = json!({
        "page": page,
        "pageSize": limit,
        "hasMore": subs.len() == limit,
        "data": subs.iter().map(subscriber_json).collect::<Vec<_>>(),
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

pub async fn bulk(State(st): State<AppState>, NovuJson(body): NovuJson) -> NovuResult<Response> {
    let list = match body.get("subscribers") {
        Some(Value::Array(l)) => l,
        _ => return Err(ApiError::unprocessable("subscribers", "must be a list").into()),
    };
    if list.is_empty() || list.len() > MAX_BULK {
        return Err(ApiError::unprocessable(
            "subscribers",
            format!("has {} entries; send 1 to {MAX_BULK}", list.len()),
        )
        .into());
    }
    let parsed: Vec<SubscriberIn> = list
        .iter()
        .enumerate()
        .map(|(i, v)| subscriber_in(v, &format!("subscribers[{i}]")))
        .collect::<Result<_, _>>()?;
    let (mut created, mut updated) = (Vec::new(), Vec::new());
    for (sub, new) in st.engine.upsert_subscribers(parsed).await? {
        let entry = json!({"subscriberId": sub.subscriber_id});
        if new {
            created.push(entry);
        } else {
            updated.push(entry);
        }
    }
    Ok(data(
        StatusCode::CREATED,
        json!({"created": created, "updated": updated, "failed": []}),
    ))
}

/// A feed entry as a Novu in-app message.
pub fn message_json(e: &FeedEntry) -> Value {
    let cta = match &e.cta {
        Some(c) => {
            let mut cta = json!({"type": "redirect", "data": {"url": c.get("url")}});
            if let Some(label) = c.get("label").and_then(Value::as_str) {
                cta["action"] = json!({"buttons": [{"type": "primary", "content": label}]});
            }
            cta
        }
        None => json!({"type": "redirect", "data": {}}),
    };
    json!({
        "_id": e.id.to_string(),
        "_subscriberId": e.contact_id.to_string(),
        "subscriberId": e.subscriber_id,
        "templateIdentifier": e.workflow,
        "transactionId": e.transaction_id,
        "stepId": e.step,
        "channel": "in_app",
        "subject": e.subject,
        "content": e.body,
        "cta": cta,
        "payload": e.payload,
        "seen": e.seen,
        "read": e.read,
        "lastSeenDate": e.seen_at.map(|t| t.to_string()),
        "lastReadDate": e.read_at.map(|t| t.to_string()),
        "status": "sent",
        "deleted": false,
        "createdAt": e.created_at.to_string(),
    })
}

#[derive(Deserialize)]
pub struct FeedParams {
    page: Option<usize>,
    limit: Option<usize>,
    seen: Option<bool>,
    read: Option<bool>,
    payload: Option<String>,
}

pub async fn feed(
    State(st): State<AppState>,
    Path(id): Path<String>,
    NovuQuery(q): NovuQuery<FeedParams>,
) -> NovuResult<Response> {
    let query = FeedQuery {
        page: q.page.unwrap_or(0),
        limit: q.limit.unwrap_or(10).clamp(1, 100),
        seen: q.seen,
        read: q.read,
        payload: q.payload.as_deref().map(payload_filter).transpose()?,
    };
    let page = st
        .engine
        .shared()
        .store
        .feed(&id, &query)
        .await?
        .ok_or_else(|| unknown(&id))?;
    let entries: Vec<Value> = page.entries.iter().map(message_json).collect();
    let body = json!({
        "data": entries,
        "totalCount": page.total,
        "hasMore": (query.page.saturating_add(1).saturating_mul(query.limit) as u64) < page.total,
        "pageSize": query.limit,
        "page": query.page,
        "unseenCount": page.unseen,
        "unreadCount": page.unread,
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// The feed's `payload` filter: base64 of a JSON object.
fn payload_filter(raw: &str) -> Result<Value, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| ApiError::invalid_field("payload", "must be base64 of a JSON object"))?;
    match crate::json::parse_value(&bytes) {
        Ok(v @ Value::Object(_)) if leaves(&v) <= MAX_FILTER_LEAVES => Ok(v),
        Ok(Value::Object(_)) => Err(ApiError::invalid_field(
            "payload",
            format!("may compare at most {MAX_FILTER_LEAVES} values"),
        )),
        _ => Err(ApiError::invalid_field(
            "payload",
            "must be base64 of a JSON object",
        )),
    }
}

/// Most values a feed's `payload` filter may compare (each is one condition of the query).
const MAX_FILTER_LEAVES: usize = 64;

/// The values a filter compares: every non-object value and every empty object, at any depth.
fn leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) if !m.is_empty() => m.values().map(leaves).sum(),
        _ => 1,
    }
}

#[derive(Deserialize)]
pub struct UnseenParams {
    seen: Option<bool>,
}

pub async fn unseen(
    State(st): State<AppState>,
    Path(id): Path<String>,
    NovuQuery(q): NovuQuery<UnseenParams>,
) -> NovuResult<Response> {
    let query = FeedQuery {
        page: 0,
        limit: 1,
        seen: Some(q.seen.unwrap_or(false)),
        read: None,
        payload: None,
    };
    let page = st
        .engine
        .shared()
        .store
        .feed(&id, &query)
        .await?
        .ok_or_else(|| unknown(&id))?;
    Ok(data(StatusCode::OK, json!({"count": page.total})))
}

fn mark_of(v: Option<&Value>) -> Result<FeedMark, ApiError> {
    let Some(Value::Object(o)) = v else {
        return Err(ApiError::unprocessable(
            "mark",
            "must be an object like {\"seen\": true}",
        ));
    };
    let flag = |k: &str| match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::unprocessable(
            &format!("mark.{k}"),
            "must be true or false",
        )),
    };
    let mark = FeedMark {
        seen: flag("seen")?,
        read: flag("read")?,
    };
    if mark.seen.is_none() && mark.read.is_none() {
        return Err(ApiError::unprocessable("mark", "must set `seen` or `read`"));
    }
    Ok(mark)
}

/// Most messages one `markAs` request marks (`mark-all` marks a whole feed in one statement).
const MAX_MARKS: usize = 500;

fn message_ids(v: Option<&Value>) -> Result<Vec<i64>, ApiError> {
    let raw: Vec<String> = match v {
        Some(Value::String(s)) => s.split(',').map(|p| p.trim().to_owned()).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(ApiError::unprocessable("messageId", "must be message ids")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ApiError::unprocessable("messageId", "is required")),
    };
    if raw.len() > MAX_MARKS {
        return Err(ApiError::unprocessable(
            "messageId",
            format!("has {} ids; send at most {MAX_MARKS}", raw.len()),
        ));
    }
    raw.iter()
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                ApiError::unprocessable("messageId", format!("`{s}` is not a message id"))
            })
        })
        .collect()
}

pub async fn mark(
    State(st): State<AppState>,
    Path(id): Path<String>,
    NovuJson(body): NovuJson,
) -> NovuResult<Response> {
    let ids = message_ids(body.get("messageId"))?;
    let mark = mark_of(body.get("mark"))?;
    let shared = st.engine.shared();
    let entries = shared
        .store
        .mark_feed(&id, &ids, mark, shared.clock.now())
        .await?
        .ok_or_else(|| unknown(&id))?;
    Ok(data(
        StatusCode::CREATED,
        Value::Array(entries.iter().map(message_json).collect()),
    ))
}

pub async fn mark_all(
    State(st): State<AppState>,
    Path(id): Path<String>,
    NovuJson(body): NovuJson,
) -> NovuResult<Response> {
    let mark = match body.get("markAs").and_then(Value::as_str) {
        Some("read") => FeedMark {
            read: Some(true),
            seen: Some(true),
        },
        Some("seen") => FeedMark {
            seen: Some(true),
            read: None,
        },
        Some("unread") => FeedMark {
            read: Some(false),
            seen: None,
        },
        Some("unseen") => FeedMark {
            seen: Some(false),
            read: None,
        },
        _ => {
            return Err(
                ApiError::unprocessable("markAs", "must be read, seen, unread or unseen").into(),
            );
        }
    };
    let shared = st.engine.shared();
    let n = shared
        .store
        .mark_all_feed(&id, mark, shared.clock.now())
        .await?
        .ok_or_else(|| unknown(&id))?;
    Ok(data(StatusCode::CREATED, json!(n)))
}
