//! One event's worth of script calls against one bot context: the per-turn globals, scripts,
//! conditions and templates, all against the turn's one budget, and what the turn leaves
//! behind (`$session`, `$client`, tags), each within its size cap.

use std::cell::RefCell;
use std::rc::Rc;

use herald_core::bot::model::{CodeId, Template};
use rquickjs::{Ctx, Object, Runtime};
use serde_json::Value;

use crate::budget::{Budget, HostSlot};
use crate::{
    BotJs, ErrorKind, Limits, ScriptError, ScriptReaction, TurnInput, TurnState, call_code,
    render_parts, text_of, truthy,
};

pub struct Turn<'a> {
    bot: &'a BotJs,
    budget: &'a Budget,
    out: &'a Rc<RefCell<Vec<ScriptReaction>>>,
    host: &'a HostSlot,
    rt: &'a Runtime,
    input: TurnInput<'a>,
    prepared: bool,
}

impl<'a> Turn<'a> {
    pub(crate) fn new(
        bot: &'a BotJs,
        budget: &'a Budget,
        out: &'a Rc<RefCell<Vec<ScriptReaction>>>,
        host: &'a HostSlot,
        rt: &'a Runtime,
        input: TurnInput<'a>,
    ) -> Self {
        Self {
            bot,
            budget,
            out,
            host,
            rt,
            input,
            prepared: false,
        }
    }

    pub fn limits(&self) -> Limits {
        self.budget.limits
    }

    fn prepare(&mut self) -> Result<(), ScriptError> {
        if self.prepared {
            return Ok(());
        }
        let input = &self.input;
        let reset = self.bot.reset.clone();
        let contact = self.bot.contact.clone();
        let no_lead = self.bot.no_lead.clone();
        self.bot
            .ctx
            .with(|ctx| -> rquickjs::Result<()> {
                // Globals another dialog's turn created must not be seen by this one.
                reset.restore(&ctx)?.call::<_, ()>(())?;
                let g = ctx.globals();
                g.set("$request", ctx.json_parse(input.request.to_string())?)?;
                g.set("$temp", Object::new(ctx.clone())?)?;
                if input.bot_level {
                    return no_lead.restore(&ctx)?.call::<_, ()>(());
                }
                g.set("$session", ctx.json_parse(input.session.to_string())?)?;
                g.set("$client", ctx.json_parse(input.client.to_string())?)?;
                let c = ctx.json_parse(input.contact.to_string())?;
                let c: rquickjs::Value = contact.restore(&ctx)?.call((c,))?;
                g.set("$contact", c)?;
                Ok(())
            })
            .map_err(|e| ScriptError {
                kind: ErrorKind::Exception,
                message: format!("cannot prepare the script globals: {e}"),
            })?;
        self.prepared = true;
        Ok(())
    }

    fn call<T>(
        &mut self,
        id: CodeId,
        f: impl for<'js> FnOnce(&Ctx<'js>, rquickjs::Value<'js>) -> rquickjs::Result<T>,
    ) -> Result<T, ScriptError> {
        self.prepare()?;
        call_code(self.bot, self.rt, self.budget, id, f)
    }

    /// Runs a `script:` body; returns what it asked of `$reactions`, in order.
    /// On an error, what the script asked for before it failed is still returned.
    pub fn run(&mut self, id: CodeId) -> (Vec<ScriptReaction>, Option<ScriptError>) {
        self.out.borrow_mut().clear();
        let r = self.call(id, |_, _| Ok(()));
        let reactions = std::mem::take(&mut *self.out.borrow_mut());
        (reactions, r.err())
    }

    /// Evaluates an `if:` condition with JavaScript truthiness.
    pub fn condition(&mut self, id: CodeId) -> Result<bool, ScriptError> {
        self.call(id, truthy)
    }

    /// Renders a template; `undefined`/`null` holes render as empty text, objects as JSON.
    pub fn render(&mut self, t: &Template) -> Result<String, ScriptError> {
        let render = self.bot.render.clone();
        render_parts(t, |id| self.call(id, text_of(&render)))
    }

    /// Ends the turn: reads back `$session`, `$client` and `$contact.tags`; any of them over
    /// `max_state_bytes` fails the turn (the stored values stay as they were).
    pub fn finish(self) -> Result<TurnState, ScriptError> {
        *self.host.borrow_mut() = None;
        if let Some(e) = self.budget.broken() {
            return Err(e);
        }
        if !self.prepared || self.input.bot_level {
            return Ok(TurnState {
                session: self.input.session.clone(),
                client: self.input.client.clone(),
                tags: tag_list(&self.input.contact["tags"]),
            });
        }
        let max = self.budget.limits.max_state_bytes;
        self.bot.ctx.with(|ctx| {
            let read = |e: rquickjs::Error| ScriptError {
                kind: ErrorKind::Exception,
                message: format!("cannot read $session/$client back: {e}"),
            };
            let g = ctx.globals();
            let session = to_json(&ctx, g.get("$session").map_err(read)?, "$session", max)?;
            let client = to_json(&ctx, g.get("$client").map_err(read)?, "$client", max)?;
            let contact: Object = g.get("$contact").map_err(read)?;
            let tags = contact.get("tags").map_err(read)?;
            let tags = tag_list(&to_json(&ctx, tags, "$contact.tags", max)?);
            Ok(TurnState {
                session,
                client,
                tags,
            })
        })
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.host.borrow_mut() = None;
        self.budget.end();
    }
}

/// A script value as JSON (`null` for what JSON cannot express), refused past `max` bytes.
fn to_json<'js>(
    ctx: &Ctx<'js>,
    v: rquickjs::Value<'js>,
    name: &str,
    max: usize,
) -> Result<Value, ScriptError> {
    let text = ctx
        .json_stringify(v)
        .and_then(|s| s.map(|s| s.to_string()).transpose())
        .map_err(|e| ScriptError {
            kind: ErrorKind::Exception,
            message: format!("{name} cannot be stored as JSON: {e}"),
        })?;
    if let Some(t) = &text
        && t.len() > max
    {
        return Err(ScriptError {
            kind: ErrorKind::Limit,
            message: format!(
                "{name} is {} bytes as JSON; at most {max} are stored (script_max_state_bytes)",
                t.len()
            ),
        });
    }
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null))
}

/// The non-empty string tags of a JSON list, trimmed and deduplicated, in order.
pub(crate) fn tag_list(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in list.as_array().into_iter().flatten() {
        if let Some(t) = t.as_str().map(str::trim).filter(|t| !t.is_empty())
            && !out.iter().any(|o| o == t)
        {
            out.push(t.to_owned());
        }
    }
    out
}
