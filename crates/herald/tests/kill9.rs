//! Crash safety of pushback activations. The real `herald` binary takes activations from many
//! concurrent clients and is killed with SIGKILL while requests are in flight, then restarts on the
//! same data directory. The contract (SPEC: "a 2xx on any write means the write is committed")
//! demands that every activation answered 200 produces its reply exactly once after the restart,
//! that nothing is handled twice, and that each dialog's replies keep the order in which its
//! activations were issued.

mod common;

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ADMIN;
use common::process::{self, Issued, Load, Rig};
use serde_json::json;

const BOT: &str = r#"name: Bench
channels:
  chatwidget: {}
states:
  Ping:
    noContext: true
    event!: ping
    a: "pong {{ $request.rawRequest.eventData.n }}"
"#;

/// Activations come faster than the per-link rate limit allows.
const NO_RATE_LIMIT: &[(&str, &str)] = &[("HERALD_PUSHBACK_RATE_LIMIT", "0")];

const DIALOGS: usize = 50;
const TASKS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_activation_replies_exactly_once_after_kill_9() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the kill -9 scenario took longer than 240 s");
}

async fn scenario() {
    let project = common::project_with_bot("bench", BOT);
    let rig = Rig::new(project, NO_RATE_LIMIT, Duration::from_secs(20));
    let http = rig.http.clone();
    let mut first = rig.start("first").await;

    // One pushback per dialog.
    let mut links = Vec::with_capacity(DIALOGS);
    for i in 0..DIALOGS {
        let r = http
            .post(format!("{}/api/v1/pushbacks", first.base))
            .bearer_auth(ADMIN)
            .json(&json!({"channelType": "chatwidget", "botId": "bench", "chatId": format!("c{i}"), "event": "ping"}))
            .send()
            .await
            .expect("create pushback");
        let (s, v) = common::status_json(r).await;
        assert_eq!(s, 201, "creating pushback c{i}: {v}");
        links.push(v["link"].as_str().expect("link").to_owned());
    }

    // Each task owns a disjoint set of dialogs, so each dialog's activations are sequential.
    let links = Arc::new(links);
    let load = Load::new();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let dialogs = (t..DIALOGS).step_by(TASKS).collect();
            let (http, links) = (http.clone(), links.clone());
            tokio::spawn(load.clone().run(dialogs, 200, "c", move |dialog, n| {
                http.post(&links[dialog]).json(&json!({ "n": n })).send()
            }))
        })
        .collect();

    let killed_after = first.kill_under_load(&load.acked, &load.stop).await;
    let issued = process::gather(tasks, "200").await;

    let second = rig.start("second").await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut pending_at_restart = None;
    loop {
        let (s, v) = second.get(&http, "/api/v1/admin/stats").await;
        assert_eq!(s, 200, "stats: {v}");
        pending_at_restart.get_or_insert_with(|| v["events"]["pending"].clone());
        if v["events"]["pending"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events still pending 90 s after the restart: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every "pong <n>" reply, per dialog, in stored order.
    let mut replies: Vec<Vec<u64>> = vec![Vec::new(); DIALOGS];
    for (i, dialog_replies) in replies.iter_mut().enumerate() {
        let mut after: Option<String> = None;
        loop {
            let q = after
                .as_ref()
                .map(|a| format!("&after={a}"))
                .unwrap_or_default();
            let (s, v) = second
                .get(
                    &http,
                    &format!("/api/v1/bots/bench/dialogs/c{i}/messages?limit=1000{q}"),
                )
                .await;
            assert_eq!(s, 200, "messages of c{i}: {v}");
            let page = v["messages"].as_array().cloned().unwrap_or_default();
            for m in &page {
                if let Some(n) = m["text"].as_str().and_then(|t| t.strip_prefix("pong ")) {
                    dialog_replies.push(
                        n.trim()
                            .parse()
                            .unwrap_or_else(|_| panic!("c{i}: unexpected reply {m}")),
                    );
                }
            }
            if page.len() < 1000 {
                break;
            }
            after = Some(
                page.last()
                    .and_then(|m| m["id"].as_str())
                    .expect("message id")
                    .to_owned(),
            );
        }
    }

    let by_n: HashMap<u64, &Issued> = issued.iter().map(|x| (x.n, x)).collect();
    let mut seen: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (d, ns) in replies.iter().enumerate() {
        for &n in ns {
            seen.entry(n).or_default().push(d);
        }
    }
    let acked: Vec<u64> = issued.iter().filter(|x| x.acked).map(|x| x.n).collect();
    let unacked_handled = issued
        .iter()
        .filter(|x| !x.acked && seen.contains_key(&x.n))
        .count();
    let total_replies: usize = replies.iter().map(Vec::len).sum();
    println!(
        "killed after {killed_after:?}: issued {}, acked {}, replies {total_replies}, unacked-but-handled \
         {unacked_handled}, pending at restart {}",
        issued.len(),
        acked.len(),
        pending_at_restart.unwrap_or_default()
    );
    assert!(
        !acked.is_empty(),
        "no activation was acknowledged before the kill"
    );

    let missing: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|n| !seen.contains_key(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged activations have no reply after the restart (first: {:?})",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(20)]
    );
    let twice: Vec<(u64, &Vec<usize>)> = seen
        .iter()
        .filter(|(_, ds)| ds.len() > 1)
        .map(|(n, ds)| (*n, ds))
        .collect();
    assert!(
        twice.is_empty(),
        "activations replied to more than once (n → dialogs): {twice:?}"
    );
    for (n, ds) in &seen {
        let x = by_n.get(n).unwrap_or_else(|| {
            panic!(
                "reply `pong {n}` in c{} for an n that was never sent",
                ds[0]
            )
        });
        assert_eq!(
            ds[0], x.target,
            "reply `pong {n}` landed in c{} but was sent to c{}",
            ds[0], x.target
        );
    }
    // One task issued each dialog's activations one after another with increasing n.
    for (d, ns) in replies.iter().enumerate() {
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "c{d}: replies out of issue order: {ns:?}"
        );
    }
    drop(second);
}
