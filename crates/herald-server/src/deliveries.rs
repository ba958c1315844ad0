//! The outbox as operators see it: `GET /api/v1/deliveries?status=dead` lists email and webhook
//! deliveries with their attempts and last error; `POST /api/v1/deliveries/{id}/retry` sends a
//! dead letter again. Admin token only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use herald_store::{Delivery, DeliveryRetry, DeliveryStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Caller, caller};
use crate::error::{ApiError, ApiQuery};

fn admin(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match caller(st, headers)? {
        Caller::Admin => Ok(()),
        Caller::Bot(_) => Err(ApiError::unauthorized()),
    }
}

/// A delivery without its webhook secret.
pub fn delivery_json(d: &Delivery) -> Value {
    let mut request = d.request.clone();
    if let Some(o) = request.as_object_mut()
        && o.get("secret").is_some_and(|s| !s.is_null())
    {
        o.insert("secret".into(), Value::String("<hidden>".into()));
    }
    json!({
        "id": d.id,
        "kind": d.kind.as_str(),
        "runId": d.run_id,
        "step": d.step,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "nextAttemptAt": d.next_attempt_at.map(|t| t.to_string()),
        "lastError": d.last_error,
        "request": request,
        "createdAt": d.created_at.to_string(),
        "updatedAt": d.updated_at.to_string(),
    })
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers)?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_field("status", "must be pending, delivered or dead")
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = st
        .engine
        .shared()
        .store
        .list_deliveries(status, limit)
        .await?;
    Ok(Json(json!({
        "deliveries": rows.iter().map(delivery_json).collect::<Vec<_>>(),
    })))
}

pub async fn retry(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin(&st, &headers)?;
    let num: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no delivery `{id}`")))?;
    let shared = st.engine.shared();
    match shared.store.retry_delivery(num, shared.clock.now()).await? {
        DeliveryRetry::Retried => {
            st.engine.wake_deliveries();
            Ok(Json(json!({"status": "pending", "id": num})))
        }
        DeliveryRetry::NotDead => Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_dead",
            format!("delivery `{id}` is not a dead letter"),
        )),
        DeliveryRetry::Unknown => Err(ApiError::not_found(format!("no delivery `{id}`"))),
    }
}
