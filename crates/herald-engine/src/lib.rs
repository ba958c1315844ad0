//! The engine: the path of one event from acceptance to delivery.
//!
//! ```text
//! accept ─▶ group commit (one transaction per batch) ─▶ dispatch by dialog hash
//!        ─▶ worker thread (scenario + JS sandbox) ─▶ group apply (state, replies, handled mark)
//!        ─▶ hub (live sockets) / storage (offline replay)
//! ```
//! A caller's accept returns only after its event is committed. Workers do not wait for their
//! results to commit before taking the next event: a worker keeps the dialogs it handles in a
//! cache, so the next event of a dialog sees the previous one's state; a crash replays every
//! event whose results were not committed, in order.

pub mod clock;
pub mod host;
pub mod hub;
pub mod ingest;
mod ingest_js;
pub mod jobs;
mod lanes;
pub mod notify;
pub mod pushgate;
mod scheduler;
pub mod turn;
mod worker;
mod writer;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_core::Project;
use herald_script::Limits;
use herald_store::{AcceptItem, AcceptOutcome, JobRecord, Store, StoreError, StoredMessage};
use tokio::sync::{Semaphore, mpsc, oneshot};

pub use clock::{Clock, ManualClock, SystemClock};
pub use hub::Hub;
pub use jobs::JobError;
pub use notify::{RecipientIn, SubscriberIn, TriggerError, TriggerRequest, Triggered};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads, each with its own JavaScript runtime; dialogs are spread over them.
    pub workers: usize,
    pub script_limits: Limits,
    pub public_url: String,
    pub http_allow_link_local: bool,
    pub http_timeout: Duration,
    /// Most accepted events, and most handled events, in one transaction.
    pub max_batch: usize,
    /// Most events accepted but not yet handled; accepting waits beyond it (backpressure).
    pub max_in_flight: usize,
    /// The SMTP server email steps go through (`[smtp]` in herald.toml).
    pub smtp: Option<herald_channels::SmtpConfig>,
    /// How outbox deliveries (email, webhook) are retried.
    pub delivery_retry: herald_channels::RetryPolicy,
    /// How long finished notification runs and sent or dead deliveries are kept.
    pub notification_retention: Duration,
    /// How long in-app feed entries are kept.
    pub feed_retention: Duration,
    /// How long integration requests are kept in the log.
    pub integration_retention: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            script_limits: Limits::default(),
            public_url: "http://127.0.0.1:8080".into(),
            http_allow_link_local: false,
            http_timeout: Duration::from_secs(10),
            max_batch: 1024,
            max_in_flight: 65_536,
            smtp: None,
            delivery_retry: herald_channels::RetryPolicy::default(),
            notification_retention: Duration::from_secs(30 * 86_400),
            feed_retention: Duration::from_secs(365 * 86_400),
            integration_retention: Duration::from_secs(30 * 86_400),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Startup(String),
    /// Overloaded for now (the integration handlers' queue): retry shortly.
    #[error("{0}")]
    Busy(String),
}

/// State shared by the HTTP layer, the workers and the commit tasks.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub project: Arc<Project>,
    pub config: EngineConfig,
    pub hub: Hub,
    pub(crate) http: reqwest::Client,
    pub(crate) dispatch: worker::Dispatch,
    /// Callers waiting for an event's replies (`wait` on the messages API).
    pub(crate) waiters: Mutex<HashMap<String, oneshot::Sender<Vec<StoredMessage>>>>,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) progress: Progress,
    /// Paces the writer's commits to the finisher's flushes.
    pub(crate) pace: writer::Pace,
    pub clock: Arc<dyn Clock>,
    /// The last job id handed out (ids are assigned before the job is stored, so that a script
    /// sees its job's id at once).
    job_ids: AtomicI64,
    /// The last contact id handed out (a new dialog's contact gets its id when the dialog's
    /// first event is handled, so scripts see `$contact.id` at once).
    contact_ids: AtomicI64,
    /// Which jobs have a run under way and which were cancelled: one lock decides between a
    /// cancel and a run that is about to start.
    job_gate: Mutex<JobGate>,
    pub(crate) alarm: scheduler::Alarm,
    /// Wakes the notification executor when a run is due earlier than it sleeps.
    pub(crate) notify_alarm: scheduler::Alarm,
    /// Wakes the delivery loop when outbox rows were added.
    pub(crate) delivery_wake: tokio::sync::Notify,
    /// Where integration handlers run (`None`: no integration has one).
    pub(crate) handlers: Option<ingest_js::Handlers>,
}

#[derive(Default)]
struct JobGate {
    /// Jobs cancelled while a run of theirs may still be queued: such runs are skipped.
    cancelled: HashSet<i64>,
    /// Jobs with a run started and not yet committed (a count per job).
    started: HashMap<i64, usize>,
}

impl Shared {
    pub fn next_job_id(&self) -> i64 {
        self.job_ids.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub(crate) fn next_contact_id(&self) -> i64 {
        self.contact_ids.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, JobGate> {
        self.job_gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn cancelled_job(&self, id: i64) {
        self.gate().cancelled.insert(id);
    }

    pub(crate) fn is_cancelled(&self, id: i64) -> bool {
        self.gate().cancelled.contains(&id)
    }

    /// A worker is about to run a job: `false` if the job was cancelled (skip the run).
    pub(crate) fn start_run(&self, id: i64) -> bool {
        let mut g = self.gate();
        if g.cancelled.contains(&id) {
            return false;
        }
        *g.started.entry(id).or_default() += 1;
        true
    }

    /// A run's results are committed.
    pub(crate) fn finish_run(&self, id: i64) {
        let mut g = self.gate();
        if let Some(n) = g.started.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                g.started.remove(&id);
            }
        }
    }

    /// Events logged but not yet handled.
    pub(crate) fn pending_events(&self) -> usize {
        self.progress
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Waits while the workers have more than half of `max_in_flight` events to handle, so that
    /// what claims work (the job scheduler, the notification executor) never runs far ahead of
    /// them: claimed work that raises events waits in memory until it is handled.
    pub(crate) async fn wait_for_workers(&self) {
        while self.pending_events() > self.config.max_in_flight / 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// What a cancel request found.
#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled(JobRecord),
    /// Already done or failed: nothing to cancel.
    Finished(JobRecord),
    /// A run of the job is under way right now; it can be cancelled once that run is over.
    RunUnderWay,
    NotFound,
}

/// Why a schedule request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleFailure {
    #[error(transparent)]
    Invalid(#[from] JobError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Which logged events are not handled yet, kept by the writer so that it can record a
/// watermark below which every event is handled.
#[derive(Default)]
pub(crate) struct Progress {
    /// Sequence numbers accepted (or replayed) and not yet applied.
    pub pending: Mutex<BTreeSet<i64>>,
    /// Highest sequence number logged.
    pub max_seq: AtomicI64,
    /// While the backlog is being loaded at start no watermark is recorded: part of it may not
    /// be in `pending` yet.
    pub recovering: AtomicBool,
}

impl Progress {
    pub(crate) fn watermark(&self) -> Option<i64> {
        if self.recovering.load(Ordering::Acquire) {
            return None;
        }
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        Some(match pending.first() {
            Some(first) => first - 1,
            None => self.max_seq.load(Ordering::Acquire),
        })
    }
}

pub struct Engine {
    shared: Arc<Shared>,
    accept_tx: Mutex<Option<mpsc::Sender<writer::AcceptRequest>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    scheduler: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The notification executor and the delivery loop.
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Engine {
    /// Starts workers and commit tasks, then re-dispatches every event that was accepted but not
    /// handled before the last stop, in accept order.
    pub async fn start(
        store: Arc<dyn Store>,
        project: Arc<Project>,
        config: EngineConfig,
    ) -> Result<Arc<Self>, EngineError> {
        Self::start_with_clock(store, project, config, Arc::new(SystemClock)).await
    }

    /// [`Engine::start`] with the clock jobs are scheduled by (tests move a manual one).
    pub async fn start_with_clock(
        store: Arc<dyn Store>,
        project: Arc<Project>,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, EngineError> {
        let stats = store.stats().await?;
        let cancelled: HashSet<i64> = store.cancelled_queued_jobs().await?.into_iter().collect();
        let (apply_tx, apply_rx) = mpsc::unbounded_channel();
        let (dispatch, receivers) = worker::Dispatch::new(config.workers.max(1));
        let handlers = ingest_js::Handlers::spawn(&project, config.script_limits);
        let shared = Arc::new(Shared {
            http: host::http_client(config.http_allow_link_local),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            store,
            project,
            config,
            hub: Hub::default(),
            dispatch,
            waiters: Mutex::new(HashMap::new()),
            pace: writer::Pace::default(),
            progress: Progress {
                recovering: AtomicBool::new(true),
                ..Progress::default()
            },
            clock,
            job_ids: AtomicI64::new(stats.jobs),
            contact_ids: AtomicI64::new(stats.contacts),
            job_gate: Mutex::new(JobGate {
                cancelled,
                started: HashMap::new(),
            }),
            alarm: scheduler::Alarm::default(),
            notify_alarm: scheduler::Alarm::default(),
            delivery_wake: tokio::sync::Notify::new(),
            handlers,
        });
        // Unusable [smtp] settings (a bad sender address, a TLS setup failure) stop the start
        // rather than turning every email step into a dead letter.
        let mailer = match shared.config.smtp.clone() {
            Some(cfg) => Some(Arc::new(herald_channels::email::Mailer::new(cfg).map_err(
                |e| EngineError::Startup(format!("the [smtp] settings are unusable: {e}")),
            )?)),
            None => None,
        };
        let workers = worker::spawn_all(&shared, receivers, apply_tx)?;
        let (accept_tx, accept_rx) = mpsc::channel(16384);
        let (claim_tx, claim_rx) = mpsc::channel(1);
        let writer = writer::dedicated(
            "herald-writer",
            writer::run(shared.clone(), accept_rx, apply_rx, claim_rx),
        )?;
        let engine = Arc::new(Self {
            shared: shared.clone(),
            accept_tx: Mutex::new(Some(accept_tx)),
            writer: Mutex::new(Some(writer)),
            scheduler: Mutex::new(None),
            background: Mutex::new(Vec::new()),
            workers: Mutex::new(workers),
        });
        engine.recover().await?;
        // After recovery: runs claimed before the last stop replay first, in log order.
        let notify = tokio::spawn(notify::run(shared.clone(), engine.sender()?));
        let delivery = tokio::spawn(notify::delivery::run(shared.clone(), mailer));
        engine
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend([notify, delivery]);
        let scheduler = tokio::spawn(scheduler::run(shared, claim_tx));
        *engine.scheduler.lock().unwrap_or_else(|e| e.into_inner()) = Some(scheduler);
        Ok(engine)
    }

    async fn recover(&self) -> Result<(), EngineError> {
        let last = self.shared.store.stats().await?.accepted;
        let progress = &self.shared.progress;
        progress.max_seq.fetch_max(last, Ordering::AcqRel);
        let mut after = 0;
        let mut count = 0usize;
        loop {
            let page = self.shared.store.unhandled_events(after, 1000).await?;
            let Some(tail) = page.last() else { break };
            after = tail.seq;
            for e in page {
                if e.seq > last {
                    break;
                }
                count += 1;
                progress
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(e.seq);
                let permit = self.permit().await?;
                self.shared.dispatch.send(e, Instant::now(), Some(permit));
            }
            if after >= last {
                break;
            }
        }
        progress.recovering.store(false, Ordering::Release);
        if count > 0 {
            tracing::info!(
                events = count,
                "replaying events accepted before the last stop"
            );
        }
        Ok(())
    }

    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, EngineError> {
        self.shared
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| EngineError::ShuttingDown)
    }

    /// Deletes notification state past its use (see [`herald_store::NotifyPurge`]): throttle
    /// hits and digest arrivals outside every window of the project's workflows, finished runs
    /// and deliveries past `notification_retention`, feed entries past `feed_retention`. Runs
    /// in short transactions until nothing is left; what it deleted.
    pub async fn purge_notify(
        &self,
        now: jiff::Timestamp,
    ) -> Result<herald_store::NotifyPurged, EngineError> {
        const LIMIT: usize = 1000;
        let cfg = &self.shared.config;
        let purge = herald_store::NotifyPurge {
            throttle_before: notify::window_start(
                &self.shared.project,
                now,
                notify::Window::Throttle,
            ),
            digest_seen_before: notify::window_start(
                &self.shared.project,
                now,
                notify::Window::LookBack,
            ),
            finished_before: before(now, cfg.notification_retention),
            feed_before: before(now, cfg.feed_retention),
            limit: LIMIT,
        };
        let mut total = herald_store::NotifyPurged::default();
        loop {
            let round = self.shared.store.purge_notify(purge.clone()).await?;
            total.add(round);
            if !round.more_left(LIMIT) {
                return Ok(total);
            }
        }
    }

    /// Deletes integration requests older than `integration_retention` (or the project's
    /// longest dedupe window, if longer: a duplicate answers with the first request's event ids)
    /// and delivery ids whose dedupe window has passed, in short transactions; how many rows
    /// went.
    pub async fn purge_ingest(&self, now: jiff::Timestamp) -> Result<u64, EngineError> {
        const LIMIT: usize = 1000;
        let longest_window = self
            .shared
            .project
            .integrations
            .values()
            .filter(|d| d.dedupe.id.is_some())
            .map(|d| d.dedupe.window)
            .max()
            .unwrap_or_default();
        let keep = self.shared.config.integration_retention.max(longest_window);
        let cut = before(now, keep);
        let mut total = 0;
        loop {
            let n = self.shared.store.purge_ingest(cut, now, LIMIT).await?;
            total += n;
            if n < LIMIT as u64 {
                return Ok(total);
            }
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn sender(&self) -> Result<mpsc::Sender<writer::AcceptRequest>, EngineError> {
        self.accept_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(EngineError::ShuttingDown)
    }

    /// Logs the items durably (group commit) and dispatches the accepted ones.
    pub async fn accept(&self, item: AcceptItem) -> Result<AcceptOutcome, EngineError> {
        writer::submit(&self.shared, &self.sender()?, item).await
    }

    /// Validates and stores a job of `bot_id` from a Bot API request body (SPEC §4).
    pub async fn schedule_job(
        &self,
        bot_id: &str,
        body: &serde_json::Value,
    ) -> Result<JobRecord, ScheduleFailure> {
        let job = jobs::new_job(&self.shared, bot_id, body, None, "api").await?;
        match self.accept(AcceptItem::Schedule(Box::new(job))).await? {
            AcceptOutcome::Job(r) => Ok(*r),
            other => Err(EngineError::Startup(format!(
                "unexpected answer to a schedule: {other:?}"
            ))
            .into()),
        }
    }

    /// Cancels a job of `bot_id`. Cancel wins over a run that has not started; while a run is
    /// under way the answer is [`CancelOutcome::RunUnderWay`] and nothing changes.
    pub async fn cancel_job(
        &self,
        bot_id: &str,
        job_id: i64,
    ) -> Result<CancelOutcome, EngineError> {
        {
            let mut g = self.shared.gate();
            if g.started.contains_key(&job_id) {
                return Ok(CancelOutcome::RunUnderWay);
            }
            // From here on no run of this job starts; undone below unless the cancel commits.
            g.cancelled.insert(job_id);
        }
        let item = AcceptItem::CancelJob {
            bot_id: bot_id.to_owned(),
            job_id,
            now: self.shared.clock.now(),
        };
        let outcome = match self.accept(item).await {
            Ok(AcceptOutcome::Job(r)) if r.status == herald_store::JobStatus::Cancelled => {
                return Ok(CancelOutcome::Cancelled(*r));
            }
            Ok(AcceptOutcome::Job(r)) => Ok(CancelOutcome::Finished(*r)),
            Ok(_) => Ok(CancelOutcome::NotFound),
            Err(e) => Err(e),
        };
        self.shared.gate().cancelled.remove(&job_id);
        outcome
    }

    /// Registers interest in an event's replies before it is accepted.
    pub fn watch(&self, event_id: &str) -> oneshot::Receiver<Vec<StoredMessage>> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(event_id.to_owned(), tx);
        rx
    }

    pub fn unwatch(&self, event_id: &str) {
        self.shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(event_id);
    }

    /// Events logged but not yet handled.
    pub fn pending(&self) -> usize {
        self.shared
            .progress
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Stops taking events, lets workers finish what they were given, commits their results.
    pub async fn shutdown(&self) {
        let scheduler = self
            .scheduler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(s) = scheduler {
            s.abort();
            let _ = s.await;
        }
        let background: Vec<_> =
            std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
        for task in background {
            task.abort();
            let _ = task.await;
        }
        // Closing the accept queue makes the writer stop the workers once everything accepted
        // is dispatched; the writer ends when the last worker's results are committed.
        drop(
            self.accept_tx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = writer {
            let _ = w.await;
        }
        let workers: Vec<_> =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }
}

/// `now` moved back by `age`; the earliest time when that is before it.
fn before(now: jiff::Timestamp, age: Duration) -> jiff::Timestamp {
    jiff::SignedDuration::try_from(age)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .unwrap_or(jiff::Timestamp::MIN)
}
