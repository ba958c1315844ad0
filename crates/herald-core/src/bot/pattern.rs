//! `q` patterns: compiling a written phrase into a [`Pattern`] and testing user text against it.
//!
//! - `/.../` is a regular expression, case-insensitive and unanchored, over the raw text.
//! - A phrase with `*` is normalized word by word; each `*` stands for zero or more words, and the
//!   whole is an anchored regex over normalized text (`hello * world` matches `hello big world`).
//! - Anything else is an exact phrase, compared after normalization.

use regex::{Regex, RegexBuilder};

use super::model::Pattern;
use crate::text::{normalize, words};

/// Why a phrase could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub message: String,
    pub hint: String,
}

impl Pattern {
    /// Compiles a `q` value as written in `bot.yaml`.
    pub fn compile(source: &str) -> Result<Pattern, PatternError> {
        if source.len() >= 2 && source.starts_with('/') && source.ends_with('/') {
            let body = &source[1..source.len() - 1];
            return RegexBuilder::new(body)
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
                .map(|regex| Pattern::Regex {
                    source: source.to_string(),
                    regex,
                })
                .map_err(|e| PatternError {
                    message: format!("invalid regular expression `{source}`: {}", first_line(&e)),
                    hint: "patterns written as `/.../` use Rust regex syntax; \
                           write the phrase without the slashes to match it literally"
                        .into(),
                });
        }
        if source.contains('*') {
            let regex = wildcard_regex(source).map_err(|e| PatternError {
                message: format!(
                    "cannot compile wildcard phrase `{source}`: {}",
                    first_line(&e)
                ),
                hint: "`*` stands for any words; the rest is matched word by word".into(),
            })?;
            return Ok(Pattern::Wildcard {
                source: source.to_string(),
                regex,
            });
        }
        let phrase = normalize(source);
        if phrase.is_empty() {
            return Err(PatternError {
                message: format!("phrase `{source}` has no words"),
                hint: "phrases are compared without punctuation; use `/regex/` to match symbols"
                    .into(),
            });
        }
        Ok(Pattern::Exact(phrase))
    }

    /// Whether the pattern matches a user text; `normalized` is `normalize(raw)`.
    pub fn matches(&self, raw: &str, normalized: &str) -> bool {
        match self {
            Pattern::Exact(p) => p == normalized,
            Pattern::Wildcard { regex, .. } => regex.is_match(normalized),
            Pattern::Regex { regex, .. } => regex.is_match(raw),
        }
    }

    /// The pattern as written (normalized, for an exact phrase).
    pub fn source(&self) -> &str {
        match self {
            Pattern::Exact(p) => p,
            Pattern::Wildcard { source, .. } | Pattern::Regex { source, .. } => source,
        }
    }
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    text.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

/// `a * b` → `^a(?: \S+)* b$`, over normalized text (words separated by one space).
fn wildcard_regex(source: &str) -> Result<Regex, regex::Error> {
    let mut re = String::from("^");
    let mut any_word = false;
    let mut pending_star = false;
    for (k, segment) in source.split('*').enumerate() {
        if k > 0 {
            pending_star = true;
        }
        for w in words(&normalize(segment)) {
            if pending_star {
                // A star before the first word: optional leading words; after one: optional
                // further words.
                re.push_str(if any_word { r"(?: \S+)*" } else { r"(?:\S+ )*" });
                pending_star = false;
            }
            if any_word {
                re.push(' ');
            }
            re.push_str(&regex::escape(w));
            any_word = true;
        }
    }
    if pending_star {
        re.push_str(if any_word {
            r"(?: \S+)*"
        } else {
            r"(?:\S+(?: \S+)*)?"
        });
    }
    re.push('$');
    Regex::new(&re)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, text: &str) -> bool {
        Pattern::compile(p)
            .map(|p| p.matches(text, &normalize(text)))
            .unwrap_or(false)
    }

    #[test]
    fn a_wildcard_stands_for_zero_or_more_words() {
        assert!(m("hello * world", "Hello, big blue World!"));
        assert!(m("hello * world", "hello world"));
        assert!(!m("hello * world", "hello worlds"));
        assert!(!m("hello * world", "say hello world"));
        assert!(m("* pizza", "I want a pizza"));
        assert!(m("* pizza", "pizza"));
        assert!(m("pizza *", "pizza with cheese"));
        assert!(!m("pizza *", "pizzas"));
        assert!(m("*", ""));
        assert!(m("*", "anything at all"));
        assert!(m("*order*", "my order is late"));
    }

    #[test]
    fn a_regex_is_case_insensitive_and_unanchored_over_the_raw_text() {
        assert!(m(r"/order #\d+/", "Where is ORDER #42?"));
        assert!(!m(r"/^order/", "my order"));
        assert!(matches!(Pattern::compile("/a/"), Ok(Pattern::Regex { .. })));
        assert!(matches!(
            Pattern::compile("/"),
            Ok(Pattern::Exact(_)) | Err(_)
        ));
    }

    #[test]
    fn an_exact_phrase_is_compared_after_normalization() {
        assert!(m("/start", "/START"));
        assert!(m("no thanks", "No, thanks!"));
        assert!(!m("no", "no thanks"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        let e = Pattern::compile("/(unclosed/").expect_err("should fail");
        assert!(e.message.contains("invalid regular expression"));
        assert!(Pattern::compile("?!").is_err());
    }
}
