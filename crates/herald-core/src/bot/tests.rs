//! Loader tests: the reference example, every kind of diagnostic (with its line and hint), and the
//! shape of what is built.

use std::path::Path;

use super::model::{BotDef, CodeKind, Reaction, TemplatePart};
use super::parse_bot;
use crate::diag::Diagnostic;

pub(crate) fn no_env(_: &str) -> Option<String> {
    None
}

pub(crate) fn load(text: &str) -> Result<BotDef, Vec<Diagnostic>> {
    parse_bot("b", Path::new("bots/b/bot.yaml"), text, &no_env)
}

pub(crate) fn ok(text: &str) -> BotDef {
    load(text).unwrap_or_else(|d| panic!("unexpected diagnostics: {d:#?}"))
}

pub(crate) fn one_error(text: &str) -> Diagnostic {
    let d = load(text).expect_err("the file should not load");
    assert_eq!(d.len(), 1, "{d:#?}");
    d[0].clone()
}

pub(crate) fn hint(d: &Diagnostic) -> &str {
    d.hint.as_deref().unwrap_or("")
}

pub(crate) fn newsletter() -> BotDef {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/newsletter/bots/newsletter/bot.yaml");
    let text = std::fs::read_to_string(&file).expect("example exists");
    parse_bot("newsletter", &file, &text, &no_env).unwrap_or_else(|d| panic!("{d:#?}"))
}

#[test]
fn the_newsletter_example_loads_without_diagnostics() {
    let bot = newsletter();
    assert_eq!(bot.name, "Newsletter bot");
    assert_eq!(bot.token, None);
    assert_eq!(bot.timezone, "UTC");
    assert!(bot.has_channel("chatwidget"));
    assert_eq!(
        bot.injector["subscribeUrl"],
        "http://127.0.0.1:9000/subscribe"
    );
    let paths: Vec<&str> = bot.states.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/Start",
            "/SubscribeOffer",
            "/SubscribeOffer/Subscribe",
            "/SubscribeOffer/Decline",
            "/NewNotification",
            "/NoMatch"
        ]
    );
    let offer = bot.state_by_path("/SubscribeOffer").expect("offer");
    assert!(matches!(bot.state(bot.roots[0]).reactions[..], [Reaction::Go(id)] if id == offer));
    let subscribe = bot.state(bot.state(offer).children[0]);
    let [Reaction::Script(code), Reaction::Answer(_)] = subscribe.reactions[..] else {
        panic!("{:?}", subscribe.reactions)
    };
    let code = &bot.code[code.0];
    assert_eq!(code.kind, CodeKind::Body);
    assert_eq!((code.origin.line, code.origin.col), (23, 15));
    assert!(code.source.starts_with("// Create a pushback.\n"));
    let notification = bot.state(bot.roots[2]);
    assert!(notification.no_context);
    let [Reaction::If { cond, ref then, .. }] = notification.reactions[..] else {
        panic!("{:?}", notification.reactions)
    };
    assert_eq!(bot.code[cond.0].origin.line, 44);
    assert_eq!(bot.code[cond.0].kind, CodeKind::Expr);
    let [Reaction::Answer(ref t)] = then[..] else {
        panic!("{then:?}")
    };
    let [TemplatePart::Text(_), TemplatePart::Expr(hole)] = t.parts[..] else {
        panic!("{t:?}")
    };
    assert_eq!(
        bot.code[hole.0].source,
        "$request.rawRequest.eventData.text"
    );
    assert_eq!(bot.code[hole.0].origin.line, 46);
}

#[test]
fn an_unknown_go_target_is_reported_with_its_line() {
    let d = one_error(
        "states:\n  Start:\n    q: hi\n    go: SubscribeOfer\n  SubscribeOffer:\n    a: x\n",
    );
    assert_eq!((d.line, d.col), (4, 9));
    assert_eq!(d.message, "unknown state `SubscribeOfer` in `go`");
    assert_eq!(hint(&d), "did you mean `SubscribeOffer`?");
    let d = one_error("states:\n  A:\n    go: Zzzzzz\n  B: {}\n");
    assert_eq!(hint(&d), "top-level states: `/A`, `/B`");
}

#[test]
fn a_trigger_of_the_wrong_type_is_reported() {
    let d = one_error("states:\n  A:\n    q: {a: 1}\n");
    assert_eq!(d.line, 3);
    assert!(
        d.message
            .starts_with("trigger `q` must be a string or a list of strings"),
        "{d}"
    );
    assert!(hint(&d).contains("q: [\"hello\", \"hi\"]"));
    let d = one_error("states:\n  A:\n    event!:\n      - ok\n      - [x]\n");
    assert_eq!(d.line, 5);
}

#[test]
fn an_unknown_intent_is_reported_with_a_suggestion() {
    let d = one_error("intents:\n  Agree: yes\nstates:\n  A:\n    intent: Agre\n");
    assert_eq!((d.line, d.col), (5, 13));
    assert_eq!(d.message, "unknown intent `Agre`");
    assert_eq!(hint(&d), "did you mean `Agree`?");
    let d = one_error("states:\n  A:\n    intent!: Agree\n");
    assert!(hint(&d).contains("intents:"));
}

#[test]
fn an_unknown_key_gets_a_did_you_mean_hint() {
    let d = one_error("name: x\nstats:\n  A: {}\n");
    assert_eq!((d.line, d.col), (2, 1));
    assert_eq!(d.message, "unknown key `stats` at the top level of a bot");
    assert_eq!(hint(&d), "did you mean `states`?");
    let d = one_error("states:\n  A:\n    qq: hi\n");
    assert_eq!((d.line, d.col), (3, 5));
    assert_eq!(hint(&d), "did you mean `q`?");
    let d = one_error("states:\n  A:\n    do:\n      - anser: hi\n");
    assert!(hint(&d).starts_with("did you mean `a`?"), "{d}");
}

#[test]
fn sections_of_later_versions_are_reported_as_unsupported() {
    let d = one_error("service:\n  callbackUrl: http://x\n");
    assert_eq!(d.message, "`service:` is not supported by this version yet");
    let d = one_error("flows: {}\n");
    assert_eq!(d.message, "`flows:` is not supported by this version yet");
}

#[test]
fn a_reserved_event_in_a_create_pushback_literal_is_reported_at_the_call_line() {
    let text = "states:\n  A:\n    script: |\n      var x = 1;\n      $pushgate.createPushback(a, b, c,\n        'noMatch', {});\n";
    let d = one_error(text);
    assert_eq!((d.line, d.col), (5, 17));
    assert_eq!(
        d.message,
        "`noMatch` is a reserved event name and cannot be used for a pushback"
    );
    assert!(hint(&d).contains("`scriptError`"));
    let d = one_error("states:\n  A:\n    script: \"createPushback(a, b, c, '')\"\n");
    assert_eq!(d.line, 3);
    assert!(d.message.contains("empty"));
    ok("states:\n  A:\n    script: createPushback(a, b, c, 'paid', {})\n");
}

#[test]
fn a_near_miss_system_event_is_reported() {
    let d = one_error("states:\n  A:\n    event!: nomatch\n");
    assert_eq!((d.line, d.col), (3, 13));
    assert_eq!(d.message, "`nomatch` is not a system event");
    assert!(hint(&d).starts_with("did you mean `noMatch`?"));
    let d = one_error("states:\n  A:\n    event: \"\"\n");
    assert!(d.message.contains("must not be empty"));
}

#[test]
fn an_unset_env_var_is_reported_at_its_line() {
    let d = one_error("name: x\ntoken: ${BOT_TOKEN}\n");
    assert_eq!((d.line, d.col), (2, 8));
    assert!(d.message.contains("`BOT_TOKEN`"));
    assert!(hint(&d).contains("${BOT_TOKEN:-default}"));
    let env = |k: &str| (k == "BOT_TOKEN").then(|| "s3cret".to_string());
    let bot = parse_bot("b", Path::new("bot.yaml"), "token: ${BOT_TOKEN}\n", &env);
    assert_eq!(
        bot.map(|b| b.token).ok().flatten().as_deref(),
        Some("s3cret")
    );
}

#[test]
fn an_unclosed_template_hole_is_reported() {
    let d = one_error("states:\n  A:\n    a: \"Hi {{ $session.name \"\n");
    assert_eq!((d.line, d.col), (3, 12));
    assert_eq!(d.message, "`{{` is not closed");
    assert!(hint(&d).contains("}}"));
}

#[test]
fn a_yaml_syntax_error_is_reported_with_its_location() {
    let d = one_error("name: x\nstates:\n  A:\n    a: [unclosed\n  B: {}\n");
    assert!(d.message.starts_with("YAML syntax error"), "{d}");
    assert!(d.line >= 4, "{d}");
    let d = one_error("name: x\nname: y\n");
    assert_eq!(d.line, 2);
    assert!(d.message.contains("duplicate key `name`"));
}

#[test]
fn several_problems_of_one_file_are_all_reported_in_line_order() {
    let d = load("nme: x\nstates:\n  A:\n    q: {}\n    go: Nope\n    intent: X\n")
        .expect_err("should fail");
    let lines: Vec<usize> = d.iter().map(|d| d.line).collect();
    assert_eq!(lines, [1, 4, 5, 6]);
}

#[test]
fn reactions_follow_the_order_of_their_keys() {
    let bot = ok(
        "states:\n  A:\n    go: B\n    do:\n      - a: one\n      - script: x()\n    a: two\n    buttons: [\"Yes\", {id: n, text: \"No\"}]\n  B: {}\n",
    );
    let kinds: Vec<&str> = bot.states[0]
        .reactions
        .iter()
        .map(|r| match r {
            Reaction::Go(_) => "go",
            Reaction::Answer(_) => "a",
            Reaction::Script(_) => "script",
            Reaction::Buttons(_) => "buttons",
            Reaction::If { .. } => "if",
        })
        .collect();
    assert_eq!(kinds, ["go", "a", "script", "a", "buttons"]);
    let Reaction::Buttons(b) = &bot.states[0].reactions[4] else {
        panic!()
    };
    assert_eq!(b[0].id, None);
    assert_eq!(b[1].id.as_deref(), Some("n"));
    assert_eq!(b[1].text.as_literal().as_deref(), Some("No"));
}

#[test]
fn an_if_without_then_and_a_two_key_item_are_reported() {
    let d = one_error("states:\n  A:\n    do:\n      - if: x > 1\n");
    assert!(d.message.contains("`then:`"));
    let d = one_error("states:\n  A:\n    do:\n      - a: x\n        go: A\n");
    assert_eq!(d.line, 4);
    assert!(d.message.contains("exactly one key"));
}

#[test]
fn injector_scalars_get_json_types_unless_quoted() {
    let bot =
        ok("injector:\n  n: 42\n  f: 1.5\n  b: true\n  s: \"true\"\n  z: 007\n  e:\n  l: [1, x]\n");
    let expected = serde_json::json!({"n": 42, "f": 1.5, "b": true, "s": "true", "z": "007", "e": null, "l": [1, "x"]});
    assert_eq!(bot.injector, expected);
}

#[test]
fn a_script_file_is_read_relative_to_the_bot_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let js = "// notify\n\ncreatePushback(a, b, c, \"start\");\n";
    std::fs::write(dir.path().join("hook.js"), js).expect("write");
    let file = dir.path().join("bot.yaml");
    let text = "states:\n  A:\n    script: {file: hook.js}\n";
    let d = parse_bot("b", &file, text, &no_env).expect_err("start is reserved");
    assert_eq!(d[0].file, dir.path().join("hook.js"));
    assert_eq!((d[0].line, d[0].col), (3, 1));
    let text = "states:\n  A:\n    script: {file: ../x.js}\n  B:\n    script: {file: missing.js}\n";
    let d = parse_bot("b", &file, text, &no_env).expect_err("bad files");
    assert_eq!(d.len(), 2);
    assert!(d[0].message.contains("inside the bot directory"));
    assert!(d[1].message.contains("cannot read script file"));
}

#[test]
fn unknown_channels_are_reported() {
    let d = one_error("channels:\n  telegramm: {}\n");
    assert_eq!(hint(&d), "did you mean `telegram`?");
    let bot = ok("channels:\n  webhook:\n  telegram: {token: abc}\n");
    assert_eq!(bot.channels["webhook"], serde_json::json!({}));
    assert_eq!(bot.channels["telegram"]["token"], "abc");
}

#[test]
fn odd_documents_give_diagnostics_and_never_panic() {
    let docs = [
        "- a\n",
        "a\n",
        "&x a: 1\n",
        "a: *x\n",
        "x: &a 1\ny: *a\n",
        "!!str a: b\n",
        "{\n",
        "\ta: 1\n",
        "states: [1, 2]\n",
        "states:\n  A: [1]\n",
        "? [a]\n: b\n",
        "states:\n  A:\n    do: {a: 1}\n",
        "states:\n  /A: {}\n",
        "states:\n  A:\n    buttons: [[1]]\n",
        "intents: {X: []}\n",
        "states:\n  A:\n    script:\n",
        "states:\n  A:\n    a: \"{{}}\"\n",
        "token: [1]\n",
        "states:\n  A:\n    q: \"/(/\"\n",
        "states:\n  A:\n    noContext: yes\n",
    ];
    for doc in docs {
        let d = load(doc).expect_err(doc);
        for d in &d {
            assert!(d.line >= 1, "{doc:?}: {d}");
            eprintln!("{doc:?}\n  {d}");
        }
    }
    assert!(load("").is_ok());
    assert!(load("# only a comment\n").is_ok());
}
