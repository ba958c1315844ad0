//! Scheduled jobs (SPEC §4) as they cross the storage boundary.
//!
//! A job waits in storage until it is due. The scheduler then *claims* due jobs: in one
//! transaction each due time becomes a run record and one event per target dialog in the accept
//! log, and the job moves on (its next due time, or `running` for a one-shot). From there a run
//! is an ordinary event: handled once by its dialog's worker, its effects committed together with
//! the run's outcome and the event's handled mark, replayed after a crash. The claim is the lease:
//! it is a transactional hand-over into the durable log, so no timer has to expire before another
//! node may take over a run.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DialogKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Script,
    Trigger,
    Broadcast,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Script => "script",
            JobKind::Trigger => "trigger",
            JobKind::Broadcast => "broadcast",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for its next due time.
    Pending,
    /// A one-shot job whose run is claimed and not finished.
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

/// What a job does when it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub kind: JobKind,
    /// The `id` of the script, trigger or broadcast in bot.yaml.
    pub target_id: i64,
    /// Its code (the key in bot.yaml).
    pub target_code: String,
    /// The contact the job runs for (`None` for broadcasts, for bot-level triggers, and for
    /// jobs a script scheduled in a dialog whose contact was not stored yet).
    pub lead_id: Option<i64>,
    /// `ticket_id` as the client sent it: a string or a number, passed to scripts unchanged.
    pub ticket_id: Option<Value>,
    /// `script_request_params`, visible as `$request.params`.
    pub params: Value,
    pub add_tags: Vec<String>,
    pub remove_tags: Vec<String>,
    /// `condition_script_code`: a JavaScript body; the run happens only if it returns `true`.
    pub condition: Option<String>,
}

/// The timing fields as the client gave them; the schedule is derived from them again at each
/// run (see `herald_core::schedule`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobTiming {
    pub run_at: Option<String>,
    pub run_after_sec: Option<i64>,
    pub is_periodic: bool,
    pub cron: Option<String>,
    /// The IANA zone `run_at` and `cron` are read in (the bot's `timezone`).
    pub timezone: String,
}

/// A job on its way into storage. The id is assigned by the engine so that a script sees it at
/// once, before its turn commits.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: i64,
    pub bot_id: String,
    /// The dialog it runs in (`None` for a broadcast: every matching lead's dialog; and for a
    /// bot-level trigger, which runs in no dialog, under [`DialogKey::bot_level`]).
    pub dialog: Option<DialogKey>,
    pub spec: JobSpec,
    pub timing: JobTiming,
    pub next_run_at: Timestamp,
    pub created_at: Timestamp,
    /// `api` or `script`.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Claimed: its event is in the log, not handled yet.
    Queued,
    Ok,
    /// The condition did not return `true`.
    Skipped,
    Error,
    /// The job was cancelled before this run started.
    Cancelled,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Queued => "queued",
            RunOutcome::Ok => "ok",
            RunOutcome::Skipped => "skipped",
            RunOutcome::Error => "error",
            RunOutcome::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => RunOutcome::Queued,
            "ok" => RunOutcome::Ok,
            "skipped" => RunOutcome::Skipped,
            "error" => RunOutcome::Error,
            "cancelled" => RunOutcome::Cancelled,
            _ => return None,
        })
    }
}

/// One due time of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    pub id: i64,
    pub job_id: i64,
    pub due_at: Timestamp,
    pub claimed_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub outcome: RunOutcome,
    /// What the condition returned (`None`: the job has none, or the run did not get that far).
    pub condition: Option<bool>,
    pub error: Option<String>,
    /// Dialogs the run was sent to (a broadcast's audience; 1 otherwise).
    pub dialogs: i64,
}

#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: i64,
    pub bot_id: String,
    pub dialog: Option<DialogKey>,
    pub spec: JobSpec,
    pub timing: JobTiming,
    pub status: JobStatus,
    pub next_run_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub source: String,
    pub run_count: i64,
    pub last_run: Option<JobRun>,
}

/// The event a claimed run raises in its dialog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: i64,
    pub run_id: i64,
    /// Milliseconds since the epoch.
    pub due_at: i64,
    pub spec: JobSpec,
    /// The job has no later run: finishing this one finishes the job.
    pub last: bool,
}

/// The schedule knowledge the store needs while claiming, supplied by the engine (the store
/// knows neither cron nor bot definitions).
pub trait JobPlanner: Send + Sync {
    /// After a run due at `due` and claimed at `now`: the next due time, `None` when the job
    /// has no more runs.
    fn next_due(
        &self,
        bot_id: &str,
        timing: &JobTiming,
        due: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp>;

    /// Whether a contact with `tags` receives broadcast `broadcast_id` of `bot_id`.
    fn in_audience(&self, bot_id: &str, broadcast_id: i64, tags: &[String]) -> bool;
}

/// Claim every job due at `now` (at most `limit` of them).
#[derive(Clone)]
pub struct ClaimRequest {
    pub now: Timestamp,
    pub limit: usize,
    pub planner: std::sync::Arc<dyn JobPlanner>,
}

impl std::fmt::Debug for ClaimRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimRequest")
            .field("now", &self.now)
            .field("limit", &self.limit)
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Claimed {
    /// Jobs claimed.
    pub jobs: usize,
    /// Run events logged, in log order.
    pub events: Vec<crate::StoredEvent>,
    /// The earliest due time still waiting after this claim.
    pub next_due: Option<Timestamp>,
}

/// The outcome of a job's run, applied with the run's dialog changes.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub run_id: i64,
    pub job_id: i64,
    pub outcome: RunOutcome,
    pub condition: Option<bool>,
    pub error: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// Finishing this run finishes the job (a one-shot script or trigger job).
    pub last: bool,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub lead_id: Option<i64>,
    /// Only jobs with an id below this one (pages go from newest to oldest).
    pub before_id: Option<i64>,
    pub limit: usize,
}
