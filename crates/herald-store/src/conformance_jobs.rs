//! Conformance checks for jobs: a due time is claimed once, a periodic job moves on, a cancel
//! reaches queued runs, a broadcast fans out to the leads whose tags match, a bot-level trigger
//! runs under its own key without a dialog.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::conformance::key;
use crate::*;

/// Periodic jobs repeat every `run_after_sec`; broadcast 7 goes to contacts tagged `vip`.
struct Plan;

impl JobPlanner for Plan {
    fn next_due(&self, _: &str, t: &JobTiming, due: Timestamp, _: Timestamp) -> Option<Timestamp> {
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
            ticket_id: Some(json!("T-1")),
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

pub(crate) async fn due_jobs_are_claimed_once_and_runs_recorded(store: &dyn Store) {
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
        assert_eq!(run_of(e).spec.ticket_id, Some(json!("T-1")));
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

pub(crate) async fn cancel_wins_over_a_queued_run(store: &dyn Store) {
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

pub(crate) async fn broadcasts_reach_matching_leads(store: &dyn Store) {
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
                .map(|e| HandledEvent::unchanged(e.seq, e.event.dialog.clone(), None, json!({})))
                .collect(),
        )
        .await
        .expect("apply");
}

pub(crate) async fn a_trigger_without_a_lead_runs_under_its_bot_level_key(store: &dyn Store) {
    let t0 = Timestamp::from_second(2_000_000_300).expect("t0");
    let later = t0 + SignedDuration::from_secs(3600);
    let dialogs_before = store.stats().await.expect("stats").dialogs;
    let mut bot_level = job(401, None, JobKind::Trigger, t0, true);
    bot_level.spec.ticket_id = Some(json!(42));
    schedule(store, bot_level).await;
    let c = store.claim_jobs(claim(t0)).await.expect("claim");
    assert_eq!(
        c.events.len(),
        1,
        "a bot-level trigger's due time is one run"
    );
    let e = &c.events[0];
    assert_eq!(
        e.event.dialog,
        DialogKey::bot_level("bot", 401),
        "a bot-level run is logged under its job's bot-level key"
    );
    assert_eq!(
        run_of(e).spec.ticket_id,
        Some(json!(42)),
        "a numeric ticket id stays a number"
    );
    let unhandled = store.unhandled_events(0, 1000).await.expect("unhandled");
    assert!(
        unhandled.iter().any(|u| u.seq == e.seq),
        "a claimed bot-level run is unhandled until its result is applied"
    );

    // Its result schedules a job for a lead, as a bot-level script may.
    let mut h = handled(e, RunOutcome::Ok);
    h.schedule
        .push(job(402, Some("job-e"), JobKind::Trigger, later, false));
    let applied = store.apply(vec![h]).await.expect("apply");
    assert!(applied[0].replies.is_empty());
    let unhandled = store.unhandled_events(0, 1000).await.expect("unhandled");
    assert!(
        !unhandled.iter().any(|u| u.seq == e.seq),
        "a bot-level run is handled once its run is finished"
    );
    assert!(
        store
            .load_dialog(&DialogKey::bot_level("bot", 401))
            .await
            .expect("load")
            .is_none(),
        "a bot-level run stores no dialog"
    );
    assert_eq!(
        store.stats().await.expect("stats").dialogs,
        dialogs_before,
        "a bot-level run creates no dialog and no contact"
    );
    let (periodic, runs) = store
        .get_job("bot", 401, 10)
        .await
        .expect("get")
        .expect("401");
    assert_eq!(periodic.status, JobStatus::Pending);
    assert!(periodic.dialog.is_none());
    assert_eq!(runs[0].outcome, RunOutcome::Ok);
    assert!(
        store.get_job("bot", 402, 10).await.expect("get").is_some(),
        "a job scheduled by a bot-level run is stored with its result"
    );
    for id in [401, 402] {
        cancel(store, id).await;
    }
}
