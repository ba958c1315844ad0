//! Novu's official Node SDK (`@novu/node@2`) against the real server: `tests/novu_sdk/smoke.mjs`
//! calls identify, update, get, topics, triggers (to an id, a subscriber object, a topic, an
//! array), bulkTrigger, broadcast, the feed, events.cancel and delete, printing one JSON line per
//! call; this test checks those answers and then Herald's state through its own HTTP API.
//!
//! Needs `node` and `npm` on PATH (the test fails, with a message, without them) and the npm
//! registry the first time: the SDK is installed once under `target/novu-sdk/<spec>/`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN, TestServer};
use serde_json::{Value, json};

/// The SDK as users install it.
const SDK_SPEC: &str = "@novu/node@2";

const ORDER_SHIPPED: &str = r#"name: Order shipped
payloadSchema:
  type: object
  required: [orderId]
  properties:
    orderId: { type: string, minLength: 1 }
steps:
  - type: in_app
    stepId: feed
    subject: "Order {{ payload.orderId }} has shipped"
    body: "Hi {{ subscriber.firstName || 'there' }}, your order {{ payload.orderId }} is on its way."
"#;

/// A run that waits an hour before its feed entry: something for `events.cancel` to cancel.
const ORDER_DELAYED: &str = r#"name: Order delayed
payloadSchema:
  type: object
  required: [orderId]
steps:
  - type: delay
    amount: 1
    unit: hours
  - type: in_app
    subject: "Order {{ payload.orderId }} is late"
    body: "Sorry."
"#;

/// Fails (never skips) when a tool is missing: this suite is the proof that the SDK works.
fn require_tool(name: &str) -> String {
    match Command::new(name).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => panic!(
            "`{name} --version` failed ({}): {}. The Novu SDK compatibility test needs Node.js \
             (18 or later) and npm on PATH.",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "`{name}` was not found ({e}). The Novu SDK compatibility test needs Node.js (18 or \
             later) and npm on PATH: install them (e.g. `apt-get install nodejs npm`) and rerun."
        ),
    }
}

/// Cargo's target directory: the test binary lives in `<target>/<profile>/deps/`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|p| p.file_name().is_some_and(|n| n == "deps"))
                .and_then(|deps| deps.parent()?.parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// Runs `cmd`, killing it after `limit`; returns (success, stdout, stderr).
fn run_with_timeout(mut cmd: Command, limit: Duration, what: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} took longer than {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status.success(),
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

/// `npm install`s [`SDK_SPEC`] once into `target/novu-sdk/<spec>/` and returns that folder.
/// The install happens in a scratch folder renamed into place when complete, so an interrupted
/// or concurrent run never leaves a half-installed cache behind.
fn install_sdk() -> PathBuf {
    let key: String = SDK_SPEC
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let root = target_dir().join("novu-sdk");
    let dir = root.join(key.trim_matches('-'));
    let done = |d: &Path| {
        d.join(".installed").is_file() && d.join("node_modules/@novu/node/package.json").is_file()
    };
    if done(&dir) {
        return dir;
    }
    std::fs::create_dir_all(&root).expect("mkdir target/novu-sdk");
    let scratch = tempfile::Builder::new()
        .prefix(".install-")
        .tempdir_in(&root)
        .expect("scratch dir");
    // A package.json of its own, so that npm does not walk up and install somewhere else.
    std::fs::write(
        scratch.path().join("package.json"),
        r#"{"name": "herald-novu-sdk-test", "private": true}"#,
    )
    .expect("write package.json");
    let mut cmd = Command::new("npm");
    cmd.args(["install", "--no-audit", "--no-fund", SDK_SPEC])
        .current_dir(scratch.path());
    let (ok, out, err) = run_with_timeout(cmd, Duration::from_secs(300), "npm install");
    assert!(
        ok,
        "`npm install --no-audit --no-fund {SDK_SPEC}` failed (is the npm registry reachable?)\n\
         stdout:\n{out}\nstderr:\n{err}"
    );
    std::fs::write(scratch.path().join(".installed"), SDK_SPEC).expect("write marker");
    let scratch = scratch.keep();
    if std::fs::rename(&scratch, &dir).is_err() {
        // Another run finished first (or a stale folder is in the way).
        if !done(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&scratch, &dir).expect("move the SDK install into place");
        } else {
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    assert!(
        done(&dir),
        "the SDK install in {} is incomplete",
        dir.display()
    );
    dir
}

/// Runs smoke.mjs from a folder whose `node_modules` is the cached install.
async fn run_smoke(sdk: &Path, server: &TestServer) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("smoke.mjs");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/novu_sdk/smoke.mjs"),
        &script,
    )
    .expect("copy smoke.mjs");
    std::os::unix::fs::symlink(sdk.join("node_modules"), dir.path().join("node_modules"))
        .expect("link node_modules");
    let child = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(dir.path())
        .env("HERALD_URL", &server.base)
        .env("HERALD_KEY", ADMIN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("smoke.mjs did not finish within 120 s")
        .expect("node output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls a subscriber's feed (through Herald, with the admin token) until it has `n` entries.
async fn feed_of(server: &TestServer, subscriber: &str, n: usize) -> Vec<Value> {
    let path = format!("/v1/subscribers/{subscriber}/notifications/feed?limit=100");
    let mut last = Value::Null;
    for _ in 0..250 {
        let (s, v) = server.get(&path).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        if v["data"].as_array().is_some_and(|d| d.len() >= n) {
            return v["data"].as_array().cloned().unwrap_or_default();
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("the feed of {subscriber} never had {n} entries: {last}");
}

fn tx_set(entries: &[Value]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|e| e["transactionId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn set<'a>(ids: impl IntoIterator<Item = &'a Value>) -> BTreeSet<String> {
    ids.into_iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{v} is not an id"))
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_novu_node_sdk_works_against_herald() {
    let node = require_tool("node");
    require_tool("npm");
    let sdk = tokio::task::spawn_blocking(install_sdk)
        .await
        .expect("install task");

    let project = tempfile::tempdir().expect("tempdir");
    let wf = project.path().join("workflows");
    std::fs::create_dir_all(&wf).expect("mkdir");
    std::fs::write(wf.join("order-shipped.yaml"), ORDER_SHIPPED).expect("write");
    std::fs::write(wf.join("order-delayed.yaml"), ORDER_DELAYED).expect("write");
    let data = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start(project.path(), data.path()).await;

    let (ok, stdout, stderr) = run_smoke(&sdk, &server).await;
    // Shown by nextest on failure, or with --no-capture.
    println!("{stdout}");
    let context = format!(
        "node {node}, SDK in {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        sdk.display()
    );
    let mut steps: BTreeMap<String, Value> = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{context}"));
        let name = v["step"].as_str().expect("step name").to_owned();
        steps.insert(name, v);
    }
    let bad: Vec<&Value> = steps.values().filter(|v| v["ok"] != true).collect();
    assert!(
        ok && bad.is_empty(),
        "the SDK got unexpected answers:\n{}\n\n{context}",
        bad.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let step = |name: &str| -> &Value {
        steps
            .get(name)
            .unwrap_or_else(|| panic!("smoke.mjs printed no `{name}` step\n{context}"))
    };
    let status = |name: &str| step(name)["status"].as_u64().unwrap_or_default();
    let body = |name: &str| &step(name)["data"];

    // The statuses Novu answers with.
    for (name, want) in [
        ("subscribers.identify", 201),
        ("subscribers.identify.again", 201),
        ("subscribers.update", 200),
        ("subscribers.get", 200),
        ("subscribers.get.unknown", 404),
        ("subscribers.bulkCreate", 201),
        ("topics.create", 201),
        ("topics.create.duplicate", 409),
        ("topics.addSubscribers", 200),
        ("topics.removeSubscribers", 204),
        ("trigger.subscriberId", 201),
        ("trigger.subscriberObject", 201),
        ("trigger.topic", 201),
        ("trigger.array", 201),
        ("bulkTrigger", 201),
        ("broadcast", 201),
        ("trigger.unknownWorkflow", 422),
        ("retry.identify", 201),
        ("retry.trigger", 201),
        ("retry.idempotencyKey.replay", 201),
        ("retry.unknownWorkflow", 422),
        ("subscribers.markMessageSeen", 201),
        ("subscribers.markAllMessagesAs", 201),
        ("events.cancel.delayed", 200),
        ("events.cancel.delivered", 200),
        ("events.cancel.unknown", 200),
        ("topics.delete", 204),
        ("subscribers.delete", 200),
    ] {
        assert_eq!(status(name), want, "{name}: {}", step(name));
    }

    // `res.data.data` shapes.
    let summary = step("summary");
    let who = |k: &str| {
        summary["subscribers"][k]
            .as_str()
            .expect("subscriber id")
            .to_owned()
    };
    let txs = &summary["transactions"];
    let (alice, carol, inline, dave) = (who("alice"), who("carol"), who("inline"), who("dave"));
    assert_eq!(
        body("subscribers.identify")["data"]["subscriberId"],
        alice.as_str()
    );
    for name in [
        "trigger.subscriberId",
        "trigger.subscriberObject",
        "trigger.topic",
        "trigger.array",
        "broadcast",
        "retry.trigger",
    ] {
        let d = &body(name)["data"];
        assert_eq!(d["acknowledged"], true, "{name}: {d}");
        assert_eq!(d["status"], "processed", "{name}: {d}");
        assert!(
            d["transactionId"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: {d}"
        );
    }
    assert_eq!(
        body("trigger.subscriberId")["data"]["transactionId"],
        txs["first"]
    );
    let bulk = body("bulkTrigger")["data"]
        .as_array()
        .expect("bulk results");
    assert_eq!(bulk.len(), 2, "{bulk:?}");
    assert!(bulk.iter().all(|r| r["status"] == "processed"), "{bulk:?}");
    assert_eq!(bulk[1]["transactionId"], txs["bulkTx"]);
    let unknown = body("trigger.unknownWorkflow");
    assert_eq!(unknown["message"], "workflow_not_found", "{unknown}");
    assert_eq!(unknown["statusCode"], 422, "{unknown}");
    assert_eq!(
        step("retry.unknownWorkflow")["retries"],
        1,
        "a 422 is retried once by the SDK"
    );
    assert_eq!(
        step("retry.idempotencyKey.replay")["headers"]["idempotency-replay"],
        "true"
    );
    let added = &body("topics.addSubscribers")["data"];
    assert_eq!(
        added["failed"]["notFound"].as_array().map(Vec::len),
        Some(1),
        "{added}"
    );
    assert_eq!(body("topics.removeSubscribers"), "");
    assert_eq!(body("events.cancel.delayed")["data"], true);
    assert_eq!(body("events.cancel.delayed.again")["data"], false);
    assert_eq!(body("events.cancel.delivered")["data"], false);
    assert_eq!(body("events.cancel.unknown")["data"], false);
    assert_eq!(
        body("subscribers.delete")["data"],
        json!({"acknowledged": true, "status": "deleted"})
    );

    // Herald's own view: the feeds hold exactly what the triggers addressed.
    // alice: her id, the topic, the array (once, though named twice), the bulk, the broadcast;
    // not the trigger where she was the actor, not the cancelled delayed one.
    let feed = feed_of(&server, &alice, 5).await;
    let want: BTreeSet<String> = set([
        &txs["subscriberId"],
        &txs["topic"],
        &txs["array"],
        &txs["bulk"][0],
        &txs["broadcast"],
    ]);
    assert_eq!(feed.len(), 5, "{feed:#?}");
    assert_eq!(tx_set(&feed), want, "{feed:#?}");
    for e in &feed {
        assert_eq!(e["templateIdentifier"], "order-shipped", "{e}");
        assert_eq!(e["subject"], "Order A1 has shipped", "{e}");
        assert_eq!(
            e["content"], "Hi Alice, your order A1 is on its way.",
            "{e}"
        );
        assert_eq!(e["payload"], json!({"orderId": "A1"}), "{e}");
        assert_eq!(
            e["read"], true,
            "markAllMessagesAs(read) was not applied: {e}"
        );
        assert_eq!(e["seen"], true, "{e}");
    }
    // carol: the array and the broadcast.
    let feed = feed_of(&server, &carol, 2).await;
    assert_eq!(
        tx_set(&feed),
        set([&txs["array"], &txs["broadcast"]]),
        "{feed:#?}"
    );
    // The subscriber created inline by a trigger: that trigger and the broadcast.
    let feed = feed_of(&server, &inline, 2).await;
    assert_eq!(
        tx_set(&feed),
        set([&txs["subscriberObject"], &txs["broadcast"]]),
        "{feed:#?}"
    );
    assert_eq!(
        feed[0]["content"],
        "Hi Inline, your order A1 is on its way."
    );
    // dave (created by the retrying SDK): its trigger and the idempotent one, stored once.
    let feed = feed_of(&server, &dave, 2).await;
    assert_eq!(
        tx_set(&feed),
        set([&txs["retry"], &txs["replay"]]),
        "{feed:#?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, again) = server
        .get(&format!(
            "/v1/subscribers/{dave}/notifications/feed?limit=100"
        ))
        .await;
    assert_eq!(
        again["data"].as_array().map(Vec::len),
        Some(2),
        "a replayed trigger ran twice: {again}"
    );
    let (_, again) = server
        .get(&format!(
            "/v1/subscribers/{alice}/notifications/feed?limit=100"
        ))
        .await;
    assert_eq!(again["data"].as_array().map(Vec::len), Some(5), "{again}");

    server.stop().await;
}
