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
        let file_line = match line {
            Some(l) if l >= 2 => code.origin.line + (l - 2),
            _ => code.origin.line,
        };
        let what = match code.kind {
            CodeKind::Body => "script",
            CodeKind::Expr => "expression",
        };
        Diagnostic::new(
            &code.origin.file,
            file_line,
            1,
            format!("JavaScript error in {what}: {msg}"),
        )
        .with_hint("fix the JavaScript syntax; scripts run as the body of a function")
    })
}

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
            .unwrap_or_else(|| "exception".to_owned());
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

/// Compiles every snippet of `bot` in a throwaway runtime.
pub fn check_bot(bot: &BotDef) -> Vec<Diagnostic> {
    let Ok(rt) = Runtime::new() else {
        return vec![Diagnostic::new(
            &bot.file,
            0,
            0,
            "cannot start the JavaScript engine",
        )];
    };
    rt.set_memory_limit(64 << 20);
    let Ok(ctx) = Context::full(&rt) else {
        return vec![Diagnostic::new(
            &bot.file,
            0,
            0,
            "cannot start the JavaScript engine",
        )];
    };
    ctx.with(|ctx| {
        bot.code
            .iter()
            .filter_map(|c| compile(&ctx, c).err())
            .collect()
    })
}
