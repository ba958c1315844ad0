//! `POST /v1/events/trigger` (and `/bulk`, `/broadcast`), `DELETE /v1/events/trigger/{id}`,
//! and the activity records `GET /v1/notifications`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_engine::{TriggerError, Triggered};
use herald_store::{IdempotencyKey, NotificationRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse::{MAX_RECIPIENTS, NovuJson, NovuQuery, trigger_request};
use super::{NovuError, NovuResult, data};
use crate::AppState;
use crate::error::ApiError;

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::invalid_field("Idempotency-Key", "must be visible ASCII"))?
                .trim();
            if k.is_empty() || k.len() > 255 {
                return Err(ApiError::invalid_field(
                    "Idempotency-Key",
                    "must be 1 to 255 characters",
                ));
            }
            Ok(Some(k.to_owned()))
        }
    }
}

fn trigger_error(e: TriggerError) -> ApiError {
    match e {
        TriggerError::WorkflowNotFound(name) => {
            let mut err = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "workflow_not_found",
                "workflow_not_found",
            );
            err.details = Some(json!({"field": "name", "workflow": name}));
            err
        }
        TriggerError::Payload(errors) => {
            let mut err = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "payload_invalid",
                format!("payload: {}", errors.join("; ")),
            );
            err.details = Some(json!({"field": "payload", "errors": errors}));
            err
        }
        TriggerError::TopicNotFound(key) => {
            let mut err = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "topic_not_found",
                format!("to: topic `{key}` does not exist"),
            );
            err.details = Some(json!({"field": "to", "topicKey": key}));
            err
        }
        TriggerError::Engine(e) => e.into(),
    }
}

/// The trigger answer of Novu: `processed` when at least one subscriber's run was stored.
fn result_json(t: &Triggered) -> Value {
    let status = if t.runs > 0 {
        "processed"
    } else {
        "no_recipients"
    };
    json!({"acknowledged": true, "status": status, "transactionId": t.transaction_id})
}

async fn run_trigger(
    st: &AppState,
    headers: &HeaderMap,
    body: &serde_json::Map<String, Value>,
    broadcast: bool,
) -> NovuResult<Response> {
    let key = idempotency_key(headers)?.map(|key| IdempotencyKey {
        scope: "trigger".into(),
        key,
    });
    let req = trigger_request(body, broadcast, key)?;
    let outcome = st.engine.trigger(req).await.map_err(trigger_error)?;
    let mut resp = data(StatusCode::CREATED, result_json(&outcome));
    if outcome.repeated {
        resp.headers_mut()
            .insert("idempotency-replay", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

#[tracing::instrument(skip_all)]
pub async fn trigger(
    State(st): State<AppState>,
    headers: HeaderMap,
    NovuJson(body): NovuJson,
) -> NovuResult<Response> {
    run_trigger(&st, &headers, &body, false).await
}

#[tracing::instrument(skip_all)]
pub async fn broadcast(
    State(st): State<AppState>,
    headers: HeaderMap,
    NovuJson(body): NovuJson,
) -> NovuResult<Response> {
    run_trigger(&st, &headers, &body, true).await
}

/// Every event is validated first: one bad event refuses the whole bulk (422 naming it) and
/// nothing is stored. Valid events are stored together.
///
/// With an `Idempotency-Key`, event `i` is stored under the key `<key>#<i>` (in a scope of its
/// own, so no single trigger's key can collide with it): a repeated bulk
/// answers with the first results and stores nothing new, and a bulk that was cut off half-way
/// (a crash before the answer) stores only the events it had not stored yet.
#[tracing::instrument(skip_all)]
pub async fn bulk(
    State(st): State<AppState>,
    headers: HeaderMap,
    NovuJson(body): NovuJson,
) -> NovuResult<Response> {
    let key = idempotency_key(&headers)?;
    let events = match body.get("events") {
        Some(Value::Array(list)) => list,
        _ => return Err(ApiError::unprocessable("events", "must be a list of triggers").into()),
    };
    if events.is_empty() || events.len() > MAX_RECIPIENTS {
        return Err(ApiError::unprocessable(
            "events",
            format!("has {} triggers; send 1 to {MAX_RECIPIENTS}", events.len()),
        )
        .into());
    }
    let mut requests = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let Value::Object(o) = e else {
            return Err(
                ApiError::unprocessable(&format!("events[{i}]"), "must be an object").into(),
            );
        };
        let event_key = key.as_ref().map(|k| IdempotencyKey {
            scope: "trigger-bulk".into(),
            key: format!("{k}#{i}"),
        });
        let req = trigger_request(o, false, event_key).map_err(|mut err| {
            err.message = format!("events[{i}].{}", err.message);
            err
        })?;
        let checked = match st.engine.check_trigger(&req) {
            Ok(()) => st.engine.check_topics(&req).await,
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            let mut err = trigger_error(e);
            if let Some(Value::Object(d)) = err.details.as_mut()
                && let Some(Value::String(field)) = d.get_mut("field")
            {
                *field = format!("events[{i}].{field}");
            }
            if err.message.starts_with("payload:") {
                err.message = format!("events[{i}].{}", err.message);
            }
            return Err(err.into());
        }
        requests.push(req);
    }
    let results =
        futures_util::future::join_all(requests.into_iter().map(|r| st.engine.trigger(r))).await;
    let mut out = Vec::with_capacity(results.len());
    let mut all_repeated = true;
    for r in results {
        all_repeated &= matches!(&r, Ok(o) if o.repeated);
        out.push(match r {
            Ok(o) => result_json(&o),
            Err(TriggerError::Engine(e)) => return Err(NovuError(e.into())),
            Err(e) => {
                let err = trigger_error(e);
                json!({"acknowledged": true, "status": "error", "error": [err.message]})
            }
        });
    }
    let mut resp = data(StatusCode::CREATED, Value::Array(out));
    if all_repeated {
        resp.headers_mut()
            .insert("idempotency-replay", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

pub async fn cancel(
    State(st): State<AppState>,
    Path(transaction_id): Path<String>,
) -> NovuResult<Response> {
    let cancelled = st.engine.cancel_trigger(&transaction_id).await?;
    Ok(data(StatusCode::OK, Value::Bool(cancelled)))
}

#[derive(Deserialize)]
pub struct ActivityQuery {
    #[serde(rename = "transactionId")]
    transaction_id: Option<String>,
    page: Option<usize>,
    limit: Option<usize>,
}

/// An activity record: the trigger and, per subscriber, what each step did.
pub fn activity_json(n: &NotificationRecord) -> Value {
    json!({
        "_id": n.id.to_string(),
        "transactionId": n.transaction_id,
        "templateIdentifier": n.workflow,
        "payload": n.payload,
        "actor": n.actor,
        "createdAt": n.created_at.to_string(),
        "subscribers": n.runs.iter().map(|r| json!({
            "subscriberId": r.subscriber_id,
            "leadId": r.contact_id,
            "status": r.status.as_str(),
            "nextStep": r.step,
            "nextAt": r.next_at.map(|t| t.to_string()),
            "digestOf": r.digest_of,
            "steps": r.records,
            "updatedAt": r.updated_at.to_string(),
        })).collect::<Vec<_>>(),
    })
}

pub async fn activity(
    State(st): State<AppState>,
    NovuQuery(q): NovuQuery<ActivityQuery>,
) -> NovuResult<Response> {
    let store = &st.engine.shared().store;
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let page = q.page.unwrap_or(0);
    let records = match &q.transaction_id {
        Some(tx) => store.get_notification(tx).await?.into_iter().collect(),
        None => store.list_notifications(page, limit).await?,
    };
    let has_more = q.transaction_id.is_none() && records.len() == limit;
    let body = json!({
        "data": records.iter().map(activity_json).collect::<Vec<_>>(),
        "page": page,
        "pageSize": limit,
        "hasMore": has_more,
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}
