//! The outbox delivery loop: email and webhook steps, sent at least once.
//!
//! A claim counts the attempt and leases the row for a minute, so a process that dies mid-send
//! leaves it to be retried after the lease. A failure is retried on the policy's schedule
//! (exponential, jittered, at least the receiver's `Retry-After`); a permanent failure, or the
//! last attempt, makes the row a dead letter, which `POST /api/v1/deliveries/{id}/retry` sends
//! again. Webhooks carry `webhook-id: msg_<row id>`, the same on every attempt, so receivers
//! can drop duplicates.

use std::sync::Arc;
use std::time::Duration;

use herald_channels::{Attempt, EmailRequest, Mailer, WebhookRequest, send_webhook};
use herald_store::{AttemptResult, Delivery, DeliveryKind};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::Semaphore;

use crate::Shared;
use crate::scheduler::time_until;

const MAX_CONCURRENT: usize = 32;
const LEASE: SignedDuration = SignedDuration::from_secs(60);
const MAX_SLEEP: Duration = Duration::from_secs(60);

pub(crate) async fn run(shared: Arc<Shared>, mailer: Option<Arc<Mailer>>) {
    let allow_link_local = shared.config.http_allow_link_local;
    let http = crate::host::delivery_client(allow_link_local, Duration::from_secs(10));
    let limit = Arc::new(Semaphore::new(MAX_CONCURRENT));
    let mut backoff = Duration::from_millis(100);
    loop {
        // Lease only as many rows as can be sent now: a leased row waiting for a send slot
        // would spend its lease waiting.
        let Ok(first) = limit.clone().acquire_owned().await else {
            return;
        };
        let mut permits = vec![first];
        while let Ok(p) = limit.clone().try_acquire_owned() {
            permits.push(p);
        }
        let room = permits.len();
        let now = shared.clock.now();
        let lease_until = now.checked_add(LEASE).unwrap_or(now);
        let batch = match shared.store.claim_deliveries(now, lease_until, room).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff, "cannot claim deliveries");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let claimed = batch.len();
        for (d, permit) in batch.into_iter().zip(permits) {
            let (shared, http, mailer) = (shared.clone(), http.clone(), mailer.clone());
            tokio::spawn(async move {
                deliver(&shared, &http, mailer.as_deref(), d).await;
                drop(permit);
            });
        }
        if claimed >= room {
            continue;
        }
        let next = shared.store.next_delivery_due().await.ok().flatten();
        let wait = time_until(&*shared.clock, next, MAX_SLEEP);
        if wait.is_zero() {
            // Due rows are all leased to sends under way; look again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.delivery_wake.notified() => {}
        }
    }
}

async fn deliver(shared: &Shared, http: &reqwest::Client, mailer: Option<&Mailer>, d: Delivery) {
    let now = shared.clock.now();
    let attempt = match d.kind {
        DeliveryKind::Webhook => {
            match serde_json::from_value::<WebhookRequest>(d.request.clone()) {
                Ok(req)
                    if !shared.config.http_allow_link_local
                        && let Some(ip) = reqwest::Url::parse(&req.url)
                            .ok()
                            .as_ref()
                            .and_then(crate::host::forbidden_literal) =>
                {
                    Attempt::permanent(format!(
                        "{ip} is a link-local or metadata address and is refused"
                    ))
                }
                Ok(req) => send_webhook(http, &req, &format!("msg_{}", d.id), now).await,
                Err(e) => {
                    Attempt::permanent(format!("the stored webhook request is unusable: {e}"))
                }
            }
        }
        DeliveryKind::Email => match (
            mailer,
            serde_json::from_value::<EmailRequest>(d.request.clone()),
        ) {
            (None, _) => Attempt::permanent("no SMTP server is configured ([smtp] in herald.toml)"),
            (_, Err(e)) => Attempt::permanent(format!("the stored email is unusable: {e}")),
            (Some(m), Ok(req)) => m.send(&req).await,
        },
    };
    let kind = d.kind.as_str();
    let result = outcome(shared, &d, attempt, now);
    let label = match &result {
        AttemptResult::Delivered => "delivered",
        AttemptResult::Retry { .. } => "retry",
        AttemptResult::Dead { .. } => "dead",
    };
    metrics::counter!("herald_deliveries_total", "kind" => kind, "outcome" => label).increment(1);
    match &result {
        AttemptResult::Retry { at, error } => {
            tracing::info!(delivery = d.id, kind, attempt = d.attempts, %at, error = %error, "delivery failed; will retry");
        }
        AttemptResult::Dead { error } => {
            tracing::warn!(delivery = d.id, kind, attempts = d.attempts, error = %error, "delivery gave up: dead letter");
        }
        AttemptResult::Delivered => {}
    }
    let retry = matches!(result, AttemptResult::Retry { .. });
    if let Err(e) = shared
        .store
        .finish_delivery(d.id, result, shared.clock.now())
        .await
    {
        // The lease runs out and the row is tried again.
        tracing::error!(error = %e, delivery = d.id, "cannot record a delivery attempt");
    } else if retry {
        // The loop may be asleep until this row's lease ran out; the retry is due sooner.
        shared.delivery_wake.notify_one();
    }
}

fn outcome(shared: &Shared, d: &Delivery, attempt: Attempt, now: Timestamp) -> AttemptResult {
    match attempt {
        Attempt::Delivered => AttemptResult::Delivered,
        Attempt::Failed {
            error,
            permanent: true,
            ..
        } => AttemptResult::Dead { error },
        Attempt::Failed {
            error, retry_after, ..
        } => {
            let delay = shared.config.delivery_retry.next_delay(
                d.attempts.max(1),
                retry_after,
                rand::random::<f64>(),
            );
            match delay.and_then(|d| SignedDuration::try_from(d).ok()) {
                Some(delay) => AttemptResult::Retry {
                    at: now.checked_add(delay).unwrap_or(now),
                    error,
                },
                None => AttemptResult::Dead {
                    error: format!("{error} (gave up after {} attempts)", d.attempts),
                },
            }
        }
    }
}
