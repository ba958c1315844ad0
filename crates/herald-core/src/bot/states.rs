//! States and their triggers: `states:` maps (nested), `q`, `intent`, `event` (with or without
//! `!`), `noContext`, and the dispatch of reaction keys to [`super::reactions`].

use marked_yaml::Node;
use marked_yaml::types::MarkedScalarNode;

use super::hints;
use super::model::{Pattern, RESERVED_EVENTS, State, StateId, Trigger, TriggerKind};
use super::parse::Builder;
use super::yaml::{self, is_null};

const STATE_KEYS: &[&str] = &[
    "q",
    "q!",
    "intent",
    "intent!",
    "event",
    "event!",
    "a",
    "buttons",
    "script",
    "go",
    "do",
    "states",
    "noContext",
];

impl Builder<'_> {
    /// A `states:` mapping: the children of `parent` (top-level states for `None`).
    pub(crate) fn states(&mut self, node: &Node, parent: Option<StateId>) {
        if matches!(node, Node::Scalar(s) if is_null(s)) {
            return;
        }
        let Some(map) = self.cx.mapping(node, "`states`") else {
            return;
        };
        for (key, value) in map.iter() {
            self.state(key, value, parent);
        }
    }

    fn state(&mut self, key: &MarkedScalarNode, node: &Node, parent: Option<StateId>) {
        let name = key.as_str();
        if name.trim().is_empty() || name.contains('/') || name == "." || name == ".." {
            self.cx.error(
                key.span(),
                format!("`{name}` is not a valid state name"),
                "state names may not be empty, `.`, `..` or contain `/` (it separates path steps)",
            );
            return;
        }
        let id = StateId(self.states.len());
        let path = match parent {
            Some(p) => format!("{}/{name}", self.states[p.0].path),
            None => format!("/{name}"),
        };
        self.states.push(State {
            id,
            name: name.to_string(),
            path,
            parent,
            children: Vec::new(),
            no_context: false,
            triggers: Vec::new(),
            reactions: Vec::new(),
            origin: self.cx.origin(key.span()),
        });
        self.raw.push(Vec::new());
        match parent {
            Some(p) => self.states[p.0].children.push(id),
            None => self.roots.push(id),
        }
        if matches!(node, Node::Scalar(s) if is_null(s)) {
            return;
        }
        let Some(map) = self.cx.mapping(node, &format!("state `{name}`")) else {
            return;
        };
        for (k, value) in map.iter() {
            if matches!(value, Node::Scalar(v) if is_null(v)) && k.as_str() != "states" {
                self.cx.error(
                    k.span(),
                    format!("`{}` in state `{name}` has no value", k.as_str()),
                    "write the value after the colon, or remove the key",
                );
                continue;
            }
            match k.as_str() {
                t @ ("q" | "q!" | "intent" | "intent!" | "event" | "event!") => {
                    self.triggers(t, value, id);
                }
                r @ ("a" | "buttons" | "script" | "go") => {
                    if let Some(reaction) = self.shorthand(r, value) {
                        self.raw[id.0].push(reaction);
                    }
                }
                "do" => {
                    let list = self.reaction_list(value, "`do`");
                    self.raw[id.0].extend(list);
                }
                "states" => self.states(value, Some(id)),
                "noContext" => match value.as_scalar().and_then(|s| s.as_bool()) {
                    Some(v) => self.states[id.0].no_context = v,
                    None => self.cx.error(
                        value.span(),
                        match value {
                            Node::Scalar(v) => format!(
                                "`noContext` must be `true` or `false`, not `{}`",
                                v.as_str()
                            ),
                            _ => format!(
                                "`noContext` must be `true` or `false`, not {}",
                                yaml::shape(value)
                            ),
                        },
                        "",
                    ),
                },
                other => self.cx.error(
                    k.span(),
                    format!("unknown key `{other}` in state `{name}`"),
                    hints::did_you_mean(other, STATE_KEYS),
                ),
            }
        }
    }

    /// One trigger key (`q`, `intent!`, ...) of state `id`: a string or a list of strings.
    fn triggers(&mut self, key: &str, node: &Node, id: StateId) {
        let global = key.ends_with('!');
        let kind = key.trim_end_matches('!');
        let bad_shape = |b: &mut Self, n: &Node| {
            b.cx.error(
                n.span(),
                format!(
                    "trigger `{key}` must be a string or a list of strings, not {}",
                    yaml::shape(n)
                ),
                format!("for example `{key}: \"hello\"` or `{key}: [\"hello\", \"hi\"]`"),
            );
        };
        let items: Vec<&MarkedScalarNode> = match node {
            Node::Scalar(s) if !is_null(s) => vec![s],
            Node::Sequence(seq) if !seq.is_empty() => {
                let mut items = Vec::new();
                for item in seq.iter() {
                    match item {
                        Node::Scalar(s) if !is_null(s) => items.push(s),
                        other => bad_shape(self, other),
                    }
                }
                items
            }
            other => return bad_shape(self, other),
        };
        for s in items {
            let origin = self.cx.origin(s.span());
            let value = s.as_str();
            let kind = match kind {
                "q" => self.phrase(s).map(TriggerKind::Phrase),
                "intent" => self.intent_ref(s).map(TriggerKind::Intent),
                _ => self
                    .event_name(s)
                    .map(|()| TriggerKind::Event(value.to_string())),
            };
            if let Some(kind) = kind {
                self.states[id.0].triggers.push(Trigger {
                    global,
                    kind,
                    origin,
                });
            }
        }
    }

    fn phrase(&mut self, s: &MarkedScalarNode) -> Option<Pattern> {
        match Pattern::compile(s.as_str()) {
            Ok(p) => Some(p),
            Err(e) => {
                self.cx.error(s.span(), e.message, e.hint);
                None
            }
        }
    }

    fn intent_ref(&mut self, s: &MarkedScalarNode) -> Option<usize> {
        let name = s.as_str();
        if let Some(i) = self.intents.iter().position(|i| i.name == name) {
            return Some(i);
        }
        let names: Vec<&str> = self.intents.iter().map(|i| i.name.as_str()).collect();
        let hint = match hints::closest(name, names.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None if names.is_empty() => {
                format!(
                    "declare it at the top level: `intents:` then `  {name}: [\"example phrase\"]`"
                )
            }
            None => format!("declared intents: {}", hints::list(names.iter().copied())),
        };
        self.cx
            .error(s.span(), format!("unknown intent `{name}`"), hint);
        None
    }

    fn event_name(&mut self, s: &MarkedScalarNode) -> Option<()> {
        let name = s.as_str();
        if name.trim().is_empty() {
            self.cx.error(
                s.span(),
                "an event name must not be empty",
                "write the name of the event, e.g. `event!: newNotification`",
            );
            return None;
        }
        let near = RESERVED_EVENTS
            .iter()
            .find(|r| r.eq_ignore_ascii_case(name) && **r != name);
        if let Some(r) = near {
            self.cx.error(
                s.span(),
                format!("`{name}` is not a system event"),
                format!("did you mean `{r}`? (event names are case-sensitive)"),
            );
            return None;
        }
        Some(())
    }
}
