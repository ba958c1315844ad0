//! The scheduler: sleeps until the earliest due time of a pending job, then asks the writer to
//! claim what is due. A claim is one transaction (see `herald_store::jobs`): each due time
//! becomes a run record and an event in its dialog's log, so from there a run is handled, made
//! durable and replayed like any other event. Pending jobs stay in storage; the scheduler keeps
//! only the next due time in memory.
//!
//! It wakes when that time comes, when a job due earlier is scheduled, when the clock jumps (a
//! test's manual clock), and at least once a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use herald_store::{ClaimRequest, StoreError};
use jiff::Timestamp;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::jobs::Planner;
use crate::{Clock, Shared};

/// Most jobs claimed in one transaction.
const CLAIM_BATCH: usize = 2048;
/// The longest the scheduler sleeps without looking at storage again.
const MAX_SLEEP: Duration = Duration::from_secs(60);

pub(crate) struct ClaimMsg {
    pub request: ClaimRequest,
    pub reply: ClaimReply,
}

/// Where the writer answers a claim: jobs claimed and the earliest due time left.
pub(crate) type ClaimReply = oneshot::Sender<Result<(usize, Option<Timestamp>), StoreError>>;

/// What the rest of the engine uses to wake the scheduler.
pub(crate) struct Alarm {
    /// The due time (ms) the scheduler sleeps until; `i64::MAX` when nothing is pending.
    next_wake: AtomicI64,
    wake: Notify,
}

impl Default for Alarm {
    fn default() -> Self {
        Self {
            next_wake: AtomicI64::new(i64::MIN),
            wake: Notify::new(),
        }
    }
}

impl Alarm {
    /// Records the due time (ms) the sleeper sleeps until (`i64::MAX`: nothing is due).
    pub(crate) fn sleeping_until(&self, ms: i64) {
        self.next_wake.store(ms, Ordering::Release);
    }

    /// A job due at `due` now exists: wake the scheduler if it sleeps past that.
    pub(crate) fn due_at(&self, due: Timestamp) {
        if due.as_millisecond() < self.next_wake.load(Ordering::Acquire) {
            self.wake.notify_one();
        }
    }
}

pub(crate) async fn run(shared: Arc<Shared>, claims: mpsc::Sender<ClaimMsg>) {
    let planner = Arc::new(Planner {
        project: shared.project.clone(),
    });
    let mut jumps = shared.clock.jumps();
    let mut backoff = Duration::from_millis(100);
    loop {
        shared.wait_for_workers().await;
        // While the claim is in flight, any job scheduled wakes the scheduler again: its due
        // time may be earlier than what the claim will report.
        shared.alarm.sleeping_until(i64::MAX);
        let now = shared.clock.now();
        let (reply, answer) = oneshot::channel();
        let msg = ClaimMsg {
            request: ClaimRequest {
                now,
                limit: CLAIM_BATCH,
                planner: planner.clone(),
            },
            reply,
        };
        if claims.send(msg).await.is_err() {
            return;
        }
        let (claimed, next) = match answer.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(error = %e, retry_in = ?backoff, "cannot claim due jobs");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(_) => return,
        };
        backoff = Duration::from_millis(100);
        if claimed >= CLAIM_BATCH {
            continue;
        }
        sleep_until_due(&shared.alarm, &*shared.clock, next, &mut jumps).await;
    }
}

/// How long from now until `next`, at most `cap` (`cap` when nothing is due).
pub(crate) fn time_until(clock: &dyn Clock, next: Option<Timestamp>, cap: Duration) -> Duration {
    match next {
        None => cap,
        Some(t) => {
            let ms = t.as_millisecond() - clock.now().as_millisecond();
            Duration::from_millis(ms.max(0) as u64).min(cap)
        }
    }
}

/// After a claim that left `next` as the earliest due time: records it on `alarm` and sleeps
/// until then (at most a minute), until the alarm rings, or until the clock jumps. Returns at
/// once when `next` is already due.
pub(crate) async fn sleep_until_due(
    alarm: &Alarm,
    clock: &dyn Clock,
    next: Option<Timestamp>,
    jumps: &mut Option<tokio::sync::watch::Receiver<()>>,
) {
    alarm.sleeping_until(next.map_or(i64::MAX, |t| t.as_millisecond()));
    let wait = time_until(clock, next, MAX_SLEEP);
    if !wait.is_zero() {
        sleep_or_wake(alarm, wait, jumps).await;
    }
}

/// Sleeps for `wait`, or until `alarm` rings, or until the clock jumps.
async fn sleep_or_wake(
    alarm: &Alarm,
    wait: Duration,
    jumps: &mut Option<tokio::sync::watch::Receiver<()>>,
) {
    let jumped = async {
        match jumps.as_mut() {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = alarm.wake.notified() => {}
        _ = jumped => {}
    }
}
