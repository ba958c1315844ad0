//! The project's `integrations/*.yaml`, and the checks that need the other files: a routed bot
//! must exist, an event must go somewhere (a bot or a workflow bound to it with `on:`), and a
//! workflow's `on:` must name an integration event that exists.

use std::path::Path;
use std::sync::Arc;

use crate::bot::CodeCheck;
use crate::bot::hints::did_you_mean;
use crate::bot::model::Origin;
use crate::diag::Diagnostic;
use crate::integration::parse_integration_checked;
use crate::project::{Project, entries, read_text};

/// Whether a file name can be an integration name: `[A-Za-z0-9_-]+`.
pub fn is_valid_integration_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn at(origin: &Origin, message: String, hint: impl Into<String>) -> Diagnostic {
    Diagnostic::new(&origin.file, origin.line, origin.col, message).with_hint(hint)
}

/// Reads every `integrations/*.yaml` (or `.yml`). Runs after bots and workflows are loaded.
pub(crate) fn load_integrations(
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    check: CodeCheck<'_>,
    project: &mut Project,
    diags: &mut Vec<Diagnostic>,
) {
    let files = entries(
        &dir.join("integrations"),
        "integrations",
        |p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")),
        diags,
    );
    for file in files {
        let name = file
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !is_valid_integration_name(&name) {
            diags.push(
                Diagnostic::new(
                    &file,
                    0,
                    0,
                    format!("`{name}` is not a valid integration name"),
                )
                .with_hint("rename the file using only letters, digits, `_` and `-`"),
            );
            continue;
        }
        if project.integrations.contains_key(&name) {
            diags.push(
                Diagnostic::new(
                    &file,
                    0,
                    0,
                    format!("integration `{name}` is defined twice"),
                )
                .with_hint("keep one of `<name>.yaml` and `<name>.yml`"),
            );
            continue;
        }
        let Some(text) = read_text(&file, diags) else {
            continue;
        };
        let bots = &project.bots;
        let is_bot = |b: &str| bots.contains_key(b);
        match parse_integration_checked(&name, &file, &text, lookup, &is_bot, check) {
            Ok(def) => {
                project.integrations.insert(name, Arc::new(def));
            }
            Err(d) => diags.extend(d),
        }
    }
    check_routes(project, diags);
}

fn check_routes(project: &Project, diags: &mut Vec<Diagnostic>) {
    for def in project.integrations.values() {
        for e in &def.events {
            let full = format!("{}:{}", def.name, e.name);
            let bound = project.workflows.values().any(|w| w.listens_to(&full));
            if e.route.bot.is_none() && !bound {
                diags.push(at(
                    &e.route.origin,
                    format!("event `{}` goes nowhere: its route names no bot, no workflow has `on: {full}` and there is no workflows/{full}.yaml", e.name),
                    "add `bot:` to the route, or `on: [".to_owned() + &full + "]` to a workflow",
                ));
            }
        }
    }
    let known: Vec<String> = project
        .integrations
        .values()
        .flat_map(|d| {
            d.events
                .iter()
                .map(move |e| format!("{}:{}", d.name, e.name))
        })
        .collect();
    let known_refs: Vec<&str> = known.iter().map(String::as_str).collect();
    for wf in project.workflows.values() {
        for (on, origin) in &wf.on {
            // A handler may raise events it declares nowhere; only declared ones are checked.
            let integration = on.split(':').next().unwrap_or_default();
            let has_handler = project
                .integrations
                .get(integration)
                .is_some_and(|d| d.handler.is_some());
            if !known.contains(on) && !has_handler {
                diags.push(at(
                    origin,
                    format!("`on: {on}` names no integration event"),
                    if known_refs.is_empty() {
                        "integrations/<name>.yaml declares events under `events:`".to_owned()
                    } else {
                        did_you_mean(on, &known_refs)
                    },
                ));
            }
        }
    }
}
