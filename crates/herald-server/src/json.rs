//! One rule for JSON bodies on every route: a body is one complete JSON value in UTF-8 with
//! nothing after it but whitespace, and no object in it names a key twice. Anything else —
//! trailing bytes, a truncated value, invalid UTF-8, a duplicate key, nesting deeper than 128 —
//! is `400 malformed_json` before the body's fields are looked at, so a caller learns that the
//! body is broken rather than which field a broken body seemed to lack.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` under the rule above into a [`Value`], in one pass.
pub fn parse_value(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Checks `bytes` against the rule above; the reason when it breaks it.
pub fn check(bytes: &[u8]) -> Result<(), serde_json::Error> {
    parse_value(bytes).map(drop)
}

/// Parses a body that [`check`] accepts into `T`; the error names the field (as a path) that
/// does not fit `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let value = parse_value(bytes).map_err(BodyError::Malformed)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
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

/// A JSON value, built as it is read, refusing duplicate keys.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let v = map.next_value_seed(Strict)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

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
