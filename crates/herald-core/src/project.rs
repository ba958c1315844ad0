//! A project directory's bots: every `bots/<id>/bot.yaml`, loaded together so that `herald check`
//! and `herald serve` report the problems of all files at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bot::model::BotDef;
use crate::bot::{CodeCheck, parse_bot_checked};
use crate::diag::Diagnostic;

/// The loaded definitions of one project directory.
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    /// Bot id (directory name under `bots/`) → bot.
    pub bots: BTreeMap<String, Arc<BotDef>>,
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
    };
    let mut diags = Vec::new();
    let bots_dir = dir.join("bots");
    if !bots_dir.is_dir() {
        return Ok(project);
    }
    let entries = match std::fs::read_dir(&bots_dir) {
        Ok(entries) => entries,
        Err(e) => {
            return Err(vec![Diagnostic::new(
                &bots_dir,
                0,
                0,
                format!("cannot read the bots directory: {e}"),
            )]);
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
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
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::new(
                    &file,
                    0,
                    0,
                    format!("cannot read the file: {e}"),
                ));
                continue;
            }
        };
        match parse_bot_checked(&id, &file, &text, lookup, check) {
            Ok(bot) => {
                project.bots.insert(id, Arc::new(bot));
            }
            Err(d) => diags.extend(d),
        }
    }
    if diags.is_empty() {
        Ok(project)
    } else {
        Err(diags)
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
