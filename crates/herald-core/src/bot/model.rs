//! The compiled form of a `bot.yaml`: an arena of states with resolved targets, triggers with
//! prepared patterns, and every JavaScript snippet collected in one table so that the sandbox can
//! compile each of them once per worker.

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
    /// IANA time zone name (`timezone:`), default `UTC`.
    pub timezone: String,
    pub file: PathBuf,
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
}
