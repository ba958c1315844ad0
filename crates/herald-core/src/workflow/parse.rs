//! The `workflows/<id>.yaml` loader. Like the bot loader it collects every problem of the file
//! with its line, column and a hint, instead of stopping at the first.

use std::path::Path;
use std::sync::Arc;

use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};

use super::{Amount, Cta, Delay, Step, StepKind, Unit, WorkflowDef};
use crate::bot::CodeCheck;
use crate::bot::hints;
use crate::bot::model::{Code, CodeId, CodeKind, Origin, Template};
use crate::bot::texts::split_template;
use crate::bot::yaml::{self, Ctx, is_null, shape, to_json};
use crate::diag::Diagnostic;
use crate::env;

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "tags",
    "payloadSchema",
    "on",
    "steps",
];
const STEP_TYPES: &[&str] = &[
    "chat", "in_app", "email", "webhook", "delay", "digest", "throttle",
];
const COMMON_KEYS: &[&str] = &["type", "stepId", "name", "if"];

fn keys_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "chat" => &["bot", "text", "event"],
        "in_app" => &["subject", "body", "cta"],
        "email" => &["subject", "body"],
        "webhook" => &["url", "secret", "body"],
        "delay" => &["amount", "unit", "delayPath"],
        "digest" => &["amount", "unit", "digestKey", "lookBack"],
        "throttle" => &["amount", "unit", "threshold", "key"],
        _ => &[],
    }
}

struct Builder<'a> {
    cx: Ctx<'a>,
    code: Vec<Code>,
    check: CodeCheck<'a>,
}

/// Parses one workflow file (already read as text). `id` is the file name without `.yaml`.
pub fn parse_workflow(
    id: &str,
    file: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    check: CodeCheck<'_>,
) -> Result<WorkflowDef, Vec<Diagnostic>> {
    let text = env::substitute(file, text, lookup)?;
    let root = yaml::load(file, &text).map_err(|d| vec![d])?;
    let mut b = Builder {
        cx: Ctx::new(file, &text),
        code: Vec::new(),
        check,
    };
    let mut def = WorkflowDef {
        id: id.to_owned(),
        name: id.to_owned(),
        payload_schema: None,
        steps: Vec::new(),
        on: Vec::new(),
        code: Vec::new(),
        file: file.to_path_buf(),
    };
    if let Some(top) = b.cx.mapping(&root, "the file") {
        b.top_level(top, &mut def);
    }
    def.code = std::mem::take(&mut b.code);
    let mut diags = b.cx.diags;
    if diags.is_empty() {
        Ok(def)
    } else {
        diags.sort_by_key(|d| (d.line, d.col));
        Err(diags)
    }
}

impl Builder<'_> {
    fn top_level(&mut self, top: &MarkedMappingNode, def: &mut WorkflowDef) {
        let mut has_steps = false;
        for (key, value) in top.iter() {
            match key.as_str() {
                "name" => {
                    if let Some(s) = self.cx.string(value, "`name`") {
                        def.name = s.as_str().to_owned();
                    }
                }
                "description" | "tags" => {}
                "payloadSchema" => def.payload_schema = self.schema(value),
                "on" => def.on = self.on(value),
                "steps" => {
                    has_steps = true;
                    def.steps = self.steps(value);
                }
                other => self.cx.error(
                    key.span(),
                    format!("unknown key `{other}` in a workflow"),
                    hints::did_you_mean(other, TOP_KEYS),
                ),
            }
        }
        if !has_steps {
            self.cx.error(
                top.span(),
                "a workflow needs `steps:`",
                "add `steps:` with at least one step, e.g. `- type: in_app` and `body: Hello`",
            );
        }
    }

    /// `on:` — one integration event or a list of them.
    fn on(&mut self, node: &Node) -> Vec<(String, Origin)> {
        let items: Vec<&Node> = match node {
            Node::Sequence(list) => list.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::new();
        for n in items {
            let Some(s) = self.cx.string(n, "each event of `on`") else {
                continue;
            };
            if !s.as_str().contains(':') {
                self.cx.error(
                    s.span(),
                    format!("`on: {}` is not an integration event", s.as_str()),
                    "name it as `<integration>:<event>`, e.g. `shopify:newOrderCreated`",
                );
                continue;
            }
            out.push((s.as_str().to_owned(), self.cx.origin(s.span())));
        }
        out
    }

    fn schema(&mut self, node: &Node) -> Option<Arc<jsonschema::Validator>> {
        let map = self.cx.mapping(node, "`payloadSchema`")?;
        match jsonschema::validator_for(&to_json(node)) {
            Ok(v) => Some(Arc::new(v)),
            Err(e) => {
                self.cx.error(
                    map.span(),
                    format!("`payloadSchema` is not a valid JSON Schema: {e}"),
                    "write a JSON Schema, e.g. `type: object` with `required:` and `properties:`",
                );
                None
            }
        }
    }

    fn steps(&mut self, node: &Node) -> Vec<Step> {
        let Node::Sequence(seq) = node else {
            self.cx.error(
                node.span(),
                format!("`steps` must be a list, not {}", shape(node)),
                "write each step as `- type: in_app` with its fields indented under it",
            );
            return Vec::new();
        };
        if seq.is_empty() {
            self.cx
                .error(node.span(), "`steps` is empty", "add at least one step");
        }
        let mut steps: Vec<Step> = Vec::new();
        for (n, item) in seq.iter().enumerate() {
            let Some(map) = self.cx.mapping(item, "a step") else {
                continue;
            };
            if let Some(step) = self.step(map, n + 1) {
                if steps.iter().any(|s| s.id == step.id) {
                    self.cx.error(
                        map.span(),
                        format!("two steps have the id `{}`", step.id),
                        "give each step its own `stepId`",
                    );
                }
                steps.push(step);
            }
        }
        steps
    }

    fn step(&mut self, map: &MarkedMappingNode, position: usize) -> Option<Step> {
        let origin = self.cx.origin(map.span());
        let Some(type_node) = map.get_node("type") else {
            self.cx.error(
                map.span(),
                "a step needs a `type`",
                format!("one of {}", hints::list(STEP_TYPES.iter().copied())),
            );
            return None;
        };
        let type_s = self.cx.string(type_node, "`type`")?;
        let kind_word = type_s.as_str();
        if !STEP_TYPES.contains(&kind_word) {
            self.cx.error(
                type_s.span(),
                format!("unknown step type `{kind_word}`"),
                hints::did_you_mean(kind_word, STEP_TYPES),
            );
            return None;
        }
        let allowed = keys_of(kind_word);
        for (key, _) in map.iter() {
            let k = key.as_str();
            if !COMMON_KEYS.contains(&k) && !allowed.contains(&k) {
                let mut all: Vec<&str> = COMMON_KEYS.to_vec();
                all.extend_from_slice(allowed);
                self.cx.error(
                    key.span(),
                    format!("unknown key `{k}` in a `{kind_word}` step"),
                    hints::did_you_mean(k, &all),
                );
            }
        }
        let id = match map.get_node("stepId").or_else(|| map.get_node("name")) {
            Some(n) => self.cx.string(n, "`stepId`")?.as_str().to_owned(),
            None => format!("{kind_word}-{position}"),
        };
        let condition = match map.get_node("if") {
            Some(n) => {
                let s = self.cx.string(n, "`if`")?;
                let at = self.cx.content_origin(s);
                Some(self.push_code(CodeKind::Expr, s.as_str().to_owned(), at))
            }
            None => None,
        };
        let kind = match kind_word {
            "chat" => self.chat(map)?,
            "in_app" => StepKind::InApp {
                subject: self.opt_template(map, "subject"),
                body: self.req_template(map, "body", "in_app")?,
                cta: self.cta(map),
            },
            "email" => StepKind::Email {
                subject: self.req_template(map, "subject", "email")?,
                body: self.req_template(map, "body", "email")?,
            },
            "webhook" => StepKind::Webhook {
                url: self.req_template(map, "url", "webhook")?,
                secret: self.opt_string(map, "secret"),
                body: self.opt_template(map, "body"),
            },
            "delay" => match map.get_node("delayPath") {
                Some(n) => {
                    if map.get_node("amount").is_some() {
                        self.cx.error(
                            n.span(),
                            "a delay has either `delayPath` or `amount` and `unit`, not both",
                            "remove one of them",
                        );
                    }
                    StepKind::Delay(Delay::Until(
                        self.cx.string(n, "`delayPath`")?.as_str().to_owned(),
                    ))
                }
                None => StepKind::Delay(Delay::For(self.amount(map, "delay")?)),
            },
            "digest" => StepKind::Digest {
                window: self.amount(map, "digest")?,
                key: self.opt_string(map, "digestKey"),
                look_back: match map.get_node("lookBack") {
                    Some(n) => {
                        let m = self.cx.mapping(n, "`lookBack`")?;
                        Some(self.amount(m, "lookBack")?)
                    }
                    None => None,
                },
            },
            "throttle" => StepKind::Throttle {
                window: self.amount(map, "throttle")?,
                threshold: self.whole(map, "threshold", "throttle")?,
                key: self.opt_string(map, "key"),
            },
            _ => return None,
        };
        Some(Step {
            id,
            kind,
            condition,
            origin,
        })
    }

    fn chat(&mut self, map: &MarkedMappingNode) -> Option<StepKind> {
        let Some(bot) = self.opt_string(map, "bot") else {
            self.cx.error(
                map.span(),
                "a `chat` step needs a `bot`",
                "name the bot (its directory under bots/) the message is sent with",
            );
            return None;
        };
        let text = self.opt_template(map, "text");
        let event = self.opt_string(map, "event");
        if text.is_some() == event.is_some() {
            self.cx.error(
                map.span(),
                "a `chat` step has either `text` or `event`",
                "`text` sends a message; `event` raises a bot event with the payload",
            );
            return None;
        }
        Some(StepKind::Chat { bot, text, event })
    }

    fn cta(&mut self, map: &MarkedMappingNode) -> Option<Cta> {
        let node = map.get_node("cta")?;
        match node {
            Node::Scalar(s) if !is_null(s) => Some(Cta {
                url: self.template(s)?,
                label: None,
            }),
            _ => {
                let m = self.cx.mapping(node, "`cta`")?;
                let Some(url) = m.get_scalar("url") else {
                    self.cx
                        .error(m.span(), "`cta` needs a `url`", "write `url: https://...`");
                    return None;
                };
                let url = self.template(url)?;
                let label = self.opt_template(m, "label");
                Some(Cta { url, label })
            }
        }
    }

    fn amount(&mut self, map: &MarkedMappingNode, what: &str) -> Option<Amount> {
        let amount = self.whole(map, "amount", what)?;
        let Some(unit_node) = map.get_node("unit") else {
            self.cx.error(
                map.span(),
                format!("`{what}` needs a `unit`"),
                format!("one of {}", hints::list(Unit::NAMES.iter().copied())),
            );
            return None;
        };
        let unit_s = self.cx.string(unit_node, "`unit`")?;
        let Some(unit) = Unit::parse(unit_s.as_str()) else {
            self.cx.error(
                unit_s.span(),
                format!("unknown unit `{}`", unit_s.as_str()),
                format!("one of {}", hints::list(Unit::NAMES.iter().copied())),
            );
            return None;
        };
        Some(Amount { amount, unit })
    }

    /// A whole number ≥ 1 under `key`.
    fn whole(&mut self, map: &MarkedMappingNode, key: &str, what: &str) -> Option<u32> {
        let Some(node) = map.get_node(key) else {
            self.cx.error(
                map.span(),
                format!("`{what}` needs `{key}`"),
                format!("write `{key}: 5`"),
            );
            return None;
        };
        let s = self.cx.string(node, &format!("`{key}`"))?;
        match s.as_str().trim().parse::<u32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                self.cx.error(
                    s.span(),
                    format!(
                        "`{key}` must be a whole number of at least 1, not `{}`",
                        s.as_str()
                    ),
                    "",
                );
                None
            }
        }
    }

    fn opt_string(&mut self, map: &MarkedMappingNode, key: &str) -> Option<String> {
        let node = map.get_node(key)?;
        let s = self.cx.string(node, &format!("`{key}`"))?;
        Some(s.as_str().to_owned())
    }

    fn opt_template(&mut self, map: &MarkedMappingNode, key: &str) -> Option<Template> {
        let node = map.get_node(key)?;
        let s = self.cx.string(node, &format!("`{key}`"))?;
        self.template(s)
    }

    fn req_template(&mut self, map: &MarkedMappingNode, key: &str, what: &str) -> Option<Template> {
        if map.get_node(key).is_none() {
            self.cx.error(
                map.span(),
                format!("a `{what}` step needs `{key}`"),
                format!("write `{key}:` with a text; `{{{{ payload.x }}}}` inserts a value"),
            );
            return None;
        }
        self.opt_template(map, key)
    }

    fn template(&mut self, s: &MarkedScalarNode) -> Option<Template> {
        let (code, check) = (&mut self.code, self.check);
        let mut found = Vec::new();
        let t = split_template(&mut self.cx, s, &mut |kind, source, origin| {
            push(code, check, &mut found, kind, source, origin)
        });
        self.cx.diags.extend(found);
        t
    }

    fn push_code(&mut self, kind: CodeKind, source: String, origin: Origin) -> CodeId {
        let mut found = Vec::new();
        let id = push(&mut self.code, self.check, &mut found, kind, source, origin);
        self.cx.diags.extend(found);
        id
    }
}

fn push(
    code: &mut Vec<Code>,
    check: CodeCheck<'_>,
    diags: &mut Vec<Diagnostic>,
    kind: CodeKind,
    source: String,
    origin: Origin,
) -> CodeId {
    let item = Code {
        kind,
        source,
        origin,
    };
    if let Some(d) = check(&item) {
        diags.push(d);
    }
    code.push(item);
    CodeId(code.len() - 1)
}
