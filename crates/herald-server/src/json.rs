//! One rule for JSON bodies on every route: a body is one complete JSON value in UTF-8 with
//! nothing after it but whitespace, and no object in it names a key twice. Anything else —
//! trailing bytes, a truncated value, invalid UTF-8, a duplicate key, nesting deeper than 128 —
//! is `400 malformed_json` before the body's fields are looked at, so a caller learns that the
//! body is broken rather than which field a broken body seemed to lack.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};

/// Checks `bytes` against the rule above; the reason when it breaks it.
pub fn check(bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Checked::deserialize(&mut de)?;
    de.end()
}

/// Parses a body that [`check`] accepts into `T`; the error names the field (as a path) that
/// does not fit `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    check(bytes).map_err(BodyError::Malformed)?;
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        BodyError::Field {
            path,
            error: e.into_inner(),
        }
    })
}

/// Why a body was not accepted.
#[derive(Debug)]
pub enum BodyError {
    /// It breaks the rule of this module.
    Malformed(serde_json::Error),
    /// It is well-formed, but the value at `path` (`.` for the whole body) does not fit.
    Field {
        path: String,
        error: serde_json::Error,
    },
}

/// Any JSON value, walked without being kept, refusing duplicate keys.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckVisitor)
    }
}

struct CheckVisitor;

impl<'de> Visitor<'de> for CheckVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            map.next_value::<Checked>()?;
            seen.insert(key);
        }
        Ok(Checked)
    }
}

/// An object key, borrowed from the body when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_bodies_pass() {
        for ok in [
            r#"{"a": 1, "b": [1, {"a": 2}], "c": {"d": null}}"#,
            "  [1, 2, 3]\n",
            r#""text""#,
            r#"{"a\u0062": 1, "ab2": 2}"#,
        ] {
            assert!(check(ok.as_bytes()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn broken_bodies_are_refused_with_the_reason() {
        for (bad, why) in [
            (&br#"{"a": 1} garbage!!"#[..], "trailing characters"),
            (br#"{"a":"#, "EOF"),
            (b"", "EOF"),
            (br#"{"a": 1, "a": 2}"#, "duplicate key `a`"),
            (br#"{"x": {"a": 1, "\u0061": 2}}"#, "duplicate key `a`"),
            (b"{\"a\": \"\xff\xfe\"}", "invalid unicode"),
            (b"{\"\xff\": 1}", "invalid unicode"),
            (br#"{"a": 1,}"#, "trailing comma"),
        ] {
            let e = check(bad).expect_err("refused").to_string();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(check(deep.as_bytes()).is_err(), "nesting is bounded");
    }

    #[test]
    fn a_well_formed_body_that_does_not_fit_names_the_field() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct In {
            #[allow(dead_code)]
            n: u32,
        }
        match parse::<In>(br#"{"n": "x"}"#) {
            Err(BodyError::Field { path, .. }) => assert_eq!(path, "n"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse::<In>(br#"{"a":"#),
            Err(BodyError::Malformed(_))
        ));
    }
}
