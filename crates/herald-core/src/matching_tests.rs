//! Matcher tests: the newsletter examples of the brief, scoring and locality rules, and `go`
//! resolution.

use super::*;
use crate::bot::resolve_state;
use crate::bot::tests::{newsletter, ok};

fn path(bot: &BotDef, id: Option<StateId>) -> Option<&str> {
    id.map(|id| bot.state(id).path.as_str())
}

fn text(bot: &BotDef, current: Option<&str>, input: &str) -> Option<String> {
    let current = current.map(|p| bot.state_by_path(p).expect("known state"));
    path(bot, match_text(bot, current, input)).map(str::to_string)
}

#[test]
fn greetings_lead_to_start_from_anywhere() {
    let bot = newsletter();
    assert_eq!(text(&bot, None, "hi").as_deref(), Some("/Start"));
    assert_eq!(text(&bot, None, "Hello!").as_deref(), Some("/Start"));
    assert_eq!(text(&bot, None, "/start").as_deref(), Some("/Start"));
    assert_eq!(
        text(&bot, Some("/SubscribeOffer"), "hi").as_deref(),
        Some("/Start")
    );
}

#[test]
fn agreeing_in_the_offer_leads_to_subscribe() {
    let bot = newsletter();
    for input in ["Yes", "yes please", "sure", "Of course!"] {
        assert_eq!(
            text(&bot, Some("/SubscribeOffer"), input).as_deref(),
            Some("/SubscribeOffer/Subscribe"),
            "{input}"
        );
    }
    assert_eq!(
        text(&bot, Some("/SubscribeOffer"), "No").as_deref(),
        Some("/SubscribeOffer/Decline")
    );
}

#[test]
fn a_local_trigger_is_inactive_outside_its_parent_so_no_match_follows() {
    let bot = newsletter();
    assert_eq!(text(&bot, None, "no"), None);
    assert_eq!(text(&bot, None, "yes"), None);
    assert_eq!(
        path(&bot, match_event(&bot, None, "noMatch")),
        Some("/NoMatch")
    );
}

#[test]
fn a_global_intent_matches_from_the_top_level() {
    let bot = newsletter();
    assert_eq!(
        text(&bot, None, "subscribe me").as_deref(),
        Some("/SubscribeOffer/Subscribe")
    );
}

#[test]
fn events_match_by_exact_name_from_any_state() {
    let bot = newsletter();
    for current in [None, bot.state_by_path("/SubscribeOffer/Decline")] {
        let hit = match_event(&bot, current, "newNotification");
        assert_eq!(path(&bot, hit), Some("/NewNotification"));
    }
    assert_eq!(match_event(&bot, None, "newnotification"), None);
    assert_eq!(match_text(&bot, None, "newNotification"), None);
}

#[test]
fn a_local_match_beats_a_better_global_one() {
    let bot =
        ok("states:\n  G:\n    q!: help\n  P:\n    states:\n      L:\n        q: \"help *\"\n");
    assert_eq!(text(&bot, Some("/P"), "help me").as_deref(), Some("/P/L"));
    assert_eq!(text(&bot, Some("/P"), "help").as_deref(), Some("/P/L"));
    assert_eq!(text(&bot, None, "help").as_deref(), Some("/G"));
}

#[test]
fn the_best_score_wins_and_ties_go_to_file_order() {
    let bot =
        ok("states:\n  W:\n    q: \"* pizza\"\n  E:\n    q: \"a pizza\"\n  R:\n    q: /pizza/\n");
    assert_eq!(text(&bot, None, "A pizza").as_deref(), Some("/E"));
    assert_eq!(text(&bot, None, "big pizza").as_deref(), Some("/W"));
    assert_eq!(text(&bot, None, "pizzas").as_deref(), Some("/R"));
}

#[test]
fn intents_are_fuzzy_but_not_too_fuzzy() {
    let bot = ok("intents:\n  Agree: [\"i agree\"]\nstates:\n  A:\n    intent: Agree\n");
    assert_eq!(text(&bot, None, "I agre").as_deref(), Some("/A"));
    assert_eq!(text(&bot, None, "yes i agree").as_deref(), Some("/A"));
    assert_eq!(
        text(&bot, None, "i do not agree with anything").as_deref(),
        None
    );
    assert_eq!(text(&bot, None, "potato"), None);
}

#[test]
fn go_targets_resolve_children_then_siblings_then_ancestors() {
    let bot = ok(concat!(
        "states:\n",
        "  X: {}\n",
        "  A:\n",
        "    states:\n",
        "      X: {}\n",
        "      B:\n",
        "        states:\n",
        "          X: {}\n",
        "          C: {}\n",
        "      Only: {}\n",
        "  Twin:\n    states: {Dup: {}}\n",
        "  Twin2:\n    states: {Dup: {}}\n",
    ));
    let id = |p: &str| bot.state_by_path(p);
    let r = |from: Option<&str>, t: &str| path(&bot, resolve_state(&bot, from.and_then(id), t));
    assert_eq!(r(Some("/A/B"), "X"), Some("/A/B/X"));
    assert_eq!(r(Some("/A/B/C"), "X"), Some("/A/B/X"));
    assert_eq!(r(Some("/A"), "X"), Some("/A/X"));
    assert_eq!(r(Some("/X"), "X"), Some("/X"));
    assert_eq!(r(None, "X"), Some("/X"));
    assert_eq!(r(Some("/A/B/C"), "/X"), Some("/X"));
    assert_eq!(r(Some("/A/B/C"), "B/C"), Some("/A/B/C"));
    assert_eq!(r(Some("/A/B"), "../Only"), Some("/A/Only"));
    assert_eq!(r(Some("/A/B/C"), ".."), Some("/A/B"));
    assert_eq!(r(Some("/X"), "Only"), Some("/A/Only"));
    assert_eq!(r(None, "Dup"), None);
    assert_eq!(r(Some("/Twin"), "Dup"), Some("/Twin/Dup"));
    assert_eq!(r(None, "Nope"), None);
    assert_eq!(r(None, "/A/Nope"), None);
    assert_eq!(r(None, ""), None);
}
