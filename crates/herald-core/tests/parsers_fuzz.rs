//! The definition parsers against arbitrary and mangled input: `bot.yaml` and workflow files
//! either parse or come back with diagnostics; they never panic.

use std::path::Path;

use proptest::prelude::*;

const NEWSLETTER: &str = include_str!("../../../examples/newsletter/bots/newsletter/bot.yaml");
const REMINDERS: &str = include_str!("../../../examples/reminders/bots/reminders/bot.yaml");
const WORKFLOW: &str = "name: W\nsteps:\n  - type: in_app\n    body: \"{{ payload.x }}\"\n  - type: delay\n    amount: 5\n    unit: minutes\n  - type: digest\n    amount: 1\n    unit: hours\n";

fn parse_bot(text: &str) {
    let _ = herald_core::bot::parse_bot("b", Path::new("bot.yaml"), text, &|_| None);
}

fn parse_workflow(text: &str) {
    let _ =
        herald_core::workflow::parse_workflow("w", Path::new("w.yaml"), text, &|_| None, &|_| None);
}

/// `base` with `cut` bytes removed at `at` and `insert` put there (on char boundaries).
fn mangle(base: &str, at: usize, cut: usize, insert: &str) -> String {
    let mut at = at.min(base.len());
    while !base.is_char_boundary(at) {
        at -= 1;
    }
    let mut end = (at + cut).min(base.len());
    while !base.is_char_boundary(end) {
        end += 1;
    }
    format!("{}{insert}{}", &base[..at], &base[end..])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_text_never_panics_the_parsers(text in "(?s).{0,400}") {
        parse_bot(&text);
        parse_workflow(&text);
    }

    #[test]
    fn mangled_examples_never_panic_the_parsers(
        at in 0usize..4000,
        cut in 0usize..40,
        insert in r#"[ \n:\-\[\]{}"'|>*&!%@#a-z0-9$]{0,12}"#,
    ) {
        parse_bot(&mangle(NEWSLETTER, at, cut, &insert));
        parse_bot(&mangle(REMINDERS, at, cut, &insert));
        parse_workflow(&mangle(WORKFLOW, at % WORKFLOW.len(), cut, &insert));
    }
}
