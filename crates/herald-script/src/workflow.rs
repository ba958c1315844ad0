//! Workflow snippets: `if:` conditions and `{{ }}` template holes of `workflows/<id>.yaml`.
//!
//! Each workflow gets its own context, built like a bot's (same prelude, frozen built-ins, no
//! host services: a host call throws). A [`WorkflowTurn`] renders one run's steps: it sets the
//! documented globals — `payload`, `subscriber`, `actor`, `tenant`, `events`, `eventCount`,
//! `step` — once, then evaluates conditions and templates against them.

use herald_core::bot::model::{CodeId, Template};
use herald_core::diag::Diagnostic;
use herald_core::workflow::WorkflowDef;
use serde_json::Value;

use crate::budget::Budget;
use crate::{BotJs, ErrorKind, Sandbox, ScriptError, call_code, render_parts, text_of, truthy};

/// The globals a workflow's snippets see.
const SCOPE_KEYS: &[&str] = &[
    "payload",
    "subscriber",
    "actor",
    "tenant",
    "events",
    "eventCount",
    "step",
];

impl Sandbox {
    /// Compiles every snippet of `wf` (replacing an earlier version of it).
    ///
    /// The context's global object is closed after its scope keys are defined: a template that
    /// assigns to an undeclared name cannot leave a global behind for the next run (which, for
    /// another subscriber, could leak data), so turns need no per-run cleanup of globals.
    pub fn load_workflow(&mut self, wf: &WorkflowDef) -> Result<(), Vec<Diagnostic>> {
        let js = self.compile_all(&wf.code, &Value::Object(Default::default()), &wf.file)?;
        js.ctx
            .with(|ctx| -> rquickjs::Result<()> {
                let g = ctx.globals();
                for key in SCOPE_KEYS {
                    g.set(*key, rquickjs::Undefined)?;
                }
                ctx.eval::<(), _>("Object.preventExtensions(globalThis)")
            })
            .map_err(|e| {
                vec![Diagnostic::new(
                    &wf.file,
                    0,
                    0,
                    format!("JavaScript engine: {e}"),
                )]
            })?;
        self.workflows.insert(wf.id.clone(), js);
        Ok(())
    }

    /// Starts rendering one run of workflow `id`; its time budget starts now. `scope` is an
    /// object with the keys of the documented globals; missing ones are `undefined`.
    pub fn workflow_turn(
        &mut self,
        id: &str,
        scope: Value,
    ) -> Result<WorkflowTurn<'_>, ScriptError> {
        let js = self.workflows.get(id).ok_or_else(|| ScriptError {
            kind: ErrorKind::Exception,
            message: format!("workflow `{id}` is not loaded"),
        })?;
        self.budget.start(false);
        Ok(WorkflowTurn {
            js,
            sandbox_rt: &self.rt,
            budget: &self.budget,
            scope,
            prepared: false,
        })
    }
}

/// One run's worth of condition and template evaluations against one workflow context.
pub struct WorkflowTurn<'a> {
    js: &'a BotJs,
    sandbox_rt: &'a rquickjs::Runtime,
    budget: &'a Budget,
    scope: Value,
    prepared: bool,
}

impl Drop for WorkflowTurn<'_> {
    fn drop(&mut self) {
        self.budget.end();
    }
}

impl WorkflowTurn<'_> {
    /// Replaces one global (e.g. `events` after a digest) for the evaluations that follow.
    pub fn set(&mut self, key: &str, value: Value) {
        if let Some(o) = self.scope.as_object_mut() {
            o.insert(key.to_owned(), value);
        }
        self.prepared = false;
    }

    fn prepare(&mut self) -> Result<(), ScriptError> {
        if self.prepared {
            return Ok(());
        }
        let scope = self.scope.to_string();
        self.js
            .ctx
            .with(|ctx| -> rquickjs::Result<()> {
                // One parse for the whole scope; a key it lacks reads as `undefined`.
                let parsed = ctx.json_parse(scope)?;
                let values = parsed.as_object();
                let g = ctx.globals();
                for key in SCOPE_KEYS {
                    let v = match values {
                        Some(o) => o.get::<_, rquickjs::Value>(*key)?,
                        None => rquickjs::Value::new_undefined(ctx.clone()),
                    };
                    g.set(*key, v)?;
                }
                Ok(())
            })
            .map_err(|e| ScriptError {
                kind: ErrorKind::Exception,
                message: format!("cannot prepare the workflow globals: {e}"),
            })?;
        self.prepared = true;
        Ok(())
    }

    /// Evaluates an `if:` with JavaScript truthiness.
    pub fn condition(&mut self, id: CodeId) -> Result<bool, ScriptError> {
        self.prepare()?;
        call_code(self.js, self.sandbox_rt, self.budget, id, truthy)
    }

    /// Renders a template; `undefined`/`null` holes render as empty text, objects as JSON.
    pub fn render(&mut self, t: &Template) -> Result<String, ScriptError> {
        self.prepare()?;
        let (js, rt, budget) = (self.js, self.sandbox_rt, self.budget);
        render_parts(t, |id| call_code(js, rt, budget, id, text_of(&js.render)))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use herald_core::workflow::{StepKind, parse_workflow};
    use serde_json::json;

    use super::*;
    use crate::Limits;

    fn workflow(text: &str) -> WorkflowDef {
        parse_workflow("w", Path::new("w.yaml"), text, &|_| None, &|_| None).expect("parses")
    }

    #[test]
    fn templates_and_conditions_see_the_run_scope() {
        let wf = workflow(
            "steps:\n  - type: in_app\n    if: payload.n > 1 && subscriber.firstName === 'Ann'\n    subject: \"{{ eventCount }} for {{ subscriber.firstName }}\"\n    body: \"{{ payload.items }} / {{ actor }}\"\n",
        );
        let mut sb = Sandbox::new(Limits::default()).expect("sandbox");
        sb.load_workflow(&wf).expect("compiles");
        let scope = json!({"payload": {"n": 2, "items": [1, 2]}, "subscriber": {"firstName": "Ann"}, "eventCount": 1});
        let mut turn = sb.workflow_turn("w", scope).expect("turn");
        let step = &wf.steps[0];
        assert!(
            turn.condition(step.condition.expect("if"))
                .expect("evaluates")
        );
        let StepKind::InApp { subject, body, .. } = &step.kind else {
            panic!("in_app")
        };
        assert_eq!(
            turn.render(subject.as_ref().expect("subject"))
                .expect("renders"),
            "1 for Ann"
        );
        assert_eq!(turn.render(body).expect("renders"), "[1,2] / ");
        turn.set("eventCount", json!(3));
        assert_eq!(
            turn.render(subject.as_ref().expect("subject"))
                .expect("renders"),
            "3 for Ann"
        );
    }

    #[test]
    fn a_global_assigned_by_one_run_is_not_seen_by_the_next() {
        let wf = workflow(
            "steps:\n  - type: in_app\n    body: \"{{ (globalThis.leak = subscriber.secret, typeof leak) }}\"\n  - type: in_app\n    body: \"{{ typeof leak }}/{{ typeof payload }}\"\n",
        );
        let mut sb = Sandbox::new(Limits::default()).expect("sandbox");
        sb.load_workflow(&wf).expect("compiles");
        let bodies: Vec<&Template> = wf
            .steps
            .iter()
            .map(|s| match &s.kind {
                StepKind::InApp { body, .. } => body,
                _ => panic!("in_app"),
            })
            .collect();
        let mut turn = sb
            .workflow_turn("w", json!({"subscriber": {"secret": "s3cr3t"}}))
            .expect("turn");
        // Snippets are strict code on a closed global object: the assignment throws.
        let err = turn.render(bodies[0]).expect_err("cannot add a global");
        assert!(err.message.contains("TypeError"), "{}", err.message);
        assert_eq!(
            turn.render(bodies[1]).expect("renders"),
            "undefined/undefined"
        );
        drop(turn);
        let mut next = sb.workflow_turn("w", json!({"payload": {}})).expect("turn");
        assert_eq!(next.render(bodies[1]).expect("renders"), "undefined/object");
    }

    #[test]
    fn a_throwing_or_endless_expression_is_an_error_not_a_crash() {
        let wf = workflow(
            "steps:\n  - type: in_app\n    body: \"{{ payload.a.b.c }}\"\n  - type: in_app\n    body: \"{{ (() => { while (true) {} })() }}\"\n",
        );
        let mut sb = Sandbox::new(Limits {
            time: std::time::Duration::from_millis(50),
            ..Limits::default()
        })
        .expect("sandbox");
        sb.load_workflow(&wf).expect("compiles");
        let mut turn = sb.workflow_turn("w", json!({"payload": {}})).expect("turn");
        for (i, kind) in [ErrorKind::Exception, ErrorKind::Timeout]
            .into_iter()
            .enumerate()
        {
            let StepKind::InApp { body, .. } = &wf.steps[i].kind else {
                panic!("in_app")
            };
            assert_eq!(turn.render(body).expect_err("fails").kind, kind);
        }
    }

    #[test]
    fn host_services_are_not_available_to_workflows() {
        let wf = workflow("steps:\n  - type: in_app\n    body: \"{{ $http.get('http://x') }}\"\n");
        let mut sb = Sandbox::new(Limits::default()).expect("sandbox");
        sb.load_workflow(&wf).expect("compiles");
        let mut turn = sb.workflow_turn("w", json!({})).expect("turn");
        let StepKind::InApp { body, .. } = &wf.steps[0].kind else {
            panic!("in_app")
        };
        let e = turn.render(body).expect_err("no host");
        assert!(e.message.contains("not available"), "{e}");
    }
}
