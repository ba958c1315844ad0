//! Property tests of the JSON rule (`herald_server::json`): it never panics, accepts exactly
//! the bodies `serde_json` accepts when no key repeats, and refuses trailing bytes and repeated
//! keys wherever they are.

use herald_server::json::check;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Arbitrary JSON values, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_agree_with_serde_json_when_refused(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let ours = check(&bytes);
        if serde_json::from_slice::<Value>(&bytes).is_err() {
            prop_assert!(ours.is_err());
        }
    }

    #[test]
    fn every_serialized_value_passes(v in value()) {
        let text = serde_json::to_string(&v).expect("serializes");
        prop_assert!(check(text.as_bytes()).is_ok(), "{}", text);
        let pretty = serde_json::to_string_pretty(&v).expect("serializes");
        prop_assert!(check(pretty.as_bytes()).is_ok(), "{}", pretty);
    }

    #[test]
    fn trailing_bytes_are_refused(v in value(), tail in "[^ \t\r\n]{1,8}") {
        let text = serde_json::to_string(&v).expect("serializes") + &tail;
        prop_assert!(check(text.as_bytes()).is_err(), "{}", text);
    }

    #[test]
    fn a_repeated_key_is_refused_at_any_depth(v in value(), key in "[a-z]{1,6}", depth in 0usize..4) {
        // {"key": v, "key": v}, nested `depth` levels inside arrays.
        let dup = format!(r#"{{"{key}": {v}, "{key}": {v}}}"#, v = serde_json::to_string(&v).expect("serializes"));
        let text = "[".repeat(depth) + &dup + &"]".repeat(depth);
        prop_assert!(serde_json::from_str::<Value>(&text).is_ok());
        prop_assert!(check(text.as_bytes()).is_err(), "{}", text);
    }
}
