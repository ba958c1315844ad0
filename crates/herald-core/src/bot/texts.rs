//! Texts shown to the user: `a` templates with `{{ expr }}` holes and `buttons` captions.

use marked_yaml::Node;
use marked_yaml::types::MarkedScalarNode;

use super::hints;
use super::model::{Button, Code, CodeId, CodeKind, Origin, Template, TemplatePart};
use super::parse::Builder;
use super::yaml::{self, Ctx, is_null};
use crate::diag::Diagnostic;

impl Builder<'_> {
    pub(crate) fn buttons(&mut self, node: &Node) -> Option<Vec<Button>> {
        let Node::Sequence(seq) = node else {
            self.cx.error(
                node.span(),
                format!("`buttons` must be a list, not {}", yaml::shape(node)),
                "for example `buttons: [\"Yes\", \"No\"]`",
            );
            return None;
        };
        let mut out = Vec::new();
        for item in seq.iter() {
            match item {
                Node::Scalar(s) if !is_null(s) => {
                    if let Some(text) = self.template(s) {
                        out.push(Button { id: None, text });
                    }
                }
                Node::Mapping(m) => {
                    for (k, _) in m.iter() {
                        if !matches!(k.as_str(), "id" | "text") {
                            let h = hints::did_you_mean(k.as_str(), &["id", "text"]);
                            self.cx.error(
                                k.span(),
                                format!("unknown key `{}` in a button", k.as_str()),
                                h,
                            );
                        }
                    }
                    let id = m
                        .get_node("id")
                        .and_then(|n| self.cx.string(n, "a button `id`"));
                    let text = match m.get_node("text") {
                        Some(n) => self
                            .cx
                            .string(n, "a button `text`")
                            .and_then(|s| self.template(s)),
                        None => {
                            self.cx.error(
                                m.span(),
                                "a button needs a `text`",
                                "write `{id: yes, text: \"Yes\"}`",
                            );
                            None
                        }
                    };
                    if let Some(text) = text {
                        out.push(Button {
                            id: id.map(|s| s.as_str().to_string()),
                            text,
                        });
                    }
                }
                other => self.cx.error(
                    other.span(),
                    format!(
                        "a button must be a caption or `{{id, text}}`, not {}",
                        yaml::shape(other)
                    ),
                    "",
                ),
            }
        }
        Some(out)
    }

    /// Splits `{{ expr }}` holes out of a text.
    pub(crate) fn template(&mut self, s: &MarkedScalarNode) -> Option<Template> {
        let (code, check) = (&mut self.code, self.check);
        let mut found = Vec::new();
        let t = split_template(&mut self.cx, s, &mut |kind, source, origin| {
            let code_item = Code {
                kind,
                source,
                origin,
            };
            if let Some(d) = check(&code_item) {
                found.push(d);
            }
            code.push(code_item);
            CodeId(code.len() - 1)
        });
        self.cx.diags.extend(found);
        t
    }
}

/// Splits `{{ expr }}` holes out of a scalar's text; `push` stores each expression and names it.
pub(crate) fn split_template(
    cx: &mut Ctx<'_>,
    s: &MarkedScalarNode,
    push: &mut dyn FnMut(CodeKind, String, Origin) -> CodeId,
) -> Option<Template> {
    let text = s.as_str();
    let base = cx.content_origin(s);
    let mut parts = Vec::new();
    let mut rest = text;
    let mut consumed = 0;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(TemplatePart::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let at = offset_origin(&base, &text[..consumed + open]);
        let Some(close) = after.find("}}") else {
            let d = Diagnostic::new(&at.file, at.line, at.col, "`{{` is not closed")
                .with_hint("close the expression with `}}`, e.g. `{{ payload.name }}`");
            cx.diags.push(d);
            return None;
        };
        let expr = after[..close].trim();
        if expr.is_empty() {
            let d = Diagnostic::new(&at.file, at.line, at.col, "empty `{{ }}` in a text")
                .with_hint("put a JavaScript expression inside, e.g. `{{ payload.name }}`");
            cx.diags.push(d);
            return None;
        }
        let code = push(CodeKind::Expr, expr.to_string(), at);
        parts.push(TemplatePart::Expr(code));
        consumed += open + 2 + close + 2;
        rest = &text[consumed..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_string()));
    }
    Some(Template { parts })
}

/// `base` moved past `before` (text of the same scalar): lines counted, column within the line.
pub(crate) fn offset_origin(base: &Origin, before: &str) -> Origin {
    match before.rfind('\n') {
        Some(nl) => Origin {
            file: base.file.clone(),
            line: base.line + before.matches('\n').count(),
            col: base.col + before[nl + 1..].chars().count(),
        },
        None => Origin {
            file: base.file.clone(),
            line: base.line,
            col: base.col + before.chars().count(),
        },
    }
}
