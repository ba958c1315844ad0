use std::path::Path;

use super::*;
use crate::diag::Diagnostic;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<WorkflowDef, Vec<Diagnostic>> {
    parse_workflow("wf", Path::new("workflows/wf.yaml"), text, &no_env, &|_| {
        None
    })
}

fn one_error(text: &str) -> Diagnostic {
    let diags = load(text).expect_err("should fail");
    assert_eq!(diags.len(), 1, "{diags:?}");
    diags.into_iter().next().expect("one")
}

const FULL: &str = r#"name: Order shipped
payloadSchema:
  type: object
  required: [orderId]
  properties:
    orderId: { type: string }
steps:
  - type: in_app
    subject: "Order {{ payload.orderId }}"
    body: Your order is on its way
    cta: { url: "https://shop.example/o/{{ payload.orderId }}", label: Track }
  - type: chat
    bot: shop
    text: "Shipped: {{ payload.orderId }}"
    if: subscriber.data.vip
  - type: digest
    stepId: updates
    amount: 10
    unit: minutes
    digestKey: orderId
    lookBack: { amount: 1, unit: hour }
  - type: delay
    delayPath: sendAt
  - type: delay
    amount: 2
    unit: days
  - type: throttle
    amount: 1
    unit: hours
    threshold: 3
  - type: email
    subject: "{{ eventCount }} updates"
    body: See your orders
  - type: webhook
    url: https://hooks.example/x
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
"#;

#[test]
fn every_step_type_loads_with_its_fields() {
    let wf = load(FULL).expect("loads");
    assert_eq!(wf.name, "Order shipped");
    assert!(wf.payload_schema.is_some());
    let types: Vec<&str> = wf.steps.iter().map(|s| s.kind.type_name()).collect();
    assert_eq!(
        types,
        [
            "in_app", "chat", "digest", "delay", "delay", "throttle", "email", "webhook"
        ]
    );
    assert_eq!(wf.steps[0].id, "in_app-1");
    assert_eq!(wf.steps[2].id, "updates");
    assert!(wf.steps[1].condition.is_some());
    match &wf.steps[2].kind {
        StepKind::Digest {
            window,
            key,
            look_back,
        } => {
            assert_eq!(
                *window,
                Amount {
                    amount: 10,
                    unit: Unit::Minutes
                }
            );
            assert_eq!(key.as_deref(), Some("orderId"));
            assert_eq!(look_back.map(|a| a.unit), Some(Unit::Hours));
        }
        other => panic!("not a digest: {other:?}"),
    }
    assert!(matches!(&wf.steps[3].kind, StepKind::Delay(Delay::Until(p)) if p == "sendAt"));
    // Template holes and the condition are in the code table, each with its line.
    assert_eq!(wf.code.len(), 5);
    assert_eq!(wf.code[0].origin.line, 9);
}

#[test]
fn an_unknown_step_type_is_reported_with_a_suggestion() {
    let d = one_error("steps:\n  - type: in-app\n    body: hi\n");
    assert_eq!(d.line, 2);
    assert!(d.message.contains("unknown step type `in-app`"), "{d}");
    assert_eq!(d.hint.as_deref(), Some("did you mean `in_app`?"));
}

#[test]
fn missing_required_fields_name_the_field() {
    let d = one_error("steps:\n  - type: email\n    body: hi\n");
    assert!(d.message.contains("needs `subject`"), "{d}");
    let d = one_error("steps:\n  - type: delay\n    amount: 5\n");
    assert!(d.message.contains("needs a `unit`"), "{d}");
    let d = one_error("steps:\n  - type: throttle\n    amount: 5\n    unit: minutes\n");
    assert!(d.message.contains("needs `threshold`"), "{d}");
}

#[test]
fn bad_units_amounts_and_keys_are_errors() {
    let d = one_error("steps:\n  - type: delay\n    amount: 5\n    unit: fortnights\n");
    assert_eq!((d.line, d.col), (4, 11));
    assert!(d.message.contains("unknown unit"), "{d}");
    let d = one_error("steps:\n  - type: delay\n    amount: 0\n    unit: seconds\n");
    assert!(d.message.contains("at least 1"), "{d}");
    let d = one_error("steps:\n  - type: in_app\n    body: hi\n    subjekt: x\n");
    assert_eq!(d.line, 4);
    assert_eq!(d.hint.as_deref(), Some("did you mean `subject`?"));
}

#[test]
fn a_chat_step_has_text_or_event_but_not_both() {
    let d = one_error("steps:\n  - type: chat\n    bot: shop\n    text: a\n    event: b\n");
    assert!(d.message.contains("either `text` or `event`"), "{d}");
    let d = one_error("steps:\n  - type: chat\n    text: a\n");
    assert!(d.message.contains("needs a `bot`"), "{d}");
}

#[test]
fn an_invalid_payload_schema_is_an_error() {
    let d = one_error("payloadSchema:\n  type: 12\nsteps:\n  - type: in_app\n    body: hi\n");
    assert_eq!(d.line, 2);
    assert!(d.message.contains("not a valid JSON Schema"), "{d}");
}

#[test]
fn a_workflow_without_steps_is_an_error() {
    let d = one_error("name: x\n");
    assert!(d.message.contains("needs `steps:`"), "{d}");
    let d = one_error("steps: []\n");
    assert!(d.message.contains("empty"), "{d}");
}

#[test]
fn an_unclosed_template_hole_is_reported_at_its_place() {
    let d = one_error("steps:\n  - type: in_app\n    body: \"Hi {{ payload.x\"\n");
    assert_eq!((d.line, d.col), (3, 15));
    assert!(d.message.contains("not closed"), "{d}");
}

#[test]
fn amounts_move_timestamps_on_the_utc_calendar() {
    let t: Timestamp = "2026-01-31T10:00:00Z".parse().expect("ts");
    let month = Amount {
        amount: 1,
        unit: Unit::Months,
    };
    assert_eq!(month.after(t).to_string(), "2026-02-28T10:00:00Z");
    let minutes = Amount {
        amount: 90,
        unit: Unit::Minutes,
    };
    assert_eq!(minutes.before(t).to_string(), "2026-01-31T08:30:00Z");
}

#[test]
fn dotted_paths_reach_into_objects_and_lists() {
    let v = serde_json::json!({"a": {"b": [1, {"c": "x"}]}});
    assert_eq!(lookup_path(&v, "a.b.1.c"), Some(&serde_json::json!("x")));
    assert_eq!(lookup_path(&v, "a.z"), None);
}

#[test]
fn a_chat_step_must_name_a_bot_of_the_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("bots/shop")).expect("mkdir");
    std::fs::write(
        dir.path().join("bots/shop/bot.yaml"),
        "states:\n  A:\n    q: hi\n    a: Hello\n",
    )
    .expect("write");
    std::fs::create_dir_all(dir.path().join("workflows")).expect("mkdir");
    std::fs::write(
        dir.path().join("workflows/w.yaml"),
        "steps:\n  - type: chat\n    bot: shpo\n    text: hi\n",
    )
    .expect("write");
    let diags = crate::load_project(dir.path(), &no_env).expect_err("should fail");
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].line, 2);
    assert_eq!(diags[0].hint.as_deref(), Some("did you mean `shop`?"));
    std::fs::write(
        dir.path().join("workflows/w.yaml"),
        "steps:\n  - type: chat\n    bot: shop\n    text: hi\n",
    )
    .expect("write");
    let p = crate::load_project(dir.path(), &no_env).expect("loads");
    assert!(p.workflows.contains_key("w"));
}
