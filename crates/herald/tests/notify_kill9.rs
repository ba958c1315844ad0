//! Crash safety of notification triggers. The real `herald` binary takes `POST /v1/events/trigger`
//! from many concurrent clients and is killed with SIGKILL while requests are in flight, then
//! restarts on the same data directory. A 201 means the trigger is committed (SPEC: "a 2xx on any
//! write means the write is committed"), so every trigger answered 201 must produce its in-app
//! feed entry after the restart, exactly once, in the feed of the subscriber it was sent to; a
//! trigger that was stored but not answered may be delivered, but also only once.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::ADMIN;
use common::process::{self, ChildServer, Issued, Load, Rig};
use serde_json::{Value, json};

const BOT: &str =
    "name: Shop\nchannels:\n  chatwidget: {}\nstates:\n  Hi:\n    q!: [hi]\n    a: hello\n";

const WORKFLOW: &str = r#"name: Ping
payloadSchema:
  type: object
  required: [n]
steps:
  - type: in_app
    subject: "n {{ payload.n }}"
    body: "ping {{ payload.n }} for {{ subscriber.subscriberId }}"
"#;

const SUBSCRIBERS: usize = 24;
const TASKS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_trigger_lands_in_the_feed_exactly_once_after_kill_9() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the kill -9 scenario took longer than 240 s");
}

/// The `notifications` counters of the admin stats.
async fn counters(server: &ChildServer, http: &reqwest::Client) -> Value {
    let (s, v) = server.get(http, "/api/v1/admin/stats").await;
    assert_eq!(s, 200, "stats: {v}");
    v["notifications"].clone()
}

/// Every `n` in subscriber `s<i>`'s feed, newest first, read page by page.
async fn feed_of(server: &ChildServer, http: &reqwest::Client, i: usize) -> Vec<u64> {
    let mut ns = Vec::new();
    for page in 0.. {
        let (s, v) = server
            .get(
                http,
                &format!("/v1/subscribers/s{i}/notifications/feed?limit=100&page={page}"),
            )
            .await;
        assert_eq!(s, 200, "feed of s{i}: {v}");
        let data = v["data"].as_array().cloned().unwrap_or_default();
        for entry in &data {
            let n = entry["subject"]
                .as_str()
                .and_then(|t| t.strip_prefix("n "))
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("s{i}: unexpected feed entry {entry}"));
            assert_eq!(
                entry["content"],
                format!("ping {n} for s{i}"),
                "s{i}: the entry is rendered for its subscriber"
            );
            ns.push(n);
        }
        if v["hasMore"] != true {
            break;
        }
    }
    ns
}

async fn scenario() {
    let project = common::project_with_bot("shop", BOT);
    let workflows = project.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir workflows");
    std::fs::write(workflows.join("ping.yaml"), WORKFLOW).expect("write workflow");
    let rig = Rig::new(project, &[], Duration::from_secs(20));
    let http = rig.http.clone();
    let mut first = rig.start("first").await;

    // Each task owns a disjoint set of subscribers.
    let load = Load::new();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (http, base) = (http.clone(), first.base.clone());
            let subscribers = (t..SUBSCRIBERS).step_by(TASKS).collect();
            tokio::spawn(
                load.clone()
                    .run(subscribers, 201, "s", move |subscriber, n| {
                        http.post(format!("{base}/v1/events/trigger"))
                            .header("Authorization", format!("ApiKey {ADMIN}"))
                            .json(&json!({
                                "name": "ping",
                                "to": format!("s{subscriber}"),
                                "payload": {"n": n},
                                "transactionId": format!("tx-{n}"),
                            }))
                            .send()
                    }),
            )
        })
        .collect();

    let killed_after = first.kill_under_load(&load.acked, &load.stop).await;
    let issued = process::gather(tasks, "201").await;

    let second = rig.start("second").await;
    // Each run of this workflow writes one feed entry: wait until every stored run has.
    let deadline = Instant::now() + Duration::from_secs(90);
    let at_restart = counters(&second, &http).await;
    loop {
        let c = counters(&second, &http).await;
        if c["runsPending"] == 0 && c["feedEntries"] == c["runs"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs still unfinished 90 s after the restart: {c}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut seen: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for i in 0..SUBSCRIBERS {
        for n in feed_of(&second, &http, i).await {
            seen.entry(n).or_default().push(i);
        }
    }
    let acked: Vec<&Issued> = issued.iter().filter(|x| x.acked).collect();
    let unacked_delivered = issued
        .iter()
        .filter(|x| !x.acked && seen.contains_key(&x.n))
        .count();
    println!(
        "killed after {killed_after:?}: issued {}, acked {}, feed entries {}, unacked-but-delivered \
         {unacked_delivered}, counters at restart {at_restart}",
        issued.len(),
        acked.len(),
        seen.values().map(Vec::len).sum::<usize>(),
    );
    assert!(
        !acked.is_empty(),
        "no trigger was acknowledged before the kill"
    );

    let required: Vec<u64> = acked.iter().map(|x| x.n).collect();
    process::assert_exactly_once(&issued, &required, &seen, "feed entry");
    drop(second);
}
