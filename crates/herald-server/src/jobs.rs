//! The Metabot-style Bot API for scheduled jobs (SPEC §4):
//! `POST /bots/{botId}/jobs/schedule`, `GET /bots/{botId}/jobs`, `GET /bots/{botId}/jobs/{id}`,
//! `DELETE /bots/{botId}/jobs/{id}`. Answers carry `success` like Metabot's; validation errors
//! are 422 and name the field; nothing is stored on an error.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use herald_engine::jobs::{job_json, run_json};
use herald_engine::{CancelOutcome, ScheduleFailure};
use herald_store::{JobFilter, JobStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::require_bot;
use crate::error::{ApiError, ApiJson, ApiQuery};

/// Runs shown with a job.
const RUNS_SHOWN: usize = 50;
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

fn known_bot(st: &AppState, headers: &HeaderMap, bot_id: &str) -> Result<(), ApiError> {
    require_bot(st, headers, bot_id)?;
    if !st.engine.shared().project.bots.contains_key(bot_id) {
        return Err(ApiError::not_found(format!("no bot `{bot_id}`")));
    }
    Ok(())
}

fn job_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(format!("no job `{raw}`")))
}

pub async fn schedule(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(bot_id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    known_bot(&st, &headers, &bot_id)?;
    match st.engine.schedule_job(&bot_id, &body).await {
        Ok(job) => Ok((
            StatusCode::CREATED,
            Json(json!({"success": true, "job": job_json(&job)})),
        )),
        Err(ScheduleFailure::Invalid(e)) => Err(ApiError::unprocessable(&e.field, e.message)),
        Err(ScheduleFailure::Engine(e)) => Err(e.into()),
    }
}

pub async fn show(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((bot_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    known_bot(&st, &headers, &bot_id)?;
    let num = job_id(&id)?;
    let (job, runs) = st
        .engine
        .shared()
        .store
        .get_job(&bot_id, num, RUNS_SHOWN)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job `{id}` of bot `{bot_id}`")))?;
    let mut shown = job_json(&job);
    shown["runs"] = runs.iter().map(run_json).collect();
    Ok(Json(json!({"success": true, "job": shown})))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    lead_id: Option<String>,
    limit: Option<String>,
    /// The `next_before` of the previous page.
    before: Option<String>,
}

fn number(name: &str, raw: &Option<String>) -> Result<Option<i64>, ApiError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid_field(name, format!("`{s}` is not a whole number"))),
    }
}

pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(bot_id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    known_bot(&st, &headers, &bot_id)?;
    let status = match q.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_field(
                "status",
                format!("`{s}` is not one of pending, running, done, failed, cancelled"),
            )
        })?),
    };
    let limit =
        number("limit", &q.limit)?.map_or(DEFAULT_PAGE, |n| n.clamp(1, MAX_PAGE as i64) as usize);
    let filter = JobFilter {
        status,
        lead_id: number("lead_id", &q.lead_id)?,
        before_id: number("before", &q.before)?,
        limit,
    };
    let jobs = st.engine.shared().store.list_jobs(&bot_id, &filter).await?;
    let next = (jobs.len() == limit)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    Ok(Json(json!({
        "success": true,
        "jobs": jobs.iter().map(job_json).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

pub async fn cancel(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((bot_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    known_bot(&st, &headers, &bot_id)?;
    let num = job_id(&id)?;
    let job = match st.engine.cancel_job(&bot_id, num).await? {
        CancelOutcome::Cancelled(job) => job,
        CancelOutcome::NotFound => {
            return Err(ApiError::not_found(format!(
                "no job `{id}` of bot `{bot_id}`"
            )));
        }
        CancelOutcome::RunUnderWay => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_running",
                format!(
                    "a run of job {num} is under way; it finishes first (retry to stop a periodic job's later runs)"
                ),
            ));
        }
        CancelOutcome::Finished(job) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_finished",
                format!(
                    "job {num} is already {}; only pending or periodic jobs can be cancelled",
                    job.status.as_str()
                ),
            ));
        }
    };
    Ok(Json(json!({"success": true, "job": job_json(&job)})))
}
