//! The one rule for identifiers that come from outside — chat ids, event names, subscriber ids,
//! topic keys, transaction ids: 1 to [`MAX_LEN`] characters from `A–Z a–z 0–9` and
//! `- _ . : @ + = | ~`, and not `.` or `..`. Every such id can then be named in a URL path and
//! a log line as it is, so no route creates a record that another route cannot reach (a chat
//! id with a `/`, a NUL or 200 KB of text would do exactly that).

/// The longest identifier, in bytes (all characters allowed are one byte).
pub const MAX_LEN: usize = 128;

/// What the rule allows, for error messages.
pub const RULE: &str = "1–128 characters of A–Z, a–z, 0–9 and - _ . : @ + = | ~";

/// Whether `id` follows the rule.
pub fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@+=|~".contains(&b))
}

/// `Ok` for a valid identifier, else a message naming `field` and the rule.
pub fn check(field: &str, id: &str) -> Result<(), String> {
    if is_valid(id) {
        return Ok(());
    }
    let shown: String = id.chars().take(40).collect();
    let more = if shown.len() < id.len() { "…" } else { "" };
    Err(format!(
        "{field} `{}{more}` is not a valid identifier: use {RULE}",
        shown.escape_debug()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_people_use_are_valid() {
        for ok in [
            "a",
            "chat-1",
            "0b9c7c1e-2f43-4e8b-9d1a-0f7d5c3a2b11",
            "-1001234567890",
            "ann@example.com",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "shopify:newOrderCreated",
            "user+tag=1~x",
            &"x".repeat(128),
        ] {
            assert!(is_valid(ok), "{ok}");
        }
    }

    #[test]
    fn paths_controls_blanks_and_long_ids_are_not() {
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a\0b",
            "a b",
            "tab\t",
            "ünïcode",
            "a?b",
            "a#b",
            "a%2F",
            &"x".repeat(129),
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        let e = check("chatId", &format!("../{}", "x".repeat(200_000))).expect_err("refused");
        assert!(e.len() < 200, "the message stays short: {e}");
    }
}
