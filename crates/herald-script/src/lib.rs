//! The JavaScript sandbox (QuickJS through rquickjs). One [`Sandbox`] lives on one worker thread:
//! one runtime with a memory cap and a wall-clock interrupt, one context per bot, and every
//! snippet of every bot compiled once into a function that is called per event.
//!
//! Scripts see only the documented globals (`$request`, `$session`, `$client`, `$temp`,
//! `$injector`, `$reactions`, `$pushgate`, `$http`, `$jobs`, `$contact`, `log`). Host services go
//! through the [`Host`] trait, which the engine implements; a host call blocks the script. Every
//! run spends one [`budget::Budget`]: a wall-clock deadline for the whole run, host calls
//! included, and caps on replies, host calls, log lines and the size of what it stores.

mod alloc;
mod budget;
mod check;
mod handler;
mod turn;
mod workflow;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use herald_core::bot::model::{BotDef, Code, CodeId, Template, TemplatePart};
use herald_core::diag::Diagnostic;
use rquickjs::{Context, Ctx, Function, Object, Persistent, Runtime};
use serde_json::Value;

use budget::{Budget, HostSlot};
pub use check::{SyntaxChecker, check_bot, check_code};
pub use turn::Turn;
pub use workflow::WorkflowTurn;

/// What one run of scripts may use. A run is one event's turn, one job condition, or one
/// workflow run's templates and conditions.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock time for the whole run, host calls included.
    pub time: Duration,
    /// The runtime's heap (per worker).
    pub memory_bytes: usize,
    /// Replies one turn may send.
    pub max_replies: usize,
    /// Bytes of the replies one turn may send (texts and buttons).
    pub max_reply_bytes: usize,
    /// `$http`, `$pushgate` and `$jobs` calls in one run.
    pub max_host_calls: usize,
    /// Serialized size of `$session`, `$client` and `$contact.tags`, each.
    pub max_state_bytes: usize,
    /// `log(...)` lines one run writes; later ones are dropped.
    pub max_log_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(1),
            memory_bytes: 32 << 20,
            max_replies: 100,
            max_reply_bytes: 256 << 10,
            max_host_calls: 1000,
            max_state_bytes: 64 << 10,
            max_log_lines: 100,
        }
    }
}

/// Services a script may call. Errors become JavaScript exceptions in the script.
pub trait Host {
    /// `$http.*`: `budget` is what is left of the run's time; the call must not take longer.
    fn http(
        &self,
        method: &str,
        url: &str,
        opts: &Value,
        budget: Duration,
    ) -> Result<Value, String>;
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
    /// A cap of [`Limits`] other than time and memory: nothing of the turn is kept.
    Limit,
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
    /// Integration handlers, one context each (see [`handler`]).
    handlers: HashMap<String, BotJs>,
    budget: Rc<Budget>,
    host: HostSlot,
    out: Rc<RefCell<Vec<ScriptReaction>>>,
    rt: Runtime,
}

impl Sandbox {
    pub fn new(limits: Limits) -> Result<Self, ScriptError> {
        let fail = |e: rquickjs::Error| ScriptError {
            kind: ErrorKind::Exception,
            message: format!("cannot start the JavaScript engine: {e}"),
        };
        let budget = Rc::new(Budget::new(limits));
        // The memory cap is kept by the allocator (see `alloc`), not by QuickJS.
        let rt =
            Runtime::new_with_alloc(alloc::CappedAllocator::new(budget.clone())).map_err(fail)?;
        rt.set_max_stack_size(1 << 20);
        let b = budget.clone();
        rt.set_interrupt_handler(Some(Box::new(move || b.exhausted())));
        Ok(Self {
            rt,
            budget,
            bots: HashMap::new(),
            workflows: HashMap::new(),
            handlers: HashMap::new(),
            host: Rc::new(RefCell::new(None)),
            out: Rc::new(RefCell::new(Vec::new())),
        })
    }

    pub fn limits(&self) -> Limits {
        self.budget.limits
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
        let (host, out, budget) = (self.host.clone(), self.out.clone(), self.budget.clone());
        let (code, [render, reset, contact, no_lead]) =
            ctx.with(|ctx| -> Result<_, Vec<Diagnostic>> {
                budget::install_bridge(&ctx, host, out, budget).map_err(engine_err)?;
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

    /// Starts handling one event of `bot_id`; its time budget starts now. The per-turn globals
    /// are set on the first script call, so a turn that runs no JavaScript costs none.
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
        self.budget.start(input.bot_level);
        Ok(Turn::new(
            bot,
            &self.budget,
            &self.out,
            &self.host,
            &self.rt,
            input,
        ))
    }

    /// Evaluates a job's `condition_script_code`: a function body that sees `leadId`,
    /// `ticketId`, `params` and `lead` (from `scope`). The job runs only if it returns `true`.
    /// Compiled once per bot and source; it has a time budget of its own.
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
        self.budget.start(false);
        let verdict = timed(&bot.ctx, &self.rt, &self.budget, |ctx| {
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
        });
        self.budget.end();
        verdict
    }
}

/// Calls compiled snippet `id` of `js` within the run's budget and hands its value to `f`.
fn call_code<T>(
    js: &BotJs,
    rt: &Runtime,
    budget: &Budget,
    id: CodeId,
    f: impl for<'js> FnOnce(&Ctx<'js>, rquickjs::Value<'js>) -> rquickjs::Result<T>,
) -> Result<T, ScriptError> {
    let func = js.code.get(id.0).ok_or_else(|| ScriptError {
        kind: ErrorKind::Exception,
        message: format!("unknown snippet {}", id.0),
    })?;
    timed(&js.ctx, rt, budget, |ctx| {
        func.clone()
            .restore(ctx)
            .and_then(|func| func.call::<_, rquickjs::Value>(()))
            .and_then(|v| f(ctx, v))
    })
}

/// Runs `f` in `ctx` against the run's budget: an exception, a timeout or an allocation failure
/// becomes a classified [`ScriptError`]; once the budget is broken or spent, nothing runs and
/// every call fails with that error, whatever the script caught. Garbage is collected after a
/// failure.
fn timed<T>(
    ctx: &Context,
    rt: &Runtime,
    budget: &Budget,
    f: impl for<'js> FnOnce(&Ctx<'js>) -> rquickjs::Result<T>,
) -> Result<T, ScriptError> {
    if let Some(e) = budget.broken() {
        return Err(e);
    }
    if budget.past_deadline() {
        return Err(budget.break_with(classify(String::new(), true)));
    }
    let result = ctx.with(|ctx| {
        f(&ctx).map_err(|e| {
            let (message, _) = check::exception_details(&ctx, e);
            // When the heap is full, QuickJS may not manage to build its "out of memory"
            // error and throws a bare value instead.
            let message = if budget.refused.get() && message == check::BARE_EXCEPTION {
                "out of memory".to_owned()
            } else {
                message
            };
            classify(message, budget.past_deadline())
        })
    });
    // A limit the script crossed (and perhaps caught), or time that ran out while it caught
    // its own errors, fails the call even if the script returned normally.
    let result = match (budget.broken(), result) {
        (Some(e), _) => Err(e),
        (None, Err(e)) if e.kind == ErrorKind::Timeout => Err(budget.break_with(e)),
        (None, Ok(_)) if budget.past_deadline() => {
            Err(budget.break_with(classify(String::new(), true)))
        }
        (None, r) => r,
    };
    if result.is_err() {
        rt.run_gc();
    }
    result
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
        ErrorKind::Exception | ErrorKind::Limit => message,
    };
    ScriptError { kind, message }
}
