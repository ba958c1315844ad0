//! The group-commit writer for the accept log: requests that arrive while a transaction is being
//! committed ride in the next one, so throughput grows with load while every caller still gets
//! its answer only after its own event is on disk.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use herald_store::{AcceptItem, AcceptOutcome};
use tokio::sync::{mpsc, oneshot};

use crate::{EngineError, Shared};

pub(crate) struct AcceptRequest {
    pub item: AcceptItem,
    pub reply: oneshot::Sender<Result<AcceptOutcome, EngineError>>,
}

pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<AcceptRequest>) {
    let max = shared.config.max_batch.max(1);
    let mut batch: Vec<AcceptRequest> = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        let (items, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|r| (r.item, r.reply)).unzip();
        let started = Instant::now();
        match shared.store.accept(items).await {
            Ok(outcomes) => {
                metrics::histogram!("herald_accept_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("herald_accept_batch_size").record(outcomes.len() as f64);
                let now = Instant::now();
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    if let AcceptOutcome::Accepted(e) = &outcome {
                        shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("herald_events_accepted_total").increment(1);
                        shared.dispatch.send(e.clone(), now).await;
                    }
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "accept batch failed; nothing of it was stored");
                for reply in replies {
                    let _ = reply.send(Err(EngineError::Store(herald_store::StoreError::Backend(
                        e.to_string(),
                    ))));
                }
            }
        }
    }
}
