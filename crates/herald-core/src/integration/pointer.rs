//! JSON pointers (RFC 6901) as integrations write them: `/customer/id`, `/line_items/0/sku`,
//! with `~1` for `/` and `~0` for `~` in a key. One deviation: `/` alone means the whole
//! document (RFC 6901 reads it as the key `""` of the root, which no platform sends), so that
//! `fullBody: /` maps the body as it came.

use std::fmt;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    /// The pointer as written.
    text: String,
    /// Its reference tokens, unescaped; empty for the whole document.
    tokens: Vec<String>,
}

impl Pointer {
    /// Parses a pointer; the reason when it is not one.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "/" || text.is_empty() {
            return Ok(Self {
                text: text.to_owned(),
                tokens: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "`{text}` is not a JSON pointer: it must start with `/`"
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match c {
                    '~' => match chars.next() {
                        Some('0') => token.push('~'),
                        Some('1') => token.push('/'),
                        _ => {
                            return Err(format!(
                                "`{text}` is not a JSON pointer: `~` must be followed by 0 or 1"
                            ));
                        }
                    },
                    c => token.push(c),
                }
            }
            tokens.push(token);
        }
        Ok(Self {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The value at this pointer in `doc`, if there is one.
    pub fn resolve<'v>(&self, doc: &'v Value) -> Option<&'v Value> {
        let mut at = doc;
        for t in &self.tokens {
            at = match at {
                Value::Object(m) => m.get(t)?,
                Value::Array(a) => {
                    // RFC 6901: decimal digits without leading zeros.
                    if t.len() > 1 && t.starts_with('0') {
                        return None;
                    }
                    a.get(t.parse::<usize>().ok()?)?
                }
                _ => return None,
            };
        }
        Some(at)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_resolve_keys_indexes_and_escapes() {
        let doc = json!({"customer": {"id": 7}, "items": [{"sku": "A"}, {"sku": "B"}],
                         "a/b": 1, "m~n": 2, "": 3});
        let at = |p: &str| Pointer::parse(p).expect("pointer").resolve(&doc).cloned();
        assert_eq!(at("/customer/id"), Some(json!(7)));
        assert_eq!(at("/items/1/sku"), Some(json!("B")));
        assert_eq!(at("/a~1b"), Some(json!(1)));
        assert_eq!(at("/m~0n"), Some(json!(2)));
        assert_eq!(at("/"), Some(doc.clone()), "`/` is the whole document");
        assert_eq!(at("/items/01"), None);
        assert_eq!(at("/items/9"), None);
        assert_eq!(at("/customer/id/x"), None);
    }

    #[test]
    fn malformed_pointers_say_why() {
        assert!(Pointer::parse("customer/id").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("/a~").is_err());
    }
}
