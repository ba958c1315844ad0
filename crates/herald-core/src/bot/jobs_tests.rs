//! Tests of the job sections (`scripts:`, `triggers:`, `broadcasts:`), the tag filter and the
//! `timezone:` check.

use std::path::Path;

use super::model::{BroadcastAction, Code, CodeKind, TagFilter, TemplatePart};
use super::parse_bot_checked;
use super::tests::{hint, load, no_env, ok, one_error};
use crate::diag::Diagnostic;

/// Every section, declared before the states they refer to.
const JOBS: &str = r#"timezone: Europe/Berlin
scripts:
  remind:
    id: 1
    state: /Reminder
  deep.one:
    id: 2
    state: Inner
triggers:
  nudge:
    id: 1
    script: |
      $reactions.answer("hi")
broadcasts:
  weekly:
    id: 3
    tags: {all: [subscribed], any: [a, b], none: unsubscribed}
    a: "Weekly news for {{ $client.name }}"
    buttons: ["Read", "Later"]
  to-all:
    id: 4
    state: /Reminder/Inner
states:
  Reminder:
    a: Don't forget!
    states:
      Inner:
        a: inner
"#;

#[test]
fn all_three_sections_load_and_are_found_by_id_and_by_code() {
    let bot = ok(JOBS);
    assert_eq!(bot.timezone, "Europe/Berlin");
    let reminder = bot.state_by_path("/Reminder").expect("reminder");
    let inner = bot.state_by_path("/Reminder/Inner").expect("inner");

    let codes: Vec<&str> = bot.scripts.iter().map(|s| s.code.as_str()).collect();
    assert_eq!(codes, ["remind", "deep.one"]);
    let remind = bot.script_job(Some(1), None).expect("by id");
    assert_eq!((remind.code.as_str(), remind.state), ("remind", reminder));
    assert_eq!((remind.origin.line, remind.origin.col), (3, 3));
    assert_eq!(
        bot.script_job(None, Some("deep.one")).map(|s| s.state),
        Some(inner)
    );
    assert_eq!(
        bot.script_job(Some(2), Some("deep.one")).map(|s| s.id),
        Some(2)
    );
    assert!(bot.script_job(Some(1), Some("deep.one")).is_none());
    assert!(bot.script_job(None, None).is_none());
    assert!(bot.script_job(Some(9), None).is_none());

    let nudge = bot.trigger_job(None, Some("nudge")).expect("by code");
    assert_eq!(nudge.id, 1);
    assert!(bot.trigger_job(Some(1), None).is_some());
    let code = &bot.code[nudge.script.0];
    assert_eq!(code.kind, CodeKind::Body);
    assert_eq!(code.source, "$reactions.answer(\"hi\")\n");
    assert_eq!((code.origin.line, code.origin.col), (13, 7));

    let weekly = bot.broadcast_job(Some(3), None).expect("by id");
    assert_eq!(weekly.code, "weekly");
    let expected = TagFilter {
        all: vec!["subscribed".into()],
        any: vec!["a".into(), "b".into()],
        none: vec!["unsubscribed".into()],
    };
    assert_eq!(weekly.tags, expected);
    let BroadcastAction::Message { text, buttons } = &weekly.action else {
        panic!("{:?}", weekly.action)
    };
    let [TemplatePart::Text(_), TemplatePart::Expr(hole)] = text.parts[..] else {
        panic!("{text:?}")
    };
    assert_eq!(bot.code[hole.0].source, "$client.name");
    assert_eq!(bot.code[hole.0].kind, CodeKind::Expr);
    assert_eq!(bot.code[hole.0].origin.line, 18);
    let captions: Vec<_> = buttons.iter().map(|b| b.text.as_literal()).collect();
    assert_eq!(captions, [Some("Read".into()), Some("Later".into())]);

    let to_all = bot.broadcast_job(None, Some("to-all")).expect("by code");
    assert!(to_all.tags.is_empty());
    assert!(matches!(to_all.action, BroadcastAction::State(id) if id == inner));
    assert!(bot.broadcast_job(Some(3), Some("to-all")).is_none());
}

#[test]
fn empty_sections_and_a_trigger_script_file_load() {
    let bot = ok("scripts:\ntriggers: {}\nbroadcasts:\n");
    assert!(bot.scripts.is_empty() && bot.triggers.is_empty() && bot.broadcasts.is_empty());

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("nudge.js"), "log('x');\n").expect("write");
    let file = dir.path().join("bot.yaml");
    let text = "triggers:\n  nudge:\n    id: 7\n    script: {file: nudge.js}\n";
    let bot = super::parse_bot("b", &file, text, &no_env).unwrap_or_else(|d| panic!("{d:#?}"));
    let nudge = bot.trigger_job(Some(7), Some("nudge")).expect("trigger");
    assert_eq!(bot.code[nudge.script.0].source, "log('x');\n");
    assert_eq!(
        bot.code[nudge.script.0].origin.file,
        dir.path().join("nudge.js")
    );
    let text = "triggers:\n  nudge:\n    id: 7\n    script: {file: gone.js}\n";
    let d = super::parse_bot("b", &file, text, &no_env).expect_err("missing file");
    assert_eq!(d[0].line, 4);
    assert!(d[0].message.contains("cannot read script file"), "{}", d[0]);
}

#[test]
fn an_unknown_script_state_is_reported_with_a_suggestion() {
    let d =
        one_error("scripts:\n  remind:\n    id: 1\n    state: /Remindr\nstates:\n  Reminder: {}\n");
    assert_eq!((d.line, d.col), (4, 12));
    assert_eq!(
        d.message,
        "unknown state `/Remindr` in `state` of script `remind`"
    );
    assert_eq!(hint(&d), "did you mean `/Reminder`?");
    let d = one_error("broadcasts:\n  b:\n    id: 1\n    state: Nope\nstates:\n  A: {}\n");
    assert_eq!(d.line, 4);
    assert!(d.message.contains("in `state` of broadcast `b`"), "{d}");
    assert_eq!(hint(&d), "top-level states: `/A`");
}

#[test]
fn ids_are_required_whole_numbers_and_unique_within_a_section() {
    let d = one_error("scripts:\n  remind:\n    state: /A\nstates:\n  A: {}\n");
    assert_eq!((d.line, d.col), (2, 3));
    assert_eq!(d.message, "script `remind` needs `id`");
    assert!(hint(&d).contains("id: 1"));
    for bad in ["0", "-3", "1.5", "abc", "[1]", "\"\""] {
        let d = one_error(&format!(
            "triggers:\n  t:\n    id: {bad}\n    script: x()\n"
        ));
        assert_eq!((d.line, d.col), (3, 9), "{bad}: {d}");
        assert!(
            d.message
                .starts_with("`id` of trigger `t` must be a whole number ≥ 1"),
            "{d}"
        );
    }
    let text =
        "triggers:\n  first:\n    id: 5\n    script: a()\n  second:\n    id: 5\n    script: b()\n";
    let d = one_error(text);
    assert_eq!((d.line, d.col), (6, 9));
    assert_eq!(
        d.message,
        "id 5 of trigger `second` is already used by trigger `first`"
    );
    assert!(hint(&d).contains("unique within `triggers:`"));
    // The same id in different sections is fine.
    let bot = ok(
        "scripts:\n  s: {id: 1, state: A}\ntriggers:\n  t: {id: 1, script: x()}\nbroadcasts:\n  b: {id: 1, a: hi}\nstates:\n  A: {}\n",
    );
    assert_eq!(
        bot.script_job(Some(1), None).map(|s| s.code.as_str()),
        Some("s")
    );
    assert_eq!(
        bot.trigger_job(Some(1), None).map(|s| s.code.as_str()),
        Some("t")
    );
    assert_eq!(
        bot.broadcast_job(Some(1), None).map(|s| s.code.as_str()),
        Some("b")
    );
}

#[test]
fn entries_must_be_mappings_with_known_keys_and_valid_codes() {
    let d = one_error("scripts:\n  remind: /A\n");
    assert_eq!((d.line, d.col), (2, 11));
    assert_eq!(d.message, "script `remind` must be a mapping, not a string");
    assert!(hint(&d).contains("remind: {id: 1, state: /Reminder}"));
    let d = one_error("triggers:\n  nudge:\n");
    assert_eq!((d.line, d.col), (2, 3));
    assert_eq!(d.message, "trigger `nudge` must be a mapping, not nothing");
    let d = one_error("broadcasts:\n  b:\n    id: 1\n    a:\n");
    assert_eq!((d.line, d.col), (4, 5));
    assert_eq!(d.message, "`a` in broadcast `b` has no value");
    assert!(hint(&d).contains("after the colon"));
    let d = one_error("scripts:\n  - remind\n");
    assert_eq!(d.line, 2);
    assert!(d.message.starts_with("`scripts` must be a mapping"), "{d}");
    let d = one_error(
        "scripts:\n  remind:\n    id: 1\n    state: /A\n    stat: /A\nstates:\n  A: {}\n",
    );
    assert_eq!((d.line, d.col), (5, 5));
    assert_eq!(d.message, "unknown key `stat` in script `remind`");
    assert_eq!(hint(&d), "did you mean `state`?");
    let d = one_error("triggers:\n  t:\n    id: 1\n    scrpt: x()\n    script: x()\n");
    assert_eq!(hint(&d), "did you mean `script`?");
    let d = one_error("triggers:\n  \"bad code\":\n    id: 1\n    script: x()\n");
    assert_eq!(d.line, 2);
    assert_eq!(d.message, "`bad code` is not a valid trigger code");
}

#[test]
fn scripts_need_a_state_and_triggers_a_script() {
    let d = one_error("scripts:\n  remind:\n    id: 1\n");
    assert_eq!((d.line, d.col), (2, 3));
    assert_eq!(d.message, "script `remind` needs `state`");
    let d = one_error("triggers:\n  nudge:\n    id: 1\n");
    assert_eq!(d.line, 2);
    assert_eq!(d.message, "trigger `nudge` needs `script`");
    let d = one_error("triggers:\n  nudge:\n    id: 1\n    script: [x]\n");
    assert_eq!(d.line, 4);
}

#[test]
fn a_broadcast_has_exactly_one_of_a_message_and_a_state() {
    let d = one_error("broadcasts:\n  b:\n    id: 1\n    a: hi\n    state: /A\nstates:\n  A: {}\n");
    assert_eq!((d.line, d.col), (5, 5));
    assert_eq!(d.message, "broadcast `b` has both `a` and `state`");
    assert!(hint(&d).contains("keep one"));
    let d = one_error("broadcasts:\n  b:\n    id: 1\n    buttons: [x]\n");
    assert_eq!((d.line, d.col), (4, 5));
    assert_eq!(d.message, "`buttons` without `a` in broadcast `b`");
    let d = one_error(
        "broadcasts:\n  b:\n    id: 1\n    buttons: [x]\n    state: /A\nstates:\n  A: {}\n",
    );
    assert_eq!(d.line, 4);
    let d = one_error("broadcasts:\n  b:\n    id: 1\n    tags: {all: x}\n");
    assert_eq!((d.line, d.col), (2, 3));
    assert_eq!(d.message, "broadcast `b` needs `a` or `state`");
    assert!(hint(&d).contains("`state: /Name`"));
    let d = one_error("broadcasts:\n  b:\n    id: 1\n    a: \"{{ x\"\n");
    assert_eq!(d.message, "`{{` is not closed");
}

#[test]
fn broadcast_tags_are_checked() {
    let d = one_error("broadcasts:\n  b:\n    id: 1\n    a: hi\n    tags: {all: [x], non: [y]}\n");
    assert_eq!((d.line, d.col), (5, 22));
    assert_eq!(d.message, "unknown key `non` in `tags` of broadcast `b`");
    assert_eq!(hint(&d), "did you mean `none`?");
    let d =
        one_error("broadcasts:\n  b:\n    id: 1\n    a: hi\n    tags:\n      any: [x, {y: 1}]\n");
    assert_eq!((d.line, d.col), (6, 16));
    assert!(
        d.message
            .starts_with("`tags.any` of broadcast `b` must be a tag or a list of tags"),
        "{d}"
    );
    let d = one_error("broadcasts:\n  b:\n    id: 1\n    a: hi\n    tags: [x]\n");
    assert_eq!(d.line, 5);
    assert_eq!(
        d.message,
        "`tags` of broadcast `b` must be a mapping, not a list"
    );
    let bot =
        ok("broadcasts:\n  b:\n    id: 1\n    a: hi\n    tags:\n      all:\n      any: vip\n");
    let b = bot.broadcast_job(Some(1), None).expect("b");
    assert_eq!(b.tags.any, ["vip"]);
    assert!(b.tags.all.is_empty());
}

#[test]
fn the_code_check_runs_on_trigger_scripts_and_broadcast_holes() {
    let check = |c: &Code| {
        c.source
            .contains("BAD")
            .then(|| Diagnostic::new(&c.origin.file, c.origin.line, c.origin.col, "JavaScript"))
    };
    let text = "triggers:\n  t:\n    id: 1\n    script: |\n      ok();\n      BAD\nbroadcasts:\n  b:\n    id: 1\n    a: \"x {{ BAD }}\"\n";
    let d = parse_bot_checked("b", Path::new("bot.yaml"), text, &no_env, &check)
        .expect_err("the check fails");
    let at: Vec<(usize, usize)> = d.iter().map(|d| (d.line, d.col)).collect();
    assert_eq!(at, [(5, 7), (10, 11)]);
    let d = one_error(
        "triggers:\n  t:\n    id: 1\n    script: createPushback(a, b, c, 'noMatch', {})\n",
    );
    assert_eq!(d.line, 4);
    assert!(d.message.contains("reserved event name"), "{d}");
}

#[test]
fn tag_filter_truth_table() {
    let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let filter = |all: &[&str], any: &[&str], none: &[&str]| TagFilter {
        all: tags(all),
        any: tags(any),
        none: tags(none),
    };
    let empty = TagFilter::default();
    assert!(empty.is_empty());
    assert!(empty.matches(&[]));
    assert!(empty.matches(&tags(&["x"])));
    let f = filter(&["sub"], &["a", "b"], &["unsub"]);
    assert!(!f.is_empty());
    let cases: &[(&[&str], bool)] = &[
        (&["sub", "a"], true),
        (&["sub", "b", "other"], true),
        (&["sub"], false),
        (&["a", "b"], false),
        (&["sub", "a", "unsub"], false),
        (&["Sub", "a"], false),
        (&[], false),
    ];
    for (have, expected) in cases {
        assert_eq!(f.matches(&tags(have)), *expected, "{have:?}");
    }
    let all_only = filter(&["x", "y"], &[], &[]);
    assert!(all_only.matches(&tags(&["y", "x"])));
    assert!(!all_only.matches(&tags(&["x"])));
    let none_only = filter(&[], &[], &["x"]);
    assert!(none_only.matches(&[]));
    assert!(!none_only.matches(&tags(&["x"])));
    assert!(filter(&[], &["q"], &[]).matches(&tags(&["q"])));
    assert!(!filter(&[], &["q"], &[]).matches(&[]));
}

#[test]
fn an_unknown_timezone_is_reported() {
    let d = one_error("timezone: Europe/Berln\n");
    assert_eq!((d.line, d.col), (1, 11));
    assert!(d.message.contains("`Europe/Berln`"), "{d}");
    assert!(hint(&d).contains("\"Europe/Berlin\""));
    assert_eq!(ok("timezone: UTC\n").timezone, "UTC");
    assert_eq!(ok("timezone: \"\"\n").timezone, "UTC");
    assert_eq!(ok("timezone:\n").timezone, "UTC");
    assert_eq!(
        ok("timezone: America/New_York\n").timezone,
        "America/New_York"
    );
    assert!(load("timezone: [UTC]\n").is_err());
}
