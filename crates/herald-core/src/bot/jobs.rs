//! The named jobs of SPEC §4: `scripts:` (a state run for one lead), `triggers:` (named
//! JavaScript) and `broadcasts:` (a message or a state for every lead matching a tag filter).
//!
//! Each section is a mapping keyed by the job's code; each entry has an `id` (a whole number ≥ 1,
//! unique within its section). State references stay as written ([`RawJobs`]) until every state
//! is known; `resolve::finish` resolves them from the top level, as `go:` would.

use std::collections::BTreeMap;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{Node, Span};

use super::hints;
use super::model::{Button, JobTrigger, Origin, TagFilter, Template};
use super::parse::Builder;
use super::yaml::{self, is_null};

const SCRIPT_KEYS: &[&str] = &["id", "state"];
const TRIGGER_KEYS: &[&str] = &["id", "script"];
const BROADCAST_KEYS: &[&str] = &["id", "tags", "a", "buttons", "state"];
const TAG_KEYS: &[&str] = &["all", "any", "none"];

/// The three sections as written, with state references unresolved.
#[derive(Debug, Default)]
pub(crate) struct RawJobs {
    pub scripts: Vec<RawScript>,
    pub triggers: Vec<JobTrigger>,
    pub broadcasts: Vec<RawBroadcast>,
}

/// A state reference as written and where.
#[derive(Debug)]
pub(crate) struct StateRef {
    pub target: String,
    pub origin: Origin,
}

#[derive(Debug)]
pub(crate) struct RawScript {
    pub id: i64,
    pub code: String,
    pub state: StateRef,
    pub origin: Origin,
}

#[derive(Debug)]
pub(crate) struct RawBroadcast {
    pub id: i64,
    pub code: String,
    pub tags: TagFilter,
    pub action: RawBroadcastAction,
    pub origin: Origin,
}

#[derive(Debug)]
pub(crate) enum RawBroadcastAction {
    Message {
        text: Template,
        buttons: Vec<Button>,
    },
    State(StateRef),
}

/// Which section an entry belongs to, for messages and the id check.
#[derive(Debug, Clone, Copy)]
enum Section {
    Scripts,
    Triggers,
    Broadcasts,
}

impl Section {
    fn key(self) -> &'static str {
        match self {
            Section::Scripts => "scripts",
            Section::Triggers => "triggers",
            Section::Broadcasts => "broadcasts",
        }
    }

    /// "script", "trigger", "broadcast".
    fn noun(self) -> &'static str {
        match self {
            Section::Scripts => "script",
            Section::Triggers => "trigger",
            Section::Broadcasts => "broadcast",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            Section::Scripts => SCRIPT_KEYS,
            Section::Triggers => TRIGGER_KEYS,
            Section::Broadcasts => BROADCAST_KEYS,
        }
    }

    /// One entry written out, for hints.
    fn example(self) -> &'static str {
        match self {
            Section::Scripts => "remind: {id: 1, state: /Reminder}",
            Section::Triggers => "nudge: {id: 2, script: \"$reactions.answer('hi')\"}",
            Section::Broadcasts => "weekly: {id: 3, a: \"Weekly news\"}",
        }
    }
}

/// One entry's key, id and mapping, checked for the keys its section allows.
struct Entry<'n> {
    /// The code as written, for errors about the entry as a whole.
    key: &'n MarkedScalarNode,
    code: String,
    id: i64,
    map: &'n MarkedMappingNode,
    origin: Origin,
}

impl Builder<'_> {
    /// `scripts:`.
    pub(crate) fn job_scripts(&mut self, node: &Node) {
        for entry in self.entries(node, Section::Scripts) {
            let what = format!("script `{}`", entry.code);
            let Some(state) = self.required(&entry, "state", &what) else {
                continue;
            };
            let Some(state) = self.state_ref(state, &what) else {
                continue;
            };
            self.jobs.scripts.push(RawScript {
                id: entry.id,
                code: entry.code,
                state,
                origin: entry.origin,
            });
        }
    }

    /// `triggers:`.
    pub(crate) fn job_triggers(&mut self, node: &Node) {
        for entry in self.entries(node, Section::Triggers) {
            let what = format!("trigger `{}`", entry.code);
            let Some(script) = self.required(&entry, "script", &what) else {
                continue;
            };
            let Some(script) = self.script(script) else {
                continue;
            };
            self.jobs.triggers.push(JobTrigger {
                id: entry.id,
                code: entry.code,
                script,
                origin: entry.origin,
            });
        }
    }

    /// `broadcasts:`.
    pub(crate) fn job_broadcasts(&mut self, node: &Node) {
        for entry in self.entries(node, Section::Broadcasts) {
            let what = format!("broadcast `{}`", entry.code);
            let tags = match entry.map.get_node("tags") {
                Some(n) => self.tag_filter(n, &what),
                None => Some(TagFilter::default()),
            };
            let action = self.broadcast_action(&entry, &what);
            if let (Some(tags), Some(action)) = (tags, action) {
                self.jobs.broadcasts.push(RawBroadcast {
                    id: entry.id,
                    code: entry.code,
                    tags,
                    action,
                    origin: entry.origin,
                });
            }
        }
    }

    /// Exactly one of `a` (with optional `buttons`) and `state`.
    fn broadcast_action(&mut self, entry: &Entry<'_>, what: &str) -> Option<RawBroadcastAction> {
        let a = entry.map.get_node("a");
        let buttons = entry.map.get_node("buttons");
        let state = entry.map.get_node("state");
        let alternatives = "a broadcast either sends a message (`a:`, optionally with `buttons:`) \
                            or runs a state (`state: /Name`)";
        if a.is_some() && state.is_some() {
            let key = key_of(entry.map, "state");
            self.cx.error(
                key,
                format!("{what} has both `a` and `state`"),
                format!("{alternatives}; keep one of them"),
            );
            return None;
        }
        if let (None, Some(_)) = (a, buttons) {
            let key = key_of(entry.map, "buttons");
            self.cx.error(
                key,
                format!("`buttons` without `a` in {what}"),
                "buttons go with a message: add `a:` with its text",
            );
            return None;
        }
        match (a, state) {
            (Some(a), _) => {
                let text = self.cx.string(a, "`a`");
                let text = text.and_then(|s| self.template(s));
                let buttons = match buttons {
                    Some(b) => self.buttons(b),
                    None => Some(Vec::new()),
                };
                Some(RawBroadcastAction::Message {
                    text: text?,
                    buttons: buttons?,
                })
            }
            (None, Some(state)) => self.state_ref(state, what).map(RawBroadcastAction::State),
            (None, None) => {
                self.cx.error(
                    entry.key.span(),
                    format!("{what} needs `a` or `state`"),
                    alternatives,
                );
                None
            }
        }
    }

    /// `tags: {all, any, none}`, each a tag or a list of tags.
    fn tag_filter(&mut self, node: &Node, what: &str) -> Option<TagFilter> {
        if matches!(node, Node::Scalar(s) if is_null(s)) {
            return Some(TagFilter::default());
        }
        let Node::Mapping(map) = node else {
            self.cx.error(
                node.span(),
                format!(
                    "`tags` of {what} must be a mapping, not {}",
                    yaml::shape(node)
                ),
                "for example `tags: {all: [subscribed], none: [unsubscribed]}`",
            );
            return None;
        };
        let mut filter = TagFilter::default();
        let mut ok = true;
        for (k, v) in map.iter() {
            let list = match k.as_str() {
                "all" => &mut filter.all,
                "any" => &mut filter.any,
                "none" => &mut filter.none,
                other => {
                    self.cx.error(
                        k.span(),
                        format!("unknown key `{other}` in `tags` of {what}"),
                        hints::did_you_mean(other, TAG_KEYS),
                    );
                    ok = false;
                    continue;
                }
            };
            match tag_list(v) {
                Ok(tags) => *list = tags,
                Err(bad) => {
                    self.cx.error(
                        bad.span(),
                        format!(
                            "`tags.{}` of {what} must be a tag or a list of tags, not {}",
                            k.as_str(),
                            describe(bad)
                        ),
                        format!("for example `{}: [subscribed, vip]`", k.as_str()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(filter)
    }

    /// A state reference (`state:`), kept as written for the second pass.
    fn state_ref(&mut self, node: &Node, what: &str) -> Option<StateRef> {
        let s = self.cx.string(node, &format!("`state` of {what}"))?;
        let target = s.as_str().trim();
        if target.is_empty() {
            self.cx.error(
                s.span(),
                format!("`state` of {what} is empty"),
                "write the state's path, e.g. `state: /Reminder`",
            );
            return None;
        }
        Some(StateRef {
            target: target.to_string(),
            origin: self.cx.origin(s.span()),
        })
    }

    /// The value of `key`, or `None` after reporting that it is missing.
    fn required<'n>(&mut self, entry: &Entry<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let node = entry.map.get_node(key);
        if node.is_none() {
            self.cx.error(
                entry.key.span(),
                format!("{what} needs `{key}`"),
                format!("for example `{key}: {}`", example_value(key)),
            );
        }
        node
    }

    /// The entries of one section with a valid code and id. Entries with other problems are
    /// reported and skipped.
    fn entries<'n>(&mut self, node: &'n Node, section: Section) -> Vec<Entry<'n>> {
        let name = section.key();
        let map = match node {
            Node::Scalar(s) if is_null(s) => return Vec::new(),
            Node::Mapping(m) => m,
            other => {
                self.cx.error(
                    other.span(),
                    format!(
                        "`{name}` must be a mapping of codes to entries, not {}",
                        yaml::shape(other)
                    ),
                    format!(
                        "key each entry by its code: `{name}:` then `  {}`",
                        section.example()
                    ),
                );
                return Vec::new();
            }
        };
        let mut seen: BTreeMap<i64, String> = BTreeMap::new();
        let mut out = Vec::new();
        for (key, value) in map.iter() {
            let Some(entry) = self.entry(section, key, value) else {
                continue;
            };
            if let Some(first) = seen.get(&entry.id) {
                let at = entry.map.get_node("id").map_or(key.span(), Node::span);
                self.cx.error(
                    at,
                    format!(
                        "id {} of {} `{}` is already used by {} `{first}`",
                        entry.id,
                        section.noun(),
                        entry.code,
                        section.noun()
                    ),
                    format!("ids must be unique within `{name}:`; pick another number"),
                );
                continue;
            }
            seen.insert(entry.id, entry.code.clone());
            out.push(entry);
        }
        out
    }

    /// One entry: its code, a mapping with only the section's keys, and an `id`.
    fn entry<'n>(
        &mut self,
        section: Section,
        key: &'n MarkedScalarNode,
        value: &'n Node,
    ) -> Option<Entry<'n>> {
        let code = key.as_str();
        let noun = section.noun();
        let mut ok = valid_code(code);
        if !ok {
            self.cx.error(
                key.span(),
                format!("`{code}` is not a valid {noun} code"),
                "a code is made of letters, digits, `_`, `.` and `-`",
            );
        }
        let Node::Mapping(map) = value else {
            let at = match value {
                Node::Scalar(s) if is_null(s) => key.span(),
                other => other.span(),
            };
            self.cx.error(
                at,
                format!(
                    "{noun} `{code}` must be a mapping, not {}",
                    yaml::shape(value)
                ),
                format!("for example `{}`", section.example()),
            );
            return None;
        };
        for (k, v) in map.iter() {
            if !section.keys().contains(&k.as_str()) {
                self.cx.error(
                    k.span(),
                    format!("unknown key `{}` in {noun} `{code}`", k.as_str()),
                    hints::did_you_mean(k.as_str(), section.keys()),
                );
                ok = false;
            } else if k.as_str() != "tags" && matches!(v, Node::Scalar(s) if is_null(s)) {
                self.cx.error(
                    k.span(),
                    format!("`{}` in {noun} `{code}` has no value", k.as_str()),
                    "write the value after the colon, or remove the key",
                );
                ok = false;
            }
        }
        let what = format!("{noun} `{code}`");
        let id = match map.get_node("id") {
            Some(n) => self.job_id(n, &what),
            None => {
                self.cx.error(
                    key.span(),
                    format!("{what} needs `id`"),
                    "give it a whole number ≥ 1 that no other entry of this section uses, \
                     e.g. `id: 1`",
                );
                None
            }
        };
        Some(Entry {
            key,
            code: code.to_string(),
            id: id.filter(|_| ok)?,
            map,
            origin: self.cx.origin(key.span()),
        })
    }

    /// `id`: a whole number ≥ 1.
    fn job_id(&mut self, node: &Node, what: &str) -> Option<i64> {
        let parsed = match node {
            Node::Scalar(s) if !is_null(s) => s.as_str().trim().parse::<i64>().ok(),
            _ => None,
        };
        if let Some(id) = parsed.filter(|id| *id >= 1) {
            return Some(id);
        }
        self.cx.error(
            node.span(),
            format!(
                "`id` of {what} must be a whole number ≥ 1, not {}",
                describe(node)
            ),
            "write a number such as `id: 1`",
        );
        None
    }
}

/// `[A-Za-z0-9_.-]+`.
fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A tag or a list of tags (nothing is an empty list); the offending node otherwise.
fn tag_list(node: &Node) -> Result<Vec<String>, &Node> {
    let tag = |n: &Node| match n {
        Node::Scalar(s) if !is_null(s) && !s.as_str().trim().is_empty() => {
            Some(s.as_str().trim().to_string())
        }
        _ => None,
    };
    match node {
        Node::Scalar(s) if is_null(s) => Ok(Vec::new()),
        Node::Sequence(seq) => seq.iter().map(|n| tag(n).ok_or(n)).collect(),
        other => tag(other).map(|t| vec![t]).ok_or(other),
    }
}

/// `` `text` `` for a scalar, its shape otherwise.
fn describe(node: &Node) -> String {
    match node {
        Node::Scalar(s) if !is_null(s) && s.as_str().trim().is_empty() => {
            "an empty string".to_string()
        }
        Node::Scalar(s) if !is_null(s) => format!("`{}`", s.as_str()),
        other => yaml::shape(other).to_string(),
    }
}

/// The span of `key`'s key in `map` (the mapping's own span if absent).
fn key_of<'m>(map: &'m MarkedMappingNode, key: &str) -> &'m Span {
    map.iter()
        .find(|(k, _)| k.as_str() == key)
        .map_or(map.span(), |(k, _)| k.span())
}

fn example_value(key: &str) -> &'static str {
    match key {
        "state" => "/Reminder",
        "script" => "|` followed by indented JavaScript, or `script: {file: nudge.js}",
        _ => "1",
    }
}
