//! Conformance checks for integration requests: recording with its events, delivery dedupe
//! within the window, the dialog a routed contact gets, unrouted events, the log's reads and
//! the purge.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::*;

fn request(delivery: Option<&str>, at: Timestamp) -> IngestRequest {
    IngestRequest {
        integration: "shop".into(),
        method: "POST".into(),
        path: "/integrations/shop/webhook".into(),
        headers: json!({"x-shop-topic": "orders/create", "x-shop-hmac": "[redacted]"}),
        body: br#"{"id": 1}"#.to_vec(),
        received_at: at,
        delivery_id: delivery.map(str::to_owned),
    }
}

fn event(id: &str, subscriber: &str, contact: i64) -> IngestEvent {
    IngestEvent {
        event_id: id.into(),
        name: "shop:orderCreated".into(),
        payload: json!({"order": 1}),
        subscriber_id: subscriber.into(),
        new_contact_id: contact,
        bot: Some(("bot".into(), "chatwidget".into())),
        triggers: Vec::new(),
    }
}

fn accepted(req: IngestRequest, events: Vec<IngestEvent>, until: Timestamp) -> NewIngest {
    NewIngest {
        request: req,
        status: IngestStatus::Accepted,
        reason: None,
        detail: json!(null),
        events,
        dedupe_until: Some(until),
        replay_of: None,
    }
}

async fn record(store: &dyn Store, n: NewIngest) -> IngestOutcome {
    match store
        .accept(vec![AcceptItem::Ingest(Box::new(n))])
        .await
        .expect("record")
        .remove(0)
    {
        AcceptOutcome::Ingest(o) => *o,
        other => panic!("an ingest answered {other:?}"),
    }
}

pub(crate) async fn ingest_requests_are_recorded_deduplicated_and_routed(store: &dyn Store) {
    let t0 = Timestamp::from_second(2_000_100_000).expect("t0");
    let window = t0 + SignedDuration::from_hours(24);
    let first = record(
        store,
        accepted(
            request(Some("d-1"), t0),
            vec![event("ev-1", "shop:c1", 9001)],
            window,
        ),
    )
    .await;
    assert_eq!(first.status, IngestStatus::Accepted);
    assert_eq!(first.event_ids, vec!["ev-1".to_string()]);
    assert_eq!(first.events.len(), 1);
    let dialog = first.events[0].event.dialog.clone();
    assert_eq!(
        dialog,
        DialogKey::new("chatwidget", "bot", "shop:c1"),
        "a contact without a dialog with the bot gets one named after its subscriber id"
    );
    let sub = store
        .get_subscriber("shop:c1")
        .await
        .expect("get")
        .expect("the routed contact is a subscriber");
    assert_eq!(sub.id, 9001);
    let unhandled = store.unhandled_events(0, 10_000).await.expect("unhandled");
    assert!(unhandled.iter().any(|e| e.event.id == "ev-1"));

    // The same delivery again, within the window: a duplicate of the first, nothing raised.
    let again = record(
        store,
        accepted(
            request(Some("d-1"), t0 + SignedDuration::from_secs(5)),
            vec![event("ev-2", "shop:c1", 9002)],
            window,
        ),
    )
    .await;
    assert_eq!(again.status, IngestStatus::Duplicate);
    assert_eq!(
        again.event_ids,
        vec!["ev-1".to_string()],
        "the first delivery's event"
    );
    assert!(again.events.is_empty());
    // After the window it is new again.
    let late = record(
        store,
        accepted(
            request(Some("d-1"), window + SignedDuration::from_secs(1)),
            vec![event("ev-3", "shop:c1", 9003)],
            window + SignedDuration::from_hours(24),
        ),
    )
    .await;
    assert_eq!(late.status, IngestStatus::Accepted);
    assert_eq!(
        late.events[0].event.dialog, dialog,
        "a known contact's most recent dialog with the bot"
    );

    // A chat id that belongs to someone else: the event is unrouted, nothing raised.
    let mut other = HandledEvent::unchanged(
        0,
        DialogKey::new("chatwidget", "bot", "shop:c2"),
        None,
        json!({}),
    );
    other.contact_id = Some(9100);
    store.apply(vec![other]).await.expect("apply");
    let unrouted = record(
        store,
        accepted(
            request(Some("d-2"), t0),
            vec![event("ev-4", "shop:c2", 9004)],
            window,
        ),
    )
    .await;
    assert_eq!(unrouted.status, IngestStatus::Unrouted);
    assert!(unrouted.events.is_empty());

    // A rejected request is recorded with its reason; it remembers no delivery id.
    let rejected = record(
        store,
        NewIngest {
            status: IngestStatus::Rejected,
            reason: Some("signature".into()),
            ..accepted(request(Some("d-3"), t0), Vec::new(), window)
        },
    )
    .await;
    assert_eq!(rejected.status, IngestStatus::Rejected);
    let after = record(
        store,
        accepted(
            request(Some("d-3"), t0),
            vec![event("ev-5", "shop:c3", 9005)],
            window,
        ),
    )
    .await;
    assert_eq!(
        after.status,
        IngestStatus::Accepted,
        "a rejected delivery is not a seen one"
    );

    let all = store
        .list_ingest_requests(
            "shop",
            &IngestFilter {
                limit: 100,
                ..IngestFilter::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert!(
        all.iter().all(|r| r.body.is_none()),
        "lists carry no bodies"
    );
    let only = store
        .list_ingest_requests(
            "shop",
            &IngestFilter {
                status: Some(IngestStatus::Rejected),
                limit: 100,
                ..IngestFilter::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].reason.as_deref(), Some("signature"));
    let one = store
        .get_ingest_request("shop", first.request_id)
        .await
        .expect("get")
        .expect("the first request");
    assert_eq!(one.body.as_deref(), Some(&br#"{"id": 1}"#[..]));
    assert_eq!(one.delivery_id.as_deref(), Some("d-1"));
    assert!(
        store
            .get_ingest_request("other", first.request_id)
            .await
            .expect("get")
            .is_none()
    );

    // The purge: requests received before the cut, delivery ids expired by then.
    let purged = store
        .purge_ingest(
            t0 + SignedDuration::from_secs(1),
            window + SignedDuration::from_secs(2),
            1000,
        )
        .await
        .expect("purge");
    assert!(purged >= 4, "{purged}");
    let left = store
        .list_ingest_requests(
            "shop",
            &IngestFilter {
                limit: 100,
                ..IngestFilter::default()
            },
        )
        .await
        .expect("list");
    let cut = t0 + SignedDuration::from_secs(1);
    let after_cut = left.iter().filter(|r| r.received_at >= cut).count();
    assert_eq!(after_cut, 2, "the requests received after the cut stay");
    let kept_before: Vec<i64> = left
        .iter()
        .filter(|r| r.received_at < cut)
        .map(|r| r.id)
        .collect();
    let max_id = left.iter().map(|r| r.id).max().unwrap_or_default();
    assert!(
        kept_before.is_empty() || kept_before == [max_id],
        "only the newest request may stay from before the cut: {kept_before:?}"
    );

    // Purging everything keeps the newest request, so a request id is never given twice.
    let newest = left.iter().map(|r| r.id).max().unwrap_or_default();
    store
        .purge_ingest(
            window + SignedDuration::from_hours(24 * 400),
            window + SignedDuration::from_hours(24 * 400),
            1000,
        )
        .await
        .expect("purge all");
    let later = record(
        store,
        accepted(
            request(None, t0 + SignedDuration::from_secs(5)),
            Vec::new(),
            window,
        ),
    )
    .await;
    assert!(
        later.request_id > newest,
        "request id {} after a purge reuses one up to {newest}",
        later.request_id
    );
    let handled: Vec<HandledEvent> = store
        .unhandled_events(0, 10_000)
        .await
        .expect("unhandled")
        .into_iter()
        .filter(|e| e.event.dialog.bot_id == "bot" && e.event.id.starts_with("ev-"))
        .map(|e| HandledEvent::unchanged(e.seq, e.event.dialog, None, json!({})))
        .collect();
    store.apply(handled).await.expect("apply");
}
