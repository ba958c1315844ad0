//! Scheduled jobs (SPEC §4) through the real server, driven over HTTP as a user would: the Bot
//! API's fields, its validation errors, reading and cancelling jobs, catching up after a
//! restart, and `$jobs` / `$contact` in scripts. The engine runs on a [`ManualClock`] that the
//! tests move forward, so nothing sleeps for minutes: every wait below polls with a deadline.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use herald::Settings;
use herald_engine::{Clock, ManualClock};
use serde_json::{Value, json};

/// A bot with one of each job target, states that tag the contact and schedule jobs from
/// scripts, and a `timezone:` nine hours ahead of UTC.
const LAB: &str = r#"
name: Jobs lab
token: lab-token
timezone: Asia/Tokyo
channels:
  chatwidget: {}
states:
  Hello:
    q!: ["hi", "hello"]
    a: "hello {{ $request.chatId }}"
  Tag:
    q!: "tag *"
    script: |
      $contact.addTags($request.query.split(" ").slice(1));
      $reactions.answer("tags " + $contact.tags.join(","));
  Untag:
    q!: "untag *"
    script: |
      $contact.removeTags($request.query.split(" ").slice(1));
      $reactions.answer("tags " + $contact.tags.join(","));
  ShowTags:
    q!: "show tags"
    script: $reactions.answer("tags " + $contact.tags.join(","))
  WhoAmI:
    q!: "who am i"
    script: $reactions.answer("contact " + $contact.id)
  Later:
    q!: "later *"
    script: |
      var secs = parseInt($request.query.split(" ")[1], 10);
      var job = $jobs.schedule({trigger_code: "echo", run_after_sec: secs, ticket_id: "from-script"});
      $session.job = job.id;
      $reactions.answer("scheduled " + job.id + " " + job.status + " " + job.run_at);
  CallOff:
    q!: "call off"
    script: $reactions.answer("cancel " + $jobs.cancel($session.job))
  BadSchedule:
    q!: "bad schedule"
    script: |
      $jobs.schedule({trigger_code: "echo", run_after_sec: -1});
      $reactions.answer("not reached");
  Checkin:
    a: "checkin {{ $request.params.who }} ticket={{ $request.ticketId }}"
  Promo:
    a: "promo state in {{ $request.chatId }}"
  Failed:
    event!: scriptError
    a: "scriptError: {{ $request.rawRequest.eventData.message }}"
  NoMatch:
    event!: noMatch
    a: "?"
scripts:
  checkin:
    id: 1
    state: /Checkin
triggers:
  echo:
    id: 1
    script: |
      $reactions.answer("echo params=" + JSON.stringify($request.params) + " ticket=" + $request.ticketId +
        " lead=" + $request.leadId + " tags=" + $contact.tags.join(","));
  tick:
    id: 2
    script: $reactions.answer("tick " + $request.job.id)
  slow:
    id: 3
    script: |
      var t = Date.now();
      while (Date.now() - t < 1500) {}
      $reactions.answer("slow " + $request.job.id);
broadcasts:
  vip:
    id: 1
    tags: { all: [vip], any: [de, fr], none: [blocked] }
    a: "vip news {{ $request.params.news }}"
  promo:
    id: 2
    tags: { any: [promo] }
    state: /Promo
"#;

/// A second bot, for tokens and leads that belong elsewhere.
const OTHER: &str = r#"
name: Other
token: other-token
channels:
  chatwidget: {}
states:
  Hello:
    q!: hi
    a: other hello
"#;

/// Where the manual clock starts: midnight UTC, 09:00 in the lab bot's Tokyo.
const START: &str = "2030-01-01T00:00:00Z";

/// Milliseconds since the epoch of an RFC 3339 time in a response.
fn ms(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    let utc = herald_core::schedule::zone("UTC").expect("UTC");
    herald_core::schedule::parse_run_at(s, &utc)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .as_millisecond()
}

fn runs(job: &Value) -> Vec<Value> {
    job["runs"].as_array().cloned().unwrap_or_default()
}

struct Lab {
    server: TestServer,
    clock: Arc<ManualClock>,
    project: tempfile::TempDir,
    data: tempfile::TempDir,
}

fn lab_project() -> tempfile::TempDir {
    let project = project_with_bot("lab", LAB);
    let other = project.path().join("bots").join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("bot.yaml"), OTHER).expect("write");
    project
}

fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::starting_at(START.parse().expect("START")))
}

async fn lab() -> Lab {
    lab_with(|_| {}).await
}

async fn lab_with(tune: impl FnOnce(&mut Settings)) -> Lab {
    let project = lab_project();
    let data = tempfile::tempdir().expect("tempdir");
    let clock = manual_clock();
    let mut s = settings(data.path());
    tune(&mut s);
    let server = TestServer::start_with_clock(project.path(), s, clock.clone()).await;
    Lab {
        server,
        clock,
        project,
        data,
    }
}

impl Lab {
    /// Moves the engine's clock forward; the scheduler wakes at once.
    fn advance(&self, secs: u64) {
        self.clock.advance(
            Duration::from_secs(secs)
                .try_into()
                .expect("a duration the clock takes"),
        );
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().as_millisecond()
    }

    /// Starts a dialog with the lab bot on `chat`; returns its contact (the lead) id.
    async fn lead(&self, chat: &str) -> i64 {
        self.say(chat, "hi").await;
        self.server.contact_id("lab", chat).await
    }

    async fn say(&self, chat: &str, text: &str) -> Vec<String> {
        self.server
            .say("lab", chat, text)
            .await
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn try_schedule(&self, body: Value) -> (u16, Value) {
        self.server.post("/bots/lab/jobs/schedule", body).await
    }

    /// Schedules a job that must be accepted; returns it as the API shows it.
    async fn schedule(&self, body: Value) -> Value {
        let (s, v) = self.try_schedule(body.clone()).await;
        assert_eq!(s, 201, "scheduling {body}: {v}");
        assert_eq!(v["success"], true, "{v}");
        v["job"].clone()
    }

    async fn job(&self, id: &Value) -> Value {
        let (s, v) = self.server.get(&format!("/bots/lab/jobs/{id}")).await;
        assert_eq!(s, 200, "job {id}: {v}");
        v["job"].clone()
    }

    /// Waits until job `id` has `n` runs that are finished (not `queued`).
    async fn wait_runs(&self, id: &Value, n: usize) -> Value {
        eventually(&format!("{n} finished runs of job {id}"), async || {
            let j = self.job(id).await;
            let r = runs(&j);
            (r.len() >= n && r.iter().all(|r| r["outcome"] != "queued")).then_some(())
        })
        .await;
        // Read again: one read may pair a job record from before a claim with runs from after
        // it (see `a_job_and_its_runs_are_read_consistently`).
        self.job(id).await
    }

    /// Waits until job `id` has `status`.
    async fn wait_status(&self, id: &Value, status: &str) -> Value {
        eventually(&format!("job {id} to be {status}"), async || {
            let j = self.job(id).await;
            (j["status"] == status).then_some(j)
        })
        .await
    }

    /// Every job of the lab bot, newest first.
    async fn all_jobs(&self) -> Vec<Value> {
        let (s, v) = self.server.get("/bots/lab/jobs?limit=1000").await;
        assert_eq!(s, 200, "{v}");
        v["jobs"].as_array().cloned().unwrap_or_default()
    }

    /// A barrier on the scheduler: a job due now in `chat` has run, so every job that was due
    /// before it has been claimed too (claims take due jobs oldest first), and every event
    /// since is handled.
    async fn barrier(&self, lead: i64) {
        let j = self
            .schedule(json!({"trigger_code": "tick", "lead_id": lead}))
            .await;
        self.wait_status(&j["id"], "done").await;
        self.server.settle().await;
    }

    async fn texts(&self, chat: &str) -> Vec<String> {
        self.server.texts("lab", chat).await
    }

    async fn contact(&self, id: i64) -> Value {
        let (s, v) = self.server.get(&format!("/api/v1/contacts/{id}")).await;
        assert_eq!(s, 200, "contact {id}: {v}");
        v
    }

    async fn tags_of(&self, id: i64) -> Vec<String> {
        let c = self.contact(id).await;
        let mut t: Vec<String> = c["tags"]
            .as_array()
            .unwrap_or_else(|| panic!("no tags in {c}"))
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_owned())
            .collect();
        t.sort();
        t
    }
}

fn count(texts: &[String], needle: &str) -> usize {
    texts.iter().filter(|t| t.contains(needle)).count()
}

// ---------------------------------------------------------------------------------------------
// 1. Every field of SPEC §4
// ---------------------------------------------------------------------------------------------

/// A script job — by `script_id` or by `script_code` — enters the named state in the lead's
/// dialog: its reply reaches that dialog, its template sees `$request.params` and
/// `$request.ticketId`, the state becomes the dialog's current state, and the job is `done`.
#[tokio::test]
async fn script_job_by_id_or_code_enters_its_state_in_the_leads_dialog() {
    let lab = lab().await;
    let lead = lab.lead("s1").await;
    let by_id = lab
        .schedule(json!({"script_id": 1, "lead_id": lead, "ticket_id": "T-1",
                         "script_request_params": {"who": "by-id"}}))
        .await;
    assert_eq!(by_id["kind"], "script");
    assert_eq!(by_id["target_code"], "checkin");
    assert_eq!(by_id["lead_id"], lead);
    assert_eq!(by_id["dialog"]["chatId"], "s1");
    lab.wait_status(&by_id["id"], "done").await;
    lab.server
        .wait_for_text("lab", "s1", "checkin by-id ticket=T-1")
        .await;

    // Metabot clients often send ids as strings.
    let by_code = lab
        .schedule(
            json!({"script_code": "checkin", "lead_id": lead.to_string(),
                         "script_request_params": {"who": "by-code"}}),
        )
        .await;
    assert_eq!(by_code["target_id"], 1);
    let done = lab.wait_status(&by_code["id"], "done").await;
    assert_eq!(done["last_run"]["outcome"], "ok", "{done}");
    lab.server
        .wait_for_text("lab", "s1", "checkin by-code ticket=")
        .await;
    let (_, dialog) = lab.server.get("/api/v1/bots/lab/dialogs/s1").await;
    assert_eq!(dialog["state"], "/Checkin", "{dialog}");
}

/// A trigger job — by `trigger_id` or `trigger_code` — runs its JavaScript in the lead's dialog
/// with `$request.params`, `$request.ticketId` and `$request.leadId` from the request.
#[tokio::test]
async fn trigger_job_sees_params_ticket_and_lead() {
    let lab = lab().await;
    let lead = lab.lead("t1").await;
    let by_code = lab
        .schedule(
            json!({"trigger_code": "echo", "lead_id": lead, "ticket_id": "T-9",
                         "script_request_params": {"x": 1}}),
        )
        .await;
    assert_eq!(by_code["kind"], "trigger");
    assert_eq!(by_code["ticket_id"], "T-9");
    assert_eq!(by_code["script_request_params"], json!({"x": 1}));
    lab.server
        .wait_for_text(
            "lab",
            "t1",
            &format!("echo params={{\"x\":1}} ticket=T-9 lead={lead} tags="),
        )
        .await;

    let by_id = lab
        .schedule(json!({"trigger_id": 1, "lead_id": lead, "script_request_params": {"x": 2}}))
        .await;
    assert_eq!(by_id["target_code"], "echo");
    lab.server
        .wait_for_text(
            "lab",
            "t1",
            &format!("echo params={{\"x\":2}} ticket=null lead={lead} tags="),
        )
        .await;
    lab.wait_status(&by_id["id"], "done").await;
}

/// A broadcast goes to exactly the leads whose tags match its `tags: {all, any, none}` filter,
/// its message template sees `$request.params`; a broadcast with `state:` runs that state in
/// each matching lead's dialog. By `broadcast_code` and by `broadcast_id`.
#[tokio::test]
async fn broadcast_reaches_only_leads_matching_its_tag_filter() {
    let lab = lab().await;
    // vip filter: all [vip], any [de, fr], none [blocked]
    let leads = [
        ("a", "vip de", true),
        ("b", "vip promo", false),      // no de/fr
        ("c", "vip fr blocked", false), // blocked
        ("d", "de promo", false),       // not vip
        ("e", "vip fr", true),
        ("f", "", false), // no tags at all
    ];
    for (chat, tags, _) in leads {
        lab.lead(chat).await;
        if !tags.is_empty() {
            lab.say(chat, &format!("tag {tags}")).await;
        }
    }
    let job = lab
        .schedule(json!({"broadcast_code": "vip", "script_request_params": {"news": "42"}}))
        .await;
    assert_eq!(job["kind"], "broadcast");
    assert_eq!(job["lead_id"], Value::Null);
    let done = lab.wait_status(&job["id"], "done").await;
    assert_eq!(done["last_run"]["outcome"], "ok", "{done}");
    assert_eq!(done["last_run"]["dialogs"], 2, "two leads match: {done}");
    for (chat, _, gets) in leads.iter().filter(|l| l.2) {
        assert!(gets);
        lab.server.wait_for_text("lab", chat, "vip news 42").await;
    }
    lab.server.settle().await;
    for (chat, tags, _) in leads.iter().filter(|l| !l.2) {
        let t = lab.texts(chat).await;
        assert_eq!(count(&t, "vip news"), 0, "{chat} ({tags}) got it: {t:?}");
    }

    // By id, a broadcast that runs a state: leads tagged promo are b and d.
    let job = lab.schedule(json!({"broadcast_id": 2})).await;
    assert_eq!(job["target_code"], "promo");
    let done = lab.wait_status(&job["id"], "done").await;
    assert_eq!(done["last_run"]["dialogs"], 2, "{done}");
    lab.server
        .wait_for_text("lab", "b", "promo state in b")
        .await;
    lab.server
        .wait_for_text("lab", "d", "promo state in d")
        .await;
    lab.server.settle().await;
    for chat in ["a", "c", "e", "f"] {
        let t = lab.texts(chat).await;
        assert_eq!(count(&t, "promo state"), 0, "{chat} got it: {t:?}");
    }
    let (_, dialog) = lab.server.get("/api/v1/bots/lab/dialogs/b").await;
    assert_eq!(dialog["state"], "/Promo", "{dialog}");
}

/// `run_at` as `"YYYY-MM-DD hh:mm:ss"` is read on the wall clock of the bot's `timezone:`
/// (Asia/Tokyo, UTC+9); RFC 3339 keeps its own offset; each job runs when the clock reaches it,
/// not before; a `run_at` in the past runs at once.
#[tokio::test]
async fn run_at_is_read_in_the_bots_timezone_or_as_rfc3339() {
    let lab = lab().await;
    let lead = lab.lead("r1").await;
    let local = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead, "run_at": "2030-01-01 11:00:00"}))
        .await;
    assert_eq!(local["run_at"], "2030-01-01T02:00:00Z", "11:00 in Tokyo");
    assert_eq!(local["status"], "pending");
    assert_eq!(local["timezone"], "Asia/Tokyo");
    let rfc = lab
        .schedule(
            json!({"trigger_code": "tick", "lead_id": lead, "run_at": "2030-01-01T05:00:00+02:00"}),
        )
        .await;
    assert_eq!(rfc["run_at"], "2030-01-01T03:00:00Z");

    lab.barrier(lead).await;
    assert_eq!(runs(&lab.job(&local["id"]).await).len(), 0, "ran early");

    lab.advance(2 * 3600 + 60); // 02:01Z
    let j = lab.wait_status(&local["id"], "done").await;
    assert_eq!(j["runs"][0]["due_at"], "2030-01-01T02:00:00Z", "{j}");
    assert!(j["runs"][0]["lateness_ms"].as_f64().expect("lateness") >= 0.0);
    lab.barrier(lead).await;
    assert_eq!(lab.job(&rfc["id"]).await["status"], "pending");

    lab.advance(3600); // 03:01Z
    lab.wait_status(&rfc["id"], "done").await;
    let t = lab.texts("r1").await;
    assert_eq!(count(&t, &format!("tick {}", local["id"])), 1, "{t:?}");
    assert_eq!(count(&t, &format!("tick {}", rfc["id"])), 1, "{t:?}");

    let past = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead, "run_at": "2029-12-31 00:00:00"}))
        .await;
    assert_eq!(past["run_at"], "2029-12-30T15:00:00Z");
    lab.wait_status(&past["id"], "done").await;
    lab.server
        .wait_for_text("lab", "r1", &format!("tick {}", past["id"]))
        .await;
}

/// `run_after_sec` delays the run by that many seconds of the engine's clock.
#[tokio::test]
async fn run_after_sec_delays_the_run() {
    let lab = lab().await;
    let lead = lab.lead("d1").await;
    let before = lab.now_ms();
    let job = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 600}))
        .await;
    let after = lab.now_ms();
    let due = ms(&job["run_at"]);
    assert!(
        (before + 600_000 - 1000..=after + 600_000).contains(&due),
        "run_at {} is not 600 s after scheduling",
        job["run_at"]
    );
    assert_eq!(job["is_periodic"], false);
    lab.barrier(lead).await;
    assert_eq!(lab.job(&job["id"]).await["status"], "pending");

    lab.advance(601);
    let done = lab.wait_status(&job["id"], "done").await;
    assert_eq!(runs(&done).len(), 1, "{done}");
    lab.server
        .wait_for_text("lab", "d1", &format!("tick {}", job["id"]))
        .await;
}

/// `is_periodic` with `run_after_sec` runs again every period, keeping its cadence: each next
/// due time is exactly one period after the previous one.
#[tokio::test]
async fn periodic_job_runs_again_each_period() {
    let lab = lab().await;
    let lead = lab.lead("p1").await;
    let job = lab
        .schedule(
            json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 60,
                         "is_periodic": true}),
        )
        .await;
    assert_eq!(job["is_periodic"], true);
    let first = ms(&job["run_at"]);
    let id = &job["id"];

    lab.advance(61);
    let j = lab.wait_runs(id, 1).await;
    assert_eq!(j["status"], "pending", "a periodic job stays pending: {j}");
    assert_eq!(ms(&j["run_at"]), first + 60_000, "{j}");

    lab.advance(60);
    let j = lab.wait_runs(id, 2).await;
    assert_eq!(ms(&j["run_at"]), first + 120_000, "{j}");
    let r = runs(&j);
    assert_eq!(ms(&r[0]["due_at"]), first + 60_000, "newest first: {j}");
    assert_eq!(ms(&r[1]["due_at"]), first, "{j}");
    assert!(r.iter().all(|r| r["outcome"] == "ok"), "{j}");
    lab.server.settle().await;
    let t = lab.texts("p1").await;
    assert_eq!(count(&t, &format!("tick {id}")), 2, "{t:?}");
}

/// `cron` makes a periodic job due at each occurrence of the expression on the wall clock of
/// the bot's time zone.
#[tokio::test]
async fn cron_job_runs_at_consecutive_occurrences() {
    let lab = lab().await;
    let lead = lab.lead("c1").await;
    let job = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead, "cron": "*/10 * * * *"}))
        .await;
    assert_eq!(job["is_periodic"], true);
    assert_eq!(job["cron"], "*/10 * * * *");
    assert_eq!(job["run_at"], "2030-01-01T00:10:00Z");
    let id = &job["id"];

    lab.advance(600);
    let j = lab.wait_runs(id, 1).await;
    assert_eq!(j["runs"][0]["due_at"], "2030-01-01T00:10:00Z", "{j}");
    assert_eq!(j["run_at"], "2030-01-01T00:20:00Z", "{j}");

    lab.advance(600);
    let j = lab.wait_runs(id, 2).await;
    assert_eq!(j["runs"][0]["due_at"], "2030-01-01T00:20:00Z", "{j}");
    assert_eq!(j["run_at"], "2030-01-01T00:30:00Z", "{j}");
    lab.server.settle().await;
    assert_eq!(count(&lab.texts("c1").await, &format!("tick {id}")), 2);

    // 09:00 every day on Tokyo's wall clock is midnight UTC.
    let daily = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead, "cron": "0 9 * * *"}))
        .await;
    assert_eq!(daily["run_at"], "2030-01-02T00:00:00Z");
}

/// `condition_script_code` sees `leadId`, `ticketId` and `params`: returning `true` runs the
/// job (run `condition: true`); `false` — or anything that is not `true` — skips the run
/// (outcome `skipped`, `condition: false`, no reply, no tag change).
#[tokio::test]
async fn condition_decides_whether_the_run_happens() {
    let lab = lab().await;
    let lead = lab.lead("k1").await;
    let yes = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead, "ticket_id": "T-7",
            "script_request_params": {"go": true},
            "condition_script_code":
                format!("return params.go === true && leadId === {lead} && ticketId === \"T-7\";")}))
        .await;
    let j = lab.wait_status(&yes["id"], "done").await;
    assert_eq!(j["runs"][0]["outcome"], "ok", "{j}");
    assert_eq!(j["runs"][0]["condition"], true, "{j}");
    lab.server
        .wait_for_text("lab", "k1", &format!("tick {}", yes["id"]))
        .await;

    let mut skipped = Vec::new();
    for cond in ["return false;", "return 1;", "return \"true\";"] {
        let no = lab
            .schedule(
                json!({"trigger_code": "tick", "lead_id": lead, "add_tags": "nope",
                             "condition_script_code": cond}),
            )
            .await;
        let j = lab.wait_status(&no["id"], "done").await;
        assert_eq!(j["runs"][0]["outcome"], "skipped", "{cond}: {j}");
        assert_eq!(j["runs"][0]["condition"], false, "{cond}: {j}");
        assert_eq!(j["runs"][0]["error"], Value::Null, "{cond}: {j}");
        skipped.push(no["id"].clone());
    }
    lab.server.settle().await;
    let t = lab.texts("k1").await;
    for id in &skipped {
        assert_eq!(count(&t, &format!("tick {id}")), 0, "{t:?}");
    }
    assert!(
        lab.tags_of(lead).await.is_empty(),
        "a skipped run adds no tags"
    );
}

/// The condition also sees `lead`: the lead's id and tags as they are when the job is due.
#[tokio::test]
async fn condition_sees_the_lead() {
    let lab = lab().await;
    let lead = lab.lead("k2").await;
    lab.say("k2", "tag vip").await;
    for cond in [
        "return lead.tags.indexOf(\"vip\") >= 0;".to_owned(),
        format!("return lead.id === {lead};"),
    ] {
        let job = lab
            .schedule(
                json!({"trigger_code": "tick", "lead_id": lead, "condition_script_code": cond}),
            )
            .await;
        let j = lab.wait_status(&job["id"], "done").await;
        assert_eq!(j["runs"][0]["outcome"], "ok", "`{cond}` did not hold: {j}");
    }
}

/// A condition that throws, or loops past the script time budget, skips the run with the error
/// recorded on it; the server keeps working and later jobs run.
#[tokio::test]
async fn failing_condition_skips_the_run_and_records_the_error() {
    let lab = lab_with(|s| s.script_timeout_ms = 200).await;
    let lead = lab.lead("e1").await;
    let throws = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead,
                         "condition_script_code": "throw new Error(\"nope-123\");"}))
        .await;
    let j = lab.wait_status(&throws["id"], "done").await;
    let run = &j["runs"][0];
    assert_eq!(run["outcome"], "skipped", "{j}");
    assert_eq!(run["condition"], false, "{j}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("nope-123"),
        "{j}"
    );

    let loops = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead,
                         "condition_script_code": "while (true) {}"}))
        .await;
    let j = lab.wait_status(&loops["id"], "done").await;
    let run = &j["runs"][0];
    assert_eq!(run["outcome"], "skipped", "{j}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("time budget"), "{j}");

    assert_eq!(lab.say("e1", "hi").await, ["hello e1"]);
    lab.barrier(lead).await;
    let t = lab.texts("e1").await;
    assert_eq!(count(&t, &format!("tick {}", throws["id"])), 0, "{t:?}");
    assert_eq!(count(&t, &format!("tick {}", loops["id"])), 0, "{t:?}");
}

/// `add_tags` / `remove_tags` — comma-separated strings or lists — change the lead's tags when
/// the job runs (before its script, which already sees them); the contact API shows them.
#[tokio::test]
async fn add_and_remove_tags_apply_when_the_job_runs() {
    let lab = lab().await;
    let lead = lab.lead("g1").await;
    let job = lab
        .schedule(
            json!({"trigger_code": "echo", "lead_id": lead, "add_tags": "a, b ,c",
                         "run_after_sec": 60}),
        )
        .await;
    assert_eq!(job["add_tags"], json!(["a", "b", "c"]));
    assert!(lab.tags_of(lead).await.is_empty(), "not before the run");
    lab.advance(61);
    lab.wait_status(&job["id"], "done").await;
    lab.server
        .wait_for_text(
            "lab",
            "g1",
            &format!("echo params={{}} ticket=null lead={lead} tags=a,b,c"),
        )
        .await;
    assert_eq!(lab.tags_of(lead).await, ["a", "b", "c"]);

    let job = lab
        .schedule(
            json!({"trigger_code": "tick", "lead_id": lead, "add_tags": ["d"],
                         "remove_tags": ["b"]}),
        )
        .await;
    lab.wait_status(&job["id"], "done").await;
    assert_eq!(lab.tags_of(lead).await, ["a", "c", "d"]);

    let job = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead, "remove_tags": "a,c"}))
        .await;
    lab.wait_status(&job["id"], "done").await;
    assert_eq!(lab.tags_of(lead).await, ["d"]);
    assert_eq!(lab.say("g1", "show tags").await, ["tags d"]);
}

// ---------------------------------------------------------------------------------------------
// 2. Validation and auth
// ---------------------------------------------------------------------------------------------

/// Every invalid request is answered 422 `validation_failed` naming the field at fault, and
/// nothing is stored: the list of jobs is the same afterwards.
#[tokio::test]
async fn invalid_requests_are_422_naming_the_field_and_store_nothing() {
    let lab = lab().await;
    let lead = lab.lead("v1").await;
    // A contact of the other bot only.
    lab.server.say("other", "o1", "hi").await;
    let stranger = lab.server.contact_id("other", "o1").await;
    lab.schedule(json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 3600}))
        .await;
    let before = lab.all_jobs().await;

    let cases: Vec<(Value, &[&str])> = vec![
        (
            json!({"lead_id": lead}),
            &[
                "script_id",
                "script_code",
                "trigger_id",
                "trigger_code",
                "broadcast_id",
                "broadcast_code",
            ],
        ),
        (
            json!({"trigger_code": "tick", "script_code": "checkin", "lead_id": lead}),
            &["script_id", "script_code", "trigger_id", "trigger_code"],
        ),
        (
            json!({"trigger_code": "nope", "lead_id": lead}),
            &["trigger_code"],
        ),
        (json!({"trigger_id": 99, "lead_id": lead}), &["trigger_id"]),
        (json!({"script_id": 99, "lead_id": lead}), &["script_id"]),
        (json!({"broadcast_code": "nope"}), &["broadcast_code"]),
        (
            json!({"script_id": 1, "script_code": "tick", "lead_id": lead}),
            &["script_id", "script_code"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "run_at": "tomorrow"}),
            &["run_at"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "run_at": "2030-02-30 10:00:00"}),
            &["run_at"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": -5}),
            &["run_after_sec"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": "soon"}),
            &["run_after_sec"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "is_periodic": true}),
            &["is_periodic"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "is_periodic": true, "run_after_sec": 0}),
            &["is_periodic", "run_after_sec"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "cron": "61 * * * *"}),
            &["cron"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "cron": "every day"}),
            &["cron"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "condition_script_code": "return (;"}),
            &["condition_script_code"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": 999_999}),
            &["lead_id"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": stranger}),
            &["lead_id"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": "abc"}),
            &["lead_id"],
        ),
        (json!({"script_code": "checkin"}), &["lead_id"]),
        (
            json!({"trigger_code": "tick", "add_tags": "x"}),
            &["add_tags"],
        ),
        (
            json!({"broadcast_code": "vip", "lead_id": lead}),
            &["lead_id"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "run_later": 5}),
            &["run_later"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "script_request_params": [1]}),
            &["script_request_params"],
        ),
        (
            json!({"trigger_code": "tick", "lead_id": lead, "add_tags": 5}),
            &["add_tags"],
        ),
        (json!([1, 2]), &["body"]),
    ];
    for (body, fields) in &cases {
        let (s, v) = lab.try_schedule(body.clone()).await;
        assert_eq!(s, 422, "{body} → {v}");
        assert_eq!(v["error"]["code"], "validation_failed", "{body} → {v}");
        let field = v["error"]["details"]["field"].as_str().unwrap_or_default();
        assert!(
            fields.contains(&field),
            "{body}: the error names `{field}`, expected one of {fields:?}: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(field), "{body}: {message}");
    }
    assert_eq!(
        lab.all_jobs().await,
        before,
        "an invalid request stored something"
    );
}

/// With two targets, the error names a field the client actually sent.
#[tokio::test]
async fn two_targets_error_names_a_field_that_was_sent() {
    let lab = lab().await;
    let lead = lab.lead("v2").await;
    let (s, v) = lab
        .try_schedule(json!({"trigger_code": "tick", "broadcast_code": "vip", "lead_id": lead}))
        .await;
    assert_eq!(s, 422, "{v}");
    let field = v["error"]["details"]["field"].as_str().unwrap_or_default();
    assert!(
        ["trigger_code", "broadcast_code"].contains(&field),
        "names `{field}`: {v}"
    );
}

/// The jobs API takes the admin token or the bot's own token (also as `Authentication:`);
/// no token, a wrong one, or another bot's token is 401; an unknown bot is 404; a body that is
/// not JSON is 400. None of them stores anything.
#[tokio::test]
async fn auth_unknown_bot_and_malformed_json() {
    let lab = lab().await;
    let lead = lab.lead("a1").await;
    let body = json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 3600});
    let path = "/bots/lab/jobs/schedule";
    let before = lab.all_jobs().await;
    for token in [None, Some("wrong"), Some("other-token")] {
        let (s, v) = lab.server.post_as(token, path, body.clone()).await;
        assert_eq!(s, 401, "token {token:?}: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    }
    for route in ["/bots/lab/jobs", "/bots/lab/jobs/1"] {
        let r = lab
            .server
            .http
            .get(lab.server.url(route))
            .bearer_auth("other-token")
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401, "{route} with another bot's token");
    }
    let (s, v) = lab
        .server
        .post("/bots/nobot/jobs/schedule", body.clone())
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = lab.server.post_raw(path, "{\"trigger_code\": ").await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["code"].is_string(), "{v}");
    assert_eq!(lab.all_jobs().await, before);

    let (s, v) = lab
        .server
        .post_as(Some("lab-token"), path, body.clone())
        .await;
    assert_eq!(s, 201, "the bot's own token: {v}");
    let r = lab
        .server
        .http
        .post(lab.server.url(path))
        .header("Authentication", "Bearer lab-token")
        .json(&body)
        .send()
        .await
        .expect("post");
    let (s, v) = status_json(r).await;
    assert_eq!(s, 201, "`Authentication: Bearer` is accepted too: {v}");
    assert_eq!(lab.all_jobs().await.len(), before.len() + 2);
}

// ---------------------------------------------------------------------------------------------
// 3. Reading jobs
// ---------------------------------------------------------------------------------------------

/// `GET /bots/{bot}/jobs/{id}` shows the job with its runs, newest first, each with its due,
/// start and finish times, lateness, outcome, condition, error and dialog count; unknown → 404.
#[tokio::test]
async fn a_job_shows_its_runs_newest_first() {
    let lab = lab().await;
    let lead = lab.lead("j1").await;
    let job = lab
        .schedule(
            json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 60,
                         "is_periodic": true, "condition_script_code": "return true;"}),
        )
        .await;
    for key in [
        "id",
        "status",
        "run_at",
        "is_periodic",
        "kind",
        "lead_id",
        "created_at",
        "run_count",
    ] {
        assert!(job.get(key).is_some(), "{key} missing: {job}");
    }
    assert_eq!(job["status"], "pending");
    assert_eq!(job["run_count"], 0);
    let id = &job["id"];
    lab.advance(61);
    lab.wait_runs(id, 1).await;
    lab.advance(60);
    let j = lab.wait_runs(id, 2).await;
    assert_eq!(j["run_count"], 2, "{j}");
    let r = runs(&j);
    assert_eq!(r.len(), 2, "{j}");
    assert!(
        ms(&r[0]["due_at"]) > ms(&r[1]["due_at"]),
        "newest first: {j}"
    );
    assert_eq!(j["last_run"]["id"], r[0]["id"], "{j}");
    for run in &r {
        assert_eq!(run["outcome"], "ok", "{run}");
        assert_eq!(run["condition"], true, "{run}");
        assert_eq!(run["error"], Value::Null, "{run}");
        assert_eq!(run["dialogs"], 1, "{run}");
        let (due, started, finished) = (
            ms(&run["due_at"]),
            ms(&run["started_at"]),
            ms(&run["finished_at"]),
        );
        assert!(due <= started && started <= finished, "{run}");
        let lateness = run["lateness_ms"].as_f64().expect("lateness_ms");
        assert!((lateness - (started - due) as f64).abs() < 1.0, "{run}");
    }
    let (s, v) = lab.server.get("/bots/lab/jobs/999999").await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = lab.server.get("/bots/lab/jobs/abc").await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = lab.server.get(&format!("/bots/other/jobs/{id}")).await;
    assert_eq!(s, 404, "another bot's job: {v}");
}

/// `GET /bots/{bot}/jobs/{id}` is one consistent view: the job's `run_count` and `last_run` agree
/// with its runs, even while runs are being claimed and finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_and_its_runs_are_read_consistently() {
    let lab = Arc::new(lab().await);
    let lead = lab.lead("j2").await;
    let job = lab
        .schedule(
            json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 1,
                         "is_periodic": true}),
        )
        .await;
    let id = job["id"].clone();
    let ticking = {
        let lab = lab.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                lab.advance(1);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut torn = Vec::new();
    let mut reads = 0;
    while !ticking.is_finished() {
        let j = lab.job(&id).await;
        reads += 1;
        let r = runs(&j);
        if j["run_count"].as_u64() != Some(r.len() as u64)
            || r.first().map(|r| &r["id"]) != j.get("last_run").map(|l| &l["id"])
        {
            torn.push(j);
        }
    }
    assert!(
        torn.is_empty(),
        "{} of {reads} reads disagree with themselves; first: {}",
        torn.len(),
        torn[0]
    );
}

/// `GET /bots/{bot}/jobs` lists newest first, filters by `status` and `lead_id`, and pages with
/// `limit` and `before` (`next_before`) without losing or repeating a job.
#[tokio::test]
async fn listing_filters_by_status_and_lead_and_pages() {
    let lab = lab().await;
    let l1 = lab.lead("l1").await;
    let l2 = lab.lead("l2").await;
    let mut pending = Vec::new();
    for lead in [l1, l2, l1] {
        let j = lab
            .schedule(json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 3600}))
            .await;
        pending.push(j["id"].clone());
    }
    let mut done = Vec::new();
    for lead in [l2, l1] {
        let j = lab
            .schedule(json!({"trigger_code": "tick", "lead_id": lead}))
            .await;
        lab.wait_status(&j["id"], "done").await;
        done.push(j["id"].clone());
    }
    let (s, _) = lab
        .server
        .delete(&format!("/bots/lab/jobs/{}", pending[1]))
        .await;
    assert_eq!(s, 200);
    let cancelled = pending.remove(1);

    let ids = |v: &Value| -> Vec<Value> {
        v["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["id"].clone())
            .collect()
    };
    let desc = |mut v: Vec<Value>| {
        v.sort_by_key(|id| std::cmp::Reverse(id.as_i64()));
        v
    };
    let (s, all) = lab.server.get("/bots/lab/jobs").await;
    assert_eq!(s, 200, "{all}");
    assert_eq!(all["success"], true);
    let every = ids(&all);
    assert_eq!(every.len(), 5, "{all}");
    assert_eq!(every, desc(every.clone()), "newest first");
    assert_eq!(all["next_before"], Value::Null);

    let (_, v) = lab.server.get("/bots/lab/jobs?status=pending").await;
    assert_eq!(ids(&v), desc(pending.clone()), "{v}");
    let (_, v) = lab.server.get("/bots/lab/jobs?status=done").await;
    assert_eq!(ids(&v), desc(done.clone()), "{v}");
    let (_, v) = lab.server.get("/bots/lab/jobs?status=cancelled").await;
    assert_eq!(ids(&v), vec![cancelled.clone()], "{v}");
    let (_, v) = lab
        .server
        .get(&format!("/bots/lab/jobs?lead_id={l2}"))
        .await;
    assert!(
        ids(&v).iter().all(|id| every.contains(id)) && ids(&v).len() == 2,
        "{v}"
    );
    assert!(
        v["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .all(|j| j["lead_id"] == l2),
        "{v}"
    );
    let (_, v) = lab
        .server
        .get(&format!("/bots/lab/jobs?lead_id={l1}&status=pending"))
        .await;
    assert_eq!(ids(&v), vec![pending[1].clone(), pending[0].clone()], "{v}");

    // Pages of two.
    let mut paged = Vec::new();
    let mut before = String::new();
    for _ in 0..10 {
        let (s, v) = lab
            .server
            .get(&format!("/bots/lab/jobs?limit=2{before}"))
            .await;
        assert_eq!(s, 200, "{v}");
        let page = ids(&v);
        assert!(page.len() <= 2, "{v}");
        paged.extend(page);
        match v["next_before"].as_i64() {
            Some(n) => before = format!("&before={n}"),
            None => break,
        }
    }
    assert_eq!(paged, every, "pages lose or repeat jobs");

    let (s, v) = lab.server.get("/bots/lab/jobs?status=bogus").await;
    assert!((400..500).contains(&s), "{s} {v}");
    let (s, v) = lab.server.get("/bots/lab/jobs?limit=x").await;
    assert!((400..500).contains(&s), "{s} {v}");
}

// ---------------------------------------------------------------------------------------------
// 4. Cancelling
// ---------------------------------------------------------------------------------------------

/// A pending job that is cancelled never runs, even once the clock passes its due time.
#[tokio::test]
async fn a_cancelled_pending_job_never_runs() {
    let lab = lab().await;
    let lead = lab.lead("x1").await;
    let job = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 60}))
        .await;
    let id = &job["id"];
    let (s, v) = lab.server.delete(&format!("/bots/lab/jobs/{id}")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["job"]["status"], "cancelled");
    lab.advance(120);
    lab.barrier(lead).await;
    let j = lab.job(id).await;
    assert_eq!(j["status"], "cancelled", "{j}");
    assert!(runs(&j).is_empty(), "{j}");
    assert_eq!(count(&lab.texts("x1").await, &format!("tick {id}")), 0);
}

/// Cancelling a periodic job stops it: no run after the cancel.
#[tokio::test]
async fn cancelling_a_periodic_job_stops_it() {
    let lab = lab().await;
    let lead = lab.lead("x2").await;
    let job = lab
        .schedule(
            json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 60,
                         "is_periodic": true}),
        )
        .await;
    let id = &job["id"];
    lab.advance(61);
    lab.wait_runs(id, 1).await;
    let (s, v) = lab.server.delete(&format!("/bots/lab/jobs/{id}")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["job"]["status"], "cancelled", "{v}");
    assert_eq!(v["job"]["run_at"], Value::Null, "no next run: {v}");
    lab.advance(300);
    lab.barrier(lead).await;
    let j = lab.job(id).await;
    assert_eq!(j["status"], "cancelled");
    assert_eq!(runs(&j).len(), 1, "{j}");
    assert_eq!(count(&lab.texts("x2").await, &format!("tick {id}")), 1);
}

/// Cancelling a finished job is 409 `job_finished`; an unknown job is 404; another bot's job
/// is 404 under that bot.
#[tokio::test]
async fn cancelling_a_finished_or_unknown_job() {
    let lab = lab().await;
    let lead = lab.lead("x3").await;
    let job = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead}))
        .await;
    let id = &job["id"];
    lab.wait_status(id, "done").await;
    let (s, v) = lab.server.delete(&format!("/bots/lab/jobs/{id}")).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "job_finished", "{v}");
    assert_eq!(lab.job(id).await["status"], "done");
    let (s, v) = lab.server.delete("/bots/lab/jobs/999999").await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = lab.server.delete("/bots/lab/jobs/abc").await;
    assert_eq!(s, 404, "{v}");
    let pending = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 60}))
        .await;
    let (s, v) = lab
        .server
        .delete(&format!("/bots/other/jobs/{}", pending["id"]))
        .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(lab.job(&pending["id"]).await["status"], "pending");
}

/// A one-shot job whose run is already under way when it is cancelled: the API must not claim
/// it was cancelled while its run completes and replies (it is either cancelled — no reply — or
/// the cancel is refused).
#[tokio::test]
async fn cancelling_a_job_whose_run_is_under_way_is_not_a_false_success() {
    let lab = lab_with(|s| s.script_timeout_ms = 5000).await;
    let lead = lab.lead("x4").await;
    let job = lab
        .schedule(json!({"trigger_code": "slow", "lead_id": lead}))
        .await;
    let id = &job["id"];
    lab.wait_status(id, "running").await;
    // The run's event is claimed and its worker is inside the 1.5 s trigger.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, v) = lab.server.delete(&format!("/bots/lab/jobs/{id}")).await;
    // The run's event stays pending until the trigger finishes and its results commit.
    lab.server.settle().await;
    let j = lab.job(id).await;
    let replied = count(&lab.texts("x4").await, &format!("slow {id}")) > 0;
    if s == 200 {
        assert_eq!(v["job"]["status"], "cancelled", "{v}");
        assert!(
            !replied,
            "DELETE answered `cancelled`, yet the run went on and replied; the job now: {j}"
        );
        assert_eq!(j["runs"][0]["outcome"], "cancelled", "{j}");
    } else {
        assert_eq!(s, 409, "{v}");
        assert!(replied, "{j}");
        assert_eq!(j["status"], "done", "{j}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Restart
// ---------------------------------------------------------------------------------------------

/// Jobs that came due while the server was down run when it is back: a one-shot exactly once,
/// a periodic job once for all its missed periods (not once per period), after which it is
/// back on its cadence with its next due time in the future.
#[tokio::test]
async fn jobs_due_while_the_server_was_down_run_once_after_restart() {
    let mut lab = lab().await;
    let lead = lab.lead("w1").await;
    let periodic = lab
        .schedule(
            json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 60,
                         "is_periodic": true}),
        )
        .await;
    let once = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 3600}))
        .await;
    let first = ms(&periodic["run_at"]);
    lab.server.stop().await;

    // Down for 70 minutes: 69 periods of the periodic job and the one-shot's due time pass.
    lab.advance(70 * 60);
    let settings = settings(lab.data.path());
    lab.server =
        TestServer::start_with_clock(lab.project.path(), settings, lab.clock.clone()).await;
    let o = lab.wait_status(&once["id"], "done").await;
    assert_eq!(runs(&o).len(), 1, "{o}");
    let p = lab.wait_runs(&periodic["id"], 1).await;
    lab.server.settle().await;
    let p_runs = runs(&p);
    assert_eq!(p_runs.len(), 1, "missed periods collapse into one run: {p}");
    assert_eq!(ms(&p_runs[0]["due_at"]), first, "{p}");
    let next = ms(&p["run_at"]);
    assert!(next > lab.now_ms(), "next run is in the future: {p}");
    assert!(next - lab.now_ms() <= 60_000, "within one period: {p}");
    assert_eq!((next - first) % 60_000, 0, "on its cadence: {p}");
    let t = lab.texts("w1").await;
    assert_eq!(count(&t, &format!("tick {}", periodic["id"])), 1, "{t:?}");
    assert_eq!(count(&t, &format!("tick {}", once["id"])), 1, "{t:?}");

    // And it goes on every minute.
    lab.advance(60);
    let p = lab.wait_runs(&periodic["id"], 2).await;
    assert_eq!(ms(&p["runs"][0]["due_at"]), next, "{p}");
    let o = lab.job(&once["id"]).await;
    assert_eq!(runs(&o).len(), 1, "the one-shot ran exactly once: {o}");
    // Job ids keep growing across the restart.
    let new = lab
        .schedule(json!({"trigger_code": "tick", "lead_id": lead, "run_after_sec": 60}))
        .await;
    assert!(
        new["id"].as_i64() > once["id"].as_i64(),
        "{new} reuses an id"
    );
    lab.server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. From scripts
// ---------------------------------------------------------------------------------------------

/// `$jobs.schedule({...})` returns the job (`id`, `status`, `run_at`) and the job runs later in
/// the same dialog; `$jobs.cancel(id)` returns true and the job never runs.
#[tokio::test]
async fn jobs_scheduled_and_cancelled_from_a_script() {
    let lab = lab().await;
    let lead = lab.lead("js1").await;
    let reply = lab.say("js1", "later 30").await;
    assert_eq!(reply.len(), 1, "{reply:?}");
    let parts: Vec<&str> = reply[0].split(' ').collect();
    assert_eq!(parts[0], "scheduled", "{reply:?}");
    let id: Value = parts[1].parse::<i64>().expect("job id").into();
    assert_eq!(parts[2], "pending", "{reply:?}");
    let j = lab.job(&id).await;
    assert_eq!(j["source"], "script", "{j}");
    assert_eq!(j["dialog"]["chatId"], "js1", "{j}");
    assert_eq!(ms(&j["run_at"]), ms(&json!(parts[3])), "{j}");
    lab.advance(31);
    lab.wait_status(&id, "done").await;
    lab.server.settle().await;
    let t = lab.texts("js1").await;
    assert!(
        t.iter()
            .any(|m| m.starts_with("echo params={} ticket=from-script")),
        "{t:?}"
    );

    let reply = lab.say("js1", "later 30").await;
    let id: Value = reply[0]
        .split(' ')
        .nth(1)
        .expect("id")
        .parse::<i64>()
        .expect("id")
        .into();
    assert_eq!(lab.say("js1", "call off").await, ["cancel true"]);
    assert_eq!(lab.job(&id).await["status"], "cancelled");
    assert_eq!(
        lab.say("js1", "call off").await,
        ["cancel false"],
        "already cancelled"
    );
    lab.advance(60);
    lab.barrier(lead).await;
    let j = lab.job(&id).await;
    assert!(runs(&j).is_empty(), "{j}");
    let t = lab.texts("js1").await;
    assert_eq!(
        count(&t, "ticket=from-script"),
        1,
        "only the first job ran: {t:?}"
    );
}

/// What `$jobs.schedule` returns is the job as stored: its `run_at` is the one the jobs API
/// shows.
#[tokio::test]
async fn a_script_sees_the_run_at_that_is_stored() {
    let lab = lab().await;
    lab.lead("js4").await;
    let reply = lab.say("js4", "later 30").await;
    let parts: Vec<&str> = reply[0].split(' ').collect();
    let id: Value = parts[1].parse::<i64>().expect("job id").into();
    let j = lab.job(&id).await;
    assert_eq!(j["run_at"], parts[3], "{j}");
}

/// A job a script schedules without `lead_id` is for the dialog's contact: it is listed under
/// that lead and its run sees `$request.leadId`.
#[tokio::test]
async fn a_job_scheduled_by_a_script_belongs_to_the_dialogs_lead() {
    let lab = lab().await;
    let lead = lab.lead("js2").await;
    assert_eq!(
        lab.say("js2", "who am i").await,
        [format!("contact {lead}")]
    );
    let reply = lab.say("js2", "later 0").await;
    let id: Value = reply[0]
        .split(' ')
        .nth(1)
        .expect("id")
        .parse::<i64>()
        .expect("id")
        .into();
    let j = lab.wait_status(&id, "done").await;
    assert_eq!(j["lead_id"], lead, "{j}");
    lab.server
        .wait_for_text(
            "lab",
            "js2",
            &format!("echo params={{}} ticket=from-script lead={lead} tags="),
        )
        .await;
    let (_, v) = lab
        .server
        .get(&format!("/bots/lab/jobs?lead_id={lead}"))
        .await;
    assert!(
        v["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .any(|j| j["id"] == id),
        "{v}"
    );
}

/// `$jobs.schedule` with a bad field throws: the turn ends with `scriptError` naming the field,
/// and no job is stored.
#[tokio::test]
async fn a_bad_schedule_from_a_script_throws_and_stores_nothing() {
    let lab = lab().await;
    lab.lead("js3").await;
    let before = lab.all_jobs().await;
    let reply = lab.say("js3", "bad schedule").await;
    assert!(
        reply.is_empty(),
        "the script stopped before answering: {reply:?}"
    );
    let msgs = eventually("the scriptError reply", async || {
        let t = lab.texts("js3").await;
        t.iter().any(|m| m.starts_with("scriptError:")).then_some(t)
    })
    .await;
    let err = msgs
        .iter()
        .find(|m| m.starts_with("scriptError:"))
        .expect("scriptError");
    assert!(err.contains("run_after_sec"), "names the field: {err}");
    assert_eq!(count(&msgs, "not reached"), 0, "{msgs:?}");
    lab.server.settle().await;
    assert_eq!(lab.all_jobs().await, before, "nothing stored");
}

/// `$contact.addTags` / `removeTags` persist on the contact and later turns see `$contact.tags`.
#[tokio::test]
async fn contact_tags_from_scripts_persist() {
    let lab = lab().await;
    let lead = lab.lead("ct1").await;
    assert_eq!(lab.say("ct1", "tag vip de").await, ["tags vip,de"]);
    assert_eq!(lab.tags_of(lead).await, ["de", "vip"]);
    assert_eq!(lab.say("ct1", "show tags").await, ["tags vip,de"]);
    assert_eq!(lab.say("ct1", "untag de").await, ["tags vip"]);
    assert_eq!(lab.tags_of(lead).await, ["vip"]);
    assert_eq!(lab.say("ct1", "show tags").await, ["tags vip"]);
    // And after a restart, from storage.
    let mut lab = lab;
    lab.server.stop().await;
    lab.server = TestServer::start_with_clock(
        lab.project.path(),
        settings(lab.data.path()),
        lab.clock.clone(),
    )
    .await;
    assert_eq!(lab.say("ct1", "show tags").await, ["tags vip"]);
    lab.server.stop().await;
}

/// `$contact.id` is the dialog's contact in every turn after the first.
#[tokio::test]
async fn contact_id_is_visible_in_later_turns() {
    let lab = lab().await;
    let lead = lab.lead("ct2").await;
    assert_eq!(
        lab.say("ct2", "who am i").await,
        [format!("contact {lead}")]
    );
}

/// The reminders example end to end: "remind me in 5 seconds" schedules a job from a script and
/// the reminder arrives once the clock passes; "cancel" calls it off and nothing arrives.
#[tokio::test]
async fn the_reminders_example_reminds_and_cancels() {
    let project = project_copy(&examples_dir("reminders"), &[]);
    let data = tempfile::tempdir().expect("tempdir");
    let clock = manual_clock();
    let server =
        TestServer::start_with_clock(project.path(), settings(data.path()), clock.clone()).await;
    let say = async |chat: &str, text: &str| -> Vec<String> {
        server
            .say("reminders", chat, text)
            .await
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let advance = |secs: u64| {
        clock.advance(Duration::from_secs(secs).try_into().expect("duration"));
    };
    let hi = say("u1", "hi").await;
    assert!(hi[0].starts_with("Hi!"), "{hi:?}");
    assert_eq!(
        say("u1", "remind me in 5 seconds").await,
        ["OK, I will remind you in 5 seconds. Say \"cancel\" to call it off."]
    );
    advance(6);
    server
        .wait_for_text(
            "reminders",
            "u1",
            "⏰ Reminder! You asked me 5 seconds ago.",
        )
        .await;

    say("u2", "hi").await;
    let lead = server.contact_id("reminders", "u2").await;
    say("u2", "remind me in 5 seconds").await;
    assert_eq!(
        say("u2", "cancel").await,
        ["Cancelled: no reminder is coming."]
    );
    assert_eq!(
        say("u2", "cancel").await,
        ["There is no reminder to cancel."]
    );
    // A check-in scheduled after the reminder and due after it is a barrier: once it arrived,
    // the reminder's due time has been passed by the scheduler.
    let (s, v) = server
        .post(
            "/bots/reminders/jobs/schedule",
            json!({"script_code": "checkin", "lead_id": lead, "run_after_sec": 6}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    advance(10);
    server
        .wait_for_text(
            "reminders",
            "u2",
            "Time for your check-in! How is it going?",
        )
        .await;
    server.settle().await;
    let t = server.texts("reminders", "u2").await;
    assert_eq!(count(&t, "Reminder!"), 0, "{t:?}");
    let (_, v) = server.get("/bots/reminders/jobs?status=cancelled").await;
    assert_eq!(v["jobs"].as_array().map(Vec::len), Some(1), "{v}");
}
