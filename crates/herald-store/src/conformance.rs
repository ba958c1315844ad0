//! Behaviour every backend must show. A backend's test calls [`run_all`] with a fresh, empty store;
//! each check panics with a message naming the broken promise.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::*;

pub(crate) fn key(chat: &str) -> DialogKey {
    DialogKey::new("chatwidget", "bot", chat)
}

fn event(id: &str, chat: &str, name: &str) -> NewEvent {
    NewEvent {
        id: id.into(),
        dialog: key(chat),
        payload: EventPayload::Event {
            name: name.into(),
            data: json!({"n": id}),
        },
        source: "test".into(),
        accepted_at: Timestamp::now(),
    }
}

fn pushback(
    id: &str,
    chat: &str,
    max_uses: Option<i64>,
    expires_at: Option<Timestamp>,
) -> Pushback {
    Pushback {
        id: id.into(),
        dialog: key(chat),
        event: "ping".into(),
        event_data: json!({"default": true}),
        created_at: Timestamp::now(),
        expires_at,
        max_uses,
        uses: 0,
        last_used_at: None,
    }
}

fn activation(id: &str, data: Option<serde_json::Value>, idem: Option<&str>) -> AcceptItem {
    AcceptItem::Pushback {
        pushback_id: id.into(),
        data,
        event_id: uuid::Uuid::now_v7().to_string(),
        source: format!("pushback:{id}"),
        now: Timestamp::now(),
        idempotency: idem.map(|k| IdempotencyKey {
            scope: format!("push:{id}"),
            key: k.into(),
        }),
    }
}

pub async fn run_all(store: &dyn Store) {
    accepted_events_are_unhandled_in_order(store).await;
    unflushed_commits_are_visible_and_flush(store).await;
    pushback_activation_counts_uses_and_uses_default_data(store).await;
    expired_and_used_up_pushbacks_are_gone(store).await;
    idempotency_key_returns_the_first_event(store).await;
    applying_creates_dialog_stores_replies_and_marks_handled(store).await;
    acknowledged_messages_are_not_replayed(store).await;
    long_dialogs_read_in_pages(store).await;
    pushbacks_can_be_listed_and_revoked(store).await;
    crate::conformance_jobs::due_jobs_are_claimed_once_and_runs_recorded(store).await;
    crate::conformance_jobs::cancel_wins_over_a_queued_run(store).await;
    crate::conformance_jobs::broadcasts_reach_matching_leads(store).await;
    crate::conformance_jobs::a_trigger_without_a_lead_runs_under_its_bot_level_key(store).await;
    crate::conformance_notify::run_all(store).await;
    crate::conformance_ingest::ingest_requests_are_recorded_deduplicated_and_routed(store).await;
}

async fn accepted_events_are_unhandled_in_order(store: &dyn Store) {
    let out = store
        .accept(vec![
            AcceptItem::Event(event("e1", "a", "x")),
            AcceptItem::Event(event("e2", "b", "y")),
        ])
        .await
        .expect("accept");
    let seqs: Vec<i64> = out
        .iter()
        .map(|o| match o {
            AcceptOutcome::Accepted(e) => e.seq,
            other => panic!("event not accepted: {other:?}"),
        })
        .collect();
    assert!(
        seqs[0] < seqs[1],
        "sequence numbers must grow in accept order"
    );
    let pending = store.unhandled_events(0, 100).await.expect("unhandled");
    let ids: Vec<&str> = pending.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(
        ids,
        ["e1", "e2"],
        "unhandled events come back in accept order"
    );
    let later = store
        .unhandled_events(seqs[0], 100)
        .await
        .expect("unhandled after");
    assert_eq!(later.len(), 1, "after_seq skips earlier events");
    handle_all(store).await;
}

/// The writer's path: a commit that returns before the flush is already visible to readers;
/// `flush_blocking` then succeeds.
async fn unflushed_commits_are_visible_and_flush(store: &dyn Store) {
    let batch = |id: &str| Batch {
        accept: vec![AcceptItem::Event(event(id, "unflushed", "x"))],
        ..Batch::default()
    };
    let first = store
        .commit_unflushed_blocking(batch("u1"))
        .expect("commit_unflushed_blocking");
    assert!(
        matches!(first.accepted.as_slice(), [AcceptOutcome::Accepted(_)]),
        "an unflushed commit answers like a commit: {:?}",
        first.accepted
    );
    let second = store
        .commit_unflushed_blocking(batch("u2"))
        .expect("commit_unflushed_blocking");
    assert!(matches!(
        second.accepted.as_slice(),
        [AcceptOutcome::Accepted(_)]
    ));
    let pending = store.unhandled_events(0, 100).await.expect("unhandled");
    let ids: Vec<&str> = pending.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(
        ids,
        ["u1", "u2"],
        "unflushed commits are visible to readers"
    );
    store.flush_blocking().expect("flush_blocking");
    store.flush_blocking().expect("a second flush_blocking");
    handle_all(store).await;
}

async fn handle_all(store: &dyn Store) {
    let pending = store.unhandled_events(0, 10_000).await.expect("unhandled");
    let handled = pending
        .into_iter()
        .map(|e| HandledEvent::unchanged(e.seq, e.event.dialog, None, json!({})))
        .collect();
    store.apply(handled).await.expect("apply");
    assert!(
        store
            .unhandled_events(0, 10)
            .await
            .expect("unhandled")
            .is_empty()
    );
}

async fn pushback_activation_counts_uses_and_uses_default_data(store: &dyn Store) {
    store
        .create_pushback(&pushback("p1", "a", None, None))
        .await
        .expect("create");
    let out = store
        .accept(vec![
            activation("p1", None, None),
            activation("p1", Some(json!({"x": 1})), None),
        ])
        .await
        .expect("accept");
    match (&out[0], &out[1]) {
        (AcceptOutcome::Accepted(a), AcceptOutcome::Accepted(b)) => {
            assert_eq!(
                a.event.payload,
                EventPayload::Event {
                    name: "ping".into(),
                    data: json!({"default": true})
                },
                "no data means the stored eventData"
            );
            assert_eq!(
                b.event.payload,
                EventPayload::Event {
                    name: "ping".into(),
                    data: json!({"x": 1})
                }
            );
            assert_eq!(a.event.dialog, key("a"));
        }
        other => panic!("activations not accepted: {other:?}"),
    }
    let p = store
        .get_pushback("p1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(p.uses, 2, "each activation counts a use");
    assert!(p.last_used_at.is_some());
    let out = store
        .accept(vec![activation("nope", None, None)])
        .await
        .expect("accept");
    assert!(
        matches!(out[0], AcceptOutcome::NotFound),
        "unknown id is not found"
    );
    handle_all(store).await;
}

async fn expired_and_used_up_pushbacks_are_gone(store: &dyn Store) {
    let past = Timestamp::now() - SignedDuration::from_secs(1);
    store
        .create_pushback(&pushback("old", "a", None, Some(past)))
        .await
        .expect("create");
    store
        .create_pushback(&pushback("once", "a", Some(1), None))
        .await
        .expect("create");
    let out = store
        .accept(vec![
            activation("old", None, None),
            activation("once", None, None),
            activation("once", None, None),
        ])
        .await
        .expect("accept");
    assert!(
        matches!(out[0], AcceptOutcome::Gone),
        "expired link is gone"
    );
    assert!(
        matches!(out[1], AcceptOutcome::Accepted(_)),
        "first use of a one-use link works"
    );
    assert!(
        matches!(out[2], AcceptOutcome::Gone),
        "second use of a one-use link is gone"
    );
    handle_all(store).await;
}

async fn idempotency_key_returns_the_first_event(store: &dyn Store) {
    store
        .create_pushback(&pushback("idem", "a", None, None))
        .await
        .expect("create");
    let first = store
        .accept(vec![activation("idem", None, Some("k1"))])
        .await
        .expect("accept");
    let AcceptOutcome::Accepted(first) = &first[0] else {
        panic!("first activation not accepted")
    };
    let again = store
        .accept(vec![activation("idem", None, Some("k1"))])
        .await
        .expect("accept");
    match &again[0] {
        AcceptOutcome::Repeated { event_id } => assert_eq!(event_id, &first.event.id),
        other => panic!("repeated key raised again: {other:?}"),
    }
    let p = store
        .get_pushback("idem")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(p.uses, 1, "a repeated key does not count a use");
    assert_eq!(
        store
            .purge_idempotency(Timestamp::now() + SignedDuration::from_secs(1))
            .await
            .expect("purge"),
        1
    );
    handle_all(store).await;
}

async fn applying_creates_dialog_stores_replies_and_marks_handled(store: &dyn Store) {
    let out = store
        .accept(vec![AcceptItem::Event(event("h1", "chat-h", "x"))])
        .await
        .expect("accept");
    let AcceptOutcome::Accepted(e) = &out[0] else {
        panic!("not accepted")
    };
    // A pushback the turn created and then revoked (a failed turn's pushbacks go with it).
    store
        .create_pushback(&pushback("pb-revoked", "chat-h", None, None))
        .await
        .expect("create");
    let now = Timestamp::now();
    let msg = |t: &str| NewMessage {
        text: t.into(),
        buttons: vec![],
        ts: now,
    };
    let applied = store
        .apply(vec![HandledEvent {
            seq: e.seq,
            dialog: key("chat-h"),
            state: Some("/A".into()),
            session: json!({"s": 1}),
            client: Some(json!({"c": 2})),
            incoming: Some(msg("hi")),
            replies: vec![
                msg("one"),
                NewMessage {
                    text: "two".into(),
                    buttons: vec![ButtonOut {
                        id: "y".into(),
                        text: "Yes".into(),
                    }],
                    ts: now,
                },
            ],
            raise: vec![event("h2", "chat-h", "scriptError")],
            tags: Some(vec!["member".into()]),
            schedule: vec![],
            cancel: vec![],
            run: None,
            revoke_pushbacks: vec!["pb-revoked".into()],
            contact_id: None,
        }])
        .await
        .expect("apply");
    assert!(
        store
            .get_pushback("pb-revoked")
            .await
            .expect("get")
            .is_none(),
        "a revoked pushback is deleted with the handled event"
    );
    assert_eq!(applied[0].replies.len(), 2);
    assert!(
        applied[0].replies[0].id < applied[0].replies[1].id,
        "reply ids grow in order"
    );
    assert_eq!(applied[0].raised.len(), 1);
    let d = store
        .load_dialog(&key("chat-h"))
        .await
        .expect("load")
        .expect("dialog created");
    assert_eq!(d.state.as_deref(), Some("/A"));
    assert_eq!(d.session, json!({"s": 1}));
    assert_eq!(d.client, json!({"c": 2}));
    assert_eq!(d.tags, vec!["member".to_string()], "tags are stored");
    let all = store
        .list_messages(&key("chat-h"), 0, 100)
        .await
        .expect("list");
    let texts: Vec<(&str, Direction)> =
        all.iter().map(|m| (m.text.as_str(), m.direction)).collect();
    assert_eq!(
        texts,
        [
            ("hi", Direction::In),
            ("one", Direction::Out),
            ("two", Direction::Out)
        ]
    );
    assert_eq!(all[2].buttons[0].text, "Yes");
    let pending = store.unhandled_events(0, 10).await.expect("unhandled");
    assert_eq!(
        pending.len(),
        1,
        "the handled event is done; the raised one is pending"
    );
    assert_eq!(pending[0].event.id, "h2");
    let contact = store
        .get_contact(d.contact_id)
        .await
        .expect("contact")
        .expect("exists");
    assert_eq!(contact.dialogs, vec![key("chat-h")]);
    handle_all(store).await;
}

/// Acknowledges `chat`'s messages up to `up_to` through a batch, as the chat socket does.
async fn ack(store: &dyn Store, chat: &str, up_to: i64) {
    let out = store
        .accept(vec![AcceptItem::Ack {
            dialog: key(chat),
            up_to,
        }])
        .await
        .expect("ack");
    assert!(matches!(out[..], [AcceptOutcome::Acked]), "{out:?}");
}

async fn acknowledged_messages_are_not_replayed(store: &dyn Store) {
    let all = store
        .unacked_messages(&key("chat-h"), 100)
        .await
        .expect("unacked");
    assert_eq!(all.len(), 2, "outgoing messages only");
    ack(store, "chat-h", all[0].id).await;
    let rest = store
        .unacked_messages(&key("chat-h"), 100)
        .await
        .expect("unacked");
    assert_eq!(rest.len(), 1);
    ack(store, "chat-h", 0).await;
    assert_eq!(
        store
            .unacked_messages(&key("chat-h"), 100)
            .await
            .expect("unacked")
            .len(),
        1,
        "ack never moves back"
    );
}

/// Three dialogs whose messages interleave, some long enough to span several hundred
/// messages: every page, from every starting point, holds that dialog's messages in order.
async fn long_dialogs_read_in_pages(store: &dyn Store) {
    const CHATS: [&str; 3] = ["chat-l0", "chat-l1", "chat-l2"];
    let chat_of = |i: usize| CHATS[if i.is_multiple_of(5) { 0 } else { i % 3 }];
    let total = 420;
    let accepted = store
        .accept(
            (0..total)
                .map(|i| AcceptItem::Event(event(&format!("l{i}"), chat_of(i), "x")))
                .collect(),
        )
        .await
        .expect("accept");
    let now = Timestamp::now();
    let msg = |t: String| NewMessage {
        text: t,
        buttons: vec![],
        ts: now,
    };
    // Expected (text, direction) per chat, in the order written.
    let mut expected: Vec<Vec<(String, Direction)>> = vec![Vec::new(); CHATS.len()];
    let mut handled = Vec::new();
    for (i, out) in accepted.iter().enumerate() {
        let AcceptOutcome::Accepted(e) = out else {
            panic!("not accepted: {out:?}")
        };
        let chat = chat_of(i);
        let slot = CHATS.iter().position(|c| *c == chat).expect("chat");
        let incoming = (!i.is_multiple_of(4)).then(|| format!("in {i}"));
        let replies: Vec<String> = (0..i % 3).map(|r| format!("out {i}.{r}")).collect();
        expected[slot].extend(incoming.iter().map(|t| (t.clone(), Direction::In)));
        expected[slot].extend(replies.iter().map(|t| (t.clone(), Direction::Out)));
        handled.push(HandledEvent {
            incoming: incoming.map(msg),
            replies: replies.into_iter().map(msg).collect(),
            ..HandledEvent::unchanged(e.seq, key(chat), None, json!({}))
        });
    }
    // Several batches, so a dialog's messages span commits.
    while !handled.is_empty() {
        let rest = handled.split_off(handled.len().min(97));
        store.apply(handled).await.expect("apply");
        handled = rest;
    }
    let texts = |m: &[StoredMessage]| -> Vec<(String, Direction)> {
        m.iter().map(|m| (m.text.clone(), m.direction)).collect()
    };
    for (slot, chat) in CHATS.iter().enumerate() {
        let all = store
            .list_messages(&key(chat), 0, 1000)
            .await
            .expect("list");
        assert_eq!(
            texts(&all),
            expected[slot],
            "{chat}: all messages, in order"
        );
        assert!(
            all.windows(2).all(|w| w[0].id < w[1].id),
            "{chat}: ids grow"
        );
        for limit in [1, 7, 63, 64, 65, 130] {
            let mut paged = Vec::new();
            let mut after = 0;
            loop {
                let page = store
                    .list_messages(&key(chat), after, limit)
                    .await
                    .expect("page");
                assert!(page.len() <= limit, "{chat}: a page holds at most {limit}");
                let Some(last) = page.last() else { break };
                after = last.id;
                paged.extend(page);
            }
            assert_eq!(paged, all, "{chat}: pages of {limit} add up to the whole");
        }
        for start in [1, 63, 64, 65, 200] {
            let Some(from) = all.get(start) else { continue };
            let rest = store
                .list_messages(&key(chat), from.id, 50)
                .await
                .expect("list after");
            let want: Vec<_> = all[start + 1..].iter().take(50).cloned().collect();
            assert_eq!(rest, want, "{chat}: 50 after message #{start}");
        }
        // The reader acknowledged a third of the way in: replays are the outgoing ones after.
        let acked = all[all.len() / 3].id;
        ack(store, chat, acked).await;
        let out_after: Vec<StoredMessage> = all
            .iter()
            .filter(|m| m.id > acked && m.direction == Direction::Out)
            .cloned()
            .collect();
        for limit in [5, 64, 1000] {
            let replay = store
                .unacked_messages(&key(chat), limit)
                .await
                .expect("unacked");
            let want: Vec<_> = out_after.iter().take(limit).cloned().collect();
            assert_eq!(replay, want, "{chat}: first {limit} unacknowledged replies");
        }
    }
    let all = store
        .list_messages(&key(CHATS[0]), 0, 1000)
        .await
        .expect("list");
    let below_zero = store
        .list_messages(&key(CHATS[0]), -5, 1000)
        .await
        .expect("list after -5");
    assert_eq!(below_zero, all, "after a negative id: everything");
    assert!(
        store
            .list_messages(&key(CHATS[0]), 0, 0)
            .await
            .expect("list 0")
            .is_empty(),
        "limit 0: nothing"
    );
    assert!(
        store
            .list_messages(&key("chat-none"), 0, 10)
            .await
            .expect("list")
            .is_empty(),
        "no dialog, no messages"
    );
}

async fn pushbacks_can_be_listed_and_revoked(store: &dyn Store) {
    store
        .create_pushback(&pushback("l1", "list-chat", None, None))
        .await
        .expect("create");
    let listed = store
        .list_pushbacks(Some("bot"), Some("list-chat"), 100)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert!(store.delete_pushback("l1").await.expect("delete"));
    assert!(!store.delete_pushback("l1").await.expect("delete twice"));
    assert!(store.get_pushback("l1").await.expect("get").is_none());
    let out = store
        .accept(vec![activation("l1", None, None)])
        .await
        .expect("accept");
    assert!(
        matches!(out[0], AcceptOutcome::NotFound),
        "a revoked link is not found"
    );
    store.ping().await.expect("ping");
}
