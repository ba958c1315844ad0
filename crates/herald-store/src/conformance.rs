//! Behaviour every backend must show. A backend's test calls [`run_all`] with a fresh, empty store;
//! each check panics with a message naming the broken promise.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::*;

fn key(chat: &str) -> DialogKey {
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
    jobs::due_jobs_are_claimed_once_and_runs_recorded(store).await;
    jobs::cancel_wins_over_a_queued_run(store).await;
    jobs::broadcasts_reach_matching_leads(store).await;
    crate::conformance_notify::run_all(store).await;
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
            contact_id: None,
        }])
        .await
        .expect("apply");
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

mod jobs {
    //! Jobs: a due time is claimed once, a periodic job moves on, a cancel reaches queued runs,
    //! a broadcast fans out to the leads whose tags match.

    use std::sync::Arc;

    use jiff::{SignedDuration, Timestamp};
    use serde_json::json;

    use super::key;
    use crate::*;

    /// Periodic jobs repeat every `run_after_sec`; broadcast 7 goes to contacts tagged `vip`.
    struct Plan;

    impl JobPlanner for Plan {
        fn next_due(
            &self,
            _: &str,
            t: &JobTiming,
            due: Timestamp,
            _: Timestamp,
        ) -> Option<Timestamp> {
            t.is_periodic
                .then(|| due + SignedDuration::from_secs(t.run_after_sec.unwrap_or(60)))
        }
        fn in_audience(&self, _: &str, id: i64, tags: &[String]) -> bool {
            id == 7 && tags.iter().any(|t| t == "vip")
        }
    }

    fn claim(now: Timestamp) -> ClaimRequest {
        ClaimRequest {
            now,
            limit: 1000,
            planner: Arc::new(Plan),
        }
    }

    fn job(id: i64, chat: Option<&str>, kind: JobKind, due: Timestamp, periodic: bool) -> NewJob {
        NewJob {
            id,
            bot_id: "bot".into(),
            dialog: chat.map(key),
            spec: JobSpec {
                kind,
                target_id: 7,
                target_code: "t".into(),
                lead_id: None,
                ticket_id: Some("T-1".into()),
                params: json!({"p": 1}),
                add_tags: vec![],
                remove_tags: vec![],
                condition: None,
            },
            timing: JobTiming {
                run_after_sec: periodic.then_some(60),
                is_periodic: periodic,
                ..JobTiming::default()
            },
            next_run_at: due,
            created_at: due,
            source: "test".into(),
        }
    }

    async fn schedule(store: &dyn Store, j: NewJob) -> JobRecord {
        match store
            .accept(vec![AcceptItem::Schedule(Box::new(j))])
            .await
            .expect("schedule")
            .remove(0)
        {
            AcceptOutcome::Job(r) => *r,
            other => panic!("scheduling answered {other:?}"),
        }
    }

    fn run_of(e: &StoredEvent) -> &JobEvent {
        match &e.event.payload {
            EventPayload::Job { job } => job,
            other => panic!("a claim logged {other:?}"),
        }
    }

    fn handled(e: &StoredEvent, outcome: RunOutcome) -> HandledEvent {
        let run = run_of(e);
        let mut h = HandledEvent::unchanged(e.seq, e.event.dialog.clone(), None, json!({}));
        h.run = Some(RunResult {
            run_id: run.run_id,
            job_id: run.job_id,
            outcome,
            condition: Some(true),
            error: None,
            started_at: Timestamp::now(),
            finished_at: Timestamp::now(),
            last: run.last,
        });
        h
    }

    pub(super) async fn due_jobs_are_claimed_once_and_runs_recorded(store: &dyn Store) {
        let t0 = Timestamp::from_second(2_000_000_000).expect("t0");
        let later = t0 + SignedDuration::from_secs(3600);
        let a = schedule(store, job(101, Some("job-a"), JobKind::Trigger, t0, false)).await;
        assert_eq!(a.status, JobStatus::Pending);
        schedule(store, job(102, Some("job-b"), JobKind::Script, t0, true)).await;
        schedule(
            store,
            job(103, Some("job-c"), JobKind::Script, later, false),
        )
        .await;
        assert_eq!(store.next_job_due().await.expect("next"), Some(t0));

        let early = store
            .claim_jobs(claim(t0 - SignedDuration::from_secs(1)))
            .await
            .expect("claim");
        assert_eq!(early.jobs, 0, "nothing is due before its time");

        let c = store.claim_jobs(claim(t0)).await.expect("claim");
        assert_eq!(c.jobs, 2, "both jobs due at t0 are claimed");
        assert_eq!(c.events.len(), 2);
        let again = store.claim_jobs(claim(t0)).await.expect("claim");
        assert_eq!(again.jobs, 0, "a due time is claimed once");
        assert_eq!(
            c.next_due,
            Some(t0 + SignedDuration::from_secs(60)),
            "the periodic job moved to its next period"
        );
        let unhandled = store.unhandled_events(0, 1000).await.expect("unhandled");
        for e in &c.events {
            assert!(
                unhandled.iter().any(|u| u.seq == e.seq),
                "a claimed run is an unhandled event until its result is applied"
            );
            assert_eq!(run_of(e).spec.ticket_id.as_deref(), Some("T-1"));
        }
        let one_shot = c
            .events
            .iter()
            .find(|e| run_of(e).job_id == 101)
            .expect("run of 101");
        assert!(run_of(one_shot).last, "a one-shot run is its job's last");
        let (running, runs) = store
            .get_job("bot", 101, 10)
            .await
            .expect("get")
            .expect("job 101");
        assert_eq!(running.status, JobStatus::Running);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].outcome, RunOutcome::Queued);
        assert_eq!(runs[0].due_at, t0);

        store
            .apply(
                c.events
                    .iter()
                    .map(|e| handled(e, RunOutcome::Ok))
                    .collect(),
            )
            .await
            .expect("apply");
        let (done, runs) = store
            .get_job("bot", 101, 10)
            .await
            .expect("get")
            .expect("101");
        assert_eq!(
            done.status,
            JobStatus::Done,
            "the last run finishes the job"
        );
        assert_eq!(runs[0].outcome, RunOutcome::Ok);
        assert!(runs[0].started_at.is_some() && runs[0].finished_at.is_some());
        let (periodic, _) = store
            .get_job("bot", 102, 10)
            .await
            .expect("get")
            .expect("102");
        assert_eq!(
            periodic.status,
            JobStatus::Pending,
            "a periodic job keeps going"
        );
        assert_eq!(periodic.run_count, 1);
        assert_eq!(
            periodic.last_run.map(|r| r.outcome),
            Some(RunOutcome::Ok),
            "the list shows the last run"
        );
        assert!(
            store
                .get_job("other-bot", 101, 10)
                .await
                .expect("get")
                .is_none(),
            "a job belongs to its bot"
        );
        let pending = store
            .list_jobs(
                "bot",
                &JobFilter {
                    status: Some(JobStatus::Pending),
                    limit: 10,
                    ..JobFilter::default()
                },
            )
            .await
            .expect("list");
        let ids: Vec<i64> = pending.iter().map(|j| j.id).collect();
        assert_eq!(ids, vec![103, 102], "pending jobs, newest first");
        // Leave nothing due for the checks that follow.
        for id in [102, 103] {
            cancel(store, id).await;
        }
    }

    async fn cancel(store: &dyn Store, id: i64) -> AcceptOutcome {
        store
            .accept(vec![AcceptItem::CancelJob {
                bot_id: "bot".into(),
                job_id: id,
                now: Timestamp::now(),
            }])
            .await
            .expect("cancel")
            .remove(0)
    }

    pub(super) async fn cancel_wins_over_a_queued_run(store: &dyn Store) {
        let t0 = Timestamp::from_second(2_000_000_100).expect("t0");
        schedule(store, job(201, Some("job-d"), JobKind::Trigger, t0, false)).await;
        let c = store.claim_jobs(claim(t0)).await.expect("claim");
        assert_eq!(c.jobs, 1);
        match cancel(store, 201).await {
            AcceptOutcome::Job(r) => assert_eq!(r.status, JobStatus::Cancelled),
            other => panic!("cancel answered {other:?}"),
        }
        assert_eq!(
            store.cancelled_queued_jobs().await.expect("cancelled"),
            vec![201],
            "a queued run of a cancelled job is known at start"
        );
        store
            .apply(vec![handled(&c.events[0], RunOutcome::Cancelled)])
            .await
            .expect("apply");
        let (j, runs) = store
            .get_job("bot", 201, 10)
            .await
            .expect("get")
            .expect("201");
        assert_eq!(j.status, JobStatus::Cancelled);
        assert_eq!(runs[0].outcome, RunOutcome::Cancelled);
        assert!(
            store
                .cancelled_queued_jobs()
                .await
                .expect("cancelled")
                .is_empty()
        );
        match cancel(store, 201).await {
            AcceptOutcome::Job(r) => assert_eq!(r.status, JobStatus::Cancelled),
            other => panic!("a second cancel answered {other:?}"),
        }
        assert!(matches!(
            cancel(store, 999_999).await,
            AcceptOutcome::NotFound
        ));
    }

    pub(super) async fn broadcasts_reach_matching_leads(store: &dyn Store) {
        // Two leads with the bot: one tagged vip, one not.
        let mut first = HandledEvent::unchanged(0, key("lead-vip"), None, json!({}));
        first.tags = Some(vec!["vip".into()]);
        let plain = HandledEvent::unchanged(0, key("lead-plain"), None, json!({}));
        store.apply(vec![first, plain]).await.expect("apply");
        let d = store
            .load_dialog(&key("lead-vip"))
            .await
            .expect("load")
            .expect("dialog");
        assert_eq!(
            store.lead_dialog(d.contact_id, "bot").await.expect("lead"),
            Some(key("lead-vip"))
        );
        assert_eq!(
            store
                .lead_dialog(d.contact_id, "nobot")
                .await
                .expect("lead"),
            None
        );

        let t0 = Timestamp::from_second(2_000_000_200).expect("t0");
        schedule(store, job(301, None, JobKind::Broadcast, t0, false)).await;
        let c = store.claim_jobs(claim(t0)).await.expect("claim");
        let chats: Vec<&str> = c
            .events
            .iter()
            .map(|e| e.event.dialog.chat_id.as_str())
            .collect();
        assert_eq!(
            chats,
            vec!["lead-vip"],
            "only the matching lead gets the broadcast"
        );
        let (j, runs) = store
            .get_job("bot", 301, 10)
            .await
            .expect("get")
            .expect("301");
        assert_eq!(
            j.status,
            JobStatus::Done,
            "a one-shot broadcast is done once fanned out"
        );
        assert_eq!(runs[0].dialogs, 1);
        store
            .apply(
                c.events
                    .iter()
                    .map(|e| {
                        HandledEvent::unchanged(e.seq, e.event.dialog.clone(), None, json!({}))
                    })
                    .collect(),
            )
            .await
            .expect("apply");
    }
}
