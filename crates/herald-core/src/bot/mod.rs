//! Bots: the compiled model ([`model`]) and the `bot.yaml` loader that builds it.
//!
//! Loading is two passes. The first walks the YAML tree (with line/column spans from
//! `marked-yaml`) and builds the state arena, triggers, code table, still-unresolved reactions and
//! the named jobs (`scripts:`, `triggers:`, `broadcasts:`); the second resolves every `go:` and job
//! `state:` target once all states are known and checks scripts for pushbacks that would use
//! reserved event names. Both passes collect diagnostics instead of stopping at the first problem.

pub mod model;

pub(crate) mod hints;
mod jobs;
mod js;
mod parse;
pub mod pattern;
mod reactions;
mod resolve;
mod states;
pub(crate) mod texts;
pub(crate) mod yaml;

#[cfg(test)]
mod jobs_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use parse::{CodeCheck, parse_bot, parse_bot_checked};
pub use resolve::resolve_state;
