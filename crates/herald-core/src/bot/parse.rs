//! The top level of `bot.yaml`: `name`, `token`, `channels`, `injector`, `intents`, `states`,
//! `timezone` (checked against the time zone database), the job sections (`scripts`, `triggers`,
//! `broadcasts`, parsed in [`super::jobs`]), and the [`Builder`] that the state, reaction and job
//! parsers fill in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use marked_yaml::Node;
use marked_yaml::types::MarkedMappingNode;
use serde_json::Value;

use super::hints;
use super::jobs::RawJobs;
use super::model::{BotDef, Code, Intent, State, StateId};
use super::reactions::RawReaction;
use super::yaml::{self, Ctx, is_null, to_json};
use crate::diag::Diagnostic;
use crate::env;
use crate::schedule;
use crate::text::normalize;

const TOP_KEYS: &[&str] = &[
    "name",
    "token",
    "channels",
    "injector",
    "intents",
    "states",
    "timezone",
    "scripts",
    "triggers",
    "broadcasts",
];
/// Keys of the contract that this version does not implement yet.
const LATER_KEYS: &[&str] = &["service", "flows"];
pub(crate) const CHANNELS: &[&str] = &["chatwidget", "webhook", "telegram"];

/// The first pass's output, turned into a [`BotDef`] by the second pass (`resolve::finish`).
pub(crate) struct Builder<'a> {
    pub cx: Ctx<'a>,
    /// The bot directory, for `script: {file: ...}`.
    pub dir: PathBuf,
    pub code: Vec<Code>,
    pub intents: Vec<Intent>,
    pub states: Vec<State>,
    /// Reactions of `states[i]`, with `go:` targets still as written.
    pub raw: Vec<Vec<RawReaction>>,
    pub roots: Vec<StateId>,
    /// `scripts:`, `triggers:` and `broadcasts:`, with `state:` targets still as written.
    pub jobs: RawJobs,
    /// Checks each snippet as it is collected (the JavaScript syntax check lives outside core).
    pub check: CodeCheck<'a>,
}

/// A check run on every JavaScript snippet of a bot, e.g. a syntax check by the sandbox.
pub type CodeCheck<'a> = &'a dyn Fn(&Code) -> Option<Diagnostic>;

/// Parse one `bot.yaml` (already read as text).
///
/// `id` is the bot directory name; `file` is the path of the `bot.yaml` (its parent directory is
/// where `script: {file: x.js}` files are looked up). `${VAR}` references are substituted with
/// `lookup` first. On failure, every problem found in the file is returned.
pub fn parse_bot(
    id: &str,
    file: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<BotDef, Vec<Diagnostic>> {
    parse_bot_checked(id, file, text, lookup, &|_| None)
}

/// [`parse_bot`], also running `check` on every snippet so that its findings are reported with
/// the file's other problems.
pub fn parse_bot_checked(
    id: &str,
    file: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    check: CodeCheck<'_>,
) -> Result<BotDef, Vec<Diagnostic>> {
    let text = env::substitute(file, text, lookup)?;
    let root = yaml::load(file, &text).map_err(|d| vec![d])?;
    let mut b = Builder {
        cx: Ctx::new(file, &text),
        dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        code: Vec::new(),
        intents: Vec::new(),
        states: Vec::new(),
        raw: Vec::new(),
        roots: Vec::new(),
        jobs: RawJobs::default(),
        check,
    };
    let mut def = BotDef {
        id: id.to_string(),
        name: id.to_string(),
        token: None,
        channels: BTreeMap::new(),
        injector: Value::Object(Default::default()),
        intents: Vec::new(),
        states: Vec::new(),
        roots: Vec::new(),
        code: Vec::new(),
        timezone: "UTC".to_string(),
        scripts: Vec::new(),
        triggers: Vec::new(),
        broadcasts: Vec::new(),
        file: file.to_path_buf(),
    };
    if let Some(top) = b.cx.mapping(&root, "the file") {
        b.top_level(top, &mut def);
    }
    let def = b.finish(def);
    def.map_err(|mut diags| {
        diags.sort_by_key(|d| (d.line, d.col));
        diags
    })
}

impl Builder<'_> {
    fn top_level(&mut self, top: &MarkedMappingNode, def: &mut BotDef) {
        // Intents first: triggers refer to them wherever `intents:` is written.
        if let Some(node) = top.get_node("intents") {
            self.intents(node);
        }
        for (key, value) in top.iter() {
            match key.as_str() {
                "name" => {
                    if let Some(s) = self.cx.string(value, "`name`") {
                        def.name = s.as_str().to_string();
                    }
                }
                "token" => match value {
                    Node::Scalar(s) if is_null(s) || s.as_str().is_empty() => {}
                    _ => {
                        if let Some(s) = self.cx.string(value, "`token`") {
                            def.token = Some(s.as_str().to_string());
                        }
                    }
                },
                "timezone" => self.timezone(value, def),
                "channels" => self.channels(value, def),
                "injector" => {
                    def.injector = match value {
                        Node::Scalar(s) if is_null(s) => Value::Object(Default::default()),
                        Node::Mapping(_) => to_json(value),
                        other => {
                            self.cx.error(
                                other.span(),
                                format!("`injector` must be a mapping, not {}", yaml::shape(other)),
                                "write `injector:` followed by indented `key: value` pairs",
                            );
                            continue;
                        }
                    }
                }
                "intents" => {}
                "states" => self.states(value, None),
                "scripts" => self.job_scripts(value),
                "triggers" => self.job_triggers(value),
                "broadcasts" => self.job_broadcasts(value),
                k if LATER_KEYS.contains(&k) => self.cx.error(
                    key.span(),
                    format!("`{k}:` is not supported by this version yet"),
                    "remove this section for now",
                ),
                k => {
                    let mut all: Vec<&str> = TOP_KEYS.to_vec();
                    all.extend(LATER_KEYS);
                    self.cx.error(
                        key.span(),
                        format!("unknown key `{k}` at the top level of a bot"),
                        hints::did_you_mean(k, &all),
                    );
                }
            }
        }
    }

    /// `timezone:`: an IANA name known to the time zone database; empty means UTC.
    fn timezone(&mut self, node: &Node, def: &mut BotDef) {
        if matches!(node, Node::Scalar(s) if is_null(s)) {
            return;
        }
        let Some(s) = self.cx.string(node, "`timezone`") else {
            return;
        };
        let name = s.as_str().trim();
        match schedule::zone(name) {
            Ok(_) if name.is_empty() => def.timezone = "UTC".to_string(),
            Ok(_) => def.timezone = name.to_string(),
            Err(e) => self.cx.error(
                s.span(),
                e.message,
                "use an IANA name such as \"Europe/Berlin\" or \"UTC\"",
            ),
        }
    }

    fn channels(&mut self, node: &Node, def: &mut BotDef) {
        if matches!(node, Node::Scalar(s) if is_null(s)) {
            return;
        }
        let Some(map) = self.cx.mapping(node, "`channels`") else {
            return;
        };
        for (key, value) in map.iter() {
            let name = key.as_str();
            if !CHANNELS.contains(&name) {
                self.cx.error(
                    key.span(),
                    format!("unknown channel type `{name}`"),
                    hints::did_you_mean(name, CHANNELS),
                );
                continue;
            }
            let settings = match value {
                Node::Scalar(s) if is_null(s) => Value::Object(Default::default()),
                Node::Mapping(_) => to_json(value),
                other => {
                    self.cx.error(
                        other.span(),
                        format!(
                            "settings of channel `{name}` must be a mapping, not {}",
                            yaml::shape(other)
                        ),
                        format!("write `{name}: {{}}` for the defaults"),
                    );
                    continue;
                }
            };
            def.channels.insert(name.to_string(), settings);
        }
    }

    fn intents(&mut self, node: &Node) {
        if matches!(node, Node::Scalar(s) if is_null(s)) {
            return;
        }
        let Some(map) = self.cx.mapping(node, "`intents`") else {
            return;
        };
        for (key, value) in map.iter() {
            let name = key.as_str();
            let items: Vec<&Node> = match value {
                Node::Sequence(seq) => seq.iter().collect(),
                other => vec![other],
            };
            let mut phrases = Vec::new();
            for item in items {
                match item {
                    Node::Scalar(s) if !is_null(s) => {
                        let phrase = normalize(s.as_str());
                        if phrase.is_empty() {
                            self.cx.error(
                                s.span(),
                                format!("phrase `{}` of intent `{name}` has no words", s.as_str()),
                                "an intent phrase needs at least one letter or digit",
                            );
                        } else {
                            phrases.push(phrase);
                        }
                    }
                    other => self.cx.error(
                        other.span(),
                        format!(
                            "intent `{name}` must be a phrase or a list of phrases, not {}",
                            yaml::shape(other)
                        ),
                        format!("for example `{name}: [\"yes\", \"sure\"]`"),
                    ),
                }
            }
            if phrases.is_empty() && matches!(value, Node::Sequence(_)) {
                self.cx.error(
                    key.span(),
                    format!("intent `{name}` has no phrases"),
                    "give it at least one example phrase",
                );
            }
            self.intents.push(Intent {
                name: name.to_string(),
                phrases,
            });
        }
    }
}
