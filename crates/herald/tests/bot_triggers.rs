//! Bot-level triggers (SPEC §4: "a trigger without `lead_id` runs bot-level"), through the real
//! server over HTTP. The Metabot way to run periodic bot work is a trigger job with no lead:
//! it pulls data from a service and schedules jobs for leads. Every run here is observed by the
//! request its script makes to a real local sink server, not by reading Herald's tables. The
//! engine runs on a [`ManualClock`] that the tests move forward.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use herald_engine::ManualClock;
use serde_json::{Value, json};

/// A bot whose triggers report to the sink (`SINK` is replaced by its URL).
const OPS: &str = r#"
name: Ops bot
token: ops-token
channels:
  chatwidget: {}
injector:
  sink: SINK
states:
  Hello:
    q!: hi
    a: hello
  Ping:
    event!: ping
    a: "ping {{ $request.rawRequest.eventData.n }}"
  Checkin:
    a: "checkin"
  Failed:
    event!: scriptError
    a: "scriptError: {{ $request.rawRequest.eventData.message }}"
scripts:
  checkin:
    id: 1
    state: /Checkin
triggers:
  report:
    id: 1
    script: |
      $http.post($injector.sink, {body: {kind: "report", leadId: $request.leadId,
        chatId: $request.chatId, channelUserId: $request.channelUserId,
        channelType: $request.channelType, botId: $request.botId, params: $request.params,
        ticketId: $request.ticketId, job: $request.job, temp: typeof $temp}});
  touch:
    id: 2
    script: |
      var what = $request.params.what;
      $http.post($injector.sink, {body: {kind: "before", what: what}});
      if (what === "session") $session.x = 1;
      if (what === "client") var c = $client.x;
      if (what === "contact") $contact.addTags(["x"]);
      if (what === "reactions") $reactions.answer("hi");
      if (what === "transition") $reactions.transition("/Hello");
      $http.post($injector.sink, {body: {kind: "after", what: what}});
  fanout:
    id: 3
    script: |
      var leads = $request.params.leads;
      for (var i = 0; i < leads.length; i++) {
        $jobs.schedule({trigger_code: "greet", lead_id: leads[i], script_request_params: {n: i}});
      }
      $jobs.schedule({broadcast_code: "news", script_request_params: {text: "for all"}});
      $jobs.schedule({trigger_code: "report", script_request_params: {from: "fanout"}});
      var error = null;
      try { $jobs.schedule({script_code: "checkin"}); } catch (e) { error = String(e.message); }
      var p = $pushgate.createPushback("chatwidget", "ops", $request.params.chat, "ping", {n: 7});
      log("fanout made", p.link);
      $http.post($injector.sink, {body: {kind: "fanout", link: p.link, scriptJobError: error}});
  greet:
    id: 4
    script: $reactions.answer("greet " + $request.params.n + " lead " + $request.leadId)
broadcasts:
  news:
    id: 1
    a: "news {{ $request.params.text }}"
"#;

/// Where the manual clock starts.
const START: &str = "2030-01-01T00:00:00Z";

struct Ops {
    server: TestServer,
    sink: Sink,
    clock: Arc<ManualClock>,
    project: tempfile::TempDir,
    data: tempfile::TempDir,
}

async fn ops() -> Ops {
    let sink = Sink::start().await;
    let project = project_with_bot("ops", &OPS.replace("SINK", &sink.url));
    let data = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::starting_at(START.parse().expect("START")));
    let server =
        TestServer::start_with_clock(project.path(), settings(data.path()), clock.clone()).await;
    Ops {
        server,
        sink,
        clock,
        project,
        data,
    }
}

impl Ops {
    fn advance(&self, secs: u64) {
        self.clock.advance(
            Duration::from_secs(secs)
                .try_into()
                .expect("a duration the clock takes"),
        );
    }

    async fn restart(&mut self) {
        self.server =
            TestServer::start_with_clock(self.project.path(), settings(self.data.path()), {
                self.clock.clone()
            })
            .await;
    }

    async fn schedule(&self, body: Value) -> Value {
        let (s, v) = self
            .server
            .post("/bots/ops/jobs/schedule", body.clone())
            .await;
        assert_eq!(s, 201, "scheduling {body}: {v}");
        v["job"].clone()
    }

    async fn job(&self, id: &Value) -> Value {
        let (s, v) = self.server.get(&format!("/bots/ops/jobs/{id}")).await;
        assert_eq!(s, 200, "job {id}: {v}");
        v["job"].clone()
    }

    async fn wait_status(&self, id: &Value, status: &str) -> Value {
        eventually(&format!("job {id} to be {status}"), async || {
            let j = self.job(id).await;
            (j["status"] == status).then_some(j)
        })
        .await
    }

    /// What the sink received whose `kind` is `kind`, in arrival order.
    fn received(&self, kind: &str) -> Vec<Value> {
        self.sink
            .received
            .lock()
            .expect("lock")
            .iter()
            .filter(|v| v["kind"] == kind)
            .cloned()
            .collect()
    }

    /// Reports (from the `report` trigger) of job `id`.
    fn reports_of(&self, id: &Value) -> Vec<Value> {
        self.received("report")
            .into_iter()
            .filter(|r| r["job"]["id"] == *id)
            .collect()
    }

    /// Waits until job `id` has reported `n` times.
    async fn wait_reports(&self, id: &Value, n: usize) -> Vec<Value> {
        eventually(&format!("{n} reports of job {id}"), async || {
            let got = self.reports_of(id);
            (got.len() >= n).then_some(got)
        })
        .await
    }

    /// A barrier: a bot-level job due now has reported, so every job due before it has been
    /// claimed (claims take due jobs oldest first), and then every logged event is handled.
    async fn barrier(&self) {
        let mark = self.schedule(json!({"trigger_code": "report"})).await;
        self.wait_reports(&mark["id"], 1).await;
        self.server.settle().await;
    }

    async fn lead(&self, chat: &str) -> i64 {
        self.server.say("ops", chat, "hi").await;
        self.server.contact_id("ops", chat).await
    }
}

/// A trigger scheduled with no `lead_id` runs at once, bot-level: `$request.leadId`,
/// `$request.chatId` and the channel are `null`, `$request.params`, `$request.ticketId` and
/// `$request.job` are set, and the numbers in them reach the script as numbers. No dialog is
/// created for it.
#[tokio::test]
async fn a_trigger_without_a_lead_runs_bot_level_with_params_and_ticket_unchanged() {
    let ops = ops().await;
    let params = json!({"n": 1, "f": 1.5, "s": "x", "nested": {"list": [1, 2]}, "none": null});
    let job = ops
        .schedule(
            json!({"trigger_code": "report", "ticket_id": 42, "script_request_params": params}),
        )
        .await;
    assert_eq!(job["lead_id"], Value::Null, "{job}");
    assert_eq!(job["ticket_id"], 42, "the ticket id stays a number: {job}");
    assert!(
        job.get("dialog").is_none(),
        "a bot-level job has no dialog: {job}"
    );

    let report = ops.wait_reports(&job["id"], 1).await.remove(0);
    assert_eq!(report["leadId"], Value::Null, "{report}");
    assert_eq!(report["chatId"], Value::Null, "{report}");
    assert_eq!(report["channelUserId"], Value::Null, "{report}");
    assert_eq!(report["channelType"], Value::Null, "{report}");
    assert_eq!(report["botId"], "ops", "{report}");
    assert_eq!(report["params"], params, "{report}");
    assert_eq!(report["ticketId"], 42, "{report}");
    assert_eq!(report["temp"], "object", "$temp works: {report}");
    assert_eq!(report["job"]["id"], job["id"], "{report}");
    assert_eq!(report["job"]["kind"], "trigger", "{report}");
    assert_eq!(report["job"]["code"], "report", "{report}");

    let done = ops.wait_status(&job["id"], "done").await;
    assert_eq!(done["last_run"]["outcome"], "ok", "{done}");
    assert_eq!(done["last_run"]["dialogs"], 1, "{done}");

    // A string ticket and params sent as a string holding JSON, as Metabot clients do.
    let job = ops
        .schedule(json!({"trigger_id": 1, "ticket_id": "T-7",
                         "script_request_params": "{\"n\": 2, \"ok\": true}"}))
        .await;
    let report = ops.wait_reports(&job["id"], 1).await.remove(0);
    assert_eq!(report["ticketId"], "T-7", "{report}");
    assert_eq!(report["params"], json!({"n": 2, "ok": true}), "{report}");

    ops.server.settle().await;
    let (_, stats) = ops.server.get("/api/v1/admin/stats").await;
    assert_eq!(
        stats["dialogs"], 0,
        "bot-level runs create no dialog: {stats}"
    );
}

/// A `run_at` in the past is due at once; `run_after_sec` waits for its time.
#[tokio::test]
async fn a_bot_level_run_at_in_the_past_runs_at_once_and_a_delay_waits() {
    let ops = ops().await;
    let past = ops
        .schedule(json!({"trigger_code": "report", "run_at": "2029-12-31 23:00:00"}))
        .await;
    ops.wait_reports(&past["id"], 1).await;
    let later = ops
        .schedule(json!({"trigger_code": "report", "run_after_sec": 600}))
        .await;
    ops.barrier().await;
    assert!(
        ops.reports_of(&later["id"]).is_empty(),
        "ran before its time"
    );
    ops.advance(600);
    let r = ops.wait_reports(&later["id"], 1).await;
    assert_eq!(r[0]["job"]["dueAt"], later["run_at"], "{r:?}");
    ops.wait_status(&later["id"], "done").await;
}

/// A condition of a bot-level job sees `leadId` and `lead` as `null` and its `params`; the run
/// happens only when it returns `true`.
#[tokio::test]
async fn a_bot_level_condition_sees_a_null_lead_and_decides_the_run() {
    let ops = ops().await;
    let cond = "return leadId === null && lead === null && params.go === true && ticketId === 5;";
    let yes = ops
        .schedule(
            json!({"trigger_code": "report", "condition_script_code": cond,
                         "ticket_id": 5, "script_request_params": {"go": true}}),
        )
        .await;
    let no = ops
        .schedule(
            json!({"trigger_code": "report", "condition_script_code": cond,
                         "ticket_id": 5, "script_request_params": {"go": false}}),
        )
        .await;
    ops.wait_reports(&yes["id"], 1).await;
    let skipped = ops.wait_status(&no["id"], "done").await;
    ops.barrier().await;
    assert!(
        ops.reports_of(&no["id"]).is_empty(),
        "the condition said no"
    );
    assert_eq!(skipped["last_run"]["outcome"], "skipped", "{skipped}");
    assert_eq!(skipped["last_run"]["condition"], false, "{skipped}");
}

/// A periodic bot-level trigger runs once per period, a cron one at each occurrence, each due
/// time once; a cancel stops both.
#[tokio::test]
async fn periodic_and_cron_bot_level_triggers_run_at_each_due_time_until_cancelled() {
    let ops = ops().await;
    let every = ops
        .schedule(json!({"trigger_code": "report", "run_after_sec": 60, "is_periodic": true}))
        .await;
    let cron = ops
        .schedule(json!({"trigger_code": "report", "cron": "*/5 * * * *"}))
        .await;
    for minute in 1..=10 {
        ops.advance(60);
        ops.wait_reports(&every["id"], minute).await;
    }
    let reports = ops.wait_reports(&cron["id"], 2).await;
    let due: Vec<&str> = reports
        .iter()
        .map(|r| r["job"]["dueAt"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        due,
        ["2030-01-01T00:05:00Z", "2030-01-01T00:10:00Z"],
        "{reports:?}"
    );
    let dues: std::collections::BTreeSet<String> = ops
        .reports_of(&every["id"])
        .iter()
        .map(|r| r["job"]["dueAt"].to_string())
        .collect();
    assert_eq!(dues.len(), 10, "one run per due time: {dues:?}");

    for id in [&every["id"], &cron["id"]] {
        let (s, v) = ops.server.delete(&format!("/bots/ops/jobs/{id}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["job"]["status"], "cancelled", "{v}");
    }
    ops.advance(3600);
    ops.barrier().await;
    assert_eq!(
        ops.reports_of(&every["id"]).len(),
        10,
        "ran after its cancel"
    );
    assert_eq!(ops.reports_of(&cron["id"]).len(), 2, "ran after its cancel");
    let j = ops.job(&every["id"]).await;
    assert_eq!(j["runs"].as_array().map(Vec::len), Some(10), "{j}");
}

/// A bot-level trigger that came due while the server was down runs when it is back, once
/// for all the periods it missed, then keeps its cadence.
#[tokio::test]
async fn a_bot_level_trigger_due_while_the_server_was_down_runs_once_after_restart() {
    let mut ops = ops().await;
    let hourly = ops
        .schedule(json!({"trigger_code": "report", "run_after_sec": 3600, "is_periodic": true}))
        .await;
    let once = ops
        .schedule(json!({"trigger_code": "report", "run_after_sec": 1800}))
        .await;
    ops.server.stop().await;
    ops.advance(5 * 3600 + 60);
    ops.restart().await;
    ops.wait_reports(&once["id"], 1).await;
    let first = ops.wait_reports(&hourly["id"], 1).await;
    ops.barrier().await;
    assert_eq!(
        ops.reports_of(&hourly["id"]).len(),
        1,
        "missed periods collapse into one run: {first:?}"
    );
    assert_eq!(first[0]["job"]["dueAt"], hourly["run_at"], "{first:?}");
    ops.advance(3600);
    ops.wait_reports(&hourly["id"], 2).await;
    assert_eq!(ops.reports_of(&once["id"]).len(), 1);
    ops.server.stop().await;
}

/// `$session`, `$client`, `$contact` and `$reactions` throw in a bot-level run; the run fails
/// with that reason in its record and nothing after the throw happens.
#[tokio::test]
async fn lead_globals_in_a_bot_level_run_throw_and_fail_the_run_with_the_reason() {
    let ops = ops().await;
    for what in ["session", "client", "contact", "reactions", "transition"] {
        let job = ops
            .schedule(json!({"trigger_code": "touch", "script_request_params": {"what": what}}))
            .await;
        let failed = ops.wait_status(&job["id"], "failed").await;
        let run = &failed["last_run"];
        assert_eq!(run["outcome"], "error", "{what}: {failed}");
        let error = run["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("this trigger runs without a lead"),
            "{what}: the error says why: {error}"
        );
        let before: Vec<Value> = ops
            .received("before")
            .into_iter()
            .filter(|v| v["what"] == what)
            .collect();
        assert_eq!(before.len(), 1, "{what}: the script ran up to the throw");
    }
    let job = ops
        .schedule(json!({"trigger_code": "touch", "script_request_params": {"what": "nothing"}}))
        .await;
    ops.wait_status(&job["id"], "done").await;
    ops.server.settle().await;
    let after: Vec<Value> = ops.received("after");
    assert_eq!(
        after.len(),
        1,
        "only the run that touched nothing went on: {after:?}"
    );
    assert_eq!(after[0]["what"], "nothing");
}

/// From a bot-level run, `$jobs.schedule` reaches leads named by `lead_id` and broadcasts, a
/// trigger without a lead is bot-level again, a script job without a lead is refused, and
/// `$pushgate.createPushback` with explicit dialog ids makes a link that works.
#[tokio::test]
async fn a_bot_level_trigger_schedules_jobs_for_leads_and_broadcasts_and_creates_pushbacks() {
    let ops = ops().await;
    let a = ops.lead("a").await;
    let b = ops.lead("b").await;
    let fanout = ops
        .schedule(json!({"trigger_code": "fanout",
                         "script_request_params": {"leads": [a, b], "chat": "b"}}))
        .await;
    ops.wait_status(&fanout["id"], "done").await;
    let made = eventually("the fanout's report", async || {
        ops.received("fanout").into_iter().next()
    })
    .await;
    let error = made["scriptJobError"].as_str().unwrap_or_default();
    assert!(error.contains("lead_id is required"), "{made}");

    ops.server
        .wait_for_text("ops", "a", &format!("greet 0 lead {a}"))
        .await;
    ops.server
        .wait_for_text("ops", "b", &format!("greet 1 lead {b}"))
        .await;
    ops.server.wait_for_text("ops", "a", "news for all").await;
    ops.server.wait_for_text("ops", "b", "news for all").await;
    eventually("the bot-level report the fanout scheduled", async || {
        ops.received("report")
            .into_iter()
            .find(|r| r["params"]["from"] == "fanout" && r["leadId"].is_null())
    })
    .await;

    let link = made["link"].as_str().expect("link");
    let (s, v) = ops.server.activate(link, json!({"n": 9})).await;
    assert_eq!(s, 200, "{v}");
    ops.server.wait_for_text("ops", "b", "ping 9").await;
}

/// Tags need a lead, and a script job still needs `lead_id`: both are 422 naming the field,
/// and nothing is stored.
#[tokio::test]
async fn tags_on_a_bot_level_trigger_and_a_script_job_without_a_lead_are_refused() {
    let ops = ops().await;
    for (body, field) in [
        (
            json!({"trigger_code": "report", "add_tags": "x"}),
            "add_tags",
        ),
        (
            json!({"trigger_code": "report", "remove_tags": ["y"]}),
            "remove_tags",
        ),
        (json!({"script_code": "checkin"}), "lead_id"),
        (
            json!({"trigger_code": "report", "ticket_id": {"a": 1}}),
            "ticket_id",
        ),
        (
            json!({"trigger_code": "report", "ticket_id": "x".repeat(300)}),
            "ticket_id",
        ),
    ] {
        let (s, v) = ops
            .server
            .post("/bots/ops/jobs/schedule", body.clone())
            .await;
        assert_eq!(s, 422, "{body}: {v}");
        assert_eq!(v["error"]["details"]["field"], field, "{body}: {v}");
    }
    let (_, v) = ops.server.get("/bots/ops/jobs").await;
    assert_eq!(v["jobs"], json!([]), "nothing stored: {v}");
}

/// The reminders example's `daily_tip`, scheduled without a lead as the README shows: it asks
/// the tips service (a real local server) for the day's tip and broadcasts it to everyone who
/// subscribed, and to no one else.
#[tokio::test]
async fn the_reminders_example_broadcasts_the_daily_tip_from_its_tips_service() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let tips = axum::Router::new().route(
        "/tip",
        axum::routing::get(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { axum::Json(json!({"tip": "read a page of a book"})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let tips_url = format!("http://{}/tip", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, tips).await });

    let project = project_copy(
        &examples_dir("reminders"),
        &[("${TIPS_URL:-}", tips_url.as_str())],
    );
    let data = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(project.path(), data.path()).await;
    server.say("reminders", "fan", "hi").await;
    server.say("reminders", "fan", "subscribe").await;
    server.say("reminders", "other", "hi").await;

    let (s, v) = server
        .post(
            "/bots/reminders/jobs/schedule",
            json!({"trigger_code": "daily_tip"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    server
        .wait_for_text(
            "reminders",
            "fan",
            "💡 Tip of the day: read a page of a book",
        )
        .await;
    server.settle().await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let other = server.texts("reminders", "other").await;
    assert!(
        !other.iter().any(|t| t.contains("Tip of the day")),
        "only subscribers get the tip: {other:?}"
    );
}
