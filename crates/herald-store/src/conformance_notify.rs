//! Behaviour every backend must show for notifications (SPEC §5): subscribers and topics,
//! triggers and their runs (claims, progress, delays, digests, throttles, cancels), the in-app
//! feed, chat steps, and the outbox. Run by [`crate::conformance::run_all`] after the other
//! checks, on the same store.
//!
//! Each check runs in its own stretch of time ([`at`]) after the previous one's and leaves no run
//! due, so that a claim sees only the runs of the check that makes it. Contact ids are handed
//! out per check too ([`cid`]).

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::*;

/// Second `secs` of check `check`'s stretch of time.
fn at(check: i64, secs: i64) -> Timestamp {
    Timestamp::from_second(2_100_000_000 + check * 1_000_000 + secs).expect("timestamp")
}

/// The `n`th contact id check `check` hands out.
fn cid(check: i64, n: i64) -> i64 {
    1_000_000 + check * 1_000 + n
}

fn profile(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn upsert(id: &str, new_id: i64, p: Value, now: Timestamp) -> SubscriberUpsert {
    SubscriberUpsert {
        subscriber_id: id.into(),
        profile: profile(p),
        new_id,
        now,
    }
}

fn to(id: &str, new_id: i64, now: Timestamp) -> Recipient {
    Recipient::Subscriber(upsert(id, new_id, json!({}), now))
}

fn trigger(txid: &str, payload: Value, to: Option<Vec<Recipient>>, now: Timestamp) -> NewTrigger {
    NewTrigger {
        transaction_id: txid.into(),
        workflow: "welcome".into(),
        payload,
        overrides: json!({}),
        actor: None,
        tenant: None,
        to,
        idempotency: None,
        now,
    }
}

async fn subscriber(store: &dyn Store, id: &str, new_id: i64, now: Timestamp) -> Subscriber {
    store
        .upsert_subscriber(
            upsert(id, new_id, json!({}), now),
            UpsertMode::CreateOrUpdate,
        )
        .await
        .expect("upsert")
        .expect("created")
        .0
}

async fn accept_one(store: &dyn Store, item: AcceptItem) -> AcceptOutcome {
    store.accept(vec![item]).await.expect("accept").remove(0)
}

async fn store_trigger(store: &dyn Store, t: NewTrigger) -> TriggerOutcome {
    match accept_one(store, AcceptItem::Trigger(Box::new(t))).await {
        AcceptOutcome::Trigger(o) => o,
        other => panic!("a trigger answered {other:?}"),
    }
}

/// Stores a trigger that must be stored; its run count.
async fn stored(store: &dyn Store, t: NewTrigger) -> u64 {
    match store_trigger(store, t).await {
        TriggerOutcome::Stored { runs, .. } => runs,
        other => panic!("trigger not stored: {other:?}"),
    }
}

async fn cancel(store: &dyn Store, txid: &str, now: Timestamp) -> bool {
    match accept_one(
        store,
        AcceptItem::CancelTrigger {
            transaction_id: txid.into(),
            now,
        },
    )
    .await
    {
        AcceptOutcome::TriggerCancelled(b) => b,
        other => panic!("a cancel answered {other:?}"),
    }
}

async fn claim(store: &dyn Store, now: Timestamp) -> (Vec<ClaimedRun>, Option<Timestamp>) {
    match accept_one(store, AcceptItem::ClaimRuns { now, limit: 1000 }).await {
        AcceptOutcome::Runs { runs, next_due } => (runs, next_due),
        other => panic!("a claim answered {other:?}"),
    }
}

fn progress(run_id: i64, now: Timestamp, next: RunNext) -> RunProgress {
    RunProgress {
        run_id,
        now,
        records: vec![],
        feed: vec![],
        chats: vec![],
        deliveries: vec![],
        next,
    }
}

async fn apply(store: &dyn Store, p: RunProgress) -> ProgressApplied {
    match accept_one(store, AcceptItem::RunProgress(Box::new(p))).await {
        AcceptOutcome::Progress(p) => *p,
        other => panic!("progress answered {other:?}"),
    }
}

/// Claims what is due at `now` and finishes it, so that the next check starts clean.
async fn finish_all(store: &dyn Store, now: Timestamp) {
    let (runs, _) = claim(store, now).await;
    for r in runs {
        assert!(
            apply(store, progress(r.run_id, now, RunNext::Done))
                .await
                .applied
        );
    }
}

async fn runs_of(store: &dyn Store, txid: &str) -> Vec<RunRecord> {
    store
        .get_notification(txid)
        .await
        .expect("get notification")
        .expect("notification stored")
        .runs
}

pub(crate) async fn run_all(store: &dyn Store) {
    subscribers_are_created_updated_listed_and_deleted(store).await;
    topics_are_filled_and_emptied_and_deleted_only_when_empty(store).await;
    a_trigger_reaches_ids_and_topic_members_once_and_never_the_actor(store).await;
    a_repeated_transaction_id_stores_nothing_new(store).await;
    a_repeated_idempotency_key_answers_with_the_first_trigger(store).await;
    an_unknown_topic_refuses_the_whole_trigger(store).await;
    a_trigger_without_recipients_goes_to_every_subscriber(store).await;
    a_claimed_run_fills_the_feed_which_pages_and_marks(store).await;
    progress_of_a_cancelled_run_is_ignored(store).await;
    a_delayed_run_is_claimed_again_when_due(store).await;
    a_digest_gathers_the_runs_of_one_key_under_one_leader(store).await;
    a_cancelled_member_drops_out_of_the_digest(store).await;
    a_cancelled_leader_hands_the_digest_to_its_earliest_member(store).await;
    a_leader_cancelled_while_running_hands_its_members_on(store).await;
    a_look_back_digest_without_a_recent_event_goes_on_at_once(store).await;
    a_throttle_stops_the_runs_past_its_threshold(store).await;
    a_chat_step_writes_into_a_new_chatwidget_dialog_and_raises_events(store).await;
    a_chat_step_never_writes_into_another_contacts_widget_dialog(store).await;
    runs_left_running_go_back_to_pending(store).await;
    a_run_whose_subscriber_was_deleted_is_cancelled_when_due(store).await;
    deliveries_are_leased_retried_and_dead_lettered(store).await;
    // Last: its cutoffs reach every story's finished state.
    retention_deletes_finished_state_and_keeps_live_state(store).await;
}

/// A widget chat id is chosen by the browser: when the subscriber id names a widget dialog of
/// someone else, the chat step writes nothing there and records why.
async fn a_chat_step_never_writes_into_another_contacts_widget_dialog(store: &dyn Store) {
    let t0 = at(21, 0);
    let theirs = DialogKey::new("chatwidget", "bot21", "s21");
    let seq = match accept_one(
        store,
        AcceptItem::Event(NewEvent {
            id: "e21".into(),
            dialog: theirs.clone(),
            payload: EventPayload::Event {
                name: "hello".into(),
                data: json!({}),
            },
            source: "test".into(),
            accepted_at: t0,
        }),
    )
    .await
    {
        AcceptOutcome::Accepted(e) => e.seq,
        other => panic!("event not accepted: {other:?}"),
    };
    store
        .apply(vec![HandledEvent::unchanged(
            seq,
            theirs.clone(),
            None,
            json!({}),
        )])
        .await
        .expect("apply");
    let owner = store
        .load_dialog(&theirs)
        .await
        .expect("load")
        .expect("dialog")
        .contact_id;
    let sub = subscriber(store, "s21", cid(21, 1), t0).await;
    assert_ne!(sub.id, owner, "the subscriber is another contact");
    stored(
        store,
        trigger("t21", json!({}), Some(vec![to("s21", 0, t0)]), t0),
    )
    .await;
    let (c, _) = claim(store, t0).await;
    let mut p = progress(c[0].run_id, t0, RunNext::Done);
    p.chats = vec![ChatDelivery {
        bot_id: "bot21".into(),
        text: Some("for s21's eyes only".into()),
        event: None,
        event_id: String::new(),
    }];
    let out = apply(store, p).await;
    assert!(out.applied);
    assert!(out.messages.is_empty(), "{:?}", out.messages);
    assert!(
        store
            .list_messages(&theirs, 0, 10)
            .await
            .expect("messages")
            .is_empty(),
        "nothing is written into the other contact's dialog"
    );
    let run = &runs_of(store, "t21").await[0];
    assert!(
        run.records
            .iter()
            .any(|r| r.kind == "chat" && r.status == "failed"),
        "the run records why: {:?}",
        run.records
    );
}

/// `purge_notify`: finished runs, sent or dead deliveries, old feed entries, throttle hits and
/// digest arrivals go; a notification goes with the last of its runs and feed entries; live
/// runs and what they need stay.
async fn retention_deletes_finished_state_and_keeps_live_state(store: &dyn Store) {
    let t = |i| at(30, i);
    for i in 1..=3 {
        stored(
            store,
            trigger(
                &format!("t30-{i}"),
                json!({"n": i}),
                Some(vec![to("s30", cid(30, 1), t(i))]),
                t(i),
            ),
        )
        .await;
    }
    let (claimed, _) = claim(store, t(2)).await;
    let mine: Vec<_> = claimed
        .iter()
        .filter(|r| r.transaction_id.starts_with("t30-"))
        .collect();
    assert_eq!(mine.len(), 2, "t30-1 and t30-2 are claimed, t30-3 not yet");
    for r in &mine {
        let mut p = progress(r.run_id, t(2), RunNext::Done);
        if r.transaction_id == "t30-1" {
            p.feed.push(NewFeedEntry {
                step: "inbox".into(),
                subject: None,
                body: "kept in the feed".into(),
                cta: None,
            });
        }
        assert!(apply(store, p).await.applied);
    }
    for r in claimed
        .iter()
        .filter(|r| !r.transaction_id.starts_with("t30-"))
    {
        apply(store, progress(r.run_id, t(2), RunNext::Done)).await;
    }
    let purge = |finished_before, feed_before| NotifyPurge {
        throttle_before: Timestamp::MAX,
        digest_seen_before: Timestamp::MAX,
        finished_before,
        feed_before,
        limit: 2,
    };
    // Small limits: the caller calls again while a kind reached the limit.
    let purge_all = |p: NotifyPurge| async move {
        let mut total = NotifyPurged::default();
        loop {
            let round = store.purge_notify(p.clone()).await.expect("purge");
            total.add(round);
            if !round.more_left(p.limit) {
                return total;
            }
        }
    };
    // Finished runs go; the feed is kept.
    let total = purge_all(purge(Timestamp::MAX, Timestamp::MIN)).await;
    assert!(total.runs >= 2, "finished runs go: {total:?}");
    assert_eq!(total.feed, 0, "feed entries are younger than their cutoff");
    assert!(
        store
            .get_notification("t30-2")
            .await
            .expect("get")
            .is_none(),
        "a notification goes with its last run"
    );
    let kept = store
        .get_notification("t30-1")
        .await
        .expect("get")
        .expect("a notification with a feed entry stays");
    assert!(kept.runs.is_empty(), "but its finished run is gone");
    assert_eq!(
        runs_of(store, "t30-3").await[0].status,
        RunStatus::Pending,
        "a live run stays"
    );
    let q = FeedQuery {
        page: 0,
        limit: 10,
        seen: None,
        read: None,
        payload: None,
    };
    let page = store
        .feed("s30", &q)
        .await
        .expect("feed")
        .expect("subscriber");
    assert_eq!(page.entries.len(), 1);
    // Then the feed entry's cutoff passes: it goes, and its notification with it.
    let round = purge_all(purge(Timestamp::MAX, Timestamp::MAX)).await;
    assert!(round.feed >= 1 && round.notifications >= 1, "{round:?}");
    assert!(
        store
            .get_notification("t30-1")
            .await
            .expect("get")
            .is_none()
    );
    let page = store
        .feed("s30", &q)
        .await
        .expect("feed")
        .expect("subscriber");
    assert!(page.entries.is_empty());
    // Nothing is left to purge but the live run's state.
    let round = store
        .purge_notify(purge(Timestamp::MAX, Timestamp::MAX))
        .await
        .expect("purge");
    assert_eq!(round, NotifyPurged::default());
    assert_eq!(runs_of(store, "t30-3").await.len(), 1);
}

async fn subscribers_are_created_updated_listed_and_deleted(store: &dyn Store) {
    let t0 = at(1, 0);
    let (ann, created) = store
        .upsert_subscriber(
            upsert(
                "s1-ann",
                cid(1, 1),
                json!({"email": "ann@x.io", "firstName": "Ann", "notAProfileField": 1}),
                t0,
            ),
            UpsertMode::CreateOrUpdate,
        )
        .await
        .expect("upsert")
        .expect("created");
    assert!(created, "an unknown subscriber is created");
    assert_eq!(ann.id, cid(1, 1), "a new subscriber gets the id handed out");
    assert_eq!(
        Value::Object(ann.profile.clone()),
        json!({"email": "ann@x.io", "firstName": "Ann"}),
        "only profile fields are kept"
    );
    assert_eq!((ann.created_at, ann.updated_at), (t0, t0));

    let t1 = at(1, 10);
    let (ann2, created) = store
        .upsert_subscriber(
            upsert(
                "s1-ann",
                cid(1, 99),
                json!({"firstName": null, "lastName": "Lee"}),
                t1,
            ),
            UpsertMode::CreateOrUpdate,
        )
        .await
        .expect("upsert")
        .expect("updated");
    assert!(!created, "a known subscriber is updated");
    assert_eq!(ann2.id, ann.id, "an update keeps the contact id");
    assert_eq!(
        Value::Object(ann2.profile),
        json!({"email": "ann@x.io", "lastName": "Lee"}),
        "null removes a field, absent fields stay"
    );
    assert_eq!((ann2.created_at, ann2.updated_at), (t0, t1));

    assert!(
        store
            .upsert_subscriber(
                upsert("s1-nobody", cid(1, 2), json!({"email": "n@x.io"}), t1),
                UpsertMode::UpdateOnly
            )
            .await
            .expect("update only")
            .is_none(),
        "update-only does not create"
    );
    assert!(
        store
            .get_subscriber("s1-nobody")
            .await
            .expect("get")
            .is_none()
    );
    let (_, created) = store
        .upsert_subscriber(
            upsert("s1-ann", cid(1, 3), json!({"locale": "de"}), t1),
            UpsertMode::UpdateOnly,
        )
        .await
        .expect("update only")
        .expect("known");
    assert!(!created);

    let bob = subscriber(store, "s1-bob", cid(1, 4), at(1, 20)).await;
    let got = store
        .get_subscriber("s1-ann")
        .await
        .expect("get")
        .expect("ann");
    assert_eq!(got.profile.get("locale"), Some(&json!("de")));
    let all = store.list_subscribers(0, 10_000).await.expect("list");
    let ours: Vec<&str> = all
        .iter()
        .filter(|s| s.subscriber_id.starts_with("s1-"))
        .map(|s| s.subscriber_id.as_str())
        .collect();
    assert_eq!(ours, ["s1-ann", "s1-bob"], "subscribers in creation order");
    let pos = all.iter().position(|s| s.id == bob.id).expect("bob listed");
    let page = store.list_subscribers(pos, 1).await.expect("page");
    assert_eq!(page[0].subscriber_id, "s1-bob", "pages of `limit` entries");

    assert!(store.delete_subscriber("s1-ann").await.expect("delete"));
    assert!(
        !store
            .delete_subscriber("s1-ann")
            .await
            .expect("delete twice")
    );
    assert!(store.get_subscriber("s1-ann").await.expect("get").is_none());
    let contact = store
        .get_contact(ann.id)
        .await
        .expect("contact")
        .expect("the contact stays");
    assert_eq!(contact.subscriber_id, None);
    assert_eq!(
        contact.attributes,
        json!({}),
        "the profile goes with the subscriber id"
    );

    // Many at once, in one transaction and in order: an id repeated in the same call is created
    // by its first entry and updated by the second.
    let t2 = at(1, 30);
    let got = store
        .upsert_subscribers(vec![
            upsert("s1-bob", cid(1, 5), json!({"firstName": "Bob"}), t2),
            upsert("s1-cy", cid(1, 6), json!({}), t2),
            upsert("s1-cy", cid(1, 7), json!({"lastName": "Cy"}), t2),
        ])
        .await
        .expect("bulk upsert");
    let flags: Vec<(&str, i64, bool)> = got
        .iter()
        .map(|(s, created)| (s.subscriber_id.as_str(), s.id, *created))
        .collect();
    assert_eq!(
        flags,
        [
            ("s1-bob", bob.id, false),
            ("s1-cy", cid(1, 6), true),
            ("s1-cy", cid(1, 6), false)
        ]
    );
    assert_eq!(got[0].0.profile.get("firstName"), Some(&json!("Bob")));
    assert_eq!(got[2].0.profile.get("lastName"), Some(&json!("Cy")));
}

async fn topics_are_filled_and_emptied_and_deleted_only_when_empty(store: &dyn Store) {
    let t0 = at(2, 0);
    for (i, s) in ["s2-a", "s2-b", "s2-c"].iter().enumerate() {
        subscriber(store, s, cid(2, i as i64), t0).await;
    }
    let TopicCreate::Created(id) = store
        .create_topic("s2-news", "News", t0)
        .await
        .expect("create")
    else {
        panic!("a new topic is created")
    };
    assert_eq!(
        store
            .create_topic("s2-news", "Other", t0)
            .await
            .expect("create"),
        TopicCreate::Exists(id),
        "a key is unique"
    );
    store
        .create_topic("s2-alerts", "Alerts", t0)
        .await
        .expect("create");
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        store
            .add_topic_subscribers("s2-news", &ids(&["s2-a", "s2-b", "s2-ghost", "s2-a"]))
            .await
            .expect("add"),
        Some((ids(&["s2-a", "s2-b"]), ids(&["s2-ghost"]))),
        "known subscribers are added once, unknown ones reported"
    );
    assert_eq!(
        store
            .add_topic_subscribers("s2-news", &ids(&["s2-a"]))
            .await
            .expect("add"),
        Some((ids(&["s2-a"]), vec![])),
        "a member added again counts as added"
    );
    assert_eq!(
        store
            .add_topic_subscribers("s2-nope", &ids(&["s2-a"]))
            .await
            .expect("add"),
        None
    );
    let (topic, members) = store
        .get_topic("s2-news")
        .await
        .expect("get")
        .expect("topic");
    assert_eq!((topic.id, topic.name.as_str()), (id, "News"));
    assert_eq!(members, ids(&["s2-a", "s2-b"]));

    let (all, total) = store.list_topics(0, 100, None).await.expect("list");
    let keys: Vec<&str> = all
        .iter()
        .filter(|t| t.key.starts_with("s2-"))
        .map(|t| t.key.as_str())
        .collect();
    assert_eq!(keys, ["s2-alerts", "s2-news"], "topics by key");
    assert!(total >= 2);
    let (one, total) = store
        .list_topics(0, 100, Some("s2-news"))
        .await
        .expect("list");
    assert_eq!((one.len(), total), (1, 1), "the key filter is exact");

    assert_eq!(
        store.delete_topic("s2-news").await.expect("delete"),
        TopicDelete::HasSubscribers
    );
    assert!(
        store
            .remove_topic_subscribers("s2-news", &ids(&["s2-a", "s2-b", "s2-ghost"]))
            .await
            .expect("remove")
    );
    assert!(
        !store
            .remove_topic_subscribers("s2-nope", &ids(&["s2-a"]))
            .await
            .expect("remove")
    );
    assert_eq!(
        store.delete_topic("s2-news").await.expect("delete"),
        TopicDelete::Deleted
    );
    assert_eq!(
        store.delete_topic("s2-news").await.expect("delete"),
        TopicDelete::NotFound
    );
    assert!(store.get_topic("s2-news").await.expect("get").is_none());

    store
        .add_topic_subscribers("s2-alerts", &ids(&["s2-c"]))
        .await
        .expect("add");
    store.delete_subscriber("s2-c").await.expect("delete");
    let (_, members) = store
        .get_topic("s2-alerts")
        .await
        .expect("get")
        .expect("topic");
    assert!(members.is_empty(), "a deleted subscriber leaves its topics");
}

async fn a_trigger_reaches_ids_and_topic_members_once_and_never_the_actor(store: &dyn Store) {
    let t0 = at(3, 0);
    for (i, s) in ["s3-a", "s3-b", "s3-c"].iter().enumerate() {
        subscriber(store, s, cid(3, i as i64), t0).await;
    }
    store
        .create_topic("s3-team", "Team", t0)
        .await
        .expect("topic");
    let mut t = trigger(
        "t3",
        json!({"hello": "world"}),
        Some(vec![
            to("s3-a", cid(3, 10), t0),
            Recipient::Topic("s3-team".into()),
            to("s3-b", cid(3, 11), t0),
            to("s3-new", cid(3, 12), t0),
            to("s3-actor", cid(3, 13), t0),
        ]),
        t0,
    );
    t.actor = Some(upsert(
        "s3-actor",
        cid(3, 14),
        json!({"firstName": "Ada"}),
        t0,
    ));
    t.tenant = Some(json!({"id": "acme"}));
    // The actor is a subscriber already, and a member of the topic.
    subscriber(store, "s3-actor", cid(3, 14), t0).await;
    store
        .add_topic_subscribers(
            "s3-team",
            &["s3-b".into(), "s3-c".into(), "s3-actor".into()],
        )
        .await
        .expect("add");
    let TriggerOutcome::Stored {
        notification_id,
        transaction_id,
        runs,
    } = store_trigger(store, t).await
    else {
        panic!("trigger not stored")
    };
    assert_eq!(transaction_id, "t3");
    assert_eq!(
        runs, 4,
        "a, the topic's b and c, the new subscriber; b once, the actor never"
    );
    let n = store
        .get_notification("t3")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(n.id, notification_id);
    assert_eq!(
        n.actor,
        Some(json!({"subscriberId": "s3-actor", "firstName": "Ada"}))
    );
    let who: Vec<Option<&str>> = n.runs.iter().map(|r| r.subscriber_id.as_deref()).collect();
    assert_eq!(
        who,
        [Some("s3-a"), Some("s3-b"), Some("s3-c"), Some("s3-new")],
        "runs in recipient order"
    );
    assert!(
        n.runs
            .iter()
            .all(|r| r.status == RunStatus::Pending && r.step == 0 && r.next_at == Some(t0)),
        "every run is due at once"
    );
    let new = store
        .get_subscriber("s3-new")
        .await
        .expect("get")
        .expect("a recipient id is created on the fly");
    assert_eq!(new.id, cid(3, 12));
    let listed = store.list_notifications(0, 1).await.expect("list");
    assert_eq!(listed[0].transaction_id, "t3", "newest first");
    assert!(listed[0].runs.is_empty(), "a list carries no runs");

    let (claimed, next_due) = claim(store, t0).await;
    assert_eq!(claimed.len(), 4);
    assert_eq!(next_due, None, "nothing is left pending");
    let a = &claimed[0];
    assert_eq!(a.subscriber.subscriber_id, "s3-a");
    assert_eq!(
        (a.transaction_id.as_str(), a.workflow.as_str()),
        ("t3", "welcome")
    );
    assert_eq!(a.payload, json!({"hello": "world"}));
    assert_eq!(a.tenant, Some(json!({"id": "acme"})));
    assert_eq!(
        a.actor,
        Some(json!({"subscriberId": "s3-actor", "firstName": "Ada"}))
    );
    assert_eq!((a.step, a.digest_events.clone()), (0, None));
    assert!(claim(store, t0).await.0.is_empty(), "a run is claimed once");
    assert!(
        runs_of(store, "t3")
            .await
            .iter()
            .all(|r| r.status == RunStatus::Running)
    );
    for r in claimed {
        apply(store, progress(r.run_id, t0, RunNext::Done)).await;
    }
    assert!(
        runs_of(store, "t3")
            .await
            .iter()
            .all(|r| r.status == RunStatus::Done)
    );
}

async fn a_repeated_transaction_id_stores_nothing_new(store: &dyn Store) {
    let t0 = at(4, 0);
    subscriber(store, "s4-a", cid(4, 1), t0).await;
    let out = store
        .accept(vec![
            AcceptItem::Trigger(Box::new(trigger(
                "t4",
                json!({}),
                Some(vec![to("s4-a", cid(4, 2), t0)]),
                t0,
            ))),
            AcceptItem::Trigger(Box::new(trigger(
                "t4",
                json!({}),
                Some(vec![to("s4-other", cid(4, 3), t0)]),
                t0,
            ))),
        ])
        .await
        .expect("accept");
    assert!(matches!(
        out[0],
        AcceptOutcome::Trigger(TriggerOutcome::Stored { runs: 1, .. })
    ));
    match &out[1] {
        AcceptOutcome::Trigger(TriggerOutcome::Repeated {
            transaction_id,
            runs,
        }) => assert_eq!((transaction_id.as_str(), *runs), ("t4", 1)),
        other => panic!("a repeated transaction id answered {other:?}"),
    }
    assert_eq!(
        store_trigger(store, trigger("t4", json!({}), None, t0)).await,
        TriggerOutcome::Repeated {
            transaction_id: "t4".into(),
            runs: 1
        },
        "in a later batch too"
    );
    assert_eq!(runs_of(store, "t4").await.len(), 1);
    assert!(
        store
            .get_subscriber("s4-other")
            .await
            .expect("get")
            .is_none(),
        "a repeat creates no subscriber"
    );
    assert!(cancel(store, "t4", t0).await, "a pending run is cancelled");
    assert!(!cancel(store, "t4", t0).await, "nothing is left to cancel");
    assert!(!cancel(store, "t4-unknown", t0).await);
}

async fn a_repeated_idempotency_key_answers_with_the_first_trigger(store: &dyn Store) {
    let t0 = at(5, 0);
    let key = || {
        Some(IdempotencyKey {
            scope: "trigger".into(),
            key: "k5".into(),
        })
    };
    let mut first = trigger("t5a", json!({}), Some(vec![to("s5-a", cid(5, 1), t0)]), t0);
    first.idempotency = key();
    assert_eq!(stored(store, first).await, 1);
    let mut again = trigger("t5b", json!({}), Some(vec![to("s5-a", cid(5, 1), t0)]), t0);
    again.idempotency = key();
    assert_eq!(
        store_trigger(store, again).await,
        TriggerOutcome::Repeated {
            transaction_id: "t5a".into(),
            runs: 1
        }
    );
    assert!(store.get_notification("t5b").await.expect("get").is_none());
    assert!(cancel(store, "t5a", t0).await);
}

async fn an_unknown_topic_refuses_the_whole_trigger(store: &dyn Store) {
    let t0 = at(6, 0);
    let mut t = trigger(
        "t6",
        json!({}),
        Some(vec![
            to("s6-new", cid(6, 1), t0),
            Recipient::Topic("s6-nope".into()),
        ]),
        t0,
    );
    t.idempotency = Some(IdempotencyKey {
        scope: "trigger".into(),
        key: "k6".into(),
    });
    assert_eq!(
        store_trigger(store, t.clone()).await,
        TriggerOutcome::TopicNotFound("s6-nope".into())
    );
    assert!(store.get_notification("t6").await.expect("get").is_none());
    assert!(
        store.get_subscriber("s6-new").await.expect("get").is_none(),
        "nothing is written"
    );
    t.to = Some(vec![to("s6-new", cid(6, 1), t0)]);
    assert_eq!(
        stored(store, t).await,
        1,
        "a refused trigger did not keep its idempotency key"
    );
    assert!(cancel(store, "t6", t0).await);
}

async fn a_trigger_without_recipients_goes_to_every_subscriber(store: &dyn Store) {
    let t0 = at(7, 0);
    subscriber(store, "s7-actor", cid(7, 1), t0).await;
    let everyone = store
        .list_subscribers(0, 100_000)
        .await
        .expect("list")
        .len() as u64;
    let mut t = trigger("t7", json!({}), None, t0);
    t.actor = Some(upsert("s7-actor", cid(7, 2), json!({}), t0));
    assert_eq!(
        stored(store, t).await,
        everyone - 1,
        "every subscriber but the actor"
    );
    let mut t = trigger("t7-ghost", json!({}), None, t0);
    t.actor = Some(upsert("s7-ghost", cid(7, 3), json!({}), t0));
    assert_eq!(stored(store, t).await, everyone);
    assert!(
        store
            .get_subscriber("s7-ghost")
            .await
            .expect("get")
            .is_none(),
        "an actor without a profile is only looked up"
    );
    let n = store
        .get_notification("t7-ghost")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(n.actor, Some(json!({"subscriberId": "s7-ghost"})));
    assert!(cancel(store, "t7", t0).await);
    assert!(cancel(store, "t7-ghost", t0).await);
}

async fn a_claimed_run_fills_the_feed_which_pages_and_marks(store: &dyn Store) {
    let t0 = at(8, 0);
    subscriber(store, "s8", cid(8, 1), t0).await;
    for i in 1..=3 {
        let txid = format!("t8-{i}");
        stored(
            store,
            trigger(
                &txid,
                json!({"n": i, "order": {"id": format!("A{}", i % 2), "tags": ["x", i]}, "ok": i != 2, "a.b": i, "ü": "x"}),
                Some(vec![to("s8", 0, t0)]),
                t0,
            ),
        )
        .await;
    }
    let (claimed, _) = claim(store, t0).await;
    assert_eq!(claimed.len(), 3);
    for (i, r) in claimed.iter().enumerate() {
        let mut p = progress(r.run_id, t0, RunNext::Done);
        p.records = vec![StepRecord {
            step: "inbox".into(),
            kind: "in_app".into(),
            status: "done".into(),
            detail: None,
            at: t0,
        }];
        p.feed = vec![NewFeedEntry {
            step: "inbox".into(),
            subject: Some(format!("Subject {}", i + 1)),
            body: format!("hello {}", i + 1),
            cta: (i == 2).then(|| json!({"url": "https://x.io"})),
        }];
        let done = apply(store, p).await;
        assert!(done.applied);
        assert_eq!(done.due, None, "a finished run is not due again");
    }
    let q = |page, seen| FeedQuery {
        page,
        limit: 2,
        seen,
        read: None,
        payload: None,
    };
    let first = store
        .feed("s8", &q(0, None))
        .await
        .expect("feed")
        .expect("known");
    let bodies: Vec<&str> = first.entries.iter().map(|e| e.body.as_str()).collect();
    assert_eq!(bodies, ["hello 3", "hello 2"], "newest first");
    assert_eq!((first.total, first.unseen, first.unread), (3, 3, 3));
    let newest = &first.entries[0];
    assert_eq!(
        (
            newest.transaction_id.as_str(),
            newest.workflow.as_str(),
            newest.subscriber_id.as_str()
        ),
        ("t8-3", "welcome", "s8")
    );
    assert_eq!(
        newest.payload,
        json!({"n": 3, "order": {"id": "A1", "tags": ["x", 3]}, "ok": true, "a.b": 3, "ü": "x"})
    );
    assert_eq!(newest.cta, Some(json!({"url": "https://x.io"})));
    assert_eq!(newest.subject.as_deref(), Some("Subject 3"));
    let second = store
        .feed("s8", &q(1, None))
        .await
        .expect("feed")
        .expect("known");
    assert_eq!(second.entries.len(), 1);

    // A payload filter is part of the query: pages and totals count matching entries only.
    for (filter, expected) in [
        (json!({"n": 2}), vec!["hello 2"]),
        (json!({"n": 2.0}), vec!["hello 2"]),
        (json!({"n": "2"}), vec![]),
        (json!({"order": {"id": "A1"}}), vec!["hello 3", "hello 1"]),
        (json!({"order": {"tags": ["x", 3]}}), vec!["hello 3"]),
        (json!({"order": {"tags": ["x"]}}), vec![]),
        (json!({"order": {}}), vec!["hello 3", "hello 2", "hello 1"]),
        (json!({"ok": false}), vec!["hello 2"]),
        (json!({"ok": null}), vec![]),
        (json!({"n": 1, "order": {"id": "A1"}}), vec!["hello 1"]),
        (json!({"n": 1, "missing": 1}), vec![]),
        (json!({"we\"ird": 1}), vec![]),
        (json!({"a.b": 2}), vec!["hello 2"]),
        (json!({"ü": "x"}), vec!["hello 3", "hello 2", "hello 1"]),
        (json!({}), vec!["hello 3", "hello 2", "hello 1"]),
    ] {
        let page = store
            .feed(
                "s8",
                &FeedQuery {
                    limit: 10,
                    payload: Some(filter.clone()),
                    ..FeedQuery::default()
                },
            )
            .await
            .expect("feed")
            .expect("known");
        let bodies: Vec<&str> = page.entries.iter().map(|e| e.body.as_str()).collect();
        assert_eq!(bodies, expected, "payload filter {filter}");
        assert_eq!(page.total, expected.len() as u64, "total of {filter}");
        assert_eq!(page.unseen, 3, "unseen counts the whole feed");
    }
    let limited = store
        .feed(
            "s8",
            &FeedQuery {
                limit: 1,
                payload: Some(json!({"order": {"id": "A1"}})),
                ..FeedQuery::default()
            },
        )
        .await
        .expect("feed")
        .expect("known");
    assert_eq!((limited.entries.len(), limited.total), (1, 2));

    let t1 = at(8, 10);
    let marked = store
        .mark_feed(
            "s8",
            &[newest.id, 999_999_999],
            FeedMark {
                seen: Some(true),
                read: None,
            },
            t1,
        )
        .await
        .expect("mark")
        .expect("known");
    assert_eq!(marked.len(), 1, "unknown ids are left out");
    assert!(marked[0].seen && !marked[0].read);
    assert_eq!(marked[0].seen_at, Some(t1));
    let unseen = store
        .feed("s8", &q(0, Some(false)))
        .await
        .expect("feed")
        .expect("known");
    assert_eq!((unseen.total, unseen.unseen, unseen.unread), (2, 2, 3));
    let read_all = FeedMark {
        seen: None,
        read: Some(true),
    };
    assert_eq!(
        store
            .mark_all_feed("s8", read_all, t1)
            .await
            .expect("mark all"),
        Some(3)
    );
    assert_eq!(
        store
            .mark_all_feed("s8", read_all, t1)
            .await
            .expect("mark all"),
        Some(0),
        "only changed entries count"
    );
    let after = store
        .feed("s8", &q(0, None))
        .await
        .expect("feed")
        .expect("known");
    assert_eq!((after.unseen, after.unread), (2, 0));
    assert!(
        store
            .feed("s8-nobody", &q(0, None))
            .await
            .expect("feed")
            .is_none()
    );
    assert!(
        store
            .mark_feed("s8-nobody", &[1], read_all, t1)
            .await
            .expect("mark")
            .is_none()
    );
    assert!(
        store
            .mark_all_feed("s8-nobody", read_all, t1)
            .await
            .expect("mark")
            .is_none()
    );
    let runs = runs_of(store, "t8-1").await;
    assert_eq!(runs[0].status, RunStatus::Done);
    assert_eq!(
        runs[0].records[0].kind, "in_app",
        "the step's activity is kept"
    );
}

async fn progress_of_a_cancelled_run_is_ignored(store: &dyn Store) {
    let t0 = at(9, 0);
    stored(
        store,
        trigger("t9", json!({}), Some(vec![to("s9", cid(9, 1), t0)]), t0),
    )
    .await;
    let (claimed, _) = claim(store, t0).await;
    assert_eq!(claimed.len(), 1);
    assert!(
        cancel(store, "t9", t0).await,
        "a claimed run can be cancelled"
    );
    let mut p = progress(claimed[0].run_id, t0, RunNext::Done);
    p.feed = vec![NewFeedEntry {
        step: "inbox".into(),
        subject: None,
        body: "too late".into(),
        cta: None,
    }];
    let out = apply(store, p).await;
    assert!(!out.applied, "the cancel landed first");
    let feed = store
        .feed(
            "s9",
            &FeedQuery {
                limit: 10,
                ..FeedQuery::default()
            },
        )
        .await
        .expect("feed")
        .expect("known");
    assert_eq!(feed.total, 0, "nothing of a cancelled run is delivered");
    let runs = runs_of(store, "t9").await;
    assert_eq!(runs[0].status, RunStatus::Cancelled);
    let last = runs[0].records.last().expect("a record");
    assert_eq!(
        (last.kind.as_str(), last.status.as_str()),
        ("cancel", "cancelled")
    );
}

async fn a_delayed_run_is_claimed_again_when_due(store: &dyn Store) {
    let t0 = at(10, 0);
    let until = t0 + SignedDuration::from_secs(60);
    stored(
        store,
        trigger("t10", json!({}), Some(vec![to("s10", cid(10, 1), t0)]), t0),
    )
    .await;
    let (claimed, _) = claim(store, t0).await;
    let out = apply(
        store,
        progress(claimed[0].run_id, t0, RunNext::Wait { step: 2, until }),
    )
    .await;
    assert_eq!(out.due, Some(until));
    assert_eq!(store.next_run_due().await.expect("next"), Some(until));
    let (early, next_due) = claim(store, until - SignedDuration::from_secs(1)).await;
    assert!(early.is_empty(), "a delay holds the run");
    assert_eq!(next_due, Some(until));
    let (due, next_due) = claim(store, until).await;
    assert_eq!(due.len(), 1);
    assert_eq!(
        due[0].step, 2,
        "the run resumes at the step after the delay"
    );
    assert_eq!(next_due, None);
    apply(store, progress(due[0].run_id, until, RunNext::Done)).await;
    assert_eq!(store.next_run_due().await.expect("next"), None);
}

/// Triggers `n` runs for one subscriber (payload `{"n": i}`), claims them and sends each to a
/// digest step of `key` closing at `closes`; the run ids in order.
async fn digest_runs(
    store: &dyn Store,
    check: i64,
    n: i64,
    key: &str,
    closes: Timestamp,
) -> Vec<i64> {
    let sub = format!("s{check}");
    for i in 1..=n {
        let now = at(check, i);
        let txid = format!("t{check}-{i}");
        stored(
            store,
            trigger(
                &txid,
                json!({"n": i}),
                Some(vec![to(&sub, cid(check, 1), now)]),
                now,
            ),
        )
        .await;
    }
    let (claimed, _) = claim(store, at(check, n)).await;
    assert_eq!(claimed.len() as i64, n);
    let mut ids = Vec::new();
    for (i, r) in claimed.iter().enumerate() {
        let next = RunNext::Digest {
            step: 0,
            step_id: "digest".into(),
            key: key.into(),
            closes_at: closes,
            look_back_since: None,
        };
        let out = apply(store, progress(r.run_id, at(check, n), next)).await;
        assert_eq!(
            out.due,
            (i == 0).then_some(closes),
            "the first run opens the digest and leads it; the others join"
        );
        ids.push(r.run_id);
    }
    ids
}

async fn a_digest_gathers_the_runs_of_one_key_under_one_leader(store: &dyn Store) {
    let closes = at(11, 300);
    let ids = digest_runs(store, 11, 3, "k11", closes).await;
    let member = &runs_of(store, "t11-2").await[0];
    assert_eq!(member.status, RunStatus::Digested);
    assert_eq!(member.digest_of, Some(ids[0]));
    assert_eq!(
        member.records.last().map(|r| r.detail.clone()),
        Some(Some(format!("joined the digest of run {}", ids[0])))
    );
    assert!(
        claim(store, closes - SignedDuration::from_secs(1))
            .await
            .0
            .is_empty()
    );
    let (claimed, _) = claim(store, closes).await;
    assert_eq!(claimed.len(), 1, "only the leader runs on");
    let leader = &claimed[0];
    assert_eq!((leader.run_id, leader.step), (ids[0], 1));
    assert_eq!(
        leader.digest_events,
        Some(vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]),
        "the leader carries every event, its own first"
    );
    assert_eq!(
        runs_of(store, "t11-3").await[0].status,
        RunStatus::Digested,
        "members wait while their leader runs"
    );
    apply(store, progress(leader.run_id, closes, RunNext::Done)).await;
    let member = &runs_of(store, "t11-3").await[0];
    assert_eq!(
        member.status,
        RunStatus::Done,
        "members are delivered with the leader's progress"
    );
    assert_eq!(
        member.records.last().and_then(|r| r.detail.clone()),
        Some(format!("delivered in the digest of run {}", ids[0]))
    );
}

/// A leader cancelled after its claim, before its progress applies: the members it carried are
/// not lost with it; the earliest takes over and delivers the rest.
async fn a_leader_cancelled_while_running_hands_its_members_on(store: &dyn Store) {
    let closes = at(20, 300);
    let ids = digest_runs(store, 20, 3, "k20", closes).await;
    let (claimed, _) = claim(store, closes).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run_id, ids[0]);
    assert!(cancel(store, "t20-1", closes).await);
    // The cancelled leader's result arrives late and changes nothing.
    let late = apply(store, progress(ids[0], closes, RunNext::Done)).await;
    assert!(!late.applied);
    let heir = &runs_of(store, "t20-2").await[0];
    assert_eq!(
        (heir.status, heir.digest_of),
        (RunStatus::Pending, None),
        "the earliest member takes over"
    );
    assert_eq!(runs_of(store, "t20-3").await[0].digest_of, Some(ids[1]));
    let (claimed, _) = claim(store, closes).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run_id, ids[1]);
    assert_eq!(
        claimed[0].digest_events,
        Some(vec![json!({"n": 2}), json!({"n": 3})]),
        "the digest goes out without the cancelled leader's event"
    );
    apply(store, progress(ids[1], closes, RunNext::Done)).await;
    assert_eq!(runs_of(store, "t20-3").await[0].status, RunStatus::Done);

    // A leader that waits on a delay after its digest still carries its members: they stay
    // `digested`, and a cancel during the delay hands them on too.
    let closes = at(22, 300);
    let ids = digest_runs(store, 22, 2, "k22", closes).await;
    let (claimed, _) = claim(store, closes).await;
    assert_eq!(claimed[0].run_id, ids[0]);
    let later = at(22, 900);
    let wait = RunNext::Wait {
        step: 2,
        until: later,
    };
    assert!(apply(store, progress(ids[0], closes, wait)).await.applied);
    assert_eq!(
        runs_of(store, "t22-2").await[0].status,
        RunStatus::Digested,
        "a member waits until its leader finishes"
    );
    assert!(cancel(store, "t22-1", closes).await);
    let heir = &runs_of(store, "t22-2").await[0];
    assert_eq!(
        heir.status,
        RunStatus::Pending,
        "handed on during the delay"
    );
    let (claimed, _) = claim(store, later).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].digest_events, Some(vec![json!({"n": 2})]));
    apply(store, progress(ids[1], later, RunNext::Failed)).await;
    assert_eq!(runs_of(store, "t22-2").await[0].status, RunStatus::Failed);
}

async fn a_cancelled_member_drops_out_of_the_digest(store: &dyn Store) {
    let closes = at(12, 300);
    digest_runs(store, 12, 3, "k12", closes).await;
    assert!(cancel(store, "t12-2", closes).await);
    let (claimed, _) = claim(store, closes).await;
    assert_eq!(
        claimed[0].digest_events,
        Some(vec![json!({"n": 1}), json!({"n": 3})])
    );
    assert_eq!(
        runs_of(store, "t12-2").await[0].status,
        RunStatus::Cancelled
    );
    apply(store, progress(claimed[0].run_id, closes, RunNext::Done)).await;
}

async fn a_cancelled_leader_hands_the_digest_to_its_earliest_member(store: &dyn Store) {
    let closes = at(13, 300);
    let ids = digest_runs(store, 13, 3, "k13", closes).await;
    assert!(cancel(store, "t13-1", at(13, 10)).await);
    let heir = &runs_of(store, "t13-2").await[0];
    assert_eq!(
        heir.status,
        RunStatus::Pending,
        "the earliest member takes over"
    );
    assert_eq!(
        heir.next_at,
        Some(closes),
        "the digest closes when it would have"
    );
    assert_eq!(runs_of(store, "t13-3").await[0].digest_of, Some(ids[1]));

    // A run arriving now joins the new leader's digest.
    let t1 = at(13, 20);
    stored(
        store,
        trigger("t13-4", json!({"n": 4}), Some(vec![to("s13", 0, t1)]), t1),
    )
    .await;
    let (late, _) = claim(store, t1).await;
    let next = RunNext::Digest {
        step: 0,
        step_id: "digest".into(),
        key: "k13".into(),
        closes_at: at(13, 999),
        look_back_since: None,
    };
    assert_eq!(
        apply(store, progress(late[0].run_id, t1, next)).await.due,
        None
    );
    assert_eq!(runs_of(store, "t13-4").await[0].digest_of, Some(ids[1]));

    let (claimed, _) = claim(store, closes).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].run_id, claimed[0].step), (ids[1], 1));
    assert_eq!(
        claimed[0].digest_events,
        Some(vec![json!({"n": 2}), json!({"n": 3}), json!({"n": 4})]),
        "the heir carries the remaining events"
    );
    apply(store, progress(claimed[0].run_id, closes, RunNext::Done)).await;

    // A leader cancelled alone closes its digest: the next run opens a new one.
    let t2 = at(13, 400);
    let solo = |txid: &str, now| trigger(txid, json!({}), Some(vec![to("s13", 0, now)]), now);
    let digest = |closes_at| RunNext::Digest {
        step: 0,
        step_id: "digest".into(),
        key: "k13-solo".into(),
        closes_at,
        look_back_since: None,
    };
    stored(store, solo("t13-5", t2)).await;
    let (c, _) = claim(store, t2).await;
    apply(store, progress(c[0].run_id, t2, digest(at(13, 500)))).await;
    assert!(cancel(store, "t13-5", t2).await);
    stored(store, solo("t13-6", t2)).await;
    let (c, _) = claim(store, t2).await;
    assert_eq!(
        apply(store, progress(c[0].run_id, t2, digest(at(13, 600))))
            .await
            .due,
        Some(at(13, 600)),
        "no open digest is left behind"
    );
    assert!(cancel(store, "t13-6", t2).await);
}

async fn a_look_back_digest_without_a_recent_event_goes_on_at_once(store: &dyn Store) {
    let t0 = at(14, 0);
    let digest = |now: Timestamp| RunNext::Digest {
        step: 1,
        step_id: "digest".into(),
        key: "k14".into(),
        closes_at: now + SignedDuration::from_secs(300),
        look_back_since: Some(now - SignedDuration::from_secs(3600)),
    };
    stored(
        store,
        trigger(
            "t14-1",
            json!({}),
            Some(vec![to("s14", cid(14, 1), t0)]),
            t0,
        ),
    )
    .await;
    let (c, _) = claim(store, t0).await;
    let out = apply(store, progress(c[0].run_id, t0, digest(t0))).await;
    assert_eq!(
        out.due,
        Some(t0),
        "no event of the key in the window: on at once"
    );
    let run = &runs_of(store, "t14-1").await[0];
    assert_eq!(
        run.records
            .last()
            .map(|r| (r.status.as_str(), r.kind.as_str())),
        Some(("done", "digest"))
    );
    let (c, _) = claim(store, t0).await;
    assert_eq!(c[0].step, 2, "the run goes on after the digest step");
    assert_eq!(c[0].digest_events, None);
    apply(store, progress(c[0].run_id, t0, RunNext::Done)).await;

    let t1 = at(14, 10);
    stored(
        store,
        trigger("t14-2", json!({}), Some(vec![to("s14", 0, t1)]), t1),
    )
    .await;
    let (c, _) = claim(store, t1).await;
    let out = apply(store, progress(c[0].run_id, t1, digest(t1))).await;
    assert_eq!(
        out.due,
        Some(t1 + SignedDuration::from_secs(300)),
        "an event of the key within the window: the digest opens"
    );
    assert!(cancel(store, "t14-2", t1).await);
}

async fn a_throttle_stops_the_runs_past_its_threshold(store: &dyn Store) {
    let t0 = at(15, 0);
    for i in 1..=3 {
        let txid = format!("t15-{i}");
        stored(
            store,
            trigger(&txid, json!({}), Some(vec![to("s15", cid(15, 1), t0)]), t0),
        )
        .await;
    }
    let (claimed, _) = claim(store, t0).await;
    let mut dues = Vec::new();
    for r in &claimed {
        let next = RunNext::Throttle {
            step: 0,
            step_id: "throttle".into(),
            key: "k15".into(),
            window_start: t0 - SignedDuration::from_secs(60),
            threshold: 2,
        };
        dues.push(apply(store, progress(r.run_id, t0, next)).await.due);
    }
    assert_eq!(
        dues,
        [Some(t0), Some(t0), None],
        "two pass, the third is throttled"
    );
    let third = &runs_of(store, "t15-3").await[0];
    assert_eq!(third.status, RunStatus::Throttled);
    let last = third.records.last().expect("a record");
    assert_eq!(
        (last.kind.as_str(), last.status.as_str()),
        ("throttle", "skipped")
    );
    assert_eq!(
        last.detail.as_deref(),
        Some("throttled: 2 runs in the window (threshold 2)")
    );
    let (passed, _) = claim(store, t0).await;
    assert_eq!(passed.len(), 2);
    assert!(passed.iter().all(|r| r.step == 1));
    for r in passed {
        apply(store, progress(r.run_id, t0, RunNext::Done)).await;
    }
}

async fn a_chat_step_writes_into_a_new_chatwidget_dialog_and_raises_events(store: &dyn Store) {
    let t0 = at(16, 0);
    let sub = subscriber(store, "s16", cid(16, 1), t0).await;
    stored(
        store,
        trigger("t16", json!({}), Some(vec![to("s16", 0, t0)]), t0),
    )
    .await;
    let (c, _) = claim(store, t0).await;
    let mut p = progress(c[0].run_id, t0, RunNext::Done);
    p.chats = vec![
        ChatDelivery {
            bot_id: "bot16".into(),
            text: Some("Your order shipped".into()),
            event: None,
            event_id: String::new(),
        },
        ChatDelivery {
            bot_id: "bot16".into(),
            text: None,
            event: Some(("notified".into(), json!({"order": 7}))),
            event_id: "ev16".into(),
        },
    ];
    let out = apply(store, p).await;
    let dialog = DialogKey::new("chatwidget", "bot16", "s16");
    assert_eq!(out.messages.len(), 1, "messages grouped per dialog");
    assert_eq!(out.messages[0].0, dialog);
    assert_eq!(out.messages[0].1[0].text, "Your order shipped");
    assert_eq!(out.messages[0].1[0].direction, Direction::Out);
    let d = store
        .load_dialog(&dialog)
        .await
        .expect("load")
        .expect("a chatwidget dialog is created");
    assert_eq!(d.contact_id, sub.id, "owned by the subscriber's contact");
    let history = store.list_messages(&dialog, 0, 10).await.expect("messages");
    assert_eq!(history.len(), 1);
    assert_eq!(out.events.len(), 1);
    let e = &out.events[0];
    assert_eq!(
        (e.event.id.as_str(), e.event.source.as_str()),
        ("ev16", "notification:t16")
    );
    assert_eq!(e.event.dialog, dialog);
    let pending = store.unhandled_events(0, 10_000).await.expect("unhandled");
    let raised = pending
        .iter()
        .find(|u| u.event.id == "ev16")
        .expect("the event waits for its handler");
    assert_eq!(
        raised.event.payload,
        EventPayload::Event {
            name: "notified".into(),
            data: json!({"order": 7})
        }
    );
    store
        .apply(vec![HandledEvent::unchanged(
            raised.seq,
            dialog.clone(),
            None,
            json!({}),
        )])
        .await
        .expect("apply");

    // The next chat goes to that dialog, the contact's most recent with the bot.
    stored(
        store,
        trigger("t16-2", json!({}), Some(vec![to("s16", 0, t0)]), t0),
    )
    .await;
    let (c, _) = claim(store, t0).await;
    let mut p = progress(c[0].run_id, t0, RunNext::Done);
    p.chats = vec![ChatDelivery {
        bot_id: "bot16".into(),
        text: Some("Delivered".into()),
        event: None,
        event_id: String::new(),
    }];
    assert_eq!(apply(store, p).await.messages[0].0, dialog);
    assert_eq!(
        store
            .list_messages(&dialog, 0, 10)
            .await
            .expect("messages")
            .len(),
        2
    );
}

async fn runs_left_running_go_back_to_pending(store: &dyn Store) {
    let t0 = at(17, 0);
    stored(
        store,
        trigger("t17", json!({}), Some(vec![to("s17", cid(17, 1), t0)]), t0),
    )
    .await;
    let (c, _) = claim(store, t0).await;
    assert_eq!(c.len(), 1);
    assert_eq!(store.reset_running_runs().await.expect("reset"), 1);
    assert_eq!(runs_of(store, "t17").await[0].status, RunStatus::Pending);
    let (again, _) = claim(store, t0).await;
    assert_eq!(again.len(), 1, "the run is claimed again");
    assert_eq!(again[0].run_id, c[0].run_id);
    apply(store, progress(again[0].run_id, t0, RunNext::Done)).await;
    finish_all(store, at(17, 999)).await;
}

async fn a_run_whose_subscriber_was_deleted_is_cancelled_when_due(store: &dyn Store) {
    let t0 = at(19, 0);
    stored(
        store,
        trigger("t19", json!({}), Some(vec![to("s19", cid(19, 1), t0)]), t0),
    )
    .await;
    assert!(store.delete_subscriber("s19").await.expect("delete"));
    let (claimed, next_due) = claim(store, t0).await;
    assert!(claimed.is_empty(), "nobody is left to deliver to");
    assert_eq!(next_due, None);
    let run = &runs_of(store, "t19").await[0];
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.subscriber_id, None);
}

async fn deliveries_are_leased_retried_and_dead_lettered(store: &dyn Store) {
    let t0 = at(18, 0);
    let secs = |s| t0 + SignedDuration::from_secs(s);
    stored(
        store,
        trigger("t18", json!({}), Some(vec![to("s18", cid(18, 1), t0)]), t0),
    )
    .await;
    let (c, _) = claim(store, t0).await;
    let mut p = progress(c[0].run_id, t0, RunNext::Done);
    p.deliveries = vec![
        NewDelivery {
            kind: DeliveryKind::Email,
            step: "mail".into(),
            request: json!({"to": "a@x.io", "subject": "Hi", "body": "Hello"}),
        },
        NewDelivery {
            kind: DeliveryKind::Webhook,
            step: "hook".into(),
            request: json!({"url": "https://x.io/h", "body": "{}", "contentType": "application/json"}),
        },
    ];
    assert_eq!(apply(store, p).await.deliveries, 2);
    assert_eq!(store.next_delivery_due().await.expect("next"), Some(t0));

    let first = store
        .claim_deliveries(t0, secs(30), 10)
        .await
        .expect("claim");
    assert_eq!(first.len(), 2);
    let (mail, hook) = (&first[0], &first[1]);
    assert_eq!(
        (mail.kind, hook.kind),
        (DeliveryKind::Email, DeliveryKind::Webhook)
    );
    assert_eq!(mail.run_id, Some(c[0].run_id));
    assert_eq!(mail.request["to"], json!("a@x.io"));
    assert_eq!((mail.attempts, mail.next_attempt_at), (1, Some(secs(30))));
    assert!(
        store
            .claim_deliveries(t0, secs(30), 10)
            .await
            .expect("claim")
            .is_empty(),
        "a leased delivery is not claimed again"
    );
    let retaken = store
        .claim_deliveries(secs(30), secs(60), 10)
        .await
        .expect("claim");
    assert_eq!(
        retaken.len(),
        2,
        "an expired lease is retried (a crash mid-send)"
    );
    assert_eq!(retaken[0].attempts, 2);

    store
        .finish_delivery(mail.id, AttemptResult::Delivered, secs(31))
        .await
        .expect("finish");
    store
        .finish_delivery(
            hook.id,
            AttemptResult::Retry {
                at: secs(100),
                error: "503".into(),
            },
            secs(31),
        )
        .await
        .expect("finish");
    let pending = store
        .list_deliveries(Some(DeliveryStatus::Pending), 10)
        .await
        .expect("list");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].id,
            pending[0].last_error.as_deref(),
            pending[0].next_attempt_at
        ),
        (hook.id, Some("503"), Some(secs(100)))
    );
    assert!(
        store
            .claim_deliveries(secs(99), secs(200), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let third = store
        .claim_deliveries(secs(100), secs(200), 10)
        .await
        .expect("claim");
    assert_eq!(third[0].attempts, 3);
    store
        .finish_delivery(
            hook.id,
            AttemptResult::Dead {
                error: "gone".into(),
            },
            secs(101),
        )
        .await
        .expect("finish");
    let dead = store
        .list_deliveries(Some(DeliveryStatus::Dead), 10)
        .await
        .expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].next_attempt_at, dead[0].last_error.as_deref()),
        (None, Some("gone"))
    );
    assert_eq!(store.next_delivery_due().await.expect("next"), None);
    let all = store.list_deliveries(None, 10).await.expect("list");
    assert_eq!(
        all.iter().map(|d| d.id).collect::<Vec<_>>(),
        [hook.id, mail.id],
        "newest first"
    );
    assert_eq!(all[1].status, DeliveryStatus::Delivered);

    assert_eq!(
        store
            .retry_delivery(mail.id, secs(200))
            .await
            .expect("retry"),
        DeliveryRetry::NotDead,
        "only a dead letter can be retried"
    );
    assert_eq!(
        store
            .retry_delivery(mail.id + hook.id + 1000, secs(200))
            .await
            .expect("retry"),
        DeliveryRetry::Unknown
    );
    assert_eq!(
        store
            .retry_delivery(hook.id, secs(200))
            .await
            .expect("retry"),
        DeliveryRetry::Retried
    );
    let again = store
        .claim_deliveries(secs(200), secs(230), 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1, "a retried dead letter starts over");
    store
        .finish_delivery(hook.id, AttemptResult::Delivered, secs(201))
        .await
        .expect("finish");
    assert_eq!(store.next_delivery_due().await.expect("next"), None);
}
