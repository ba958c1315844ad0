//! The compiled form of a `bot.yaml`: an arena of states with resolved targets, triggers with
//! prepared patterns, the named jobs of SPEC §4 (`scripts:`, `triggers:`, `broadcasts:`), and every
//! JavaScript snippet collected in one table so that the sandbox can compile each of them once per
//! worker.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// Index of a state in [`BotDef::states`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateId(pub usize);

/// Index of a snippet in [`BotDef::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodeId(pub usize);

/// A place in a definition file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

/// System events: handled by scenarios (`event!: noMatch`), never raised by pushbacks or jobs.
pub const RESERVED_EVENTS: &[&str] = &[
    "noMatch",
    "scriptError",
    "start",
    "timeout",
    "formSubmitted",
    "flowResult",
];

pub fn is_reserved_event(name: &str) -> bool {
    RESERVED_EVENTS.contains(&name)
}

/// One bot, ready to run.
#[derive(Debug, Clone)]
pub struct BotDef {
    /// The directory name under `bots/`.
    pub id: String,
    pub name: String,
    /// Bearer token that manages this bot (besides the admin token). `None` when empty.
    pub token: Option<String>,
    /// Channel type (`chatwidget`, `webhook`, `telegram`) → its settings as written.
    pub channels: BTreeMap<String, Value>,
    /// `injector:` as JSON, visible to scripts as `$injector`.
    pub injector: Value,
    pub intents: Vec<Intent>,
    /// Every state, parents before children. `StateId(i)` is `states[i]`.
    pub states: Vec<State>,
    /// Top-level states, in file order.
    pub roots: Vec<StateId>,
    /// Every JavaScript snippet of the bot. `CodeId(i)` is `code[i]`.
    pub code: Vec<Code>,
    /// IANA time zone name (`timezone:`), default `UTC`. Checked at load time.
    pub timezone: String,
    /// `scripts:`, in file order.
    pub scripts: Vec<JobScript>,
    /// `triggers:`, in file order.
    pub triggers: Vec<JobTrigger>,
    /// `broadcasts:`, in file order.
    pub broadcasts: Vec<Broadcast>,
    pub file: PathBuf,
}

/// A `scripts:` entry: a named entry into the scenario, run for one lead.
#[derive(Debug, Clone)]
pub struct JobScript {
    /// Unique among the bot's scripts, ≥ 1.
    pub id: i64,
    /// The entry's key (`[A-Za-z0-9_.-]+`).
    pub code: String,
    /// The state that is run.
    pub state: StateId,
    /// Where the entry's key is written.
    pub origin: Origin,
}

/// A `triggers:` entry: named JavaScript.
#[derive(Debug, Clone)]
pub struct JobTrigger {
    /// Unique among the bot's triggers, ≥ 1.
    pub id: i64,
    /// The entry's key (`[A-Za-z0-9_.-]+`).
    pub code: String,
    /// A function body ([`CodeKind::Body`]).
    pub script: CodeId,
    /// Where the entry's key is written.
    pub origin: Origin,
}

/// A `broadcasts:` entry: a message or a state for every lead matching a tag filter.
#[derive(Debug, Clone)]
pub struct Broadcast {
    /// Unique among the bot's broadcasts, ≥ 1.
    pub id: i64,
    /// The entry's key (`[A-Za-z0-9_.-]+`).
    pub code: String,
    /// Which leads receive it; empty means every lead.
    pub tags: TagFilter,
    pub action: BroadcastAction,
    /// Where the entry's key is written.
    pub origin: Origin,
}

/// What a broadcast does for each lead.
#[derive(Debug, Clone)]
pub enum BroadcastAction {
    /// `a:` with optional `buttons:`.
    Message {
        text: Template,
        buttons: Vec<Button>,
    },
    /// `state:`: run that state in the lead's dialog.
    State(StateId),
}

/// `tags: {all, any, none}` of a broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagFilter {
    /// Every one of these tags is required.
    pub all: Vec<String>,
    /// At least one of these is required (when not empty).
    pub any: Vec<String>,
    /// None of these may be present.
    pub none: Vec<String>,
}

impl TagFilter {
    /// all ⊆ tags, (any empty or any ∩ tags ≠ ∅), none ∩ tags = ∅. Tags compare exactly
    /// (case-sensitive).
    pub fn matches(&self, tags: &[String]) -> bool {
        let has = |t: &String| tags.contains(t);
        self.all.iter().all(has)
            && (self.any.is_empty() || self.any.iter().any(has))
            && !self.none.iter().any(has)
    }

    /// No condition at all: every lead matches.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.any.is_empty() && self.none.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Intent {
    pub name: String,
    /// Example phrases, already normalized (see [`crate::text::normalize`]).
    pub phrases: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct State {
    pub id: StateId,
    pub name: String,
    /// Absolute path, e.g. `/SubscribeOffer/Subscribe`.
    pub path: String,
    pub parent: Option<StateId>,
    pub children: Vec<StateId>,
    pub no_context: bool,
    pub triggers: Vec<Trigger>,
    /// Reactions in the order they were written (shorthand keys and `do:` items alike).
    pub reactions: Vec<Reaction>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Trigger {
    /// `q!`, `intent!`, `event!`: active whatever the current state is.
    pub global: bool,
    pub kind: TriggerKind,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub enum TriggerKind {
    Phrase(Pattern),
    /// Index into [`BotDef::intents`].
    Intent(usize),
    Event(String),
}

/// A `q` pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// A plain phrase, normalized.
    Exact(String),
    /// A phrase with `*` wildcards, compiled to an anchored regex over normalized text.
    Wildcard { source: String, regex: regex::Regex },
    /// `/regex/`, matched (unanchored, case-insensitive) against the raw text.
    Regex { source: String, regex: regex::Regex },
}

#[derive(Debug, Clone)]
pub enum Reaction {
    Answer(Template),
    Buttons(Vec<Button>),
    Script(CodeId),
    If {
        cond: CodeId,
        then: Vec<Reaction>,
        otherwise: Vec<Reaction>,
    },
    Go(StateId),
}

#[derive(Debug, Clone)]
pub struct Button {
    /// `None` for a plain caption; the caption then doubles as the id.
    pub id: Option<String>,
    pub text: Template,
}

/// Text with `{{ expr }}` holes.
#[derive(Debug, Clone)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone)]
pub enum TemplatePart {
    Text(String),
    Expr(CodeId),
}

impl Template {
    /// The template's text when it has no expressions.
    pub fn as_literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Expr(_) => return None,
            }
        }
        Some(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// A function body (`script:`): runs for its effects.
    Body,
    /// An expression (`if:`, template holes): its value is used.
    Expr,
}

/// One JavaScript snippet and where it was written, for error messages.
#[derive(Debug, Clone)]
pub struct Code {
    pub kind: CodeKind,
    pub source: String,
    /// Where the snippet's first line is in the file.
    pub origin: Origin,
}

impl BotDef {
    pub fn state(&self, id: StateId) -> &State {
        &self.states[id.0]
    }
    pub fn state_by_path(&self, path: &str) -> Option<StateId> {
        self.states.iter().find(|s| s.path == path).map(|s| s.id)
    }
    pub fn has_channel(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// The `scripts:` entry with this id and/or code (both must match when both are given).
    pub fn script_job(&self, id: Option<i64>, code: Option<&str>) -> Option<&JobScript> {
        find_job(&self.scripts, id, code, |j| (j.id, &j.code))
    }

    /// The `triggers:` entry with this id and/or code (both must match when both are given).
    pub fn trigger_job(&self, id: Option<i64>, code: Option<&str>) -> Option<&JobTrigger> {
        find_job(&self.triggers, id, code, |j| (j.id, &j.code))
    }

    /// The `broadcasts:` entry with this id and/or code (both must match when both are given).
    pub fn broadcast_job(&self, id: Option<i64>, code: Option<&str>) -> Option<&Broadcast> {
        find_job(&self.broadcasts, id, code, |j| (j.id, &j.code))
    }
}

/// The entry whose id and code match the given ones; `None` when neither is given.
fn find_job<'a, T>(
    jobs: &'a [T],
    id: Option<i64>,
    code: Option<&str>,
    key: impl Fn(&T) -> (i64, &String),
) -> Option<&'a T> {
    if id.is_none() && code.is_none() {
        return None;
    }
    jobs.iter().find(|j| {
        let (jid, jcode) = key(j);
        id.is_none_or(|i| i == jid) && code.is_none_or(|c| c == jcode)
    })
}
