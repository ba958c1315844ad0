//! The group-commit applier: handled events from every worker are written in batches (new
//! dialog state, replies, follow-up events and the handled mark in one transaction), then
//! their replies are published for live delivery and their follow-up events dispatched.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald_store::HandledEvent;
use tokio::sync::mpsc;

use crate::Shared;

pub(crate) struct ApplyItem {
    pub handled: HandledEvent,
    pub worker: usize,
    pub ticket: u64,
    pub accepted: Instant,
    pub event_id: String,
}

pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<ApplyItem>) {
    let max = shared.config.max_batch.max(1);
    let mut batch: Vec<ApplyItem> = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        let handled: Vec<HandledEvent> = batch.iter().map(|i| i.handled.clone()).collect();
        let mut backoff = Duration::from_millis(50);
        let applied = loop {
            match shared.store.apply(handled.clone()).await {
                Ok(a) => break a,
                Err(e) => {
                    // Nothing of the batch is stored; the workers' caches already moved on, so
                    // the only consistent choice is to retry until storage comes back.
                    tracing::error!(error = %e, retry_in = ?backoff, "cannot store handled events");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let now = Instant::now();
        for (item, applied) in batch.drain(..).zip(applied) {
            metrics::histogram!("herald_accept_to_stored_seconds")
                .record((now - item.accepted).as_secs_f64());
            shared.counters.handled.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("herald_events_handled_total").increment(1);
            shared.hub.publish(&applied.dialog, &applied.replies);
            let waiter = shared
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&item.event_id);
            if let Some(w) = waiter {
                let _ = w.send(applied.replies.clone());
            }
            for e in applied.raised {
                shared.dispatch.send(e, now).await;
            }
            shared.dispatch.committed[item.worker].fetch_max(item.ticket, Ordering::Release);
        }
    }
}
