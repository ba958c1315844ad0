//! Load-time checks: compile every snippet of a bot once and report syntax errors at their place
//! in the definition file.

use herald_core::bot::model::{BotDef, Code, CodeKind};
use herald_core::diag::Diagnostic;
use rquickjs::{Context, Ctx, Function, Runtime};

/// How a snippet is wrapped into a function; user line 1 is line 2 of the wrapper.
pub(crate) fn wrap(code: &Code) -> String {
    match code.kind {
        CodeKind::Body => format!("(function(){{\n{}\n}})", code.source),
        CodeKind::Expr => format!("(function(){{ return (\n{}\n); }})", code.source),
    }
}

/// Compiles a snippet in `ctx`, mapping a syntax error to the file's line.
pub(crate) fn compile<'js>(ctx: &Ctx<'js>, code: &Code) -> Result<Function<'js>, Diagnostic> {
    ctx.eval::<Function, _>(wrap(code)).map_err(|e| {
        let (msg, line) = exception_details(ctx, e);
        // An error found at the wrapper's closing line belongs to the snippet's last line.
        let last = code.source.lines().count().max(1) - 1;
        let offset = line.map(|l| l.saturating_sub(2).min(last)).unwrap_or(0);
        let (what, hint) = match code.kind {
            CodeKind::Body => (
                "script",
                "fix the JavaScript syntax; a script runs as the body of a function",
            ),
            CodeKind::Expr => (
                "expression",
                "fix the JavaScript expression; `{{ }}` holes and `if:` take one expression",
            ),
        };
        Diagnostic::new(
            &code.origin.file,
            code.origin.line + offset,
            1,
            format!("JavaScript error in {what}: {msg}"),
        )
        .with_hint(hint)
    })
}

/// What [`exception_details`] calls an exception that is not an object or a string.
pub(crate) const BARE_EXCEPTION: &str = "exception";

/// The message and (wrapper) line of a pending exception.
pub(crate) fn exception_details(ctx: &Ctx<'_>, err: rquickjs::Error) -> (String, Option<usize>) {
    if !matches!(err, rquickjs::Error::Exception) {
        return (err.to_string(), None);
    }
    let value = ctx.catch();
    let Some(obj) = value.as_object() else {
        let text = value
            .as_string()
            .and_then(|s| s.to_string().ok())
            .unwrap_or_else(|| BARE_EXCEPTION.to_owned());
        return (text, None);
    };
    let message: String = obj
        .get::<_, String>("message")
        .unwrap_or_else(|_| "exception".to_owned());
    let name: String = obj.get::<_, String>("name").unwrap_or_default();
    let mut line = obj
        .get::<_, Option<i64>>("lineNumber")
        .ok()
        .flatten()
        .map(|l| l as usize);
    if line.is_none() {
        // "    at <eval>:3:7" → 3
        let stack: String = obj.get::<_, String>("stack").unwrap_or_default();
        line = stack
            .lines()
            .find_map(|l| l.rsplit(':').nth(1).and_then(|n| n.trim().parse().ok()));
    }
    let text = if name.is_empty() {
        message
    } else {
        format!("{name}: {message}")
    };
    (text, line)
}

/// Compiles snippets in a throwaway runtime to find syntax errors at load time.
pub struct SyntaxChecker {
    ctx: Context,
    _rt: Runtime,
}

impl SyntaxChecker {
    pub fn new() -> Result<Self, rquickjs::Error> {
        let rt = Runtime::new()?;
        rt.set_memory_limit(64 << 20);
        let ctx = Context::full(&rt)?;
        Ok(Self { ctx, _rt: rt })
    }

    /// The syntax error of a piece of JavaScript source, as a message.
    pub fn check_source(&self, source: &str) -> Option<String> {
        self.ctx.with(|ctx| {
            ctx.eval::<Function, _>(source)
                .err()
                .map(|e| exception_details(&ctx, e).0)
        })
    }

    /// The syntax error of one snippet, placed in its definition file.
    pub fn check(&self, code: &Code) -> Option<Diagnostic> {
        self.ctx.with(|ctx| compile(&ctx, code).err())
    }
}

/// Compiles every snippet of `bot`; one diagnostic per syntax error.
pub fn check_bot(bot: &BotDef) -> Vec<Diagnostic> {
    check_code(&bot.code, &bot.file)
}

/// Syntax errors in a list of snippets (a bot's or a workflow's).
pub fn check_code(code: &[Code], file: &std::path::Path) -> Vec<Diagnostic> {
    match SyntaxChecker::new() {
        Ok(c) => code.iter().filter_map(|code| c.check(code)).collect(),
        Err(e) => vec![Diagnostic::new(
            file,
            0,
            0,
            format!("cannot start the JavaScript engine: {e}"),
        )],
    }
}
