//! Topics (`/v1/topics…`): named groups of subscribers a trigger can address.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_store::{TopicCreate, TopicDelete};
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse::{NovuJson, NovuQuery, opt_str};
use super::{NovuResult, data};
use crate::AppState;
use crate::error::ApiError;

fn unknown(key: &str) -> ApiError {
    ApiError::not_found(format!("Topic not found for key {key}"))
}

pub async fn create(State(st): State<AppState>, NovuJson(body): NovuJson) -> NovuResult<Response> {
    let key = opt_str(&body, "key")?
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| ApiError::unprocessable("key", "is required"))?;
    super::parse::ident("key", &key)?;
    let name = opt_str(&body, "name")?.unwrap_or_else(|| key.clone());
    let shared = st.engine.shared();
    match shared
        .store
        .create_topic(&key, &name, shared.clock.now())
        .await?
    {
        TopicCreate::Created(id) => Ok(data(
            StatusCode::CREATED,
            json!({"_id": id.to_string(), "key": key}),
        )),
        TopicCreate::Exists(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "topic_exists",
            format!("a topic with the key `{key}` exists already"),
        )
        .into()),
    }
}

pub async fn show(State(st): State<AppState>, Path(key): Path<String>) -> NovuResult<Response> {
    let (topic, members) = st
        .engine
        .shared()
        .store
        .get_topic(&key)
        .await?
        .ok_or_else(|| unknown(&key))?;
    Ok(data(
        StatusCode::OK,
        json!({"_id": topic.id.to_string(), "key": topic.key, "name": topic.name, "subscribers": members}),
    ))
}

#[derive(Deserialize)]
pub struct TopicQuery {
    page: Option<usize>,
    #[serde(rename = "pageSize")]
    page_size: Option<usize>,
    key: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    NovuQuery(q): NovuQuery<TopicQuery>,
) -> NovuResult<Response> {
    let page = q.page.unwrap_or(0);
    let size = q.page_size.unwrap_or(10).clamp(1, 100);
    let (topics, total) = st
        .engine
        .shared()
        .store
        .list_topics(page, size, q.key.as_deref())
        .await?;
    let body = json!({
        "data": topics.iter().map(|t| json!({"_id": t.id.to_string(), "key": t.key, "name": t.name})).collect::<Vec<_>>(),
        "page": page,
        "pageSize": size,
        "totalCount": total,
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// Most subscriber ids one request adds to or removes from a topic.
const MAX_MEMBERS: usize = 500;

fn ids(body: &serde_json::Map<String, Value>) -> Result<Vec<String>, ApiError> {
    match body.get("subscribers") {
        Some(Value::Array(list)) if list.len() > MAX_MEMBERS => Err(ApiError::unprocessable(
            "subscribers",
            format!("has {} ids; send at most {MAX_MEMBERS}", list.len()),
        )),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(ApiError::unprocessable(
                    &format!("subscribers[{i}]"),
                    "must be a subscriber id",
                )),
            })
            .collect(),
        _ => Err(ApiError::unprocessable(
            "subscribers",
            "must be a list of subscriber ids",
        )),
    }
}

pub async fn add(
    State(st): State<AppState>,
    Path(key): Path<String>,
    NovuJson(body): NovuJson,
) -> NovuResult<Response> {
    let list = ids(&body)?;
    let (ok, missing) = st
        .engine
        .shared()
        .store
        .add_topic_subscribers(&key, &list)
        .await?
        .ok_or_else(|| unknown(&key))?;
    let mut out = json!({"succeeded": ok});
    if !missing.is_empty() {
        out["failed"] = json!({"notFound": missing});
    }
    Ok(data(StatusCode::OK, out))
}

pub async fn remove_subscribers(
    State(st): State<AppState>,
    Path(key): Path<String>,
    NovuJson(body): NovuJson,
) -> NovuResult<Response> {
    let list = ids(&body)?;
    if st
        .engine
        .shared()
        .store
        .remove_topic_subscribers(&key, &list)
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(unknown(&key).into())
    }
}

pub async fn remove(State(st): State<AppState>, Path(key): Path<String>) -> NovuResult<Response> {
    match st.engine.shared().store.delete_topic(&key).await? {
        TopicDelete::Deleted => Ok(StatusCode::NO_CONTENT.into_response()),
        TopicDelete::NotFound => Err(unknown(&key).into()),
        TopicDelete::HasSubscribers => Err(ApiError::new(
            StatusCode::CONFLICT,
            "topic_has_subscribers",
            format!("topic `{key}` still has subscribers; remove them first"),
        )
        .into()),
    }
}
