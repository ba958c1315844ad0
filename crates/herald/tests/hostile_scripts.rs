//! Hostile scripts against the real server (SPEC §2: a runaway script never harms the server or
//! others). Each case is a bot script an attacker — or a careless author — could write: it must
//! fail its own turn with `scriptError`, within the run's budget, and leave nothing of itself
//! behind: no flood of replies, no pushbacks, no jobs, no oversized `$session`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// `SINK` is replaced by the address of a server that accepts connections and never answers.
const HOSTILE: &str = r#"
name: Hostile
channels:
  chatwidget: {}
injector:
  silent: SINK
states:
  Hello:
    q!: hi
    a: hello
  Spam:
    q!: spam
    script: |
      while (true) { $reactions.answer("spam"); }
  SpamCaught:
    q!: spam caught
    script: |
      while (true) { try { $reactions.answer("spam"); } catch (e) {} }
  Fine:
    q!: fine
    script: |
      for (var i = 0; i < 100; i++) $reactions.answer("line " + i);
  TooMany:
    q!: too many
    script: |
      for (var i = 0; i < 101; i++) $reactions.answer("line " + i);
  Huge:
    q!: huge
    a: "{{ 'x'.repeat(300000) }}"
  Pushbacks:
    q!: pushbacks
    script: |
      while (true) {
        try { $pushgate.createPushback("chatwidget", "hostile", $request.chatId, "ping", {}); } catch (e) {}
      }
  PushThenThrow:
    q!: push then throw
    script: |
      $pushgate.createPushback("chatwidget", "hostile", $request.chatId, "ping", {});
      $jobs.schedule({trigger_code: "noop", run_after_sec: 60});
      throw new Error("after the pushback");
  Jobs:
    q!: jobs
    script: |
      for (var i = 0; i < 1001; i++) $jobs.schedule({trigger_code: "noop", run_after_sec: 60});
  Silent:
    q!: silent
    script: |
      for (var i = 0; i < 10; i++) $http.get($injector.silent, {timeout: 30000});
      $reactions.answer("all ten answered");
  Oom:
    q!: oom
    script: |
      for (;;) {
        try { var a = []; for (;;) a.push(new Array(100000).fill(1)); } catch (e) {}
      }
  BigSession:
    q!: big session
    script: |
      $session.keep = "old";
      $session.blob = "x".repeat(10 * 1024 * 1024);
  SmallSession:
    q!: small session
    script: |
      $session.keep = "kept";
  BigClient:
    q!: big client
    script: |
      $client.blob = "x".repeat(100 * 1024);
  ManyTags:
    q!: many tags
    script: |
      var t = [];
      for (var i = 0; i < 3000; i++) t.push("tag-" + i + "-" + "x".repeat(40));
      $contact.addTags(t);
  Logs:
    q!: logs
    script: |
      for (var i = 0; i < 100000; i++) log("line", i);
      $reactions.answer("logged");
  Loop:
    q!: loop
    script: while (true) {}
  Failed:
    event!: scriptError
    a: "scriptError {{ $request.rawRequest.eventData.kind }}: {{ $request.rawRequest.eventData.message }}"
triggers:
  noop:
    id: 1
    script: log("noop")
"#;

struct Lab {
    server: TestServer,
    _project: tempfile::TempDir,
    _data: tempfile::TempDir,
}

/// A listener that accepts connections and never answers, held for the test's life.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

async fn lab(url: &str, tune: impl FnOnce(&mut herald::Settings)) -> Lab {
    let project = project_with_bot("hostile", &HOSTILE.replace("SINK", url));
    let data = tempfile::tempdir().expect("tempdir");
    let mut s = settings(data.path());
    tune(&mut s);
    let server = TestServer::start_with(project.path(), s).await;
    Lab {
        server,
        _project: project,
        _data: data,
    }
}

impl Lab {
    /// Says `text` in `chat`; returns the replies' texts and how long the turn took.
    async fn say(&self, chat: &str, text: &str) -> (Vec<String>, Duration) {
        let started = Instant::now();
        let replies = self.server.say("hostile", chat, text).await;
        let took = started.elapsed();
        let texts = replies
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect();
        (texts, took)
    }

    /// Waits for the `scriptError` answer in `chat` and returns its text.
    async fn script_error(&self, chat: &str) -> String {
        eventually(&format!("the scriptError answer in {chat}"), async || {
            self.server
                .texts("hostile", chat)
                .await
                .into_iter()
                .find(|t| t.starts_with("scriptError"))
        })
        .await
    }

    async fn pushbacks(&self, chat: &str) -> Vec<Value> {
        let (s, v) = self
            .server
            .get(&format!("/api/v1/pushbacks?botId=hostile&chatId={chat}"))
            .await;
        assert_eq!(s, 200, "{v}");
        v["pushbacks"]
            .as_array()
            .or_else(|| v.as_array())
            .cloned()
            .unwrap_or_default()
    }

    async fn jobs(&self) -> Vec<Value> {
        let (s, v) = self.server.get("/bots/hostile/jobs?limit=1000").await;
        assert_eq!(s, 200, "{v}");
        v["jobs"].as_array().cloned().unwrap_or_default()
    }
}

/// Resident memory of this process (the server runs in it), in MiB.
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// `while (true) $reactions.answer("spam")` stops at the reply cap, with or without a
/// try/catch around the call: the turn fails with a `limit` scriptError and stores none of
/// its replies; memory stays flat over repeated turns. A turn at the cap is fine.
#[tokio::test]
async fn a_reply_flood_fails_its_turn_at_the_cap_and_stores_none_of_it() {
    let (url, _silent) = silent_server().await;
    let lab = lab(&url, |_| {}).await;
    let before = rss_mib();
    for (i, text) in ["spam", "spam caught", "spam", "spam caught", "spam"]
        .iter()
        .enumerate()
    {
        let chat = format!("flood-{i}");
        let (replies, took) = lab.say(&chat, text).await;
        assert!(
            replies.is_empty(),
            "{text}: nothing of the turn is sent: {replies:?}"
        );
        let error = lab.script_error(&chat).await;
        assert!(error.contains("scriptError limit"), "{error}");
        assert!(error.contains("script_max_replies"), "{error}");
        println!("{text}: failed after {took:?}");
        let sent: Vec<Value> = lab
            .server
            .messages("hostile", &chat)
            .await
            .into_iter()
            .filter(|m| m["direction"] == "out" && m["text"] == "spam")
            .collect();
        assert!(sent.is_empty(), "no spam is stored: {} replies", sent.len());
    }
    let after = rss_mib();
    println!("RSS {before} MiB before five floods, {after} MiB after");
    assert!(
        after < before + 200,
        "memory grew from {before} to {after} MiB"
    );

    let (replies, _) = lab.say("fine", "fine").await;
    assert_eq!(replies.len(), 100, "exactly the cap is fine");
    lab.say("many", "too many").await;
    assert!(
        lab.script_error("many")
            .await
            .contains("script_max_replies")
    );
    lab.say("huge", "huge").await;
    assert!(
        lab.script_error("huge")
            .await
            .contains("script_max_reply_bytes")
    );
}

/// Host calls count against the turn's wall-clock budget and against a cap: a pushback loop
/// ends at the budget, and its turn leaves no pushback behind; a turn that throws after
/// creating a pushback and scheduling a job leaves neither; more than `script_max_host_calls`
/// jobs fail the turn and store none.
#[tokio::test]
async fn host_calls_spend_the_turns_budget_and_a_failed_turn_leaves_nothing_behind() {
    let (url, _silent) = silent_server().await;
    let lab = lab(&url, |s| s.script_timeout_ms = 500).await;
    let (replies, took) = lab.say("pb", "pushbacks").await;
    assert!(replies.is_empty(), "{replies:?}");
    let error = lab.script_error("pb").await;
    assert!(
        error.contains("scriptError timeout") || error.contains("scriptError limit"),
        "{error}"
    );
    println!("a pushback loop with a 500 ms budget failed after {took:?}: {error}");
    lab.server.settle().await;
    assert_eq!(
        lab.pushbacks("pb").await,
        Vec::<Value>::new(),
        "no pushback left"
    );

    lab.say("pt", "push then throw").await;
    assert!(lab.script_error("pt").await.contains("after the pushback"));
    lab.server.settle().await;
    assert_eq!(lab.pushbacks("pt").await, Vec::<Value>::new());
    assert_eq!(lab.jobs().await, Vec::<Value>::new(), "no job left");

    let lab = self::lab(&url, |s| s.script_timeout_ms = 5000).await;
    lab.say("jobs", "jobs").await;
    let error = lab.script_error("jobs").await;
    assert!(error.contains("script_max_host_calls"), "{error}");
    lab.server.settle().await;
    assert_eq!(lab.jobs().await, Vec::<Value>::new(), "no job left");
}

/// Ten `$http` calls to a server that never answers, each asking for 30 s: the first gets what
/// is left of the turn's budget, and the turn fails with a timeout instead of succeeding after
/// minutes.
#[tokio::test]
async fn http_calls_to_a_silent_server_get_only_what_is_left_of_the_budget() {
    let (url, _silent) = silent_server().await;
    let lab = lab(&url, |s| s.script_timeout_ms = 500).await;
    let (replies, took) = lab.say("h", "silent").await;
    assert!(replies.is_empty(), "{replies:?}");
    let error = lab.script_error("h").await;
    assert!(error.contains("scriptError timeout"), "{error}");
    println!("ten calls to a silent server with a 500 ms budget: the turn failed after {took:?}");
}

/// A script that catches its own out-of-memory errors and tries again is stopped by the
/// turn's budget all the same; the worker then serves the next dialog.
#[tokio::test]
async fn a_script_that_catches_its_out_of_memory_errors_is_stopped_by_the_budget() {
    let (url, _silent) = silent_server().await;
    let lab = lab(&url, |s| s.script_timeout_ms = 500).await;
    let (_, took) = lab.say("m", "oom").await;
    let error = lab.script_error("m").await;
    assert!(
        error.contains("scriptError timeout") || error.contains("scriptError outofmemory"),
        "{error}"
    );
    println!("an out-of-memory retry loop with a 500 ms budget failed after {took:?}");
    let (replies, _) = lab.say("m2", "hi").await;
    assert_eq!(replies, ["hello"]);
}

/// `$session`, `$client` and the tags are stored only up to `script_max_state_bytes`: a larger
/// one fails the turn, and what was stored before stays.
#[tokio::test]
async fn oversized_session_client_and_tags_fail_the_turn_and_keep_the_old_values() {
    let (url, _silent) = silent_server().await;
    let lab = lab(&url, |_| {}).await;
    lab.say("s", "small session").await;
    lab.say("s", "big session").await;
    let error = lab.script_error("s").await;
    assert!(error.contains("$session"), "{error}");
    assert!(error.contains("script_max_state_bytes"), "{error}");
    let (_, d) = lab.server.get("/api/v1/bots/hostile/dialogs/s").await;
    assert_eq!(
        d["session"],
        json!({"keep": "kept"}),
        "the old $session stays"
    );

    lab.say("c", "big client").await;
    assert!(lab.script_error("c").await.contains("$client"));
    lab.say("t", "hi").await;
    lab.say("t", "many tags").await;
    assert!(lab.script_error("t").await.contains("$contact.tags"));
    let id = lab.server.contact_id("hostile", "t").await;
    let (_, c) = lab.server.get(&format!("/api/v1/contacts/{id}")).await;
    assert_eq!(c["tags"], json!([]), "{c}");
}

/// A log flood writes at most `script_max_log_lines` lines and the turn goes on.
#[tokio::test]
async fn a_log_flood_is_cut_at_the_cap_and_the_turn_goes_on() {
    let (url, _silent) = silent_server().await;
    let lab = lab(&url, |s| s.script_timeout_ms = 5000).await;
    let (replies, _) = lab.say("l", "logs").await;
    assert_eq!(replies, ["logged"]);
}

/// What a healthy dialog sees while hostile dialogs run endless loops on the same worker (one
/// worker, so all share it): every healthy message is answered, and the wait is about one
/// hostile turn (the script budget), not the hostile backlog, because a dialog whose turn was
/// slow waits behind the others. The latencies are printed, not asserted.
#[tokio::test]
async fn a_healthy_dialog_keeps_answering_while_hostile_scripts_loop_on_its_worker() {
    const BUDGET_MS: u64 = 300;
    const HOSTILE: usize = 4;
    const BACKLOG: usize = 4;
    let (url, _silent) = silent_server().await;
    let lab = lab(&url, |s| {
        s.script_timeout_ms = BUDGET_MS;
        s.workers = 1;
    })
    .await;
    lab.say("healthy", "hi").await;
    // Every hostile dialog queues a backlog of endless turns.
    for d in 0..HOSTILE {
        for _ in 0..BACKLOG {
            let (s, v) = lab
                .server
                .post(
                    &format!("/api/v1/bots/hostile/dialogs/hostile-{d}/messages"),
                    json!({"text": "loop"}),
                )
                .await;
            assert_eq!(s, 202, "{v}");
        }
    }
    let mut waits = Vec::new();
    for _ in 0..10 {
        let (replies, took) = lab.say("healthy", "hi").await;
        assert_eq!(replies, ["hello"], "the healthy dialog is answered");
        waits.push(took);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    waits.sort();
    println!(
        "healthy dialog with {HOSTILE} hostile dialogs x {BACKLOG} endless turns ({BUDGET_MS} ms \
         budget, {} ms of hostile work) on one worker: median {:?}, max {:?}",
        HOSTILE * BACKLOG * BUDGET_MS as usize,
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
}
