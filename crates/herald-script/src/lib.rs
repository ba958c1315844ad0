//! The JavaScript sandbox (QuickJS through rquickjs). One [`Sandbox`] lives on one worker thread:
//! one runtime with a memory cap and a wall-clock interrupt, one context per bot, and every
//! snippet of every bot compiled once into a function that is called per event.
//!
//! Scripts see only the documented globals (`$request`, `$session`, `$client`, `$temp`,
//! `$injector`, `$reactions`, `$pushgate`, `$http`, `log`). Host services go through the [`Host`]
//! trait, which the engine implements; a host call blocks the script, and its time does not count
//! against the script's budget.

mod check;
mod workflow;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use herald_core::bot::model::{BotDef, Code, CodeId, Template, TemplatePart};
use herald_core::diag::Diagnostic;
use rquickjs::{Context, Ctx, Exception, Function, Object, Persistent, Runtime};
use serde_json::Value;

pub use check::{SyntaxChecker, check_bot, check_code};
pub use workflow::WorkflowTurn;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub time: Duration,
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(1),
            memory_bytes: 32 << 20,
        }
    }
}

/// Services a script may call. Errors become JavaScript exceptions in the script.
pub trait Host {
    fn http(&self, method: &str, url: &str, opts: &Value) -> Result<Value, String>;
    fn create_pushback(&self, args: &[Value]) -> Result<Value, String>;
    fn delete_pushback(&self, id: &str) -> Result<bool, String>;
    /// `$jobs.schedule({...})`: the job as scheduled (`{id, status, run_at, ...}`).
    fn schedule_job(&self, args: &Value) -> Result<Value, String>;
    /// `$jobs.cancel(id)`: whether a pending job was cancelled.
    fn cancel_job(&self, id: i64) -> Result<bool, String>;
    fn log(&self, message: &str);
}

/// What a script asked for through `$reactions`.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptReaction {
    Answer(String),
    Buttons(Vec<(Option<String>, String)>),
    Transition(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Timeout,
    OutOfMemory,
    Exception,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ScriptError {
    pub kind: ErrorKind,
    pub message: String,
}

/// The per-event inputs a turn starts from.
pub struct TurnInput<'a> {
    pub request: &'a Value,
    pub session: &'a Value,
    pub client: &'a Value,
    /// `$contact`: `{id, tags, attributes}`.
    pub contact: &'a Value,
    /// A bot-level job run (a trigger scheduled without a lead): `$session`, `$client`,
    /// `$contact` and `$reactions` throw [`NO_LEAD`] instead of existing, and the turn leaves
    /// `session`, `client` and the tags as they came in.
    pub bot_level: bool,
}

/// What a bot-level run's scripts are told when they reach for a lead's globals.
pub const NO_LEAD: &str = "this trigger runs without a lead (no lead_id)";

/// What a turn leaves behind.
pub struct TurnState {
    pub session: Value,
    pub client: Value,
    /// `$contact.tags` after the turn.
    pub tags: Vec<String>,
}

type HostSlot = Rc<RefCell<Option<Rc<dyn Host>>>>;

// Field order is drop order: compiled functions, then their context, then (in `Sandbox`) the
// runtime. QuickJS aborts if a runtime is freed while values still live in it.
struct BotJs {
    code: Vec<Persistent<Function<'static>>>,
    /// The prelude's private helpers: template value → text, and leftover-global cleanup.
    render: Persistent<Function<'static>>,
    reset: Persistent<Function<'static>>,
    /// Builds `$contact` from `{id, tags, attributes}`.
    contact: Persistent<Function<'static>>,
    /// Replaces the lead's globals with ones that throw (a bot-level run).
    no_lead: Persistent<Function<'static>>,
    /// Job conditions compiled on first use, by source (bounded; see [`CONDITION_CACHE`]).
    conditions: RefCell<HashMap<String, Persistent<Function<'static>>>>,
    ctx: Context,
}

/// Compiled job conditions kept per bot; beyond this the cache starts over.
const CONDITION_CACHE: usize = 512;

pub struct Sandbox {
    bots: HashMap<String, BotJs>,
    /// Workflows' snippets, one context per workflow (see [`workflow`]).
    workflows: HashMap<String, BotJs>,
    limits: Limits,
    deadline: Rc<Cell<Option<Instant>>>,
    host: HostSlot,
    out: Rc<RefCell<Vec<ScriptReaction>>>,
    /// Set during a bot-level turn: `$reactions` calls throw.
    bot_level: Rc<Cell<bool>>,
    rt: Runtime,
}

impl Sandbox {
    pub fn new(limits: Limits) -> Result<Self, ScriptError> {
        let fail = |e: rquickjs::Error| ScriptError {
            kind: ErrorKind::Exception,
            message: format!("cannot start the JavaScript engine: {e}"),
        };
        let rt = Runtime::new().map_err(fail)?;
        rt.set_memory_limit(limits.memory_bytes);
        rt.set_max_stack_size(1 << 20);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let d = deadline.clone();
        rt.set_interrupt_handler(Some(Box::new(move || {
            d.get().is_some_and(|t| Instant::now() >= t)
        })));
        Ok(Self {
            rt,
            limits,
            bots: HashMap::new(),
            workflows: HashMap::new(),
            deadline,
            host: Rc::new(RefCell::new(None)),
            out: Rc::new(RefCell::new(Vec::new())),
            bot_level: Rc::new(Cell::new(false)),
        })
    }

    /// Compiles every snippet of `bot` (replacing an earlier version of it).
    pub fn load_bot(&mut self, bot: &BotDef) -> Result<(), Vec<Diagnostic>> {
        let js = self.compile_all(&bot.code, &bot.injector, &bot.file)?;
        self.bots.insert(bot.id.clone(), js);
        Ok(())
    }

    /// A context with the prelude and `injector`, and every snippet of `code` compiled in it.
    fn compile_all(
        &self,
        code: &[Code],
        injector: &Value,
        file: &Path,
    ) -> Result<BotJs, Vec<Diagnostic>> {
        let engine_err = |e: rquickjs::Error| {
            vec![Diagnostic::new(
                file,
                0,
                0,
                format!("JavaScript engine: {e}"),
            )]
        };
        let ctx = Context::full(&self.rt).map_err(engine_err)?;
        let bridge = Bridge {
            host: self.host.clone(),
            out: self.out.clone(),
            deadline: self.deadline.clone(),
            bot_level: self.bot_level.clone(),
        };
        let (code, [render, reset, contact, no_lead]) =
            ctx.with(|ctx| -> Result<_, Vec<Diagnostic>> {
                install_bridge(&ctx, bridge).map_err(engine_err)?;
                ctx.json_parse(injector.to_string())
                    .and_then(|v| ctx.globals().set("$injector", v))
                    .map_err(engine_err)?;
                let helpers: Object = ctx.eval(include_str!("prelude.js")).map_err(engine_err)?;
                let helper = |name: &str| {
                    helpers
                        .get::<_, Function>(name)
                        .map(|f| Persistent::save(&ctx, f))
                        .map_err(engine_err)
                };
                let helpers = [
                    helper("render")?,
                    helper("reset")?,
                    helper("contact")?,
                    helper("noLead")?,
                ];
                let mut compiled = Vec::with_capacity(code.len());
                let mut errors = Vec::new();
                for c in code {
                    match check::compile(&ctx, c) {
                        Ok(f) => compiled.push(Persistent::save(&ctx, f)),
                        Err(d) => errors.push(d),
                    }
                }
                if errors.is_empty() {
                    Ok((compiled, helpers))
                } else {
                    Err(errors)
                }
            })?;
        Ok(BotJs {
            code,
            render,
            reset,
            contact,
            no_lead,
            conditions: RefCell::new(HashMap::new()),
            ctx,
        })
    }

    /// Starts handling one event of `bot_id`. The per-turn globals are set on the first script
    /// call, so a turn that runs no JavaScript costs no JavaScript.
    pub fn turn<'s>(
        &'s mut self,
        bot_id: &str,
        input: TurnInput<'s>,
        host: Rc<dyn Host>,
    ) -> Result<Turn<'s>, ScriptError> {
        let bot = self.bots.get(bot_id).ok_or_else(|| ScriptError {
            kind: ErrorKind::Exception,
            message: format!("bot `{bot_id}` is not loaded"),
        })?;
        *self.host.borrow_mut() = Some(host);
        self.out.borrow_mut().clear();
        self.bot_level.set(input.bot_level);
        Ok(Turn {
            bot,
            limits: self.limits,
            deadline: &self.deadline,
            out: &self.out,
            host: &self.host,
            bot_level: &self.bot_level,
            rt: &self.rt,
            input,
            prepared: false,
        })
    }
}

/// One event's worth of script calls against one bot context.
pub struct Turn<'a> {
    bot: &'a BotJs,
    limits: Limits,
    deadline: &'a Rc<Cell<Option<Instant>>>,
    out: &'a Rc<RefCell<Vec<ScriptReaction>>>,
    host: &'a HostSlot,
    bot_level: &'a Cell<bool>,
    rt: &'a Runtime,
    input: TurnInput<'a>,
    prepared: bool,
}

impl Turn<'_> {
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
        call_code(self.bot, self.rt, self.deadline, self.limits.time, id, f)
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

    /// Ends the turn: reads back `$session`, `$client` and `$contact.tags`.
    pub fn finish(self) -> Result<TurnState, ScriptError> {
        *self.host.borrow_mut() = None;
        if !self.prepared || self.input.bot_level {
            return Ok(TurnState {
                session: self.input.session.clone(),
                client: self.input.client.clone(),
                tags: tag_list(&self.input.contact["tags"]),
            });
        }
        self.bot
            .ctx
            .with(|ctx| {
                let g = ctx.globals();
                let session = to_json(&ctx, g.get("$session")?)?;
                let client = to_json(&ctx, g.get("$client")?)?;
                let contact: Object = g.get("$contact")?;
                let tags = tag_list(&to_json(&ctx, contact.get("tags")?)?);
                Ok(TurnState {
                    session,
                    client,
                    tags,
                })
            })
            .map_err(|e: rquickjs::Error| ScriptError {
                kind: ErrorKind::Exception,
                message: format!("cannot read $session/$client back: {e}"),
            })
    }
}

/// Calls compiled snippet `id` of `js` within the time budget and hands its value to `f`.
fn call_code<T>(
    js: &BotJs,
    rt: &Runtime,
    deadline: &Cell<Option<Instant>>,
    limit: Duration,
    id: CodeId,
    f: impl for<'js> FnOnce(&Ctx<'js>, rquickjs::Value<'js>) -> rquickjs::Result<T>,
) -> Result<T, ScriptError> {
    let func = js.code.get(id.0).ok_or_else(|| ScriptError {
        kind: ErrorKind::Exception,
        message: format!("unknown snippet {}", id.0),
    })?;
    timed(&js.ctx, rt, deadline, limit, |ctx| {
        func.clone()
            .restore(ctx)
            .and_then(|func| func.call::<_, rquickjs::Value>(()))
            .and_then(|v| f(ctx, v))
    })
}

/// A value's JavaScript truthiness.
fn truthy<'js>(ctx: &Ctx<'js>, v: rquickjs::Value<'js>) -> rquickjs::Result<bool> {
    let f: Function = ctx.globals().get("Boolean")?;
    f.call((v,))
}

/// A value as template text, through the prelude's `render`.
fn text_of(
    render: &Persistent<Function<'static>>,
) -> impl for<'js> FnOnce(&Ctx<'js>, rquickjs::Value<'js>) -> rquickjs::Result<String> {
    let render = render.clone();
    move |ctx, v| render.restore(ctx)?.call((v,))
}

/// A template's text, with each hole's text from `eval`.
fn render_parts(
    t: &Template,
    mut eval: impl FnMut(CodeId) -> Result<String, ScriptError>,
) -> Result<String, ScriptError> {
    let mut s = String::new();
    for p in &t.parts {
        match p {
            TemplatePart::Text(text) => s.push_str(text),
            TemplatePart::Expr(id) => s.push_str(&eval(*id)?),
        }
    }
    Ok(s)
}

/// A script value as JSON (`null` for what JSON cannot express).
fn to_json<'js>(ctx: &Ctx<'js>, v: rquickjs::Value<'js>) -> rquickjs::Result<Value> {
    let text = ctx.json_stringify(v)?.map(|s| s.to_string()).transpose()?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null))
}

/// The non-empty string tags of a JSON list, trimmed and deduplicated, in order.
fn tag_list(list: &Value) -> Vec<String> {
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

impl Sandbox {
    /// Evaluates a job's `condition_script_code`: a function body that sees `leadId`,
    /// `ticketId`, `params` and `lead` (from `scope`). The job runs only if it returns `true`.
    /// Compiled once per bot and source.
    pub fn job_condition(
        &mut self,
        bot_id: &str,
        source: &str,
        scope: &Value,
    ) -> Result<bool, ScriptError> {
        let fail = |message: String| ScriptError {
            kind: ErrorKind::Exception,
            message,
        };
        let bot = self
            .bots
            .get(bot_id)
            .ok_or_else(|| fail(format!("bot `{bot_id}` is not loaded")))?;
        let cached = bot.conditions.borrow().get(source).cloned();
        let func = match cached {
            Some(f) => f,
            None => {
                let f = bot.ctx.with(|ctx| {
                    ctx.eval::<Function, _>(condition_wrapper(source))
                        .map(|f| Persistent::save(&ctx, f))
                        .map_err(|e| fail(check::exception_details(&ctx, e).0))
                })?;
                let mut cache = bot.conditions.borrow_mut();
                if cache.len() >= CONDITION_CACHE {
                    cache.clear();
                }
                cache.insert(source.to_owned(), f.clone());
                f
            }
        };
        timed(
            &bot.ctx,
            &self.rt,
            &self.deadline,
            self.limits.time,
            |ctx| {
                let scope: Object = ctx
                    .json_parse(scope.to_string())?
                    .into_object()
                    .ok_or(rquickjs::Error::Unknown)?;
                let args = (
                    scope.get::<_, rquickjs::Value>("leadId")?,
                    scope.get::<_, rquickjs::Value>("ticketId")?,
                    scope.get::<_, rquickjs::Value>("params")?,
                    scope.get::<_, rquickjs::Value>("lead")?,
                );
                let v = func
                    .clone()
                    .restore(ctx)?
                    .call::<_, rquickjs::Value>(args)?;
                Ok(v.as_bool() == Some(true))
            },
        )
    }
}

/// Runs `f` in `ctx` within the time budget `limit`: an exception, a timeout or an allocation
/// failure becomes a classified [`ScriptError`], and garbage is collected after a failure.
fn timed<T>(
    ctx: &Context,
    rt: &Runtime,
    deadline: &Cell<Option<Instant>>,
    limit: Duration,
    f: impl for<'js> FnOnce(&Ctx<'js>) -> rquickjs::Result<T>,
) -> Result<T, ScriptError> {
    deadline.set(Some(Instant::now() + limit));
    let result = ctx.with(|ctx| {
        f(&ctx).map_err(|e| {
            let timed_out = deadline.get().is_some_and(|t| Instant::now() >= t);
            let (message, _) = check::exception_details(&ctx, e);
            classify(message, timed_out)
        })
    });
    deadline.set(None);
    if result.is_err() {
        rt.run_gc();
    }
    result
}

/// A job condition as a function of its scope.
fn condition_wrapper(source: &str) -> String {
    format!("(function(leadId, ticketId, params, lead){{\n{source}\n}})")
}

thread_local! {
    static CONDITION_CHECKER: RefCell<Option<SyntaxChecker>> = const { RefCell::new(None) };
}

/// The syntax error in a job condition, if any (checked when the job is scheduled).
pub fn check_condition(source: &str) -> Option<String> {
    CONDITION_CHECKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            match SyntaxChecker::new() {
                Ok(c) => *slot = Some(c),
                Err(e) => return Some(format!("cannot start the JavaScript engine: {e}")),
            }
        }
        slot.as_ref()
            .and_then(|c| c.check_source(&condition_wrapper(source)))
    })
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.host.borrow_mut() = None;
        self.bot_level.set(false);
    }
}

fn classify(message: String, timed_out: bool) -> ScriptError {
    let kind = if timed_out || message.contains("interrupted") {
        ErrorKind::Timeout
    } else if message.contains("out of memory") || message.contains("Allocation") {
        ErrorKind::OutOfMemory
    } else {
        ErrorKind::Exception
    };
    let message = match kind {
        ErrorKind::Timeout => "script exceeded its time budget".to_owned(),
        ErrorKind::OutOfMemory => "script exceeded its memory cap".to_owned(),
        ErrorKind::Exception => message,
    };
    ScriptError { kind, message }
}

/// What the native bridge reaches: the turn's host, its reactions, its deadline, and whether
/// it is a bot-level run.
struct Bridge {
    host: HostSlot,
    out: Rc<RefCell<Vec<ScriptReaction>>>,
    deadline: Rc<Cell<Option<Instant>>>,
    bot_level: Rc<Cell<bool>>,
}

/// `__host(op, argsJson)`: the one native function; the prelude wraps it and removes it.
fn install_bridge(ctx: &Ctx<'_>, bridge: Bridge) -> rquickjs::Result<()> {
    let Bridge {
        host,
        out,
        deadline,
        bot_level,
    } = bridge;
    let f = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'_>, op: String, args: String| -> rquickjs::Result<Option<String>> {
            let args: Vec<Value> = serde_json::from_str(&args)
                .map_err(|e| Exception::throw_type(&ctx, &e.to_string()))?;
            let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
            let text = |i: usize| arg(i).as_str().map(str::to_owned).unwrap_or_default();
            let throw = |m: String| Exception::throw_message(&ctx, &m);
            if bot_level.get() && matches!(op.as_str(), "answer" | "transition" | "buttons") {
                return Err(throw(format!(
                    "{NO_LEAD}: $reactions is not available (there is no dialog to answer in)"
                )));
            }
            match op.as_str() {
                "answer" => out.borrow_mut().push(ScriptReaction::Answer(text(0))),
                "transition" => out.borrow_mut().push(ScriptReaction::Transition(text(0))),
                "buttons" => {
                    let list = arg(0).as_array().cloned().unwrap_or_default();
                    let buttons = list
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
                        .collect();
                    out.borrow_mut().push(ScriptReaction::Buttons(buttons));
                }
                _ => {
                    let Some(h) = host.borrow().clone() else {
                        return Err(throw(format!("{op} is not available here")));
                    };
                    // Time spent waiting on the host does not count against the script's budget.
                    let started = Instant::now();
                    let r = match op.as_str() {
                        "log" => {
                            h.log(&text(0));
                            Ok(None)
                        }
                        "http" => h
                            .http(&text(0), &text(1), &arg(2))
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
                    if let Some(t) = deadline.get() {
                        deadline.set(Some(t + started.elapsed()));
                    }
                    return r.map_err(throw);
                }
            }
            Ok(None)
        },
    )?;
    ctx.globals().set("__host", f)
}
