//! Text normalization shared by the loader (phrases, intents) and the matcher (user input), so that
//! `"Hello!"`, `"hello"` and `"  HELLO  "` all compare equal; and the words error messages use
//! for the kind of a JSON value.

/// Lowercases (Unicode-aware), turns every character that is neither a letter nor a digit into a
/// space, collapses runs of whitespace into one space and trims.
///
/// ```
/// assert_eq!(herald_core::text::normalize("  Hello,   World! "), "hello world");
/// assert_eq!(herald_core::text::normalize("Ünïcode—OK"), "ünïcode ok");
/// ```
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars().flat_map(char::to_lowercase) {
        if is_word_char(c) {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        } else {
            pending_space = true;
        }
    }
    out
}

/// Letters, digits, and combining marks (so decomposed accents such as `e\u{301}` stay in their word).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(c,
            '\u{300}'..='\u{36F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}')
}

/// The words of an already normalized text.
pub fn words(normalized: &str) -> impl Iterator<Item = &str> {
    normalized.split(' ').filter(|w| !w.is_empty())
}

/// What a JSON value is, for messages like "must be a string, not a number".
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn punctuation_becomes_space_and_whitespace_collapses() {
        assert_eq!(normalize("Yes, please!!"), "yes please");
        assert_eq!(normalize("/start"), "start");
        assert_eq!(normalize("\t a \n\n b "), "a b");
        assert_eq!(normalize("?!"), "");
    }

    #[test]
    fn lowercasing_is_unicode_aware() {
        assert_eq!(normalize("ПРИВЕТ Мир"), "привет мир");
        assert_eq!(normalize("Cafe\u{301}!"), "cafe\u{301}");
    }
}
