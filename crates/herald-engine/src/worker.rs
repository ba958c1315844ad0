//! Worker threads. Each owns a JavaScript sandbox (QuickJS runtimes cannot move between
//! threads) and a share of the dialogs: an event goes to the worker picked by hashing its dialog
//! key, so one dialog's events are handled one at a time, in accept order, without locks.
//! Within a worker, dialogs take turns and slow ones wait behind the others (see [`Lanes`]).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_core::bot::model::BroadcastAction;
use herald_script::{Sandbox, TurnInput};
use herald_store::{
    DialogKey, EventPayload, HandledEvent, JobEvent, JobKind, NewEvent, NewMessage, RunOutcome,
    RunResult, StoredEvent,
};
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::host::WorkerHost;
use crate::lanes::Lanes;
use crate::turn::Entry;
use crate::writer::ApplyItem;
use crate::{EngineError, Shared, turn};

pub(crate) enum Work {
    /// Events of this worker's dialogs, in accept order.
    Events(Vec<Queued>),
    Stop,
}

/// An event on its way to a worker: when it was accepted, and its in-flight permit (accepted
/// events hold one until their results commit; follow-up events ride their cause's).
pub(crate) struct Queued {
    event: StoredEvent,
    accepted: Instant,
    permit: Option<OwnedSemaphorePermit>,
    /// The dialog key's hash: the worker's [`Lanes`] key (two dialogs that share a hash share
    /// a queue, which keeps each one's order).
    lane: u64,
}

/// Events gathered per worker, sent with one wake-up per worker (see [`Dispatch::outbox`]).
pub(crate) struct Outbox<'a> {
    dispatch: &'a Dispatch,
    shards: Vec<Vec<Queued>>,
}

impl Outbox<'_> {
    pub(crate) fn push(
        &mut self,
        event: StoredEvent,
        accepted: Instant,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let (i, lane) = self.dispatch.shard(&event.event.dialog);
        self.shards[i].push(Queued {
            event,
            accepted,
            permit,
            lane,
        });
    }

    /// Queues everything pushed, in push order per worker.
    pub(crate) fn send(self) {
        for (sender, events) in self.dispatch.senders.iter().zip(self.shards) {
            if !events.is_empty() {
                let _ = sender.send(Work::Events(events));
            }
        }
    }
}

/// Routes events to workers by dialog.
pub(crate) struct Dispatch {
    senders: Vec<mpsc::UnboundedSender<Work>>,
    hasher: std::collections::hash_map::RandomState,
    /// Per worker: the highest ticket whose results are committed.
    pub(crate) committed: Vec<AtomicU64>,
}

/// Dialogs a worker keeps in memory before dropping settled ones.
const CACHE_SOFT_LIMIT: usize = 50_000;

/// The longest a dialog whose last turn was slow waits while other dialogs have work.
const SLOW_MAX_WAIT: Duration = Duration::from_secs(5);

impl Dispatch {
    pub(crate) fn new(n: usize) -> (Self, Vec<mpsc::UnboundedReceiver<Work>>) {
        let (senders, receivers) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        let committed = (0..n).map(|_| AtomicU64::new(0)).collect();
        (
            Self {
                senders,
                hasher: Default::default(),
                committed,
            },
            receivers,
        )
    }

    /// The worker of a dialog, and the dialog key's hash.
    fn shard(&self, key: &DialogKey) -> (usize, u64) {
        let hash = self.hasher.hash_one(key);
        ((hash % self.senders.len() as u64) as usize, hash)
    }

    /// Queues an event for its dialog's worker. A closed queue means we are stopping; the event
    /// is durable and replays at the next start.
    pub(crate) fn send(
        &self,
        event: StoredEvent,
        accepted: Instant,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let (i, lane) = self.shard(&event.event.dialog);
        let _ = self.senders[i].send(Work::Events(vec![Queued {
            event,
            accepted,
            permit,
            lane,
        }]));
    }

    /// Gathers events to queue together: a worker woken once for a committed batch's events
    /// instead of once per event (each wake-up is a context switch on a busy machine).
    pub(crate) fn outbox(&self) -> Outbox<'_> {
        Outbox {
            dispatch: self,
            shards: (0..self.senders.len()).map(|_| Vec::new()).collect(),
        }
    }

    pub(crate) fn stop_all(&self) {
        for s in &self.senders {
            let _ = s.send(Work::Stop);
        }
    }
}

pub(crate) fn spawn_all(
    shared: &Arc<Shared>,
    receivers: Vec<mpsc::UnboundedReceiver<Work>>,
    apply_tx: mpsc::UnboundedSender<ApplyItem>,
) -> Result<Vec<std::thread::JoinHandle<()>>, EngineError> {
    let handle = tokio::runtime::Handle::current();
    receivers
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            let (shared, apply_tx, handle) = (shared.clone(), apply_tx.clone(), handle.clone());
            std::thread::Builder::new()
                .name(format!("herald-worker-{i}"))
                .spawn(move || Worker::new(i, shared, apply_tx, handle).run(rx))
                .map_err(|e| EngineError::Startup(format!("cannot start worker thread: {e}")))
        })
        .collect()
}

struct Cached {
    state: Option<String>,
    session: Value,
    client: Value,
    tags: Vec<String>,
    attributes: Value,
    contact_id: Option<i64>,
    ticket: u64,
}

struct Worker {
    index: usize,
    shared: Arc<Shared>,
    apply_tx: mpsc::UnboundedSender<ApplyItem>,
    handle: tokio::runtime::Handle,
    sandbox: Option<Sandbox>,
    cache: HashMap<DialogKey, Cached>,
    ticket: u64,
}

impl Worker {
    fn new(
        index: usize,
        shared: Arc<Shared>,
        apply_tx: mpsc::UnboundedSender<ApplyItem>,
        handle: tokio::runtime::Handle,
    ) -> Self {
        let sandbox = match Sandbox::new(shared.config.script_limits) {
            Ok(mut sb) => {
                for bot in shared.project.bots.values() {
                    if let Err(diags) = sb.load_bot(bot) {
                        for d in diags {
                            tracing::error!(bot = %bot.id, "{d}");
                        }
                    }
                }
                Some(sb)
            }
            Err(e) => {
                tracing::error!(error = %e, "worker has no JavaScript engine");
                None
            }
        };
        Self {
            index,
            shared,
            apply_tx,
            handle,
            sandbox,
            cache: HashMap::new(),
            ticket: 0,
        }
    }

    /// Serves this worker's dialogs in the order [`Lanes`] decides until told to stop, then
    /// finishes what it was given.
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Work>) {
        // A turn that takes a quarter of the script budget or more is slow: its dialog waits
        // behind the others next time.
        let slow_turn = (self.shared.config.script_limits.time / 4).max(Duration::from_millis(1));
        let mut lanes: Lanes<u64, Queued> = Lanes::new(SLOW_MAX_WAIT);
        let mut stopping = false;
        // Queues a batch of events; `true` for the order to stop.
        let absorb = |work: Work, lanes: &mut Lanes<u64, Queued>| match work {
            Work::Events(events) => {
                let now = Instant::now();
                for q in events {
                    lanes.push(q.lane, q, now);
                }
                false
            }
            Work::Stop => true,
        };
        loop {
            if lanes.is_empty() {
                if stopping {
                    return;
                }
                match rx.blocking_recv() {
                    Some(work) => stopping |= absorb(work, &mut lanes),
                    None => return,
                }
            }
            while let Ok(work) = rx.try_recv() {
                stopping |= absorb(work, &mut lanes);
            }
            let Some((key, q)) = lanes.pop(Instant::now()) else {
                continue;
            };
            let started = Instant::now();
            let mut item = self.handle_event(q.event, q.accepted);
            item.permit = q.permit;
            lanes.done(&key, started.elapsed() >= slow_turn, Instant::now());
            if self.apply_tx.send(item).is_err() {
                return;
            }
        }
    }

    fn load(&mut self, key: &DialogKey) -> &mut Cached {
        if !self.cache.contains_key(key) {
            if self.cache.len() >= CACHE_SOFT_LIMIT {
                let done = self.shared.dispatch.committed[self.index].load(Ordering::Acquire);
                self.cache.retain(|_, c| c.ticket > done);
            }
            let record = self
                .handle
                .block_on(self.shared.store.load_dialog(key))
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot load dialog; starting it afresh");
                    None
                });
            let cached = match record {
                Some(d) => Cached {
                    state: d.state,
                    session: d.session,
                    client: d.client,
                    tags: d.tags,
                    attributes: d.attributes,
                    contact_id: Some(d.contact_id),
                    ticket: 0,
                },
                None => Cached {
                    state: None,
                    session: json!({}),
                    client: json!({}),
                    tags: Vec::new(),
                    attributes: json!({}),
                    // Created with the dialog when this event's results commit.
                    contact_id: Some(self.shared.next_contact_id()),
                    ticket: 0,
                },
            };
            self.cache.insert(key.clone(), cached);
        }
        self.cache.get_mut(key).expect("inserted above")
    }

    fn handle_event(&mut self, stored: StoredEvent, accepted: Instant) -> ApplyItem {
        let started = Instant::now();
        let StoredEvent { seq, event } = stored;
        let key = event.dialog.clone();
        let bot_level = key.is_bot_level();
        let (state_before, session, client, contact) = if bot_level {
            // A bot-level run has no dialog or contact to load, nothing to cache.
            let none = Contact {
                id: None,
                tags: Vec::new(),
                attributes: json!({}),
            };
            (None, json!({}), json!({}), none)
        } else {
            let c = self.load(&key);
            let contact = Contact {
                id: c.contact_id,
                tags: c.tags.clone(),
                attributes: c.attributes.clone(),
            };
            (
                c.state.clone(),
                c.session.clone(),
                c.client.clone(),
                contact,
            )
        };
        let now = Timestamp::now();
        let incoming = match &event.payload {
            EventPayload::Text { text } => Some(text.clone()),
            EventPayload::Button { text, .. } => Some(text.clone()),
            EventPayload::Event { .. } | EventPayload::Job { .. } => None,
        }
        .map(|text| NewMessage {
            text,
            buttons: vec![],
            ts: now,
        });
        let mut handled = HandledEvent {
            incoming,
            contact_id: contact.id,
            ..HandledEvent::unchanged(seq, key.clone(), state_before.clone(), session.clone())
        };
        let inputs = Inputs {
            session: &session,
            client: &client,
            contact: &contact,
        };
        if let Some(bot) = self.shared.project.bots.get(&key.bot_id).cloned() {
            let current = state_before.as_deref().and_then(|p| bot.state_by_path(p));
            if let EventPayload::Job { job } = &event.payload {
                self.run_job(&bot, current, job, &event, &inputs, &mut handled);
            } else {
                match turn::target_state(&bot, current, &event.payload) {
                    None => {
                        tracing::debug!(bot = %key.bot_id, event = ?event.payload, "no state handles this event")
                    }
                    Some(target) => {
                        self.run_turn(
                            &bot,
                            current,
                            Entry::State(target),
                            &event,
                            &inputs,
                            &mut handled,
                        );
                    }
                }
            }
        } else {
            tracing::warn!(bot = %key.bot_id, "event for a bot that is no longer defined; dropped");
            // A job's run still finishes (its record is a bot-level run's handled mark).
            if let EventPayload::Job { job } = &event.payload
                && job.spec.kind != JobKind::Broadcast
            {
                let now = self.shared.clock.now();
                handled.run = Some(RunResult {
                    run_id: job.run_id,
                    job_id: job.job_id,
                    outcome: RunOutcome::Error,
                    condition: None,
                    error: Some(format!("bot `{}` is no longer defined", key.bot_id)),
                    started_at: now,
                    finished_at: now,
                    last: job.last,
                });
            }
        }
        self.ticket += 1;
        if let Some(c) = self.cache.get_mut(&key) {
            c.state = handled.state.clone();
            c.session = handled.session.clone();
            if let Some(cl) = &handled.client {
                c.client = cl.clone();
            }
            if let Some(tags) = &handled.tags {
                c.tags = tags.clone();
            }
            c.ticket = self.ticket;
        }
        metrics::histogram!("herald_handle_seconds").record(started.elapsed().as_secs_f64());
        ApplyItem {
            handled,
            worker: self.index,
            ticket: self.ticket,
            accepted,
            event_id: event.id,
            permit: None,
        }
    }

    /// Runs one due time of a job in this dialog: unless the job was cancelled, its condition,
    /// its tag changes, then its script, trigger or broadcast message. The run's outcome is
    /// committed with the turn's effects.
    fn run_job(
        &mut self,
        bot: &herald_core::BotDef,
        current: Option<herald_core::StateId>,
        job: &JobEvent,
        event: &NewEvent,
        inputs: &Inputs<'_>,
        handled: &mut HandledEvent,
    ) {
        let clock = self.shared.clock.clone();
        let started = clock.now();
        let due = Timestamp::from_millisecond(job.due_at).unwrap_or(started);
        metrics::histogram!("herald_job_lateness_seconds")
            .record(started.duration_since(due).as_secs_f64().max(0.0));
        let spec = &job.spec;
        let mut run = RunResult {
            run_id: job.run_id,
            job_id: job.job_id,
            outcome: RunOutcome::Ok,
            condition: None,
            error: None,
            started_at: started,
            finished_at: started,
            last: job.last,
        };
        let broadcast = spec.kind == JobKind::Broadcast;
        // A broadcast's delivery is not a run (its run was recorded at fan-out): it is only
        // skipped when the job was cancelled meanwhile.
        let go_ahead = if broadcast {
            !self.shared.is_cancelled(job.job_id)
        } else {
            self.shared.start_run(job.job_id)
        };
        if !go_ahead {
            run.outcome = RunOutcome::Cancelled;
        } else if let Some(source) = &spec.condition {
            let lead = (!event.dialog.is_bot_level()).then(|| {
                json!({
                    "id": inputs.contact.id,
                    "tags": inputs.contact.tags,
                    "attributes": inputs.contact.attributes,
                    "data": inputs.client,
                })
            });
            let scope = json!({
                "leadId": spec.lead_id.or(inputs.contact.id),
                "ticketId": spec.ticket_id,
                "params": spec.params,
                "lead": lead,
            });
            let verdict = match self.sandbox.as_mut() {
                Some(sb) => sb.job_condition(&bot.id, source, &scope),
                None => Err(herald_script::ScriptError {
                    kind: herald_script::ErrorKind::Exception,
                    message: "no JavaScript engine on this worker".into(),
                }),
            };
            match verdict {
                Ok(pass) => {
                    run.condition = Some(pass);
                    if !pass {
                        run.outcome = RunOutcome::Skipped;
                    }
                }
                Err(e) => {
                    tracing::warn!(bot = %bot.id, job = job.job_id, "job condition failed: {}", e.message);
                    run.condition = Some(false);
                    run.outcome = RunOutcome::Skipped;
                    run.error = Some(format!("condition: {}", e.message));
                }
            }
        }
        if run.outcome == RunOutcome::Ok {
            let mut tags = inputs.contact.tags.clone();
            tags.retain(|t| !spec.remove_tags.contains(t));
            for t in &spec.add_tags {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            if tags != inputs.contact.tags {
                handled.tags = Some(tags.clone());
            }
            let contact = Contact {
                tags,
                ..inputs.contact.clone()
            };
            let inputs = Inputs {
                contact: &contact,
                ..*inputs
            };
            let entry = match spec.kind {
                JobKind::Script => bot
                    .script_job(Some(spec.target_id), None)
                    .map(|s| Entry::State(s.state)),
                JobKind::Trigger => bot
                    .trigger_job(Some(spec.target_id), None)
                    .map(|t| Entry::Code(t.script)),
                JobKind::Broadcast => {
                    bot.broadcast_job(Some(spec.target_id), None)
                        .map(|b| match &b.action {
                            BroadcastAction::Message { text, buttons } => {
                                Entry::Message(text, buttons)
                            }
                            BroadcastAction::State(s) => Entry::State(*s),
                        })
                }
            };
            match entry {
                None => {
                    run.outcome = RunOutcome::Error;
                    run.error = Some(format!(
                        "{} `{}` (id {}) is no longer defined in bot.yaml",
                        spec.kind.as_str(),
                        spec.target_code,
                        spec.target_id
                    ));
                }
                Some(entry) => {
                    if let Some(e) = self.run_turn(bot, current, entry, event, &inputs, handled) {
                        run.outcome = RunOutcome::Error;
                        run.error = Some(e);
                    }
                }
            }
        }
        run.finished_at = clock.now();
        metrics::counter!("herald_job_runs_total", "outcome" => run.outcome.as_str()).increment(1);
        // A broadcast's run was recorded when it fanned out; its deliveries are not runs.
        if !broadcast {
            handled.run = Some(run);
        }
    }

    /// Runs a turn from `entry`; returns the script error that stopped it, if any.
    fn run_turn(
        &mut self,
        bot: &herald_core::BotDef,
        current: Option<herald_core::StateId>,
        entry: Entry<'_>,
        event: &NewEvent,
        inputs: &Inputs<'_>,
        handled: &mut HandledEvent,
    ) -> Option<String> {
        let request = request_json(event, inputs.contact.id);
        let host = Rc::new(WorkerHost::new(
            self.shared.clone(),
            self.handle.clone(),
            event.dialog.clone(),
            inputs.contact.id,
        ));
        let Some(sandbox) = self.sandbox.as_mut() else {
            tracing::error!("no JavaScript engine on this worker; event not handled");
            return Some("no JavaScript engine on this worker".into());
        };
        let contact = json!({
            "id": inputs.contact.id,
            "tags": inputs.contact.tags,
            "attributes": inputs.contact.attributes,
        });
        let input = TurnInput {
            request: &request,
            session: inputs.session,
            client: inputs.client,
            contact: &contact,
            bot_level: event.dialog.is_bot_level(),
        };
        let (outcome, finished) = match sandbox.turn(&bot.id, input, host.clone()) {
            Ok(mut js) => {
                let mut outcome = turn::run(bot, current, entry, &mut js);
                if outcome.error.is_none() {
                    // Templates make replies too: the caps hold for everything the turn sends.
                    outcome.error = turn::over_limits(&outcome.replies, &js.limits());
                }
                let finished = if outcome.error.is_none() {
                    Some(js.finish())
                } else {
                    None
                };
                (outcome, finished)
            }
            Err(e) => (
                turn::TurnOutcome {
                    state: current,
                    replies: vec![],
                    error: Some(e),
                    handled_by: match entry {
                        Entry::State(s) => Some(s),
                        _ => current,
                    },
                },
                None,
            ),
        };
        let now = Timestamp::now();
        handled.replies = outcome
            .replies
            .into_iter()
            .map(|r| NewMessage {
                text: r.text,
                buttons: r.buttons,
                ts: now,
            })
            .collect();
        let error = match finished {
            Some(Ok(state)) => {
                handled.state = outcome.state.map(|s| bot.state(s).path.clone());
                handled.session = state.session;
                if &state.client != inputs.client {
                    handled.client = Some(state.client);
                }
                if state.tags != inputs.contact.tags {
                    handled.tags = Some(state.tags);
                }
                handled.schedule = host.scheduled.take();
                handled.cancel = host.cancelled.take();
                None
            }
            Some(Err(e)) => Some(e),
            None => outcome.error,
        };
        let e = error?;
        // A turn that broke a cap stores none of its replies; a failed turn none of its
        // pushbacks (its jobs were never handed over).
        if e.kind == herald_script::ErrorKind::Limit {
            handled.replies.clear();
        }
        handled.revoke_pushbacks = host.created.take();
        {
            let state_path = outcome.handled_by.map(|s| bot.state(s).path.clone());
            tracing::warn!(bot = %bot.id, chat = %event.dialog.chat_id, state = ?state_path, kind = ?e.kind, "script error: {}", e.message);
            metrics::counter!("herald_script_errors_total").increment(1);
            let is_script_error =
                matches!(&event.payload, EventPayload::Event { name, .. } if name == "scriptError");
            // A bot-level run has no dialog whose scenario could answer `scriptError`: its
            // error is in its run record.
            if !is_script_error && !event.dialog.is_bot_level() {
                handled.raise.push(NewEvent {
                    id: uuid::Uuid::now_v7().to_string(),
                    dialog: event.dialog.clone(),
                    payload: EventPayload::Event {
                        name: "scriptError".into(),
                        data: json!({
                            "message": e.message,
                            "kind": format!("{:?}", e.kind).to_lowercase(),
                            "state": state_path,
                            "eventId": event.id,
                        }),
                    },
                    source: "system".into(),
                    accepted_at: now,
                });
            }
        }
        Some(e.message)
    }
}

/// The contact as a turn sees it.
#[derive(Debug, Clone)]
struct Contact {
    id: Option<i64>,
    tags: Vec<String>,
    attributes: Value,
}

/// What a turn starts from.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    session: &'a Value,
    client: &'a Value,
    contact: &'a Contact,
}

/// `$request` as scripts see it. A job's run adds `params`, `ticketId`, `leadId` and `job`; a
/// bot-level run has no channel, chat or lead (`null`).
fn request_json(e: &NewEvent, contact_id: Option<i64>) -> Value {
    let d = &e.dialog;
    let (channel, chat) = if d.is_bot_level() {
        (None, None)
    } else {
        (Some(d.channel_type.as_str()), Some(d.chat_id.as_str()))
    };
    let (query, answer_id, event, data) = match &e.payload {
        EventPayload::Text { text } => (Some(text.as_str()), None, None, Value::Null),
        EventPayload::Button { id, text } => {
            (Some(text.as_str()), Some(id.as_str()), None, Value::Null)
        }
        EventPayload::Event { name, data } => (None, None, Some(name.as_str()), data.clone()),
        EventPayload::Job { job } => {
            let s = &job.spec;
            let due = Timestamp::from_millisecond(job.due_at)
                .map(|t| t.to_string())
                .ok();
            return json!({
                "channelType": channel,
                "botId": d.bot_id,
                "channelUserId": chat,
                "chatId": chat,
                "query": null,
                "answerId": null,
                "event": null,
                "eventId": e.id,
                "data": s.params,
                "params": s.params,
                "ticketId": s.ticket_id,
                "leadId": s.lead_id.or(contact_id),
                "job": {
                    "id": job.job_id,
                    "runId": job.run_id,
                    "kind": s.kind.as_str(),
                    "code": s.target_code,
                    "dueAt": due,
                },
                "rawRequest": {"eventData": s.params, "text": null, "source": e.source},
            });
        }
    };
    json!({
        "channelType": d.channel_type,
        "botId": d.bot_id,
        "channelUserId": d.chat_id,
        "chatId": d.chat_id,
        "query": query,
        "answerId": answer_id,
        "event": event,
        "eventId": e.id,
        "data": data,
        "rawRequest": {"eventData": data, "text": query, "source": e.source},
    })
}
