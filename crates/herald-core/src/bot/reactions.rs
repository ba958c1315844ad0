//! Reactions: `a`, `buttons`, `script` (inline or `{file: ...}`), `if`/`then`/`else`
//! and `go`, both as state shorthand keys and as `do:` items. `go` targets stay unresolved
//! ([`RawReaction::Go`]) until every state is known.

use std::path::Component;

use marked_yaml::Node;

use super::hints;
use super::model::{Button, Code, CodeId, CodeKind, Origin, Template};
use super::parse::Builder;
use super::yaml::{self, is_null};

const ITEM_KEYS: &[&str] = &["a", "buttons", "script", "go", "if"];

/// A reaction as written; `Go` keeps the target text and where it was written.
#[derive(Debug)]
pub(crate) enum RawReaction {
    Answer(Template),
    Buttons(Vec<Button>),
    Script(CodeId),
    If {
        cond: CodeId,
        then: Vec<RawReaction>,
        otherwise: Vec<RawReaction>,
    },
    Go {
        target: String,
        origin: Origin,
    },
}

impl Builder<'_> {
    /// `a`, `buttons`, `script` or `go` with its value.
    pub(crate) fn shorthand(&mut self, key: &str, node: &Node) -> Option<RawReaction> {
        match key {
            "a" => {
                let s = self.cx.string(node, "`a`")?;
                self.template(s).map(RawReaction::Answer)
            }
            "buttons" => self.buttons(node).map(RawReaction::Buttons),
            "script" => self.script(node).map(RawReaction::Script),
            _ => {
                let s = self.cx.string(node, "`go`")?;
                Some(RawReaction::Go {
                    target: s.as_str().trim().to_string(),
                    origin: self.cx.origin(s.span()),
                })
            }
        }
    }

    /// A list of reaction items (`do:`, `then:`, `else:`).
    pub(crate) fn reaction_list(&mut self, node: &Node, what: &str) -> Vec<RawReaction> {
        let Node::Sequence(seq) = node else {
            self.cx.error(
                node.span(),
                format!(
                    "{what} must be a list of reactions, not {}",
                    yaml::shape(node)
                ),
                "write each reaction on its own line starting with `- `, e.g. `- a: Hello`",
            );
            return Vec::new();
        };
        seq.iter()
            .filter_map(|item| self.reaction_item(item))
            .collect()
    }

    /// One item: a mapping with exactly one of `a`, `buttons`, `script`, `go`, or `if` with
    /// `then` (and optionally `else`).
    fn reaction_item(&mut self, node: &Node) -> Option<RawReaction> {
        let map = self.cx.mapping(node, "a reaction")?;
        let hint = "a reaction is one of `a: text`, `buttons: [...]`, `script: ...`, `go: State`, \
                    or `if: condition` with `then:` (and `else:`)";
        if let Some(cond) = map.get_node("if") {
            for (k, _) in map.iter() {
                if !matches!(k.as_str(), "if" | "then" | "else") {
                    let h = hints::did_you_mean(k.as_str(), &["if", "then", "else"]);
                    self.cx.error(
                        k.span(),
                        format!("unknown key `{}` in an `if` reaction", k.as_str()),
                        h,
                    );
                }
            }
            let cond_s = self.cx.string(cond, "`if`");
            let cond = cond_s.map(|s| {
                let origin = self.cx.content_origin(s);
                self.push_code(CodeKind::Expr, s.as_str().trim().to_string(), origin)
            });
            let then = match map.get_node("then") {
                Some(n) => self.reaction_list(n, "`then`"),
                None => {
                    self.cx.error(
                        map.span(),
                        "`if` needs a `then:` list",
                        "add `then:` with the reactions to run when the condition holds",
                    );
                    Vec::new()
                }
            };
            let otherwise = match map.get_node("else") {
                Some(n) => self.reaction_list(n, "`else`"),
                None => Vec::new(),
            };
            return Some(RawReaction::If {
                cond: cond?,
                then,
                otherwise,
            });
        }
        let mut keys = map.iter();
        let (Some((key, value)), None) = (keys.next(), keys.next()) else {
            let message = if map.is_empty() {
                "an empty reaction".to_string()
            } else {
                let names: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
                format!(
                    "a reaction must have exactly one key, found {}",
                    hints::list(names)
                )
            };
            self.cx.error(
                map.span(),
                message,
                format!("{hint}; use a new `- ` item for each"),
            );
            return None;
        };
        match key.as_str() {
            k @ ("a" | "buttons" | "script" | "go") if matches!(value, Node::Scalar(v) if is_null(v)) =>
            {
                self.cx.error(
                    key.span(),
                    format!("`{k}` has no value"),
                    "write the value after the colon, or remove the item",
                );
                None
            }
            k @ ("a" | "buttons" | "script" | "go") => self.shorthand(k, value),
            k => {
                self.cx.error(
                    key.span(),
                    format!("unknown reaction `{k}`"),
                    format!("{}; {hint}", hints::did_you_mean(k, ITEM_KEYS)),
                );
                None
            }
        }
    }

    /// `script: |` body, or `script: {file: name.js}` relative to the bot directory.
    pub(crate) fn script(&mut self, node: &Node) -> Option<CodeId> {
        if let Node::Scalar(_) = node {
            let s = self.cx.string(node, "`script`")?;
            let origin = self.cx.content_origin(s);
            return Some(self.push_code(CodeKind::Body, s.as_str().to_string(), origin));
        }
        let Node::Mapping(m) = node else {
            self.cx.error(
                node.span(),
                "`script` must be JavaScript text or `{file: name.js}`",
                "write `script: |` followed by indented code",
            );
            return None;
        };
        for (k, _) in m.iter() {
            if k.as_str() != "file" {
                self.cx.error(
                    k.span(),
                    format!("unknown key `{}` in `script`", k.as_str()),
                    "only `file:` is allowed here",
                );
            }
        }
        let Some(name_node) = m.get_node("file") else {
            self.cx.error(
                m.span(),
                "`script` needs `file:`",
                "write `script: {file: name.js}`",
            );
            return None;
        };
        let name = self.cx.string(name_node, "`file`")?;
        let rel = std::path::Path::new(name.as_str());
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            self.cx.error(
                name.span(),
                format!(
                    "script file `{}` must be inside the bot directory",
                    name.as_str()
                ),
                "use a path relative to the directory of bot.yaml, without `..`",
            );
            return None;
        }
        let path = self.dir.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(body) => {
                let origin = Origin {
                    file: path,
                    line: 1,
                    col: 1,
                };
                Some(self.push_code(CodeKind::Body, body, origin))
            }
            Err(e) => {
                self.cx.error(
                    name.span(),
                    format!("cannot read script file `{}`: {e}", path.display()),
                    "the path is relative to the directory of bot.yaml",
                );
                None
            }
        }
    }

    pub(crate) fn push_code(&mut self, kind: CodeKind, source: String, origin: Origin) -> CodeId {
        let code = Code {
            kind,
            source,
            origin,
        };
        if let Some(d) = (self.check)(&code) {
            self.cx.diags.push(d);
        }
        self.code.push(code);
        CodeId(self.code.len() - 1)
    }
}
