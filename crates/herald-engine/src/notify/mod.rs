//! Notifications (SPEC §5): triggers in, workflow runs out.
//!
//! ```text
//! trigger ─▶ writer: notification + one run per recipient (one transaction) ─▶ 201
//! executor: claim due runs ─▶ renderer thread (workflow JS) ─▶ RunProgress
//!        ─▶ writer: feed entries, chat messages/events, outbox rows, next step ─▶ publish
//! outbox ─▶ delivery loop (email, webhook) with retries and dead letters
//! ```
//! Claims and progress go through the group-commit writer like every other write, so a broadcast
//! to 100,000 subscribers costs a few hundred transactions, not 100,000. A run claimed but not
//! committed when the process dies is reset to pending at the next start and runs its steps
//! again; nothing of those steps was committed, so nothing is delivered twice from the feed or
//! the dialogs, and outbox rows carry a stable id for the receiver's de-duplication.

pub(crate) mod delivery;
mod render;

use std::sync::Arc;
use std::time::Duration;

use herald_core::Project;
use herald_core::workflow::StepKind;
use herald_script::Sandbox;
use herald_store::{
    AcceptItem, AcceptOutcome, ClaimedRun, IdempotencyKey, NewTrigger, Recipient, RunProgress,
    SubscriberUpsert, TriggerOutcome,
};
use jiff::Timestamp;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::scheduler::sleep_until_due;
use crate::writer::{AcceptRequest, submit};
use crate::{Engine, EngineError, Shared};

/// Most runs claimed in one transaction.
const CLAIM_BATCH: usize = 1024;
/// Most runs claimed and not yet committed.
const MAX_RUNS_IN_FLIGHT: usize = 4096;

/// A subscriber as a trigger or the API names it.
#[derive(Debug, Clone, Default)]
pub struct SubscriberIn {
    pub subscriber_id: String,
    /// Profile fields to set (a `null` removes one).
    pub profile: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone)]
pub enum RecipientIn {
    Subscriber(SubscriberIn),
    Topic(String),
}

/// A validated trigger request (SPEC §5).
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    pub workflow: String,
    /// `None`: a broadcast to every subscriber.
    pub to: Option<Vec<RecipientIn>>,
    pub payload: Value,
    pub overrides: Value,
    pub transaction_id: Option<String>,
    pub actor: Option<SubscriberIn>,
    pub tenant: Option<Value>,
    /// The `Idempotency-Key` the trigger is stored under (scope `trigger`, or `trigger-bulk`
    /// for the events of a bulk).
    pub idempotency: Option<IdempotencyKey>,
}

/// A stored trigger: its transaction id, how many subscribers it reaches, and whether it was a
/// repeat (a transaction id or idempotency key seen before: nothing new was stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triggered {
    pub transaction_id: String,
    pub runs: u64,
    pub repeated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("workflow_not_found")]
    WorkflowNotFound(String),
    #[error("the payload does not match the workflow's payloadSchema")]
    Payload(Vec<String>),
    #[error("topic `{0}` does not exist")]
    TopicNotFound(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn upsert(s: SubscriberIn, shared: &Shared, now: Timestamp) -> SubscriberUpsert {
    SubscriberUpsert {
        subscriber_id: s.subscriber_id,
        profile: s.profile,
        new_id: shared.next_contact_id(),
        now,
    }
}

impl Engine {
    /// Checks a trigger without storing anything: the workflow exists and the payload satisfies
    /// its `payloadSchema`.
    pub fn check_trigger(&self, req: &TriggerRequest) -> Result<(), TriggerError> {
        let wf = self
            .shared()
            .project
            .workflows
            .get(&req.workflow)
            .ok_or_else(|| TriggerError::WorkflowNotFound(req.workflow.clone()))?;
        wf.check_payload(&req.payload)
            .map_err(TriggerError::Payload)
    }

    /// Checks that every topic a trigger names exists, without storing anything. [`Engine::trigger`]
    /// checks this again in its transaction; a bulk calls it first for every event so that one
    /// unknown topic refuses the whole bulk.
    pub async fn check_topics(&self, req: &TriggerRequest) -> Result<(), TriggerError> {
        for r in req.to.iter().flatten() {
            if let RecipientIn::Topic(key) = r {
                let (_, found) = self
                    .shared()
                    .store
                    .list_topics(0, 1, Some(key))
                    .await
                    .map_err(EngineError::from)?;
                if found == 0 {
                    return Err(TriggerError::TopicNotFound(key.clone()));
                }
            }
        }
        Ok(())
    }

    /// Validates ([`Engine::check_trigger`]) and stores a trigger; a topic in `to` must exist.
    /// Nothing is stored when the answer is an error.
    pub async fn trigger(&self, req: TriggerRequest) -> Result<Triggered, TriggerError> {
        self.check_trigger(&req)?;
        let shared = self.shared();
        let now = shared.clock.now();
        let to = req.to.map(|list| {
            list.into_iter()
                .map(|r| match r {
                    RecipientIn::Subscriber(s) => Recipient::Subscriber(upsert(s, shared, now)),
                    RecipientIn::Topic(k) => Recipient::Topic(k),
                })
                .collect()
        });
        let trigger = NewTrigger {
            transaction_id: req
                .transaction_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            workflow: req.workflow,
            payload: req.payload,
            overrides: req.overrides,
            actor: req.actor.map(|a| upsert(a, shared, now)),
            tenant: req.tenant,
            to,
            idempotency: req.idempotency,
            now,
        };
        match self.accept(AcceptItem::Trigger(Box::new(trigger))).await? {
            AcceptOutcome::Trigger(TriggerOutcome::TopicNotFound(k)) => {
                Err(TriggerError::TopicNotFound(k))
            }
            AcceptOutcome::Trigger(TriggerOutcome::Stored {
                transaction_id,
                runs,
                ..
            }) => Ok(Triggered {
                transaction_id,
                runs,
                repeated: false,
            }),
            AcceptOutcome::Trigger(TriggerOutcome::Repeated {
                transaction_id,
                runs,
            }) => Ok(Triggered {
                transaction_id,
                runs,
                repeated: true,
            }),
            other => Err(EngineError::Startup(format!(
                "unexpected answer to a trigger: {other:?}"
            ))
            .into()),
        }
    }

    /// Cancels what is pending of a trigger; whether anything was.
    pub async fn cancel_trigger(&self, transaction_id: &str) -> Result<bool, EngineError> {
        let item = AcceptItem::CancelTrigger {
            transaction_id: transaction_id.to_owned(),
            now: self.shared().clock.now(),
        };
        match self.accept(item).await? {
            AcceptOutcome::TriggerCancelled(b) => Ok(b),
            other => Err(EngineError::Startup(format!(
                "unexpected answer to a cancel: {other:?}"
            ))),
        }
    }

    /// Wakes the delivery loop (a dead letter was put back).
    pub fn wake_deliveries(&self) {
        self.shared().delivery_wake.notify_one();
    }

    /// Creates or updates a subscriber (a new one gets its contact id from the engine).
    pub async fn upsert_subscriber(
        &self,
        s: SubscriberIn,
        mode: herald_store::UpsertMode,
    ) -> Result<Option<(herald_store::Subscriber, bool)>, EngineError> {
        let shared = self.shared();
        let u = upsert(s, shared, shared.clock.now());
        Ok(shared.store.upsert_subscriber(u, mode).await?)
    }

    /// Creates or updates many subscribers in one transaction, in order.
    pub async fn upsert_subscribers(
        &self,
        list: Vec<SubscriberIn>,
    ) -> Result<Vec<(herald_store::Subscriber, bool)>, EngineError> {
        let shared = self.shared();
        let now = shared.clock.now();
        let upserts = list.into_iter().map(|s| upsert(s, shared, now)).collect();
        Ok(shared.store.upsert_subscribers(upserts).await?)
    }
}

/// The executor: claims due runs, has them rendered, commits their progress.
pub(crate) async fn run(shared: Arc<Shared>, accept: mpsc::Sender<AcceptRequest>) {
    match shared.store.reset_running_runs().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            runs = n,
            "resuming notification runs claimed before the last stop"
        ),
        Err(e) => tracing::error!(error = %e, "cannot reset claimed notification runs"),
    }
    let (render_tx, render_rx) = mpsc::unbounded_channel::<(ClaimedRun, OwnedSemaphorePermit)>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(RunProgress, OwnedSemaphorePermit)>();
    let project = shared.project.clone();
    let limits = shared.config.script_limits;
    let clock = shared.clock.clone();
    let renderer = std::thread::Builder::new()
        .name("herald-notify".into())
        .spawn(move || renderer(project, limits, clock, render_rx, done_tx));
    if let Err(e) = renderer {
        tracing::error!(error = %e, "cannot start the notification renderer");
        return;
    }
    let committer = {
        let (shared, accept) = (shared.clone(), accept.clone());
        async move {
            while let Some((progress, permit)) = done_rx.recv().await {
                let (shared, accept) = (shared.clone(), accept.clone());
                tokio::spawn(async move {
                    commit_progress(&shared, &accept, progress).await;
                    drop(permit);
                });
            }
        }
    };
    let claimer = claim_loop(shared, accept, render_tx);
    tokio::join!(committer, claimer);
}

async fn commit_progress(shared: &Shared, accept: &mpsc::Sender<AcceptRequest>, p: RunProgress) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match submit(shared, accept, AcceptItem::RunProgress(Box::new(p.clone()))).await {
            Ok(AcceptOutcome::Progress(applied)) => {
                metrics::counter!("herald_notification_steps_total")
                    .increment(p.records.len() as u64);
                if let Some(due) = applied.due {
                    shared.notify_alarm.due_at(due);
                }
                if applied.deliveries > 0 {
                    shared.delivery_wake.notify_one();
                }
                return;
            }
            Ok(other) => {
                tracing::error!(?other, "unexpected answer to a run's progress");
                return;
            }
            Err(EngineError::ShuttingDown) => return,
            Err(e) => {
                // The run stays claimed; retry, else the next start resets and re-runs it.
                tracing::error!(error = %e, run = p.run_id, retry_in = ?backoff, "cannot commit a run's progress");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn claim_loop(
    shared: Arc<Shared>,
    accept: mpsc::Sender<AcceptRequest>,
    render_tx: mpsc::UnboundedSender<(ClaimedRun, OwnedSemaphorePermit)>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_RUNS_IN_FLIGHT));
    let mut jumps = shared.clock.jumps();
    let mut backoff = Duration::from_millis(100);
    loop {
        let room = in_flight.available_permits().min(CLAIM_BATCH);
        if room == 0 {
            // Every slot is taken: wait for a run to finish rather than poll.
            if in_flight.acquire().await.is_err() {
                return;
            }
            continue;
        }
        // Chat steps raise bot events that the workers handle after the run's progress commits.
        shared.wait_for_workers().await;
        shared.notify_alarm.sleeping_until(i64::MAX);
        let now = shared.clock.now();
        let item = AcceptItem::ClaimRuns { now, limit: room };
        let (runs, next) = match submit(&shared, &accept, item).await {
            Ok(AcceptOutcome::Runs { runs, next_due }) => (runs, next_due),
            Ok(other) => {
                tracing::error!(?other, "unexpected answer to a run claim");
                return;
            }
            Err(EngineError::ShuttingDown) => return,
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff, "cannot claim notification runs");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let claimed = runs.len();
        for run in runs {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            if render_tx.send((run, permit)).is_err() {
                return;
            }
        }
        if claimed >= room {
            continue;
        }
        sleep_until_due(&shared.notify_alarm, &*shared.clock, next, &mut jumps).await;
    }
}

/// The renderer thread: owns a sandbox with every workflow compiled.
fn renderer(
    project: Arc<Project>,
    limits: herald_script::Limits,
    clock: Arc<dyn crate::Clock>,
    mut rx: mpsc::UnboundedReceiver<(ClaimedRun, OwnedSemaphorePermit)>,
    tx: mpsc::UnboundedSender<(RunProgress, OwnedSemaphorePermit)>,
) {
    let mut sandbox = match Sandbox::new(limits) {
        Ok(sb) => sb,
        Err(e) => {
            tracing::error!(error = %e, "the notification renderer has no JavaScript engine");
            return;
        }
    };
    for wf in project.workflows.values() {
        if let Err(diags) = sandbox.load_workflow(wf) {
            for d in diags {
                tracing::error!(workflow = %wf.id, "{d}");
            }
        }
    }
    while let Some((run, permit)) = rx.blocking_recv() {
        let wf = project.workflows.get(&run.workflow).map(Arc::as_ref);
        let progress = render::run_steps(&mut sandbox, wf, &run, clock.now());
        if tx.send((progress, permit)).is_err() {
            return;
        }
    }
}

/// Which windows of the project's workflows [`window_start`] looks at.
pub(crate) enum Window {
    /// Throttle steps: hits before the longest window's start count in none.
    Throttle,
    /// Digest look-back windows: arrivals before the longest one's start matter to none.
    LookBack,
}

/// The start of the longest window of that kind ending at `now`; `now` when there is none.
pub(crate) fn window_start(project: &Project, now: Timestamp, kind: Window) -> Timestamp {
    project
        .workflows
        .values()
        .flat_map(|wf| wf.steps.iter())
        .filter_map(|step| match (&kind, &step.kind) {
            (Window::Throttle, StepKind::Throttle { window, .. }) => Some(window.before(now)),
            (Window::LookBack, StepKind::Digest { look_back, .. }) => {
                look_back.map(|w| w.before(now))
            }
            _ => None,
        })
        .min()
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(workflows: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().expect("tempdir");
        let wf = dir.path().join("workflows");
        std::fs::create_dir_all(&wf).expect("mkdir");
        for (id, yaml) in workflows {
            std::fs::write(wf.join(format!("{id}.yaml")), yaml).expect("write");
        }
        let project = herald_core::load_project(dir.path(), &|_| None).expect("project");
        (dir, project)
    }

    #[test]
    fn retention_keeps_what_the_longest_window_of_each_kind_needs() {
        let (_dir, p) = project(&[
            (
                "a",
                "steps:\n  - type: throttle\n    amount: 2\n    unit: hours\n    threshold: 1\n  - type: digest\n    amount: 5\n    unit: minutes\n    lookBack: {amount: 10, unit: minutes}\n  - type: in_app\n    body: x\n",
            ),
            (
                "b",
                "steps:\n  - type: throttle\n    amount: 1\n    unit: days\n    threshold: 3\n  - type: in_app\n    body: y\n",
            ),
        ]);
        let now: Timestamp = "2030-01-02T00:00:00Z".parse().expect("now");
        assert_eq!(
            window_start(&p, now, Window::Throttle),
            "2030-01-01T00:00:00Z".parse::<Timestamp>().expect("t"),
            "the one-day throttle is the longest"
        );
        assert_eq!(
            window_start(&p, now, Window::LookBack),
            "2030-01-01T23:50:00Z".parse::<Timestamp>().expect("t")
        );
        let (_dir, empty) = project(&[]);
        assert_eq!(window_start(&empty, now, Window::Throttle), now);
    }
}
