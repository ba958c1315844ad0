//! The thread integration handlers run on: one QuickJS runtime (runtimes cannot move between
//! threads) with every integration's handler compiled once, fed through a bounded queue. It is
//! started only when some integration has a handler; declared `events:` never come here.

use herald_core::Project;
use herald_script::{Limits, Sandbox, ScriptError};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

struct Job {
    name: String,
    req: Value,
    config: Value,
    reply: oneshot::Sender<Result<Value, ScriptError>>,
}

pub(crate) struct Handlers {
    tx: mpsc::Sender<Job>,
}

/// Handlers waiting to run; beyond it, requests wait for room.
const QUEUE: usize = 1024;

impl Handlers {
    /// Starts the thread when the project has handlers.
    pub(crate) fn spawn(project: &Project, limits: Limits) -> Option<Self> {
        let defs: Vec<_> = project
            .integrations
            .values()
            .filter(|d| d.handler.is_some())
            .cloned()
            .collect();
        if defs.is_empty() {
            return None;
        }
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        let started = std::thread::Builder::new()
            .name("herald-handlers".into())
            .spawn(move || {
                let mut sandbox = match Sandbox::new(limits) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "no JavaScript engine for integration handlers");
                        return;
                    }
                };
                for d in &defs {
                    if let Err(diags) = sandbox.load_integration(d) {
                        for diag in diags {
                            tracing::error!(integration = %d.name, "{diag}");
                        }
                    }
                }
                while let Some(job) = rx.blocking_recv() {
                    let out = sandbox.run_handler(&job.name, &job.req, &job.config);
                    let _ = job.reply.send(out);
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the integration handler thread");
            return None;
        }
        Some(Self { tx })
    }

    /// Runs the handler of integration `name`; its error as text.
    pub(crate) async fn run(&self, name: &str, req: Value, config: Value) -> Result<Value, String> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            name: name.to_owned(),
            req,
            config,
            reply,
        };
        self.tx
            .send(job)
            .await
            .map_err(|_| "the handler thread is not running".to_owned())?;
        match answer.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.message),
            Err(_) => Err("the handler thread stopped".to_owned()),
        }
    }
}
