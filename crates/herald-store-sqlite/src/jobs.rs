//! Jobs: storing and cancelling them, claiming due ones into the accept log, applying a run's
//! outcome, and the read queries of the jobs API. Write functions run inside the caller's
//! transaction.

use herald_store::*;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::accept::insert_event;
use crate::conn::backend;
use crate::rows::ts;

fn to_text<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(backend)
}

fn from_text<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn insert_job(tx: &Transaction<'_>, job: &NewJob) -> Result<()> {
    let (channel_type, chat_id) = match &job.dialog {
        Some(d) => (Some(d.channel_type.as_str()), Some(d.chat_id.as_str())),
        None => (None, None),
    };
    let now = job.created_at.as_millisecond();
    tx.prepare_cached(
        "INSERT INTO jobs (id, bot_id, channel_type, chat_id, kind, lead_id, spec, timing, status, next_run_at, source, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10, ?11, ?11)",
    )
    .map_err(backend)?
    .execute(params![
        job.id,
        job.bot_id,
        channel_type,
        chat_id,
        job.spec.kind.as_str(),
        job.spec.lead_id,
        to_text(&job.spec)?,
        to_text(&job.timing)?,
        job.next_run_at.as_millisecond(),
        job.source,
        now,
    ])
    .map_err(backend)?;
    Ok(())
}

/// Cancels a job unless it is finished; runs of it not yet started are marked cancelled.
/// `None` if the bot has no such job.
pub(crate) fn cancel_job(
    tx: &Transaction<'_>,
    bot_id: &str,
    job_id: i64,
    now: Timestamp,
) -> Result<Option<JobRecord>> {
    let now_ms = now.as_millisecond();
    let n = tx
        .prepare_cached(
            "UPDATE jobs SET status = 'cancelled', next_run_at = NULL, updated_at = ?3
             WHERE id = ?1 AND bot_id = ?2 AND status IN ('pending', 'running')",
        )
        .map_err(backend)?
        .execute(params![job_id, bot_id, now_ms])
        .map_err(backend)?;
    if n > 0 {
        tx.prepare_cached(
            "UPDATE job_runs SET outcome = 'cancelled' WHERE job_id = ?1 AND outcome = 'queued'",
        )
        .map_err(backend)?
        .execute(params![job_id])
        .map_err(backend)?;
    }
    load_job(tx, bot_id, job_id)
}

const JOB_COLUMNS: &str = "j.id, j.bot_id, j.channel_type, j.chat_id, j.spec, j.timing, j.status, j.next_run_at, j.created_at, j.updated_at, j.source, j.run_count, \
     r.id, r.job_id, r.due_at, r.claimed_at, r.started_at, r.finished_at, r.outcome, r.condition, r.error, r.dialogs";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<JobRecord>> {
    let channel_type: Option<String> = r.get(2)?;
    let chat_id: Option<String> = r.get(3)?;
    let bot_id: String = r.get(1)?;
    let spec: String = r.get(4)?;
    let timing: String = r.get(5)?;
    let status: String = r.get(6)?;
    let last_run = match r.get::<_, Option<i64>>(12)? {
        Some(_) => Some(run_columns(r, 12)?),
        None => None,
    };
    let head = (
        r.get::<_, i64>(0)?,
        r.get::<_, Option<i64>>(7)?,
        r.get::<_, i64>(8)?,
        r.get::<_, i64>(9)?,
        r.get::<_, String>(10)?,
        r.get::<_, i64>(11)?,
    );
    Ok((|| {
        let (id, next, created, updated, source, run_count) = head;
        Ok(JobRecord {
            id,
            dialog: match (channel_type, chat_id) {
                (Some(c), Some(chat)) => Some(DialogKey::new(&c, &bot_id, &chat)),
                _ => None,
            },
            bot_id,
            spec: from_text(&spec)?,
            timing: from_text(&timing)?,
            status: JobStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("job status `{status}`")))?,
            next_run_at: next.map(ts),
            created_at: ts(created),
            updated_at: ts(updated),
            source,
            run_count,
            last_run: last_run.transpose()?,
        })
    })())
}

fn run_columns(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Result<JobRun>> {
    let outcome: String = r.get(at + 6)?;
    let run = JobRun {
        id: r.get(at)?,
        job_id: r.get(at + 1)?,
        due_at: ts(r.get(at + 2)?),
        claimed_at: ts(r.get(at + 3)?),
        started_at: r.get::<_, Option<i64>>(at + 4)?.map(ts),
        finished_at: r.get::<_, Option<i64>>(at + 5)?.map(ts),
        outcome: RunOutcome::Queued,
        condition: r.get::<_, Option<bool>>(at + 7)?,
        error: r.get(at + 8)?,
        dialogs: r.get(at + 9)?,
    };
    Ok(RunOutcome::parse(&outcome)
        .map(|outcome| JobRun { outcome, ..run })
        .ok_or_else(|| StoreError::Corrupt(format!("run outcome `{outcome}`"))))
}

pub(crate) fn load_job(c: &Connection, bot_id: &str, id: i64) -> Result<Option<JobRecord>> {
    c.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs j LEFT JOIN job_runs r ON r.id = j.last_run_id
         WHERE j.id = ?1 AND j.bot_id = ?2"
    ))
    .map_err(backend)?
    .query_row(params![id, bot_id], job_row)
    .optional()
    .map_err(backend)?
    .transpose()
}

pub(crate) fn job_runs(c: &Connection, job_id: i64, limit: usize) -> Result<Vec<JobRun>> {
    let mut st = c
        .prepare_cached(
            "SELECT id, job_id, due_at, claimed_at, started_at, finished_at, outcome, condition, error, dialogs
             FROM job_runs WHERE job_id = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .map_err(backend)?;
    let rows = st
        .query_map(params![job_id, limit as i64], |r| run_columns(r, 0))
        .map_err(backend)?;
    rows.map(|r| r.map_err(backend)?).collect()
}

pub(crate) fn list_jobs(c: &Connection, bot_id: &str, f: &JobFilter) -> Result<Vec<JobRecord>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs j LEFT JOIN job_runs r ON r.id = j.last_run_id
             WHERE j.bot_id = ?1 AND j.id < ?2 AND (?3 IS NULL OR j.status = ?3)
               AND (?4 IS NULL OR j.lead_id = ?4)
             ORDER BY j.id DESC LIMIT ?5"
        ))
        .map_err(backend)?;
    let rows = st
        .query_map(
            params![
                bot_id,
                f.before_id.unwrap_or(i64::MAX),
                f.status.map(JobStatus::as_str),
                f.lead_id,
                f.limit as i64
            ],
            job_row,
        )
        .map_err(backend)?;
    rows.map(|r| r.map_err(backend)?).collect()
}

struct Due {
    id: i64,
    bot_id: String,
    dialog: Option<DialogKey>,
    spec: JobSpec,
    timing: JobTiming,
    due: i64,
}

/// Claims due jobs: for each, a run record, one event per target dialog, and the job's next due
/// time — all in the caller's transaction.
pub(crate) fn claim(tx: &Transaction<'_>, req: &ClaimRequest) -> Result<Claimed> {
    let now_ms = req.now.as_millisecond();
    let due: Vec<Due> = {
        let mut st = tx
            .prepare_cached(
                "SELECT id, bot_id, channel_type, chat_id, spec, timing, next_run_at FROM jobs
                 WHERE status = 'pending' AND next_run_at <= ?1 ORDER BY next_run_at LIMIT ?2",
            )
            .map_err(backend)?;
        let rows = st
            .query_map(params![now_ms, req.limit as i64], |r| {
                let bot_id: String = r.get(1)?;
                let dialog = match (
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ) {
                    (Some(c), Some(chat)) => Some(DialogKey::new(&c, &bot_id, &chat)),
                    _ => None,
                };
                Ok((
                    r.get::<_, i64>(0)?,
                    bot_id,
                    dialog,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, bot_id, dialog, spec, timing, due) = row.map_err(backend)?;
            out.push(Due {
                id,
                bot_id,
                dialog,
                spec: from_text(&spec)?,
                timing: from_text(&timing)?,
                due,
            });
        }
        out
    };
    let mut claimed = Claimed {
        jobs: due.len(),
        ..Claimed::default()
    };
    for job in due {
        let next = req
            .planner
            .next_due(&job.bot_id, &job.timing, ts(job.due), req.now);
        let targets = match (&job.dialog, job.spec.kind) {
            (_, JobKind::Broadcast) => audience(tx, req, &job)?,
            (Some(d), _) => vec![d.clone()],
            // A trigger without a lead runs bot-level, under a key of its own.
            (None, JobKind::Trigger) => vec![DialogKey::bot_level(&job.bot_id, job.id)],
            // A script job always has a dialog; a row without one is skipped.
            (None, JobKind::Script) => Vec::new(),
        };
        // A broadcast run is done once its audience's events are logged; a script or trigger
        // run is done when its one event is handled.
        let fanned_out = job.spec.kind == JobKind::Broadcast || targets.is_empty();
        let (outcome, finished) = if fanned_out {
            ("ok", Some(now_ms))
        } else {
            ("queued", None)
        };
        tx.prepare_cached(
            "INSERT INTO job_runs (job_id, due_at, claimed_at, finished_at, outcome, dialogs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(backend)?
        .execute(params![
            job.id,
            job.due,
            now_ms,
            finished,
            outcome,
            targets.len() as i64
        ])
        .map_err(backend)?;
        let run_id = tx.last_insert_rowid();
        let status = match (next, fanned_out) {
            (Some(_), _) => "pending",
            (None, true) => "done",
            (None, false) => "running",
        };
        tx.prepare_cached(
            "UPDATE jobs SET status = ?2, next_run_at = ?3, run_count = run_count + 1,
                             last_run_id = ?4, updated_at = ?5
             WHERE id = ?1",
        )
        .map_err(backend)?
        .execute(params![
            job.id,
            status,
            next.map(|t| t.as_millisecond()),
            run_id,
            now_ms
        ])
        .map_err(backend)?;
        let last = next.is_none();
        for dialog in targets {
            let event = NewEvent {
                id: uuid::Uuid::now_v7().to_string(),
                dialog,
                payload: EventPayload::Job {
                    job: Box::new(JobEvent {
                        job_id: job.id,
                        run_id,
                        due_at: job.due,
                        spec: job.spec.clone(),
                        last: last && !fanned_out,
                    }),
                },
                source: format!("job:{}", job.id),
                accepted_at: req.now,
            };
            let seq = insert_event(tx, &event)?;
            claimed.events.push(StoredEvent { seq, event });
        }
    }
    claimed.next_due = next_due(tx)?;
    Ok(claimed)
}

/// The dialogs a broadcast goes to: each contact's most recent dialog with the bot, if the
/// contact's tags match the broadcast's filter.
fn audience(tx: &Transaction<'_>, req: &ClaimRequest, job: &Due) -> Result<Vec<DialogKey>> {
    let mut st = tx
        .prepare_cached(
            "SELECT d.channel_type, d.chat_id, c.tags FROM dialogs d JOIN contacts c ON c.id = d.contact_id
             WHERE d.id IN (SELECT MAX(id) FROM dialogs WHERE bot_id = ?1 GROUP BY contact_id)
             ORDER BY d.id",
        )
        .map_err(backend)?;
    let rows = st
        .query_map(params![job.bot_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (channel_type, chat_id, tags) = row.map_err(backend)?;
        let tags: Vec<String> = from_text(&tags)?;
        if req
            .planner
            .in_audience(&job.bot_id, job.spec.target_id, &tags)
        {
            out.push(DialogKey::new(&channel_type, &job.bot_id, &chat_id));
        }
    }
    Ok(out)
}

pub(crate) fn next_due(c: &Connection) -> Result<Option<Timestamp>> {
    c.prepare_cached("SELECT MIN(next_run_at) FROM jobs WHERE status = 'pending'")
        .map_err(backend)?
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .map_err(backend)
        .map(|t| t.map(ts))
}

/// Records a run's outcome; a one-shot job's last run also finishes the job (a cancel that came
/// first keeps its `cancelled`).
pub(crate) fn apply_run(tx: &Transaction<'_>, run: &RunResult) -> Result<()> {
    tx.prepare_cached(
        "UPDATE job_runs SET outcome = ?2, condition = ?3, error = ?4, started_at = ?5, finished_at = ?6
         WHERE id = ?1",
    )
    .map_err(backend)?
    .execute(params![
        run.run_id,
        run.outcome.as_str(),
        run.condition,
        run.error,
        run.started_at.as_millisecond(),
        run.finished_at.as_millisecond()
    ])
    .map_err(backend)?;
    if run.last {
        let status = match run.outcome {
            RunOutcome::Error => "failed",
            RunOutcome::Cancelled => "cancelled",
            _ => "done",
        };
        tx.prepare_cached(
            "UPDATE jobs SET status = ?2, updated_at = ?3 WHERE id = ?1 AND status = 'running'",
        )
        .map_err(backend)?
        .execute(params![
            run.job_id,
            status,
            run.finished_at.as_millisecond()
        ])
        .map_err(backend)?;
    }
    Ok(())
}

pub(crate) fn lead_dialog(c: &Connection, lead_id: i64, bot_id: &str) -> Result<Option<DialogKey>> {
    c.prepare_cached(
        "SELECT channel_type, chat_id FROM dialogs WHERE contact_id = ?1 AND bot_id = ?2
         ORDER BY id DESC LIMIT 1",
    )
    .map_err(backend)?
    .query_row(params![lead_id, bot_id], |r| {
        Ok(DialogKey::new(
            &r.get::<_, String>(0)?,
            bot_id,
            &r.get::<_, String>(1)?,
        ))
    })
    .optional()
    .map_err(backend)
}

pub(crate) fn cancelled_queued(c: &Connection) -> Result<Vec<i64>> {
    let mut st = c
        .prepare_cached(
            "SELECT DISTINCT job_id FROM job_runs WHERE outcome = 'cancelled' AND finished_at IS NULL",
        )
        .map_err(backend)?;
    let rows = st.query_map([], |r| r.get(0)).map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<i64>>>()
        .map_err(backend)
}
