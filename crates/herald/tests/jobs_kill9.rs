//! Crash safety of scheduled jobs. The real `herald` binary gets a backlog of one-shot trigger
//! jobs that all come due at once, is killed with SIGKILL while it is working through them, and
//! restarts on the same data directory. SPEC §4 promises that a job runs once per due time and
//! that a job due while the server was down runs when it is back; SPEC's "a 2xx means committed"
//! makes every acknowledged job count. So after the restart every job must be `done` with exactly
//! one run, `ok`, and its reply must be in its lead's dialog exactly once: no job lost, none run
//! twice. One job in five is a bot-level trigger (no lead) that reports to a sink server over
//! `$http`: each of those must have reached the sink (at least once: a run cut off by the kill
//! before its commit calls again when it replays) and have exactly one run.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{ChildServer, Rig};
use futures_util::StreamExt;
use herald_engine::Clock;
use serde_json::{Value, json};

/// Leads (dialogs), and jobs spread over them round-robin: more jobs than the scheduler claims
/// in one transaction (2048), so the backlog is claimed in two batches.
const LEADS: usize = 20;
const JOBS: usize = 2500;
/// Milliseconds each run spends in a busy loop, so that the backlog takes a few seconds.
const BUSY_MS: u64 = 3;
/// Kill once at least this many runs have replied.
const KILL_AFTER: usize = JOBS / 5;
/// Concurrent clients scheduling the jobs.
const CLIENTS: usize = 16;
/// Every this many jobs, one is a bot-level trigger.
const BOT_LEVEL_EVERY: usize = 5;

fn bot_yaml(sink: &str) -> String {
    format!(
        r#"name: Ticker
channels:
  chatwidget: {{}}
injector:
  sink: {sink}
states:
  Hello:
    q!: hi
    a: hello
triggers:
  tick:
    id: 1
    script: |
      var t = Date.now();
      while (Date.now() - t < {BUSY_MS}) {{}}
      $reactions.answer("job " + $request.job.id);
  report:
    id: 2
    script: |
      var t = Date.now();
      while (Date.now() - t < {BUSY_MS}) {{}}
      $http.post($injector.sink, {{body: {{job: $request.job.id, lead: $request.leadId}}}});
"#
    )
}

/// Queries of this test on top of the shared child server.
trait Ticker {
    async fn all_jobs(&self, http: &reqwest::Client) -> Vec<Value>;
    async fn messages(&self, http: &reqwest::Client) -> usize;
}

impl Ticker for ChildServer {
    /// Every job of the bot, newest first, following `next_before`.
    async fn all_jobs(&self, http: &reqwest::Client) -> Vec<Value> {
        let mut jobs = Vec::new();
        let mut before = String::new();
        loop {
            let (s, v) = self
                .get(http, &format!("/bots/ticker/jobs?limit=1000{before}"))
                .await;
            assert_eq!(s, 200, "list jobs: {v}");
            jobs.extend(v["jobs"].as_array().cloned().unwrap_or_default());
            match v["next_before"].as_i64() {
                Some(n) => before = format!("&before={n}"),
                None => return jobs,
            }
        }
    }

    /// Total stored messages (both directions, every dialog).
    async fn messages(&self, http: &reqwest::Client) -> usize {
        let (s, v) = self.get(http, "/api/v1/admin/stats").await;
        assert_eq!(s, 200, "stats: {v}");
        v["messages"].as_u64().expect("messages") as usize
    }
}

/// Job statuses straight from the data directory, while no server runs: exactly what the
/// killed process had committed. Also the ids of the jobs that were done.
async fn statuses_on_disk(data: &Path) -> (BTreeMap<String, usize>, HashSet<i64>) {
    use herald_store::{JobFilter, Store};
    let store = herald_store_sqlite::SqliteStore::open(
        &data.join("herald.db"),
        herald_store_sqlite::Synchronous::Full,
    )
    .expect("open the killed server's database");
    let jobs = store
        .list_jobs(
            "ticker",
            &JobFilter {
                limit: JOBS * 2,
                ..JobFilter::default()
            },
        )
        .await
        .expect("list jobs");
    let mut by_status = BTreeMap::new();
    let mut done = HashSet::new();
    for j in jobs {
        *by_status.entry(j.status.as_str().to_owned()).or_default() += 1;
        if j.status == herald_store::JobStatus::Done {
            done.insert(j.id);
        }
    }
    (by_status, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_job_runs_exactly_once_across_a_kill_9() {
    tokio::time::timeout(Duration::from_secs(300), scenario())
        .await
        .expect("the kill -9 scenario took longer than 300 s");
}

async fn scenario() {
    let sink = common::Sink::start().await;
    let project = common::project_with_bot("ticker", &bot_yaml(&sink.url));
    let rig = Rig::new(project, &[], Duration::from_secs(30));
    let http = rig.http.clone();
    let first = rig.start("first").await;

    // The leads: one dialog each.
    let mut leads = Vec::with_capacity(LEADS);
    for i in 0..LEADS {
        let chat = format!("c{i}");
        let (s, v) = first
            .post(
                &http,
                &format!("/api/v1/bots/ticker/dialogs/{chat}/messages"),
                &json!({"text": "hi", "wait": true}),
            )
            .await;
        assert_eq!(s, 200, "hi in {chat}: {v}");
        let (s, v) = first
            .get(&http, &format!("/api/v1/bots/ticker/dialogs/{chat}"))
            .await;
        assert_eq!(s, 200, "{v}");
        leads.push((chat, v["contactId"].as_i64().expect("contactId")));
    }
    let messages_before = first.messages(&http).await;

    // Every job due at the same instant, a few seconds ahead so that all are stored by then.
    let run_at = herald_engine::SystemClock
        .now()
        .checked_add(Duration::from_secs(6))
        .expect("time")
        .to_string();
    let scheduling = Instant::now();
    let first = Arc::new(first);
    let leads = Arc::new(leads);
    // (job id, the lead's chat; `None` for a bot-level job)
    let scheduled: Vec<(i64, Option<String>)> = futures_util::stream::iter(0..JOBS)
        .map(|n| {
            let (server, http, leads, run_at) =
                (first.clone(), http.clone(), leads.clone(), run_at.clone());
            async move {
                let (chat, lead) = &leads[n % LEADS];
                let (body, chat) = if n % BOT_LEVEL_EVERY == 0 {
                    (json!({"trigger_code": "report", "run_at": run_at}), None)
                } else {
                    let body = json!({"trigger_code": "tick", "lead_id": lead, "run_at": run_at});
                    (body, Some(chat.clone()))
                };
                let (s, v) = server
                    .post(&http, "/bots/ticker/jobs/schedule", &body)
                    .await;
                assert_eq!(s, 201, "scheduling job #{n}: {v}");
                (v["job"]["id"].as_i64().expect("job id"), chat)
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    let scheduled_in = scheduling.elapsed();
    let mut first = Arc::into_inner(first).expect("no other owner");
    let all: HashMap<i64, Option<String>> = scheduled.iter().cloned().collect();
    assert_eq!(all.len(), JOBS, "job ids must be distinct");
    let chat_of: HashMap<i64, String> = all
        .iter()
        .filter_map(|(id, chat)| chat.clone().map(|c| (*id, c)))
        .collect();
    let bot_level: Vec<i64> = all
        .iter()
        .filter_map(|(id, chat)| chat.is_none().then_some(*id))
        .collect();

    // Wait for the backlog to be partly worked off, then SIGKILL.
    let started = Instant::now();
    let mut replied_at_kill;
    loop {
        replied_at_kill = first.messages(&http).await - messages_before;
        if replied_at_kill >= KILL_AFTER {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {replied_at_kill} runs replied 60 s after scheduling; log:\n{}",
            first.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.child.kill().expect("SIGKILL herald");
    let status = first.child.wait().expect("reap herald");
    assert!(
        status.code().is_none(),
        "herald had exited on its own ({status}); log:\n{}",
        first.log_text()
    );
    let (on_disk, done_on_disk) = statuses_on_disk(rig.data.path()).await;
    let done_at_kill = on_disk.get("done").copied().unwrap_or(0);
    let reported_at_kill = sink.received.lock().expect("lock").len();
    println!(
        "bot-level jobs: {} scheduled, {reported_at_kill} sink calls before the kill",
        bot_level.len()
    );
    println!(
        "scheduled {JOBS} jobs for {LEADS} leads in {scheduled_in:?}; killed with \
         ≥{replied_at_kill} replies seen over HTTP; job statuses on disk at the kill: {on_disk:?}"
    );
    assert!(
        done_at_kill < JOBS,
        "every job was done before the kill: the test proved nothing ({on_disk:?}); make the \
         backlog bigger or slower"
    );

    let second = rig.start("second").await;
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(120);
    let jobs = loop {
        let jobs = second.all_jobs(&http).await;
        if jobs.len() == JOBS && jobs.iter().all(|j| j["status"] == "done") {
            break jobs;
        }
        if Instant::now() > deadline {
            let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
            for j in &jobs {
                *by_status
                    .entry(j["status"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            panic!(
                "120 s after the restart: {} jobs, by status {by_status:?}; log:\n{}",
                jobs.len(),
                second.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "after the restart every job was done in {:?}",
        restarted.elapsed()
    );

    // Every acknowledged job is there, with one run, ok.
    let listed: HashMap<i64, &Value> = jobs
        .iter()
        .map(|j| (j["id"].as_i64().expect("id"), j))
        .collect();
    for (id, chat) in &all {
        let j = listed
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged job {id} is missing"));
        match chat {
            Some(chat) => assert_eq!(j["dialog"]["chatId"], chat.as_str(), "{j}"),
            None => assert!(
                j.get("dialog").is_none(),
                "a bot-level job has no dialog: {j}"
            ),
        }
        assert_eq!(
            j["run_count"], 1,
            "job {id} was claimed more than once: {j}"
        );
        assert_eq!(j["last_run"]["outcome"], "ok", "{j}");
    }
    let second = Arc::new(second);
    let bad: Vec<String> = futures_util::stream::iter(all.keys().copied())
        .map(|id| {
            let (server, http) = (second.clone(), http.clone());
            async move {
                let (s, v) = server.get(&http, &format!("/bots/ticker/jobs/{id}")).await;
                let runs = v["job"]["runs"].as_array().cloned().unwrap_or_default();
                let ok = s == 200 && runs.len() == 1 && runs[0]["outcome"] == "ok";
                (!ok).then(|| format!("job {id}: {s} {v}"))
            }
        })
        .buffer_unordered(8)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert!(
        bad.is_empty(),
        "{} jobs do not have exactly one `ok` run; first: {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );

    // Every job's reply is in its lead's dialog, exactly once.
    let mut seen: HashMap<i64, Vec<String>> = HashMap::new();
    for (chat, _) in leads.iter() {
        let mut after = String::new();
        loop {
            let (s, v) = second
                .get(
                    &http,
                    &format!("/api/v1/bots/ticker/dialogs/{chat}/messages?limit=1000{after}"),
                )
                .await;
            assert_eq!(s, 200, "messages of {chat}: {v}");
            let page = v["messages"].as_array().cloned().unwrap_or_default();
            for m in &page {
                if let Some(n) = m["text"].as_str().and_then(|t| t.strip_prefix("job ")) {
                    let id: i64 = n
                        .parse()
                        .unwrap_or_else(|_| panic!("{chat}: unexpected reply {m}"));
                    seen.entry(id).or_default().push(chat.clone());
                }
            }
            if page.len() < 1000 {
                break;
            }
            after = format!(
                "&after={}",
                page.last().expect("last")["id"].as_str().expect("id")
            );
        }
    }
    let missing: Vec<i64> = chat_of
        .keys()
        .copied()
        .filter(|id| !seen.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} jobs never replied (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let twice: Vec<(&i64, &Vec<String>)> = seen.iter().filter(|(_, c)| c.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "jobs that replied more than once: {twice:?}"
    );
    for (id, chats) in &seen {
        let want = chat_of
            .get(id)
            .unwrap_or_else(|| panic!("a reply for job {id}, which was never scheduled"));
        assert_eq!(&chats[0], want, "job {id} replied in the wrong dialog");
    }
    assert_eq!(
        second.messages(&http).await,
        messages_before + chat_of.len()
    );

    // Every bot-level job reached the sink, with no lead; calls made again by a replayed run
    // are at-least-once side effects, counted here.
    let mut calls: HashMap<i64, usize> = HashMap::new();
    for (i, v) in sink.received.lock().expect("lock").iter().enumerate() {
        assert_eq!(v["lead"], Value::Null, "a bot-level run has no lead: {v}");
        let id = v["job"].as_i64().expect("job id");
        *calls.entry(id).or_default() += 1;
        assert!(
            i < reported_at_kill || !done_on_disk.contains(&id),
            "bot-level job {id} ran again after the restart although its run was committed"
        );
    }
    let unreported: Vec<&i64> = bot_level
        .iter()
        .filter(|id| !calls.contains_key(id))
        .collect();
    assert!(
        unreported.is_empty(),
        "{} bot-level jobs never reached the sink (first: {:?})",
        unreported.len(),
        &unreported[..unreported.len().min(10)]
    );
    let stray: Vec<&i64> = calls.keys().filter(|id| !bot_level.contains(id)).collect();
    assert!(
        stray.is_empty(),
        "sink calls from jobs that are not bot-level: {stray:?}"
    );
    let repeated = calls.values().filter(|n| **n > 1).count();
    println!(
        "bot-level jobs: each ran once; {repeated} of {} called the sink again after the restart \
         (runs cut off by the kill before their commit)",
        bot_level.len()
    );
}
