//! One turn of a bot: pick the state an event lands in, run its reactions (templates, buttons,
//! scripts, conditions, transitions) and collect the replies and the new dialog state. This is
//! the bot runtime; everything it touches outside the sandbox arrives through the host.

use herald_core::bot::model::{BotDef, Button, CodeId, Reaction, StateId, Template};
use herald_core::{match_event, match_text, resolve_state};
use herald_script::{ScriptError, ScriptReaction, Turn};
use herald_store::{ButtonOut, EventPayload};

/// Transitions one event may make before the turn is stopped as a loop.
const MAX_TRANSITIONS: usize = 16;

#[derive(Debug, Default)]
pub struct Reply {
    pub text: String,
    pub buttons: Vec<ButtonOut>,
}

/// How a turn ended.
pub struct TurnOutcome {
    pub state: Option<StateId>,
    pub replies: Vec<Reply>,
    pub error: Option<ScriptError>,
    /// The state that handled the event (for logs).
    pub handled_by: Option<StateId>,
}

/// Where an event lands: a state, or nowhere.
pub fn target_state(
    bot: &BotDef,
    current: Option<StateId>,
    payload: &EventPayload,
) -> Option<StateId> {
    match payload {
        EventPayload::Text { text } => {
            match_text(bot, current, text).or_else(|| match_event(bot, current, "noMatch"))
        }
        EventPayload::Button { id, text } => match_text(bot, current, text)
            .or_else(|| match_text(bot, current, id))
            .or_else(|| match_event(bot, current, "noMatch")),
        EventPayload::Event { name, .. } => match_event(bot, current, name),
        EventPayload::Job { .. } => None,
    }
}

/// Where a turn starts.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    /// Enter a state (a matched trigger, a script job, a broadcast's `state:`).
    State(StateId),
    /// Run a snippet in the current state (a trigger job).
    Code(CodeId),
    /// Send a message (a broadcast's `a:` and `buttons:`).
    Message(&'a Template, &'a [Button]),
}

enum Flow {
    Continue,
    Go(StateId),
}

/// Runs the turn: start at `entry`, follow `go`s, stop at the first script error.
pub fn run(
    bot: &BotDef,
    current: Option<StateId>,
    entry: Entry<'_>,
    js: &mut Turn<'_>,
) -> TurnOutcome {
    let mut out = TurnOutcome {
        state: current,
        replies: Vec::new(),
        error: None,
        handled_by: current,
    };
    let inline = match entry {
        Entry::State(s) => {
            out.handled_by = Some(s);
            None
        }
        Entry::Code(code) => Some(vec![Reaction::Script(code)]),
        Entry::Message(text, buttons) => Some(vec![
            Reaction::Answer(text.clone()),
            Reaction::Buttons(buttons.to_vec()),
        ]),
    };
    let mut next = match (entry, inline) {
        (Entry::State(s), _) => s,
        (_, Some(reactions)) => match exec(bot, current, &reactions, js, &mut out.replies) {
            Ok(Flow::Continue) => return out,
            Ok(Flow::Go(to)) => to,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        },
        (_, None) => return out,
    };
    for _ in 0..MAX_TRANSITIONS {
        let state = bot.state(next);
        if !state.no_context {
            out.state = Some(next);
        }
        match exec(bot, Some(next), &state.reactions, js, &mut out.replies) {
            Ok(Flow::Continue) => return out,
            Ok(Flow::Go(to)) => next = to,
            Err(e) => {
                out.error = Some(e);
                out.handled_by = Some(next);
                return out;
            }
        }
    }
    out.error = Some(ScriptError {
        kind: herald_script::ErrorKind::Exception,
        message: format!("more than {MAX_TRANSITIONS} transitions in one turn (a `go` loop?)"),
    });
    out
}

/// The cap of `limits` that a turn's replies (from scripts and templates alike) exceed.
pub fn over_limits(replies: &[Reply], limits: &herald_script::Limits) -> Option<ScriptError> {
    let limit = |message: String| {
        Some(ScriptError {
            kind: herald_script::ErrorKind::Limit,
            message,
        })
    };
    if replies.len() > limits.max_replies {
        return limit(format!(
            "{} replies in one turn; at most {} are sent (script_max_replies)",
            replies.len(),
            limits.max_replies
        ));
    }
    let bytes: usize = replies
        .iter()
        .map(|r| {
            r.text.len()
                + r.buttons
                    .iter()
                    .map(|b| b.id.len() + b.text.len())
                    .sum::<usize>()
        })
        .sum();
    if bytes > limits.max_reply_bytes {
        return limit(format!(
            "the turn's replies are {bytes} bytes; at most {} are sent (script_max_reply_bytes)",
            limits.max_reply_bytes
        ));
    }
    None
}

fn attach_buttons(replies: &mut Vec<Reply>, buttons: Vec<ButtonOut>) {
    match replies.last_mut() {
        Some(last) if last.buttons.is_empty() => last.buttons = buttons,
        _ => replies.push(Reply {
            text: String::new(),
            buttons,
        }),
    }
}

fn exec(
    bot: &BotDef,
    owner: Option<StateId>,
    reactions: &[Reaction],
    js: &mut Turn<'_>,
    replies: &mut Vec<Reply>,
) -> Result<Flow, ScriptError> {
    for r in reactions {
        match r {
            Reaction::Answer(t) => {
                let text = match t.as_literal() {
                    Some(text) => text,
                    None => js.render(t)?,
                };
                replies.push(Reply {
                    text,
                    buttons: Vec::new(),
                });
            }
            Reaction::Buttons(list) if list.is_empty() => {}
            Reaction::Buttons(list) => {
                let mut buttons = Vec::with_capacity(list.len());
                for b in list {
                    let text = match b.text.as_literal() {
                        Some(t) => t,
                        None => js.render(&b.text)?,
                    };
                    buttons.push(ButtonOut {
                        id: b.id.clone().unwrap_or_else(|| text.clone()),
                        text,
                    });
                }
                attach_buttons(replies, buttons);
            }
            Reaction::Script(code) => {
                let mut go = None;
                let (asked, failed) = js.run(*code);
                for sr in asked {
                    match sr {
                        ScriptReaction::Answer(text) => replies.push(Reply {
                            text,
                            buttons: Vec::new(),
                        }),
                        ScriptReaction::Buttons(list) => attach_buttons(
                            replies,
                            list.into_iter()
                                .map(|(id, text)| ButtonOut {
                                    id: id.unwrap_or_else(|| text.clone()),
                                    text,
                                })
                                .collect(),
                        ),
                        // A failed script's transition is not followed; its replies are kept.
                        ScriptReaction::Transition(_) if failed.is_some() => {}
                        ScriptReaction::Transition(target) => {
                            go = Some(resolve_state(bot, owner, &target).ok_or_else(|| {
                                ScriptError {
                                    kind: herald_script::ErrorKind::Exception,
                                    message: format!(
                                        "$reactions.transition: unknown state `{target}`"
                                    ),
                                }
                            })?);
                        }
                    }
                }
                if let Some(e) = failed {
                    return Err(e);
                }
                if let Some(to) = go {
                    return Ok(Flow::Go(to));
                }
            }
            Reaction::If {
                cond,
                then,
                otherwise,
            } => {
                let branch = if js.condition(*cond)? {
                    then
                } else {
                    otherwise
                };
                if let Flow::Go(to) = exec(bot, owner, branch, js, replies)? {
                    return Ok(Flow::Go(to));
                }
            }
            Reaction::Go(to) => return Ok(Flow::Go(*to)),
        }
    }
    Ok(Flow::Continue)
}
