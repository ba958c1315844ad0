//! The group-commit writer: the one task that writes to storage on the event path. Each cycle
//! takes everything waiting — results of handled events from the workers and newly accepted
//! events from the HTTP handlers — and writes it in ONE transaction, so one commit (one fsync)
//! serves a whole batch of both. Only after that commit do callers get their answers, replies
//! get published, and new events get dispatched to the workers.
//!
//! The writer never waits on a worker: dispatch queues are unbounded, and what bounds them is
//! the in-flight semaphore an event's permit is taken from at accept and returned to after its
//! results commit.
//!
//! A commit returns before the disk has the batch ([`Store::commit_unflushed_blocking`]); the batch
//! then goes to the finisher, which flushes and only then answers, publishes and dispatches,
//! in commit order. Meanwhile the writer runs the next batch, so the flush of one batch
//! overlaps the statements of the next, and one flush covers every batch committed before it.
//!
//! [`Store::commit_unflushed_blocking`]: herald_store::Store::commit_unflushed_blocking

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald_store::{
    AcceptItem, AcceptOutcome, Batch, HandledEvent, JobStatus, StoreError, TriggerOutcome,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::scheduler::{ClaimMsg, ClaimReply};
use crate::{EngineError, Shared};

pub(crate) struct AcceptRequest {
    pub item: AcceptItem,
    pub reply: oneshot::Sender<Result<AcceptOutcome, EngineError>>,
    pub permit: OwnedSemaphorePermit,
}

/// How often the writer stores the handled-events watermark (`Batch::handled_through`).
const WATERMARK_EVERY: Duration = Duration::from_millis(250);

pub(crate) struct ApplyItem {
    pub handled: HandledEvent,
    pub worker: usize,
    pub ticket: u64,
    pub accepted: Instant,
    pub event_id: String,
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Hands `item` to the writer and waits for its outcome (after the commit).
pub(crate) async fn submit(
    shared: &Shared,
    tx: &mpsc::Sender<AcceptRequest>,
    item: AcceptItem,
) -> Result<AcceptOutcome, EngineError> {
    // One permit per event the item may raise, so that a handler's fan-out is bounded too.
    let weight = match &item {
        AcceptItem::Ingest(n) => n.events.len().clamp(1, shared.config.max_in_flight.max(1)),
        _ => 1,
    };
    let permit = shared
        .in_flight
        .clone()
        .acquire_many_owned(u32::try_from(weight).unwrap_or(1))
        .await
        .map_err(|_| EngineError::ShuttingDown)?;
    let (reply, rx) = oneshot::channel();
    let slot = tx.reserve().await.map_err(|_| EngineError::ShuttingDown)?;
    // Counted before it is queued (the writer never takes more than was counted), and nothing
    // between the count and the send can be cancelled.
    shared.pace.arrived();
    slot.send(AcceptRequest {
        item,
        reply,
        permit,
    });
    rx.await.map_err(|_| EngineError::ShuttingDown)?
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut accept_rx: mpsc::Receiver<AcceptRequest>,
    mut apply_rx: mpsc::UnboundedReceiver<ApplyItem>,
    mut claim_rx: mpsc::Receiver<ClaimMsg>,
) {
    let max = shared.config.max_batch.max(1);
    let mut accepts: Vec<AcceptRequest> = Vec::with_capacity(max);
    let mut applies: Vec<ApplyItem> = Vec::with_capacity(max);
    let (mut accept_open, mut apply_open) = (true, true);
    let mut claim: Option<ClaimMsg> = None;
    let mut backoff = Duration::from_millis(50);
    let mut marked: Option<Instant> = None;
    let (finish_tx, finish_rx) = mpsc::unbounded_channel();
    let pace = &shared.pace;
    let finishing = match dedicated("herald-finisher", finisher(shared.clone(), finish_rx)) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the finisher thread; the writer stops");
            return;
        }
    };
    loop {
        if accepts.is_empty() && applies.is_empty() && claim.is_none() {
            if !accept_open && !apply_open {
                break;
            }
            tokio::select! {
                c = claim_rx.recv(), if accept_open => if let Some(c) = c {
                    claim = Some(c);
                },
                r = accept_rx.recv(), if accept_open => match r {
                    Some(r) => accepts.push(r),
                    None => {
                        accept_open = false;
                        // Every accepted event is committed: once the finisher has dispatched
                        // them all, let the workers finish.
                        let _ = finish_tx.send(Finish::StopWorkers);
                    }
                },
                a = apply_rx.recv(), if apply_open => match a {
                    Some(a) => applies.push(a),
                    None => apply_open = false,
                },
            }
        }
        while accepts.len() < max
            && let Ok(r) = accept_rx.try_recv()
        {
            accepts.push(r);
        }
        while applies.len() < max
            && let Ok(a) = apply_rx.try_recv()
        {
            applies.push(a);
        }
        if claim.is_none()
            && accept_open
            && let Ok(c) = claim_rx.try_recv()
        {
            claim = Some(c);
        }
        if accepts.is_empty() && applies.is_empty() && claim.is_none() {
            continue;
        }
        if accepts.len() + applies.len() < max && pace.wait_for_flush(&finish_tx).await {
            // While the finisher flushes, more items arrived: they ride this commit.
            continue;
        }
        // Accepted items move into the write: a failed batch is answered with errors, never
        // retried. Handled results are copied: they are retried until they land.
        let (items, waiting): (Vec<AcceptItem>, Vec<_>) = accepts
            .drain(..)
            .map(|r| (r.item, (r.reply, r.permit)))
            .unzip();
        pace.committing(waiting.len());
        let handled: Vec<HandledEvent> = applies.iter().map(|a| a.handled.clone()).collect();
        let started = Instant::now();
        // The watermark only shortens the scan for unhandled events at the next start, so it is
        // written a few times a second, not with every commit (its page would be one more WAL
        // frame per commit, ~5 % of the bytes written under load).
        let watermark = match marked {
            Some(t) if t.elapsed() < WATERMARK_EVERY => None,
            _ => shared.progress.watermark(),
        };
        if watermark.is_some() {
            marked = Some(started);
        }
        let (claim_request, claim_reply) = match claim.take() {
            Some(c) => (Some(c.request), Some(c.reply)),
            None => (None, None),
        };
        let batch = Batch {
            accept: items,
            handled,
            handled_through: watermark,
            claim: claim_request,
        };
        match shared.store.commit_unflushed_blocking(batch) {
            Ok(mut done) => {
                track_progress(&shared, &applies, &done);
                let claimed = done.claimed.take();
                backoff = Duration::from_millis(50);
                metrics::histogram!("herald_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("herald_commit_batch_size")
                    .record((waiting.len() + applies.len()) as f64);
                pace.unflushed.fetch_add(1, Ordering::AcqRel);
                let sent = finish_tx.send(Finish::Batch(Box::new(Finished {
                    applies: std::mem::take(&mut applies),
                    waiting,
                    done,
                    claimed,
                    claim_reply,
                })));
                if sent.is_err() {
                    // The finisher is gone (it panicked): nothing would be answered or
                    // dispatched any more. Stop the workers so that shutdown can finish; what
                    // is committed replays at the next start.
                    tracing::error!("the finisher thread stopped; the writer stops");
                    shared.dispatch.stop_all();
                    break;
                }
            }
            Err(e) => {
                // Nothing of the cycle is stored. Accept callers get an error now; handled
                // results are kept and retried (the workers' caches already moved on, so they
                // must land) — alone, so that a bad accept cannot block them.
                tracing::error!(error = %e, retry_in = ?backoff, "commit failed; nothing of this batch was stored");
                for (reply, _) in waiting {
                    let _ = reply.send(Err(EngineError::Store(StoreError::Backend(e.to_string()))));
                }
                if let Some(r) = claim_reply {
                    let _ = r.send(Err(StoreError::Backend(e.to_string())));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    drop(finish_tx);
    let _ = finishing.await;
}

/// Runs `task` on a thread of its own, on a single-threaded runtime. The writer and the
/// finisher spend their cycles in blocking storage calls; on a thread of their own, a wake-up
/// never waits behind request handlers in the shared runtime's queues, and a cycle needs no
/// hand-off to a blocking thread. The handle resolves when the task is done.
pub(crate) fn dedicated(
    name: &str,
    task: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, EngineError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EngineError::Startup(format!("cannot start the {name} runtime: {e}")))?;
    let (done_tx, done_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            rt.block_on(task);
            let _ = done_tx.send(());
        })
        .map_err(|e| EngineError::Startup(format!("cannot start the {name} thread: {e}")))?;
    Ok(tokio::spawn(async move {
        let _ = done_rx.await;
    }))
}

/// Paces commits to flushes. A commit costs about as much for 2 items as for 20 (its WAL
/// pages, locks and page-cache upkeep), and a committed batch waits for the flush under way
/// anyway. So while the finisher still has a committed batch to flush, the writer gathers
/// instead of committing, and commits once the finisher is done (or the batch is full): about
/// one commit per flush, each as large as the load makes it, at no cost in latency.
///
/// Except when [`EARLY_COMMIT`] accept requests wait: then one more batch is committed while
/// the flush runs, and is flushed right after it. Without this, the requests answered after one
/// flush arrive while the next commit and flush run, and wait for both; under full load that
/// left a fifth of the CPU idle while every connection waited on the disk.
#[derive(Default)]
pub(crate) struct Pace {
    /// Batches committed and not yet flushed.
    unflushed: std::sync::atomic::AtomicUsize,
    /// Signalled by the finisher each time it has flushed a group (before acting on it: the
    /// next commit need not wait for the answers and dispatches).
    done: tokio::sync::Notify,
    /// Accept requests handed to the writer and not yet in a commit (queued, or gathered by the
    /// writer while it waits).
    uncommitted: std::sync::atomic::AtomicUsize,
    /// Signalled by each arrival that brings `uncommitted` to [`EARLY_COMMIT`] or more.
    enough: tokio::sync::Notify,
}

/// Accept requests waiting that justify committing while a flush is under way (see [`Pace`]).
/// At light load batches stay below it and every commit waits for the flush before; at full
/// load (64 connections: ~30 activations per flush) it lets the requests answered by one flush
/// be committed during the next one, instead of after it.
const EARLY_COMMIT: usize = 24;

impl Pace {
    /// An accept request was queued for the writer.
    fn arrived(&self) {
        if self.uncommitted.fetch_add(1, Ordering::AcqRel) + 1 >= EARLY_COMMIT {
            // A permit stored while the writer is not waiting costs it one more check.
            self.enough.notify_one();
        }
    }

    /// The writer put `n` accept requests into a commit.
    fn committing(&self, n: usize) {
        self.uncommitted.fetch_sub(n, Ordering::AcqRel);
    }

    /// Waits while a committed batch is still waiting for its flush (unless it is the only one
    /// and [`EARLY_COMMIT`] requests wait); returns whether it waited (the caller then gathers
    /// what arrived meanwhile before committing).
    async fn wait_for_flush(&self, finish_tx: &mpsc::UnboundedSender<Finish>) -> bool {
        let mut waited = false;
        loop {
            let done = self.done.notified();
            let enough = self.enough.notified();
            tokio::pin!(done);
            tokio::pin!(enough);
            done.as_mut().enable();
            enough.as_mut().enable();
            let unflushed = self.unflushed.load(Ordering::Acquire);
            if unflushed == 0 || finish_tx.is_closed() {
                return waited;
            }
            if unflushed == 1 && self.uncommitted.load(Ordering::Acquire) >= EARLY_COMMIT {
                return waited;
            }
            waited = true;
            // The timeout only guards against a finisher that died between two checks.
            let _ = tokio::time::timeout(Duration::from_millis(100), async {
                if unflushed == 1 {
                    tokio::select! {
                        _ = done => {},
                        _ = enough => {},
                    }
                } else {
                    done.await;
                }
            })
            .await;
        }
    }
}

/// A committed batch waiting for its flush.
struct Finished {
    applies: Vec<ApplyItem>,
    waiting: Vec<(
        oneshot::Sender<Result<AcceptOutcome, EngineError>>,
        OwnedSemaphorePermit,
    )>,
    done: herald_store::Committed,
    claimed: Option<herald_store::Claimed>,
    claim_reply: Option<ClaimReply>,
}

enum Finish {
    Batch(Box<Finished>),
    /// Everything accepted is committed: stop the workers once it is dispatched.
    StopWorkers,
}

/// Flushes committed batches and then acts on them, in commit order: answers callers,
/// publishes replies, dispatches events. One flush serves every batch waiting for it.
async fn finisher(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Finish>) {
    let pace = &shared.pace;
    let mut group = Vec::new();
    while rx.recv_many(&mut group, usize::MAX).await > 0 {
        if let Err(e) = shared.store.flush_blocking() {
            // Committed and visible, but not confirmed on disk: acting on these batches could
            // acknowledge what a power loss takes back, and after a failed fsync later ones
            // cannot be trusted either. Stop; the next start recovers from what the disk has.
            tracing::error!(error = %e, "flushing committed batches failed; Herald stops so that nothing unflushed is acknowledged");
            std::process::exit(74);
        }
        // The flush is done: the writer may commit the next batch while this group is acted on.
        let batches = group
            .iter()
            .filter(|f| matches!(f, Finish::Batch(_)))
            .count();
        pace.unflushed.fetch_sub(batches, Ordering::AcqRel);
        pace.done.notify_one();
        let acting = Instant::now();
        for f in group.drain(..) {
            match f {
                Finish::Batch(b) => act(&shared, *b),
                Finish::StopWorkers => shared.dispatch.stop_all(),
            }
        }
        metrics::histogram!("herald_finish_act_seconds").record(acting.elapsed().as_secs_f64());
    }
}

/// What follows a durable batch: answers, published replies, dispatched events, job alarms.
/// Callers are answered first, since they wait on it; events are then dispatched in the order
/// they were stored (follow-ups of handled events, accepted events, claimed jobs), with one
/// wake-up per worker.
fn act(shared: &Shared, f: Finished) {
    let Finished {
        applies,
        waiting,
        done,
        claimed,
        claim_reply,
    } = f;
    let now = Instant::now();
    let mut accepted = Vec::new();
    let mut accepted_events = 0;
    // Chat messages of notification steps, published after the handled results' replies: the
    // batch stored those first, so they have the lower ids, and a chat socket skips an id at
    // or below the last one it sent.
    let mut progress_messages = Vec::new();
    for ((reply, permit), outcome) in waiting.into_iter().zip(done.accepted) {
        match &outcome {
            AcceptOutcome::Accepted(e) => {
                accepted_events += 1;
                accepted.push((e.clone(), Some(permit)));
            }
            AcceptOutcome::Progress(p) => {
                progress_messages.extend(p.messages.iter().cloned());
                accepted.extend(p.events.iter().map(|e| (e.clone(), None)));
            }
            AcceptOutcome::Trigger(TriggerOutcome::Stored { runs, .. }) if *runs > 0 => {
                shared.notify_alarm.due_at(jiff::Timestamp::MIN);
            }
            AcceptOutcome::Ingest(i) => {
                accepted_events += i.events.len() as u64;
                // Each event rides one of the request's permits (it took one per event).
                let mut permit = Some(permit);
                let last = i.events.len().saturating_sub(1);
                for (k, e) in i.events.iter().enumerate() {
                    let own = if k < last {
                        permit.as_mut().and_then(|p| p.split(1))
                    } else {
                        permit.take()
                    };
                    accepted.push((e.clone(), own));
                }
                if i.triggered {
                    shared.notify_alarm.due_at(jiff::Timestamp::MIN);
                }
                let _ = reply.send(Ok(outcome));
                continue;
            }
            AcceptOutcome::Job(job) => match job.status {
                JobStatus::Cancelled => shared.cancelled_job(job.id),
                JobStatus::Pending => {
                    if let Some(due) = job.next_run_at {
                        shared.alarm.due_at(due);
                    }
                }
                _ => {}
            },
            _ => {}
        }
        let _ = reply.send(Ok(outcome));
    }
    metrics::counter!("herald_events_accepted_total").increment(accepted_events);
    let mut out = shared.dispatch.outbox();
    for item in &applies {
        jobs_changed(shared, &item.handled);
    }
    // Metric handles looked up once per batch, not per item (each lookup hashes the key).
    let to_stored = metrics::histogram!("herald_accept_to_stored_seconds");
    metrics::counter!("herald_events_handled_total").increment(applies.len() as u64);
    for (item, applied) in applies.into_iter().zip(done.applied) {
        to_stored.record((now - item.accepted).as_secs_f64());
        shared.hub.publish(&applied.dialog, &applied.replies);
        let waiter = shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&item.event_id);
        if let Some(w) = waiter {
            let _ = w.send(applied.replies);
        }
        for e in applied.raised {
            out.push(e, now, None);
        }
        shared.dispatch.committed[item.worker].fetch_max(item.ticket, Ordering::Release);
    }
    for (key, messages) in &progress_messages {
        shared.hub.publish(key, messages);
    }
    for (e, permit) in accepted {
        out.push(e, now, permit);
    }
    if let Some(c) = claimed {
        metrics::counter!("herald_jobs_claimed_total").increment(c.jobs as u64);
        for e in c.events {
            out.push(e, now, None);
        }
        if let Some(r) = claim_reply {
            let _ = r.send(Ok((c.jobs, c.next_due)));
        }
    }
    out.send();
}

/// Jobs a turn's scripts scheduled or cancelled, now committed.
fn jobs_changed(shared: &Shared, h: &HandledEvent) {
    if let Some(run) = &h.run {
        shared.finish_run(run.job_id);
    }
    for job in &h.schedule {
        shared.alarm.due_at(job.next_run_at);
    }
    for (_, id) in &h.cancel {
        shared.cancelled_job(*id);
    }
}

/// Updates the set of logged-but-unhandled events after a commit.
fn track_progress(shared: &Shared, applies: &[ApplyItem], done: &herald_store::Committed) {
    let p = &shared.progress;
    let mut pending = p.pending.lock().unwrap_or_else(|e| e.into_inner());
    for a in applies {
        pending.remove(&a.handled.seq);
    }
    let raised = done.applied.iter().flat_map(|a| a.raised.iter());
    let claimed = done.claimed.iter().flat_map(|c| c.events.iter());
    let accepted = done.accepted.iter().flat_map(|o| match o {
        AcceptOutcome::Accepted(e) => std::slice::from_ref(e),
        AcceptOutcome::Progress(p) => p.events.as_slice(),
        AcceptOutcome::Ingest(i) => i.events.as_slice(),
        _ => &[],
    });
    for e in raised.chain(accepted).chain(claimed) {
        pending.insert(e.seq);
        p.max_seq.fetch_max(e.seq, Ordering::AcqRel);
    }
}
