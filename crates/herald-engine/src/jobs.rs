//! Scheduling requests (SPEC §4), from the Bot API and from `$jobs.schedule`: the body is read
//! leniently (ids as numbers or numeric strings, tags as a comma-separated string or a list),
//! validated against the bot's definition and the schedule rules, and turned into a
//! [`NewJob`]. Every error names the field at fault.

use herald_core::BotDef;
use herald_core::schedule::{self, ScheduleIn, Timing};
use herald_core::text::json_kind;
use herald_store::{DialogKey, JobKind, JobPlanner, JobSpec, JobTiming, NewJob};
use jiff::Timestamp;
use serde_json::{Map, Value};

/// A validation error naming the request field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct JobError {
    pub field: String,
    pub message: String,
}

impl JobError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Every field SPEC §4 defines; anything else in the body is an error (a typo would otherwise
/// be silently ignored).
const FIELDS: &[&str] = &[
    "script_id",
    "script_code",
    "trigger_id",
    "trigger_code",
    "broadcast_id",
    "broadcast_code",
    "lead_id",
    "ticket_id",
    "run_at",
    "run_after_sec",
    "is_periodic",
    "cron",
    "condition_script_code",
    "script_request_params",
    "add_tags",
    "remove_tags",
];

/// A validated request, still without its id and dialog.
#[derive(Debug, Clone)]
pub struct Planned {
    pub spec: JobSpec,
    pub timing: JobTiming,
    pub next_run_at: Timestamp,
}

fn field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn int(body: &Map<String, Value>, name: &str) -> Result<Option<i64>, JobError> {
    match field(body, name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| JobError::new(name, "must be a whole number")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| JobError::new(name, format!("`{s}` is not a whole number"))),
        Some(other) => Err(JobError::new(
            name,
            format!("must be a whole number, not {}", json_kind(other)),
        )),
    }
}

fn text(body: &Map<String, Value>, name: &str) -> Result<Option<String>, JobError> {
    match field(body, name) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(JobError::new(
            name,
            format!("must be a string, not {}", json_kind(other)),
        )),
    }
}

fn boolean(body: &Map<String, Value>, name: &str) -> Result<bool, JobError> {
    match field(body, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
            Ok(n.as_i64() == Some(1))
        }
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            _ => Err(JobError::new(name, format!("`{s}` is not true or false"))),
        },
        Some(other) => Err(JobError::new(
            name,
            format!("must be true or false, not {}", json_kind(other)),
        )),
    }
}

/// The longest `ticket_id` stored, in bytes.
const MAX_TICKET: usize = 256;

/// `ticket_id`: a string or a number, kept as sent (an empty string is no ticket).
fn ticket(body: &Map<String, Value>) -> Result<Option<Value>, JobError> {
    match field(body, "ticket_id") {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() > MAX_TICKET => Err(JobError::new(
            "ticket_id",
            format!("is {} bytes long; at most {MAX_TICKET} are kept", s.len()),
        )),
        Some(v @ (Value::String(_) | Value::Number(_))) => Ok(Some(v.clone())),
        Some(other) => Err(JobError::new(
            "ticket_id",
            format!("must be a string or a number, not {}", json_kind(other)),
        )),
    }
}

/// `"a, b"` or `["a", "b"]` → `["a", "b"]`.
fn tags(body: &Map<String, Value>, name: &str) -> Result<Vec<String>, JobError> {
    let items: Vec<String> = match field(body, name) {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => s.split(',').map(str::to_owned).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(JobError::new(
                    name,
                    format!("tags must be strings, not {}", json_kind(other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => Err(JobError::new(
            name,
            format!(
                "must be comma-separated tags or a list, not {}",
                json_kind(other)
            ),
        ))?,
    };
    let mut out: Vec<String> = Vec::new();
    for t in items {
        let t = t.trim();
        if !t.is_empty() && !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

/// Which entry of bot.yaml the request targets.
fn target(bot: &BotDef, body: &Map<String, Value>) -> Result<(JobKind, i64, String), JobError> {
    let mut given = Vec::new();
    for (kind, id_field, code_field) in [
        (JobKind::Script, "script_id", "script_code"),
        (JobKind::Trigger, "trigger_id", "trigger_code"),
        (JobKind::Broadcast, "broadcast_id", "broadcast_code"),
    ] {
        let id = int(body, id_field)?;
        let code = text(body, code_field)?;
        if id.is_some() || code.is_some() {
            given.push((kind, id_field, code_field, id, code));
        }
    }
    let named = |(_, id_field, code_field, id, _): &(
        JobKind,
        &'static str,
        &'static str,
        Option<i64>,
        Option<String>,
    )| { if id.is_some() { *id_field } else { *code_field } };
    let (kind, id_field, code_field, id, code) = match given.len() {
        0 => {
            return Err(JobError::new(
                "script_id",
                "a target is required: one of script_id/script_code, trigger_id/trigger_code, \
                 broadcast_id/broadcast_code",
            ));
        }
        1 => given.remove(0),
        _ => {
            return Err(JobError::new(
                named(&given[1]),
                format!(
                    "give exactly one target; {} and {} were both given",
                    given[0].0.as_str(),
                    given[1].0.as_str()
                ),
            ));
        }
    };
    let blame = if id.is_some() { id_field } else { code_field };
    let what = match (&id, &code) {
        (Some(i), Some(c)) => format!("id {i} with code `{c}`"),
        (Some(i), None) => format!("id {i}"),
        (None, Some(c)) => format!("code `{c}`"),
        (None, None) => String::new(),
    };
    let found = match kind {
        JobKind::Script => bot
            .script_job(id, code.as_deref())
            .map(|s| (s.id, s.code.clone())),
        JobKind::Trigger => bot
            .trigger_job(id, code.as_deref())
            .map(|t| (t.id, t.code.clone())),
        JobKind::Broadcast => bot
            .broadcast_job(id, code.as_deref())
            .map(|b| (b.id, b.code.clone())),
    };
    let (id, code) = found.ok_or_else(|| {
        JobError::new(
            blame,
            format!(
                "bot `{}` has no {} with {what} (see `{}s:` in its bot.yaml)",
                bot.id,
                kind.as_str(),
                kind.as_str()
            ),
        )
    })?;
    Ok((kind, id, code))
}

/// Validates a schedule request body against `bot` at `now`.
pub fn plan(bot: &BotDef, body: &Value, now: Timestamp) -> Result<Planned, JobError> {
    let Value::Object(body) = body else {
        return Err(JobError::new(
            "body",
            format!("must be a JSON object, not {}", json_kind(body)),
        ));
    };
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(JobError::new(
            unknown,
            format!("unknown field; the fields are {}", FIELDS.join(", ")),
        ));
    }
    let (kind, target_id, target_code) = target(bot, body)?;
    let lead_id = int(body, "lead_id")?;
    if let Some(l) = lead_id
        && l < 1
    {
        return Err(JobError::new("lead_id", "must be a contact id (≥ 1)"));
    }
    if kind == JobKind::Broadcast && lead_id.is_some() {
        return Err(JobError::new(
            "lead_id",
            "a broadcast goes to every lead matching its tags; it takes no lead_id",
        ));
    }
    let run_at = text(body, "run_at")?;
    let cron = text(body, "cron")?;
    let timing = JobTiming {
        run_at,
        run_after_sec: int(body, "run_after_sec")?,
        is_periodic: boolean(body, "is_periodic")?,
        cron,
        timezone: bot.timezone.clone(),
    };
    let t = schedule::timing(&schedule_in(&timing), now)
        .map_err(|e| JobError::new(e.field, e.message))?;
    let next_run_at = schedule::first_due(&t, now)
        .map(millis)
        .ok_or_else(|| JobError::new("cron", "the expression never fires"))?;
    let condition = text(body, "condition_script_code")?;
    if let Some(src) = &condition
        && let Some(err) = herald_script::check_condition(src)
    {
        return Err(JobError::new(
            "condition_script_code",
            format!("JavaScript syntax error: {err}"),
        ));
    }
    let params = match field(body, "script_request_params") {
        None => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(JobError::new(
                    "script_request_params",
                    "must be a JSON object (or a string holding one)",
                ));
            }
        },
        Some(other) => {
            return Err(JobError::new(
                "script_request_params",
                format!("must be a JSON object, not {}", json_kind(other)),
            ));
        }
    };
    Ok(Planned {
        spec: JobSpec {
            kind,
            target_id,
            target_code,
            lead_id,
            ticket_id: ticket(body)?,
            params,
            add_tags: tags(body, "add_tags")?,
            remove_tags: tags(body, "remove_tags")?,
            condition,
        },
        timing,
        next_run_at,
    })
}

/// Storage keeps milliseconds; what a script or a caller is shown must be what is stored.
/// Rounds up, so that a job is never due before the instant asked for.
fn millis(t: Timestamp) -> Timestamp {
    let ms = t.as_millisecond();
    let up = if Timestamp::from_millisecond(ms).is_ok_and(|m| m < t) {
        ms + 1
    } else {
        ms
    };
    Timestamp::from_millisecond(up).unwrap_or(t)
}

fn schedule_in(t: &JobTiming) -> ScheduleIn<'_> {
    ScheduleIn {
        run_at: t.run_at.as_deref(),
        run_after_sec: t.run_after_sec,
        is_periodic: t.is_periodic,
        cron: t.cron.as_deref(),
        timezone: &t.timezone,
    }
}

/// Where a script schedules from: its dialog and that dialog's contact.
pub(crate) struct Here<'a> {
    pub dialog: &'a DialogKey,
    pub contact_id: Option<i64>,
}

/// Validates a schedule request of `bot_id` and decides where the job runs: a broadcast in no
/// one dialog, a job with `lead_id` in that lead's most recent dialog with the bot, a job
/// without one in `here` (a script's own dialog). Without `here` (the Bot API, a bot-level
/// script), a script job needs `lead_id` and a trigger without one runs bot-level, in no
/// dialog. The job gets its id; it is not stored.
pub(crate) async fn new_job(
    shared: &crate::Shared,
    bot_id: &str,
    body: &Value,
    here: Option<Here<'_>>,
    source: &str,
) -> Result<NewJob, crate::ScheduleFailure> {
    let bot = shared
        .project
        .bots
        .get(bot_id)
        .ok_or_else(|| JobError::new("botId", format!("no bot `{bot_id}`")))?;
    let now = shared.clock.now();
    let mut planned = plan(bot, body, now)?;
    let dialog = match (planned.spec.kind, planned.spec.lead_id, here) {
        (JobKind::Broadcast, _, _) => None,
        (_, Some(lead), here) if here.as_ref().is_none_or(|h| h.contact_id != Some(lead)) => {
            let found = shared
                .store
                .lead_dialog(lead, bot_id)
                .await
                .map_err(crate::EngineError::Store)?;
            Some(found.ok_or_else(|| {
                JobError::new(
                    "lead_id",
                    format!("contact {lead} has no dialog with bot `{bot_id}`"),
                )
            })?)
        }
        (_, _, Some(h)) => {
            planned.spec.lead_id = h.contact_id;
            Some(h.dialog.clone())
        }
        (JobKind::Trigger, None, None) => {
            for (name, tags) in [
                ("add_tags", &planned.spec.add_tags),
                ("remove_tags", &planned.spec.remove_tags),
            ] {
                if !tags.is_empty() {
                    return Err(JobError::new(
                        name,
                        "a trigger without lead_id runs bot-level: there is no lead to tag \
                         (give lead_id, or tag leads from the trigger's own jobs)",
                    )
                    .into());
                }
            }
            None
        }
        (kind, _, None) => {
            return Err(JobError::new(
                "lead_id",
                format!(
                    "a {} job runs in a lead's dialog: lead_id is required",
                    kind.as_str()
                ),
            )
            .into());
        }
    };
    Ok(planned.into_job(shared.next_job_id(), bot_id, dialog, now, source))
}

impl Planned {
    pub fn into_job(
        self,
        id: i64,
        bot_id: &str,
        dialog: Option<DialogKey>,
        now: Timestamp,
        source: &str,
    ) -> NewJob {
        NewJob {
            id,
            bot_id: bot_id.to_owned(),
            dialog,
            spec: self.spec,
            timing: self.timing,
            next_run_at: self.next_run_at,
            created_at: Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now),
            source: source.to_owned(),
        }
    }
}

/// How a job just scheduled looks once stored.
pub fn record_of(job: &NewJob) -> herald_store::JobRecord {
    herald_store::JobRecord {
        id: job.id,
        bot_id: job.bot_id.clone(),
        dialog: job.dialog.clone(),
        spec: job.spec.clone(),
        timing: job.timing.clone(),
        status: herald_store::JobStatus::Pending,
        next_run_at: Some(job.next_run_at),
        created_at: job.created_at,
        updated_at: job.created_at,
        source: job.source.clone(),
        run_count: 0,
        last_run: None,
    }
}

/// The job as the API shows it (`{id, status, run_at, ...}`).
pub fn job_json(j: &herald_store::JobRecord) -> Value {
    let mut v = serde_json::json!({
        "id": j.id,
        "bot_id": j.bot_id,
        "status": j.status.as_str(),
        "kind": j.spec.kind.as_str(),
        "target_id": j.spec.target_id,
        "target_code": j.spec.target_code,
        "lead_id": j.spec.lead_id,
        "ticket_id": j.spec.ticket_id,
        "run_at": j.next_run_at.map(|t| t.to_string()),
        "run_after_sec": j.timing.run_after_sec,
        "is_periodic": j.timing.is_periodic || j.timing.cron.is_some(),
        "cron": j.timing.cron,
        "timezone": j.timing.timezone,
        "condition_script_code": j.spec.condition,
        "script_request_params": j.spec.params,
        "add_tags": j.spec.add_tags,
        "remove_tags": j.spec.remove_tags,
        "source": j.source,
        "run_count": j.run_count,
        "created_at": j.created_at.to_string(),
        "updated_at": j.updated_at.to_string(),
    });
    if let Some(r) = &j.last_run {
        v["last_run"] = run_json(r);
    }
    if let Some(d) = &j.dialog {
        v["dialog"] = serde_json::json!({"channelType": d.channel_type, "chatId": d.chat_id});
    }
    v
}

pub fn run_json(r: &herald_store::JobRun) -> Value {
    let lateness = r
        .started_at
        .map(|s| s.duration_since(r.due_at).as_millis_f64());
    serde_json::json!({
        "id": r.id,
        "due_at": r.due_at.to_string(),
        "claimed_at": r.claimed_at.to_string(),
        "started_at": r.started_at.map(|t| t.to_string()),
        "finished_at": r.finished_at.map(|t| t.to_string()),
        "lateness_ms": lateness,
        "outcome": r.outcome.as_str(),
        "condition": r.condition,
        "error": r.error,
        "dialogs": r.dialogs,
    })
}

/// The schedule knowledge the store uses while claiming: next due times from `herald_core`'s
/// schedule math, broadcast audiences from the bots' definitions.
pub struct Planner {
    pub project: std::sync::Arc<herald_core::Project>,
}

impl JobPlanner for Planner {
    fn next_due(
        &self,
        bot_id: &str,
        timing: &JobTiming,
        due: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        // This runs inside the claim transaction: a period job needs only its period; only a
        // cron job needs its expression and zone parsed again.
        match (
            timing.cron.as_ref(),
            timing.is_periodic,
            timing.run_after_sec,
        ) {
            (None, false, _) => return None,
            (None, true, Some(secs)) => {
                let every = Timing::Every {
                    first: due,
                    every: jiff::SignedDuration::from_secs(secs),
                };
                return schedule::next_due(&every, due, now);
            }
            _ => {}
        }
        match schedule::timing(&schedule_in(timing), due) {
            Ok(t) => schedule::next_due(&t, due, now),
            Err(e) => {
                tracing::error!(bot = %bot_id, error = %e, "a stored job's timing no longer parses; it stops repeating");
                None
            }
        }
    }

    fn in_audience(&self, bot_id: &str, broadcast_id: i64, tags: &[String]) -> bool {
        self.project
            .bots
            .get(bot_id)
            .and_then(|b| b.broadcast_job(Some(broadcast_id), None))
            .is_some_and(|b| b.tags.matches(tags))
    }
}
