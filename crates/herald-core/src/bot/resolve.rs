//! The second pass: state references (`go:`, the `state:` of `scripts:` and `broadcasts:` entries,
//! and `$reactions.transition()`) and the checks that need the whole bot (reserved event names in
//! `createPushback` calls). Job `state:` targets are resolved from the top level.
//!
//! A target starting with `/` is an absolute path. Otherwise it is a relative path (`Child`,
//! `Child/Grandchild`, `../Other`) tried against the children of the owning state, then of its
//! parent, and so on up to the top-level states; the first hit wins. A bare name that none of
//! those find designates the unique state of that name anywhere in the bot.

use super::hints;
use super::jobs::{RawBroadcastAction, StateRef};
use super::js;
use super::model::{
    BotDef, Broadcast, BroadcastAction, JobScript, Origin, RESERVED_EVENTS, Reaction, StateId,
    is_reserved_event,
};
use super::parse::Builder;
use super::reactions::RawReaction;
use crate::diag::Diagnostic;

/// Resolve a state reference as `go:` and `$reactions.transition()` do.
///
/// `from` is the state that owns the reaction (or the dialog's current state at runtime);
/// `None` starts at the top level.
pub fn resolve_state(bot: &BotDef, from: Option<StateId>, target: &str) -> Option<StateId> {
    let target = target.trim();
    if target.is_empty() {
        return None;
    }
    if let Some(abs) = target.strip_prefix('/') {
        return walk(bot, None, abs);
    }
    let mut base = from;
    loop {
        if let Some(hit) = walk(bot, base, target) {
            return Some(hit);
        }
        match base {
            Some(b) => base = bot.states.get(b.0)?.parent,
            None => break,
        }
    }
    if target.contains('/') {
        return None;
    }
    let mut named = bot.states.iter().filter(|s| s.name == target);
    match (named.next(), named.next()) {
        (Some(only), None) => Some(only.id),
        _ => None,
    }
}

/// Follows `path` step by step from the children of `base` (top-level states for `None`).
/// Returns the state reached; a path of only `.`/`..` steps that ends on the top level is `None`.
fn walk(bot: &BotDef, base: Option<StateId>, path: &str) -> Option<StateId> {
    let mut at = base;
    let mut stepped = false;
    for step in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
        at = if step == ".." {
            bot.states.get(at?.0)?.parent
        } else {
            let children = match at {
                Some(s) => &bot.states.get(s.0)?.children,
                None => &bot.roots,
            };
            Some(*children.iter().find(|c| bot.state(**c).name == step)?)
        };
        stepped = true;
    }
    if stepped { at } else { None }
}

impl Builder<'_> {
    /// Resolves `go:` and job `state:` targets, checks pushback event names, and assembles the
    /// [`BotDef`].
    pub(crate) fn finish(mut self, mut def: BotDef) -> Result<BotDef, Vec<Diagnostic>> {
        def.intents = std::mem::take(&mut self.intents);
        def.states = std::mem::take(&mut self.states);
        def.roots = std::mem::take(&mut self.roots);
        let raw = std::mem::take(&mut self.raw);
        let mut resolved = Vec::with_capacity(raw.len());
        for (i, list) in raw.into_iter().enumerate() {
            resolved.push(self.resolve_list(&def, StateId(i), list));
        }
        for (state, reactions) in def.states.iter_mut().zip(resolved) {
            state.reactions = reactions;
        }
        self.resolve_jobs(&mut def);
        self.check_pushbacks();
        def.code = std::mem::take(&mut self.code);
        if self.cx.diags.is_empty() {
            Ok(def)
        } else {
            Err(self.cx.diags)
        }
    }

    fn resolve_list(
        &mut self,
        def: &BotDef,
        owner: StateId,
        list: Vec<RawReaction>,
    ) -> Vec<Reaction> {
        let mut out = Vec::with_capacity(list.len());
        for r in list {
            out.push(match r {
                RawReaction::Answer(t) => Reaction::Answer(t),
                RawReaction::Buttons(b) => Reaction::Buttons(b),
                RawReaction::Script(c) => Reaction::Script(c),
                RawReaction::If {
                    cond,
                    then,
                    otherwise,
                } => Reaction::If {
                    cond,
                    then: self.resolve_list(def, owner, then),
                    otherwise: self.resolve_list(def, owner, otherwise),
                },
                RawReaction::Go { target, origin } => {
                    match resolve_state(def, Some(owner), &target) {
                        Some(id) => Reaction::Go(id),
                        None => {
                            let d = unknown_state(def, &target, &origin, "`go`");
                            self.cx.diags.push(d);
                            continue;
                        }
                    }
                }
            });
        }
        out
    }

    /// Moves the jobs into `def`, resolving their `state:` targets from the top level.
    fn resolve_jobs(&mut self, def: &mut BotDef) {
        let jobs = std::mem::take(&mut self.jobs);
        for s in jobs.scripts {
            let what = format!("script `{}`", s.code);
            if let Some(state) = self.job_state(def, &s.state, &what) {
                def.scripts.push(JobScript {
                    id: s.id,
                    code: s.code,
                    state,
                    origin: s.origin,
                });
            }
        }
        def.triggers = jobs.triggers;
        for b in jobs.broadcasts {
            let action = match b.action {
                RawBroadcastAction::Message { text, buttons } => {
                    BroadcastAction::Message { text, buttons }
                }
                RawBroadcastAction::State(r) => {
                    let what = format!("broadcast `{}`", b.code);
                    match self.job_state(def, &r, &what) {
                        Some(id) => BroadcastAction::State(id),
                        None => continue,
                    }
                }
            };
            def.broadcasts.push(Broadcast {
                id: b.id,
                code: b.code,
                tags: b.tags,
                action,
                origin: b.origin,
            });
        }
    }

    fn job_state(&mut self, def: &BotDef, r: &StateRef, what: &str) -> Option<StateId> {
        let found = resolve_state(def, None, &r.target);
        if found.is_none() {
            let d = unknown_state(def, &r.target, &r.origin, &format!("`state` of {what}"));
            self.cx.diags.push(d);
        }
        found
    }

    fn check_pushbacks(&mut self) {
        let reserved = hints::list(RESERVED_EVENTS.iter().copied());
        for code in &self.code {
            for call in js::pushback_calls(&code.source) {
                let message = if call.event.trim().is_empty() {
                    "an empty event name cannot be used for a pushback".to_string()
                } else if is_reserved_event(&call.event) {
                    format!(
                        "`{}` is a reserved event name and cannot be used for a pushback",
                        call.event
                    )
                } else {
                    continue;
                };
                let col = code.origin.col + call.col;
                self.cx.diags.push(
                    Diagnostic::new(
                        &code.origin.file,
                        code.origin.line + call.line,
                        col,
                        message,
                    )
                    .with_hint(format!(
                        "system events ({reserved}) are raised by Herald itself; \
                             pick another name such as `newNotification`"
                    )),
                );
            }
        }
    }
}

/// "unknown state `X` in {place}", with the closest state name or the top-level states as hint.
fn unknown_state(def: &BotDef, target: &str, origin: &Origin, place: &str) -> Diagnostic {
    let last = target.rsplit('/').next().unwrap_or(target);
    let names = def.states.iter().map(|s| s.name.as_str());
    let paths = def.states.iter().map(|s| s.path.as_str());
    let guess = if target.contains('/') {
        hints::closest(target, paths).or_else(|| hints::closest(last, names))
    } else {
        hints::closest(target, names)
    };
    let hint = match guess {
        Some(g) => format!("did you mean `{g}`?"),
        None if def.roots.is_empty() => "this bot has no states yet".to_string(),
        None => format!(
            "top-level states: {}",
            hints::list(def.roots.iter().map(|r| def.state(*r).path.as_str()))
        ),
    };
    Diagnostic::new(
        &origin.file,
        origin.line,
        origin.col,
        format!("unknown state `{target}` in {place}"),
    )
    .with_hint(hint)
}
