//! `${VAR}` substitution in the raw text of definition files, done before YAML parsing so that a
//! variable can stand anywhere (inside strings, as a whole value, in a key).
//!
//! Rules:
//! - `${NAME}` is replaced by the variable's value; unset is an error naming the variable.
//! - `${NAME:-default}` uses `default` when the variable is unset or empty (as in the shell).
//! - `$${...}` is an escape and produces a literal `${...}` (handy for JavaScript template strings).
//! - `${` not followed by a variable name (`[A-Za-z_][A-Za-z0-9_]*`) is left as written.
//!
//! Substitution never adds or removes lines unless a value itself contains line breaks, so the
//! YAML parser's line numbers stay those of the file.

use std::path::Path;

use crate::diag::Diagnostic;

/// Replace `${VAR}` and `${VAR:-default}` in raw file text before YAML parsing.
///
/// An unset variable without default gives a [`Diagnostic`] at the line and column of its `${`,
/// naming the variable. All problems of the text are reported, not only the first.
pub fn substitute(
    file: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<Diagnostic>> {
    let mut out = String::with_capacity(text.len());
    let mut diags = Vec::new();
    let mut line = 1;
    let mut line_start = 0; // byte offset of the current line in `text`
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with("$${") {
            // Escape: `$${` → `${`, and the rest is copied as it is.
            out.push_str("${");
            i += 3;
            continue;
        }
        if let Some(after) = rest.strip_prefix("${") {
            let col = text[line_start..i].chars().count() + 1;
            match parse_reference(after) {
                Some(Reference::Plain { name, len }) => {
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => diags.push(unset(file, line, col, name)),
                    }
                    i += 2 + len;
                    continue;
                }
                Some(Reference::Default { name, default, len }) => {
                    match lookup(name).filter(|v| !v.is_empty()) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(default),
                    }
                    i += 2 + len;
                    continue;
                }
                Some(Reference::Unclosed { name }) => {
                    diags.push(
                        Diagnostic::new(file, line, col, format!("`${{{name}` is not closed"))
                            .with_hint(format!(
                                "write `${{{name}}}` or `${{{name}:-default}}` on one line"
                            )),
                    );
                }
                None => {}
            }
        }
        // Copy one character.
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        i += c.len_utf8();
        if c == '\n' {
            line += 1;
            line_start = i;
        }
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

fn unset(file: &Path, line: usize, col: usize, name: &str) -> Diagnostic {
    Diagnostic::new(
        file,
        line,
        col,
        format!("environment variable `{name}` is not set"),
    )
    .with_hint(format!(
        "set `{name}`, or give a default: `${{{name}:-default}}` \
         (write `$${{...}}` for a literal `${{...}}`)"
    ))
}

enum Reference<'a> {
    /// `NAME}`; `len` counts the bytes after `${` up to and including `}`.
    Plain { name: &'a str, len: usize },
    /// `NAME:-default}`.
    Default {
        name: &'a str,
        default: &'a str,
        len: usize,
    },
    /// `NAME` or `NAME:-...` without `}` on the same line.
    Unclosed { name: &'a str },
}

/// Parses what follows `${`. `None`: not a variable reference, keep the text as written.
fn parse_reference(s: &str) -> Option<Reference<'_>> {
    let name_len = s
        .char_indices()
        .take_while(|&(k, c)| c == '_' || c.is_ascii_alphabetic() || (k > 0 && c.is_ascii_digit()))
        .count();
    if name_len == 0 {
        return None;
    }
    let name = &s[..name_len];
    let after = &s[name_len..];
    if after.starts_with('}') {
        return Some(Reference::Plain {
            name,
            len: name_len + 1,
        });
    }
    if let Some(d) = after.strip_prefix(":-") {
        let line_end = d.find('\n').unwrap_or(d.len());
        return Some(match d[..line_end].find('}') {
            Some(end) => Reference::Default {
                name,
                default: &d[..end],
                len: name_len + 2 + end + 1,
            },
            None => Reference::Unclosed { name },
        });
    }
    if after.is_empty() || after.starts_with('\n') || after.starts_with('\r') {
        return Some(Reference::Unclosed { name });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.org".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn sub(text: &str) -> Result<String, Vec<Diagnostic>> {
        substitute(Path::new("bot.yaml"), text, &env)
    }

    #[test]
    fn set_variables_and_defaults_are_replaced() {
        assert_eq!(
            sub("a: ${HOST}\nb: ${NOPE:-x:y}\nc: ${EMPTY:-d}\nd: ${HOST:-z}").ok(),
            Some("a: example.org\nb: x:y\nc: d\nd: example.org".into())
        );
        assert_eq!(sub("t: ${NOPE:-}").ok(), Some("t: ".into()));
    }

    #[test]
    fn an_unset_variable_is_reported_at_its_dollar_sign() {
        let d =
            sub("a: 1\nurl: \"http://${HOST}/${MISSING}\"\nb: ${ALSO}").expect_err("should fail");
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].line, d[0].col), (2, 22));
        assert!(d[0].message.contains("`MISSING`"));
        assert!(
            d[0].hint
                .as_deref()
                .unwrap_or("")
                .contains("${MISSING:-default}")
        );
        assert_eq!((d[1].line, d[1].col), (3, 4));
    }

    #[test]
    fn non_variables_and_escapes_are_kept_literally() {
        assert_eq!(
            sub("s: `${$session.x} ${ a } $${HOST} $5`").ok(),
            Some("s: `${$session.x} ${ a } ${HOST} $5`".into())
        );
    }

    #[test]
    fn an_unclosed_reference_is_reported() {
        let d = sub("a: ${HOST:-abc\nb: 2").expect_err("should fail");
        assert_eq!((d[0].line, d[0].col), (1, 4));
        assert!(d[0].message.contains("not closed"));
    }
}
