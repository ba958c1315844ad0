//! The pure core of Herald: definition files in, a compiled model out, plus the trigger matcher.
//!
//! Nothing here does network or database I/O, spawns tasks, or runs JavaScript; the only I/O is
//! reading definition files from the project directory.
//!
//! - [`env`](mod@env) replaces `${VAR}` / `${VAR:-default}` in raw definition text.
//! - [`bot`] turns one `bot.yaml` into a [`bot::model::BotDef`] ([`bot::parse_bot`]) and resolves
//!   state references ([`bot::resolve_state`]).
//! - [`matching`] picks the state whose trigger matches a user text or an event.
//! - [`project`] loads every bot of a project directory at once, collecting all diagnostics.
//! - [`diag`] is the shape of every load error: file, line, column, message and a hint.
//! - [`workflow`] turns one `workflows/<id>.yaml` into a notification workflow.
//! - [`text`] holds the text normalization shared by the loader and the matcher.

pub mod bot;
pub mod diag;
pub mod env;
pub mod ident;
pub mod integration;
pub mod matching;
pub mod project;
pub mod project_integrations;
pub mod schedule;
pub mod text;
pub mod workflow;

pub use bot::model::{BotDef, StateId};
pub use bot::{parse_bot, resolve_state};
pub use diag::Diagnostic;
pub use matching::{match_event, match_text};
pub use project::{Project, load_project, load_project_checked};
