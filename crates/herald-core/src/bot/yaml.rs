//! Helpers over `marked-yaml` nodes: positions, shape checks, YAML → JSON conversion and the
//! parse context that collects diagnostics.
//!
//! The document is loaded with coercion limited to plain scalars, so a quoted `"true"` stays a
//! string while a plain `true` may become a boolean where a value is typed (`noContext`,
//! `injector`).

use std::path::{Path, PathBuf};

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node, Span};
use serde_json::Value;

use crate::bot::model::Origin;
use crate::diag::Diagnostic;

/// Everything the first pass needs besides the node at hand.
pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
    /// The substituted text, line by line, to tell block scalars from the others.
    pub lines: Vec<&'a str>,
    pub diags: Vec<Diagnostic>,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            lines: text.lines().collect(),
            diags: Vec::new(),
        }
    }

    /// Records a problem at `span` (the node's start).
    pub fn error(&mut self, span: &Span, message: impl Into<String>, hint: impl Into<String>) {
        let (line, col) = start(span);
        let hint = hint.into();
        let mut d = Diagnostic::new(self.file, line, col, message);
        if !hint.is_empty() {
            d = d.with_hint(hint);
        }
        self.diags.push(d);
    }

    pub fn origin(&self, span: &Span) -> Origin {
        let (line, col) = start(span);
        Origin {
            file: self.file.to_path_buf(),
            line,
            col,
        }
    }

    /// Where the text of a scalar starts: for a block scalar (`|`, `>`) the first content line,
    /// at its indentation; otherwise the scalar itself (after the opening quote, if any).
    pub fn content_origin(&self, scalar: &MarkedScalarNode) -> Origin {
        let (line, col) = start(scalar.span());
        let at = self
            .lines
            .get(line.wrapping_sub(1))
            .and_then(|l| l.chars().nth(col.wrapping_sub(1)));
        let (line, col) = match at {
            Some('|' | '>') => {
                let next = self.lines.get(line).copied().unwrap_or("");
                let indent = next.chars().take_while(|c| *c == ' ').count();
                (line + 1, indent + 1)
            }
            Some('"' | '\'') => (line, col + 1),
            _ => (line, col),
        };
        Origin {
            file: self.file.to_path_buf(),
            line,
            col,
        }
    }

    /// A mapping, or `None` after recording "`what` must be a mapping".
    pub fn mapping<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n MarkedMappingNode> {
        match node {
            Node::Mapping(m) => Some(m),
            other => {
                self.error(
                    other.span(),
                    format!("{what} must be a mapping, not {}", shape(other)),
                    "write `key: value` pairs, indented under it",
                );
                None
            }
        }
    }

    /// A non-null string scalar, or `None` after recording a diagnostic.
    pub fn string<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n MarkedScalarNode> {
        match node {
            Node::Scalar(s) if !is_null(s) => Some(s),
            other => {
                self.error(
                    other.span(),
                    format!("{what} must be a string, not {}", shape(other)),
                    "",
                );
                None
            }
        }
    }
}

/// 1-based line and column of a span's start (0, 0 when unknown).
pub(crate) fn start(span: &Span) -> (usize, usize) {
    span.start().map_or((0, 0), |m| (m.line(), m.column()))
}

/// "a mapping", "a list", "a string" or "nothing", for messages.
pub(crate) fn shape(node: &Node) -> &'static str {
    match node {
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
        Node::Scalar(s) if is_null(s) => "nothing",
        Node::Scalar(_) => "a string",
    }
}

/// A plain `~`, `null` or empty value.
pub(crate) fn is_null(s: &MarkedScalarNode) -> bool {
    s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// Parses the text into a node tree; duplicate keys are errors.
pub(crate) fn load(file: &Path, text: &str) -> Result<Node, Diagnostic> {
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| load_error(file, &e))
}

fn load_error(file: &Path, e: &LoadError) -> Diagnostic {
    let at = |m: &marked_yaml::Marker| (m.line(), m.column());
    let (pos, message, hint) = match e {
        LoadError::TopLevelMustBeMapping(m) => (
            at(m),
            "the file must be a mapping of keys (`name:`, `states:`, ...)".to_string(),
            "start with `name: My bot` and `states:`",
        ),
        LoadError::TopLevelMustBeSequence(m) => (at(m), "expected a list".into(), ""),
        LoadError::UnexpectedAnchor(m) => (
            at(m),
            "YAML anchors and aliases (`&name`, `*name`) are not supported".into(),
            "repeat the value instead",
        ),
        LoadError::MappingKeyMustBeScalar(m) => (
            at(m),
            "a mapping key must be a plain string".into(),
            "quote the key if it contains `{`, `[` or `:`",
        ),
        LoadError::UnexpectedTag(m) => (
            at(m),
            "YAML tags (`!tag`, `!!str`) are not supported".into(),
            "remove the tag; quote the value to keep it as a string",
        ),
        LoadError::ScanError(m, se) => (
            at(m),
            format!("YAML syntax error: {}", se.info()),
            "check the indentation and quoting around this place",
        ),
        LoadError::DuplicateKey(inner) => (
            start(inner.key.span()),
            format!(
                "duplicate key `{}` (first written on line {})",
                inner.key.as_str(),
                start(inner.prev_key.span()).0
            ),
            "remove or rename one of them",
        ),
    };
    let mut d = Diagnostic::new(PathBuf::from(file), pos.0, pos.1, message);
    if !hint.is_empty() {
        d = d.with_hint(hint);
    }
    d
}

/// YAML → JSON for free-form configuration (`injector:`, channel settings). Plain scalars become
/// `null`, booleans and numbers when they look like one; quoted and block scalars stay strings.
pub(crate) fn to_json(node: &Node) -> Value {
    match node {
        Node::Scalar(s) => scalar_to_json(s),
        Node::Sequence(seq) => Value::Array(seq.iter().map(to_json).collect()),
        Node::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().to_string(), to_json(v)))
                .collect(),
        ),
    }
}

fn scalar_to_json(s: &MarkedScalarNode) -> Value {
    let text = s.as_str();
    if !s.may_coerce() {
        return Value::String(text.to_string());
    }
    if is_null(s) {
        return Value::Null;
    }
    if let Some(b) = s.as_bool() {
        return Value::Bool(b);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    // `007` stays a string: leading zeros are identifiers (zip codes, phone numbers), not numbers.
    let leading_zero = digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.");
    let numeric = !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if numeric && !leading_zero {
        if let Ok(i) = text.parse::<i64>() {
            return Value::from(i);
        }
        if let Some(n) = text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}
