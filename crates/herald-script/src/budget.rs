//! What one run of scripts may spend, and the native bridge that spends it.
//!
//! A [`Budget`] is started for every turn (and every job condition or workflow run): one
//! wall-clock deadline for the whole run — host calls included, so an `$http` call gets at most
//! what is left of it — and counts of replies, reply bytes, host calls and log lines. The first
//! limit a script crosses *breaks* the budget: the error sticks for the rest of the run, the
//! interrupt handler stops the script at its next check however it handles exceptions, and
//! every later host call throws again. So a script that catches its own errors cannot retry its
//! way past a limit.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::{Ctx, Exception, Function};
use serde_json::Value;

use crate::{ErrorKind, Host, Limits, NO_LEAD, ScriptError, ScriptReaction};

pub(crate) type HostSlot = Rc<RefCell<Option<Rc<dyn Host>>>>;

/// What each `$reactions` call counts against `max_reply_bytes` besides its text.
const REACTION_COST: usize = 32;

/// One run's allowances (see the module doc).
pub(crate) struct Budget {
    pub(crate) limits: Limits,
    deadline: Cell<Option<Instant>>,
    replies: Cell<usize>,
    reply_bytes: Cell<usize>,
    host_calls: Cell<usize>,
    log_lines: Cell<usize>,
    /// A bot-level run: `$reactions` throws.
    bot_level: Cell<bool>,
    /// The allocator refused a request during this run (so a bare exception is one of memory).
    pub(crate) refused: Cell<bool>,
    broken: RefCell<Option<ScriptError>>,
}

impl Budget {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            deadline: Cell::new(None),
            replies: Cell::new(0),
            reply_bytes: Cell::new(0),
            host_calls: Cell::new(0),
            log_lines: Cell::new(0),
            bot_level: Cell::new(false),
            refused: Cell::new(false),
            broken: RefCell::new(None),
        }
    }

    /// Starts a run: the whole run must end within the time limit from now.
    pub(crate) fn start(&self, bot_level: bool) {
        self.deadline.set(Some(Instant::now() + self.limits.time));
        self.replies.set(0);
        self.reply_bytes.set(0);
        self.host_calls.set(0);
        self.log_lines.set(0);
        self.bot_level.set(bot_level);
        self.refused.set(false);
        *self.broken.borrow_mut() = None;
    }

    /// Ends a run: nothing is timed until the next one starts.
    pub(crate) fn end(&self) {
        self.deadline.set(None);
        self.bot_level.set(false);
        *self.broken.borrow_mut() = None;
    }

    pub(crate) fn past_deadline(&self) -> bool {
        self.deadline.get().is_some_and(|t| Instant::now() >= t)
    }

    /// For the interrupt handler: stop the script now.
    pub(crate) fn exhausted(&self) -> bool {
        self.past_deadline() || self.broken.try_borrow().map_or(true, |b| b.is_some())
    }

    /// The error that broke the run, if one did.
    pub(crate) fn broken(&self) -> Option<ScriptError> {
        self.broken.borrow().clone()
    }

    /// Records `e` as what broke the run (the first one sticks) and returns the one that stuck.
    pub(crate) fn break_with(&self, e: ScriptError) -> ScriptError {
        self.broken.borrow_mut().get_or_insert(e).clone()
    }

    fn timeout() -> ScriptError {
        ScriptError {
            kind: ErrorKind::Timeout,
            message: "script exceeded its time budget".to_owned(),
        }
    }

    fn limit(message: String) -> ScriptError {
        ScriptError {
            kind: ErrorKind::Limit,
            message,
        }
    }

    /// Time left for a host call, counting the call.
    fn host_call(&self, op: &str) -> Result<Duration, ScriptError> {
        if let Some(e) = self.broken() {
            return Err(e);
        }
        let n = self.host_calls.get() + 1;
        self.host_calls.set(n);
        if n > self.limits.max_host_calls {
            return Err(self.break_with(Self::limit(format!(
                "{op}: more than {} host calls ($http, $pushgate, $jobs) in one run \
                 (script_max_host_calls)",
                self.limits.max_host_calls
            ))));
        }
        let left = self.deadline.get().map_or(self.limits.time, |t| {
            t.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            return Err(self.break_with(Self::timeout()));
        }
        Ok(left)
    }

    /// Counts a reaction: `count` replies and `bytes` of text. Every reaction also costs
    /// [`REACTION_COST`] bytes, so that even empty ones cannot pile up without bound.
    fn reply(&self, count: usize, bytes: usize) -> Result<(), ScriptError> {
        if let Some(e) = self.broken() {
            return Err(e);
        }
        self.replies.set(self.replies.get() + count);
        self.reply_bytes
            .set(self.reply_bytes.get() + bytes + REACTION_COST);
        let l = &self.limits;
        if self.replies.get() > l.max_replies {
            return Err(self.break_with(Self::limit(format!(
                "more than {} replies in one turn (script_max_replies)",
                l.max_replies
            ))));
        }
        if self.reply_bytes.get() > l.max_reply_bytes {
            return Err(self.break_with(Self::limit(format!(
                "the turn's replies exceed {} bytes (script_max_reply_bytes)",
                l.max_reply_bytes
            ))));
        }
        Ok(())
    }

    /// Whether another log line may be written; the first one refused is reported.
    fn log_line(&self, host: &dyn Host) -> bool {
        let n = self.log_lines.get() + 1;
        self.log_lines.set(n);
        if n == self.limits.max_log_lines + 1 {
            host.log(&format!(
                "(more than {} log lines in one run; the rest are dropped)",
                self.limits.max_log_lines
            ));
        }
        n <= self.limits.max_log_lines
    }
}

/// `__host(op, argsJson)`: the one native function; the prelude wraps it and removes it.
pub(crate) fn install_bridge(
    ctx: &Ctx<'_>,
    host: HostSlot,
    out: Rc<RefCell<Vec<ScriptReaction>>>,
    budget: Rc<Budget>,
) -> rquickjs::Result<()> {
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'_>, op: String, args: String| -> rquickjs::Result<Option<String>> {
            let throw = |m: String| Exception::throw_message(&ctx, &m);
            let args: Vec<Value> = serde_json::from_str(&args)
                .map_err(|e| Exception::throw_type(&ctx, &e.to_string()))?;
            let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
            let text = |i: usize| arg(i).as_str().map(str::to_owned).unwrap_or_default();
            match op.as_str() {
                "answer" | "buttons" | "transition" if budget.bot_level.get() => {
                    Err(throw(format!(
                        "{NO_LEAD}: $reactions is not available (there is no dialog to answer in)"
                    )))
                }
                "answer" => {
                    let t = text(0);
                    budget.reply(1, t.len()).map_err(|e| throw(e.message))?;
                    out.borrow_mut().push(ScriptReaction::Answer(t));
                    Ok(None)
                }
                "transition" => {
                    let t = text(0);
                    budget.reply(0, t.len()).map_err(|e| throw(e.message))?;
                    out.borrow_mut().push(ScriptReaction::Transition(t));
                    Ok(None)
                }
                "buttons" => {
                    let buttons = buttons(&arg(0));
                    let bytes = buttons
                        .iter()
                        .map(|(id, t)| t.len() + id.as_ref().map_or(0, String::len))
                        .sum();
                    budget.reply(0, bytes).map_err(|e| throw(e.message))?;
                    out.borrow_mut().push(ScriptReaction::Buttons(buttons));
                    Ok(None)
                }
                _ => {
                    let Some(h) = host.borrow().clone() else {
                        return Err(throw(format!("{op} is not available here")));
                    };
                    if op == "log" {
                        if budget.log_line(h.as_ref()) {
                            h.log(&text(0));
                        }
                        return Ok(None);
                    }
                    let left = budget.host_call(&op).map_err(|e| throw(e.message))?;
                    let r = match op.as_str() {
                        "http" => h
                            .http(&text(0), &text(1), &arg(2), left)
                            .map(|v| Some(v.to_string())),
                        "createPushback" => h.create_pushback(&args).map(|v| Some(v.to_string())),
                        "deletePushback" => {
                            h.delete_pushback(&text(0)).map(|b| Some(b.to_string()))
                        }
                        "scheduleJob" => h.schedule_job(&arg(0)).map(|v| Some(v.to_string())),
                        "cancelJob" => match arg(0).as_i64() {
                            Some(id) => h.cancel_job(id).map(|b| Some(b.to_string())),
                            None => Err("$jobs.cancel: the job id must be a number".to_owned()),
                        },
                        other => Err(format!("unknown host call {other}")),
                    };
                    r.map_err(throw)
                }
            }
        },
    )?;
    ctx.globals().set("__host", f)
}

/// `$reactions.buttons([...])`: captions, or `{id, text}` objects.
fn buttons(list: &Value) -> Vec<(Option<String>, String)> {
    list.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|b| match b {
            Value::String(s) => (None, s.clone()),
            Value::Object(o) => (
                o.get("id").map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                }),
                o.get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            other => (None, other.to_string()),
        })
        .collect()
}
