//! A project directory's definitions: every `bots/<id>/bot.yaml`, `workflows/<id>.yaml` and
//! `integrations/<name>.yaml`, loaded together so that `herald check` and `herald serve` report the problems of all files
//! at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bot::model::BotDef;
use crate::bot::{CodeCheck, parse_bot_checked};
use crate::diag::Diagnostic;
use crate::integration::IntegrationDef;
use crate::workflow::{StepKind, WorkflowDef, is_valid_workflow_id, parse_workflow};

/// The loaded definitions of one project directory.
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    /// Bot id (directory name under `bots/`) → bot.
    pub bots: BTreeMap<String, Arc<BotDef>>,
    /// Workflow id (file name under `workflows/` without `.yaml`) → workflow.
    pub workflows: BTreeMap<String, Arc<WorkflowDef>>,
    /// Integration name (file name under `integrations/` without `.yaml`) → integration.
    pub integrations: BTreeMap<String, Arc<IntegrationDef>>,
}

/// Whether a directory name can be a bot id: `[A-Za-z0-9_-]+`.
pub fn is_valid_bot_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Reads every `bots/<id>/bot.yaml` under `dir`.
///
/// No `bots` directory means an empty project. Diagnostics of all files are collected before
/// returning `Err`. Subdirectories of `bots/` without a `bot.yaml` and plain files are skipped.
pub fn load_project(
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Project, Vec<Diagnostic>> {
    load_project_checked(dir, lookup, &|_| None)
}

/// [`load_project`], running `check` on every JavaScript snippet of every bot.
pub fn load_project_checked(
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    check: CodeCheck<'_>,
) -> Result<Project, Vec<Diagnostic>> {
    let mut project = Project {
        dir: dir.to_path_buf(),
        bots: BTreeMap::new(),
        workflows: BTreeMap::new(),
        integrations: BTreeMap::new(),
    };
    let mut diags = Vec::new();
    load_bots(dir, lookup, check, &mut project, &mut diags);
    load_workflows(dir, lookup, check, &mut project, &mut diags);
    crate::project_integrations::load_integrations(dir, lookup, check, &mut project, &mut diags);
    if diags.is_empty() {
        Ok(project)
    } else {
        Err(diags)
    }
}

fn load_bots(
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    check: CodeCheck<'_>,
    project: &mut Project,
    diags: &mut Vec<Diagnostic>,
) {
    let dirs = entries(&dir.join("bots"), "bots", Path::is_dir, diags);
    for bot_dir in dirs {
        let file = bot_dir.join("bot.yaml");
        if !file.is_file() {
            continue;
        }
        let id = bot_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !is_valid_bot_id(&id) {
            diags.push(
                Diagnostic::new(&file, 0, 0, format!("`{id}` is not a valid bot id"))
                    .with_hint("rename the directory using only letters, digits, `_` and `-`"),
            );
            continue;
        }
        let Some(text) = read_text(&file, diags) else {
            continue;
        };
        match parse_bot_checked(&id, &file, &text, lookup, check) {
            Ok(bot) => {
                project.bots.insert(id, Arc::new(bot));
            }
            Err(d) => diags.extend(d),
        }
    }
}

/// Reads every `workflows/*.yaml` (or `.yml`) and checks that `chat` steps name known bots.
fn load_workflows(
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    check: CodeCheck<'_>,
    project: &mut Project,
    diags: &mut Vec<Diagnostic>,
) {
    let files = entries(
        &dir.join("workflows"),
        "workflows",
        |p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")),
        diags,
    );
    for file in files {
        let id = file
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !is_valid_workflow_id(&id) {
            diags.push(
                Diagnostic::new(&file, 0, 0, format!("`{id}` is not a valid workflow id"))
                    .with_hint("rename the file using only letters, digits, `_`, `-` and `.` (and one `:` for an integration event, `shopify:newOrderCreated.yaml`)"),
            );
            continue;
        }
        if project.workflows.contains_key(&id) {
            diags.push(
                Diagnostic::new(&file, 0, 0, format!("workflow `{id}` is defined twice"))
                    .with_hint("keep one of `<id>.yaml` and `<id>.yml`"),
            );
            continue;
        }
        let Some(text) = read_text(&file, diags) else {
            continue;
        };
        match parse_workflow(&id, &file, &text, lookup, check) {
            Ok(wf) => {
                for step in &wf.steps {
                    if let StepKind::Chat { bot, .. } = &step.kind
                        && !project.bots.contains_key(bot)
                    {
                        let known: Vec<&str> = project.bots.keys().map(String::as_str).collect();
                        let hint = if known.is_empty() {
                            String::new()
                        } else {
                            crate::bot::hints::did_you_mean(bot, &known)
                        };
                        diags.push(
                            Diagnostic::new(
                                &step.origin.file,
                                step.origin.line,
                                step.origin.col,
                                format!("`chat` step `{}` names an unknown bot `{bot}`", step.id),
                            )
                            .with_hint(if hint.is_empty() {
                                "the bot is a directory under bots/ with a bot.yaml".to_owned()
                            } else {
                                hint
                            }),
                        );
                    }
                }
                project.workflows.insert(id, Arc::new(wf));
            }
            Err(d) => diags.extend(d),
        }
    }
}

/// The entries of `dir` that `keep` accepts, sorted; none when `dir` does not exist, and a
/// diagnostic when it cannot be read.
pub(crate) fn entries(
    dir: &Path,
    what: &str,
    keep: impl Fn(&Path) -> bool,
    diags: &mut Vec<Diagnostic>,
) -> Vec<PathBuf> {
    if !dir.is_dir() {
        return Vec::new();
    }
    match std::fs::read_dir(dir) {
        Ok(list) => {
            let mut paths: Vec<PathBuf> = list
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| keep(p))
                .collect();
            paths.sort();
            paths
        }
        Err(e) => {
            diags.push(Diagnostic::new(
                dir,
                0,
                0,
                format!("cannot read the {what} directory: {e}"),
            ));
            Vec::new()
        }
    }
}

/// A definition file's text, or `None` after recording why it cannot be read.
pub(crate) fn read_text(file: &Path, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match std::fs::read_to_string(file) {
        Ok(t) => Some(t),
        Err(e) => {
            diags.push(Diagnostic::new(
                file,
                0,
                0,
                format!("cannot read the file: {e}"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_directory_without_bots_is_an_empty_project() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = load_project(dir.path(), &no_env).expect("loads");
        assert!(p.bots.is_empty());
    }

    #[test]
    fn load_project_collects_diagnostics_from_every_broken_bot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |id: &str, text: &str| {
            let d = dir.path().join("bots").join(id);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("bot.yaml"), text).expect("write");
        };
        write("good", "states:\n  A:\n    q: hi\n    a: Hello\n");
        write("one", "states:\n  A:\n    go: Nowhere\n");
        write("two", "name: x\nstatez: {}\n");
        write("bad id", "name: y\n");
        let diags = load_project(dir.path(), &no_env).expect_err("should fail");
        let files: Vec<String> = diags
            .iter()
            .map(|d| d.file.to_string_lossy().into_owned())
            .collect();
        assert_eq!(diags.len(), 3, "{diags:?}");
        assert!(files.iter().any(|f| f.contains("bad id")));
        assert!(files.iter().any(|f| f.contains("one")) && diags.iter().any(|d| d.line == 3));
        assert!(files.iter().any(|f| f.contains("two")) && diags.iter().any(|d| d.line == 2));
    }

    #[test]
    fn the_newsletter_example_project_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/newsletter");
        let p = load_project(&dir, &no_env).expect("example loads");
        assert!(p.bots.contains_key("newsletter"));
    }
}
