//! The trigger matcher: which state a user text or an event leads to, given the dialog's current
//! state.
//!
//! Local triggers (without `!`) are active only while the current state is the parent of their
//! state (for top-level states: while there is no current state); global ones (`!`) always. A
//! matching local trigger always wins over a global one. Among text matches the highest score
//! wins, ties going to the first in file order:
//!
//! | trigger | score |
//! | --- | --- |
//! | exact phrase | 1.0 |
//! | `*` wildcard or `/regex/` | 0.95 |
//! | intent | 0.9 × the best phrase similarity, counted when the similarity is at least 0.75 |
//!
//! An intent phrase's similarity is the larger of the normalized Levenshtein similarity and 0.85
//! when every word of the phrase occurs in the input and the input has at most twice as many
//! words. Event triggers never match text; events match by exact (case-sensitive) name.

use crate::bot::model::{BotDef, Intent, State, StateId, Trigger, TriggerKind};
use crate::text::{normalize, words};

const EXACT: f64 = 1.0;
const PATTERN: f64 = 0.95;
const INTENT_SCALE: f64 = 0.9;
const INTENT_MIN: f64 = 0.75;
const ALL_WORDS: f64 = 0.85;

/// The state a user text leads to, or `None` (the engine then raises `noMatch`).
pub fn match_text(bot: &BotDef, current: Option<StateId>, text: &str) -> Option<StateId> {
    let normalized = normalize(text);
    let score = |t: &Trigger| text_score(bot, t, text, &normalized);
    best(bot, current, false, &score).or_else(|| best(bot, current, true, &score))
}

/// The state that handles an event by this exact name, or `None`.
pub fn match_event(bot: &BotDef, current: Option<StateId>, event: &str) -> Option<StateId> {
    let score = |t: &Trigger| match &t.kind {
        TriggerKind::Event(name) if name == event => Some(1.0),
        _ => None,
    };
    best(bot, current, false, &score).or_else(|| best(bot, current, true, &score))
}

/// Whether a state's triggers of the given kind (`global` or local) are candidates now.
fn active(state: &State, current: Option<StateId>, global: bool) -> bool {
    global || state.parent == current
}

/// The highest-scoring candidate among local (`global == false`) or global triggers; the first in
/// file order on ties.
fn best(
    bot: &BotDef,
    current: Option<StateId>,
    global: bool,
    score: &dyn Fn(&Trigger) -> Option<f64>,
) -> Option<StateId> {
    let mut winner: Option<(f64, StateId)> = None;
    for state in bot.states.iter().filter(|s| active(s, current, global)) {
        for t in state.triggers.iter().filter(|t| t.global == global) {
            if let Some(s) = score(t)
                && winner.is_none_or(|(w, _)| s > w)
            {
                winner = Some((s, state.id));
            }
        }
    }
    winner.map(|(_, id)| id)
}

fn text_score(bot: &BotDef, t: &Trigger, raw: &str, normalized: &str) -> Option<f64> {
    match &t.kind {
        TriggerKind::Phrase(p) => {
            let s = if matches!(p, crate::bot::model::Pattern::Exact(_)) {
                EXACT
            } else {
                PATTERN
            };
            p.matches(raw, normalized).then_some(s)
        }
        TriggerKind::Intent(i) => bot
            .intents
            .get(*i)
            .and_then(|i| intent_score(i, normalized)),
        TriggerKind::Event(_) => None,
    }
}

/// The scaled score of an intent for a normalized input, if it is similar enough.
pub fn intent_score(intent: &Intent, normalized: &str) -> Option<f64> {
    let input: Vec<&str> = words(normalized).collect();
    let mut best = 0.0f64;
    for phrase in &intent.phrases {
        let mut s = strsim::normalized_levenshtein(normalized, phrase);
        let pw: Vec<&str> = words(phrase).collect();
        if !pw.is_empty() && input.len() <= 2 * pw.len() && pw.iter().all(|w| input.contains(w)) {
            s = s.max(ALL_WORDS);
        }
        best = best.max(s);
    }
    (best >= INTENT_MIN).then_some(best * INTENT_SCALE)
}

#[cfg(test)]
#[path = "matching_tests.rs"]
mod tests;
