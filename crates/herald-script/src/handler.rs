//! Integration handlers: the JavaScript of an `integrations/<name>.yaml` `handler:` file, run
//! with `req` (`{method, path, query, headers, body, rawBody}`) and `config` as globals, whose
//! return value is the list of events to raise. Like workflow snippets, a handler has no host
//! services (no `$http`, no `$pushgate`: a replay must give the same events) and a closed
//! global object, and it runs within the same budget and memory cap as bot scripts.

use herald_core::integration::IntegrationDef;
use serde_json::Value;

use crate::{ErrorKind, Sandbox, ScriptError, timed};

const SCOPE_KEYS: &[&str] = &["req", "config"];

impl Sandbox {
    /// Compiles `def`'s handler (replacing an earlier version); nothing for an integration
    /// without one.
    pub fn load_integration(
        &mut self,
        def: &IntegrationDef,
    ) -> Result<(), Vec<herald_core::Diagnostic>> {
        let Some(code) = &def.handler else {
            return Ok(());
        };
        let js = self.compile_all(
            std::slice::from_ref(code),
            &Value::Object(Default::default()),
            &code.origin.file,
        )?;
        js.ctx
            .with(|ctx| -> rquickjs::Result<()> {
                let g = ctx.globals();
                for key in SCOPE_KEYS {
                    g.set(*key, rquickjs::Undefined)?;
                }
                ctx.eval::<(), _>("Object.preventExtensions(globalThis)")
            })
            .map_err(|e| {
                vec![herald_core::Diagnostic::new(
                    &code.origin.file,
                    0,
                    0,
                    format!("JavaScript engine: {e}"),
                )]
            })?;
        self.handlers.insert(def.name.clone(), js);
        Ok(())
    }

    /// Runs the handler of integration `name` with `req` and `config`; its return value as
    /// JSON (`null` for `undefined`).
    pub fn run_handler(
        &mut self,
        name: &str,
        req: &Value,
        config: &Value,
    ) -> Result<Value, ScriptError> {
        let js = self.handlers.get(name).ok_or_else(|| ScriptError {
            kind: ErrorKind::Exception,
            message: format!("integration `{name}` has no handler loaded"),
        })?;
        let func = js.code.first().cloned().ok_or_else(|| ScriptError {
            kind: ErrorKind::Exception,
            message: "the handler is not compiled".to_owned(),
        })?;
        self.budget.start(false);
        let (req, config) = (req.to_string(), config.to_string());
        let out = timed(&js.ctx, &self.rt, &self.budget, |ctx| {
            let g = ctx.globals();
            g.set("req", ctx.json_parse(req)?)?;
            g.set("config", ctx.json_parse(config)?)?;
            let v: rquickjs::Value = func.restore(ctx)?.call(())?;
            let text = ctx.json_stringify(v)?.map(|s| s.to_string()).transpose()?;
            Ok(text)
        });
        self.budget.end();
        let text = out?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null))
    }
}
