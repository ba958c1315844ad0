//! The thread integration handlers run on: one QuickJS runtime (runtimes cannot move between
//! threads) with every integration's handler compiled once, fed through a bounded queue. It is
//! started only when some integration has a handler; declared `events:` never come here.

use std::time::{Duration, Instant};

use herald_core::Project;
use herald_script::{Limits, Sandbox, ScriptError};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

struct Job {
    name: String,
    req: Value,
    config: Value,
    queued: Instant,
    reply: oneshot::Sender<Result<Value, Failure>>,
}

/// Why a handler gave no events.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It ran and failed (threw, ran out of budget, …): the request's own fault.
    Script(String),
    /// It did not run: the queue was too long to answer in time, or the thread is gone. The
    /// sender should retry later (a 503, nothing recorded).
    Busy(String),
}

pub(crate) struct Handlers {
    tx: mpsc::Sender<Job>,
}

/// Handlers waiting to run; beyond it, requests wait for room.
const QUEUE: usize = 1024;

/// The longest a request waits for its handler to start. Platforms give up after 3 s (Slack)
/// to 10 s (GitHub); a request still queued after this is answered 503 instead of running
/// late for a sender that has gone.
const QUEUE_WAIT: Duration = Duration::from_secs(2);

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
                    // The caller left (its connection closed): nobody wants the result.
                    if job.reply.is_closed() {
                        continue;
                    }
                    if job.queued.elapsed() > QUEUE_WAIT {
                        let _ = job.reply.send(Err(Failure::Busy(
                            "integration handlers are busy; retry later".into(),
                        )));
                        continue;
                    }
                    let out = sandbox
                        .run_handler(&job.name, &job.req, &job.config)
                        .map_err(|e: ScriptError| Failure::Script(e.message));
                    let _ = job.reply.send(out);
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the integration handler thread");
            return None;
        }
        Some(Self { tx })
    }

    /// Runs the handler of integration `name`.
    pub(crate) async fn run(
        &self,
        name: &str,
        req: Value,
        config: Value,
    ) -> Result<Value, Failure> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            name: name.to_owned(),
            req,
            config,
            queued: Instant::now(),
            reply,
        };
        let busy = || Failure::Busy("integration handlers are busy; retry later".into());
        match tokio::time::timeout(QUEUE_WAIT, self.tx.send(job)).await {
            Err(_) => return Err(busy()),
            Ok(Err(_)) => {
                return Err(Failure::Busy(
                    "the handler thread is not running".to_owned(),
                ));
            }
            Ok(Ok(())) => {}
        }
        match answer.await {
            Ok(out) => out,
            Err(_) => Err(Failure::Busy("the handler thread stopped".to_owned())),
        }
    }
}
