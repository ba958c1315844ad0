//! Scenario runtime and sandbox through the real server: templates, conditions, `$session` and
//! `$client` persistence, `$reactions`, `$http`, and runaway scripts that must only hurt their
//! own turn (a `scriptError` event in their dialog), never the server or other dialogs.

mod common;

use common::*;
use serde_json::{Value, json};

const BOT: &str = r#"
name: Lab
channels:
  chatwidget: {}
injector:
  greeting: Welcome
  sinkUrl: ${SINK_URL:-http://127.0.0.1:1}
states:
  Count:
    q!: count
    script: |
      $session.n = ($session.n || 0) + 1;
      $client.visits = ($client.visits || 0) + 1;
    a: "n={{ $session.n }} visits={{ $client.visits }} {{ $injector.greeting }}"
  Branch:
    q!: "branch *"
    do:
      - if: $request.query.indexOf("left") >= 0
        then:
          - a: went left
        else:
          - a: went right
  Scripted:
    q!: scripted
    script: |
      $reactions.answer("from script");
      $reactions.buttons([{id: "a1", text: "Alpha"}, "Beta"]);
      $temp.x = 1;
  Jump:
    q!: jump
    script: $reactions.transition("/Target")
  Target:
    a: "landed, temp={{ $temp.x }}"
  Loop:
    q!: loop forever
    script: |
      while (true) {}
  Bomb:
    q!: eat memory
    script: |
      var a = [];
      while (true) { a.push(new Array(100000).fill(1)); }
  Throws:
    q!: throw
    script: |
      $session.lost = true;
      $reactions.answer("before the error");
      throw new Error("boom");
  Metadata:
    q!: metadata
    script: |
      try {
        $http.get("http://169.254.169.254/latest/meta-data/");
        $reactions.answer("reached metadata");
      } catch (e) {
        $reactions.answer("refused: " + (String(e.message || e).indexOf("refused") >= 0));
      }
  Call:
    q!: call
    script: |
      var r = $http.post($injector.sinkUrl + "/hook", {body: {from: $request.chatId}, query: {q: "1"}});
      $reactions.answer("status " + r.status + " ok " + r.isOk + " data " + JSON.stringify(r.data));
  Leak:
    q!: leak
    script: |
      globalThis.leaked = "from " + $request.chatId;
      try { $reactions = null; } catch (e) {}
      try { Array.prototype.join = function () { return "poisoned"; }; } catch (e) {}
      $reactions.answer("set");
  Peek:
    q!: peek
    script: |
      $reactions.answer("leaked=" + (typeof leaked) + " join=" + [1, 2].join("-") +
        " render=" + (typeof __render) + " host=" + (typeof __host));
  Failed:
    event!: scriptError
    a: "sorry: {{ $request.rawRequest.eventData.message }}"
  Pattern:
    q!: '/^order #?(\d+)$/'
    a: "order {{ $request.query }}"
"#;

async fn lab() -> (TestServer, Sink, tempfile::TempDir, tempfile::TempDir) {
    let sink = Sink::start().await;
    let yaml = BOT.replace("${SINK_URL:-http://127.0.0.1:1}", &sink.url);
    let project = project_with_bot("lab", &yaml);
    let data = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(project.path(), data.path()).await;
    (server, sink, project, data)
}

fn texts(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn session_and_client_persist_between_turns_and_templates_see_them() {
    let (server, _s, _p, _d) = lab().await;
    assert_eq!(
        texts(&server.say("lab", "s1", "count").await),
        ["n=1 visits=1 Welcome"]
    );
    assert_eq!(
        texts(&server.say("lab", "s1", "count").await),
        ["n=2 visits=2 Welcome"]
    );
    assert_eq!(
        texts(&server.say("lab", "s2", "count").await),
        ["n=1 visits=1 Welcome"],
        "per dialog"
    );
    let (_, d) = server.get("/api/v1/bots/lab/dialogs/s1").await;
    assert_eq!(d["session"], json!({"n": 2}));
    let (_, c) = server
        .get(&format!("/api/v1/contacts/{}", d["contactId"]))
        .await;
    assert_eq!(c["data"], json!({"visits": 2}));
    assert_eq!(c["dialogs"][0]["chatId"], "s1");
}

#[tokio::test]
async fn conditions_patterns_script_reactions_and_transitions() {
    let (server, _s, _p, _d) = lab().await;
    assert_eq!(
        texts(&server.say("lab", "b", "branch to the left").await),
        ["went left"]
    );
    assert_eq!(
        texts(&server.say("lab", "b", "branch right").await),
        ["went right"]
    );
    let r = server.say("lab", "b", "scripted").await;
    assert_eq!(texts(&r), ["from script"]);
    assert_eq!(
        r[0]["buttons"],
        json!([{"id": "a1", "text": "Alpha"}, {"id": "Beta", "text": "Beta"}])
    );
    assert_eq!(
        texts(&server.say("lab", "b", "jump").await),
        ["landed, temp="],
        "$temp does not outlive its turn"
    );
    assert_eq!(
        texts(&server.say("lab", "b", "Order #42").await),
        ["order Order #42"]
    );
}

#[tokio::test]
async fn a_runaway_loop_raises_script_error_and_the_server_keeps_serving() {
    let (server, _s, _p, _d) = lab().await;
    let started = std::time::Instant::now();
    let replies = server.say("lab", "loop", "loop forever").await;
    assert!(
        replies.is_empty(),
        "the looping turn says nothing: {replies:?}"
    );
    let msgs = server
        .wait_for_text("lab", "loop", "sorry: script exceeded its time budget")
        .await;
    assert!(started.elapsed().as_secs() < 5);
    assert!(texts(&msgs).contains(&"sorry: script exceeded its time budget".to_owned()));
    // the same worker and other dialogs still work
    assert_eq!(
        texts(&server.say("lab", "loop", "count").await),
        ["n=1 visits=1 Welcome"]
    );
    assert_eq!(
        texts(&server.say("lab", "other", "count").await),
        ["n=1 visits=1 Welcome"]
    );
}

#[tokio::test]
async fn a_memory_bomb_raises_script_error_and_the_runtime_stays_usable() {
    let (server, _s, _p, _d) = lab().await;
    server.say("lab", "mem", "eat memory").await;
    server
        .wait_for_text("lab", "mem", "sorry: script exceeded its memory cap")
        .await;
    assert_eq!(
        texts(&server.say("lab", "mem", "count").await),
        ["n=1 visits=1 Welcome"]
    );
}

#[tokio::test]
async fn a_throwing_script_keeps_the_session_unchanged_and_reports_the_error() {
    let (server, _s, _p, _d) = lab().await;
    server.say("lab", "t", "count").await;
    assert_eq!(
        texts(&server.say("lab", "t", "throw").await),
        ["before the error"],
        "replies before the error are kept"
    );
    server.wait_for_text("lab", "t", "sorry: Error: boom").await;
    let (_, d) = server.get("/api/v1/bots/lab/dialogs/t").await;
    assert_eq!(
        d["session"],
        json!({"n": 1}),
        "a failed turn changes nothing"
    );
}

#[tokio::test]
async fn http_refuses_metadata_addresses_and_calls_real_services() {
    let (server, sink, _p, _d) = lab().await;
    assert_eq!(
        texts(&server.say("lab", "h", "metadata").await),
        ["refused: true"]
    );
    let r = server.say("lab", "h", "call").await;
    assert_eq!(texts(&r), [r#"status 200 ok true data {"ok":true}"#]);
    assert_eq!(sink.wait_for(1).await[0], json!({"from": "h"}));
}

#[tokio::test]
async fn scripts_cannot_leak_globals_or_poison_builtins_for_other_dialogs() {
    let (server, _s, _p, _d) = lab().await;
    assert_eq!(texts(&server.say("lab", "a", "leak").await), ["set"]);
    let clean = ["leaked=undefined join=1-2 render=undefined host=undefined"];
    assert_eq!(
        texts(&server.say("lab", "b", "peek").await),
        clean,
        "another dialog"
    );
    assert_eq!(
        texts(&server.say("lab", "a", "peek").await),
        clean,
        "the same dialog, next turn"
    );
    assert_eq!(
        texts(&server.say("lab", "a", "count").await),
        ["n=1 visits=1 Welcome"],
        "host globals still work"
    );
}
